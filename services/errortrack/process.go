package errortrack

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	"github.com/shiploop/shiploop/services/errortrack/envelope"
	"github.com/shiploop/shiploop/services/errortrack/event"
)

// errRace is a lost race with another replica creating the same issue; the
// envelope is retried and then finds the winner's issue.
var errRace = errors.New("another replica created this issue first")

// handleEnvelope stores one accepted envelope, all of it in tx with the
// inbox record: events grouped into issues, attachments, sessions, counters.
func (s *Service) handleEnvelope(ctx context.Context, tx *bus.Tx, ev bus.Event) (retErr error) {
	in, ok := ev.Data.(*errortrackv1.IngestedEnvelope)
	if !ok {
		return bus.Permanent(fmt.Errorf("ingest message %s carries %T, not an IngestedEnvelope", ev.ID, ev.Data))
	}
	body, err := s.envelopeBody(ctx, in)
	if err != nil {
		return err
	}
	if name := in.GetBodyObject(); name != "" {
		defer func() {
			if retErr == nil {
				s.forgetBigEnvelope(name)
			}
		}()
	}
	env, err := envelope.Parse(body, s.cfg.Limits)
	if err != nil {
		return bus.Permanent(fmt.Errorf("envelope: %w", err))
	}
	p, err := scanProject(tx.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE id = $1`, in.GetProjectId()))
	if errors.Is(err, errNotFound) {
		return nil // the project was deleted since: nothing to keep
	}
	if err != nil {
		return err
	}
	received := in.GetReceivedAt().AsTime()
	eventID := envelope.EventID(env.Header.EventID)
	counts := map[string]int64{}
	attachment := 0
	for _, it := range env.Items {
		switch it.Type {
		case "event", "transaction":
			if err := s.storeEvent(ctx, tx, p, eventID, it.Payload, received); err != nil {
				return err
			}
		case "attachment":
			attachment++
			ct := it.ContentType
			if ct == "" {
				ct = "application/octet-stream"
			}
			at := it.AttachmentType
			if at == "" {
				at = "event.attachment"
			}
			if err := s.storeAttachment(ctx, tx, p.id, eventID, attachment, it.Filename, ct, at, it.Payload); err != nil {
				return err
			}
		case "session":
			if err := storeSession(ctx, tx, p.id, it.Payload, received); err != nil {
				return err
			}
		case "sessions":
			if err := storeSessionAggregates(ctx, tx, p.id, it.Payload, received); err != nil {
				return err
			}
		case "client_report":
			counts["client_report"]++
			var rep struct {
				Discarded []struct {
					Reason   string `json:"reason"`
					Category string `json:"category"`
					Quantity int64  `json:"quantity"`
				} `json:"discarded_events"`
			}
			_ = json.Unmarshal(it.Payload, &rep)
			for _, d := range rep.Discarded {
				counts[event.Clean("discarded."+d.Category+"."+d.Reason, 100)] += d.Quantity
			}
		case "check_in":
			counts["check_in"]++
			var ci struct {
				Slug   string `json:"monitor_slug"`
				Status string `json:"status"`
			}
			_ = json.Unmarshal(it.Payload, &ci)
			if ci.Slug != "" {
				counts[event.Clean("check_in."+ci.Slug+"."+ci.Status, 100)]++
			}
		default:
			// Kept nowhere but counted: spans, logs, profiles, replays and
			// types this server does not know.
			counts[event.Clean("skipped."+it.Type, 100)]++
		}
	}
	for name, n := range counts {
		if _, err := tx.ExecContext(ctx, `INSERT INTO counters (project_id, name, value) VALUES ($1, $2, $3) ON CONFLICT (project_id, name) DO UPDATE SET value = counters.value + excluded.value`,
			p.id, name, n); err != nil {
			return fmt.Errorf("counting %s: %w", name, err)
		}
	}
	return nil
}

// storeEvent stores an event or transaction; an error or message event
// joins (or opens) its issue.
func (s *Service) storeEvent(ctx context.Context, tx *bus.Tx, p project, eventID string, payload []byte, received time.Time) error {
	ev, err := event.Parse(payload)
	if err != nil {
		return bus.Permanent(err)
	}
	if eventID == "" {
		eventID = envelope.EventID(ev.EventID)
	}
	var dup int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM events WHERE project_id = $1 AND event_id = $2`, p.id, eventID).Scan(&dup)
	if err == nil {
		return nil // seen before: counted once
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	// JavaScript frames mapped through uploaded source maps before
	// grouping (symbolicate.go); the minified ones stay as raw_stacktrace.
	if out, ok := s.symbolicate(ctx, tx, p.id, payload); ok {
		if sev, err := event.Parse(out); err == nil {
			payload, ev = out, sev
		}
	}
	when := ev.Timestamp
	if when.IsZero() || when.After(received.Add(time.Hour)) {
		when = received
	}
	release := event.Clean(ev.Release, 200)
	environment := event.Clean(ev.Environment, 64)
	if environment == "" {
		environment = "production"
	}
	if release != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO releases (project_id, version, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			p.id, release, when.UnixNano()); err != nil {
			return err
		}
	}
	var issueID int64
	g := event.Group(ev)
	if ev.Type != "transaction" {
		if issueID, err = s.groupIntoIssue(ctx, tx, p, ev, g, eventID, release, environment, when); err != nil {
			return err
		}
	}
	var errs, transactions int64
	switch {
	case ev.Type == "transaction":
		transactions = 1
	case ev.Level == "error" || ev.Level == "fatal":
		errs = 1
	}
	if err := countRelease(ctx, tx, p.id, release, environment, errs, transactions, 0, received); err != nil {
		return err
	}
	msg := ev.Formatted
	if msg == "" {
		msg = ev.Message
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO events (project_id, event_id, issue_id, type, title, message, level, release, environment, platform, occurred_at, received_at, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING`,
		p.id, eventID, issueID, ev.Type, g.Title, event.Clean(msg, 8192), event.Clean(ev.Level, 16), release, environment,
		event.Clean(ev.Platform, 32), when.UnixNano(), received.UnixNano(), event.Clean(string(payload), 0))
	if err != nil {
		return fmt.Errorf("storing event %s: %w", eventID, err)
	}
	return nil
}

// groupIntoIssue finds the event's issue by any of its hashes, or opens
// one; it updates counts and decides regressions.
func (s *Service) groupIntoIssue(ctx context.Context, tx *bus.Tx, p project, ev *event.Event, g event.Grouping, eventID, release, environment string, when time.Time) (int64, error) {
	var issueID int64
	known := map[string]bool{}
	{
		args := []any{p.id}
		ph := make([]string, len(g.Hashes))
		for i, h := range g.Hashes {
			args = append(args, h)
			ph[i] = fmt.Sprintf("$%d", i+2)
		}
		rows, err := tx.QueryContext(ctx, `SELECT hash, issue_id FROM issue_hashes WHERE project_id = $1 AND hash IN (`+strings.Join(ph, ", ")+`)`, args...)
		if err != nil {
			return 0, err
		}
		found := map[string]int64{}
		for rows.Next() {
			var h string
			var id int64
			if err := rows.Scan(&h, &id); err != nil {
				rows.Close()
				return 0, err
			}
			found[h] = id
			known[h] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, err
		}
		// The most specific hash wins when hashes point at different issues.
		for _, h := range g.Hashes {
			if id, ok := found[h]; ok {
				issueID = id
				break
			}
		}
	}
	ts := when.UnixNano()
	userKey := event.Clean(ev.User.Key(), 200)
	opened := issueID == 0
	// The change that deployed this release here, if shiploop deployed it:
	// the issue events its errors cause belong to that change's chain.
	chain := chainFor(ctx, tx, p.id, release, environment, ts)
	if opened {
		files, _ := json.Marshal(g.Files)
		deployID := s.deployFor(ctx, tx, p.id, release, environment, ts)
		// The title stays the first event's (Sentry keeps an issue's title
		// unless its grouping metadata changes; later events do not rename
		// it). short_number counts the project's issues in the order they
		// opened: issues open here, one envelope after another.
		err := tx.QueryRowContext(ctx, `INSERT INTO issues (project_id, title, culprit, level, type, platform, status, times_seen, first_seen, last_seen, first_release, last_release, first_environment, first_deploy_id, last_event_id, grouping_version, files, short_number)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, $9, $9, $10, $11, $12, $13, $14, (SELECT COALESCE(MAX(short_number), 0) + 1 FROM issues WHERE project_id = $1)) RETURNING id`,
			p.id, g.Title, g.Culprit, event.Clean(ev.Level, 16), ev.Type, event.Clean(ev.Platform, 32), int32(errortrackv1.IssueStatus_ISSUE_STATUS_UNRESOLVED),
			ts, release, environment, deployID, eventID, p.groupingVer, string(files)).Scan(&issueID)
		if err != nil {
			return 0, fmt.Errorf("opening issue: %w", err)
		}
		oe := bus.NewEvent("errortrack.issue.opened", p.repository, fmt.Sprint(issueID), &errortrackv1.IssueOpened{
			Issue: issueRef(p, issueID, g.Title, g.Culprit, ev.Level, when), Release: release, Environment: environment, DeployId: deployID,
			SuspectCommits: suspectsFor(ctx, tx, releaseDeploy(ctx, tx, p.id, release, environment, ts), string(files)),
		})
		oe.ChainID = chain
		if err := tx.Publish(oe); err != nil {
			return 0, err
		}
	}
	for i, h := range g.Hashes {
		if known[h] {
			continue
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO issue_hashes (project_id, hash, issue_id, grouping_version) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
			p.id, h, issueID, p.groupingVer)
		if err != nil {
			return 0, err
		}
		if n, _ := res.RowsAffected(); n == 0 && opened && i == 0 {
			return 0, errRace
		}
	}
	newUser := int64(0)
	if userKey != "" {
		res, err := tx.ExecContext(ctx, `INSERT INTO issue_users (issue_id, user_key) VALUES ($1, $2) ON CONFLICT DO NOTHING`, issueID, userKey)
		if err != nil {
			return 0, err
		}
		newUser, _ = res.RowsAffected()
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO issue_releases (issue_id, release, environment, times_seen, first_seen, last_seen) VALUES ($1, $2, $3, 1, $4, $4)
		ON CONFLICT (issue_id, release, environment) DO UPDATE SET times_seen = issue_releases.times_seen + 1,
		first_seen = CASE WHEN excluded.first_seen < issue_releases.first_seen THEN excluded.first_seen ELSE issue_releases.first_seen END,
		last_seen = CASE WHEN excluded.last_seen > issue_releases.last_seen THEN excluded.last_seen ELSE issue_releases.last_seen END`,
		issueID, release, environment, ts); err != nil {
		return 0, err
	}
	var status int32
	var resolvedIn, title, culprit, level, issueFiles string
	var firstSeen int64
	if err := tx.QueryRowContext(ctx, `SELECT status, resolved_in_release, title, culprit, level, first_seen, files FROM issues WHERE id = $1`, issueID).
		Scan(&status, &resolvedIn, &title, &culprit, &level, &firstSeen, &issueFiles); err != nil {
		return 0, err
	}
	regress := false
	if !opened {
		switch errortrackv1.IssueStatus(status) {
		case errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED:
			// Back unless the event comes from a release older than the fix.
			c, err := compareReleases(ctx, tx, p.id, environment, release, resolvedIn)
			if err != nil {
				return 0, err
			}
			regress = release == "" || resolvedIn == "" || c >= 0
		case errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED_IN_NEXT_RELEASE:
			// Back only from a release newer than the one seen at resolve time.
			if release != "" {
				c, err := compareReleases(ctx, tx, p.id, environment, release, resolvedIn)
				if err != nil {
					return 0, err
				}
				regress = resolvedIn == "" || c > 0
			}
		}
	}
	q := `UPDATE issues SET times_seen = times_seen + 1, users = users + $2, last_event_id = $3,
		last_seen = CASE WHEN $4 > last_seen THEN $4 ELSE last_seen END,
		last_release = CASE WHEN $4 >= last_seen THEN $5 ELSE last_release END`
	args := []any{issueID, newUser, eventID, ts, release}
	if regress {
		q += `, status = $6, regressed = regressed + 1, resolved_at = 0`
		args = append(args, int32(errortrackv1.IssueStatus_ISSUE_STATUS_UNRESOLVED))
	}
	if _, err := tx.ExecContext(ctx, q+` WHERE id = $1`, args...); err != nil {
		return 0, err
	}
	if regress {
		re := bus.NewEvent("errortrack.issue.regressed", p.repository, fmt.Sprint(issueID), &errortrackv1.IssueRegressed{
			Issue:   issueRef(p, issueID, title, culprit, level, time.Unix(0, firstSeen)),
			Release: release, Environment: environment, ResolvedInRelease: resolvedIn,
			SuspectCommits: suspectsFor(ctx, tx, releaseDeploy(ctx, tx, p.id, release, environment, ts), issueFiles),
		})
		re.ChainID = chain
		if err := tx.Publish(re); err != nil {
			return 0, err
		}
	}
	return issueID, nil
}

