package render

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
)

// oracleBase is the data set the expectations below were read from
// graphite-web 1.1.8 with (whisper, 60 s steps, fetched from oracleBase
// to oracleBase+600): t.a is i+1, t.b is 2i (null every 5th), t.c is 10-i
// at oracleBase+60i, for i in 0..9.
const oracleBase = 1796665740

type oracleFetcher struct{}

func (oracleFetcher) Fetch(_ context.Context, path string, from, until int64) ([]*Series, error) {
	gen := map[string]func(i int64) float64{
		"t.a": func(i int64) float64 { return float64(i + 1) },
		"t.b": func(i int64) float64 {
			if i%5 == 0 {
				return nan
			}
			return float64(2 * i)
		},
		"t.c": func(i int64) float64 { return float64(10 - i) },
	}
	var names []string
	switch path {
	case "t.*":
		names = []string{"t.a", "t.b", "t.c"}
	default:
		if gen[path] == nil {
			return nil, nil
		}
		names = []string{path}
	}
	start := from - mod(from, 60) + 60
	end := until - mod(until, 60) + 60
	var out []*Series
	for _, n := range names {
		var vals []float64
		for t := start; t < end; t += 60 {
			i := (t - oracleBase) / 60
			if i < 0 || i > 9 {
				vals = append(vals, nan)
				continue
			}
			vals = append(vals, gen[n](i))
		}
		out = append(out, NewSeries(n, start, 60, vals))
	}
	return out, nil
}

func (f oracleFetcher) FetchTagged(ctx context.Context, exprs []string, from, until int64) ([]*Series, error) {
	return nil, nil
}

func (oracleFetcher) EventTimes(tags []string, from, until int64) ([]int64, error) {
	if len(tags) == 1 && tags[0] == "dep" {
		return []int64{oracleBase + 130}, nil
	}
	return nil, nil
}

const N = math.MaxFloat64 // null in the tables below

func vals(v ...float64) []float64 {
	for i := range v {
		if v[i] == N {
			v[i] = nan
		}
	}
	return v
}

var (
	aVals = vals(2, 3, 4, 5, 6, 7, 8, 9, 10, N)
	bVals = vals(2, 4, 6, 8, N, 12, 14, 16, 18, N)
	cVals = vals(9, 8, 7, 6, 5, 4, 3, 2, 1, N)
)

type wantSeries struct {
	name  string
	vals  []float64 // nil: not checked
	start int64     // 0: oracleBase+60
	tags  map[string]string
}

