// Package report reads test and coverage reports: JUnit XML in its many
// dialects, `go test -json`, Cobertura, LCOV, Go coverprofiles and JaCoCo.
// It has no dependency on the service: it turns bytes into Results and
// Coverage values, and errors into *ParseError values that name the file and
// the position.
//
// Totals are always computed from what the report lists (test cases, lines),
// never from the counters a tool writes on its suites, which are known to be
// wrong (Surefire reruns, suites without cases).
package report

import (
	"fmt"
	"strings"
	"time"
)

// Status is the outcome of one test case.
type Status string

const (
	StatusPassed   Status = "passed"
	StatusFailed   Status = "failed"   // an assertion failed
	StatusError    Status = "error"    // an unexpected error: exception, setup/teardown, crash, build
	StatusSkipped  Status = "skipped"  // skipped (including pytest xfail)
	StatusDisabled Status = "disabled" // disabled in the test source; never ran
)

// Severity orders statuses the way EnricoMi's publisher does when a case
// holds several results: error > failure > passed > skipped > disabled.
func (s Status) Severity() int {
	switch s {
	case StatusError:
		return 4
	case StatusFailed:
		return 3
	case StatusPassed:
		return 2
	case StatusSkipped:
		return 1
	}
	return 0
}

// Bad reports whether the status fails a run.
func (s Status) Bad() bool { return s == StatusFailed || s == StatusError }

// Attempt is an earlier or later run of a case reported next to its main
// result: Surefire's flakyFailure/flakyError (the case passed in the end)
// and rerunFailure/rerunError (it failed every time).
type Attempt struct {
	Status  Status // StatusFailed or StatusError
	Message string
	Type    string
	Details string // stack trace
}

// Case is one test case occurrence. A report may list the same identity
// several times (go test -count=3); each occurrence is a Case.
type Case struct {
	Suite    string // innermost suite (a file for Jest, a package for Go)
	Class    string // classname; empty when the producer gives none
	Name     string
	File     string
	Line     int
	Status   Status
	Duration time.Duration
	// Message, Type and Details come from the results of the winning kind;
	// several are joined with "\n".
	Message string
	Type    string
	Details string
	Stdout  string
	Stderr  string
	// Attempts are Surefire reruns; Flaky is set when a case passed after
	// failed attempts.
	Attempts []Attempt
	Flaky    bool
}

// ID is the identity of a test across runs: suite, class and name.
func (c *Case) ID() string {
	return c.Suite + "\x00" + c.Class + "\x00" + c.Name
}

// Suite is what a report says about one (leaf) suite; kept as metadata only.
type Suite struct {
	Name     string
	Tests    int // as declared by the producer, -1 when absent
	Duration time.Duration
}

// Result is one parsed test report.
type Result struct {
	Format string // "junit" or "gotest"
	Suites []Suite
	Cases  []Case
}

// Totals are counts over test cases.
type Totals struct {
	Tests, Passed, Failed, Errors, Skipped, Disabled, Flaky int
	Duration                                                time.Duration
}

// Totals counts the cases by status.
func (r *Result) Totals() Totals {
	var t Totals
	for i := range r.Cases {
		t.Add(&r.Cases[i])
	}
	return t
}

// Add counts one case.
func (t *Totals) Add(c *Case) {
	t.Tests++
	t.Duration += c.Duration
	switch c.Status {
	case StatusPassed:
		t.Passed++
	case StatusFailed:
		t.Failed++
	case StatusError:
		t.Errors++
	case StatusSkipped:
		t.Skipped++
	case StatusDisabled:
		t.Disabled++
	}
	if c.Flaky {
		t.Flaky++
	}
}

// ParseError says why a report could not be read, and where.
type ParseError struct {
	File   string // as given in Options.File; may be empty
	Line   int    // 1-based; 0 when unknown
	Column int
	Msg    string
}

func (e *ParseError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	} else {
		b.WriteString("report")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Options bound and label a parse.
type Options struct {
	// File names the report in errors.
	File string
	// MaxText caps each text field of a case (message, details, output), in
	// bytes; the rest is cut with a marker. Default 64 KiB.
	MaxText int
	// MaxCases caps the number of cases; past it the parse fails. Default
	// 5 million.
	MaxCases int
}

func (o Options) maxText() int {
	if o.MaxText <= 0 {
		return 64 << 10
	}
	return o.MaxText
}

func (o Options) maxCases() int {
	if o.MaxCases <= 0 {
		return 5_000_000
	}
	return o.MaxCases
}

const truncMark = "\n… (truncated)"

// capText cuts s to at most n bytes on a rune boundary.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + truncMark
}

// textBuf accumulates text up to a cap, remembering that it was cut.
type textBuf struct {
	b   strings.Builder
	max int
	cut bool
}

func (t *textBuf) write(p []byte) {
	if t.cut {
		return
	}
	room := t.max - t.b.Len()
	if len(p) > room {
		t.b.Write(p[:max(room, 0)])
		t.cut = true
		return
	}
	t.b.Write(p)
}

func (t *textBuf) String() string {
	s := t.b.String()
	if t.cut {
		return strings.ToValidUTF8(s, "") + truncMark
	}
	return s
}

func secondsToDuration(s float64) time.Duration {
	if s != s || s < 0 || s > 1e9 { // NaN, negative, absurd
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

// Test is the outcome of one test identity over all its cases in a run.
type Test struct {
	Suite, Class, Name string
	// Status is the most severe status of its cases, except that a test
	// that both failed and passed is flaky and counts as passed.
	Status   Status
	Runs     int
	Flaky    bool
	Duration time.Duration // summed over its cases
}

// Summary folds the cases of a run into tests.
type Summary struct {
	Tests []Test // in order of first occurrence
	Totals
}

// Summarize groups cases by identity (suite, class, name). A test with a
// failed and a passed case in the same run (a rerun, or -count=N) is flaky:
// it counts as passed, and Flaky is set. Surefire's flaky attempts say the
// same inside one case.
func Summarize(cases []Case) Summary {
	idx := map[string]int{}
	var s Summary
	passed := map[int]bool{}
	bad := map[int]bool{}
	for i := range cases {
		c := &cases[i]
		k, ok := idx[c.ID()]
		if !ok {
			k = len(s.Tests)
			idx[c.ID()] = k
			s.Tests = append(s.Tests, Test{Suite: c.Suite, Class: c.Class, Name: c.Name, Status: c.Status})
		}
		t := &s.Tests[k]
		t.Runs++
		t.Duration += c.Duration
		if c.Status.Severity() > t.Status.Severity() {
			t.Status = c.Status
		}
		if c.Flaky {
			t.Flaky = true
		}
		if c.Status == StatusPassed {
			passed[k] = true
		}
		if c.Status.Bad() {
			bad[k] = true
		}
	}
	for k := range s.Tests {
		t := &s.Tests[k]
		if passed[k] && bad[k] {
			t.Flaky = true
			t.Status = StatusPassed
		}
		s.Totals.Add(&Case{Status: t.Status, Duration: t.Duration, Flaky: t.Flaky})
	}
	return s
}

// Truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func Truncate(s string, n int) string { return capText(s, n) }
