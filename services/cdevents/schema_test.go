package cdevents

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// specDir is the cdevents/spec v0.5.1 copy shared by the project's tests.
const specDir = "../../../shared/testdata/cdevents"

var (
	validatorOnce sync.Once
	validator     *Validator
	validatorErr  error
)

func testValidator(t testing.TB) *Validator {
	t.Helper()
	validatorOnce.Do(func() { validator, validatorErr = LoadSchemas(os.DirFS(specDir)) })
	if validatorErr != nil {
		t.Fatal(validatorErr)
	}
	return validator
}

func TestConformanceEventsValidate(t *testing.T) {
	v := testValidator(t)
	files, _ := filepath.Glob(filepath.Join(specDir, "conformance", "*.json"))
	files = append(files, filepath.Join(specDir, "custom", "conformance.json"))
	if len(files) < 46 {
		t.Fatalf("found %d conformance files, want the 45 types plus custom", len(files))
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Validate(raw); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
		// A valid CDEvent is one the intake maps to an internal event.
		if _, err := Inbound(raw); err != nil {
			t.Errorf("%s: valid, but not mapped: %v", filepath.Base(f), err)
		}
	}
}

func TestValidateNamesTheFailure(t *testing.T) {
	v := testValidator(t)
	raw, _ := os.ReadFile(filepath.Join(specDir, "conformance", "service_deployed.json"))
	bad := strings.Replace(string(raw), `"environment"`, `"environmnt"`, 1)
	err := v.Validate([]byte(bad))
	if err == nil || !strings.Contains(err.Error(), "environment") || !strings.Contains(err.Error(), "dev.cdevents.service.deployed.0.3.0") {
		t.Fatalf("error %v, want one naming the type and the missing environment", err)
	}
	for _, in := range []string{``, `{}`, `{"context":{"type":"dev.cdevents.nope.made.0.1.0"}}`, `[1]`} {
		if err := v.Validate([]byte(in)); err == nil {
			t.Errorf("Validate(%q) passed", in)
		}
	}
}

// exportCases are internal events of every kind the bridge exports.
func exportCases() []bus.Event {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	repo := "acme/web"
	ref := &eventsv1.DeployRef{DeployId: "d1", Repository: repo, Environment: "production", Release: "1.4.0", Commit: "abc123", Kind: "deploy"}
	issue := &errortrackv1.IssueRef{IssueId: 7, Project: "web", Title: "TypeError: x is undefined"}
	ev := func(typ string, data proto.Message) bus.Event {
		e := bus.NewEvent(typ, repo, "s", data)
		e.Source, e.ChainID, e.Time = "/shiploop/test", "0199a8c0-0000-7000-8000-000000000001", now
		return e
	}
	change := &eventsv1.Change{Repository: repo, After: "abc123", PullRequestNumber: 12, PullRequestTitle: "Add login"}
	return []bus.Event{
		ev("change.pushed", change),
		ev("change.pr_opened", change),
		ev("change.pr_updated", change),
		ev("change.pr_merged", change),
		ev("change.pr_closed", change),
		ev("build.created", &eventsv1.BuildCreated{BuildId: "b1", Repository: repo, CreatedAt: timestamppb.New(now)}),
		ev("build.started", &eventsv1.BuildStarted{BuildId: "b1", Repository: repo}),
		ev("build.finished", &eventsv1.BuildFinished{BuildId: "b1", Repository: repo, Version: "1.4.0", Commit: "abc123", Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS}),
		ev("testrun.started", &eventsv1.TestRunStarted{RunId: "t1", Repository: repo}),
		ev("testrun.finished", &eventsv1.TestRunFinished{RunId: "t1", Repository: repo, Status: eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED, Error: "2 tests failed", Counts: &eventsv1.TestCounts{Tests: 10, Failed: 2}}),
		ev("deploy.finished", &eventsv1.DeployFinished{Deploy: ref, Status: eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED}),
		ev("deploy.rolled_back", &eventsv1.DeployRolledBack{Deploy: ref, FromRelease: "1.4.0", ToRelease: "1.3.9"}),
		ev("environment.created", &eventsv1.EnvironmentChanged{Repository: repo, Environment: "pr-12"}),
		ev("environment.locked", &eventsv1.EnvironmentChanged{Repository: repo, Environment: "production"}),
		ev("environment.deleted", &eventsv1.EnvironmentChanged{Repository: repo, Environment: "pr-12"}),
		ev("errortrack.issue.opened", &errortrackv1.IssueOpened{Issue: issue, Release: "1.4.0", Environment: "production"}),
		ev("errortrack.issue.resolved", &errortrackv1.IssueResolved{Issue: issue}),
		ev("gate.evaluated", &eventsv1.GateEvaluated{EvaluationId: "g1", BuildId: "b1", Repository: repo, Status: eventsv1.GateStatus_GATE_STATUS_FAILED,
			Conditions: []*eventsv1.ConditionResult{{Metric: "coverage", Operator: ">=", Threshold: 80, Value: 71, Verdict: "failed"}}}),
		ev("runbook.started", &eventsv1.RunbookStarted{Run: &eventsv1.RunbookRun{RunId: "r1", Repository: repo, Runbook: "restart", Kind: "task",
			Environment: "production", By: "schedule nightly", Status: "running", Options: map[string]string{"tier": "web"}}}),
		ev("runbook.finished", &eventsv1.RunbookFinished{Run: &eventsv1.RunbookRun{RunId: "r1", Repository: repo, Runbook: "restart", Kind: "task",
			Environment: "production", By: "ann", Status: "failed", Reason: "step restart failed: exit code 3"}}),
		ev("environment.data_copied", &eventsv1.DataCopied{Repository: repo, Environment: "staging", FromEnvironment: "production", ToEnvironment: "staging",
			Runbook: "refresh-staging", RunId: "r2", By: "ann"}),
		ev("monitor.state_changed", &eventsv1.MonitorStateChanged{Repository: repo, Environment: "production", Monitor: "web-up",
			From: eventsv1.MonitorState_MONITOR_STATE_OK, To: eventsv1.MonitorState_MONITOR_STATE_CRITICAL, Detail: "http_status = 503", Release: "1.4.0"}),
		ev("monitor.state_changed", &eventsv1.MonitorStateChanged{Repository: repo, Environment: "production", Monitor: "web-up",
			From: eventsv1.MonitorState_MONITOR_STATE_CRITICAL, To: eventsv1.MonitorState_MONITOR_STATE_OK, Detail: "http_status = 200", Release: "1.4.0"}),
	}
}

