package render

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

var (
	nan    = math.NaN()
	posInf = math.Inf(1)
)

// Series is one time series: Values[i] is the value at Start+i*Step; NaN is
// null. Stop is Start+len(Values)*Step.
type Series struct {
	Name string
	// Tags always hold "name".
	Tags map[string]string
	// PathExpression is the path the series was fetched with; aggregate
	// names are built from it as graphite-web does.
	PathExpression string
	Start, Stop    int64
	Step           int64
	Values         []float64
	// ConsolidationFunc is how maxDataPoints merges points: average (the
	// default), sum, min, max, first, last, avg_zero.
	ConsolidationFunc string
	XFilesFactor      float64
	// ValuesPerPoint > 1 when the series must be read consolidated.
	ValuesPerPoint int
	// mapKey is the mapSeries group the series is in (for reduceSeries).
	mapKey string
}

// NewSeries makes a series whose tags are parsed from a tagged name.
func NewSeries(name string, start, step int64, values []float64) *Series {
	return &Series{Name: name, Tags: TagsOf(name), PathExpression: name, Start: start, Stop: start + int64(len(values))*step, Step: step, Values: values, ConsolidationFunc: "average"}
}

// TagsOf returns the tags of a (possibly tagged) series name, with "name".
func TagsOf(name string) map[string]string {
	if i := strings.IndexByte(name, ';'); i >= 0 && !looksLikeCall(name) {
		t := map[string]string{"name": name[:i]}
		for _, kv := range strings.Split(name[i+1:], ";") {
			if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
				t[k] = v
			}
		}
		return t
	}
	return map[string]string{"name": name}
}

func looksLikeCall(name string) bool {
	i := strings.IndexByte(name, '(')
	if i <= 0 || name[len(name)-1] != ')' {
		return false
	}
	for j := 0; j < i; j++ {
		c := name[j]
		if !(c|0x20 >= 'a' && c|0x20 <= 'z') {
			return false
		}
	}
	return true
}

// Copy copies s with fresh values and tags.
func (s *Series) Copy() *Series {
	c := *s
	c.Values = append([]float64(nil), s.Values...)
	c.Tags = make(map[string]string, len(s.Tags))
	for k, v := range s.Tags {
		c.Tags[k] = v
	}
	return &c
}

// derive copies s with a new name and values. Like graphite-web's
// TimeSeries.copy it keeps the tags: the name tag stays the fetched path
// ("movingAverage(a.b,5)" has tags {name: a.b, movingAverage: 5}).
func (s *Series) derive(name string, values []float64) *Series {
	c := *s
	c.Name = name
	c.Values = values
	c.Tags = make(map[string]string, len(s.Tags)+1)
	for k, v := range s.Tags {
		c.Tags[k] = v
	}
	if _, ok := c.Tags["name"]; !ok {
		c.Tags["name"] = name
	}
	c.Stop = c.Start + int64(len(values))*c.Step
	c.ValuesPerPoint = 1
	return &c
}

// rename sets Name; as graphite-web's "series.name = ...", the name tag
// stays (it is set only when missing).
func (s *Series) rename(name string) {
	s.Name = name
	if s.Tags == nil {
		s.Tags = map[string]string{}
	}
	if _, ok := s.Tags["name"]; !ok {
		s.Tags["name"] = name
	}
}

// Points returns the values as read, consolidated by ValuesPerPoint.
func (s *Series) Points() []float64 {
	if s.ValuesPerPoint <= 1 {
		return s.Values
	}
	return consolidate(s.Values, s.ValuesPerPoint, s.ConsolidationFunc, s.XFilesFactor)
}

// consolidate merges every n values into one, as graphite-web's
// TimeSeries does for maxDataPoints and for normalising steps.
func consolidate(vals []float64, n int, fn string, xff float64) []float64 {
	out := make([]float64, 0, (len(vals)+n-1)/n)
	buf := make([]float64, 0, n)
	for i := 0; i < len(vals); i += n {
		buf = buf[:0]
		end := min(i+n, len(vals))
		nonNull := 0
		for _, v := range vals[i:end] {
			if !math.IsNaN(v) {
				buf = append(buf, v)
				nonNull++
			} else if fn == "avg_zero" {
				buf = append(buf, 0)
			}
		}
		if nonNull == 0 || float64(nonNull)/float64(n) < xff {
			out = append(out, nan)
			continue
		}
		out = append(out, consolidateBuf(buf, fn))
	}
	return out
}

func consolidateBuf(buf []float64, fn string) float64 {
	switch fn {
	case "sum":
		return sum(buf)
	case "max":
		m := buf[0]
		for _, v := range buf[1:] {
			m = math.Max(m, v)
		}
		return m
	case "min":
		m := buf[0]
		for _, v := range buf[1:] {
			m = math.Min(m, v)
		}
		return m
	case "first":
		return buf[0]
	case "last":
		return buf[len(buf)-1]
	default: // average, avg, avg_zero
		return sum(buf) / float64(len(buf))
	}
}

func sum(vs []float64) float64 {
	t := 0.0
	for _, v := range vs {
		t += v
	}
	return t
}

func isNull(v float64) bool { return math.IsNaN(v) }

// nonNull returns the non-null values.
func nonNull(vs []float64) []float64 {
	out := make([]float64, 0, len(vs))
	for _, v := range vs {
		if !math.IsNaN(v) {
			out = append(out, v)
		}
	}
	return out
}

// aggregation functions over a row (graphite's safe* helpers): NaN when
// there is nothing to aggregate.
var aggFuncs = map[string]func([]float64) float64{
	"average":  safeAvg,
	"avg_zero": safeAvgZero,
	"median":   safeMedian,
	"sum":      safeSum,
	"min":      safeMin,
	"max":      safeMax,
	"diff":     safeDiff,
	"stddev":   safeStdDev,
	"count":    func(r []float64) float64 { return float64(len(nonNull(r))) },
	"range":    func(r []float64) float64 { return safeMax(r) - safeMin(r) },
	"multiply": safeMul,
	"last":     safeLast,
}

