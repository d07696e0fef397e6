package deploys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"maps"
	"strings"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// Artifact promotion: a build step that declares produces: {image: NAME}
// has its image's ID (sha256:..., read by the agent from its Docker engine
// after the step) reported in job.finished. Deploys records it on the
// build (builds.images) and every deploy of that build, the promotion to
// the next environment and a rollback to it included, hands the same ID to
// its job: deploys deploy a build, never a rebuild, so the digest follows
// the build record.

// recordImages merges a job's produced images into its build's.
func recordImages(ctx context.Context, tx *bus.Tx, j *eventsv1.JobFinished) error {
	if len(j.GetImages()) == 0 || j.GetBuildId() == "" {
		return nil
	}
	images, err := buildImages(ctx, tx, j.BuildId)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // not a build deploys knows
	}
	if err != nil {
		return err
	}
	if images == nil {
		images = map[string]string{}
	}
	maps.Copy(images, j.Images)
	data, _ := json.Marshal(images)
	_, err = tx.ExecContext(ctx, `UPDATE builds SET images = $1 WHERE id = $2`, string(data), j.BuildId)
	return err
}

// buildImages are the images recorded on a build (nil for none).
func buildImages(ctx context.Context, q querier, buildID string) (map[string]string, error) {
	var raw string
	if err := q.QueryRowContext(ctx, `SELECT images FROM builds WHERE id = $1`, buildID).Scan(&raw); err != nil {
		return nil, err
	}
	if raw == "" {
		return nil, nil
	}
	var images map[string]string
	if err := json.Unmarshal([]byte(raw), &images); err != nil {
		return nil, nil
	}
	return images, nil
}

// ImageEnv is what a deploy job of a build with images sees:
// SHIPLOOP_IMAGE_<NAME> per image (NAME upper-cased, every character other
// than A-Z and 0-9 becoming _, so app:ci gives SHIPLOOP_IMAGE_APP_CI) and,
// when the build produced exactly one, SHIPLOOP_IMAGE too. Values are
// image IDs (sha256:<hex>), which `docker run` takes as they are.
func ImageEnv(images map[string]string) map[string]string {
	if len(images) == 0 {
		return nil
	}
	out := map[string]string{}
	for name, id := range images {
		out["SHIPLOOP_IMAGE_"+ImageEnvName(name)] = id
		if len(images) == 1 {
			out["SHIPLOOP_IMAGE"] = id
		}
	}
	return out
}

// ImageEnvName is NAME of SHIPLOOP_IMAGE_<NAME> for an image name.
func ImageEnvName(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b)
}
