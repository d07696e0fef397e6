package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shiploop/shiploop/pkg/gatepolicy"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	testrunsv1 "github.com/shiploop/shiploop/proto/shiploop/testruns/v1"
)

// testsCommand is the test-run CLI: runs, cases, history, flaky tests,
// coverage, quarantine, and uploading reports by hand.
func testsCommand() *command {
	var o clientOptions
	var (
		repo, build, suite, class, reason, format, prefix string
		statuses, strip                                   listFlag
		flakyOnly, complete                               bool
		window                                            time.Duration
		limit                                             int
	)
	c := newCommand("tests", "shiploop tests <show|ls|cases|history|flaky|coverage|quarantine|unquarantine|upload> ...",
		"Test runs: results, history, flaky tests, coverage and quarantine.",
		`  tests show RUN | tests show --build BUILD     a run: counts, coverage, reports
  tests ls --repo R                              runs of a repository, newest first
  tests cases RUN [--status failed,error] [--flaky]
  tests history --repo R [--suite S] [--class C] NAME
  tests flaky --repo R [--window 336h]           tests seen flaky lately
  tests coverage RUN [--prefix PATH]             per-file coverage with missed lines
  tests quarantine --repo R [--suite S] [--class C] NAME [--reason TEXT]
  tests unquarantine --repo R [--suite S] [--class C] NAME
  tests quarantine ls --repo R
  tests upload --build BUILD [--format F] [--strip PREFIX] [--complete] FILE...
      formats: junit, gotest, cobertura, lcov, gocover, jacoco, diff (detected when omitted)
Flags may come before or after the arguments.`)
	clientFlags(c, &o)
	c.commonFlags()
	c.flags.StringVar(&repo, "repo", "", "repository")
	c.flags.StringVar(&build, "build", "", "the build: "+buildRefHelp)
	c.flags.StringVar(&suite, "suite", "", "test suite (history, quarantine)")
	c.flags.StringVar(&class, "class", "", "test class (history, quarantine)")
	c.flags.StringVar(&reason, "reason", "", "why the test is quarantined")
	c.flags.StringVar(&format, "format", "", "report format (upload); detected when empty")
	c.flags.StringVar(&prefix, "prefix", "", "only files under this path (coverage)")
	c.flags.Var(&statuses, "status", "statuses to list: passed, failed, error, skipped, disabled (cases)")
	c.flags.Var(&strip, "strip", "path prefix to strip from coverage paths, repeatable (upload)")
	c.flags.BoolVar(&flakyOnly, "flaky", false, "only flaky results (cases)")
	c.flags.BoolVar(&complete, "complete", false, "finish the run after the upload")
	c.flags.DurationVar(&window, "window", 0, "how far back to look (flaky; default 14 days)")
	c.flags.IntVar(&limit, "limit", 50, "how many to list")
	// Each subcommand's own flags (subflags.go): anything else is refused.
	c.sub("show", "build")
	c.sub("ls|list", "repo", "limit")
	c.sub("cases", "status", "flaky", "limit")
	c.sub("history", "repo", "suite", "class", "limit")
	c.sub("flaky", "repo", "window", "limit")
	c.sub("coverage", "prefix")
	c.sub("quarantine|unquarantine", "repo", "suite", "class", "reason")
	c.sub("upload", "build", "format", "strip", "complete")
	c.run = func(c *command, args []string) error {
		args, err := interleaved(c.flags, args)
		if err != nil {
			return usageError{err.Error()}
		}
		if len(args) == 0 {
			return usagef("say what: show, ls, cases, history, flaky, coverage, quarantine, unquarantine or upload")
		}
		conn, err := o.conn(
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64 << 20)))
		if err != nil {
			return fmt.Errorf("connecting to %s: %w (set --server or SHIPLOOP_SERVER)", o.server, err)
		}
		defer conn.Close()
		cl := testrunsv1.NewTestRunServiceClient(conn)
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), 5*time.Minute)
		defer cancel()
		one := func() (string, error) {
			if len(args) != 2 {
				return "", usagef("%s takes one argument", args[0])
			}
			return args[1], nil
		}
		testID := func() (*testrunsv1.TestID, error) {
			if repo == "" {
				return nil, usagef("%s needs --repo", args[0])
			}
			name, err := one()
			if err != nil {
				return nil, usagef("%s takes the test NAME (with --suite and --class when it has them)", args[0])
			}
			return &testrunsv1.TestID{Repository: repo, Suite: suite, ClassName: class, Name: name}, nil
		}
		if build != "" {
			// REPO#N and chain ids name a build too: the builds service on
			// the same server says which.
			if build, err = resolveBuildID(ctx, buildsv1.NewBuildServiceClient(conn), build); err != nil {
				return err
			}
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		defer tw.Flush()
		switch args[0] {
		case "show":
			req := &testrunsv1.GetTestRunRequest{BuildId: build}
			if len(args) == 2 {
				req.Id = args[1]
			} else if build == "" {
				return usagef("show takes a RUN id or --build")
			}
			resp, err := cl.GetTestRun(ctx, req)
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp.GetRun())
				return nil
			}
			printRun(c.stdout, resp.GetRun())
		case "ls", "list":
			resp, err := cl.ListTestRuns(ctx, &testrunsv1.ListTestRunsRequest{Repository: repo, PageSize: int32(limit)})
			if err != nil {
				return err
			}
			if !o.json {
				fmt.Fprintln(tw, "RUN\tBUILD\tREPOSITORY\tCOMMIT\tSTATUS\tTESTS\tFAILED\tFLAKY\tCOVERAGE")
			}
			for _, r := range resp.GetRuns() {
				if o.json {
					printJSON(c.stdout, r)
					continue
				}
				n := r.GetCounts()
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", r.GetId(), r.GetBuildId(), r.GetRepository(), short(r.GetCommit()),
					runStatusWord(r.GetStatus()), n.GetTests(), n.GetFailed()+n.GetErrors(), n.GetFlaky(), coveragePct(r.GetCoverage()))
			}
		case "cases":
			id, err := one()
			if err != nil {
				return err
			}
			resp, err := cl.ListTestCases(ctx, &testrunsv1.ListTestCasesRequest{RunId: id, Statuses: statuses, FlakyOnly: flakyOnly, PageSize: int32(limit)})
			if err != nil {
				return err
			}
			if !o.json {
				fmt.Fprintln(tw, "STATUS\tSUITE\tCLASS\tNAME\tTIME\tMESSAGE")
			}
			for _, tc := range resp.GetCases() {
				if o.json {
					printJSON(c.stdout, tc)
					continue
				}
				st := tc.GetStatus()
				if tc.GetFlaky() {
					st += " (flaky)"
				}
				if tc.GetQuarantined() {
					st += " (quarantined)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", st, tc.GetSuite(), tc.GetClassName(), tc.GetName(),
					tc.GetDuration().AsDuration().Round(time.Millisecond), headLine(tc.GetMessage(), 80))
			}
		case "history":
			id, err := testID()
			if err != nil {
				return err
			}
			resp, err := cl.TestHistory(ctx, &testrunsv1.TestHistoryRequest{Test: id, PageSize: int32(limit)})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			st := resp.GetStats()
			fmt.Fprintf(c.stdout, "%s: %d runs, %d failures (%.1f%%), last %s, flaky %d times, average %s\n", id.GetName(), st.GetRuns(), st.GetFailures(),
				100*st.GetFailureRate(), st.GetLastStatus(), st.GetFlakyCount(), st.GetAverageDuration().AsDuration().Round(time.Millisecond))
			fmt.Fprintln(tw, "TIME\tBUILD\tCOMMIT\tSTATUS\tTIME TAKEN\tMESSAGE")
			for _, e := range resp.GetEntries() {
				st := e.GetStatus()
				if e.GetFlaky() {
					st += " (flaky)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.GetTime().AsTime().Local().Format(time.DateTime), e.GetBuildId(), short(e.GetCommit()), st,
					e.GetDuration().AsDuration().Round(time.Millisecond), headLine(e.GetMessage(), 60))
			}
		case "flaky":
			if repo == "" {
				return usagef("flaky needs --repo")
			}
			req := &testrunsv1.FlakyTestsRequest{Repository: repo, PageSize: int32(limit)}
			if window > 0 {
				req.Window = durationpb.New(window)
			}
			resp, err := cl.FlakyTests(ctx, req)
			if err != nil {
				return err
			}
			printStats(c, tw, o.json, resp.GetTests())
		case "coverage":
			id, err := one()
			if err != nil {
				return err
			}
			resp, err := cl.Coverage(ctx, &testrunsv1.CoverageRequest{RunId: id, PathPrefix: prefix})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			fmt.Fprintf(c.stdout, "coverage %s\n", coverageLine(resp.GetSummary()))
			fmt.Fprintln(tw, "FILE\tLINES\tCOVERED\tPATCH\tMISSED LINES")
			for _, f := range resp.GetFiles() {
				patch := "-"
				if f.GetPatchTotal() > 0 {
					patch = fmt.Sprintf("%d/%d", f.GetPatchCovered(), f.GetPatchTotal())
				}
				fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\n", f.GetPath(), f.GetLinesCovered(), f.GetLinesTotal(),
					pct(f.GetLinesCovered(), f.GetLinesTotal()), patch, lineRanges(f.GetMissedLines()))
			}
		case "quarantine", "unquarantine":
			if args[0] == "quarantine" && len(args) == 2 && (args[1] == "ls" || args[1] == "list") {
				if repo == "" {
					return usagef("quarantine ls needs --repo")
				}
				resp, err := cl.ListQuarantine(ctx, &testrunsv1.ListQuarantineRequest{Repository: repo})
				if err != nil {
					return err
				}
				printStats(c, tw, o.json, resp.GetTests())
				return nil
			}
			id, err := testID()
			if err != nil {
				return err
			}
			resp, err := cl.SetQuarantine(ctx, &testrunsv1.SetQuarantineRequest{Test: id, Quarantined: args[0] == "quarantine", Reason: reason})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp.GetTest())
				return nil
			}
			word := "quarantined"
			if !resp.GetTest().GetQuarantined() {
				word = "released from quarantine"
			}
			fmt.Fprintf(c.stdout, "%s %s\n", id.GetName(), word)
		case "upload":
			if build == "" {
				return usagef("upload needs --build")
			}
			files := args[1:]
			if len(files) == 0 {
				return usagef("upload takes one or more report FILEs")
			}
			for i, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				resp, err := cl.UploadReport(ctx, &testrunsv1.UploadReportRequest{BuildId: build, Name: filepath.Base(f), Format: format,
					Content: b, Complete: complete && i == len(files)-1, PathPrefixes: strip})
				if err != nil {
					return fmt.Errorf("%s: %w", f, err)
				}
				if o.json {
					printJSON(c.stdout, resp)
					continue
				}
				rep := resp.GetReport()
				if rep.GetError() != "" {
					fmt.Fprintf(c.stdout, "%s: not read: %s\n", f, rep.GetError())
				} else {
					fmt.Fprintf(c.stdout, "%s: %s, %d cases, run %s\n", f, rep.GetFormat(), rep.GetCases(), resp.GetRun().GetId())
				}
				if i == len(files)-1 && complete {
					printRun(c.stdout, resp.GetRun())
				}
			}
		default:
			return usagef("unknown tests command %q", args[0])
		}
		return nil
	}
	return c
}

