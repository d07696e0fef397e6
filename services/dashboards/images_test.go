package dashboards

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestEnvironmentsPageShowsImages: the environments pages show the image
// IDs of the build an environment's current deploy deployed (job.finished
// images of that build).
func TestEnvironmentsPageShowsImages(t *testing.T) {
	storetest.Engines(t, "dashboards", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db, time.Time{})
		const r = "acme/img"
		id := "sha256:" + strings.Repeat("0f", 32)
		t0 := time.Now().Add(-time.Hour)
		h.publish(t, "job.finished", r, "c1", t0, &eventsv1.JobFinished{JobId: "j1", BuildId: "b1", Repository: r, Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, Images: map[string]string{"app": id}})
		ref := &eventsv1.DeployRef{DeployId: "d1", Repository: r, Environment: "staging", Release: "1.0.0", Kind: "deploy", TriggeredBy: "auto", BuildId: "b1"}
		h.publish(t, "deploy.finished", r, "c1", t0.Add(time.Minute), &eventsv1.DeployFinished{Deploy: ref, Status: eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED, Reason: "deployed", FinishedAt: timestamppb.New(t0.Add(time.Minute))})
		until(t, "the image on the environments page", func() bool {
			_, _, body := h.get(t, "/environments?repo="+r)
			return strings.Contains(body, "app <code>"+id+"</code>")
		})
		if _, _, body := h.get(t, "/environments/"+r+"/staging"); !strings.Contains(body, "image app <code>"+id+"</code>") {
			t.Errorf("the environment's page does not show the image:\n%s", body)
		}
	})
}
