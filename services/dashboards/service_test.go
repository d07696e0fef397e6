package dashboards

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	dashboardsv1 "github.com/shiploop/shiploop/proto/shiploop/dashboards/v1"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/dashboards/badge"
)

var day0 = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

func at(day int, hm string) time.Time {
	t, _ := time.Parse("15:04", hm)
	return day0.AddDate(0, 0, day).Add(time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute)
}

type harness struct {
	svc  *Service
	bus  *bus.Bus
	http *httptest.Server
	grpc *grpcServer
}

func newHarness(t *testing.T, db *store.DB, now time.Time) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := bustest.Start(t, bus.Options{Source: "/test"})
	cfg := Config{DB: db, Bus: b, Poll: 20 * time.Millisecond}
	if !now.IsZero() {
		cfg.Now = func() time.Time { return now }
	}
	svc, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	srv := httptest.NewServer(mux)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &harness{svc: svc, bus: b, http: srv, grpc: &grpcServer{s: svc}}
}

func (h *harness) publish(t *testing.T, typ, repo, chain string, when time.Time, data proto.Message) {
	t.Helper()
	ev := bus.Event{Type: typ, Repository: repo, ChainID: chain, Time: when, Data: data}
	if err := h.bus.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
}

// until polls fn until it returns true or 10 s pass.
func until(t *testing.T, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) get(t *testing.T, path string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, h.http.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

const repo = "acme/web"

// publishPipeline publishes one change's story: a push, a build whose job
// passes, a test run with a failed test, a gate failing on coverage.
func (h *harness) publishPipeline(t *testing.T, chain, sha, message string, when time.Time) {
	h.publish(t, "change.pushed", repo, chain, when, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Repository: repo, DefaultBranch: "main",
		Ref: "refs/heads/main", Branch: "main", After: sha, Sender: "ada", Commits: []*eventsv1.Commit{{Sha: sha, Message: message + "\n\nbody", AuthorName: "Ada"}}})
	buildID := "b-" + chain
	jobID := "j-" + chain
	h.publish(t, "build.created", repo, chain, when, &eventsv1.BuildCreated{BuildId: buildID, Number: 7, Repository: repo, Ref: "refs/heads/main", Commit: sha, Version: "1.0.0-dev.7", CreatedAt: timestamppb.New(when)})
	h.publish(t, "job.queued", repo, chain, when, &eventsv1.JobQueued{JobId: jobID, BuildId: buildID, Kind: "build", Repository: repo, Steps: []string{"lint", "compile"}})
	h.publish(t, "job.started", repo, chain, when, &eventsv1.JobStarted{JobId: jobID, BuildId: buildID, Repository: repo, Agent: "agent-1"})
	ok := eventsv1.BuildStatus_BUILD_STATUS_SUCCESS
	steps := []*eventsv1.StepResult{{Name: "lint", Status: ok, Duration: durationpb.New(time.Second)}, {Name: "compile", Status: ok, Duration: durationpb.New(2 * time.Second)}}
	h.publish(t, "job.finished", repo, chain, when, &eventsv1.JobFinished{JobId: jobID, BuildId: buildID, Repository: repo, Status: ok, Steps: steps, Agent: "agent-1"})
	h.publish(t, "build.finished", repo, chain, when, &eventsv1.BuildFinished{BuildId: buildID, Number: 7, Repository: repo, Ref: "refs/heads/main", Commit: sha,
		Version: "1.0.0-dev.7", Status: ok, Duration: durationpb.New(3 * time.Second), FinishedAt: timestamppb.New(when)})
	h.publish(t, "testrun.finished", repo, chain, when, &eventsv1.TestRunFinished{RunId: "r-" + chain, BuildId: buildID, Repository: repo,
		Status: eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED, Counts: &eventsv1.TestCounts{Tests: 42, Passed: 41, Failed: 1},
		Coverage: &eventsv1.CoverageSummary{LinesCovered: 673, LinesTotal: 1000}, FinishedAt: timestamppb.New(when),
		Failures: []*eventsv1.FailedTest{{Suite: "auth", ClassName: "LoginTest", Name: "test_wrong_password", Status: "failed", Message: "expected 401, got 500"}}})
	h.publish(t, "gate.evaluated", repo, chain, when, &eventsv1.GateEvaluated{BuildId: buildID, Repository: repo, Status: eventsv1.GateStatus_GATE_STATUS_FAILED,
		Summary: "gate failed: coverage on new code 67.3% (want >= 80%)", Revision: 1, Conditions: []*eventsv1.ConditionResult{
			{Metric: "coverage", Operator: ">=", Threshold: 80, Scope: "new_code", Value: 67.3, HasValue: true, Verdict: "failed"},
			{Metric: "tests_failed", Operator: "==", Threshold: 0, Value: 1, HasValue: true, Verdict: "failed"},
		}})
}