// deployFor is the latest deploy of release to environment at or before ts.
func (s *Service) deployFor(ctx context.Context, q queryer, projectID int64, release, environment string, ts int64) string {
	if release == "" {
		return ""
	}
	var id string
	err := q.QueryRowContext(ctx, `SELECT id FROM deploys WHERE project_id = $1 AND release = $2 AND environment = $3 AND deployed_at <= $4 ORDER BY deployed_at DESC LIMIT 1`,
		projectID, release, environment, ts).Scan(&id)
	if err != nil {
		return ""
	}
	return id
}

// storeSession records one session update; the worst status wins.
func storeSession(ctx context.Context, tx *bus.Tx, projectID int64, payload []byte, received time.Time) error {
	var ss struct {
		SID     string          `json:"sid"`
		Status  string          `json:"status"`
		Errors  int64           `json:"errors"`
		Started json.RawMessage `json:"started"`
		Attrs   struct {
			Release     string `json:"release"`
			Environment string `json:"environment"`
		} `json:"attrs"`
	}
	if err := json.Unmarshal(payload, &ss); err != nil || ss.SID == "" {
		return nil // not a session we can count; the item was valid JSON
	}
	started := parseSessionTime(ss.Started, received)
	env := ss.Attrs.Environment
	if env == "" {
		env = "production"
	}
	status := sessionStatus(ss.Status, ss.Errors)
	var known int
	switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM sessions WHERE project_id = $1 AND sid = $2`, projectID, event.Clean(ss.SID, 64)).Scan(&known); {
	case errors.Is(err, sql.ErrNoRows):
		// A session counts as traffic of its release once, when it starts.
		if err := countRelease(ctx, tx, projectID, event.Clean(ss.Attrs.Release, 200), event.Clean(env, 64), 0, 0, 1, received); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO sessions (project_id, sid, release, environment, status, errors, started, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (project_id, sid) DO UPDATE SET errors = CASE WHEN excluded.errors > sessions.errors THEN excluded.errors ELSE sessions.errors END,
		status = CASE WHEN sessions.status IN ('crashed', 'abnormal') THEN sessions.status WHEN excluded.status = 'ok' AND sessions.status = 'errored' THEN sessions.status ELSE excluded.status END,
		updated = excluded.updated`,
		projectID, event.Clean(ss.SID, 64), event.Clean(ss.Attrs.Release, 200), event.Clean(env, 64), status, ss.Errors, started.UnixNano(), received.UnixNano())
	if err != nil {
		return fmt.Errorf("storing session: %w", err)
	}
	if ss.Attrs.Release != "" {
		_, err = tx.ExecContext(ctx, `INSERT INTO releases (project_id, version, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, projectID, event.Clean(ss.Attrs.Release, 200), started.UnixNano())
	}
	return err
}

func sessionStatus(status string, errs int64) string {
	switch status {
	case "crashed", "abnormal":
		return status
	}
	if errs > 0 || status == "errored" {
		return "errored"
	}
	return "ok"
}

func parseSessionTime(raw json.RawMessage, def time.Time) time.Time {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t
		}
	}
	return def
}

// storeSessionAggregates adds a "sessions" item's buckets.
func storeSessionAggregates(ctx context.Context, tx *bus.Tx, projectID int64, payload []byte, received time.Time) error {
	var agg struct {
		Aggregates []struct {
			Started  json.RawMessage `json:"started"`
			Exited   int64           `json:"exited"`
			Errored  int64           `json:"errored"`
			Crashed  int64           `json:"crashed"`
			Abnormal int64           `json:"abnormal"`
		} `json:"aggregates"`
		Attrs struct {
			Release     string `json:"release"`
			Environment string `json:"environment"`
		} `json:"attrs"`
	}
	if json.Unmarshal(payload, &agg) != nil {
		return nil
	}
	env := agg.Attrs.Environment
	if env == "" {
		env = "production"
	}
	rel := event.Clean(agg.Attrs.Release, 200)
	var started int64
	for _, a := range agg.Aggregates {
		started += max(a.Exited, 0) + max(a.Errored, 0) + max(a.Crashed, 0) + max(a.Abnormal, 0)
	}
	if err := countRelease(ctx, tx, projectID, rel, event.Clean(env, 64), 0, 0, started, received); err != nil {
		return err
	}
	for _, a := range agg.Aggregates {
		started := parseSessionTime(a.Started, time.Now()).Truncate(time.Minute)
		if _, err := tx.ExecContext(ctx, `INSERT INTO session_aggregates (project_id, release, environment, started, exited, errored, crashed, abnormal) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (project_id, release, environment, started) DO UPDATE SET exited = session_aggregates.exited + excluded.exited,
			errored = session_aggregates.errored + excluded.errored, crashed = session_aggregates.crashed + excluded.crashed, abnormal = session_aggregates.abnormal + excluded.abnormal`,
			projectID, rel, event.Clean(env, 64), started.UnixNano(), max(a.Exited, 0), max(a.Errored, 0), max(a.Crashed, 0), max(a.Abnormal, 0)); err != nil {
			return fmt.Errorf("storing session aggregates: %w", err)
		}
	}
	if rel != "" {
		_, err := tx.ExecContext(ctx, `INSERT INTO releases (project_id, version, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, projectID, rel, time.Now().UnixNano())
		return err
	}
	return nil
}
