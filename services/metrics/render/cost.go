package render

import (
	"context"
	"fmt"
	"strings"
)

// Plan is what reading a path expression would cost, known before any
// point is read: the series it matches, the points reading them over the
// range fetches, and the largest step among them.
type Plan struct {
	Series int
	Points int64
	Step   int64
}

// Planner tells the cost check what a fetch would read without reading it.
type Planner interface {
	Plan(ctx context.Context, pathExpr string, from, until int64) (Plan, error)
	PlanTagged(ctx context.Context, exprs []string, from, until int64) (Plan, error)
}

// Cost limits (zero: no limit). MaxSeries and MaxPoints come from Limits.
// Defaults live with the service (metrics.Config).
type CostLimits struct {
	Limits
	// MaxBuckets bounds the points summarize, hitcount, timeFunction and
	// sinFunction make, summed over the query's series.
	MaxBuckets int64
	// MaxDepth bounds how deep function calls nest.
	MaxDepth int
	// MaxCalls bounds how many times the query evaluates a function or
	// fetches a path (a moving window with a point count evaluates its
	// argument twice, so nesting doubles this).
	MaxCalls int
}

// Cost accumulates the cost of a request's targets before any is
// evaluated, and refuses (with a *LimitError saying what is too big and
// the limit) once a budget is spent.
type Cost struct {
	ctx     context.Context
	req     Request
	lim     CostLimits
	p       Planner
	series  int
	points  int64
	buckets int64
	calls   int
}

// NewCost starts costing a request over [req.From, req.Until).
func NewCost(ctx context.Context, req Request, p Planner, lim CostLimits) *Cost {
	return &Cost{ctx: ctx, req: req, lim: lim, p: p}
}

func tooExpensive(format string, a ...any) error {
	return &LimitError{Msg: "query too expensive: " + fmt.Sprintf(format, a...)}
}

// Depth is how deep function calls nest in e (a path is 0).
func Depth(e *Expr) int {
	if e == nil || e.Kind != KindCall {
		return 0
	}
	d := 0
	for _, a := range e.Args {
		d = max(d, Depth(a))
	}
	for _, kw := range e.Kwargs {
		d = max(d, Depth(kw.Value))
	}
	return d + 1
}

// Check adds one parsed target's cost over the request's range.
func (k *Cost) Check(e *Expr) error {
	if d := Depth(e); k.lim.MaxDepth > 0 && d > k.lim.MaxDepth {
		return tooExpensive("the target nests function calls %d deep (limit %d)", d, k.lim.MaxDepth)
	}
	_, err := k.walk(e, k.req.From, k.req.Until)
	return err
}

// Points is the points the checked targets fetch (windows included).
func (k *Cost) Points() int64 { return k.points }

// shape is what an expression yields: how many series, at what step.
type shape struct {
	series int
	step   int64
}

// Span prints a number of seconds the way Graphite intervals read: 100y,
// 3d, 2h, 90s.
func Span(sec int64) string {
	if sec < 0 {
		sec = -sec
	}
	units := []struct {
		n int64
		s string
	}{{365 * 86400, "y"}, {7 * 86400, "w"}, {86400, "d"}, {3600, "h"}, {60, "min"}}
	for _, u := range units {
		if sec >= u.n && sec%u.n == 0 {
			return fmt.Sprintf("%d%s", sec/u.n, u.s)
		}
	}
	for _, u := range units {
		if sec >= 2*u.n {
			return fmt.Sprintf("about %d%s", (sec+u.n/2)/u.n, u.s)
		}
	}
	return fmt.Sprintf("%ds", sec)
}

func (k *Cost) addPoints(n int64, what string) error {
	k.points += n
	if l := k.lim.MaxPoints; l > 0 && (n > int64(l) || k.points > int64(l)) {
		return tooExpensive("%s: the query reads %d points (limit %d): narrow the path expression or the time range", what, k.points, l)
	}
	return nil
}

func (k *Cost) addBuckets(n int64, what string) error {
	k.buckets += n
	if l := k.lim.MaxBuckets; l > 0 && (n > l || k.buckets > l) {
		return tooExpensive("%s (limit %d)", what, l)
	}
	return nil
}

