package dashboards

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	testrunsv1 "github.com/shiploop/shiploop/proto/shiploop/testruns/v1"
)

// historyDepth is how many of a test's last runs on the branch the tests
// page shows; testsCap how many failed and flaky tests get a history.
const (
	historyDepth = 10
	testsCap     = 30
)

// testsPage is /builds/{id}/tests: the build's test run as testruns
// stores it.
type testsPage struct {
	BuildID, Repository, Ref, RunID, Status string
	Passed, Failed, Skipped, Total          int64
	Coverage                                string
	// Failures: failed and errored cases with message and output.
	Failures []testCaseView
	// Flaky: cases that failed then passed on a retry in this run.
	Flaky []testCaseView
	// Files: coverage per file, least covered first.
	Files []fileCoverageView
	// NoTests says why there is nothing to show (no run, testruns not
	// reachable).
	NoTests string
}

type testCaseView struct {
	Suite, Class, Name, Status, Message, Output, File string
	Line                                              int32
	Attempt                                           int32
	Duration                                          time.Duration
	Flaky, Quarantined                                bool
	// History: the test's last runs on the same branch, newest first.
	History []testHistoryView
	// Stats over every stored result of the test.
	Runs, Failures, FlakyCount int64
}

// ID is the test's full name.
func (c testCaseView) ID() string {
	parts := []string{}
	for _, p := range []string{c.Suite, c.Class, c.Name} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " › ")
}

type testHistoryView struct {
	BuildID, Commit, Status string
	Flaky                   bool
	Time                    time.Time
}

// Class is the status badge class of a past result.
func (h testHistoryView) Class() string {
	switch {
	case h.Flaky:
		return "pending"
	case h.Status == "passed":
		return "success"
	case h.Status == "failed" || h.Status == "error":
		return "failure"
	}
	return "skipped"
}

type fileCoverageView struct {
	Path                  string
	Covered, Total        int64
	Percent               float64
	PatchCovered, Patched int64
	Missed                string
}

func (p *pages) buildTests(w http.ResponseWriter, r *http.Request) {
	tp, err := p.s.testsPage(r.Context(), r.PathValue("id"))
	if err != nil {
		p.fail(w, err)
		return
	}
	p.render(w, "tests", pageData{Title: "Tests of build " + tp.BuildID, Nav: "repos", Data: tp})
}

func (s *Service) testsPage(ctx context.Context, buildID string) (testsPage, error) {
	tp := testsPage{BuildID: buildID}
	c := s.cfg.TestRuns
	if c == nil {
		tp.NoTests = "this server's dashboards do not reach the testruns service"
		return tp, nil
	}
	run, err := c.GetTestRun(ctx, &testrunsv1.GetTestRunRequest{BuildId: buildID})
	if status.Code(err) == codes.NotFound {
		tp.NoTests = "build " + buildID + " has no test run (no test report was collected)"
		return tp, nil
	}
	if err != nil {
		return tp, fmt.Errorf("testruns: %w", err)
	}
	tr := run.GetRun()
	tp.Repository, tp.Ref, tp.RunID = tr.GetRepository(), tr.GetRef(), tr.GetId()
	tp.Status = enumStatus(tr.GetStatus())
	cn := tr.GetCounts()
	tp.Passed, tp.Failed, tp.Skipped, tp.Total = cn.GetPassed(), cn.GetFailed()+cn.GetErrors(), cn.GetSkipped(), cn.GetTests()
	if cs := tr.GetCoverage(); cs.GetLinesTotal() > 0 {
		tp.Coverage = fmt.Sprintf("%.1f%% (%d/%d lines)", 100*float64(cs.GetLinesCovered())/float64(cs.GetLinesTotal()), cs.GetLinesCovered(), cs.GetLinesTotal())
	}
	failed, err := s.listCases(ctx, &testrunsv1.ListTestCasesRequest{RunId: tr.GetId(), Statuses: []string{"failed", "error"}})
	if err != nil {
		return tp, err
	}
	flaky, err := s.listCases(ctx, &testrunsv1.ListTestCasesRequest{RunId: tr.GetId(), FlakyOnly: true})
	if err != nil {
		return tp, err
	}
	tp.Failures, tp.Flaky = failed, flaky
	n := 0
	for _, list := range [][]testCaseView{tp.Failures, tp.Flaky} {
		for i := range list {
			if n >= testsCap {
				break
			}
			n++
			s.testHistory(ctx, tp.Repository, tp.Ref, &list[i])
		}
	}
	cov, err := c.Coverage(ctx, &testrunsv1.CoverageRequest{RunId: tr.GetId()})
	if err != nil && status.Code(err) != codes.NotFound {
		return tp, fmt.Errorf("testruns coverage: %w", err)
	}
	for _, f := range cov.GetFiles() {
		fv := fileCoverageView{Path: f.GetPath(), Covered: f.GetLinesCovered(), Total: f.GetLinesTotal(), PatchCovered: f.GetPatchCovered(), Patched: f.GetPatchTotal()}
		if fv.Total > 0 {
			fv.Percent = 100 * float64(fv.Covered) / float64(fv.Total)
		}
		fv.Missed = lineRanges(f.GetMissedLines())
		tp.Files = append(tp.Files, fv)
	}
	sort.SliceStable(tp.Files, func(i, j int) bool { return tp.Files[i].Percent < tp.Files[j].Percent })
	return tp, nil
}

