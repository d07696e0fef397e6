package metrics

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// graphiteWeb118Functions are the names graphite-web 1.1.8's /functions
// lists (151).
var graphiteWeb118Functions = []string{
	"absolute", "add", "aggregate", "aggregateLine", "aggregateSeriesLists",
	"aggregateWithWildcards", "alias", "aliasByMetric", "aliasByNode", "aliasByTags",
	"aliasQuery", "aliasSub", "alpha", "applyByNode", "areaBetween", "asPercent",
	"averageAbove", "averageBelow", "averageOutsidePercentile", "averageSeries",
	"averageSeriesWithWildcards", "avg", "cactiStyle", "changed", "color", "consolidateBy",
	"constantLine", "countSeries", "cumulative", "currentAbove", "currentBelow", "dashed",
	"delay", "derivative", "diffSeries", "diffSeriesLists", "divideSeries",
	"divideSeriesLists", "drawAsInfinite", "events", "exclude", "exp",
	"exponentialMovingAverage", "fallbackSeries", "filterSeries", "grep", "group",
	"groupByNode", "groupByNodes", "groupByTags", "highest", "highestAverage",
	"highestCurrent", "highestMax", "hitcount", "holtWintersAberration",
	"holtWintersConfidenceArea", "holtWintersConfidenceBands", "holtWintersForecast",
	"identity", "integral", "integralByInterval", "interpolate", "invert", "isNonNull",
	"keepLastValue", "legendValue", "limit", "lineWidth", "linearRegression", "log",
	"logit", "lowest", "lowestAverage", "lowestCurrent", "map", "mapSeries", "maxSeries",
	"maximumAbove", "maximumBelow", "minMax", "minSeries", "minimumAbove", "minimumBelow",
	"mostDeviant", "movingAverage", "movingMax", "movingMedian", "movingMin", "movingSum",
	"movingWindow", "multiplySeries", "multiplySeriesLists", "multiplySeriesWithWildcards",
	"nPercentile", "nonNegativeDerivative", "offset", "offsetToZero", "pct", "perSecond",
	"percentileOfSeries", "pow", "powSeries", "randomWalk", "randomWalkFunction",
	"rangeOfSeries", "reduce", "reduceSeries", "removeAbovePercentile", "removeAboveValue",
	"removeBelowPercentile", "removeBelowValue", "removeBetweenPercentile",
	"removeEmptySeries", "round", "scale", "scaleToSeconds", "secondYAxis", "seriesByTag",
	"setXFilesFactor", "sigmoid", "sin", "sinFunction", "smartSummarize", "sortBy",
	"sortByMaxima", "sortByMinima", "sortByName", "sortByTotal", "squareRoot", "stacked",
	"stddevSeries", "stdev", "substr", "sum", "sumSeries", "sumSeriesLists",
	"sumSeriesWithWildcards", "summarize", "threshold", "time", "timeFunction", "timeShift",
	"timeSlice", "timeStack", "transformNull", "unique", "useSeriesAbove", "verticalLine",
	"weightedAverage", "xFilesFactor",
}

// /functions is generated from the render engine's table and answers as
// graphite-web 1.1.8's does: every function it lists, its group, and its
// parameters' names, types, required flags, defaults and options.
func TestFunctionsLikeGraphiteWeb(t *testing.T) {
	_, srv := compatServer(t, nil)
	resp, err := http.Get(srv.URL + "/graphite/functions")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/functions: %d %s", resp.StatusCode, body)
	}
	type paramJSON struct {
		Name, Type         string
		Required, Multiple bool
		Default            string // as written in the JSON
		Options            []string
	}
	var loose map[string]struct {
		Name     string                       `json:"name"`
		Function string                       `json:"function"`
		Group    string                       `json:"group"`
		Params   []map[string]json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(body, &loose); err != nil {
		t.Fatalf("/functions is not JSON: %v", err)
	}
	type funcJSON struct {
		Function, Group string
		Params          []paramJSON
	}
	funcs := map[string]funcJSON{}
	for n, f := range loose {
		var ps []paramJSON
		for _, p := range f.Params {
			var q paramJSON
			_ = json.Unmarshal(p["name"], &q.Name)
			_ = json.Unmarshal(p["type"], &q.Type)
			_ = json.Unmarshal(p["required"], &q.Required)
			_ = json.Unmarshal(p["multiple"], &q.Multiple)
			_ = json.Unmarshal(p["options"], &q.Options)
			q.Default = string(p["default"])
			ps = append(ps, q)
		}
		funcs[n] = funcJSON{f.Function, f.Group, ps}
	}
	var missing []string
	for _, n := range graphiteWeb118Functions {
		if _, ok := funcs[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of graphite-web's %d functions are missing: %v", len(missing), len(graphiteWeb118Functions), missing)
	}
	if !strings.Contains(string(body), "1e9999") {
		t.Errorf("keepLastValue's infinite default is not written 1e9999")
	}
	check := func(fn string, i int, want paramJSON) {
		t.Helper()
		f, ok := funcs[fn]
		if !ok || i >= len(f.Params) {
			t.Errorf("%s: no parameter %d", fn, i)
			return
		}
		got := f.Params[i]
		if got.Name != want.Name || got.Type != want.Type || got.Required != want.Required || got.Multiple != want.Multiple ||
			(want.Default != "" && got.Default != want.Default) || (want.Options != nil && strings.Join(got.Options, ",") != strings.Join(want.Options, ",")) {
			t.Errorf("%s param %d = %+v, want %+v", fn, i, got, want)
		}
	}
	check("timeShift", 3, paramJSON{Name: "alignDst", Type: "boolean"})
	check("keepLastValue", 1, paramJSON{Name: "limit", Type: "intOrInf", Default: "1e9999"})
	check("interpolate", 1, paramJSON{Name: "limit", Type: "intOrInf", Default: "1e9999"})
	check("highest", 1, paramJSON{Name: "n", Type: "integer", Required: true})
	check("aggregateWithWildcards", 2, paramJSON{Name: "position", Type: "node", Multiple: true})
	check("countSeries", 0, paramJSON{Name: "seriesLists", Type: "seriesList", Multiple: true})
	check("filterSeries", 2, paramJSON{Name: "operator", Type: "string", Required: true, Options: []string{"!=", "<", "<=", "=", ">", ">="}})
	check("round", 1, paramJSON{Name: "precision", Type: "integer", Default: "0"})
	for fn, group := range map[string]string{"changed": "Special", "substr": "Special", "unique": "Filter Series", "nPercentile": "Calculate", "movingAverage": "Calculate", "color": "Graph", "mostDeviant": "Filter Series"} {
		if got := funcs[fn].Group; got != group {
			t.Errorf("%s is in group %q, want %q", fn, got, group)
		}
	}
	for fn, sig := range map[string]string{
		"movingAverage": "movingAverage(seriesList, windowSize, xFilesFactor=None)",
		"groupByNode":   "groupByNode(seriesList, nodeNum, callback='average')",
		"sortByName":    "sortByName(seriesList, natural=False, reverse=False)",
	} {
		if got := funcs[fn].Function; got != sig {
			t.Errorf("%s function = %q, want %q", fn, got, sig)
		}
	}
}
