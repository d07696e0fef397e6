package testruns

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	testrunsv1 "github.com/shiploop/shiploop/proto/shiploop/testruns/v1"
)

// harness runs the service on an embedded NATS and a given store, and
// plays builds and the agents by hand.
type harness struct {
	t    *testing.T
	svc  *Service
	bus  *bus.Bus
	api  *grpcServer
	seen *seenEvents
}

// seenEvents are the testrun.* events published so far.
type seenEvents struct {
	mu     sync.Mutex
	events []bus.Event
}

// with is the harness for a subtest.
func (h *harness) with(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

func newHarness(t *testing.T, db *store.DB) *harness {
	t.Helper()
	b := bustest.Start(t, bus.Options{Source: "/test"})
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := New(ctx, Config{DB: db, Bus: b})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, svc: svc, bus: b, api: &grpcServer{s: svc}, seen: &seenEvents{}}
	done := make(chan error, 2)
	go func() { done <- svc.Run(ctx) }()
	go func() {
		done <- b.Watch(ctx, bus.WatchOptions{Filters: []string{bus.EventFilter("testrun", "")}}, func(ev bus.Event) error {
			h.seen.mu.Lock()
			h.seen.events = append(h.seen.events, ev)
			h.seen.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil && ctx.Err() == nil {
				t.Errorf("Run: %v", err)
			}
		}
	})
	return h
}

func (h *harness) send(ev bus.Event) {
	h.t.Helper()
	if err := h.bus.Publish(h.t.Context(), ev); err != nil {
		h.t.Fatal(err)
	}
}

// eventually polls cond until it holds or ten seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) finished(runID string) *eventsv1.TestRunFinished {
	h.t.Helper()
	var out *eventsv1.TestRunFinished
	eventually(h.t, "testrun.finished of "+runID, func() bool {
		h.seen.mu.Lock()
		defer h.seen.mu.Unlock()
		for _, ev := range h.seen.events {
			if f, ok := ev.Data.(*eventsv1.TestRunFinished); ok && f.RunId == runID {
				out = f
				return true
			}
		}
		return false
	})
	return out
}

// build announces a build the way the builds service does.
func (h *harness) build(id, repo, commit string, plan *eventsv1.TestPlan, success bool) {
	h.send(bus.Event{Type: "build.created", Repository: repo, Subject: id, ChainID: "chain-" + id, Data: &eventsv1.BuildCreated{
		BuildId: id, Repository: repo, Ref: "refs/heads/main", Commit: commit, Version: "1.0.0-" + id,
	}})
	if plan != nil {
		h.send(bus.Event{Type: "build.tests_planned", Repository: repo, Subject: id, ChainID: "chain-" + id, Data: &eventsv1.BuildTestsPlanned{
			BuildId: id, Repository: repo, Ref: "refs/heads/main", Commit: commit, Version: "1.0.0-" + id, Plan: plan,
		}})
	}
	st := eventsv1.BuildStatus_BUILD_STATUS_SUCCESS
	if !success {
		st = eventsv1.BuildStatus_BUILD_STATUS_FAILURE
	}
	h.send(bus.Event{Type: "build.finished", Repository: repo, Subject: id, ChainID: "chain-" + id, Data: &eventsv1.BuildFinished{
		BuildId: id, Repository: repo, Ref: "refs/heads/main", Commit: commit, Status: st,
	}})
}

// takeJobs takes n test jobs from the JOBS stream.
func (h *harness) takeJobs(n int) []*eventsv1.Job {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var jobs []*eventsv1.Job
	err := h.bus.Take(ctx, bus.JobConsumerConfig{Name: "test-agent", Filters: []string{bus.JobFilter("test")}}, func(_ context.Context, j *bus.Job) error {
		mu.Lock()
		defer mu.Unlock()
		jobs = append(jobs, j.Data.(*eventsv1.Job))
		if len(jobs) == n {
			cancel()
		}
		return nil
	})
	if len(jobs) < n {
		var b, r, j, o int
		h.svc.db.QueryRow(`SELECT COUNT(*) FROM tr_builds`).Scan(&b)
		h.svc.db.QueryRow(`SELECT COUNT(*) FROM test_runs`).Scan(&r)
		h.svc.db.QueryRow(`SELECT COUNT(*) FROM test_jobs`).Scan(&j)
		h.svc.db.QueryRow(`SELECT COUNT(*) FROM bus_outbox`).Scan(&o)
		h.t.Logf("builds %d runs %d jobs %d outbox %d", b, r, j, o)
		h.t.Fatalf("took %d test jobs, want %d (%v)", len(jobs), n, err)
	}
	return jobs
}