func TestExportedEventsMatchTheirSchemas(t *testing.T) {
	v := testValidator(t)
	seen := map[string]bool{}
	noPrev := func(string) (string, bool) { return "", false }
	for _, ev := range exportCases() {
		out := Export(ev, noPrev)
		if len(out) == 0 {
			t.Errorf("%s: exported nothing", ev.Type)
		}
		for _, ce := range out {
			raw, err := ce.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Validate(raw); err != nil {
				t.Errorf("%s -> %v\n%s", ev.Type, err, raw)
			}
			seen[ce.Context.Type] = true
		}
	}
	// An upgrade: the deploy replaced release 1.3.9.
	prev := func(string) (string, bool) { return "1.3.9", true }
	up := Export(exportCases()[10], prev)
	if len(up) != 1 || up[0].Context.Type != "dev.cdevents.service.upgraded.0.3.0" {
		t.Fatalf("deploy over 1.3.9 exported %+v, want service.upgraded", up)
	}
	raw, _ := up[0].Marshal()
	if err := v.Validate(raw); err != nil {
		t.Fatal(err)
	}
	seen[up[0].Context.Type] = true
	for _, want := range []string{
		"dev.cdevents.change.created.0.4.0", "dev.cdevents.change.merged.0.3.0", "dev.cdevents.build.queued.0.3.0", "dev.cdevents.build.finished.0.3.0",
		"dev.cdevents.artifact.packaged.0.3.0", "dev.cdevents.testsuiterun.finished.0.3.0", "dev.cdevents.service.deployed.0.3.0",
		"dev.cdevents.service.upgraded.0.3.0", "dev.cdevents.service.rolledback.0.3.0", "dev.cdevents.environment.created.0.3.0",
		"dev.cdevents.environment.modified.0.3.0", "dev.cdevents.incident.detected.0.3.0", "dev.cdevents.incident.resolved.0.3.0", GateEvaluatedType,
		"dev.cdevents.taskrun.started.0.3.0", "dev.cdevents.taskrun.finished.0.3.0",
	} {
		if !seen[want] {
			t.Errorf("no internal event exported %s", want)
		}
	}
}

