package dashboards

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	testrunsv1 "github.com/shiploop/shiploop/proto/shiploop/testruns/v1"
)

// fakeTestRuns is testruns' API with build b-9's run: one failure, one
// flaky test, and coverage of two files.
type fakeTestRuns struct {
	testrunsv1.TestRunServiceClient
}

func (fakeTestRuns) GetTestRun(_ context.Context, r *testrunsv1.GetTestRunRequest, _ ...grpc.CallOption) (*testrunsv1.GetTestRunResponse, error) {
	if r.GetBuildId() != "b-9" {
		return nil, status.Error(codes.NotFound, "build has no test run")
	}
	return &testrunsv1.GetTestRunResponse{Run: &testrunsv1.TestRun{Id: "run-9", BuildId: "b-9", Repository: "acme/shop", Ref: "refs/heads/main",
		Status: eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED, Counts: &eventsv1.TestCounts{Tests: 12, Passed: 10, Failed: 1, Skipped: 1, Flaky: 1},
		Coverage: &eventsv1.CoverageSummary{LinesCovered: 30, LinesTotal: 40}}}, nil
}

func (fakeTestRuns) ListTestCases(_ context.Context, r *testrunsv1.ListTestCasesRequest, _ ...grpc.CallOption) (*testrunsv1.ListTestCasesResponse, error) {
	if r.GetFlakyOnly() {
		return &testrunsv1.ListTestCasesResponse{Cases: []*testrunsv1.TestCase{{Suite: "cart", Name: "TestRace", Status: "passed", Flaky: true, Attempt: 2}}}, nil
	}
	return &testrunsv1.ListTestCasesResponse{Cases: []*testrunsv1.TestCase{{Suite: "checkout", ClassName: "Pay", Name: "TestTotal", Status: "failed",
		Message: "total = 9, want 10", Details: "checkout_test.go:42: total = 9, want 10\n<goroutine>", File: "checkout_test.go", Line: 42, Quarantined: true}}}, nil
}

func (fakeTestRuns) TestHistory(_ context.Context, r *testrunsv1.TestHistoryRequest, _ ...grpc.CallOption) (*testrunsv1.TestHistoryResponse, error) {
	at := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if r.GetTest().GetName() != "TestTotal" {
		return &testrunsv1.TestHistoryResponse{Stats: &testrunsv1.TestStats{Runs: 5, FlakyCount: 2}}, nil
	}
	return &testrunsv1.TestHistoryResponse{Stats: &testrunsv1.TestStats{Runs: 4, Failures: 2, Quarantined: true}, Entries: []*testrunsv1.HistoryEntry{
		{BuildId: "b-9", Ref: "refs/heads/main", Status: "failed", Commit: "abcdef123", Time: at},
		{BuildId: "b-8x", Ref: "refs/heads/feature", Status: "failed", Time: at},
		{BuildId: "b-8", Ref: "refs/heads/main", Status: "passed", Time: at},
		{BuildId: "b-7", Ref: "refs/heads/main", Status: "passed", Flaky: true, Time: at},
	}}, nil
}

func (fakeTestRuns) Coverage(context.Context, *testrunsv1.CoverageRequest, ...grpc.CallOption) (*testrunsv1.CoverageResponse, error) {
	return &testrunsv1.CoverageResponse{Files: []*testrunsv1.FileCoverage{
		{Path: "cart.go", LinesCovered: 20, LinesTotal: 20},
		{Path: "checkout.go", LinesCovered: 10, LinesTotal: 20, MissedLines: []int32{3, 4, 5, 9}, PatchCovered: 1, PatchTotal: 2},
	}}, nil
}

// TestBuildTestsPage: /builds/{id}/tests shows the failures with message
// and output, quarantine and flaky marks, each test's last results on the
// build's branch (not other branches'), and coverage per file, least
// covered first; a build without a run, or without testruns, says so.
func TestBuildTestsPage(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, "dashboards"), time.Time{})
	code, _, body := h.get(t, "/builds/b-9/tests")
	if code != 200 || !strings.Contains(body, "do not reach the testruns service") {
		t.Fatalf("without testruns: %d\n%s", code, body)
	}
	h.svc.cfg.TestRuns = fakeTestRuns{}
	code, _, body = h.get(t, "/builds/b-9/tests")
	if code != 200 {
		t.Fatalf("tests page: %d\n%s", code, body)
	}
	for _, want := range []string{
		"10 passed, 1 failed, 1 skipped of 12", "coverage 75.0% (30/40 lines)",
		`<b class="test-id">checkout › Pay › TestTotal</b> <span class="quarantined">quarantined</span>`,
		`<p class="message">total = 9, want 10</p>`, "<pre class=\"output\">checkout_test.go:42: total = 9, want 10\n&lt;goroutine&gt;</pre>",
		`last 3 on this branch: <a class="st failure" href="/builds/b-9/tests"`, `<a class="st success" href="/builds/b-8/tests"`,
		`<a class="st pending" href="/builds/b-7/tests" title="passed (flaky)`,
		"2 failure(s) in 4 run(s)",
		`<b class="test-id">cart › TestRace</b> <span class="flaky">flaky</span>`, "attempt 2", "flaky 2 time(s)",
		`<td><code>checkout.go</code></td><td>10/20</td><td>50.0%</td><td>1/2</td><td class="muted">3-5, 9</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("tests page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "b-8x") {
		t.Error("history shows another branch's run")
	}
	if strings.Index(body, "checkout.go") > strings.Index(body, "cart.go") {
		t.Error("coverage not least covered first")
	}
	if code, _, body := h.get(t, "/builds/b-1/tests"); code != 200 || !strings.Contains(body, "has no test run") {
		t.Errorf("build without a run: %d\n%s", code, body)
	}
}
