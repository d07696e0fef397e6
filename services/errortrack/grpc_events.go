package errortrack

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	"github.com/shiploop/shiploop/services/errortrack/envelope"
)

// GetEvent returns one event by id, read for people, with its issue.
func (g *grpcServer) GetEvent(ctx context.Context, req *errortrackv1.GetEventRequest) (*errortrackv1.GetEventResponse, error) {
	id := envelope.EventID(req.GetEventId())
	if id == "" {
		return nil, invalid("event_id", "want 32 hex digits")
	}
	resp := &errortrackv1.GetEventResponse{}
	err := g.s.db.InTxOptions(ctx, &sql.TxOptions{ReadOnly: true}, func(tx *sql.Tx) error {
		q := `SELECT e.project_id, e.event_id, e.issue_id, e.type, e.title, e.message, e.level, e.release, e.environment, e.platform, e.occurred_at, e.received_at, e.data
			FROM events e JOIN projects p ON p.id = e.project_id WHERE e.event_id = $1`
		args := []any{id}
		if pr := req.GetProject(); pr != "" {
			if n, err := strconv.ParseInt(pr, 10, 64); err == nil {
				q += ` AND p.id = $2`
				args = append(args, n)
			} else {
				q += ` AND p.name = $2`
				args = append(args, pr)
			}
		}
		rows, err := tx.QueryContext(ctx, q+` ORDER BY e.received_at DESC LIMIT 2`, args...)
		if err != nil {
			return err
		}
		var evs []*errortrackv1.ErrorEvent
		var projectID int64
		for rows.Next() {
			e := &errortrackv1.ErrorEvent{}
			var occ, recv int64
			if err := rows.Scan(&projectID, &e.EventId, &e.IssueId, &e.Type, &e.Title, &e.Message, &e.Level, &e.Release, &e.Environment, &e.Platform, &occ, &recv, &e.Json); err != nil {
				rows.Close()
				return err
			}
			e.Timestamp, e.ReceivedAt = ts(occ), ts(recv)
			evs = append(evs, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		switch len(evs) {
		case 0:
			return status.Errorf(codes.NotFound, "event %s not found", id)
		case 2:
			return status.Errorf(codes.FailedPrecondition, "event %s is in more than one project: name the project", id)
		}
		e := evs[0]
		if req.GetRaw() {
			e.Detail = readDetail(rawStacktraces(e.Json))
		} else {
			e.Detail = readDetail(e.Json)
		}
		if err := loadAttachments(ctx, tx, projectID, e); err != nil {
			return err
		}
		resp.Event = e
		if e.IssueId == 0 {
			return nil
		}
		is, err := loadIssue(ctx, tx, e.IssueId)
		if errors.Is(err, errNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fillIssue(ctx, tx, is); err != nil {
			return err
		}
		resp.Issue = is.Issue
		return nil
	})
	if err != nil {
		return nil, unavailable("reading event", err)
	}
	return resp, nil
}

func loadAttachments(ctx context.Context, q queryer, projectID int64, e *errortrackv1.ErrorEvent) error {
	rows, err := q.QueryContext(ctx, `SELECT filename, content_type, attachment_type, size FROM attachments WHERE project_id = $1 AND event_id = $2 ORDER BY position`, projectID, e.EventId)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		a := &errortrackv1.Attachment{}
		if err := rows.Scan(&a.Filename, &a.ContentType, &a.AttachmentType, &a.Size); err != nil {
			return err
		}
		e.Attachments = append(e.Attachments, a)
	}
	return rows.Err()
}

// ListTransactions summarises a project's transactions by release,
// environment and name.
func (g *grpcServer) ListTransactions(ctx context.Context, req *errortrackv1.ListTransactionsRequest) (*errortrackv1.ListTransactionsResponse, error) {
	resp := &errortrackv1.ListTransactionsResponse{}
	err := g.withProject(ctx, req.GetProject(), func(tx *sql.Tx, p project) error {
		var err error
		resp.Transactions, err = transactionSummaries(ctx, tx, p.id, req.GetRelease(), req.GetEnvironment())
		return err
	})
	if err != nil {
		return nil, unavailable("listing transactions", err)
	}
	return resp, nil
}

// transactionSummaries counts transactions by release, environment and
// name (the transaction's title), with p50 and p95 of their durations
// (timestamp - start_timestamp, read from the stored JSON), most frequent
// first. release and environment filter when set.
func transactionSummaries(ctx context.Context, q queryer, projectID int64, release, environment string) ([]*errortrackv1.TransactionSummary, error) {
	sqlq := `SELECT release, environment, title, data FROM events WHERE project_id = $1 AND type = 'transaction'`
	args := []any{projectID}
	if release != "" {
		args = append(args, release)
		sqlq += ` AND release = $2`
	}
	if environment != "" {
		args = append(args, environment)
		sqlq += ` AND environment = $` + strconv.Itoa(len(args))
	}
	rows, err := q.QueryContext(ctx, sqlq, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type key struct{ release, env, name string }
	durations := map[key][]float64{}
	var order []key
	for rows.Next() {
		var k key
		var data string
		if err := rows.Scan(&k.release, &k.env, &k.name, &data); err != nil {
			return nil, err
		}
		if _, ok := durations[k]; !ok {
			order = append(order, k)
			durations[k] = nil
		}
		var w struct {
			Start     json.RawMessage `json:"start_timestamp"`
			Timestamp json.RawMessage `json:"timestamp"`
		}
		d := -1.0
		if json.Unmarshal([]byte(data), &w) == nil {
			if s, e := detailTime(w.Start), detailTime(w.Timestamp); !s.IsZero() && !e.IsZero() && !e.Before(s) {
				d = float64(e.Sub(s).Microseconds()) / 1000
			}
		}
		durations[k] = append(durations[k], d)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]*errortrackv1.TransactionSummary, 0, len(order))
	for _, k := range order {
		ds := durations[k]
		var known []float64
		for _, d := range ds {
			if d >= 0 {
				known = append(known, d)
			}
		}
		sort.Float64s(known)
		out = append(out, &errortrackv1.TransactionSummary{Release: k.release, Environment: k.env, Name: k.name, Count: int64(len(ds)),
			P50Ms: percentile(known, 50), P95Ms: percentile(known, 95)})
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return strings.Compare(a.Release+"\x00"+a.Environment+"\x00"+a.Name, b.Release+"\x00"+b.Environment+"\x00"+b.Name) < 0
	})
	return out, nil
}

// percentile is the nearest-rank percentile of sorted values (0 for none).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
