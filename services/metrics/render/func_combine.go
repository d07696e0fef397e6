package render

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

var (
	pSeries     = param{Name: "seriesList", Type: "seriesList", Required: true}
	pSeriesList = param{Name: "seriesLists", Type: "seriesList", Required: true, Multiple: true}
	// pSeriesListsOpt is seriesLists where graphite-web does not require one.
	pSeriesListsOpt = param{Name: "seriesLists", Type: "seriesList", Multiple: true}
	aggOptions      = []string{"average", "avg", "avg_zero", "count", "current", "diff", "last", "max", "median", "min", "multiply", "range", "rangeOf", "stddev", "sum", "total"}
	// callbackOptions are the aggregations and the series functions a
	// callback (groupByNode, groupByTags) may name.
	callbackOptions = []string{"asPercent", "average", "averageSeries", "averageSeriesWithWildcards", "avg", "avg_zero", "count", "countSeries", "current", "diff", "diffSeries", "diffSeriesLists", "last", "max", "maxSeries", "median", "min", "minSeries", "multiply", "multiplySeries", "multiplySeriesLists", "multiplySeriesWithWildcards", "pct", "powSeries", "range", "rangeOf", "rangeOfSeries", "stddev", "stddevSeries", "sum", "sumSeries", "sumSeriesLists", "sumSeriesWithWildcards", "total"}
	// legendValueOptions are legendValue's value types.
	legendValueOptions = []string{"average", "averageSeries", "avg", "avgSeries", "avg_zero", "avg_zeroSeries", "binary", "count", "countSeries", "current", "currentSeries", "diff", "diffSeries", "last", "lastSeries", "max", "maxSeries", "median", "medianSeries", "min", "minSeries", "multiply", "multiplySeries", "range", "rangeOf", "rangeOfSeries", "rangeSeries", "si", "stddev", "stddevSeries", "sum", "sumSeries", "total", "totalSeries"}
	pAggFunc           = param{Name: "func", Type: "aggFunc", Required: true, Options: aggOptions}
)

// combineSeries combines every series of the lists by fn (sumSeries,
// averageSeries, ...).
func combineSeries(c *call, fn string) ([]*Series, error) {
	if out, ok, err := streamAggregate(c, fn, 0, fn == "count"); ok {
		return out, err
	}
	list, err := c.allSeries(0)
	if err != nil {
		return nil, err
	}
	if fn == "multiply" && len(c.multi(0)) == 1 && len(list) == 1 {
		return list, nil
	}
	if fn == "count" {
		return countList(c, list)
	}
	return aggregateList(c, list, fn, 0)
}

func sumSeries(c *call) ([]*Series, error)      { return combineSeries(c, "sum") }
func averageSeries(c *call) ([]*Series, error)  { return combineSeries(c, "average") }
func maxSeries(c *call) ([]*Series, error)      { return combineSeries(c, "max") }
func minSeries(c *call) ([]*Series, error)      { return combineSeries(c, "min") }
func diffSeries(c *call) ([]*Series, error)     { return combineSeries(c, "diff") }
func stddevSeries(c *call) ([]*Series, error)   { return combineSeries(c, "stddev") }
func rangeOfSeries(c *call) ([]*Series, error)  { return combineSeries(c, "rangeOf") }
func countSeries(c *call) ([]*Series, error)    { return combineSeries(c, "count") }
func multiplySeries(c *call) ([]*Series, error) { return combineSeries(c, "multiply") }

// seriesWithWildcards aggregates by fn after removing the given nodes.
func seriesWithWildcards(c *call, fn string) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	pos, err := c.ints(1)
	if err != nil {
		return nil, err
	}
	return aggregateWildcards(c, list, fn, pos)
}

func sumSeriesWithWildcards(c *call) ([]*Series, error)     { return seriesWithWildcards(c, "sum") }
func averageSeriesWithWildcards(c *call) ([]*Series, error) { return seriesWithWildcards(c, "average") }
func multiplySeriesWithWildcards(c *call) ([]*Series, error) {
	return seriesWithWildcards(c, "multiply")
}

