package render

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Fetcher returns the series a path expression (a glob, or a
// seriesByTag query) matches over [from, until).
type Fetcher interface {
	Fetch(ctx context.Context, pathExpr string, from, until int64) ([]*Series, error)
	// FetchTagged returns the series a seriesByTag expression list matches.
	FetchTagged(ctx context.Context, exprs []string, from, until int64) ([]*Series, error)
}

// StreamFetcher is a Fetcher that can also hand over a path expression's
// series one at a time, so that an aggregate over thousands of series need
// not hold them all (10,000 series over a day at 10 s are 700 MB).
type StreamFetcher interface {
	Fetcher
	// FetchEach calls fn with each series Fetch would return, in name
	// order, and stops at the first error fn returns (returning it).
	FetchEach(ctx context.Context, pathExpr string, from, until int64, fn func(*Series) error) error
}

// Limits bound one evaluation; zero means no limit.
type Limits struct {
	MaxSeries int
	MaxPoints int
}

// LimitError is a query refused because it is too big.
type LimitError struct{ Msg string }

func (e *LimitError) Error() string { return e.Msg }

// UnknownFunctionError names a function the engine does not have.
type UnknownFunctionError struct {
	Name string
	Pos  int
}

func (e *UnknownFunctionError) Error() string {
	return fmt.Sprintf("unknown function %s (at position %d)", e.Name, e.Pos)
}

// ArgError is a bad argument to a function.
type ArgError struct {
	Func string
	Pos  int
	Msg  string
}

func (e *ArgError) Error() string {
	return fmt.Sprintf("%s (at position %d): %s", e.Func, e.Pos, e.Msg)
}

// IsBadRequest reports whether err is the client's fault (400).
func IsBadRequest(err error) bool {
	var pe *ParseError
	var ue *UnknownFunctionError
	var ae *ArgError
	var le *LimitError
	return errors.As(err, &pe) || errors.As(err, &ue) || errors.As(err, &ae) || errors.As(err, &le)
}

// Request is one evaluation: the time range and where data comes from.
type Request struct {
	From, Until int64
	// Now is "now" for functions that need it (defaults to Until).
	Now    int64
	Fetch  Fetcher
	Limits Limits
	// XFilesFactor is the render request's xFilesFactor (graphite-web's
	// DEFAULT_XFILES_FACTOR, 0, when absent): every fetched series
	// carries it.
	XFilesFactor float64
}

type evaluator struct {
	// pinned is a group a callback function runs over (see applyCallback).
	pinned []*Series
	// pinnedArgs are the lists callList hands a function ("\x00argN").
	pinnedArgs [][]*Series
	ctx        context.Context
	req        Request
	series     int
	points     int
	// work counts loop iterations since ctx was last looked at (tick).
	work int
}

// tickEvery is how many units of work pass between looks at ctx.
const tickEvery = 1 << 16

// tick adds n units of work (points visited) and, every tickEvery units,
// stops the evaluation if its context is done: loops whose cost is not
// linear in the points read (moving windows, buckets) call it so that a
// deadline ends them.
func (c *call) tick(n int) error {
	ev := c.ev
	ev.work += max(n, 1)
	if ev.work < tickEvery {
		return nil
	}
	ev.work = 0
	return ev.ctx.Err()
}

// Eval evaluates a parsed target.
func Eval(ctx context.Context, req Request, e *Expr) (out []*Series, err error) {
	// A function bug must fail the query, not the process.
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("internal error evaluating %s: %v", e.Raw, r)
		}
	}()
	if req.Now == 0 {
		req.Now = req.Until
	}
	ev := &evaluator{ctx: ctx, req: req}
	return ev.eval(e, req.From, req.Until)
}

// EvalTarget parses and evaluates a target.
func EvalTarget(ctx context.Context, req Request, target string) ([]*Series, error) {
	e, err := Parse(target)
	if err != nil {
		return nil, err
	}
	return Eval(ctx, req, e)
}

