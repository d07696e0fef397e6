// Package policy evaluates a gate: a list of conditions over the metrics of
// a build (pkg/gatepolicy names them), an optional CEL expression, and the
// rule that coverage and duplication on new code are not judged below a
// minimum number of new lines.
package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"

	"github.com/shiploop/shiploop/pkg/gatepolicy"
)

// Verdicts of a condition.
const (
	Passed    = "passed"
	Failed    = "failed"
	NoData    = "no_data"
	NotJudged = "not_judged"
	Error     = "error"
)

// Condition is a policy condition with where it was written.
type Condition struct {
	gatepolicy.Condition
	File string
	Line int
}

// Policy is a compiled gate.
type Policy struct {
	Conditions []Condition
	Expression string
	// MinNewLines: 0 means the default (20); negative judges always.
	MinNewLines int
	// OnNoData is the gate's on_no_data (gatepolicy.OnNoDataPass lets
	// conditions without data pass; anything else fails them); a
	// condition's own OnNoData wins.
	OnNoData string
	program  cel.Program
}

// Measures are a build's numbers: Overall by metric name, NewCode for the
// new_code scope, Custom for custom.<name>.
type Measures struct {
	Overall map[string]float64
	NewCode map[string]float64
}

// Get returns a metric's value for a scope.
func (m Measures) Get(metric, scope string) (float64, bool) {
	src := m.Overall
	if scope == gatepolicy.ScopeNewCode {
		src = m.NewCode
	}
	v, ok := src[metric]
	return v, ok
}

// Result is one condition's outcome.
type Result struct {
	Condition
	Expression string // set for the expression condition
	Value      float64
	HasValue   bool
	Verdict    string
	Detail     string
	// NoDataPasses: the verdict is NoData and the policy's on_no_data
	// says pass; a NoData verdict without it fails the gate.
	NoDataPasses bool
}

// Evaluation is a gate's outcome: passed, failed or error.
type Evaluation struct {
	Status  string
	Results []Result
}

// CompileError is a policy that cannot run: it names the file and line.
type CompileError struct {
	File string
	Line int
	Msg  string
}