// The names, values and tags graphite-web 1.1.8 answered for each target
// (except where a comment says graphite-web fails).
func TestGraphiteWebFunctionsAdded(t *testing.T) {
	b := int64(oracleBase)
	log10 := func(v ...float64) []float64 {
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = math.Log10(x)
		}
		return append(out, nan)
	}
	cases := []struct {
		target string
		want   []wantSeries
	}{
		{"log(t.a)", []wantSeries{{name: "log(t.a, 10)", vals: log10(2, 3, 4, 5, 6, 7, 8, 9, 10), tags: map[string]string{"name": "t.a", "log": "10"}}}},
		{"log(t.a,2)", []wantSeries{{name: "log(t.a, 2)", vals: vals(1, math.Log2(3), 2, math.Log2(5), math.Log2(6), math.Log2(7), 3, math.Log2(9), math.Log2(10), N)}}},
		{"linearRegression(t.a)", []wantSeries{{name: fmt.Sprintf("linearRegression(t.a, %d, %d)", b, b+600), vals: vals(2, 3, 4, 5, 6, 7, 8, 9, 10, 11), tags: map[string]string{"name": "t.a", "linearRegressions": fmt.Sprintf("%d, %d", b, b+600)}}}},
		{"mostDeviant(t.*,1)", []wantSeries{{name: "t.b", vals: bVals}}},
		{"cactiStyle(t.a)", []wantSeries{{name: "t.a Current:10.00    Max:10.00    Min:2.00    ", vals: aVals, tags: map[string]string{"name": "t.a"}}}},
		{"cactiStyle(group(t.a,scale(t.c,1000)),'si','b')", []wantSeries{{name: "t.a             Current:10.00 b    Max:10.00 b    Min:2.00 b     "}, {name: "scale(t.c,1000) Current:1.00 kb    Max:9.00 kb    Min:1.00 kb    "}}},
		{"color(t.a,'red')", []wantSeries{{name: "t.a", vals: aVals}}},
		{"alpha(t.a,0.5)", []wantSeries{{name: "t.a", vals: aVals}}},
		{"lineWidth(t.a,2)", []wantSeries{{name: "t.a", vals: aVals}}},
		{"dashed(t.a)", []wantSeries{{name: "dashed(t.a, 5)", vals: aVals, tags: map[string]string{"name": "t.a", "dashed": "5"}}}},
		{"dashed(t.a,2.5)", []wantSeries{{name: "dashed(t.a, 2.5)", tags: map[string]string{"name": "t.a", "dashed": "2.5"}}}},
		{"secondYAxis(t.a)", []wantSeries{{name: "secondYAxis(t.a)", vals: aVals, tags: map[string]string{"name": "t.a", "secondYAxis": "1"}}}},
		{"stacked(t.a)", []wantSeries{{name: "stacked(t.a)", vals: aVals, tags: map[string]string{"name": "t.a", "stacked": "__DEFAULT__"}}}},
		{"stacked(t.a,'x')", []wantSeries{{name: "t.a", vals: aVals, tags: map[string]string{"name": "t.a"}}}},
		{"drawAsInfinite(t.a)", []wantSeries{{name: "drawAsInfinite(t.a)", vals: aVals, tags: map[string]string{"name": "t.a", "drawAsInfinite": "1"}}}},
		// graphite-web names both after the second series.
		{"areaBetween(group(t.a,t.c))", []wantSeries{{name: "areaBetween(t.c)", vals: aVals, tags: map[string]string{"name": "t.a", "areaBetween": "1"}}, {name: "areaBetween(t.c)", vals: cVals}}},
		{fmt.Sprintf("timeSlice(t.a,'%d','%d')", b+120, b+300), []wantSeries{{name: fmt.Sprintf("timeSlice(t.a, %d, %d)", b+120, b+300), vals: vals(N, N, 4, 5, 6, 7, N, N, N, N), tags: map[string]string{"name": "t.a", "timeSliceStart": fmt.Sprint(b + 120), "timeSliceEnd": fmt.Sprint(b + 300)}}}},
		{"powSeries(t.a,t.c)", []wantSeries{{name: "powSeries(t.a,t.c)", vals: vals(512, 6561, 16384, 15625, 7776, 2401, 512, 81, 10, N), tags: map[string]string{"name": "powSeries(t.a,t.c)"}}}},
		{"sumSeriesLists(t.a,t.c)", []wantSeries{{name: "sumSeries(t.a,t.c)", vals: vals(11, 11, 11, 11, 11, 11, 11, 11, 11, N), tags: map[string]string{"name": "sumSeries(t.a,t.c)", "aggregatedBy": "sum"}}}},
		{"diffSeriesLists(t.a,t.c)", []wantSeries{{name: "diffSeries(t.a,t.c)", vals: vals(-7, -5, -3, -1, 1, 3, 5, 7, 9, N)}}},
		{"multiplySeriesLists(t.a,t.c)", []wantSeries{{name: "multiplySeries(t.a,t.c)", vals: vals(18, 24, 28, 30, 30, 28, 24, 18, 10, N)}}},
		{"aggregateSeriesLists(t.a,t.c,'max')", []wantSeries{{name: "maxSeries(t.a,t.c)", vals: vals(9, 8, 7, 6, 6, 7, 8, 9, 10, N), tags: map[string]string{"name": "maxSeries(t.a,t.c)", "aggregatedBy": "max"}}}},
		{"xFilesFactor(t.a,0.5)", []wantSeries{{name: "t.a", vals: aVals, tags: map[string]string{"name": "t.a", "xFilesFactor": "0.5"}}}},
		{"pct(t.*)", []wantSeries{{name: "asPercent(t.a,sumSeries(t.*))", vals: vals(200.0/13, 20, 400.0/17, 500.0/19, 600.0/11, 700.0/23, 32, 100.0/3, 1000.0/29, N)}, {name: "asPercent(t.b,sumSeries(t.*))"}, {name: "asPercent(t.c,sumSeries(t.*))"}}},
		{"smartSummarize(t.a,'5min')", []wantSeries{{name: `smartSummarize(t.a, "5min", "sum")`, vals: vals(20, 34), tags: map[string]string{"name": "t.a", "smartSummarize": "5min", "smartSummarizeFunction": "sum"}}}},
		{"smartSummarize(t.b,'3min','avg')", []wantSeries{{name: `smartSummarize(t.b, "3min", "avg")`, vals: vals(4, 10, 16, N)}}},
		{"timeStack(t.a,'1min',0,2)", []wantSeries{
			{name: "timeShift(t.a, -1min, 0)", vals: aVals, tags: map[string]string{"name": "t.a", "timeShiftUnit": "-1min", "timeShift": "0"}},
			{name: "timeShift(t.a, -1min, 1)", vals: vals(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), tags: map[string]string{"name": "t.a", "timeShiftUnit": "-1min", "timeShift": "1"}},
		}},
		{"threshold(5)", []wantSeries{{name: "5.0", vals: vals(5, 5, 5), start: b}}},
		{"threshold(5,'lbl','red')", []wantSeries{{name: "lbl", vals: vals(5, 5, 5), start: b, tags: map[string]string{"name": "5.0"}}}},
		{"reduceSeries(mapSeries(t.*,0),'asPercent',1,'a','c')", []wantSeries{{name: "t.reduce.asPercent", vals: vals(200.0/9, 37.5, 400.0/7, 500.0/6, 120, 175, 800.0/3, 450, 1000, N), tags: map[string]string{"name": "asPercent(t.a,t.c)"}}}},
		{"reduce(map(t.*,0),'sumSeries',1,'a','c')", []wantSeries{{name: "t.reduce.sumSeries", vals: vals(11, 11, 11, 11, 11, 11, 11, 11, 11, N)}}},
		{fmt.Sprintf("verticalLine('%d','lbl')", b+120), []wantSeries{{name: "lbl", vals: vals(1), start: b + 120}}},
		{fmt.Sprintf("verticalLine('%d')", b+120), []wantSeries{{name: "None", vals: vals(1), start: b + 120}}},
		// graphite-web 1.1.8 fails on the null in t.c (max(series) > value).
		{"useSeriesAbove(t.c,5,'c','a')", []wantSeries{{name: "t.a", vals: aVals}}},
		{"useSeriesAbove(t.c,9,'c','a')", nil},
		{"identity('x')", []wantSeries{{name: "x", start: b}}},
		{"time('x')", []wantSeries{{name: "x", start: b}}},
		{"sin('x')", []wantSeries{{name: "x", start: b}}},
		{"randomWalk('x')", []wantSeries{{name: "x", start: b}}},
		{"randomWalkFunction('x')", []wantSeries{{name: "x", start: b}}},
		{"holtWintersAberration(t.a)", []wantSeries{{name: "holtWintersAberration(t.a)"}}},
		{"holtWintersConfidenceArea(t.a)", []wantSeries{{name: "holtWintersConfidenceArea(holtWintersConfidenceUpper(t.a))"}, {name: "holtWintersConfidenceArea(holtWintersConfidenceUpper(t.a))"}}},
	}
	for _, tc := range cases {
		got, err := EvalTarget(context.Background(), Request{From: b, Until: b + 600, Now: b + 600, Fetch: oracleFetcher{}}, tc.target)
		if err != nil {
			t.Errorf("%s: %v", tc.target, err)
			continue
		}
		if len(got) != len(tc.want) {
			var names []string
			for _, s := range got {
				names = append(names, s.Name)
			}
			t.Errorf("%s: %d series %q, want %d", tc.target, len(got), names, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			g := got[i]
			if g.Name != w.name {
				t.Errorf("%s: series %d named %q, want %q", tc.target, i, g.Name, w.name)
			}
			start := w.start
			if start == 0 {
				start = b + 60
			}
			if g.Start != start {
				t.Errorf("%s: series %d starts at %d, want %d", tc.target, i, g.Start, start)
			}
			if w.vals != nil && !sameValues(g.Points(), w.vals) {
				t.Errorf("%s: series %d values %v, want %v", tc.target, i, g.Points(), w.vals)
			}
			for k, v := range w.tags {
				if g.Tags[k] != v {
					t.Errorf("%s: series %d tag %s=%q, want %q (tags %v)", tc.target, i, k, g.Tags[k], v, g.Tags)
				}
			}
		}
	}
}

