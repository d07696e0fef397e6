package render

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

func sortFloats(v []float64) { sort.Float64s(v) }
func sortStrings(v []string) { sort.Strings(v) }
func stableSort(l []*Series, less func(a, b *Series) bool) {
	sort.SliceStable(l, func(i, j int) bool { return less(l[i], l[j]) })
}

// keyOf is graphite's keyFunc: null sorts as -inf.
func keyOf(f func([]float64) float64, s *Series) float64 {
	v := f(s.Points())
	if isNull(v) {
		return math.Inf(-1)
	}
	return v
}

var operators = map[string]func(a, b float64) bool{
	"=":  func(a, b float64) bool { return a == b },
	"!=": func(a, b float64) bool { return a != b },
	">":  func(a, b float64) bool { return a > b },
	">=": func(a, b float64) bool { return a >= b },
	"<":  func(a, b float64) bool { return a < b },
	"<=": func(a, b float64) bool { return a <= b },
}

// filterBy keeps series whose aggregate compares true with n. A null
// aggregate (a series without values) passes !=, < and <= and fails the
// others, as graphite-web's operators say (averageBelow keeps an empty
// series, averageAbove drops it).
func filterBy(list []*Series, fn string, op string, n float64) []*Series {
	f, _ := aggFunc(fn)
	cmp := operators[op]
	var out []*Series
	for _, s := range list {
		v := f(s.Points())
		if isNull(v) {
			if op == "!=" || op == "<" || op == "<=" {
				out = append(out, s)
			}
			continue
		}
		if cmp(v, n) {
			out = append(out, s)
		}
	}
	return out
}

// filterByAggregate keeps the series whose fn compares by op to n
// (maximumAbove, currentBelow, ...).
func filterByAggregate(c *call, fn, op string) ([]*Series, error) {
	n, err := c.float(1, 0)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	return filterBy(list, fn, op, n), err
}

func maximumAbove(c *call) ([]*Series, error) { return filterByAggregate(c, "max", ">") }
func maximumBelow(c *call) ([]*Series, error) { return filterByAggregate(c, "max", "<=") }
func minimumAbove(c *call) ([]*Series, error) { return filterByAggregate(c, "min", ">") }
func minimumBelow(c *call) ([]*Series, error) { return filterByAggregate(c, "min", "<=") }
func averageAbove(c *call) ([]*Series, error) { return filterByAggregate(c, "average", ">") }
func averageBelow(c *call) ([]*Series, error) { return filterByAggregate(c, "average", "<=") }
func currentAbove(c *call) ([]*Series, error) { return filterByAggregate(c, "last", ">") }
func currentBelow(c *call) ([]*Series, error) { return filterByAggregate(c, "last", "<=") }

// topByAggregate is the n series with the highest (or lowest) fn.
func topByAggregate(c *call, fn string, high bool) ([]*Series, error) {
	n, err := c.int(1, 1)
	if err != nil {
		return nil, err
	}
	return topN(c, n, fn, high)
}

func highestCurrent(c *call) ([]*Series, error) { return topByAggregate(c, "last", true) }
func highestMax(c *call) ([]*Series, error)     { return topByAggregate(c, "max", true) }
func highestAverage(c *call) ([]*Series, error) { return topByAggregate(c, "average", true) }
func lowestCurrent(c *call) ([]*Series, error)  { return topByAggregate(c, "last", false) }
func lowestAverage(c *call) ([]*Series, error)  { return topByAggregate(c, "average", false) }

// grepSeries keeps (keep) or drops the series matching a regular expression.
func grepSeries(c *call, keep bool) ([]*Series, error) {
	pat, _ := c.str(1, "")
	re, err := pyRegexp(pat)
	if err != nil {
		return nil, c.errf(1, "bad regular expression: %v", err)
	}
	list, err := c.series(0)
	var out []*Series
	for _, s := range list {
		if re.MatchString(s.Name) == keep {
			out = append(out, s)
		}
	}
	return out, err
}