func printStats(c *command, tw *tabwriter.Writer, asJSON bool, tests []*testrunsv1.TestStats) {
	if !asJSON {
		fmt.Fprintln(tw, "SUITE\tCLASS\tNAME\tRUNS\tFAILURE RATE\tFLAKY\tLAST FLAKY\tQUARANTINED")
	}
	for _, t := range tests {
		if asJSON {
			printJSON(c.stdout, t)
			continue
		}
		last := "-"
		if t.GetLastFlaky() != nil {
			last = t.GetLastFlaky().AsTime().Local().Format(time.DateTime)
		}
		q := "no"
		if t.GetQuarantined() {
			q = "yes"
			if t.GetQuarantineReason() != "" {
				q += " (" + t.GetQuarantineReason() + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.1f%%\t%d\t%s\t%s\n", t.GetTest().GetSuite(), t.GetTest().GetClassName(), t.GetTest().GetName(),
			t.GetRuns(), 100*t.GetFailureRate(), t.GetFlakyCount(), last, q)
	}
}

func printRun(w interface{ Write([]byte) (int, error) }, r *testrunsv1.TestRun) {
	n := r.GetCounts()
	fmt.Fprintf(w, "run %s of build %s (%s %s): %s\n", r.GetId(), r.GetBuildId(), r.GetRepository(), short(r.GetCommit()), runStatusWord(r.GetStatus()))
	fmt.Fprintf(w, "  %d tests: %d passed, %d failed, %d errors, %d skipped, %d disabled, %d flaky, %d quarantined\n",
		n.GetTests(), n.GetPassed(), n.GetFailed(), n.GetErrors(), n.GetSkipped(), n.GetDisabled(), n.GetFlaky(), n.GetQuarantined())
	if r.GetCoverage() != nil {
		fmt.Fprintf(w, "  coverage %s\n", coverageLine(r.GetCoverage()))
	}
	fmt.Fprintf(w, "  jobs %d/%d", r.GetJobsDone(), r.GetJobsTotal())
	if r.GetDuration() != nil {
		fmt.Fprintf(w, ", took %s", r.GetDuration().AsDuration().Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	if r.GetError() != "" {
		fmt.Fprintf(w, "  %s\n", r.GetError())
	}
	for _, rep := range r.GetReports() {
		if rep.GetError() != "" {
			fmt.Fprintf(w, "  report %s: %s\n", rep.GetName(), rep.GetError())
		} else {
			fmt.Fprintf(w, "  report %s (%s, %d cases)\n", rep.GetName(), rep.GetFormat(), rep.GetCases())
		}
	}
}

func runStatusWord(s eventsv1.TestRunStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TEST_RUN_STATUS_"))
}

func pct(covered, total int64) string {
	if total <= 0 {
		return "-"
	}
	return gatepolicy.FormatPercent(100 * float64(covered) / float64(total))
}

func coveragePct(c *eventsv1.CoverageSummary) string {
	if c == nil {
		return "-"
	}
	return pct(c.GetLinesCovered(), c.GetLinesTotal())
}

func coverageLine(c *eventsv1.CoverageSummary) string {
	s := fmt.Sprintf("%s of lines (%d/%d)", pct(c.GetLinesCovered(), c.GetLinesTotal()), c.GetLinesCovered(), c.GetLinesTotal())
	if c.GetRawUnit() != "" && c.GetRawUnit() != "lines" {
		s += fmt.Sprintf(", %s of %s (%d/%d)", pct(c.GetRawCovered(), c.GetRawTotal()), c.GetRawUnit(), c.GetRawCovered(), c.GetRawTotal())
	}
	if c.GetPatchTotal() > 0 {
		s += fmt.Sprintf(", patch %s (%d/%d)", pct(c.GetPatchCovered(), c.GetPatchTotal()), c.GetPatchCovered(), c.GetPatchTotal())
	}
	return s
}

// lineRanges prints 1,2,3,7 as "1-3,7", capped in length.
func lineRanges(lines []int32) string {
	var parts []string
	for i := 0; i < len(lines); {
		j := i
		for j+1 < len(lines) && lines[j+1] == lines[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", lines[i], lines[j]))
		} else {
			parts = append(parts, fmt.Sprint(lines[i]))
		}
		i = j + 1
	}
	s := strings.Join(parts, ",")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func headLine(s string, n int) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > n {
		s = s[:n-3] + "..."
	}
	return s
}