// finishJob plays an agent: stores the report files and reports the job.
func (h *harness) finishJob(job *eventsv1.Job, st eventsv1.BuildStatus, files map[string]string) {
	h.t.Helper()
	ctx := h.t.Context()
	obs, err := h.svc.reportStore(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var reports []*eventsv1.ReportFile
	for name, content := range files {
		key := job.JobId + "/" + name
		if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: key}, strings.NewReader(content)); err != nil {
			h.t.Fatal(err)
		}
		kind := "junit"
		if strings.Contains(name, "cover") {
			kind = "coverage"
		}
		reports = append(reports, &eventsv1.ReportFile{Name: name, Kind: kind, Key: key, Size: int64(len(content)), PathPrefixes: []string{"/ws"}})
	}
	h.send(bus.Event{Type: "job.finished", Repository: job.Repository, Subject: job.JobId, Data: &eventsv1.JobFinished{
		JobId: job.JobId, BuildId: job.BuildId, Repository: job.Repository, Status: st, Reports: reports,
	}})
}

func junit(cases ...string) string {
	return `<?xml version="1.0"?><testsuites><testsuite name="unit">` + strings.Join(cases, "") + `</testsuite></testsuites>`
}

func pass(name string) string {
	return fmt.Sprintf(`<testcase classname="pkg" name=%q time="0.5"/>`, name)
}
func fail(name string) string {
	return fmt.Sprintf(`<testcase classname="pkg" name=%q time="0.25"><failure message="boom">stack</failure></testcase>`, name)
}

func runID(t *testing.T, h *harness, buildID string) string {
	t.Helper()
	var id string
	eventually(t, "a run for "+buildID, func() bool {
		resp, err := h.api.GetTestRun(t.Context(), &testrunsv1.GetTestRunRequest{BuildId: buildID})
		if err != nil {
			return false
		}
		id = resp.Run.Id
		return true
	})
	return id
}

func TestService(t *testing.T) {
	storetest.Engines(t, "testruns", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		t.Run("matrix and shards, reports, coverage", func(t *testing.T) { testPlannedRun(t, h.with(t)) })
		t.Run("rerun makes flaky", func(t *testing.T) { testRerun(t, h.with(t)) })
		t.Run("another build of the commit makes flaky", func(t *testing.T) { testFlakyAcrossBuilds(t, h.with(t)) })
		t.Run("upload, quarantine, history", func(t *testing.T) { testUploadQuarantine(t, h.with(t)) })
		t.Run("reports larger than a batch, one broken halfway", func(t *testing.T) { testLargeReports(t, h.with(t)) })
	})
}

