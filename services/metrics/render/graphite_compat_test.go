package render

import (
	"context"
	"math"
	"strings"
	"testing"
)

// rampFetcher serves every path as one series whose value at t is t/step
// (nulls where null says), aligned as whisper aligns a fetch: the first
// point is the first step boundary after from.
type rampFetcher struct {
	step int64
	null func(t int64) bool
}

func (f rampFetcher) Fetch(_ context.Context, path string, from, until int64) ([]*Series, error) {
	start := from - mod(from, f.step) + f.step
	end := until - mod(until, f.step) + f.step
	var vals []float64
	for t := start; t < end; t += f.step {
		if f.null != nil && f.null(t) {
			vals = append(vals, nan)
		} else {
			vals = append(vals, float64(t/f.step))
		}
	}
	s := NewSeries(path, start, f.step, vals)
	return []*Series{s}, nil
}

func (f rampFetcher) FetchTagged(ctx context.Context, exprs []string, from, until int64) ([]*Series, error) {
	return f.Fetch(ctx, "seriesByTag("+strings.Join(exprs, ",")+")", from, until)
}

func evalOne(t *testing.T, f Fetcher, target string, from, until int64) *Series {
	t.Helper()
	got, err := EvalTarget(context.Background(), Request{From: from, Until: until, Fetch: f}, target)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	if len(got) != 1 {
		t.Fatalf("%s: %d series, want 1", target, len(got))
	}
	return got[0]
}

func sameValues(got, want []float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if math.IsNaN(got[i]) != math.IsNaN(want[i]) || (!math.IsNaN(want[i]) && math.Abs(got[i]-want[i]) > 1e-9) {
			return false
		}
	}
	return true
}

// graphite-web's moving window for the point at i is the windowPoints
// values before it (values[i-w:i]), from a fetch that starts the window's
// length before from.
func TestMovingWindowEndsBeforeThePoint(t *testing.T) {
	f := rampFetcher{step: 60}
	// from 600, until 900: the plain fetch is 660..900; widened by 120 s it
	// is 540..900 (values 9..15).
	for _, c := range []struct {
		target string
		start  int64
		want   []float64
	}{
		{"movingAverage(a,2)", 660, []float64{9.5, 10.5, 11.5, 12.5, 13.5}},
		{"movingAverage(a,'2min')", 660, []float64{9.5, 10.5, 11.5, 12.5, 13.5}},
		{"movingSum(a,2)", 660, []float64{19, 21, 23, 25, 27}},
		{"movingMin(a,'2min')", 660, []float64{9, 10, 11, 12, 13}},
		{"movingMax(a,3)", 660, []float64{10, 11, 12, 13, 14}},
		{"movingMedian(a,3)", 660, []float64{9, 10, 11, 12, 13}},
		// nested: the inner window is widened again by the outer's.
		{"movingSum(movingMax(a,1),'2min')", 660, []float64{17, 19, 21, 23, 25}},
	} {
		s := evalOne(t, f, c.target, 600, 900)
		if s.Start != c.start || !sameValues(s.Values, c.want) {
			t.Errorf("%s: start %d %v, want start %d %v", c.target, s.Start, s.Values, c.start, c.want)
		}
	}
	// xFilesFactor: with every third point null a 3-point window has 2/3
	// of its points, under 0.9.
	fn := rampFetcher{step: 60, null: func(t int64) bool { return (t/60)%3 == 0 }}
	s := evalOne(t, fn, "movingAverage(a,'3min',0.5)", 600, 900)
	// widened fetch 480..900: values 8..15 with 9, 12 and 15 null.
	want := []float64{9, 10.5, 10.5, 12, 13.5}
	if s.Start != 660 || !sameValues(s.Values, want) {
		t.Errorf("movingAverage xff 0.5: start %d %v, want 660 %v", s.Start, s.Values, want)
	}
	s = evalOne(t, fn, "movingAverage(a,'3min',0.9)", 600, 900)
	if s.Start != 660 || len(s.Values) != 5 || !math.IsNaN(s.Values[0]) {
		t.Errorf("movingAverage xff 0.9: start %d %v, want 660 and 5 nulls", s.Start, s.Values)
	}
}

// A derived or renamed series keeps its tags, name included, as
// graphite-web's TimeSeries.copy and "series.name = ...".
func TestDerivedSeriesKeepTheNameTag(t *testing.T) {
	f := rampFetcher{step: 60}
	for _, c := range []struct{ target, name, tag string }{
		{"movingAverage(a.b,2)", "movingAverage(a.b,2)", "a.b"},
		{"alias(scale(a.b,2),'x')", "x", "a.b"},
		{"consolidateBy(a.b,'max')", `consolidateBy(a.b,"max")`, "a.b"},
		{"sumSeries(a.b)", "sumSeries(a.b)", "a.b"},
	} {
		s := evalOne(t, f, c.target, 600, 900)
		if s.Name != c.name || s.Tags["name"] != c.tag {
			t.Errorf("%s: name %q, name tag %q; want %q, %q", c.target, s.Name, s.Tags["name"], c.name, c.tag)
		}
	}
}