func (ev *evaluator) eval(e *Expr, from, until int64) ([]*Series, error) {
	if err := ev.ctx.Err(); err != nil {
		return nil, err
	}
	switch e.Kind {
	case KindPath:
		if e.Name == "\x00group" {
			return ev.pinned, nil
		}
		if n, ok := strings.CutPrefix(e.Name, "\x00arg"); ok {
			i, _ := strconv.Atoi(n)
			return ev.pinnedArgs[i], nil
		}
		list, err := ev.req.Fetch.Fetch(ev.ctx, e.Name, from, until)
		if err != nil {
			return nil, err
		}
		// graphite-web keeps one series per name and orders them by name.
		list = sortedUnique(list)
		if err := ev.account(list); err != nil {
			return nil, err
		}
		for _, s := range list {
			if s.PathExpression == "" || s.PathExpression == s.Name {
				s.PathExpression = e.Name
			}
			s.XFilesFactor = ev.req.XFilesFactor
		}
		return list, nil
	case KindCall:
		def, ok := funcByName[e.Name]
		if !ok {
			return nil, &UnknownFunctionError{Name: e.Name, Pos: e.Pos}
		}
		c, err := ev.bind(def, e, from, until)
		if err != nil {
			return nil, err
		}
		list, err := def.Eval(c)
		if err == nil {
			tagResult(c, list)
			if def.OwnPath {
				for _, s := range list {
					s.PathExpression = s.Name
				}
			}
		}
		return list, err
	default:
		return nil, &ArgError{Func: "target", Pos: e.Pos, Msg: fmt.Sprintf("%s is not a series list", e.Raw)}
	}
}

func (ev *evaluator) account(list []*Series) error {
	points := 0
	for _, s := range list {
		points += len(s.Values)
	}
	return ev.accountCounts(len(list), points)
}

// accountCounts adds series and points read to the evaluation's totals and
// refuses the query past its limits.
func (ev *evaluator) accountCounts(series, points int) error {
	ev.series += series
	ev.points += points
	if l := ev.req.Limits.MaxSeries; l > 0 && ev.series > l {
		return &LimitError{fmt.Sprintf("the query matches more than %d series (limit %d): narrow the path expression", ev.series, l)}
	}
	if l := ev.req.Limits.MaxPoints; l > 0 && ev.points > l {
		return &LimitError{fmt.Sprintf("the query reads more than %d points (limit %d): narrow the path expression or the time range", ev.points, l)}
	}
	return nil
}

// param describes one function parameter (also served by /functions).
type param struct {
	Name string
	// Keyword is the keyword argument's name where it is not Name
	// (timeShift lists alignDst but takes alignDST=).
	Keyword string
	// Optional is a parameter graphite-web lists as required that a call
	// may still leave out (highest's n: the Python signature has n=1).
	Optional bool
	Type     string // seriesList, seriesLists, integer, float, string, boolean, node, nodeOrTag, interval, aggFunc, any, tag
	Required bool
	Multiple bool
	Default  any
	Options  []string
	// Suggestions are values the editor offers for a free parameter
	// (graphite-web's "suggestions"; Grafana lists them when there are no
	// options): strings, or ints for a count of points.
	Suggestions []any
}

type funcDef struct {
	Name   string
	Group  string
	Desc   string
	Params []param
	Eval   func(c *call) ([]*Series, error)
	// OwnPath: graphite-web makes its series anew (series.copy or a new
	// TimeSeries), so each takes its own name as the path expression, and
	// an aggregate over them is named after them (sumSeries(derivative(a),
	// derivative(b))), not after the fetched path.
	OwnPath bool
}

// call is one bound function call.
type call struct {
	ev          *evaluator
	e           *Expr
	def         *funcDef
	from, until int64
	args        []*Expr // by parameter index; nil when absent
	rest        []*Expr // extra values of a Multiple parameter
	restIdx     int     // the index of the Multiple parameter
}