func TestPipelineReadModels(t *testing.T) {
	storetest.Engines(t, "dashboards", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db, time.Time{})
		h.publishPipeline(t, "chain-1", "abc1234def", "Add the login page", time.Now().UTC())
		until(t, "the gate in the pipeline", func() bool {
			p, err := h.grpc.Pipeline(t.Context(), &dashboardsv1.PipelineRequest{ChainId: "chain-1"})
			return err == nil && p.Gate != nil
		})
		p, err := h.grpc.Pipeline(t.Context(), &dashboardsv1.PipelineRequest{ChainId: "chain-1"})
		if err != nil {
			t.Fatal(err)
		}
		if p.Message != "Add the login page" || p.Author != "Ada" || len(p.Builds) != 1 || p.Builds[0].Status != "success" {
			t.Fatalf("pipeline: %v", p)
		}
		if j := p.Builds[0].Jobs; len(j) != 1 || len(j[0].Steps) != 2 || j[0].Steps[0].Name != "lint" || j[0].Steps[1].DurationMs != 2000 {
			t.Fatalf("jobs: %v", j)
		}
		if len(p.TestRuns) != 1 || p.TestRuns[0].Failed != 1 || p.TestRuns[0].CoveragePercent != 67.3 {
			t.Fatalf("tests: %v", p.TestRuns)
		}
		if p.Gate.Status != "failed" || p.Gate.Conditions[0].Verdict != "failed" || p.Gate.Conditions[0].Value != 67.3 {
			t.Fatalf("gate: %v", p.Gate)
		}

		ov, err := h.grpc.Overview(t.Context(), &dashboardsv1.OverviewRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ov.Repositories) != 1 || len(ov.Repositories[0].Branches) != 1 {
			t.Fatalf("overview: %v", ov)
		}
		var stages []string
		for _, st := range ov.Repositories[0].Branches[0].Stages {
			stages = append(stages, st.Name+"="+st.Status)
		}
		if got := strings.Join(stages, " "); got != "build=success tests=failure gate=failure deploy=" {
			t.Errorf("stages: %s", got)
		}

		// The pages say the same, readable without JavaScript.
		code, _, body := h.get(t, "/")
		if code != 200 || !strings.Contains(body, "Add the login page") || !strings.Contains(body, `href="/changes/chain-1"`) {
			t.Fatalf("overview page %d: %s", code, body)
		}
		// A deploy of the change and its verification checks.
		ref := &eventsv1.DeployRef{DeployId: "dep-1", Repository: "acme/web", Environment: "acceptance", Release: "1.0.0-dev.7", Kind: "deploy", TriggeredBy: "gate"}
		h.publish(t, "deploy.finished", "acme/web", "chain-1", time.Now(), &eventsv1.DeployFinished{Deploy: ref, Status: eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK,
			Reason: "verification failed", FinishedAt: timestamppb.Now(), Checks: []*eventsv1.CheckResult{
				{Check: "http_status(https://acc.example/health)", Status: eventsv1.CheckStatus_CHECK_STATUS_FAILURE, Reason: "503, want 200"},
				{Check: "errortrack.new_issues", Status: eventsv1.CheckStatus_CHECK_STATUS_SUCCESS},
			}})
		until(t, "the deploy's verification on the pipeline page", func() bool {
			_, _, body := h.get(t, "/changes/chain-1")
			return strings.Contains(body, "http_status(https://acc.example/health)") && strings.Contains(body, "503, want 200")
		})
		code, _, body = h.get(t, "/changes/chain-1")
		for _, want := range []string{"1 failed", "LoginTest.test_wrong_password", "expected 401, got 500", "coverage &gt;= 80 (new_code)", "67.3", "gate failed: coverage on new code", "compile"} {
			if !strings.Contains(body, want) {
				t.Errorf("pipeline page lacks %q", want)
			}
		}
		if code != 200 {
			t.Fatalf("pipeline page: %d", code)
		}
		if code, _, _ := h.get(t, "/changes/nope"); code != 404 {
			t.Errorf("unknown change: %d", code)
		}
		code, hdr, _ := h.get(t, "/builds/b-chain-1")
		_ = hdr
		if code != 200 { // followed to the pipeline page
			t.Errorf("build link: %d", code)
		}

		// Badges.
		code, hdr, body = h.get(t, "/badges/acme/web/build.svg")
		if want := badge.SVG(badge.Badge{Label: "build", Message: "passing", Color: "brightgreen"}); code != 200 || body != want {
			t.Fatalf("build badge %d: %s", code, body)
		}
		if hdr.Get("Content-Type") != "image/svg+xml;charset=utf-8" || hdr.Get("Cache-Control") != "public, max-age=60" || hdr.Get("ETag") == "" {
			t.Errorf("badge headers: %v", hdr)
		}
		if code, _, _ := h.get(t, "/badges/acme/web/build.svg", "If-None-Match", hdr.Get("ETag")); code != http.StatusNotModified {
			t.Errorf("If-None-Match: %d", code)
		}
		for path, want := range map[string]badge.Badge{
			"/badges/acme/web/tests.svg?style=flat-square":  {Label: "tests", Message: "41 passed, 1 failed", Color: "red", Style: badge.FlatSquare},
			"/badges/acme/web/coverage.svg?style=plastic":   {Label: "coverage", Message: "67.3%", Color: "yellow", Style: badge.Plastic},
			"/badges/acme/web/gate.svg?style=for-the-badge": {Label: "gate", Message: "failed", Color: "red", Style: badge.ForTheBadge},
			"/badges/acme/web/deploy/production.svg":        {Label: "production", Message: "not deployed", Color: "lightgrey"},
			"/badges/other/repo/build.svg?style=social":     {Label: "build", Message: "unknown", Color: "lightgrey", Style: badge.Social},
		} {
			if code, _, body := h.get(t, path); code != 200 || body != badge.SVG(want) {
				t.Errorf("%s: %d %s", path, code, body)
			}
		}
		code, _, body = h.get(t, "/badges/acme/web/build.json")
		var ep badge.Endpoint
		if err := json.Unmarshal([]byte(body), &ep); err != nil || code != 200 || ep.SchemaVersion != 1 || ep.Message != "passing" || ep.CacheSeconds != 60 {
			t.Errorf("endpoint JSON %d: %s", code, body)
		}
		for _, bad := range []string{"/badges/acme/web/nope.svg", "/badges/acme/web/build.png", "/badges/build.svg"} {
			if code, _, _ := h.get(t, bad); code != 404 {
				t.Errorf("%s: %d", bad, code)
			}
		}
		if code, _, _ := h.get(t, "/badges/acme/web/build.svg?style=round"); code != 400 {
			t.Errorf("bad style: %d", code)
		}

		// A rebuild replays the stream into the same read models.
		before, _ := h.grpc.Overview(t.Context(), &dashboardsv1.OverviewRequest{})
		res, err := h.grpc.Rebuild(t.Context(), &dashboardsv1.RebuildRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Events != 9 { // the pipeline's 8 and the deploy
			t.Errorf("rebuild replayed %d events, want 9", res.Events)
		}
		after, _ := h.grpc.Overview(t.Context(), &dashboardsv1.OverviewRequest{})
		if !bytes.Equal(mustJSON(before), mustJSON(after)) {
			t.Errorf("rebuild changed the overview:\n%s\n%s", mustJSON(before), mustJSON(after))
		}
	})
}