// timeShift keeps the point at an aligned until: graphite-web gives every
// shifted series the unshifted first series' start and end.
func TestTimeShiftKeepsThePointAtUntil(t *testing.T) {
	f := rampFetcher{step: 60}
	s := evalOne(t, f, "timeShift(a,'1h')", 7200, 7500)
	want := []float64{61, 62, 63, 64, 65}
	if s.Start != 7260 || !sameValues(s.Values, want) || s.Name != `timeShift(a, "-1h")` || s.Tags["timeShift"] != "-1h" {
		t.Errorf("timeShift(a,'1h'): %s start %d %v tags %v, want start 7260 %v", s.Name, s.Start, s.Values, s.Tags, want)
	}
}

// An aggregate over a moving window or summarize is named after it, as
// graphite-web names it (those functions make new series, whose path
// expression is their name).
func TestAggregateNamedFromTheRightLayer(t *testing.T) {
	f := rampFetcher{step: 60}
	for _, c := range []struct{ target, name string }{
		{"sumSeries(movingAverage(a.b,2))", "sumSeries(movingAverage(a.b,2))"},
		{"minSeries(summarize(a.b,'10min','sum'))", `minSeries(summarize(a.b, "10min", "sum"))`},
		// Read from graphite-web 1.1.8: series.copy makes these anew, so
		// they are their own path expressions.
		{"sumSeries(exponentialMovingAverage(a.b,7))", "sumSeries(exponentialMovingAverage(a.b,7))"},
		{"sumSeries(nPercentile(a.b,7))", "sumSeries(nPercentile(a.b, 7))"},
		{"stddevSeries(nonNegativeDerivative(timeShift(a.b,'30min')))", `stddevSeries(nonNegativeDerivative(timeShift(a.b, "-30min")))`},
		{"percentileOfSeries(exponentialMovingAverage(a.b,7),50)", "percentileOfSeries(exponentialMovingAverage(a.b,7),50)"},
		{"sumSeries(integralByInterval(a.b,'1h'))", "sumSeries(integralByInterval(a.b,'1h'))"},
		{"sumSeries(scaleToSeconds(a.b,1))", "sumSeries(scaleToSeconds(a.b,1))"},
		{"sumSeries(minMax(a.b))", "sumSeries(minMax(a.b))"},
		// ...and these rename in place: the fetched path stays.
		{"sumSeries(timeShift(a.b,'1h'))", "sumSeries(a.b)"},
		{"sumSeries(timeSlice(a.b,'-1h'))", "sumSeries(a.b)"},
		{"sumSeries(alias(a.b,'x'))", "sumSeries(a.b)"},
	} {
		if s := evalOne(t, f, c.target, 600, 900); s.Name != c.name {
			t.Errorf("%s: named %q, want %q", c.target, s.Name, c.name)
		}
	}
}

// A series without values has a null average: graphite-web's <= and <
// (and !=) let it pass, > and = do not.
func TestFilterKeepsEmptySeriesBelow(t *testing.T) {
	f := rampFetcher{step: 60, null: func(int64) bool { return true }}
	for target, want := range map[string]int{
		"averageBelow(a,10)": 1, "currentBelow(a,10)": 1, "maximumBelow(a,10)": 1, "filterSeries(a,'sum','!=',3)": 1, "filterSeries(a,'sum','<',3)": 1,
		"averageAbove(a,10)": 0, "minimumAbove(a,10)": 0, "filterSeries(a,'sum','=',3)": 0, "filterSeries(a,'sum','>=',3)": 0,
	} {
		got, err := EvalTarget(context.Background(), Request{From: 600, Until: 900, Fetch: f}, target)
		if err != nil || len(got) != want {
			t.Errorf("%s: %d series (%v), graphite-web 1.1.8 %d", target, len(got), err, want)
		}
	}
}

// limit(x, -1) is Python's seriesList[:-1]: all but the last.
func TestLimitNegative(t *testing.T) {
	got, err := EvalTarget(context.Background(), Request{From: 600, Until: 900, Fetch: rampFetcher{step: 60}}, "limit(group(a,b,c),-1)")
	if err != nil || len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" {
		t.Errorf("limit(group(a,b,c),-1): %v %v, want a and b", got, err)
	}
}

// aliasSub's replacement is Python's re.sub template, taken as written
// (graphite-web does not unescape quoted arguments). Grafana 12 wraps
// every target in aliasSub(T, "(^.*$)", "\1 A") with one backslash (its
// source's template literal "\\1" is \1 at run time): group 1, so the
// series is named "<name> A". Two backslashes are a backslash and a 1
// (\1 A). Names read from graphite-web 1.1.8 for constantLine(100).
func TestAliasSubReplacementLikePython(t *testing.T) {
	for _, c := range []struct{ target, want string }{
		{`aliasSub(constantLine(100),"(^.*$)","\1 A")`, `100.0 A`},
		{`aliasSub(constantLine(100),"(^.*$)","\\1 A")`, `\1 A`},
		{`aliasSub(constantLine(100),"(^.*$)","\\\\1 A")`, `\\1 A`},
		{`aliasSub(constantLine(100),"(^.*)(0)$","[\2\t\g<1>$]")`, "[0\t100.$]"},
	} {
		if s := evalOne(t, nil, c.target, oracleBase, oracleBase+600); s.Name != c.want {
			t.Errorf("%s named %q, graphite-web %q", c.target, s.Name, c.want)
		}
	}
}
