package gates

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	gatesv1 "github.com/shiploop/shiploop/proto/shiploop/gates/v1"
)

// fakeForge is a GitHub commit-status API that records what it is sent.
type fakeForge struct {
	mu       sync.Mutex
	statuses []map[string]string
}

func (f *fakeForge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]string
	_ = json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	f.statuses = append(f.statuses, body)
	f.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(`{}`))
}

func (f *fakeForge) last() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.statuses) == 0 {
		return nil
	}
	return f.statuses[len(f.statuses)-1]
}

type staticForges struct{ url string }

func (s staticForges) ForgeSettings(context.Context, string) (Forge, error) {
	return Forge{Kind: "github", APIURL: s.url, Repo: "acme/web", Token: "t0ken"}, nil
}

type harness struct {
	t     *testing.T
	bus   *bus.Bus
	api   *grpcServer
	obs   jetstream.ObjectStore
	forge *fakeForge
}

func newHarness(t *testing.T, db *store.DB) *harness {
	t.Helper()
	b := bustest.Start(t, bus.Options{Source: "/test"})
	ctx, cancel := context.WithCancel(context.Background())
	forge := &fakeForge{}
	srv := httptest.NewServer(forge)
	t.Cleanup(srv.Close)
	svc, err := New(ctx, Config{DB: db, Bus: b, Forges: staticForges{srv.URL}, PublicURL: "https://ci.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := b.JetStream().CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: artifactBucket})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &harness{t: t, bus: b, api: &grpcServer{s: svc}, obs: obs, forge: forge}
}

func (h *harness) emit(typ string, ev bus.Event) {
	h.t.Helper()
	ev.Type, ev.Repository = typ, "acme/web"
	if ev.ID == "" {
		ev.ID = bus.NewID()
	}
	if err := h.bus.Publish(context.Background(), ev); err != nil {
		h.t.Fatal(err)
	}
}

// artifact stores a file as an agent would and returns its record.
func (h *harness) artifact(job, name, content string) *eventsv1.Artifact {
	h.t.Helper()
	key := job + "/" + name
	if _, err := h.obs.Put(context.Background(), jetstream.ObjectMeta{Name: key}, bytes.NewReader([]byte(content))); err != nil {
		h.t.Fatal(err)
	}
	return &eventsv1.Artifact{Name: name, Key: key, Size: int64(len(content))}
}

// evaluation waits for a build's evaluation to reach a revision.
func (h *harness) evaluation(build string, revision int32) *gatesv1.Evaluation {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := h.api.GetEvaluation(context.Background(), &gatesv1.GetEvaluationRequest{BuildId: build})
		if err == nil && resp.GetEvaluation().GetResult().GetRevision() >= revision {
			return resp.GetEvaluation()
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no evaluation revision %d of %s: %v", revision, build, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sarif(results ...string) string {
	return `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"vet","rules":[{"id":"R1","defaultConfiguration":{"level":"error"}}]}},"results":[` +
		strings.Join(results, ",") + `]}]}`
}

func result(rule, file string, line int, msg string) string {
	b, _ := json.Marshal(map[string]any{"ruleId": rule, "message": map[string]string{"text": msg},
		"locations": []any{map[string]any{"physicalLocation": map[string]any{"artifactLocation": map[string]string{"uri": file}, "region": map[string]int{"startLine": line}}}}})
	return string(b)
}

func gatePolicy() *eventsv1.GateBuild {
	return &eventsv1.GateBuild{BaseRef: "refs/heads/main", HasTests: true, Policy: &eventsv1.GatePolicy{
		Conditions: []*eventsv1.GateCondition{
			{Metric: "issues", Operator: "==", Threshold: 0, Scope: "new_code", File: ".shiploop.yml", Line: 4},
			{Metric: "tests_failed", Operator: "==", Threshold: 0, Scope: "overall", File: ".shiploop.yml", Line: 5},
			{Metric: "coverage", Operator: ">=", Threshold: 80, Scope: "new_code", File: ".shiploop.yml", Line: 6},
		},
		Reports: &eventsv1.GateReports{Sarif: []string{"**/*.sarif"}},
	}}
}

// build plays a build of ref through created, a job with reports,
// finished and its test run.
func (h *harness) build(id string, number int64, ref string, report string, failed int64) {
	h.emit("build.created", bus.Event{Subject: id, Data: &eventsv1.BuildCreated{BuildId: id, Number: number, Repository: "acme/web", Ref: ref, Commit: strings.Repeat("a", 39) + string(rune('0'+number)), Gate: gatePolicy()}})
	h.emit("job.finished", bus.Event{Subject: id, Data: &eventsv1.JobFinished{JobId: id + "-j", BuildId: id, Repository: "acme/web",
		Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, Artifacts: []*eventsv1.Artifact{h.artifact(id+"-j", "out/vet.sarif", report)}}})
	h.emit("build.finished", bus.Event{Subject: id, Data: &eventsv1.BuildFinished{BuildId: id, Number: number, Repository: "acme/web", Ref: ref, Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS}})
	h.emit("testrun.finished", bus.Event{Subject: id, Data: &eventsv1.TestRunFinished{BuildId: id, Repository: "acme/web", Ref: ref,
		Counts:   &eventsv1.TestCounts{Tests: 10, Failed: failed, Passed: 10 - failed},
		Coverage: &eventsv1.CoverageSummary{LinesCovered: 90, LinesTotal: 100, PatchCovered: 30, PatchTotal: 40}}})
}

func TestGateFlow(t *testing.T) {
	storetest.Engines(t, "gates", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		// main: two findings, the base.
		h.build("b1", 1, "refs/heads/main", sarif(result("R1", "a.go", 3, "x is unused"), result("R1", "b.go", 9, "y is unused")), 0)
		e := h.evaluation("b1", 1)
		if st := e.GetResult().GetStatus(); st != eventsv1.GateStatus_GATE_STATUS_FAILED {
			t.Fatalf("first analysis: %v %s (every finding is new without a base)", st, e.GetResult().GetSummary())
		}
		// A pull request moves both findings and adds one: one new issue.
		h.build("b2", 2, "refs/pull/7/head", sarif(result("R1", "a.go", 13, "x is unused"), result("R1", "b.go", 19, "y is unused"), result("R1", "c.go", 1, "z is unused")), 0)
		e = h.evaluation("b2", 1)
		r := e.GetResult()
		if r.GetStatus() != eventsv1.GateStatus_GATE_STATUS_FAILED || r.GetIssues() != 3 || r.GetNewIssues() != 1 {
			t.Fatalf("pull request: %v issues %d new %d: %s", r.GetStatus(), r.GetIssues(), r.GetNewIssues(), r.GetSummary())
		}
		if r.GetSummary() != "gate failed: 1 of 3 conditions met; issues on new code 1 (want == 0), coverage on new code 75.0% (want >= 80%)" {
			t.Errorf("summary %q", r.GetSummary())
		}
		if len(e.GetNewFindings()) != 1 || e.GetNewFindings()[0].GetPath() != "c.go" {
			t.Errorf("new findings %v", e.GetNewFindings())
		}
		// gate.evaluated carries the findings themselves, the new one first.
		var got []string
		for _, f := range r.GetFindings() {
			got = append(got, fmt.Sprintf("%s:%d:%d %s %s/%s new=%v %q", f.GetPath(), f.GetLine(), f.GetColumn(), f.GetLevel(), f.GetTool(), f.GetRule(), f.GetIsNew(), f.GetMessage()))
		}
		want := []string{
			`c.go:1:1 error vet/R1 new=true "z is unused"`,
			`a.go:13:1 error vet/R1 new=false "x is unused"`,
			`b.go:19:1 error vet/R1 new=false "y is unused"`,
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") || r.GetFindingsTruncated() != 0 {
			t.Errorf("findings (%d truncated):\n%s\nwant:\n%s", r.GetFindingsTruncated(), strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if fp := r.GetFindings()[0].GetFingerprint(); len(fp) != 16 || fp == r.GetFindings()[1].GetFingerprint() {
			t.Errorf("fingerprints %q %q", fp, r.GetFindings()[1].GetFingerprint())
		}
		// The forge gets the status, the latest revision.
		deadline := time.Now().Add(10 * time.Second)
		for h.forge.last() == nil || h.forge.last()["description"] != r.GetSummary() {
			if time.Now().After(deadline) {
				t.Fatalf("forge got %v", h.forge.last())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if st := h.forge.last(); st["state"] != "failure" || st["context"] != StatusContext || st["target_url"] != "https://ci.example.com/builds/b2" {
			t.Errorf("status %v", st)
		}
		// A late, malformed report makes it an error naming the file.
		h.emit("job.finished", bus.Event{Subject: "b2", Data: &eventsv1.JobFinished{JobId: "b2-late", BuildId: "b2", Repository: "acme/web",
			Artifacts: []*eventsv1.Artifact{h.artifact("b2-late", "lint/extra.sarif", `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},"results":null}]}`)}}})
		e = h.evaluation("b2", 2)
		if e.GetResult().GetStatus() != eventsv1.GateStatus_GATE_STATUS_ERROR || !strings.Contains(e.GetResult().GetSummary(), "lint/extra.sarif: runs[0].results: null") {
			t.Errorf("late bad report: %v %s", e.GetResult().GetStatus(), e.GetResult().GetSummary())
		}
		list, err := h.api.ListEvaluations(context.Background(), &gatesv1.ListEvaluationsRequest{Repository: "acme/web", PageSize: 1})
		if err != nil || len(list.GetEvaluations()) != 1 || list.GetNextPageToken() == "" {
			t.Errorf("list: %v %v", list, err)
		}
		if ev := list.GetEvaluations()[0]; len(ev.GetFindings()) != 0 || ev.GetFindingsTruncated() != 3 {
			t.Errorf("a list carries %d findings, %d truncated; want none, 3", len(ev.GetFindings()), ev.GetFindingsTruncated())
		}
	})
}

// TestGateFindingsBounded: gate.evaluated carries at most 200 findings,
// every new one before any old one whatever their order in the report,
// counts the rest as truncated and cuts long messages on a rune boundary.
func TestGateFindingsBounded(t *testing.T) {
	db := storetest.OpenSQLite(t, "gates")
	h := newHarness(t, db)
	var base, pr []string
	long := strings.Repeat("é", 1500) // 3000 bytes
	var wantNew, wantOld []string
	for i := range 250 {
		file := fmt.Sprintf("pkg/f%03d.go", i)
		msg := "v is unused"
		if i == 1 {
			msg = long
		}
		pr = append(pr, result("R1", file, i+10, msg))
		if i%4 == 0 {
			base = append(base, result("R1", file, i+1, msg)) // moved since: still not new
			wantOld = append(wantOld, file)
		} else {
			wantNew = append(wantNew, file)
		}
	}
	h.build("b1", 1, "refs/heads/main", sarif(base...), 0)
	h.evaluation("b1", 1)
	h.build("b2", 2, "refs/pull/8/head", sarif(pr...), 0)
	r := h.evaluation("b2", 1).GetResult()
	if r.GetIssues() != 250 || r.GetNewIssues() != int64(len(wantNew)) {
		t.Fatalf("issues %d new %d, want 250 and %d", r.GetIssues(), r.GetNewIssues(), len(wantNew))
	}
	fs := r.GetFindings()
	if len(fs) != 200 || r.GetFindingsTruncated() != 50 {
		t.Fatalf("%d findings, %d truncated; want 200, 50", len(fs), r.GetFindingsTruncated())
	}
	want := append(wantNew, wantOld[:200-len(wantNew)]...)
	for i, f := range fs {
		if f.GetPath() != want[i] || f.GetIsNew() != (i < len(wantNew)) {
			t.Fatalf("finding %d = %s new=%v, want %s new=%v", i, f.GetPath(), f.GetIsNew(), want[i], i < len(wantNew))
		}
	}
	m := fs[0].GetMessage()
	if fs[0].GetPath() != "pkg/f001.go" || len(m) > 1024 || len(m) < 1000 || !utf8.ValidString(m) || !strings.HasSuffix(m, "…") || !strings.HasPrefix(long, strings.TrimSuffix(m, "…")) {
		t.Errorf("long message cut to %d bytes: %q…", len(m), m[:min(len(m), 20)])
	}
}

// TestGateNoData: a test run in error, a test stage that reported no tests
// and a condition without data fail the gate, with the reason and the
// policy key that allows them; on_no_data: pass lets them pass, saying so.
func TestGateNoData(t *testing.T) {
	storetest.Engines(t, "gates", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		play := func(id string, number int64, pol *eventsv1.GatePolicy, run *eventsv1.TestRunFinished) *gatesv1.Evaluation {
			h.emit("build.created", bus.Event{Subject: id, Data: &eventsv1.BuildCreated{BuildId: id, Number: number, Repository: "acme/web", Ref: "refs/heads/main",
				Commit: strings.Repeat("b", 39) + string(rune('0'+number)), Gate: &eventsv1.GateBuild{BaseRef: "refs/heads/main", HasTests: true, Policy: pol}}})
			h.emit("build.finished", bus.Event{Subject: id, Data: &eventsv1.BuildFinished{BuildId: id, Number: number, Repository: "acme/web", Ref: "refs/heads/main", Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS}})
			run.BuildId, run.Repository, run.Ref = id, "acme/web", "refs/heads/main"
			h.emit("testrun.finished", bus.Event{Subject: id, Data: run})
			return h.evaluation(id, 1)
		}
		conds := func(onNoData string) *eventsv1.GatePolicy {
			return &eventsv1.GatePolicy{OnNoData: onNoData, Conditions: []*eventsv1.GateCondition{
				{Metric: "tests_failed", Operator: "==", Threshold: 0, Scope: "overall"},
				{Metric: "tests_total", Operator: ">", Threshold: 0, Scope: "overall", OnNoData: "pass"},
				{Metric: "coverage", Operator: ">=", Threshold: 50, Scope: "overall"},
			}}
		}
		errored := func() *eventsv1.TestRunFinished {
			return &eventsv1.TestRunFinished{Status: eventsv1.TestRunStatus_TEST_RUN_STATUS_ERROR, Counts: &eventsv1.TestCounts{},
				Error: "job 1: exit status 2: ModuleNotFoundError: No module named 'app'"}
		}
		for _, c := range []struct {
			name       string
			number     int64
			pol        *eventsv1.GatePolicy
			run        *eventsv1.TestRunFinished
			want       eventsv1.GateStatus
			summary    string
			verdictCov string
		}{
			{"errored", 1, conds(""), errored(), eventsv1.GateStatus_GATE_STATUS_FAILED,
				"gate failed: 0 of 3 conditions met; test run errored (job 1: exit status 2: ModuleNotFoundError: No module named 'app'), no tests reported, " +
					"tests failed: no data (no test report arrived), coverage: no data (no coverage report arrived); set on_no_data: pass to allow", "no_data"},
			{"no tests", 2, conds("fail"), &eventsv1.TestRunFinished{Status: eventsv1.TestRunStatus_TEST_RUN_STATUS_PASSED, Counts: &eventsv1.TestCounts{}}, eventsv1.GateStatus_GATE_STATUS_FAILED,
				"gate failed: 0 of 3 conditions met; test stage configured but no test report arrived (0 tests), tests failed: no data (no test report arrived), " +
					"coverage: no data (no coverage report arrived); set on_no_data: pass to allow", "no_data"},
			{"no coverage", 3, conds(""), &eventsv1.TestRunFinished{Status: eventsv1.TestRunStatus_TEST_RUN_STATUS_PASSED, Counts: &eventsv1.TestCounts{Tests: 3, Passed: 3}},
				eventsv1.GateStatus_GATE_STATUS_FAILED, "gate failed: 2 of 3 conditions met; coverage: no data (no coverage report arrived); set on_no_data: pass to allow", "no_data"},
			{"no coverage allowed", 4, conds("pass"), &eventsv1.TestRunFinished{Status: eventsv1.TestRunStatus_TEST_RUN_STATUS_PASSED, Counts: &eventsv1.TestCounts{Tests: 3, Passed: 3}},
				eventsv1.GateStatus_GATE_STATUS_PASSED, "gate passed: 2 of 3 conditions met; coverage: no data (no coverage report arrived) (allowed by on_no_data: pass)", "no_data"},
			{"errored allowed", 5, conds("pass"), errored(), eventsv1.GateStatus_GATE_STATUS_PASSED,
				"gate passed: 0 of 3 conditions met; test run errored (job 1: exit status 2: ModuleNotFoundError: No module named 'app'), no tests reported, " +
					"tests failed: no data (no test report arrived), tests total: no data (no test report arrived), coverage: no data (no coverage report arrived) (allowed by on_no_data: pass)", "no_data"},
			{"all data", 6, conds(""), &eventsv1.TestRunFinished{Status: eventsv1.TestRunStatus_TEST_RUN_STATUS_PASSED, Counts: &eventsv1.TestCounts{Tests: 3, Passed: 3},
				Coverage: &eventsv1.CoverageSummary{LinesCovered: 5000, LinesTotal: 10000}}, eventsv1.GateStatus_GATE_STATUS_PASSED, "gate passed: 3 of 3 conditions met", "passed"},
		} {
			r := play("nd"+c.name, c.number, c.pol, c.run).GetResult()
			if r.GetStatus() != c.want || r.GetSummary() != c.summary {
				t.Errorf("%s: %v %q\nwant %v %q", c.name, r.GetStatus(), r.GetSummary(), c.want, c.summary)
			}
			if v := r.GetConditions()[2].GetVerdict(); v != c.verdictCov {
				t.Errorf("%s: coverage verdict %s, want %s", c.name, v, c.verdictCov)
			}
		}
	})
}

func TestPolicies(t *testing.T) {
	storetest.Engines(t, "gates", Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := &Service{db: db}
		api := &grpcServer{s: s}
		got, err := api.GetPolicy(ctx, &gatesv1.GetPolicyRequest{Repository: "acme/web"})
		if err != nil || got.GetSource() != "default" || len(got.GetPolicy().GetConditions()) != 5 {
			t.Fatalf("default: %v %v", got, err)
		}
		_, err = api.SetPolicy(ctx, &gatesv1.SetPolicyRequest{Repository: "acme/web", Policy: &eventsv1.GatePolicy{
			Conditions: []*eventsv1.GateCondition{{Metric: "coverge", Operator: ">=", Threshold: 80}}}})
		if err == nil || !strings.Contains(err.Error(), `policy: conditions[0]: unknown metric "coverge" (did you mean "coverage"?)`) {
			t.Errorf("bad metric: %v", err)
		}
		_, err = api.SetPolicy(ctx, &gatesv1.SetPolicyRequest{Policy: &eventsv1.GatePolicy{Expression: "tests_failed == 0 && coverage >= 70"}})
		if err != nil {
			t.Fatal(err)
		}
		got, _ = api.GetPolicy(ctx, &gatesv1.GetPolicyRequest{Repository: "acme/web"})
		if got.GetSource() != "installation" || got.GetPolicy().GetExpression() == "" {
			t.Errorf("installation policy: %v", got)
		}
	})
}