func grep(c *call) ([]*Series, error)    { return grepSeries(c, true) }
func exclude(c *call) ([]*Series, error) { return grepSeries(c, false) }

// removeByLimit nulls the points above (or below) n, or the nth percentile.
func removeByLimit(c *call, name string, above, pct bool) ([]*Series, error) {
	n, err := c.float(1, 0)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	for i, s := range list {
		limit := n
		if pct {
			limit = getPercentile(s.Values, n, false)
		}
		vals := make([]float64, len(s.Values))
		for j, v := range s.Values {
			if !isNull(v) && ((above && v > limit) || (!above && v < limit)) {
				v = nan
			}
			vals[j] = v
		}
		d := s.derive(fmt.Sprintf("%s(%s, %s)", name, s.Name, pyG(n)), vals)
		d.PathExpression = d.Name
		list[i] = d
	}
	return list, err
}

func removeAboveValue(c *call) ([]*Series, error) {
	return removeByLimit(c, "removeAboveValue", true, false)
}
func removeBelowValue(c *call) ([]*Series, error) {
	return removeByLimit(c, "removeBelowValue", false, false)
}
func removeAbovePercentile(c *call) ([]*Series, error) {
	return removeByLimit(c, "removeAbovePercentile", true, true)
}
func removeBelowPercentile(c *call) ([]*Series, error) {
	return removeByLimit(c, "removeBelowPercentile", false, true)
}

func constantSeries(from, until int64, v float64, name string) *Series {
	step := (until - from) / 2
	if step <= 0 {
		step = 1
	}
	s := newDerived(name, from, step, []float64{v, v, v})
	s.Stop = until
	return s
}

