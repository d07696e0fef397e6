package cdevents

import (
	"testing"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestScheduledRunIsABuildOnly: a scheduled pipeline's change (forge cron)
// is no change.merged; its build is queued like any other.
func TestScheduledRunIsABuildOnly(t *testing.T) {
	noPrev := func(string) (string, bool) { return "", false }
	ch := &eventsv1.Change{Forge: "cron", Schedule: "nightly", Repository: "acme/web", After: "abc123", Branch: "main"}
	if out := Export(bus.Event{ID: "e1", Type: "change.pushed", Data: ch}, noPrev); len(out) != 0 {
		t.Errorf("a scheduled change exported %v", out)
	}
	b := &eventsv1.BuildCreated{BuildId: "b1", Repository: "acme/web", Trigger: "cron", Commit: "abc123"}
	out := Export(bus.Event{ID: "e2", Type: "build.created", Data: b}, noPrev)
	if len(out) != 1 || out[0].Context.Type != "dev.cdevents.build.queued.0.3.0" {
		t.Errorf("a scheduled build exported %v", out)
	}
}
