// Package gatepolicy is the vocabulary of quality gates shared by the
// .shiploop.yml parser (builds) and the gates service: the metrics a gate
// condition may name, the operators and scopes, the report formats, and the
// built-in default policy. It holds data and checks only (standard library),
// so that an unknown metric is an error when the file is read, not when a
// gate runs.
package gatepolicy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Metric describes a number a gate can judge.
type Metric struct {
	Name string
	// Unit is "%" for percentages, "" for counts.
	Unit string
	// NewCode says whether the metric exists for new code only (scope new_code).
	NewCode bool
	// Fudge marks metrics not judged on new code below the minimum number of
	// new lines (SonarQube does this for coverage and duplication).
	Fudge bool
	Help  string
}

// Metrics the platform knows, in the order the docs list them. Custom
// numbers from a metrics report are named "custom.<name>".
var Metrics = []Metric{
	{Name: "tests_failed", Help: "failed tests (after retries)"},
	{Name: "tests_flaky", Help: "tests that failed, then passed on retry"},
	{Name: "tests_total", Help: "tests run"},
	{Name: "tests_skipped", Help: "tests skipped"},
	{Name: "coverage", Unit: "%", NewCode: true, Fudge: true, Help: "line coverage; on new_code, coverage of the lines this change added"},
	{Name: "coverage_delta", Unit: "%", Help: "coverage minus the base branch's coverage, in points (Codecov project status)"},
	{Name: "patch_coverage", Unit: "%", Fudge: true, Help: "coverage of the changed lines (Codecov patch status)"},
	{Name: "new_lines", Help: "coverable lines added by this change"},
	{Name: "issues", NewCode: true, Help: "static-analysis findings; on new_code, those absent from the base branch's last analysis"},
	{Name: "issues_error", NewCode: true, Help: "findings of level error"},
	{Name: "issues_warning", NewCode: true, Help: "findings of level warning"},
	{Name: "issues_note", NewCode: true, Help: "findings of level note"},
	{Name: "duplicated_lines", NewCode: true, Fudge: true, Help: "duplicated lines, from a metrics report"},
	{Name: "duplicated_lines_density", Unit: "%", NewCode: true, Fudge: true, Help: "duplicated lines in percent, from a metrics report"},
}

// Operators a condition may use.
var Operators = []string{"<", "<=", ">", ">=", "==", "!="}

// Scopes of a condition.
const (
	ScopeOverall = "overall"
	ScopeNewCode = "new_code"
)

// CustomPrefix starts the name of a number from a metrics report.
const CustomPrefix = "custom."

var customName = regexp.MustCompile(`^custom\.[a-z][a-z0-9_]{0,62}$`)

// DefaultMinNewLines is SonarQube's: below it, coverage and duplication
// conditions on new code are not judged.
const DefaultMinNewLines = 20

// Report formats accepted under gate.reports.
var ReportFormats = []string{"sarif", "flake8", "checkstyle", "golangci_lint", "metrics"}

// Lookup finds a metric by name; custom metrics are counted as overall-only
// numbers without a unit.
func Lookup(name string) (Metric, bool) {
	for _, m := range Metrics {
		if m.Name == name {
			return m, true
		}
	}
	if customName.MatchString(name) {
		return Metric{Name: name, NewCode: true, Help: "custom number from a metrics report"}, true
	}
	return Metric{}, false
}

// CheckMetric says what is wrong with a metric name and scope, or "".
func CheckMetric(name, scope string) string {
	m, ok := Lookup(name)
	if !ok {
		if strings.HasPrefix(name, CustomPrefix) {
			return fmt.Sprintf("invalid custom metric %q: use custom.<name> with lowercase letters, digits and _", name)
		}
		msg := fmt.Sprintf("unknown metric %q", name)
		if s := Suggest(name); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		} else {
			msg += " (known: " + strings.Join(Names(), ", ") + ", custom.<name>)"
		}
		return msg
	}
	if scope == ScopeNewCode && !m.NewCode {
		return fmt.Sprintf("metric %q has no new_code scope", name)
	}
	return ""
}

// CheckOperator says what is wrong with an operator, or "".
func CheckOperator(op string) string {
	if slices.Contains(Operators, op) {
		return ""
	}
	return fmt.Sprintf("unknown operator %q (want one of %s)", op, strings.Join(Operators, " "))
}

// Names are the known metric names.
func Names() []string {
	out := make([]string, len(Metrics))
	for i, m := range Metrics {
		out[i] = m.Name
	}
	return out
}

// Suggest returns the known name nearest to s, or "" when none is close.
func Suggest(s string) string {
	best, bestD := "", 3
	for _, n := range Names() {
		if d := distance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Condition is one requirement: Metric Operator Threshold must hold.
type Condition struct {
	Metric    string
	Operator  string
	Threshold float64
	Scope     string // ScopeOverall or ScopeNewCode
	// OnNoData is what the condition does when no report gave its metric:
	// OnNoDataFail or OnNoDataPass; "" takes the gate's (default fail).
	OnNoData string
}

// What a gate does with a condition that has no data (no report gave its
// metric, the test run errored or reported no tests): the policy key
// on_no_data, on a condition or on the whole gate. Without it the gate
// fails: no data is never a silent pass.
const (
	OnNoDataKey  = "on_no_data"
	OnNoDataFail = "fail"
	OnNoDataPass = "pass"
)

// OnNoDataValues are the values on_no_data accepts.
var OnNoDataValues = []string{OnNoDataFail, OnNoDataPass}

// NoDataHint is what a verdict failed for want of data tells people to do.
const NoDataHint = "set " + OnNoDataKey + ": " + OnNoDataPass + " to allow"

// CheckOnNoData says what is wrong with an on_no_data value, or "" ("" is
// allowed: the gate's setting, else fail).
func CheckOnNoData(v string) string {
	if v == "" || slices.Contains(OnNoDataValues, v) {
		return ""
	}
	return fmt.Sprintf("unknown %s %q (want %s)", OnNoDataKey, v, strings.Join(OnNoDataValues, " or "))
}

// NoDataPasses resolves on_no_data: the condition's value, else the gate's,
// else fail.
func NoDataPasses(condition, gate string) bool {
	if condition != "" {
		return condition == OnNoDataPass
	}
	return gate == OnNoDataPass
}

// FormatPercent renders a percentage the one way shiploop shows coverage
// everywhere (CLI, dashboards, badges, gate verdicts): one decimal and a
// percent sign, 49.96 → "50.0%".
func FormatPercent(v float64) string {
	return strconv.FormatFloat(v, 'f', 1, 64) + "%"
}

// Default is the installation's built-in policy: "Sonar way" (no new
// issues, new-code coverage at least 80 %, no failed tests) plus
// Codecov-style project and patch targets (coverage may not drop by more
// than one point against the base; the patch at least 80 %).
func Default() []Condition {
	return []Condition{
		{Metric: "issues", Operator: "==", Threshold: 0, Scope: ScopeNewCode},
		{Metric: "coverage", Operator: ">=", Threshold: 80, Scope: ScopeNewCode},
		{Metric: "tests_failed", Operator: "==", Threshold: 0, Scope: ScopeOverall},
		{Metric: "coverage_delta", Operator: ">=", Threshold: -1, Scope: ScopeOverall},
		{Metric: "patch_coverage", Operator: ">=", Threshold: 80, Scope: ScopeOverall},
	}
}