// aggregate: Aggregate series using the specified function.
func aggregate(c *call) ([]*Series, error) {
	if fn, _ := c.str(1, ""); c.has(1) {
		if xff, err := c.float(2, 0); err == nil {
			if out, ok, err := streamAggregate(c, fn, xff, false); ok {
				return out, err
			}
		}
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	fn, _ := c.str(1, "")
	xff, err := c.float(2, 0)
	if err != nil {
		return nil, err
	}
	return aggregateList(c, list, fn, xff)
}

// aggregateWithWildcards: Aggregates series after removing the given nodes.
func aggregateWithWildcards(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	fn, _ := c.str(1, "")
	pos, err := c.ints(2)
	if err != nil {
		return nil, err
	}
	return aggregateWildcards(c, list, fn, pos)
}

// groupByNode: Groups series by one node and aggregates each group.
func groupByNode(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	cb, _ := c.str(2, "average")
	return groupByNodesOf(c, list, cb, []*Expr{c.args[1]})
}

// groupByNodes: Groups series by nodes and aggregates each group.
func groupByNodes(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	cb, _ := c.str(1, "average")
	return groupByNodesOf(c, list, cb, c.multi(2))
}

// unique: Removes duplicate series by name.
func unique(c *call) ([]*Series, error) {
	list, err := c.allSeries(0)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []*Series
	for _, s := range list {
		if !seen[s.Name] {
			seen[s.Name] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// group: Joins series lists.
func group(c *call) ([]*Series, error) { return c.allSeries(0) }

// ints reads the Multiple integer parameter at i.
func (c *call) ints(i int) ([]int, error) {
	var out []int
	for _, e := range c.multi(i) {
		f, err := c.floatOf(i, e)
		if err != nil {
			return nil, err
		}
		out = append(out, int(f))
	}
	return out, nil
}

func aggregateList(c *call, list []*Series, fn string, xff float64) ([]*Series, error) {
	fn = strings.TrimSuffix(fn, "Series")
	agg, ok := aggFunc(fn)
	if !ok {
		return nil, c.errf(1, "unsupported aggregation function: %s", fn)
	}
	if len(list) == 0 {
		return nil, nil
	}
	vals, start, _, step, ok := normalize(list)
	if !ok {
		return nil, nil
	}
	out, ok := aggregateBySeries(vals, fn, xff)
	if !ok {
		out = aggregateByRow(vals, agg, xff)
	}
	var tags map[string]string
	for _, s := range list {
		tags = meetTags(tags, s)
	}
	return aggregated(fn, formatPathExpressions(list), tags, start, step, out, xff), nil
}

// meetTags returns the tags s shares with tags, those of the series before
// it (nil before the first): an aggregate keeps the tags all its series
// agree on.
func meetTags(tags map[string]string, s *Series) map[string]string {
	if tags == nil {
		tags = make(map[string]string, len(s.Tags))
		for k, v := range s.Tags {
			tags[k] = v
		}
		return tags
	}
	for k, v := range tags {
		if s.Tags[k] != v {
			delete(tags, k)
		}
	}
	return tags
}

// aggregated is the series aggregate answers: fn (without "Series") over the
// series of paths, with the tags they share.
func aggregated(fn, paths string, tags map[string]string, start, step int64, out []float64, xff float64) []*Series {
	name := fmt.Sprintf("%sSeries(%s)", fn, paths)
	if _, ok := tags["name"]; !ok {
		tags["name"] = name
	}
	tags["aggregatedBy"] = fn
	return []*Series{{Name: name, Tags: tags, PathExpression: name, Start: start, Step: step, Stop: start + int64(len(out))*step, Values: out, ConsolidationFunc: "average", XFilesFactor: xff}}
}

// aggregateByRow applies agg to each row (the values of all series at one
// time) that is non-null enough for xff. One row buffer is reused: a
// transposed copy of 10,000 series over a day would be 700 MB more.
func aggregateByRow(vals [][]float64, agg func([]float64) float64, xff float64) []float64 {
	n := 0
	for _, v := range vals {
		n = max(n, len(v))
	}
	out := make([]float64, n)
	r := make([]float64, len(vals))
	for i := range out {
		for j, v := range vals {
			if i < len(v) {
				r[j] = v[i]
			} else {
				r[j] = nan
			}
		}
		if xffRow(r, xff) {
			out[i] = agg(r)
		} else {
			out[i] = nan
		}
	}
	return out
}

// aggregateBySeries computes sum, average, min, max and count a series at
// a time, as aggregateByRow would (the same values added in the same
// order), but reading each series' values in order instead of one value
// of every series per row: several times faster over thousands of series.
// It reports false for the other functions.
func aggregateBySeries(vals [][]float64, fn string, xff float64) ([]float64, bool) {
	a, ok := newSeriesAcc(fn)
	if !ok {
		return nil, false
	}
	n := 0
	for _, v := range vals {
		n = max(n, len(v))
	}
	a.grow(n)
	for _, v := range vals {
		a.add(v)
	}
	return a.result(xff), true
}

// seriesAcc accumulates sum, average, min, max or count over series added
// one at a time (see aggregateBySeries): value i of each series goes into
// slot i, whatever the series' start, as graphite-web's izip_longest does.
type seriesAcc struct {
	fn     string
	out    []float64
	cnt    []int
	series int
}

// newSeriesAcc reports false for the functions a row at a time needs.
func newSeriesAcc(fn string) (*seriesAcc, bool) {
	if a, ok := aggAliases[fn]; ok {
		fn = a
	}
	switch fn {
	case "sum", "average", "min", "max", "count":
		return &seriesAcc{fn: fn, out: []float64{}, cnt: []int{}}, true
	}
	return nil, false
}

// grow makes room for n slots (added ones are empty).
func (a *seriesAcc) grow(n int) {
	if n > len(a.out) {
		a.out = append(a.out, make([]float64, n-len(a.out))...)
		a.cnt = append(a.cnt, make([]int, n-len(a.cnt))...)
	}
}

func (a *seriesAcc) add(v []float64) {
	a.grow(len(v))
	a.series++
	fn, out, cnt := a.fn, a.out, a.cnt
	for i, x := range v {
		if math.IsNaN(x) {
			continue
		}
		switch {
		case fn == "sum" || fn == "average":
			out[i] += x // from 0, as sum does: -0 becomes 0
		case fn == "count":
		case cnt[i] == 0, fn == "min" && x < out[i], fn == "max" && x > out[i]:
			out[i] = x
		}
		cnt[i]++
	}
}

// result turns the slots into values: null where fewer than xff of the
// series had one.
func (a *seriesAcc) result(xff float64) []float64 {
	out := a.out
	for i, c := range a.cnt {
		switch {
		case a.series == 0 || c == 0 || float64(c)/float64(a.series) < xff:
			out[i] = nan
		case a.fn == "average":
			out[i] /= float64(c)
		case a.fn == "count":
			out[i] = float64(c)
		}
	}
	return out
}

func countList(c *call, list []*Series) ([]*Series, error) {
	if len(list) == 0 {
		return nil, nil
	}
	vals, start, _, step, _ := normalize(list)
	name := fmt.Sprintf("countSeries(%s)", formatPathExpressions(list))
	rows := rowsOf(vals)
	out := make([]float64, len(rows))
	for i := range rows {
		out[i] = float64(len(list))
	}
	return []*Series{newDerived(name, start, step, out)}, nil
}

func newDerived(name string, start, step int64, vals []float64) *Series {
	return &Series{Name: name, Tags: map[string]string{"name": name}, PathExpression: name, Start: start, Step: step, Stop: start + int64(len(vals))*step, Values: vals, ConsolidationFunc: "average"}
}

func aggregateWildcards(c *call, list []*Series, fn string, pos []int) ([]*Series, error) {
	groups := map[string][]*Series{}
	var keys []string
	for _, s := range list {
		parts := strings.Split(s.Name, ".")
		var kept []string
		for i, p := range parts {
			skip := false
			for _, q := range pos {
				if q == i {
					skip = true
				}
			}
			if !skip {
				kept = append(kept, p)
			}
		}
		k := strings.Join(kept, ".")
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], s)
	}
	var out []*Series
	for _, k := range keys {
		r, err := aggregateList(c, groups[k], fn, 0)
		if err != nil {
			return nil, err
		}
		if len(r) == 0 {
			continue
		}
		r[0].rename(k)
		out = append(out, r[0])
	}
	return out, nil
}

// getPercentile is graphite-web's _getPercentile.
func getPercentile(points []float64, n float64, interpolate bool) float64 {
	sorted := nonNull(points)
	if len(sorted) == 0 {
		return nan
	}
	sortFloats(sorted)
	fractional := n / 100.0 * float64(len(sorted)+1)
	rank := int(math.Floor(fractional))
	rankFrac := fractional - float64(rank)
	if !interpolate {
		rank += int(math.Ceil(rankFrac))
	}
	var pct float64
	switch {
	case rank == 0:
		pct = sorted[0]
	case rank-1 == len(sorted):
		pct = sorted[len(sorted)-1]
	case rank-1 > len(sorted):
		pct = sorted[len(sorted)-1]
	default:
		pct = sorted[rank-1]
	}
	if interpolate && rank != len(sorted) && rank > 0 && rank < len(sorted) {
		next := sorted[rank]
		pct = pct + rankFrac*(next-pct)
	}
	return pct
}

func percentileOfSeries(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	n, err := c.float(1, 0)
	if err != nil {
		return nil, err
	}
	interp, _ := c.bool(2, false)
	if n <= 0 {
		return nil, c.errf(1, "the requested percent is required to be greater than 0")
	}
	if len(list) == 0 {
		return nil, nil
	}
	name := fmt.Sprintf("percentileOfSeries(%s,%s)", list[0].PathExpression, pyG(n))
	vals, start, _, step, _ := normalize(list)
	rows := rowsOf(vals)
	out := make([]float64, len(rows))
	for i, r := range rows {
		out[i] = getPercentile(r, n, interp)
	}
	return []*Series{newDerived(name, start, step, out)}, nil
}

func safeDiv(a, b float64) float64 {
	if isNull(a) || isNull(b) || b == 0 {
		return nan
	}
	return a / b
}

func pairValues(a, b *Series) (va, vb []float64, start, step int64) {
	vals, start, _, step, _ := normalize([]*Series{a, b})
	va, vb = vals[0], vals[1]
	n := max(len(va), len(vb))
	for len(va) < n {
		va = append(va, nan)
	}
	for len(vb) < n {
		vb = append(vb, nan)
	}
	return va, vb, start, step
}

func asPercent(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	normalize(list)
	nodes := c.multi(2)
	var totalList []*Series
	totalIsList, totalNum := false, 0.0
	hasTotal := c.has(1)
	if hasTotal {
		a := c.args[1]
		if a.Kind == KindNumber {
			totalNum = a.Num
		} else {
			totalIsList = true
			if totalList, err = c.series(1); err != nil {
				return nil, err
			}
		}
	}
	pct := func(name string, a, b *Series) *Series {
		va, vb, start, step := pairValues(a, b)
		out := make([]float64, len(va))
		for i := range va {
			out[i] = safeDiv(va[i], vb[i]) * 100
		}
		return newDerived(name, start, step, out)
	}
	if len(nodes) > 0 {
		if hasTotal && !totalIsList {
			return nil, c.errf(1, "total must be None or a seriesList when nodes are given")
		}
		var keys []string
		meta := map[string][]*Series{}
		for _, s := range list {
			k := aggKey(s, nodes)
			if _, ok := meta[k]; !ok {
				keys = append(keys, k)
			}
			meta[k] = append(meta[k], s)
		}
		totals := map[string]*Series{}
		sumOf := func(l []*Series) *Series {
			if len(l) == 1 {
				return l[0]
			}
			vals, start, _, step, _ := normalize(l)
			rows := rowsOf(vals)
			out := make([]float64, len(rows))
			for i, r := range rows {
				out[i] = safeSum(r)
			}
			return newDerived(fmt.Sprintf("sumSeries(%s)", formatPathExpressions(l)), start, step, out)
		}
		if !hasTotal {
			for _, k := range keys {
				totals[k] = sumOf(meta[k])
			}
		} else {
			tg := map[string][]*Series{}
			var tkeys []string
			for _, s := range totalList {
				k := aggKey(s, nodes)
				if _, ok := tg[k]; !ok {
					tkeys = append(tkeys, k)
				}
				tg[k] = append(tg[k], s)
				if _, ok := meta[k]; !ok && !contains(keys, k) {
					keys = append(keys, k)
				}
			}
			for _, k := range tkeys {
				totals[k] = sumOf(tg[k])
			}
		}
		var out []*Series
		for _, k := range keys {
			t, hasT := totals[k]
			ms, hasM := meta[k]
			if !hasM {
				vals := make([]float64, len(t.Points()))
				for i := range vals {
					vals[i] = nan
				}
				out = append(out, newDerived(fmt.Sprintf("asPercent(MISSING,%s)", t.Name), t.Start, t.Step, vals))
				continue
			}
			for _, s := range ms {
				if !hasT {
					vals := make([]float64, len(s.Points()))
					for i := range vals {
						vals[i] = nan
					}
					out = append(out, newDerived(fmt.Sprintf("asPercent(%s,MISSING)", s.Name), s.Start, s.Step, vals))
					continue
				}
				out = append(out, pct(fmt.Sprintf("asPercent(%s,%s)", s.Name, t.Name), s, t))
			}
		}
		return out, nil
	}
	if len(list) == 0 {
		return nil, nil
	}
	var totalVals []float64
	var totalText string
	switch {
	case !hasTotal:
		rows := rowsOf(valuesOf(list))
		totalVals = make([]float64, len(rows))
		for i, r := range rows {
			totalVals[i] = safeSum(r)
		}
		totalText = fmt.Sprintf("sumSeries(%s)", formatPathExpressions(list))
	case totalIsList:
		if len(totalList) != 1 && len(totalList) != len(list) {
			return nil, c.errf(1, "asPercent second argument must be missing, a single digit, reference exactly 1 series or reference the same number of series as the first argument")
		}
		if len(totalList) == 1 {
			normalize(append(append([]*Series{}, list...), totalList...))
			totalVals = totalList[0].Points()
			totalText = totalList[0].Name
		}
	default:
		totalVals = make([]float64, len(list[0].Points()))
		for i := range totalVals {
			totalVals[i] = totalNum
		}
		totalText = c.args[1].Raw
		if !c.args[1].IsInt {
			totalText = strconv.FormatFloat(totalNum, 'f', -1, 64)
		}
	}
	var out []*Series
	if totalIsList && len(totalList) == len(list) && len(list) > 1 || (totalIsList && len(totalList) == len(list) && len(totalList) != 1) {
		a, b := sortedByName(list), sortedByName(totalList)
		for i := range a {
			out = append(out, pct(fmt.Sprintf("asPercent(%s,%s)", a[i].Name, b[i].Name), a[i], b[i]))
		}
		return out, nil
	}
	for _, s := range list {
		v := s.Points()
		n := max(len(v), len(totalVals))
		res := make([]float64, n)
		for i := 0; i < n; i++ {
			a, b := nan, nan
			if i < len(v) {
				a = v[i]
			}
			if i < len(totalVals) {
				b = totalVals[i]
			}
			res[i] = safeDiv(a, b) * 100
		}
		tt := totalText
		if tt == "" {
			tt = s.PathExpression
		}
		d := newDerived(fmt.Sprintf("asPercent(%s,%s)", s.Name, tt), s.Start, s.Step*int64(max(1, s.ValuesPerPoint)), res)
		out = append(out, d)
	}
	return out, nil
}

func valuesOf(list []*Series) [][]float64 {
	out := make([][]float64, len(list))
	for i, s := range list {
		out[i] = s.Points()
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func sortedByName(l []*Series) []*Series {
	out := append([]*Series(nil), l...)
	stableSort(out, func(a, b *Series) bool { return a.Name < b.Name })
	return out
}

func divideSeriesLists(c *call) ([]*Series, error) {
	a, err := c.series(0)
	if err != nil {
		return nil, err
	}
	b, err := c.series(1)
	if err != nil {
		return nil, err
	}
	if len(a) != len(b) {
		return nil, c.errf(1, "dividendSeriesList and divisorSeriesList argument must have equal length")
	}
	var out []*Series
	for i := range a {
		va, vb, start, step := pairValues(a[i], b[i])
		vals := make([]float64, len(va))
		for j := range va {
			vals[j] = safeDiv(va[j], vb[j])
		}
		out = append(out, newDerived(fmt.Sprintf("divideSeries(%s,%s)", a[i].Name, b[i].Name), start, step, vals))
	}
	return out, nil
}

func divideSeries(c *call) ([]*Series, error) {
	a, err := c.series(0)
	if err != nil {
		return nil, err
	}
	b, err := c.series(1)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		var out []*Series
		for _, s := range a {
			vals := make([]float64, len(s.Values))
			for i := range vals {
				vals[i] = nan
			}
			d := s.derive(fmt.Sprintf("divideSeries(%s,MISSING)", s.Name), vals)
			d.PathExpression = d.Name
			out = append(out, d)
		}
		return out, nil
	}
	if len(b) > 1 {
		return nil, c.errf(1, "divideSeries second argument must reference exactly 1 series (got %d)", len(b))
	}
	var out []*Series
	for _, s := range a {
		va, vb, start, step := pairValues(s, b[0])
		vals := make([]float64, len(va))
		for j := range va {
			vals[j] = safeDiv(va[j], vb[j])
		}
		out = append(out, newDerived(fmt.Sprintf("divideSeries(%s,%s)", s.Name, b[0].Name), start, step, vals))
	}
	return out, nil
}

// nodeOrTag returns node n of the series name (before any tags), or tag n.
func nodeOrTag(s *Series, n *Expr, path string) string {
	if n.Kind == KindNumber {
		if path == "" {
			path = s.Name
		}
		base, _, _ := strings.Cut(path, ";")
		parts := strings.Split(base, ".")
		i := int(n.Num)
		if i < 0 {
			i += len(parts)
		}
		if i >= 0 && i < len(parts) {
			return parts[i]
		}
		return s.Tags[n.Raw]
	}
	key := n.Str
	if n.Kind != KindString {
		key = n.Raw
	}
	return s.Tags[key]
}

// firstPathExpression finds the first path inside a function-wrapped name.
func firstPathExpression(name string) string {
	e, err := Parse(name)
	if err != nil {
		return name
	}
	var find func(e *Expr) string
	find = func(e *Expr) string {
		if e.Kind == KindPath {
			return e.Name
		}
		for _, a := range e.Args {
			if p := find(a); p != "" {
				return p
			}
		}
		return ""
	}
	if p := find(e); p != "" {
		return p
	}
	return name
}

func aggKey(s *Series, nodes []*Expr) string {
	path := ""
	if strings.HasSuffix(s.Name, ")") {
		path = firstPathExpression(s.Name)
	}
	parts := make([]string, len(nodes))
	for i, n := range nodes {
		parts[i] = nodeOrTag(s, n, path)
	}
	return strings.Join(parts, ".")
}

func weightedAverage(c *call) ([]*Series, error) {
	avg, err := c.series(0)
	if err != nil {
		return nil, err
	}
	weight, err := c.series(1)
	if err != nil {
		return nil, err
	}
	nodes := c.multi(2)
	if len(avg) != len(weight) {
		return nil, c.errf(1, "weightedAverage must receive the same number of series for seriesListAvg and seriesListWeight but received respectively %d and %d", len(avg), len(weight))
	}
	type pair struct{ a, w *Series }
	sorted := map[string]*pair{}
	var keys []string
	get := func(k string) *pair {
		p, ok := sorted[k]
		if !ok {
			p = &pair{}
			sorted[k] = p
			keys = append(keys, k)
		}
		return p
	}
	for i := range avg {
		get(aggKey(avg[i], nodes)).a = avg[i]
		get(aggKey(weight[i], nodes)).w = weight[i]
	}
	var products []*Series
	for _, k := range keys {
		p := sorted[k]
		if p.a == nil || p.w == nil {
			continue
		}
		va, vw := p.a.Points(), p.w.Points()
		n := max(len(va), len(vw))
		vals := make([]float64, n)
		for i := 0; i < n; i++ {
			x, y := nan, nan
			if i < len(va) {
				x = va[i]
			}
			if i < len(vw) {
				y = vw[i]
			}
			vals[i] = safeMul([]float64{x, y})
		}
		products = append(products, newDerived(fmt.Sprintf("product(%s,%s)", p.w.Name, p.a.Name), p.a.Start, p.a.Step, vals))
	}
	if len(products) == 0 {
		return nil, nil
	}
	sp, _ := aggregateList(c, products, "sum", 0)
	sw, _ := aggregateList(c, weight, "sum", 0)
	va, vw := sp[0].Values, sw[0].Values
	n := max(len(va), len(vw))
	vals := make([]float64, n)
	for i := 0; i < n; i++ {
		x, y := nan, nan
		if i < len(va) {
			x = va[i]
		}
		if i < len(vw) {
			y = vw[i]
		}
		vals[i] = safeDiv(x, y)
	}
	ns := make([]string, len(nodes))
	for i, n := range nodes {
		ns[i] = n.Raw
	}
	name := fmt.Sprintf("weightedAverage(%s, %s, %s)", strings.Join(sortedSet(avg), ","), strings.Join(sortedSet(weight), ","), strings.Join(ns, ","))
	return []*Series{newDerived(name, sp[0].Start, sp[0].Step, vals)}, nil
}

func sortedSet(l []*Series) []string {
	var out []string
	for _, s := range l {
		if !contains(out, s.PathExpression) {
			out = append(out, s.PathExpression)
		}
	}
	sortStrings(out)
	return out
}

// groupByNodes groups by the node/tag key and aggregates each group with an
// aggregation function name or a series function (e.g. keepLastValue).
func groupByNodesOf(c *call, list []*Series, callback string, nodes []*Expr) ([]*Series, error) {
	groups := map[string][]*Series{}
	var keys []string
	for _, s := range list {
		k := aggKey(s, nodes)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], s)
	}
	var out []*Series
	for _, k := range keys {
		r, err := applyCallback(c, groups[k], callback)
		if err != nil {
			return nil, err
		}
		for _, s := range r {
			s.rename(k)
		}
		out = append(out, r...)
	}
	return out, nil
}

// applyCallback aggregates a group with an aggFunc, or runs a series
// function over it.
func applyCallback(c *call, group []*Series, callback string) ([]*Series, error) {
	if _, ok := aggFunc(strings.TrimSuffix(callback, "Series")); ok {
		return aggregateList(c, group, callback, 0)
	}
	def, ok := funcByName[callback]
	if !ok {
		return nil, c.errf(-1, "unsupported callback %q", callback)
	}
	// Run the function on the already-fetched group.
	sub := &call{ev: c.ev, e: &Expr{Kind: KindCall, Name: callback, Pos: c.e.Pos}, def: def, from: c.from, until: c.until, args: make([]*Expr, len(def.Params)), restIdx: -1}
	sub.args[0] = &Expr{Kind: KindPath, Name: "\x00group", Pos: c.e.Pos}
	c.ev.pinned = group
	defer func() { c.ev.pinned = nil }()
	r, err := def.Eval(sub)
	if err != nil {
		return nil, err
	}
	// graphite-web keeps the first series a function callback returns.
	return r[:min(1, len(r))], nil
}

func groupByTags(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	cb, _ := c.str(1, "")
	var tags []string
	for _, e := range c.multi(2) {
		if e.Kind == KindString {
			tags = append(tags, e.Str)
		} else {
			tags = append(tags, e.Raw)
		}
	}
	if len(tags) == 0 {
		return nil, c.errf(2, "no tags specified")
	}
	byName := !contains(tags, "name")
	common := cb
	if byName {
		names := map[string]bool{}
		for _, s := range list {
			names[s.Tags["name"]] = true
		}
		if len(names) == 1 {
			for n := range names {
				common = n
			}
		}
	}
	groups := map[string][]*Series{}
	var keys []string
	for _, s := range list {
		var kv []string
		for _, t := range tags {
			if t == "name" {
				continue
			}
			kv = append(kv, t+"="+s.Tags[t])
		}
		sortStrings(kv)
		k := s.Tags["name"]
		if byName {
			k = common
		}
		k = strings.Join(append([]string{k}, kv...), ";")
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], s)
	}
	var out []*Series
	for _, k := range keys {
		r, err := applyCallback(c, groups[k], cb)
		if err != nil {
			return nil, err
		}
		if len(r) == 0 {
			continue
		}
		s := r[0]
		s.Name, s.PathExpression, s.Tags = k, k, TagsOf(k)
		out = append(out, s)
	}
	return out, nil
}

func applyByNode(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	node, err := c.int(1, 0)
	if err != nil {
		return nil, err
	}
	tmpl, _ := c.str(2, "")
	newName, _ := c.str(3, "")
	var prefixes []string
	for _, s := range list {
		parts := strings.Split(s.Name, ".")
		if node >= len(parts) {
			continue
		}
		p := strings.Join(parts[:node+1], ".")
		if !contains(prefixes, p) {
			prefixes = append(prefixes, p)
		}
	}
	var out []*Series
	for _, p := range prefixes {
		target := strings.ReplaceAll(tmpl, "%", p)
		r, err := c.ev.evalString(target, c.from, c.until)
		if err != nil {
			return nil, err
		}
		for _, s := range r {
			if newName != "" {
				s.rename(strings.ReplaceAll(newName, "%", p))
			}
		}
		out = append(out, r...)
	}
	return out, nil
}

func (ev *evaluator) evalString(target string, from, until int64) ([]*Series, error) {
	e, err := Parse(target)
	if err != nil {
		return nil, err
	}
	return ev.eval(e, from, until)
}
