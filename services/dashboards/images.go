package dashboards

import (
	"context"
	"maps"
	"slices"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// imageView is an image of the build an environment runs (produces:
// {image: NAME} on a build step): its name and image ID.
type imageView struct {
	Name, ID string
}

// recordImages keeps the images a job produced under its build.
func recordImages(ctx context.Context, tx execer, d *eventsv1.JobFinished) error {
	for _, name := range slices.Sorted(maps.Keys(d.GetImages())) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO dash_build_images (build_id, name, image_id) VALUES ($1, $2, $3)
			ON CONFLICT (build_id, name) DO UPDATE SET image_id = excluded.image_id`, d.BuildId, name, d.Images[name]); err != nil {
			return err
		}
	}
	return nil
}

// envImages attaches the images of the build each environment's current
// deploy deployed.
func (s *Service) envImages(ctx context.Context, envs []envView) error {
	if len(envs) == 0 {
		return nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT e.repository, e.name, i.name, i.image_id FROM dash_environments e
		JOIN dash_deploys d ON d.id = e.deploy_id JOIN dash_build_images i ON i.build_id = d.build_id ORDER BY i.name`)
	if err != nil {
		return err
	}
	defer rows.Close()
	at := map[[2]string]int{}
	for i, e := range envs {
		at[[2]string{e.Repository, e.Name}] = i
	}
	for rows.Next() {
		var repo, env string
		var im imageView
		if err := rows.Scan(&repo, &env, &im.Name, &im.ID); err != nil {
			return err
		}
		if i, ok := at[[2]string{repo, env}]; ok {
			envs[i].Images = append(envs[i].Images, im)
		}
	}
	return rows.Err()
}
