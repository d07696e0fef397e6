package builds

import (
	"context"
	"slices"
	"testing"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestBuildImages: a step's produces: {image: NAME} reaches the agent as
// Step.produces_images, and the image IDs the agent reports in job.finished
// are recorded on the build (Build.images).
func TestBuildImages(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		dir, sha := gitRepo(t, map[string]string{".shiploop.yml": "steps:\n  image:\n    commands: [docker build -t app .]\n    produces: {image: app}\n  other: {commands: [true]}\n"})
		if _, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/img", CloneUrl: dir}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.acceptChange(ctx, &eventsv1.Change{
			Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "github", DeliveryId: "img1", Repository: "acme/img",
			CloneUrl: dir, Ref: "refs/heads/main", Branch: "main", After: sha,
		}); err != nil {
			t.Fatal(err)
		}
		job := h.nextJob(ctx)
		if got := job.GetSteps()[0].GetProducesImages(); !slices.Equal(got, []string{"app"}) || len(job.GetSteps()[1].GetProducesImages()) != 0 {
			t.Fatalf("steps %v: want only image producing app", job.GetSteps())
		}
		const id = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
		if err := h.bus.Publish(ctx, bus.Event{Type: "job.finished", Repository: "acme/img", Subject: job.GetJobId(), Data: &eventsv1.JobFinished{
			JobId: job.GetJobId(), BuildId: job.GetBuildId(), Repository: "acme/img", Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS,
			Agent: "a1", Images: map[string]string{"app": id}}}); err != nil {
			t.Fatal(err)
		}
		b := h.waitBuild(ctx, job.GetBuildId(), eventsv1.BuildStatus_BUILD_STATUS_SUCCESS)
		if b.GetImages()["app"] != id || len(b.GetImages()) != 1 {
			t.Errorf("build images %v, want app=%s", b.GetImages(), id)
		}
	})
}