func testPlannedRun(t *testing.T, h *harness) {
	plan := &eventsv1.TestPlan{
		Steps:   []*eventsv1.Step{{Name: "test", Commands: []string{"go test ./..."}}},
		Reports: &eventsv1.TestReportGlobs{Junit: []string{"report.xml"}, Coverage: []string{"cover.out"}},
		Shards:  2,
		Matrix:  []*eventsv1.MatrixCell{{Values: map[string]string{"GO": "1.25"}}, {Values: map[string]string{"GO": "1.26"}}},
	}
	// A failed build runs no tests.
	h.build("b0", "acme/app", "c0", plan, false)
	h.build("b1", "acme/app", "c1", plan, true)
	jobs := h.takeJobs(4)
	shards := map[string]bool{}
	for _, j := range jobs {
		if j.BuildId != "b1" || j.Kind != "test" || j.Test == nil || j.Test.ShardTotal != 2 {
			t.Fatalf("job %+v", j)
		}
		shards[j.Matrix["GO"]+"/"+j.Environment["SHIPLOOP_SHARD_INDEX"]] = true
	}
	if len(shards) != 4 {
		t.Errorf("cells×shards %v, want 4 distinct", shards)
	}
	id := runID(t, h, "b1")
	cover := "mode: set\n/ws/a.go:1.1,3.2 2 1\n/ws/a.go:5.1,6.2 1 0\n"
	h.finishJob(jobs[0], eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, map[string]string{"report.xml": junit(pass("TestA"), pass("TestB")), "cover.out": cover})
	h.finishJob(jobs[1], eventsv1.BuildStatus_BUILD_STATUS_FAILURE, map[string]string{"report.xml": junit(pass("TestC"), fail("TestD"))})
	h.finishJob(jobs[2], eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, map[string]string{"report.xml": `<testsuites><testsuite><testcase name="x">`})
	h.finishJob(jobs[3], eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, nil)
	f := h.finished(id)
	if f.Status != eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED || f.Counts.Tests != 4 || f.Counts.Failed != 1 || f.Counts.Passed != 3 {
		t.Errorf("finished %v %+v", f.Status, f.Counts)
	}
	if len(f.Failures) != 1 || f.Failures[0].Status != "failed" || f.Failures[0].Name == "" {
		t.Errorf("failures named in the event: %v", f.Failures)
	}
	if f.Coverage == nil || f.Coverage.RawUnit != "statements" || f.Coverage.RawCovered != 2 || f.Coverage.RawTotal != 3 || f.Coverage.LinesTotal != 5 {
		t.Errorf("coverage %+v", f.Coverage)
	}
	run, err := h.api.GetTestRun(t.Context(), &testrunsv1.GetTestRunRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	var broken *testrunsv1.Report
	for _, r := range run.Run.Reports {
		if r.Error != "" {
			broken = r
		}
	}
	if broken == nil || !strings.Contains(broken.Error, "report.xml:1:") || !strings.Contains(broken.Error, "truncated") {
		t.Errorf("the corrupt report is not marked with its position: %+v", run.Run.Reports)
	}
	cases, err := h.api.ListTestCases(t.Context(), &testrunsv1.ListTestCasesRequest{RunId: id, Statuses: []string{"failed"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(cases.Cases) != 1 || cases.Cases[0].Name != "TestD" || cases.Cases[0].Message != "boom" {
		t.Errorf("failed cases %+v", cases.Cases)
	}
	page, err := h.api.ListTestCases(t.Context(), &testrunsv1.ListTestCasesRequest{RunId: id, PageSize: 3})
	if err != nil || len(page.Cases) != 3 || page.NextPageToken == "" {
		t.Fatalf("page 1: %v %v", page, err)
	}
	page2, err := h.api.ListTestCases(t.Context(), &testrunsv1.ListTestCasesRequest{RunId: id, PageSize: 3, PageToken: page.NextPageToken})
	if err != nil || len(page2.Cases) != 1 || page2.NextPageToken != "" {
		t.Errorf("page 2: %v %v", page2, err)
	}
	if _, err := h.api.ListTestCases(t.Context(), &testrunsv1.ListTestCasesRequest{RunId: id, Statuses: []string{"broken"}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad status filter: %v", err)
	}
	cov, err := h.api.Coverage(t.Context(), &testrunsv1.CoverageRequest{RunId: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(cov.Files) != 1 || cov.Files[0].Path != "a.go" || fmt.Sprint(cov.Files[0].MissedLines) != "[5 6]" {
		t.Errorf("coverage files %+v", cov.Files)
	}
}

func testRerun(t *testing.T, h *harness) {
	plan := &eventsv1.TestPlan{
		Steps:   []*eventsv1.Step{{Name: "test", Commands: []string{"pytest"}}},
		Reports: &eventsv1.TestReportGlobs{Junit: []string{"*.xml"}},
		Retries: 1,
	}
	h.build("b2", "acme/app", "c2", plan, true)
	first := h.takeJobs(1)[0]
	h.finishJob(first, eventsv1.BuildStatus_BUILD_STATUS_FAILURE, map[string]string{"r.xml": junit(pass("TestA"), fail("TestFlaky"))})
	second := h.takeJobs(1)[0]
	if second.JobId == first.JobId || second.Commit != "c2" {
		t.Fatalf("rerun %+v", second)
	}
	h.finishJob(second, eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, map[string]string{"r.xml": junit(pass("TestA"), pass("TestFlaky"))})
	f := h.finished(runID(t, h, "b2"))
	if f.Status != eventsv1.TestRunStatus_TEST_RUN_STATUS_PASSED || f.Counts.Flaky != 1 || f.Counts.Tests != 2 || f.Counts.Passed != 2 {
		t.Errorf("finished %v %+v %s", f.Status, f.Counts, f.Error)
	}
	if len(f.Failures) != 0 {
		t.Errorf("a flaky test is not a failure: %v", f.Failures)
	}
	fl, err := h.api.FlakyTests(t.Context(), &testrunsv1.FlakyTestsRequest{Repository: "acme/app"})
	if err != nil {
		t.Fatal(err)
	}
	if len(fl.Tests) != 1 || fl.Tests[0].Test.Name != "TestFlaky" || fl.Tests[0].LastFlaky == nil {
		t.Errorf("flaky tests %+v", fl.Tests)
	}
}

// testFlakyAcrossBuilds: a test that failed in one build of a commit and
// passes in another build of the same commit is flaky when the second run
// finishes; on another commit the same pair is not.
func testFlakyAcrossBuilds(t *testing.T, h *harness) {
	plan := &eventsv1.TestPlan{Steps: []*eventsv1.Step{{Name: "test", Commands: []string{"pytest"}}}, Reports: &eventsv1.TestReportGlobs{Junit: []string{"*.xml"}}}
	h.build("x1", "acme/cross", "c9", plan, true)
	h.finishJob(h.takeJobs(1)[0], eventsv1.BuildStatus_BUILD_STATUS_FAILURE, map[string]string{"r.xml": junit(pass("TestA"), fail("TestShaky"), fail("TestBroken"))})
	if f := h.finished(runID(t, h, "x1")); f.Counts.Flaky != 0 || f.Counts.Failed != 2 {
		t.Fatalf("first build: %+v", f.Counts)
	}
	h.build("x2", "acme/cross", "c9", plan, true)
	h.finishJob(h.takeJobs(1)[0], eventsv1.BuildStatus_BUILD_STATUS_FAILURE, map[string]string{"r.xml": junit(pass("TestA"), pass("TestShaky"), fail("TestBroken"))})
	f := h.finished(runID(t, h, "x2"))
	if f.Counts.Flaky != 1 || f.Counts.Failed != 1 || f.Counts.Passed != 2 {
		t.Errorf("second build of the commit: %+v, want TestShaky flaky (passed), TestBroken failed", f.Counts)
	}
	h.build("x3", "acme/cross", "c10", plan, true)
	h.finishJob(h.takeJobs(1)[0], eventsv1.BuildStatus_BUILD_STATUS_FAILURE, map[string]string{"r.xml": junit(pass("TestA"), fail("TestShaky"), pass("TestBroken"))})
	if f := h.finished(runID(t, h, "x3")); f.Counts.Flaky != 0 {
		t.Errorf("another commit: %+v, want nothing flaky", f.Counts)
	}
	fl, err := h.api.FlakyTests(t.Context(), &testrunsv1.FlakyTestsRequest{Repository: "acme/cross"})
	if err != nil {
		t.Fatal(err)
	}
	if len(fl.Tests) != 1 || fl.Tests[0].Test.Name != "TestShaky" {
		t.Errorf("flaky tests %+v, want TestShaky only", fl.Tests)
	}
}

func testUploadQuarantine(t *testing.T, h *harness) {
	ctx := t.Context()
	_, err := h.api.UploadReport(ctx, &testrunsv1.UploadReportRequest{BuildId: "nope", Content: []byte(junit(pass("x")))})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "unknown build nope") {
		t.Errorf("unknown build: %v", err)
	}
	h.build("b3", "acme/lib", "d3", nil, true)
	h.build("b4", "acme/lib", "d4", nil, true)
	eventually(t, "builds known", func() bool {
		_, err := loadBuild(ctx, h.svc.db, "b4")
		return err == nil
	})
	up := func(build string, complete bool, name, content string) *testrunsv1.UploadReportResponse {
		t.Helper()
		resp, err := h.api.UploadReport(ctx, &testrunsv1.UploadReportRequest{BuildId: build, Name: name, Content: []byte(content), Complete: complete})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	r := up("b3", true, "r.xml", junit(pass("TestOK"), fail("TestBad")))
	if r.Run.Status != eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED || r.Report.Format != "junit" || r.Report.Cases != 2 {
		t.Errorf("run %v, report %+v", r.Run.Status, r.Report)
	}
	id := &testrunsv1.TestID{Repository: "acme/lib", Suite: "unit", ClassName: "pkg", Name: "TestBad"}
	q, err := h.api.SetQuarantine(ctx, &testrunsv1.SetQuarantineRequest{Test: id, Quarantined: true, Reason: "JIRA-1"})
	if err != nil || !q.Test.Quarantined || q.Test.QuarantineReason != "JIRA-1" {
		t.Fatalf("quarantine: %+v %v", q, err)
	}
	// Coverage with a diff: patch coverage.
	up("b4", false, "cover.out", "mode: count\nexample.com/m/a.go:1.1,2.2 1 3\nexample.com/m/a.go:4.1,4.9 1 0\n")
	up("b4", false, "change.diff", "--- a/a.go\n+++ b/a.go\n@@ -1,0 +1,4 @@\n+x\n+y\n+z\n+w\n")
	r = up("b4", true, "r.xml", junit(pass("TestOK"), fail("TestBad")))
	if r.Run.Status != eventsv1.TestRunStatus_TEST_RUN_STATUS_PASSED || r.Run.Counts.Quarantined != 1 || r.Run.Counts.Failed != 0 {
		t.Errorf("with quarantine: %v %+v %s", r.Run.Status, r.Run.Counts, r.Run.Error)
	}
	if c := r.Run.Coverage; c == nil || c.PatchTotal != 0 {
		// The profile's paths are import paths; without the module prefix
		// they do not meet the diff's a.go.
		t.Logf("coverage %+v", c)
	}
	hist, err := h.api.TestHistory(ctx, &testrunsv1.TestHistoryRequest{Test: id, PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if hist.Stats.Runs != 2 || hist.Stats.Failures != 2 || hist.Stats.FailureRate != 1 || !hist.Stats.Quarantined ||
		len(hist.Entries) != 1 || hist.Entries[0].BuildId != "b4" || hist.NextPageToken == "" {
		t.Errorf("history %+v", hist)
	}
	hist, err = h.api.TestHistory(ctx, &testrunsv1.TestHistoryRequest{Test: id, PageToken: hist.NextPageToken})
	if err != nil || len(hist.Entries) != 1 || hist.Entries[0].BuildId != "b3" {
		t.Errorf("history page 2 %+v %v", hist, err)
	}
	ql, err := h.api.ListQuarantine(ctx, &testrunsv1.ListQuarantineRequest{Repository: "acme/lib"})
	if err != nil || len(ql.Tests) != 1 {
		t.Errorf("quarantine list %+v %v", ql, err)
	}
	// Patch coverage with prefixes that make the paths meet.
	h.build("b5", "acme/lib", "d5", nil, true)
	eventually(t, "b5 known", func() bool { _, err := loadBuild(ctx, h.svc.db, "b5"); return err == nil })
	if _, err := h.api.UploadReport(ctx, &testrunsv1.UploadReportRequest{BuildId: "b5", Name: "c.out", PathPrefixes: []string{"example.com/m"},
		Content: []byte("mode: count\nexample.com/m/a.go:1.1,2.2 1 3\nexample.com/m/a.go:4.1,4.9 1 0\n")}); err != nil {
		t.Fatal(err)
	}
	up("b5", false, "change.diff", "--- a/a.go\n+++ b/a.go\n@@ -1,0 +1,4 @@\n+x\n+y\n+z\n+w\n")
	r = up("b5", true, "r.xml", junit(pass("TestOK")))
	if c := r.Run.Coverage; c == nil || c.PatchCovered != 2 || c.PatchTotal != 3 {
		t.Errorf("patch coverage %+v", c)
	}
}

// testLargeReports: reports of several write batches. Repeated tests count
// each time they ran; a report that breaks after a batch was written leaves
// none of its cases behind and is recorded with its error.
func testLargeReports(t *testing.T, h *harness) {
	ctx := t.Context()
	plan := &eventsv1.TestPlan{
		Steps:   []*eventsv1.Step{{Name: "test", Commands: []string{"mvn test"}}},
		Reports: &eventsv1.TestReportGlobs{Junit: []string{"*.xml"}},
		Shards:  2,
	}
	h.build("b6", "acme/big", "e6", plan, true)
	jobs := h.takeJobs(2)
	id := runID(t, h, "b6")
	tc := func(name string) string {
		return fmt.Sprintf(`<testcase classname="pkg.Big" name=%q time="0.001"/>`, name)
	}
	var good, broken strings.Builder
	good.WriteString(`<?xml version="1.0"?><testsuites><testsuite name="big">`)
	for i := range 2*caseBatch + caseBatch/2 {
		switch i {
		case 42: // Surefire: failed once, passed on the rerun
			good.WriteString(`<testcase classname="pkg.Big" name="T0042"><flakyFailure message="timeout"><stackTrace>at Big</stackTrace></flakyFailure></testcase>`)
			continue
		case 6: // the same test twice in one batch
			good.WriteString(tc("T0005"))
		}
		good.WriteString(tc(fmt.Sprintf("T%04d", i)))
	}
	good.WriteString(tc("T1500") + `</testsuite></testsuites>`) // and again two batches later
	broken.WriteString(`<?xml version="1.0"?><testsuites><testsuite name="big">`)
	for i := range caseBatch + caseBatch/2 {
		broken.WriteString(tc(fmt.Sprintf("B%04d", i)))
	}
	broken.WriteString(`<testcase classname="pkg.Big" name="cut">`)
	h.finishJob(jobs[0], eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, map[string]string{"report.xml": good.String()})
	h.finishJob(jobs[1], eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, map[string]string{"broken.xml": broken.String()})
	f := h.finished(id)
	if f.Status != eventsv1.TestRunStatus_TEST_RUN_STATUS_ERROR || !strings.Contains(f.Error, "broken.xml") || !strings.Contains(f.Error, "truncated") {
		t.Errorf("finished %v %q, want an error naming the broken report", f.Status, f.Error)
	}
	if c := f.Counts; c.Tests != 2500 || c.Passed != 2500 || c.Flaky != 1 || c.Failed != 0 {
		t.Errorf("counts %+v, want the 2500 tests of the good report (1 flaky) and none of the broken one", c)
	}
	run, err := h.api.GetTestRun(ctx, &testrunsv1.GetTestRunRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	reports := map[string]*testrunsv1.Report{}
	for _, r := range run.Run.Reports {
		reports[r.Name] = r
	}
	if r := reports["report.xml"]; r == nil || r.Cases != 2502 || r.Error != "" {
		t.Errorf("good report %+v, want 2502 cases", r)
	}
	if r := reports["broken.xml"]; r == nil || r.Cases != 0 || !strings.Contains(r.Error, "broken.xml:1:") {
		t.Errorf("broken report %+v, want no cases and its error with the position", r)
	}
	var listed int
	for token := ""; ; {
		page, err := h.api.ListTestCases(ctx, &testrunsv1.ListTestCasesRequest{RunId: id, PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		listed += len(page.Cases)
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	if listed != 2502 {
		t.Errorf("ListTestCases lists %d results, want 2502", listed)
	}
	for _, name := range []string{"T0005", "T1500"} {
		hist, err := h.api.TestHistory(ctx, &testrunsv1.TestHistoryRequest{Test: &testrunsv1.TestID{Repository: "acme/big", Suite: "big", ClassName: "pkg.Big", Name: name}})
		if err != nil || hist.Stats.Runs != 2 || len(hist.Entries) != 2 {
			t.Errorf("history of %s (reported twice): %+v %v", name, hist, err)
		}
	}
	hist, err := h.api.TestHistory(ctx, &testrunsv1.TestHistoryRequest{Test: &testrunsv1.TestID{Repository: "acme/big", Suite: "big", ClassName: "pkg.Big", Name: "T0042"}})
	if err != nil || hist.Stats.FlakyCount != 1 || len(hist.Entries) != 1 || !hist.Entries[0].Flaky {
		t.Errorf("history of the flaky test: %+v %v", hist, err)
	}
	_, err = h.api.TestHistory(ctx, &testrunsv1.TestHistoryRequest{Test: &testrunsv1.TestID{Repository: "acme/big", Suite: "big", ClassName: "pkg.Big", Name: "B0003"}})
	if status.Code(err) != codes.NotFound {
		t.Errorf("a test only the broken report named: %v, want NotFound", err)
	}
}