func (e *CompileError) Error() string {
	if e.File == "" {
		return e.Msg
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Compile checks a policy (metrics, operators, scopes, the expression) and
// prepares its expression.
func Compile(p *Policy, exprFile string, exprLine int) error {
	if msg := gatepolicy.CheckOnNoData(p.OnNoData); msg != "" {
		return &CompileError{Msg: msg}
	}
	for i, c := range p.Conditions {
		msg := gatepolicy.CheckMetric(c.Metric, c.Scope)
		if msg == "" {
			msg = gatepolicy.CheckOperator(c.Operator)
		}
		if msg == "" && c.Scope != gatepolicy.ScopeOverall && c.Scope != gatepolicy.ScopeNewCode {
			msg = fmt.Sprintf("unknown scope %q (want overall or new_code)", c.Scope)
		}
		if msg == "" {
			msg = gatepolicy.CheckOnNoData(c.OnNoData)
		}
		if msg != "" {
			return &CompileError{File: c.File, Line: c.Line, Msg: fmt.Sprintf("conditions[%d]: %s", i, msg)}
		}
	}
	if strings.TrimSpace(p.Expression) == "" {
		return nil
	}
	ast, iss := celEnv.Compile(p.Expression)
	if iss.Err() != nil {
		return &CompileError{File: exprFile, Line: exprLine, Msg: "expression: " + strings.ReplaceAll(iss.Err().Error(), "\n", " ")}
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return &CompileError{File: exprFile, Line: exprLine, Msg: fmt.Sprintf("expression: gives %s, want a bool", ast.OutputType())}
	}
	prg, err := celEnv.Program(ast, cel.CostLimit(100000))
	if err != nil {
		return &CompileError{File: exprFile, Line: exprLine, Msg: "expression: " + err.Error()}
	}
	p.program = prg
	return nil
}

// celEnv declares every metric as a variable, the new-code values with a
// new_ prefix, and custom numbers in the map custom. The values are doubles;
// the variables are declared dyn, with numbers compared across types, so
// that "coverage >= 80" and "issues == 0" read as people write them.
var celEnv = func() *cel.Env {
	var opts []cel.EnvOption
	for _, m := range gatepolicy.Metrics {
		opts = append(opts, cel.Variable(m.Name, cel.DynType))
		if m.NewCode {
			opts = append(opts, cel.Variable("new_"+m.Name, cel.DynType))
		}
	}
	opts = append(opts, cel.Variable("custom", cel.MapType(cel.StringType, cel.DynType)), cel.CrossTypeNumericComparisons(true))
	env, err := cel.NewEnv(opts...)
	if err != nil {
		panic(err) // the declarations are constants
	}
	return env
}()

// Evaluate judges measures against a compiled policy. newLines < 0 means
// unknown (the minimum-new-lines rule then does not apply).
func (p *Policy) Evaluate(m Measures, newLines int) Evaluation {
	min := p.MinNewLines
	if min == 0 {
		min = gatepolicy.DefaultMinNewLines
	}
	ev := Evaluation{Status: Passed}
	for _, c := range p.Conditions {
		r := Result{Condition: c}
		r.Value, r.HasValue = m.Get(c.Metric, c.Scope)
		meta, _ := gatepolicy.Lookup(c.Metric)
		fudge := meta.Fudge && (c.Scope == gatepolicy.ScopeNewCode || c.Metric == "patch_coverage")
		switch {
		case fudge && min > 0 && newLines >= 0 && newLines < min:
			r.Verdict, r.Detail = NotJudged, fmt.Sprintf("%d new lines < %d", newLines, min)
		case !r.HasValue:
			r.Verdict, r.Detail = NoData, NoDataDetail(c.Metric)
			r.NoDataPasses = gatepolicy.NoDataPasses(c.OnNoData, p.OnNoData)
		case holds(c.Operator, r.Value, c.Threshold):
			r.Verdict = Passed
		default:
			r.Verdict = Failed
		}
		ev.Results = append(ev.Results, r)
	}
	if p.program != nil {
		r := p.evalExpression(m)
		r.NoDataPasses = r.Verdict == NoData && gatepolicy.NoDataPasses("", p.OnNoData)
		ev.Results = append(ev.Results, r)
	}
	for _, r := range ev.Results {
		switch {
		case r.Verdict == Error:
			ev.Status = Error
		case r.Verdict == Failed, r.Verdict == NoData && !r.NoDataPasses:
			// No data fails unless the policy says on_no_data: pass.
			if ev.Status != Error {
				ev.Status = Failed
			}
		}
	}
	return ev
}

// NoDataDetail says why a metric has no value.
func NoDataDetail(metric string) string {
	switch {
	case strings.HasPrefix(metric, "tests_"):
		return "no test report arrived"
	case metric == "coverage" || metric == "patch_coverage" || metric == "new_lines":
		return "no coverage report arrived"
	case metric == "coverage_delta":
		return "no coverage report arrived, or the base branch has none"
	case strings.HasPrefix(metric, "issues"):
		return "no static-analysis report arrived"
	}
	return "no report gave " + metric
}

func (p *Policy) evalExpression(m Measures) Result {
	r := Result{Expression: p.Expression, Condition: Condition{Condition: gatepolicy.Condition{Metric: "expression"}}}
	vars := map[string]any{}
	custom := map[string]float64{}
	for k, v := range m.Overall {
		if name, ok := strings.CutPrefix(k, gatepolicy.CustomPrefix); ok {
			custom[name] = v
		} else {
			vars[k] = v
		}
	}
	for k, v := range m.NewCode {
		if !strings.HasPrefix(k, gatepolicy.CustomPrefix) {
			vars["new_"+k] = v
		}
	}
	vars["custom"] = custom
	out, _, err := p.program.Eval(vars)
	switch {
	case err != nil && (strings.Contains(err.Error(), "no such attribute") || strings.Contains(err.Error(), "no such key")):
		r.Verdict, r.Detail = NoData, err.Error()
	case err != nil:
		r.Verdict, r.Detail = Error, err.Error()
	case out == types.True:
		r.Verdict, r.Value, r.HasValue = Passed, 1, true
	case out == types.False:
		r.Verdict, r.Value, r.HasValue = Failed, 0, true
	default:
		r.Verdict, r.Detail = Error, fmt.Sprintf("expression gives %v, want true or false", out.Value())
	}
	return r
}

func holds(op string, v, t float64) bool {
	switch op {
	case "<":
		return v < t
	case "<=":
		return v <= t
	case ">":
		return v > t
	case ">=":
		return v >= t
	case "==":
		return v == t
	case "!=":
		return v != t
	}
	return false
}

// Format renders a number as people read it: 80, 67.3, 0.25.
func Format(v float64, unit string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	s := strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
	return s + unit
}

// Describe renders a condition as one phrase: "coverage on new code 67.3%
// (want >= 80%)".
func (r Result) Describe() string {
	if r.Expression != "" {
		if r.Verdict == NoData {
			return "expression " + r.Expression + ": no data (" + r.Detail + ")"
		}
		return "expression " + r.Expression
	}
	meta, _ := gatepolicy.Lookup(r.Metric)
	name := strings.ReplaceAll(r.Metric, "_", " ")
	if r.Scope == gatepolicy.ScopeNewCode {
		name += " on new code"
	}
	if !r.HasValue && r.Verdict == NoData {
		// "coverage on new code: no data (no coverage report arrived)"
		return fmt.Sprintf("%s: no data (%s)", name, r.Detail)
	}
	val := "no data"
	if r.HasValue {
		val = FormatValue(r.Value, meta.Unit)
	}
	return fmt.Sprintf("%s %s (want %s %s)", name, val, r.Operator, Format(r.Threshold, meta.Unit))
}

// FormatValue renders a measured value: percentages the one way shiploop
// shows coverage everywhere (gatepolicy.FormatPercent, "50.0%"), counts
// as Format does.
func FormatValue(v float64, unit string) string {
	if unit == "%" && !math.IsNaN(v) && !math.IsInf(v, 0) {
		return gatepolicy.FormatPercent(v)
	}
	return Format(v, unit)
}