func topN(c *call, n int, fn string, high bool) ([]*Series, error) {
	f, ok := aggFunc(fn)
	if !ok {
		return nil, c.errf(2, "unsupported aggregation function: %s", fn)
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	sortByKey(list, func(s *Series) float64 { return keyOf(f, s) }, high)
	if n < 0 {
		n = 0
	}
	return list[:min(n, len(list))], nil
}

// sortByKey sorts stably like Python's list.sort(key, reverse).
func sortByKey(list []*Series, key func(*Series) float64, reverse bool) {
	keys := make(map[*Series]float64, len(list))
	for _, s := range list {
		keys[s] = key(s)
	}
	if reverse {
		stableSort(list, func(a, b *Series) bool { return keys[a] > keys[b] })
	} else {
		stableSort(list, func(a, b *Series) bool { return keys[a] < keys[b] })
	}
}

var digitsRe = regexp.MustCompile(`(\d+)`)

// naturalLess compares names with their digit runs as numbers.
func naturalLess(a, b string) bool {
	pa, pb := natParts(a), natParts(b)
	for i := 0; i < min(len(pa), len(pb)); i++ {
		x, y := pa[i], pb[i]
		if x.isNum && y.isNum {
			if x.n != y.n {
				return x.n < y.n
			}
			continue
		}
		if x.isNum != y.isNum {
			return x.isNum
		}
		if x.s != y.s {
			return x.s < y.s
		}
	}
	return len(pa) < len(pb)
}

type natPart struct {
	s     string
	n     int64
	isNum bool
}

func natParts(s string) []natPart {
	var out []natPart
	for _, p := range digitsRe.Split(s, -1) {
		_ = p
	}
	idx := digitsRe.FindAllStringIndex(s, -1)
	last := 0
	for _, m := range idx {
		out = append(out, natPart{s: s[last:m[0]]})
		n, _ := strconv.ParseInt(s[m[0]:m[1]], 10, 64)
		out = append(out, natPart{n: n, isNum: true})
		last = m[1]
	}
	out = append(out, natPart{s: s[last:]})
	return out
}

var _ = strings.TrimSpace

// filterSeries: Keeps series whose aggregate passes a comparison.
func filterSeries(c *call) ([]*Series, error) {
	fn, _ := c.str(1, "")
	op, _ := c.str(2, "")
	n, err := c.float(3, 0)
	if err != nil {
		return nil, err
	}
	if _, ok := aggFunc(fn); !ok {
		return nil, c.errf(1, "unsupported aggregation function: %s", fn)
	}
	if operators[op] == nil {
		return nil, c.errf(2, "unsupported operator: %s", op)
	}
	list, err := c.series(0)
	return filterBy(list, fn, op, n), err
}

// highest: The n series with the highest aggregate.
func highest(c *call) ([]*Series, error) {
	n, err := c.int(1, 1)
	if err != nil {
		return nil, err
	}
	fn, _ := c.str(2, "average")
	return topN(c, n, fn, true)
}

// lowest: The n series with the lowest aggregate.
func lowest(c *call) ([]*Series, error) {
	n, err := c.int(1, 1)
	if err != nil {
		return nil, err
	}
	fn, _ := c.str(2, "average")
	return topN(c, n, fn, false)
}

// limit: The first n series.
func limit(c *call) ([]*Series, error) {
	n, err := c.int(1, 0)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	// Python's seriesList[:n]: a negative n drops that many from the end.
	if n < 0 {
		n += len(list)
	}
	return list[:max(0, min(n, len(list)))], err
}

// removeEmptySeries: Drops series with no (or too few) values.
func removeEmptySeries(c *call) ([]*Series, error) {
	xff, err := c.float(1, 0)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	var out []*Series
	for _, s := range list {
		x := xff
		if !c.has(1) {
			x = s.XFilesFactor
		}
		if xffRow(s.Values, x) {
			out = append(out, s)
		}
	}
	return out, err
}

// averageOutsidePercentile: Keeps series whose average lies outside the percentile interval.
func averageOutsidePercentile(c *call) ([]*Series, error) {
	n, err := c.float(1, 0)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	avgs := make([]float64, len(list))
	for i, s := range list {
		avgs[i] = safeAvg(s.Values)
	}
	if n < 50 {
		n = 100 - n
	}
	lo, hi := getPercentile(avgs, 100-n, false), getPercentile(avgs, n, false)
	var out []*Series
	for i, s := range list {
		if !(lo < avgs[i] && avgs[i] < hi) {
			out = append(out, s)
		}
	}
	return out, err
}

// sortBy: Sorts series by an aggregate.
func sortBy(c *call) ([]*Series, error) {
	fn, _ := c.str(1, "average")
	rev, err := c.bool(2, false)
	if err != nil {
		return nil, err
	}
	f, ok := aggFunc(fn)
	if !ok {
		return nil, c.errf(1, "unsupported aggregation function: %s", fn)
	}
	list, err := c.series(0)
	sortByKey(list, func(s *Series) float64 { return keyOf(f, s) }, rev)
	return list, err
}

// sortByTotal: Sorts series by their sum, highest first.
func sortByTotal(c *call) ([]*Series, error) {
	list, err := c.series(0)
	sortByKey(list, func(s *Series) float64 { return keyOf(safeSum, s) }, true)
	return list, err
}

// sortByMaxima: Sorts series by their maximum, highest first.
func sortByMaxima(c *call) ([]*Series, error) {
	list, err := c.series(0)
	sortByKey(list, func(s *Series) float64 { return keyOf(safeMax, s) }, true)
	return list, err
}

// sortByMinima: Sorts series by their minimum, lowest first.
func sortByMinima(c *call) ([]*Series, error) {
	list, err := c.series(0)
	var out []*Series
	for _, s := range list {
		if safeMax(s.Values) > 0 {
			out = append(out, s)
		}
	}
	sortByKey(out, func(s *Series) float64 { return keyOf(safeMin, s) }, false)
	return out, err
}

// sortByName: Sorts series by name.
func sortByName(c *call) ([]*Series, error) {
	natural, err := c.bool(1, false)
	if err != nil {
		return nil, err
	}
	rev, err := c.bool(2, false)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	less := func(a, b *Series) bool { return a.Name < b.Name }
	if natural {
		less = func(a, b *Series) bool { return naturalLess(a.Name, b.Name) }
	}
	if rev {
		stableSort(list, func(a, b *Series) bool { return less(b, a) })
	} else {
		stableSort(list, less)
	}
	return list, err
}

// fallbackSeries: Uses a fallback when the list is empty.
func fallbackSeries(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	if len(list) > 0 {
		return list, nil
	}
	return c.series(1)
}

// constantLine: A horizontal line at a value.
func constantLine(c *call) ([]*Series, error) {
	v, err := c.float(0, 0)
	if err != nil {
		return nil, err
	}
	// value is a float parameter: graphite-web names the line str(float),
	// constantLine(100) is "100.0".
	s := constantSeries(c.from, c.until, v, pyFloatStr(v))
	return []*Series{s}, nil
}

// aggregateLine: A horizontal line at an aggregate of each series.
func aggregateLine(c *call) ([]*Series, error) {
	fn, _ := c.str(1, "average")
	keep, err := c.bool(2, false)
	if err != nil {
		return nil, err
	}
	f, ok := aggFunc(fn)
	if !ok {
		return nil, c.errf(1, "unsupported aggregation function: %s", fn)
	}
	list, err := c.series(0)
	var out []*Series
	for _, s := range list {
		v := f(s.Values)
		name := fmt.Sprintf("aggregateLine(%s, None)", s.Name)
		if !isNull(v) {
			name = fmt.Sprintf("aggregateLine(%s, %s)", s.Name, pyG(v))
		}
		if keep {
			vals := make([]float64, len(s.Values))
			for i := range vals {
				vals[i] = v
			}
			out = append(out, s.derive(name, vals))
		} else {
			l := constantSeries(c.from, c.until, v, name)
			l.PathExpression = name
			out = append(out, l)
		}
	}
	return out, err
}

// timeFunction: A series whose value is its timestamp.
func timeFunction(c *call) ([]*Series, error) {
	name, _ := c.str(0, "")
	step, err := c.int(1, 60)
	if err != nil || step <= 0 {
		return nil, c.errf(1, "step must be a positive integer")
	}
	var vals []float64
	for t := c.from; t < c.until; t += int64(step) {
		vals = append(vals, float64(t))
	}
	return []*Series{newDerived(name, c.from, int64(step), vals)}, nil
}

// sinFunction: A sine wave.
func sinFunction(c *call) ([]*Series, error) {
	name, _ := c.str(0, "")
	amp, err := c.float(1, 1)
	if err != nil {
		return nil, err
	}
	step, err := c.int(2, 60)
	if err != nil || step <= 0 {
		return nil, c.errf(2, "step must be a positive integer")
	}
	var vals []float64
	for t := c.from; t < c.until; t += int64(step) {
		vals = append(vals, math.Sin(float64(t))*amp)
	}
	return []*Series{newDerived(name, c.from, int64(step), vals)}, nil
}

// seriesByTag: Series whose tags match every expression.
func seriesByTag(c *call) ([]*Series, error) {
	var exprs []string
	for _, e := range c.multi(0) {
		if e.Kind != KindString {
			return nil, &ArgError{Func: "seriesByTag", Pos: e.Pos, Msg: "tag expressions must be quoted strings such as 'name=cpu'"}
		}
		exprs = append(exprs, e.Str)
	}
	list, err := c.ev.req.Fetch.FetchTagged(c.ev.ctx, exprs, c.from, c.until)
	if err != nil {
		return nil, err
	}
	list = sortedUnique(list)
	if err := c.ev.account(list); err != nil {
		return nil, err
	}
	pe := c.e.Raw
	for _, s := range list {
		s.PathExpression = pe
	}
	return list, nil
}