func (ev *evaluator) bind(def *funcDef, e *Expr, from, until int64) (*call, error) {
	c := &call{ev: ev, e: e, def: def, from: from, until: until, args: make([]*Expr, len(def.Params)), restIdx: -1}
	for i, a := range e.Args {
		if i < len(def.Params) && !def.Params[i].Multiple {
			c.args[i] = a
			continue
		}
		m := -1
		for j, p := range def.Params {
			if p.Multiple {
				m = j
			}
		}
		if m < 0 || m > i {
			return nil, &ArgError{Func: def.Name, Pos: a.Pos, Msg: fmt.Sprintf("too many arguments (takes at most %d)", len(def.Params))}
		}
		c.restIdx = m
		if c.args[m] == nil {
			c.args[m] = a
		} else {
			c.rest = append(c.rest, a)
		}
	}
	for _, kw := range e.Kwargs {
		found := false
		for j, p := range def.Params {
			if p.Name == kw.Name || (p.Keyword != "" && p.Keyword == kw.Name) {
				c.args[j] = kw.Value
				found = true
			}
		}
		if !found {
			return nil, &ArgError{Func: def.Name, Pos: kw.Value.Pos, Msg: fmt.Sprintf("unknown keyword argument %q", kw.Name)}
		}
	}
	for j, p := range def.Params {
		if p.Required && !p.Optional && c.args[j] == nil {
			return nil, &ArgError{Func: def.Name, Pos: e.Pos, Msg: fmt.Sprintf("missing required argument %q", p.Name)}
		}
	}
	return c, nil
}

func (c *call) errf(i int, format string, a ...any) error {
	pos := c.e.Pos
	if i >= 0 && i < len(c.args) && c.args[i] != nil {
		pos = c.args[i].Pos
	}
	return &ArgError{Func: c.def.Name, Pos: pos, Msg: fmt.Sprintf(format, a...)}
}

func (c *call) has(i int) bool {
	return i < len(c.args) && c.args[i] != nil && c.args[i].Kind != KindNone
}

// series evaluates parameter i as a series list.
func (c *call) series(i int) ([]*Series, error) {
	if !c.has(i) {
		return nil, nil
	}
	return c.seriesOf(c.args[i], c.from, c.until)
}

func (c *call) seriesOf(e *Expr, from, until int64) ([]*Series, error) {
	if e.Kind != KindPath && e.Kind != KindCall {
		return nil, &ArgError{Func: c.def.Name, Pos: e.Pos, Msg: fmt.Sprintf("%s is not a series list", e.Raw)}
	}
	return c.ev.eval(e, from, until)
}

