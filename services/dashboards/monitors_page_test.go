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

// TestEnvironmentsPageShowsMonitors: the environments page shows each
// monitor's newest state (monitor.state_changed), not an older one that
// arrives late.
func TestEnvironmentsPageShowsMonitors(t *testing.T) {
	storetest.Engines(t, "dashboards", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db, time.Time{})
		const r = "acme/mon"
		t0 := time.Now().Add(-time.Hour)
		ref := &eventsv1.DeployRef{DeployId: "d1", Repository: r, Environment: "staging", Release: "1.0.0", Kind: "deploy", TriggeredBy: "auto", BuildId: "b1"}
		h.publish(t, "deploy.finished", r, "c1", t0, &eventsv1.DeployFinished{Deploy: ref, Status: eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED, Reason: "deployed", FinishedAt: timestamppb.New(t0)})
		change := func(at time.Time, from, to eventsv1.MonitorState, detail string) {
			h.publish(t, "monitor.state_changed", r, "", at, &eventsv1.MonitorStateChanged{Repository: r, Environment: "staging", Monitor: "web-up",
				From: from, To: to, Detail: detail, Since: timestamppb.New(at), Release: "1.0.0"})
		}
		change(t0.Add(2*time.Minute), eventsv1.MonitorState_MONITOR_STATE_OK, eventsv1.MonitorState_MONITOR_STATE_CRITICAL, "GET https://app/healthz answered 503")
		change(t0.Add(time.Minute), eventsv1.MonitorState_MONITOR_STATE_UNKNOWN, eventsv1.MonitorState_MONITOR_STATE_OK, "answered 200")
		until(t, "web-up CRITICAL on the environments page", func() bool {
			_, _, body := h.get(t, "/environments?repo="+r)
			return strings.Contains(body, "web-up: CRITICAL") && strings.Contains(body, "answered 503")
		})
		time.Sleep(200 * time.Millisecond)
		if _, _, body := h.get(t, "/environments?repo="+r); !strings.Contains(body, "web-up: CRITICAL") {
			t.Errorf("an older state change overwrote the newer:\n%s", body)
		}
	})
}
