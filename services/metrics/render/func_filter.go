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
// aggregate never passes (Python 3 raises on None > n; graphite-web drops it).
func filterBy(list []*Series, fn string, op string, n float64) []*Series {
	f, _ := aggFunc(fn)
	cmp := operators[op]
	var out []*Series
	for _, s := range list {
		v := f(s.Points())
		if isNull(v) {
			continue
		}
		if cmp(v, n) {
			out = append(out, s)
		}
	}
	return out
}

func init() {
	register("Filter Series", "filterSeries", []param{pSeries, pAggFunc, {Name: "operator", Type: "string", Required: true, Options: []string{"=", "!=", ">", ">=", "<", "<="}}, pFloat("threshold", true)}, func(c *call) ([]*Series, error) {
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
	}, "Keeps series whose aggregate passes a comparison.")
	for name, spec := range map[string][2]string{
		"maximumAbove": {"max", ">"}, "maximumBelow": {"max", "<="}, "minimumAbove": {"min", ">"}, "minimumBelow": {"min", "<="},
		"averageAbove": {"average", ">"}, "averageBelow": {"average", "<="}, "currentAbove": {"last", ">"}, "currentBelow": {"last", "<="},
	} {
		register("Filter Series", name, []param{pSeries, pFloat("n", true)}, func(c *call) ([]*Series, error) {
			n, err := c.float(1, 0)
			if err != nil {
				return nil, err
			}
			list, err := c.series(0)
			return filterBy(list, spec[0], spec[1], n), err
		}, "Keeps series whose "+spec[0]+" is "+spec[1]+" n.")
	}
	register("Filter Series", "highest", []param{pSeries, {Name: "n", Type: "integer", Default: 1}, {Name: "func", Type: "aggFunc", Default: "average", Options: aggOptions}}, func(c *call) ([]*Series, error) {
		n, err := c.int(1, 1)
		if err != nil {
			return nil, err
		}
		fn, _ := c.str(2, "average")
		return topN(c, n, fn, true)
	}, "The n series with the highest aggregate.")
	register("Filter Series", "lowest", []param{pSeries, {Name: "n", Type: "integer", Default: 1}, {Name: "func", Type: "aggFunc", Default: "average", Options: aggOptions}}, func(c *call) ([]*Series, error) {
		n, err := c.int(1, 1)
		if err != nil {
			return nil, err
		}
		fn, _ := c.str(2, "average")
		return topN(c, n, fn, false)
	}, "The n series with the lowest aggregate.")
	for name, spec := range map[string]struct {
		fn   string
		high bool
	}{"highestCurrent": {"last", true}, "highestMax": {"max", true}, "highestAverage": {"average", true}, "lowestCurrent": {"last", false}, "lowestAverage": {"average", false}} {
		register("Filter Series", name, []param{pSeries, pInt("n", true)}, func(c *call) ([]*Series, error) {
			n, err := c.int(1, 1)
			if err != nil {
				return nil, err
			}
			return topN(c, n, spec.fn, spec.high)
		}, "The n series with the highest or lowest "+spec.fn+".")
	}
	register("Filter Series", "limit", []param{pSeries, pInt("n", true)}, func(c *call) ([]*Series, error) {
		n, err := c.int(1, 0)
		if err != nil {
			return nil, err
		}
		list, err := c.series(0)
		return list[:max(0, min(n, len(list)))], err
	}, "The first n series.")
	for _, name := range []string{"exclude", "grep"} {
		keep := name == "grep"
		register("Filter Series", name, []param{pSeries, pStr("pattern", true)}, func(c *call) ([]*Series, error) {
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
		}, "Keeps (grep) or drops (exclude) series matching a regular expression.")
	}
	register("Filter Series", "removeEmptySeries", []param{pSeries, pFloat("xFilesFactor", false)}, func(c *call) ([]*Series, error) {
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
	}, "Drops series with no (or too few) values.")
	register("Filter Series", "averageOutsidePercentile", []param{pSeries, pFloat("n", true)}, func(c *call) ([]*Series, error) {
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
	}, "Keeps series whose average lies outside the percentile interval.")
	for _, spec := range []struct {
		name  string
		above bool
		pct   bool
	}{{"removeAboveValue", true, false}, {"removeBelowValue", false, false}, {"removeAbovePercentile", true, true}, {"removeBelowPercentile", false, true}} {
		register("Filter Data", spec.name, []param{pSeries, pFloat("n", true)}, func(c *call) ([]*Series, error) {
			n, err := c.float(1, 0)
			if err != nil {
				return nil, err
			}
			list, err := c.series(0)
			for i, s := range list {
				limit := n
				if spec.pct {
					limit = getPercentile(s.Values, n, false)
				}
				vals := make([]float64, len(s.Values))
				for j, v := range s.Values {
					if !isNull(v) && ((spec.above && v > limit) || (!spec.above && v < limit)) {
						v = nan
					}
					vals[j] = v
				}
				d := s.derive(fmt.Sprintf("%s(%s, %s)", spec.name, s.Name, pyG(n)), vals)
				d.PathExpression = d.Name
				list[i] = d
			}
			return list, err
		}, "Removes points above or below a value or percentile.")
	}
	register("Sorting", "sortBy", []param{pSeries, {Name: "func", Type: "aggFunc", Default: "average", Options: aggOptions}, {Name: "reverse", Type: "boolean", Default: false}}, func(c *call) ([]*Series, error) {
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
	}, "Sorts series by an aggregate.")
	register("Sorting", "sortByTotal", []param{pSeries}, func(c *call) ([]*Series, error) {
		list, err := c.series(0)
		sortByKey(list, func(s *Series) float64 { return keyOf(safeSum, s) }, true)
		return list, err
	}, "Sorts series by their sum, highest first.")
	register("Sorting", "sortByMaxima", []param{pSeries}, func(c *call) ([]*Series, error) {
		list, err := c.series(0)
		sortByKey(list, func(s *Series) float64 { return keyOf(safeMax, s) }, true)
		return list, err
	}, "Sorts series by their maximum, highest first.")
	register("Sorting", "sortByMinima", []param{pSeries}, func(c *call) ([]*Series, error) {
		list, err := c.series(0)
		var out []*Series
		for _, s := range list {
			if safeMax(s.Values) > 0 {
				out = append(out, s)
			}
		}
		sortByKey(out, func(s *Series) float64 { return keyOf(safeMin, s) }, false)
		return out, err
	}, "Sorts series by their minimum, lowest first.")
	register("Sorting", "sortByName", []param{pSeries, {Name: "natural", Type: "boolean", Default: false}, {Name: "reverse", Type: "boolean", Default: false}}, func(c *call) ([]*Series, error) {
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
	}, "Sorts series by name.")
	register("Special", "fallbackSeries", []param{pSeries, {Name: "fallback", Type: "seriesList", Required: true}}, func(c *call) ([]*Series, error) {
		list, err := c.series(0)
		if err != nil {
			return nil, err
		}
		if len(list) > 0 {
			return list, nil
		}
		return c.series(1)
	}, "Uses a fallback when the list is empty.")
	register("Special", "constantLine", []param{pFloat("value", true)}, func(c *call) ([]*Series, error) {
		v, err := c.float(0, 0)
		if err != nil {
			return nil, err
		}
		s := constantLine(c.from, c.until, v, pyStr(v, c.args[0]))
		return []*Series{s}, nil
	}, "A horizontal line at a value.")
	register("Calculate", "aggregateLine", []param{pSeries, {Name: "func", Type: "aggFunc", Default: "average", Options: aggOptions}, {Name: "keepStep", Type: "boolean", Default: false}}, func(c *call) ([]*Series, error) {
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
				l := constantLine(c.from, c.until, v, name)
				l.PathExpression = name
				out = append(out, l)
			}
		}
		return out, err
	}, "A horizontal line at an aggregate of each series.")
	register("Transform", "timeFunction", []param{pStr("name", true), {Name: "step", Type: "integer", Default: 60}}, func(c *call) ([]*Series, error) {
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
	}, "A series whose value is its timestamp.")
	register("Transform", "sinFunction", []param{pStr("name", true), {Name: "amplitude", Type: "integer", Default: 1}, {Name: "step", Type: "integer", Default: 60}}, func(c *call) ([]*Series, error) {
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
	}, "A sine wave.")
}

func constantLine(from, until int64, v float64, name string) *Series {
	step := (until - from) / 2
	if step <= 0 {
		step = 1
	}
	s := newDerived(name, from, step, []float64{v, v, v})
	s.Stop = until
	return s
}

// pyStr is Python's str() of a numeric argument.
func pyStr(v float64, e *Expr) string {
	if e != nil && e.IsInt {
		return strconv.FormatInt(int64(v), 10)
	}
	return pyRepr(v, false)
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

func init() {
	register("Special", "seriesByTag", []param{{Name: "tagExpressions", Type: "string", Required: true, Multiple: true}}, func(c *call) ([]*Series, error) {
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
	}, "Series whose tags match every expression.")
}