func (k *Cost) walk(e *Expr, from, until int64) (shape, error) {
	if err := k.ctx.Err(); err != nil {
		return shape{}, err
	}
	if e.Kind != KindPath && e.Kind != KindCall {
		return shape{}, nil
	}
	k.calls++
	if l := k.lim.MaxCalls; l > 0 && k.calls > l {
		return shape{}, tooExpensive("the target evaluates more than %d functions and paths (limit %d): moving windows nested in moving windows double this at each level", l, l)
	}
	if e.Kind == KindPath {
		if e.Name == "\x00group" {
			return shape{}, nil
		}
		p, err := k.p.Plan(k.ctx, e.Name, from, until)
		if err != nil {
			return shape{}, err
		}
		return shape{p.Series, p.Step}, k.fetched(p, e.Name, from, until)
	}
	def, ok := funcByName[e.Name]
	if !ok {
		return shape{}, nil // eval names it
	}
	c, err := (&evaluator{}).bind(def, e, from, until)
	if err != nil {
		return shape{}, nil // eval reports it
	}
	switch {
	case e.Name == "seriesByTag":
		var exprs []string
		for _, a := range c.multi(0) {
			if a.Kind == KindString {
				exprs = append(exprs, a.Str)
			}
		}
		p, err := k.p.PlanTagged(k.ctx, exprs, from, until)
		if err != nil {
			return shape{}, &ArgError{Func: "seriesByTag", Pos: e.Pos, Msg: err.Error()}
		}
		return shape{p.Series, p.Step}, k.fetched(p, e.Raw, from, until)
	case strings.HasPrefix(e.Name, "moving") || e.Name == "exponentialMovingAverage":
		return k.window(c, from, until)
	case e.Name == "summarize" || e.Name == "hitcount" || e.Name == "smartSummarize":
		interval, text, err := c.interval(1, "")
		if err != nil || interval <= 0 {
			return shape{}, nil
		}
		sh, err := k.arg(c, 0, from, until)
		if err != nil {
			return sh, err
		}
		if e.Name == "hitcount" {
			if align, _ := c.bool(2, false); align {
				if sh, err = k.arg(c, 0, from-min(interval, 86400), until); err != nil {
					return sh, err
				}
			}
		}
		per := (until-from)/interval + 2
		total := per * int64(max(sh.series, 1))
		if err := k.addBuckets(total, fmt.Sprintf("%s bucket %q over %s gives %d buckets for %d series", e.Name, text, Span(until-from), total, sh.series)); err != nil {
			return sh, err
		}
		return shape{sh.series, interval}, nil
	case e.Name == "timeShift":
		a := c.args[1]
		text := a.Raw
		if a.Kind == KindString {
			text = a.Str
		}
		if !strings.HasPrefix(text, "+") && !strings.HasPrefix(text, "-") {
			text = "-" + text
		}
		d, err := ParseInterval(text)
		if err != nil {
			return shape{}, nil
		}
		// timeShift evaluates its argument unshifted too (graphite-web
		// takes the first series' start and end from it).
		if _, err := k.arg(c, 0, from, until); err != nil {
			return shape{}, err
		}
		return k.arg(c, 0, from+d, until+d)
	case strings.HasPrefix(e.Name, "holtWinters"):
		i := 1
		if e.Name != "holtWintersForecast" {
			i = 2 // delta comes first
		}
		boot, _, err := c.interval(i, "7d")
		if err != nil {
			return shape{}, nil
		}
		if e.Name == "holtWintersAberration" {
			// It reads the series over the range too.
			if _, err := k.arg(c, 0, from, until); err != nil {
				return shape{}, err
			}
		}
		sh, err := k.arg(c, 0, from-boot, until)
		if e.Name == "holtWintersConfidenceBands" || e.Name == "holtWintersConfidenceArea" {
			sh.series *= 2
		}
		return sh, err
	case e.Name == "timeStack":
		text, _ := c.str(1, "1d")
		if !strings.HasPrefix(text, "+") && !strings.HasPrefix(text, "-") {
			text = "-" + text
		}
		unit, err := ParseInterval(text)
		start, err2 := c.int(2, 0)
		end, err3 := c.int(3, 7)
		if err != nil || err2 != nil || err3 != nil || end-start > 1000 {
			return shape{}, nil
		}
		var out shape
		for i := start; i < end; i++ {
			sh, err := k.arg(c, 0, from+unit*int64(i), until+unit*int64(i))
			if err != nil {
				return out, err
			}
			out.series += sh.series
			out.step = max(out.step, sh.step)
		}
		return out, nil
	case e.Name == "linearRegression":
		// It reads the series over the range and over its source range.
		src, srcUntil := from, until
		if c.has(1) {
			src, _ = c.dateAt(1, until)
		}
		if c.has(2) {
			srcUntil, _ = c.dateAt(2, until)
		}
		if _, err := k.arg(c, 0, src, srcUntil); err != nil {
			return shape{}, err
		}
		return k.arg(c, 0, from, until)
	case e.Name == "events":
		n := until - from + 1
		if err := k.addBuckets(n, fmt.Sprintf("events over %s gives %d one-second points", Span(until-from), n)); err != nil {
			return shape{}, err
		}
		return shape{1, 1}, nil
	case e.Name == "timeFunction" || e.Name == "sinFunction" || e.Name == "time" || e.Name == "sin" || e.Name == "identity" || e.Name == "randomWalk" || e.Name == "randomWalkFunction":
		i := 1
		if e.Name == "sinFunction" || e.Name == "sin" {
			i = 2
		}
		step, err := c.int(i, 60)
		if e.Name == "identity" {
			step, err = 60, nil
		}
		if err != nil || step <= 0 {
			return shape{}, nil
		}
		n := (until - from) / int64(step)
		if err := k.addBuckets(n, fmt.Sprintf("%s with step %d over %s gives %d points", e.Name, step, Span(until-from), n)); err != nil {
			return shape{}, err
		}
		return shape{1, int64(step)}, nil
	}
	// Everything else reads its series arguments over the same range.
	var out shape
	for i, a := range c.args {
		if a == nil {
			continue
		}
		list := []*Expr{a}
		if i == c.restIdx {
			list = append(list, c.rest...)
		}
		for _, x := range list {
			sh, err := k.walk(x, from, until)
			if err != nil {
				return out, err
			}
			out.series += sh.series
			out.step = max(out.step, sh.step)
		}
	}
	return out, nil
}

