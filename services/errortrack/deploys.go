package errortrack

import (
	"context"
	"fmt"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
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
		if _, err := tx.ExecContext(ctx, `INSERT INTO deploys (id, project_id, release, environment, deployed_at, commits) VALUES ($1, $2, $3, $4, $5, $6)`,
			bus.NewID(), p, ref.GetRelease(), ref.GetEnvironment(), at.UnixNano(), "[]"); err != nil {
			return fmt.Errorf("recording deploy %s of %s: %w", ref.GetDeployId(), ref.GetRelease(), err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO releases (project_id, version, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, p, ref.GetRelease(), at.UnixNano()); err != nil {
			return err
		}
	}
	return nil
}
