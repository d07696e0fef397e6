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

// TestEnvironmentPageShowsRunbooks: runbook runs (runbook.started/finished)
// are in the environment page's history, a data run on both its
// environments' pages, with environment.data_copied; a late started does
// not take a finished run back to running.
func TestEnvironmentPageShowsRunbooks(t *testing.T) {
	storetest.Engines(t, "dashboards", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db, time.Time{})
		const r = "acme/ops"
		t0 := time.Now().Add(-time.Hour)
		run := &eventsv1.RunbookRun{RunId: "run1", Repository: r, Runbook: "refresh-staging", Kind: "data", FromEnvironment: "production", Environment: "staging",
			By: "ops-oncall", Status: "running", StartedAt: timestamppb.New(t0)}
		fin := &eventsv1.RunbookRun{RunId: "run1", Repository: r, Runbook: "refresh-staging", Kind: "data", FromEnvironment: "production", Environment: "staging",
			By: "ops-oncall", Status: "succeeded", StartedAt: timestamppb.New(t0), FinishedAt: timestamppb.New(t0.Add(time.Minute))}
		h.publish(t, "runbook.finished", r, "", t0.Add(time.Minute), &eventsv1.RunbookFinished{Run: fin})
		h.publish(t, "runbook.started", r, "", t0, &eventsv1.RunbookStarted{Run: run}) // late
		for _, env := range []string{"production", "staging"} {
			h.publish(t, "environment.data_copied", r, "", t0.Add(time.Minute), &eventsv1.DataCopied{Repository: r, Environment: env, FromEnvironment: "production",
				ToEnvironment: "staging", Runbook: "refresh-staging", RunId: "run1", By: "ops-oncall", At: timestamppb.New(t0.Add(time.Minute))})
		}
		task := &eventsv1.RunbookRun{RunId: "run2", Repository: r, Runbook: "restart", Kind: "task", Environment: "production", By: "ann",
			Options: map[string]string{"tier": "web"}, Status: "running", StartedAt: timestamppb.New(t0.Add(2 * time.Minute)), BuildId: "b7", JobId: "j7"}
		h.publish(t, "runbook.started", r, "", t0.Add(2*time.Minute), &eventsv1.RunbookStarted{Run: task})
		until(t, "runbook runs on production's page", func() bool {
			code, _, body := h.get(t, "/environments/"+r+"/production")
			return code == 200 && strings.Contains(body, "tier=web") && strings.Contains(body, "production → staging by <span class=\"who\">ops-oncall</span>")
		})
		_, _, body := h.get(t, "/environments/"+r+"/production")
		if !strings.Contains(body, `id="run-run1"`) || !strings.Contains(body, `id="run-run2"`) || !strings.Contains(body, `<a href="/builds/b7/jobs/j7/log.txt" class="log">log</a>`) {
			t.Errorf("production's page lacks a run:\n%s", body)
		}
		code, _, body := h.get(t, "/environments/"+r+"/staging")
		if code != 200 || !strings.Contains(body, `id="run-run1"`) || strings.Contains(body, `id="run-run2"`) || !strings.Contains(body, "Data copied") {
			t.Errorf("staging's page: %d\n%s", code, body)
		}
		if i := strings.Index(body, `id="run-run1"`); i < 0 || !strings.Contains(body[i:min(len(body), i+600)], `<span class="st succeeded">succeeded</span>`) {
			t.Errorf("the late runbook.started took run1 back:\n%s", body)
		}
	})
}
