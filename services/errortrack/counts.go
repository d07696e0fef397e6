package errortrack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// countRelease adds what an envelope brought for release in environment to
// release_counts, in the envelope's transaction (so a retried envelope is
// counted once, by the inbox). Items without a release cannot be compared
// with anything and are left out.
func countRelease(ctx context.Context, tx *bus.Tx, projectID int64, release, environment string, errs, transactions, sessions int64, received time.Time) error {
	if release == "" || errs+transactions+sessions == 0 {
		return nil
	}
	at := received.UnixNano()
	_, err := tx.ExecContext(ctx, `INSERT INTO release_counts (project_id, release, environment, errors, transactions, sessions, first_received, last_received) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
		ON CONFLICT (project_id, release, environment) DO UPDATE SET errors = release_counts.errors + excluded.errors,
		transactions = release_counts.transactions + excluded.transactions, sessions = release_counts.sessions + excluded.sessions,
		first_received = CASE WHEN excluded.first_received < release_counts.first_received THEN excluded.first_received ELSE release_counts.first_received END,
		last_received = CASE WHEN excluded.last_received > release_counts.last_received THEN excluded.last_received ELSE release_counts.last_received END`,
		projectID, release, environment, errs, transactions, sessions, at)
	if err != nil {
		return fmt.Errorf("counting release %s in %s: %w", release, environment, err)
	}
	return nil
}

// publishCounts runs publishCountsOnce every interval until ctx ends.
func (s *Service) publishCounts(ctx context.Context) error {
	t := time.NewTicker(s.cfg.CountInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := s.publishCountsOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("publishing release counts", "err", err)
		}
	}
}

// publishCountsOnce turns the counts gathered since the last call into
// errortrack.release.counted events and forgets them, in one transaction
// with the outbox: each count is published once, even with several
// replicas (the DELETE takes the rows) or a crash in between.
func (s *Service) publishCountsOnce(ctx context.Context) error {
	return s.ob.InTx(ctx, func(tx *bus.Tx) error {
		rows, err := tx.QueryContext(ctx, `DELETE FROM release_counts RETURNING project_id, release, environment, errors, transactions, sessions, first_received, last_received`)
		if err != nil {
			return err
		}
		var counts []*errortrackv1.ReleaseCounted
		for rows.Next() {
			c := &errortrackv1.ReleaseCounted{}
			var first, last int64
			if err := rows.Scan(&c.ProjectId, &c.Release, &c.Environment, &c.Errors, &c.Transactions, &c.Sessions, &first, &last); err != nil {
				rows.Close()
				return err
			}
			c.FirstReceived, c.LastReceived = timestamppb.New(time.Unix(0, first)), timestamppb.New(time.Unix(0, last))
			counts = append(counts, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		projects := map[int64]project{}
		for _, c := range counts {
			p, ok := projects[c.ProjectId]
			if !ok {
				if p, err = scanProject(tx.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE id = $1`, c.ProjectId)); err != nil && !errors.Is(err, errNotFound) {
					return err
				}
				projects[c.ProjectId] = p
			}
			if p.id == 0 {
				continue // the project was deleted since
			}
			c.Project = p.name
			if err := tx.Publish(bus.NewEvent("errortrack.release.counted", p.repository, c.Release, c)); err != nil {
				return err
			}
		}
		return nil
	})
}