func mustJSON(v any) []byte {
	data, _ := json.Marshal(v)
	return data
}

// TestDoraFromEvents publishes a scripted history of pushes, production
// deploys (one rolled back, then the rollback, which is no deploy of its
// own) and an error issue, and checks the figures worked out by hand.
func TestDoraFromEvents(t *testing.T) {
	storetest.Engines(t, "dashboards", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db, day0.AddDate(0, 0, 14))
		push := func(chain, sha string, when time.Time) {
			h.publish(t, "change.pushed", repo, chain, when, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Repository: repo, Ref: "refs/heads/main",
				Branch: "main", After: sha, Commits: []*eventsv1.Commit{{Sha: sha, Message: "change " + sha}}})
		}
		deploy := func(chain, id, release, sha, kind string, st eventsv1.DeployStatus, when time.Time) {
			ref := &eventsv1.DeployRef{DeployId: id, Repository: repo, Environment: "production", Release: release, Commit: sha, Kind: kind, TriggeredBy: "auto"}
			h.publish(t, "deploy.started", repo, chain, when.Add(-5*time.Minute), &eventsv1.DeployStarted{Deploy: ref, StartedAt: timestamppb.New(when.Add(-5 * time.Minute))})
			h.publish(t, "deploy.approved", repo, chain, when.Add(-6*time.Minute), &eventsv1.DeployApproved{Deploy: ref, Approver: "grace"})
			h.publish(t, "deploy.finished", repo, chain, when, &eventsv1.DeployFinished{Deploy: ref, Status: st, FinishedAt: timestamppb.New(when)})
		}
		ok := eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
		push("c1", "sha1", at(0, "08:00"))
		deploy("c1", "d1", "1.0.0", "sha1", "deploy", ok, at(0, "10:00")) // lead 2h
		push("c2", "sha2", at(0, "22:00"))
		deploy("c2", "d2", "1.1.0", "sha2", "deploy", ok, at(1, "10:00")) // lead 12h; fails by the issue below
		h.publish(t, "errortrack.issue.opened", repo, "", at(1, "11:00"), &errortrackv1.IssueOpened{
			Issue: &errortrackv1.IssueRef{IssueId: 1, Project: "web", Title: "TypeError: x is undefined"}, Release: "1.1.0", Environment: "production"})
		h.publish(t, "errortrack.issue.resolved", repo, "", at(1, "13:00"), &errortrackv1.IssueResolved{Issue: &errortrackv1.IssueRef{IssueId: 1}})
		push("c3", "sha3", at(1, "11:30"))
		deploy("c3", "d3", "1.2.0", "sha3", "deploy", ok, at(1, "12:00")) // lead 30m; restores d2 (2h); rework
		push("c4", "sha4", at(6, "10:00"))
		deploy("c4", "d4", "1.3.0", "sha4", "deploy", eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK, at(7, "10:00")) // lead 24h; failed
		deploy("c4", "d5", "1.2.0", "sha3", "rollback", ok, at(7, "10:30"))                                            // restores d4 (30m); rework
		deploy("c5", "d6", "1.4.0", "sha4", "deploy", eventsv1.DeployStatus_DEPLOY_STATUS_FAILED, at(8, "10:00"))      // never ran: ignored

		var resp *dashboardsv1.DoraResponse
		until(t, "six deploys and the issue", func() bool {
			var n int
			_ = db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM dash_deploys WHERE finished_at > 0`).Scan(&n)
			var r int64
			_ = db.QueryRowContext(t.Context(), `SELECT resolved_at FROM dash_issues WHERE issue_id = 1`).Scan(&r)
			return n == 6 && r > 0
		})
		resp, err := h.grpc.Dora(t.Context(), &dashboardsv1.DoraRequest{Repository: repo, Period: "14d", Profile: "devlake_2023"})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, m := range resp.Metrics {
			got[m.Name] = m.Display + " " + m.Bucket
		}
		want := map[string]string{
			"deployment_frequency": "2.0/week high", // 4 deploys in 2 weeks
			"lead_time":            "7h 0m elite",   // median of 30m, 2h, 12h, 24h
			"change_failure_rate":  "50% low",       // 2 of 4: the rollback is no deploy
			"time_to_restore":      "1h 15m high",   // median of 2h and 30m
			"rework_rate":          "40% ",          // d3 and the rollback, of 4 deploys + 1 rollback
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
		if resp.Deploys != 4 || resp.FailedDeploys != 2 {
			t.Errorf("deploys %d failed %d, want 4 and 2", resp.Deploys, resp.FailedDeploys)
		}
		if _, err := h.grpc.Dora(t.Context(), &dashboardsv1.DoraRequest{Profile: "nope"}); err == nil || !strings.Contains(err.Error(), "devlake_2023") {
			t.Errorf("bad profile: %v", err)
		}
		fk, err := h.grpc.Dora(t.Context(), &dashboardsv1.DoraRequest{Period: "14d", Profile: "fourkeys"})
		if err != nil {
			t.Fatal(err)
		}
		if fk.Metrics[0].Bucket != "Weekly" || fk.Metrics[2].Bucket != "46-60%" {
			t.Errorf("fourkeys: %v", fk.Metrics)
		}

		envs, err := h.grpc.Environments(t.Context(), &dashboardsv1.EnvironmentsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(envs.Environments) != 1 || envs.Environments[0].Release != "1.2.0" || strings.Join(envs.Environments[0].Approvers, ",") != "grace" {
			t.Fatalf("environments: %v", envs)
		}
		code, _, body := h.get(t, "/dora?repo=acme/web&period=14d&profile=devlake_2023")
		if code != 200 || !strings.Contains(body, "2.0/week") || !strings.Contains(body, "<svg class=\"chart\"") {
			t.Errorf("dora page %d", code)
		}
		if code, _, _ := h.get(t, "/dora?period=forever"); code != 400 {
			t.Errorf("bad period: %d", code)
		}
		if code, _, body := h.get(t, "/badges/acme/web/deploy/production.svg"); code != 200 || body != badge.SVG(badge.Badge{Label: "production", Message: "1.2.0", Color: "blue"}) {
			t.Errorf("deploy badge: %s", body)
		}
		if code, _, body := h.get(t, "/errors"); code != 200 || !strings.Contains(body, "TypeError: x is undefined") {
			t.Errorf("errors page %d", code)
		}
		if code, _, body := h.get(t, "/environments"); code != 200 || !strings.Contains(body, "1.2.0") {
			t.Errorf("environments page %d", code)
		}

		// A freeze window shows on the board while it lasts.
		until0 := time.Now().Add(2 * time.Hour).UTC()
		h.publish(t, "environment.frozen", "acme/web", "", time.Now(), &eventsv1.EnvironmentChanged{Repository: "acme/web", Environment: "production",
			By: "ops", Reason: "end-of-year freeze", StartsAt: timestamppb.New(time.Now().Add(-time.Minute)), EndsAt: timestamppb.New(until0)})
		until(t, "the freeze on the board", func() bool {
			_, _, body := h.get(t, "/environments")
			return strings.Contains(body, "frozen until") && strings.Contains(body, "end-of-year freeze")
		})
	})
}

// TestLogStream stores a finished job's log and reads it back as
// server-sent events, then the end.
func TestLogStream(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, "dashboards"), time.Time{})
	obs, err := h.bus.LogStore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for i, text := range []string{"go vet ./...", "ok", ""} {
		stream := "stdout"
		if text == "" {
			stream = "end"
		}
		_ = bus.EncodeLog(&buf, &eventsv1.LogLine{JobId: "job-1", Step: "lint", Number: uint64(i + 1), Stream: stream, Text: text})
	}
	if _, err := obs.PutBytes(t.Context(), "job-1", buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	code, hdr, body := h.get(t, "/changes/x/jobs/job-1/log?after=1")
	if code != 200 || hdr.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("log stream %d %v", code, hdr)
	}
	if strings.Contains(body, "go vet") || !strings.Contains(body, `"text":"ok"`) || !strings.HasSuffix(body, "event: end\ndata: {}\n\n") {
		t.Errorf("log stream body: %q", body)
	}
}

// TestRoutesLeaveOthersAlone mounts the UI beside the other services'
// patterns: no conflict, and their paths still reach them.
func TestRoutesLeaveOthersAlone(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, "dashboards"), time.Time{})
	mux := http.NewServeMux()
	others := []string{"POST /hooks/{forge}", "GET /builds/{id}/artifacts/{name...}", "/graphite/", "/graphite/render", "POST /api/{project_id}/envelope/", "GET /healthz"}
	for _, p := range others {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "other") })
	}
	h.svc.Routes(mux)
	for _, c := range []struct{ method, path string }{
		{"POST", "/hooks/github"}, {"GET", "/builds/x/artifacts/a/b.txt"}, {"GET", "/graphite/metrics/find"}, {"POST", "/api/1/envelope/"}, {"GET", "/healthz"},
	} {
		req := httptest.NewRequest(c.method, c.path, nil)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Body.String() != "other" {
			t.Errorf("%s %s went to the dashboards: %d", c.method, c.path, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/no/such/page", nil))
	if rec.Code != 404 {
		t.Errorf("unknown path: %d", rec.Code)
	}
}