// removeBetweenPercentile keeps a series with a point outside the nth and
// (100-n)th percentiles across series (graphite-web 1.1.8 fails on nulls;
// here they are skipped).
func TestRemoveBetweenPercentile(t *testing.T) {
	got, err := EvalTarget(context.Background(), Request{From: oracleBase, Until: oracleBase + 600, Fetch: oracleFetcher{}}, "removeBetweenPercentile(group(t.a,offset(t.a,1),offset(t.a,2),offset(t.a,3),offset(t.a,40)),70)")
	if err != nil {
		t.Fatal(err)
	}
	// Five values at each time; graphite-web's percentile (no
	// interpolation) rounds the rank up: the 30th is the 2nd smallest
	// (t.a+1), the 70th the 5th (t.a+40). t.a, t.a+1 and t.a+40 are not
	// strictly between them.
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
	}
	if want := "t.a offset(t.a,1) offset(t.a,40)"; strings.Join(names, " ") != want {
		t.Errorf("kept %q, want %q", names, want)
	}
}

// events counts events per second, null where there is none.
func TestEventsPerSecond(t *testing.T) {
	s := evalOne(t, oracleFetcher{}, "events('dep')", oracleBase, oracleBase+600)
	if s.Name != `events("dep")` || s.Step != 1 || s.Start != oracleBase || len(s.Values) != 600 { // until excluded, as graphite-web
		t.Fatalf("events: %s step %d start %d, %d values", s.Name, s.Step, s.Start, len(s.Values))
	}
	for i, v := range s.Values {
		if want := i == 130; want != !isNull(v) || (want && v != 1) {
			t.Errorf("events value %d = %v", i, v)
		}
	}
}

// Graph functions take a bad argument as graphite-web does not: alpha's
// must be a number.
func TestGraphFunctionArguments(t *testing.T) {
	if _, err := EvalTarget(context.Background(), Request{From: oracleBase, Until: oracleBase + 600, Fetch: oracleFetcher{}}, "alpha(t.a,'x')"); err == nil {
		t.Errorf("alpha(t.a,'x') was accepted")
	}
	if _, err := EvalTarget(context.Background(), Request{From: oracleBase, Until: oracleBase + 600, Fetch: oracleFetcher{}}, "areaBetween(t.a)"); err == nil {
		t.Errorf("areaBetween of one series was accepted")
	}
}
