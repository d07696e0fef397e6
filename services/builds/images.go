package builds

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/shiploop/shiploop/pkg/bus"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// recordImages keeps the images a job's steps produced (JobFinished.images:
// name -> image ID) on its build. A later job's image of the same name
// (another matrix combination) is kept too; Build.images shows one per
// name, the last job's by job id.
func recordImages(ctx context.Context, tx *bus.Tx, d *eventsv1.JobFinished) error {
	for _, name := range slices.Sorted(maps.Keys(d.GetImages())) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO build_images (build_id, job_id, name, image_id) VALUES ($1, $2, $3, $4)
			ON CONFLICT (job_id, name) DO UPDATE SET image_id = excluded.image_id`, d.BuildId, d.JobId, name, d.Images[name]); err != nil {
			return fmt.Errorf("recording image %s: %w", name, err)
		}
	}
	return nil
}

// fillImages sets b.Images from build_images.
func fillImages(ctx context.Context, q queryer, b *buildsv1.Build) error {
	rows, err := q.QueryContext(ctx, `SELECT name, image_id FROM build_images WHERE build_id = $1 ORDER BY job_id, name`, b.Id)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name, id string
		if err := rows.Scan(&name, &id); err != nil {
			return err
		}
		if b.Images == nil {
			b.Images = map[string]string{}
		}
		b.Images[name] = id
	}
	return rows.Err()
}