func (k *Cost) arg(c *call, i int, from, until int64) (shape, error) {
	if !c.has(i) {
		return shape{}, nil
	}
	return k.walk(c.args[i], from, until)
}

func (k *Cost) fetched(p Plan, what string, from, until int64) error {
	k.series += p.Series
	if l := k.lim.MaxSeries; l > 0 && k.series > l {
		return tooExpensive("the query matches %d series (limit %d): narrow the path expression", k.series, l)
	}
	step := p.Step
	if step <= 0 {
		step = 1
	}
	return k.addPoints(p.Points, fmt.Sprintf("%s over %s at %ds steps", what, Span(until-from), step))
}

// window costs a moving window: its argument over the range widened by
// the window (and, for a point count, once more over the range to learn
// the step, as eval does), plus the window's own points for each series.
func (k *Cost) window(c *call, from, until int64) (shape, error) {
	if !c.has(1) {
		return shape{}, nil
	}
	a := c.args[1]
	var preview, n int64
	var sh shape
	var err error
	if a.Kind == KindString {
		if preview, err = ParseInterval(a.Str); err != nil {
			return shape{}, nil
		}
		preview = max(preview, -preview)
	} else {
		w, err := c.int(1, 0)
		if err != nil {
			return shape{}, nil
		}
		n = int64(max(w, -w))
		if sh, err = k.arg(c, 0, from, until); err != nil {
			return sh, err
		}
		preview = sh.step * n
	}
	wide, err := k.arg(c, 0, from-preview, until)
	if err != nil {
		return wide, err
	}
	if a.Kind == KindString {
		step := max(wide.step, 1)
		n = preview / step
	}
	what := fmt.Sprintf("%s window of %d points (%s) for %d series", c.e.Name, n, Span(preview), wide.series)
	if err := k.addPoints(n*int64(max(wide.series, 1)), what); err != nil {
		return wide, err
	}
	return wide, nil
}
