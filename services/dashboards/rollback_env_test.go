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

// TestEnvironmentsPageSaysRollback: after a failed deploy rolled back, the
// environments page shows the restored release "by rollback", from which
// release and why, although deploy.finished of the rollback says
// "deployed"; before, the approved deploy with its approver.
func TestEnvironmentsPageSaysRollback(t *testing.T) {
	storetest.Engines(t, "dashboards", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db, time.Time{})
		const r = "acme/rb"
		t0 := time.Now().Add(-time.Hour)
		ref := func(id, release, kind, by string) *eventsv1.DeployRef {
			return &eventsv1.DeployRef{DeployId: id, Repository: r, Environment: "production", Release: release, Kind: kind, TriggeredBy: by, BuildId: "b-" + release}
		}
		good := ref("d1", "1.0.0", "deploy", "auto")
		h.publish(t, "deploy.approved", r, "chain-good", t0, &eventsv1.DeployApproved{Deploy: good, Approver: "ann"})
		h.publish(t, "deploy.started", r, "chain-good", t0, &eventsv1.DeployStarted{Deploy: good, StartedAt: timestamppb.New(t0)})
		h.publish(t, "deploy.finished", r, "chain-good", t0, &eventsv1.DeployFinished{Deploy: good, Status: eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED,
			Reason: "deployed", FinishedAt: timestamppb.New(t0.Add(time.Minute))})
		until(t, "1.0.0 approved by ann", func() bool {
			_, _, body := h.get(t, "/environments?repo="+r)
			return strings.Contains(body, "1.0.0") && strings.Contains(body, "<td>ann</td>")
		})
		if _, _, body := h.get(t, "/environments?repo="+r); strings.Contains(body, "by rollback") {
			t.Errorf("a plain deploy shown as a rollback:\n%s", body)
		}

		t1 := t0.Add(10 * time.Minute)
		bad := ref("d2", "1.1.0", "deploy", "auto")
		h.publish(t, "deploy.approved", r, "chain-bad", t1, &eventsv1.DeployApproved{Deploy: bad, Approver: "bob"})
		h.publish(t, "deploy.finished", r, "chain-bad", t1, &eventsv1.DeployFinished{Deploy: bad, Status: eventsv1.DeployStatus_DEPLOY_STATUS_FAILED,
			Reason: "step deploy failed: exit code 3", FinishedAt: timestamppb.New(t1)})
		const cause = "deploy of 1.1.0 failed: step deploy failed: exit code 3 (on_failure: rollback)"
		back := ref("d3", "1.0.0", "rollback", "auto")
		h.publish(t, "deploy.rolled_back", r, "chain-bad", t1, &eventsv1.DeployRolledBack{Deploy: back, FromRelease: "1.1.0", ToRelease: "1.0.0",
			Cause: cause, RolledBackDeployId: "d2"})
		h.publish(t, "deploy.started", r, "chain-bad", t1, &eventsv1.DeployStarted{Deploy: back, StartedAt: timestamppb.New(t1)})
		h.publish(t, "deploy.finished", r, "chain-bad", t1, &eventsv1.DeployFinished{Deploy: back, Status: eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED,
			Reason: "deployed", FinishedAt: timestamppb.New(t1.Add(time.Minute))})
		want := "rolled back from 1.1.0: " + cause
		until(t, "1.0.0 by rollback on the environments page", func() bool {
			_, _, body := h.get(t, "/environments?repo="+r)
			return strings.Contains(body, "by rollback") && strings.Contains(body, want)
		})
		_, _, body := h.get(t, "/environments?repo="+r)
		if strings.Contains(body, "<td>bob</td>") || strings.Contains(body, "<td>ann</td>") {
			t.Errorf("the rollback, approved by nobody, shows an approver:\n%s", body)
		}
		// The rollback's row in the change's story keeps its cause too.
		ds, err := h.svc.deploys(t.Context(), `WHERE id = $1`, "d3")
		if err != nil || len(ds) != 1 || ds[0].Why() != want || ds[0].Reason != "deployed" {
			t.Errorf("rollback row %+v (%v): want why %q", ds, err, want)
		}
	})
}