func TestInboundMapping(t *testing.T) {
	raw, _ := os.ReadFile(filepath.Join(specDir, "conformance", "service_rolledback.json"))
	withCustom := strings.Replace(string(raw), `"subject"`, `"customData":{"repository":"acme/web","commit":"abc123"},"subject"`, 1)
	if err := testValidator(t).Validate([]byte(withCustom)); err != nil {
		t.Fatal(err)
	}
	ev, err := Inbound([]byte(withCustom))
	if err != nil {
		t.Fatal(err)
	}
	d := ev.Data.(*eventsv1.DeployFinished)
	if ev.Type != "deploy.finished" || ev.Repository != "acme/web" || d.GetDeploy().GetKind() != "rollback" || d.GetDeploy().GetCommit() != "abc123" ||
		d.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED || d.GetDeploy().GetRelease() == "" {
		t.Fatalf("rolledback -> %s %v", ev.Type, d)
	}
	again, _ := Inbound([]byte(withCustom))
	if again.ID != ev.ID {
		t.Fatal("the same CDEvent mapped to two internal ids (no dedup)")
	}
	for _, name := range []string{"pipelinerun_finished.json", "build_finished.json", "incident_detected.json", "change_merged.json"} {
		raw, _ := os.ReadFile(filepath.Join(specDir, "conformance", name))
		ev, err := Inbound(raw)
		if err != nil || !strings.HasPrefix(ev.Type, "external.") || ev.Data.(*eventsv1.ExternalEvent).GetCdevent() == nil {
			t.Errorf("%s -> %s %v", name, ev.Type, err)
		}
	}
}

// TestOperationsExport: runbook runs are task runs (outcome and errors from
// the run), a data copy modifies the environment copied to (once, not once
// per environment event), a monitor going CRITICAL is an incident detected
// and its recovery one resolved with the same subject; WARNING and UNKNOWN
// are no incident, and a refused run that never started exports no start.
func TestOperationsExport(t *testing.T) {
	noPrev := func(string) (string, bool) { return "", false }
	one := func(ev bus.Event) CDEvent {
		t.Helper()
		out := Export(ev, noPrev)
		if len(out) != 1 {
			t.Fatalf("%s exported %d events", ev.Type, len(out))
		}
		return out[0]
	}
	fin := one(bus.Event{ID: "e1", Type: "runbook.finished", Data: &eventsv1.RunbookFinished{Run: &eventsv1.RunbookRun{RunId: "r1", Repository: "acme/web",
		Runbook: "restart", Status: "failed", Reason: "step restart failed: exit code 3", By: "schedule nightly"}}})
	if c := fin.Subject.Content; c["taskName"] != "restart" || c["outcome"] != "failure" || c["errors"] != "step restart failed: exit code 3" || fin.Subject.Source != "acme/web" {
		t.Errorf("taskrun.finished %+v", fin.Subject)
	}
	if cd := fin.CustomData.(map[string]any); cd["by"] != "schedule nightly" {
		t.Errorf("customData %v", cd)
	}
	queued := &eventsv1.RunbookRun{RunId: "r3", Runbook: "restart", Status: "queued"}
	if out := Export(bus.Event{Type: "runbook.started", Data: &eventsv1.RunbookStarted{Run: queued}}, noPrev); len(out) != 0 {
		t.Errorf("a queued run exported %v", out)
	}
	copied := func(env string) []CDEvent {
		return Export(bus.Event{Type: "environment.data_copied", Data: &eventsv1.DataCopied{Repository: "acme/web", Environment: env, FromEnvironment: "production", ToEnvironment: "staging"}}, noPrev)
	}
	if n, m := len(copied("production")), len(copied("staging")); n != 0 || m != 1 {
		t.Errorf("data copy exported %d for the source and %d for the target, want 0 and 1", n, m)
	}
	st := func(from, to eventsv1.MonitorState) []CDEvent {
		return Export(bus.Event{Type: "monitor.state_changed", Data: &eventsv1.MonitorStateChanged{Repository: "acme/web", Environment: "production", Monitor: "web-up", From: from, To: to}}, noPrev)
	}
	det := st(eventsv1.MonitorState_MONITOR_STATE_OK, eventsv1.MonitorState_MONITOR_STATE_CRITICAL)
	res := st(eventsv1.MonitorState_MONITOR_STATE_CRITICAL, eventsv1.MonitorState_MONITOR_STATE_OK)
	if len(det) != 1 || len(res) != 1 || det[0].Context.Type != "dev.cdevents.incident.detected.0.3.0" || res[0].Context.Type != "dev.cdevents.incident.resolved.0.3.0" ||
		det[0].Subject.ID != res[0].Subject.ID {
		t.Errorf("detected %+v, resolved %+v", det, res)
	}
	for _, c := range [][2]eventsv1.MonitorState{{eventsv1.MonitorState_MONITOR_STATE_UNKNOWN, eventsv1.MonitorState_MONITOR_STATE_OK},
		{eventsv1.MonitorState_MONITOR_STATE_OK, eventsv1.MonitorState_MONITOR_STATE_WARNING}, {eventsv1.MonitorState_MONITOR_STATE_WARNING, eventsv1.MonitorState_MONITOR_STATE_OK}} {
		if out := st(c[0], c[1]); len(out) != 0 {
			t.Errorf("%v -> %v exported %v", c[0], c[1], out)
		}
	}
}
