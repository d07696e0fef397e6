package errortrack

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// deploysDurable follows the deploys service: a release starts running in
// an environment when its deploy job starts, and that is what orders
// releases for regressions and what "first seen in deploy" points at.
const deploysDurable = "errortrack-deploys"

// handleDeploy records a deploy for every project that names the deployed
// repository (projects.repository), in the same transaction as the inbox.
func (s *Service) handleDeploy(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	d, ok := ev.Data.(*eventsv1.DeployStarted)
	if !ok || d.GetDeploy().GetRelease() == "" || d.GetDeploy().GetRepository() == "" {
		return nil
	}
	ref := d.GetDeploy()
	at := time.Now()
	if d.GetStartedAt() != nil {
		at = d.GetStartedAt().AsTime()
	}
	rows, err := tx.QueryContext(ctx, `SELECT id FROM projects WHERE repository = $1`, ref.GetRepository())
	if err != nil {
		return err
	}
	var projects []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		projects = append(projects, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, p := range projects {
		if _, err := tx.ExecContext(ctx, `INSERT INTO deploys (id, project_id, release, environment, deployed_at, commits, chain_id, commit_sha) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			bus.NewID(), p, ref.GetRelease(), ref.GetEnvironment(), at.UnixNano(), "[]", ev.ChainID, ref.GetCommit()); err != nil {
			return fmt.Errorf("recording deploy %s of %s: %w", ref.GetDeployId(), ref.GetRelease(), err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO releases (project_id, version, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, p, ref.GetRelease(), at.UnixNano()); err != nil {
			return err
		}
	}
	return nil
}

// chainFor is the chain id of the change that deployed release to
// environment: the latest deploy at or before ts, else the latest one (an
// SDK clock ahead of the deploy's). An SDK release "web@1.2.0" matches the
// deployed "1.2.0". A release shiploop never deployed has no chain ("").
func chainFor(ctx context.Context, q queryer, projectID int64, release, environment string, ts int64) string {
	if release == "" {
		return ""
	}
	var chain string
	err := q.QueryRowContext(ctx, `SELECT chain_id FROM deploys WHERE project_id = $1 AND environment = $3 AND (release = $2 OR $2 LIKE '%@' || release)
		ORDER BY CASE WHEN deployed_at <= $4 THEN 0 ELSE 1 END, deployed_at DESC LIMIT 1`,
		projectID, release, environment, ts).Scan(&chain)
	if err != nil {
		return ""
	}
	return chain
}

// releaseWindow answers, for a deploy's verification, what errortrack
// received from environment in [since, until): error events, transactions
// and sessions under release (as deployed, or with a package prefix:
// "web@1.2.0" for "1.2.0"), and error events under every other release in
// that environment (a release mismatch: the old version still serving, or
// an app that reports "dev" or nothing). Errors and transactions count by
// when errortrack received them; single sessions by their last update,
// aggregated ones by the minute they started.
func releaseWindow(ctx context.Context, q queryer, projectID int64, release, environment string, since, until time.Time) (*errortrackv1.ReleaseWindow, error) {
	if environment == "" {
		environment = "production"
	}
	w := &errortrackv1.ReleaseWindow{Release: release, Environment: environment, Since: timestamppb.New(since), Until: timestamppb.New(until),
		OtherReleaseErrors: map[string]int64{}}
	from, to, like := since.UnixNano(), until.UnixNano(), "%@"+release
	rows, err := q.QueryContext(ctx, `SELECT release, type, COUNT(*) FROM events WHERE project_id = $1 AND environment = $2 AND received_at >= $3 AND received_at < $4
		AND (type = 'transaction' OR level IN ('error', 'fatal')) GROUP BY release, type`, projectID, environment, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var rel, typ string
		var n int64
		if err := rows.Scan(&rel, &typ, &n); err != nil {
			return nil, err
		}
		mine := rel == release || (release != "" && strings.HasSuffix(rel, "@"+release))
		switch {
		case mine && typ == "transaction":
			w.Transactions += n
		case mine:
			w.Errors += n
		case typ != "transaction":
			w.OtherReleaseErrors[rel] += n
			w.OtherErrors += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var single, aggregated int64
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions WHERE project_id = $1 AND environment = $2 AND (release = $3 OR release LIKE $4) AND updated >= $5 AND updated < $6`,
		projectID, environment, release, like, from, to).Scan(&single); err != nil {
		return nil, err
	}
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(SUM(exited + errored + crashed + abnormal), 0) FROM session_aggregates WHERE project_id = $1 AND environment = $2 AND (release = $3 OR release LIKE $4) AND started >= $5 AND started < $6`,
		projectID, environment, release, like, since.Truncate(time.Minute).UnixNano(), to).Scan(&aggregated); err != nil {
		return nil, err
	}
	w.Sessions = single + aggregated
	return w, nil
}
