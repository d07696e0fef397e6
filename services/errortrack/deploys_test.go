package errortrack

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestDeployEventsRecordReleases: a deploy.started event of the repository
// a project names records the release as running in that environment, once
// even when the event is delivered twice; other repositories' deploys are
// not this project's.
func TestDeployEventsRecordReleases(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		h.project("web", 0)
		if _, err := h.api.UpdateProject(ctx, &errortrackv1.UpdateProjectRequest{Project: "web", Repository: "acme/web"}); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		deploy := func(repo, release string) bus.Event {
			return bus.Event{Type: "deploy.started", Repository: repo, Subject: "d-" + release, Data: &eventsv1.DeployStarted{
				Deploy:    &eventsv1.DeployRef{DeployId: "d-" + release, Repository: repo, Environment: "production", Release: release, Kind: "deploy"},
				StartedAt: timestamppb.New(at),
			}}
		}
		// Another repository's deploy first: once the later one is recorded,
		// the consumer (in stream order) has handled it too.
		if err := h.bus.Publish(ctx, deploy("acme/other", "9.9.9")); err != nil {
			t.Fatal(err)
		}
		ev := deploy("acme/web", "1.4.0")
		ev.ID = bus.NewID()
		for range 2 { // the same event twice
			if err := h.bus.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(20 * time.Second)
		for h.count(`SELECT COUNT(*) FROM deploys WHERE release = '1.4.0' AND environment = 'production'`) != 1 {
			if time.Now().After(deadline) {
				t.Fatal("the deploy was not recorded within 20s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		resp, err := h.api.ListReleases(ctx, &errortrackv1.ListReleasesRequest{Project: "web"})
		if err != nil || len(resp.GetReleases()) != 1 || resp.GetReleases()[0].GetVersion() != "1.4.0" || !resp.GetReleases()[0].GetFirstSeen().AsTime().Equal(at) {
			t.Fatalf("ListReleases = %v, %v", resp.GetReleases(), err)
		}
		if n := h.count(`SELECT COUNT(*) FROM deploys WHERE release = '9.9.9'`); n != 0 {
			t.Errorf("another repository's deploy was recorded %d times", n)
		}
	})
}
