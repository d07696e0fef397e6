package deploys

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// recordTickets finds ticket keys in the commit messages between the
// environment's previous release and d's (commits in the order pushes
// brought them) and records each as shipped to the environment in d's
// release.
func (s *Service) recordTickets(ctx context.Context, tx *bus.Tx, d *deployment) error {
	seqOf := func(sha string) (int64, error) {
		var seq int64
		err := tx.QueryRowContext(ctx, `SELECT seq FROM commits WHERE repository = $1 AND sha = $2`, d.repository, sha).Scan(&seq)
		if errors.Is(err, sql.ErrNoRows) {
			return -1, nil
		}
		return seq, err
	}
	to, err := seqOf(d.commit)
	if err != nil || to < 0 {
		return err
	}
	var from int64
	if d.previous != "" {
		var prevCommit string
		err := tx.QueryRowContext(ctx, `SELECT commit_sha FROM builds WHERE repository = $1 AND version = $2 ORDER BY created_at DESC LIMIT 1`, d.repository, d.previous).Scan(&prevCommit)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if from, err = seqOf(prevCommit); err != nil {
			return err
		}
		if from >= to {
			return nil // an older release: nothing new shipped
		}
		from = max(from, 0)
	}
	rows, err := tx.QueryContext(ctx, `SELECT sha, message FROM commits WHERE repository = $1 AND seq > $2 AND seq <= $3 ORDER BY seq`, d.repository, from, to)
	if err != nil {
		return err
	}
	type hit struct{ key, sha string }
	var hits []hit
	seen := map[string]bool{}
	for rows.Next() {
		var sha, msg string
		if err := rows.Scan(&sha, &msg); err != nil {
			rows.Close()
			return err
		}
		for _, k := range s.tickets.FindAllString(msg, -1) {
			if !seen[k] {
				seen[k] = true
				hits = append(hits, hit{k, sha})
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	notified := boolInt(s.cfg.TicketWebhook == "")
	for _, h := range hits {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tickets (deploy_id, ticket, repository, environment, version, commit_sha, at, notified) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (deploy_id, ticket) DO NOTHING`,
			d.id, h.key, d.repository, d.environment, d.version, h.sha, s.now().UnixNano(), notified); err != nil {
			return err
		}
		if err := s.publish(tx, "deploy.ticket_shipped", d, &eventsv1.TicketShipped{Deploy: d.ref(), Ticket: h.key, Commit: h.sha}); err != nil {
			return err
		}
	}
	return nil
}

// TicketNotice is the JSON body the ticket webhook receives.
type TicketNotice struct {
	Ticket      string    `json:"ticket"`
	Repository  string    `json:"repository"`
	Environment string    `json:"environment"`
	Version     string    `json:"version"`
	DeployID    string    `json:"deploy_id"`
	Commit      string    `json:"commit"`
	ShippedAt   time.Time `json:"shipped_at"`
	Text        string    `json:"text"`
}

// flushTickets posts tickets not yet notified, oldest first; a failure
// stops the round and they are tried again later.
func (s *Service) flushTickets(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT deploy_id, ticket, repository, environment, version, commit_sha, at FROM tickets WHERE notified = 0 ORDER BY at LIMIT 50`)
	if err != nil {
		return err
	}
	var pending []TicketNotice
	for rows.Next() {
		var n TicketNotice
		var at int64
		if err := rows.Scan(&n.DeployID, &n.Ticket, &n.Repository, &n.Environment, &n.Version, &n.Commit, &at); err != nil {
			rows.Close()
			return err
		}
		n.ShippedAt = time.Unix(0, at).UTC()
		n.Text = fmt.Sprintf("%s shipped to %s in %s", n.Ticket, n.Environment, n.Version)
		pending = append(pending, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, n := range pending {
		body, _ := json.Marshal(n)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.cfg.TicketWebhook, bytes.NewReader(body))
		if err != nil {
			cancel()
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.http.Do(req)
		cancel()
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("HTTP %d for %s", resp.StatusCode, n.Ticket)
		}
		if _, err := s.db.ExecContext(ctx, `UPDATE tickets SET notified = 1 WHERE deploy_id = $1 AND ticket = $2`, n.DeployID, n.Ticket); err != nil {
			return err
		}
	}
	return nil
}