func (s *Service) listCases(ctx context.Context, req *testrunsv1.ListTestCasesRequest) ([]testCaseView, error) {
	var out []testCaseView
	req.PageSize = 200
	for page := 0; page < 5; page++ {
		resp, err := s.cfg.TestRuns.ListTestCases(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("testruns cases: %w", err)
		}
		for _, c := range resp.GetCases() {
			out = append(out, testCaseView{Suite: c.GetSuite(), Class: c.GetClassName(), Name: c.GetName(), Status: c.GetStatus(),
				Message: c.GetMessage(), Output: c.GetDetails(), File: c.GetFile(), Line: c.GetLine(), Attempt: c.GetAttempt(),
				Duration: c.GetDuration().AsDuration(), Flaky: c.GetFlaky(), Quarantined: c.GetQuarantined()})
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return out, nil
}

// testHistory fills c's last historyDepth results on ref and its stats;
// a failing lookup leaves them empty (the page still shows the failure).
func (s *Service) testHistory(ctx context.Context, repo, ref string, c *testCaseView) {
	req := &testrunsv1.TestHistoryRequest{Test: &testrunsv1.TestID{Repository: repo, Suite: c.Suite, ClassName: c.Class, Name: c.Name}, PageSize: 100}
	resp, err := s.cfg.TestRuns.TestHistory(ctx, req)
	if err != nil {
		if !errors.Is(ctx.Err(), context.Canceled) && status.Code(err) != codes.NotFound {
			s.log.Warn("tests page: test history", "test", c.ID(), "err", err)
		}
		return
	}
	st := resp.GetStats()
	c.Runs, c.Failures, c.FlakyCount = st.GetRuns(), st.GetFailures(), st.GetFlakyCount()
	if st.GetQuarantined() {
		c.Quarantined = true
	}
	for _, e := range resp.GetEntries() {
		if ref != "" && e.GetRef() != ref {
			continue
		}
		c.History = append(c.History, testHistoryView{BuildID: e.GetBuildId(), Commit: e.GetCommit(), Status: e.GetStatus(), Flaky: e.GetFlaky(), Time: e.GetTime().AsTime()})
		if len(c.History) == historyDepth {
			break
		}
	}
}

// lineRanges words missed lines as "3-5, 9".
func lineRanges(lines []int32) string {
	var b strings.Builder
	for i := 0; i < len(lines); {
		j := i
		for j+1 < len(lines) && lines[j+1] == lines[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", lines[i], lines[j])
		} else {
			fmt.Fprintf(&b, "%d", lines[i])
		}
		i = j + 1
	}
	return b.String()
}