var aggAliases = map[string]string{"rangeOf": "range", "avg": "average", "total": "sum", "current": "last"}

func aggFunc(name string) (func([]float64) float64, bool) {
	if a, ok := aggAliases[name]; ok {
		name = a
	}
	f, ok := aggFuncs[name]
	return f, ok
}

func safeSum(r []float64) float64 {
	n := nonNull(r)
	if len(n) == 0 {
		return nan
	}
	return sum(n)
}

func safeAvg(r []float64) float64 {
	n := nonNull(r)
	if len(n) == 0 {
		return nan
	}
	return sum(n) / float64(len(n))
}

func safeAvgZero(r []float64) float64 {
	if len(r) == 0 {
		return nan
	}
	t := 0.0
	for _, v := range r {
		if !isNull(v) {
			t += v
		}
	}
	return t / float64(len(r))
}

func safeMedian(r []float64) float64 {
	n := nonNull(r)
	if len(n) == 0 {
		return nan
	}
	sort.Float64s(n)
	m := len(n) / 2
	if len(n)%2 == 0 {
		return (n[m-1] + n[m]) / 2
	}
	return n[m]
}

func safeMin(r []float64) float64 {
	n := nonNull(r)
	if len(n) == 0 {
		return nan
	}
	m := n[0]
	for _, v := range n[1:] {
		if v < m {
			m = v
		}
	}
	return m
}

func safeMax(r []float64) float64 {
	n := nonNull(r)
	if len(n) == 0 {
		return nan
	}
	m := n[0]
	for _, v := range n[1:] {
		if v > m {
			m = v
		}
	}
	return m
}

func safeDiff(r []float64) float64 {
	n := nonNull(r)
	if len(n) == 0 {
		return nan
	}
	t := n[0]
	for _, v := range n[1:] {
		t -= v
	}
	return t
}

func safeStdDev(r []float64) float64 {
	n := nonNull(r)
	if len(n) == 0 {
		return nan
	}
	avg := sum(n) / float64(len(n))
	t := 0.0
	for _, v := range n {
		t += (v - avg) * (v - avg)
	}
	return math.Sqrt(t / float64(len(n)))
}

func safeMul(r []float64) float64 {
	if len(r) == 0 {
		return nan
	}
	p := 1.0
	for _, v := range r {
		if isNull(v) {
			return nan
		}
		p *= v
	}
	return p
}

func safeLast(r []float64) float64 {
	for i := len(r) - 1; i >= 0; i-- {
		if !isNull(r[i]) {
			return r[i]
		}
	}
	return nan
}

// xffRow reports whether enough of a row is non-null.
func xffRow(r []float64, xff float64) bool {
	if len(r) == 0 {
		return false
	}
	n := len(nonNull(r))
	return n > 0 && float64(n)/float64(len(r)) >= xff
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func lcm(a, b int64) int64 {
	if a == b || b == 0 {
		return a
	}
	if a == 0 {
		return b
	}
	return a / gcd(a, b) * b
}

// normalize brings series to one step (the lcm of theirs) and one time range,
// as graphite-web's normalize: each is read consolidated, rows are padded
// with nulls. It returns the rows' values per series.
func normalize(list []*Series) (vals [][]float64, start, end, step int64, ok bool) {
	if len(list) == 0 {
		return nil, 0, 0, 0, false
	}
	step = list[0].Step
	start, end = list[0].Start, list[0].Stop
	for _, s := range list[1:] {
		step = lcm(step, s.Step)
		start = min(start, s.Start)
		end = max(end, s.Stop)
	}
	if step <= 0 {
		return nil, 0, 0, 0, false
	}
	end -= (end - start) % step
	vals = make([][]float64, len(list))
	for i, s := range list {
		// Like graphite-web, normalising marks the series themselves as
		// read consolidated.
		if s.Step > 0 {
			s.ValuesPerPoint = int(step / s.Step)
		}
		vals[i] = s.Points()
	}
	return vals, start, end, step, true
}

// rows returns column i across vals, padding missing cells with NaN
// (izip_longest).
func rowsOf(vals [][]float64) [][]float64 {
	n := 0
	for _, v := range vals {
		n = max(n, len(v))
	}
	rows := make([][]float64, n)
	for i := range rows {
		r := make([]float64, len(vals))
		for j, v := range vals {
			if i < len(v) {
				r[j] = v[i]
			} else {
				r[j] = nan
			}
		}
		rows[i] = r
	}
	return rows
}

// formatPathExpressions joins the distinct path expressions, in order.
func formatPathExpressions(list []*Series) string {
	var seen []string
	for _, s := range list {
		found := false
		for _, p := range seen {
			if p == s.PathExpression {
				found = true
				break
			}
		}
		if !found {
			seen = append(seen, s.PathExpression)
		}
	}
	return strings.Join(seen, ",")
}

// pyG formats like Python's "%g".
func pyG(f float64) string {
	if math.IsInf(f, 1) {
		return "inf"
	}
	if math.IsInf(f, -1) {
		return "-inf"
	}
	if math.IsNaN(f) {
		return "nan"
	}
	return fmt.Sprintf("%.6g", f)
}

// pyRepr formats a number like Python's repr of an int or float argument.
func pyRepr(f float64, isInt bool) string {
	if isInt && f == math.Trunc(f) && math.Abs(f) < 1e18 {
		return strconv.FormatInt(int64(f), 10)
	}
	if math.IsInf(f, 1) {
		return "inf"
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e16 {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