// seriesLists evaluates the Multiple parameter starting at i: every list.
func (c *call) seriesLists(i int) ([][]*Series, error) {
	var out [][]*Series
	if !c.has(i) {
		return nil, nil
	}
	for _, e := range append([]*Expr{c.args[i]}, c.rest...) {
		l, err := c.seriesOf(e, c.from, c.until)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// allSeries concatenates seriesLists(i).
func (c *call) allSeries(i int) ([]*Series, error) {
	ls, err := c.seriesLists(i)
	var out []*Series
	for _, l := range ls {
		out = append(out, l...)
	}
	return out, err
}

// values returns the literal values of the Multiple parameter at i.
func (c *call) multi(i int) []*Expr {
	if !c.has(i) {
		return nil
	}
	return append([]*Expr{c.args[i]}, c.rest...)
}

func (c *call) float(i int, def float64) (float64, error) {
	if !c.has(i) {
		return def, nil
	}
	return c.floatOf(i, c.args[i])
}

func (c *call) floatOf(i int, a *Expr) (float64, error) {
	switch a.Kind {
	case KindNumber:
		return a.Num, nil
	case KindBool:
		if a.Bool {
			return 1, nil
		}
		return 0, nil
	case KindString:
		f, err := strconv.ParseFloat(strings.TrimSpace(a.Str), 64)
		if err == nil {
			return f, nil
		}
	}
	return 0, &ArgError{Func: c.def.Name, Pos: a.Pos, Msg: fmt.Sprintf("argument %s must be a number, got %s", c.def.Params[min(i, len(c.def.Params)-1)].Name, a.Raw)}
}

func (c *call) int(i int, def int) (int, error) {
	f, err := c.float(i, float64(def))
	if err != nil {
		return 0, err
	}
	switch {
	case math.IsNaN(f) || f >= 1<<30:
		return 1 << 30, nil
	case f <= -(1 << 30):
		return -(1 << 30), nil
	}
	return int(f), nil
}

func (c *call) str(i int, def string) (string, error) {
	if !c.has(i) {
		return def, nil
	}
	a := c.args[i]
	switch a.Kind {
	case KindString:
		return a.Str, nil
	case KindNumber, KindBool, KindPath:
		return a.Raw, nil
	}
	return "", c.errf(i, "argument %s must be a string, got %s", c.def.Params[i].Name, a.Raw)
}

func (c *call) bool(i int, def bool) (bool, error) {
	if !c.has(i) {
		return def, nil
	}
	a := c.args[i]
	switch a.Kind {
	case KindBool:
		return a.Bool, nil
	case KindNumber:
		return a.Num != 0, nil
	case KindString:
		return strings.EqualFold(a.Str, "true") || a.Str == "1", nil
	}
	return false, c.errf(i, "argument %s must be true or false, got %s", c.def.Params[i].Name, a.Raw)
}

// interval parses parameter i as a duration ("1min", "-1h", or seconds).
func (c *call) interval(i int, def string) (int64, string, error) {
	if !c.has(i) {
		if def == "" {
			return 0, "", nil
		}
		d, err := ParseInterval(def)
		return d, def, err
	}
	a := c.args[i]
	if a.Kind == KindNumber {
		return int64(a.Num), a.Raw, nil
	}
	s, err := c.str(i, def)
	if err != nil {
		return 0, "", err
	}
	d, err := ParseInterval(s)
	if err != nil {
		return 0, "", c.errf(i, "%v", err)
	}
	return d, s, nil
}

// Names of the implemented functions, for /functions.
func Functions() []*FuncInfo {
	var out []*FuncInfo
	for _, d := range functions {
		fi := &FuncInfo{Name: d.Name, Group: d.Group, Description: d.Desc}
		for _, p := range d.Params {
			fi.Params = append(fi.Params, ParamInfo{Name: p.Name, Type: p.Type, Required: p.Required, Multiple: p.Multiple, Default: p.Default, Options: p.Options, Suggestions: p.Suggestions})
		}
		out = append(out, fi)
	}
	return out
}

// FuncInfo describes a function as graphite-web's /functions does.
type FuncInfo struct {
	Name        string
	Group       string
	Description string
	Params      []ParamInfo
}

// ParamInfo is one parameter in /functions.
type ParamInfo struct {
	Name     string
	Type     string
	Required bool
	Multiple bool
	Default  any
	Options  []string
	// Suggestions are values offered for a free parameter.
	Suggestions []any
}

func sortedUnique(list []*Series) []*Series {
	stableSort(list, func(a, b *Series) bool { return a.Name < b.Name })
	out := list[:0]
	for i, s := range list {
		if i > 0 && list[i-1].Name == s.Name {
			continue
		}
		out = append(out, s)
	}
	return out
}

// date reads parameter i as a time (unix seconds or a from/until form such
// as "-1h" or "20260101") in UTC, def when absent.
func (c *call) date(i int, def string) (int64, error) {
	if !c.has(i) {
		if def == "" {
			return 0, c.errf(i, "missing time")
		}
		t, err := ParseTime(def, time.Unix(c.ev.req.Now, 0), time.UTC)
		return t.Unix(), err
	}
	a := c.args[i]
	if a.Kind == KindNumber {
		return int64(a.Num), nil
	}
	s, err := c.str(i, def)
	if err != nil {
		return 0, err
	}
	t, err := ParseTime(s, time.Unix(c.ev.req.Now, 0), time.UTC)
	if err != nil {
		return 0, c.errf(i, "%v", err)
	}
	return t.Unix(), nil
}

// dateAt is date for the cost check, which has no evaluator: "now" is now.
func (c *call) dateAt(i int, now int64) (int64, error) {
	if c.ev == nil || c.ev.req.Now == 0 {
		c2 := *c
		c2.ev = &evaluator{req: Request{Now: now}}
		return c2.date(i, "")
	}
	return c.date(i, "")
}
