package render

import (
	"context"
	"math"
	"testing"
)

// pyStr formats as Python's str(): these are what Python 3 prints.
func TestPyStr(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{2, "2"}, {int64(-3), "-3"}, {2.0, "2.0"}, {2.5, "2.5"}, {-2.0, "-2.0"},
		{0.1, "0.1"}, {1e-05, "1e-05"}, {0.0001, "0.0001"}, {1e16, "1e+16"},
		{1e15, "1000000000000000.0"}, {1234567.5, "1234567.5"}, {1.5e20, "1.5e+20"},
		{math.Inf(1), "inf"}, {true, "True"}, {false, "False"}, {nil, "None"}, {"5min", "5min"},
	}
	for _, c := range cases {
		if got := pyStr(c.v); got != c.want {
			t.Errorf("pyStr(%#v) = %q, want %q", c.v, got, c.want)
		}
	}
}

// The tag each function sets, as graphite-web 1.1.8 answers (read from its
// /render?format=json): float parameters are passed through float(), so
// scale(x,10) is tagged "10.0"; others as written (dashed(x,2.5) is "2.5");
// defaults as they are (log's 10, transformNull's 0).
func TestFunctionTagsLikeGraphiteWeb(t *testing.T) {
	cases := []struct{ target, tag, want string }{
		{"scale(t.a,10)", "scale", "10.0"},
		{"scale(t.a,2.5)", "scale", "2.5"},
		{"offset(t.a,-2)", "offset", "-2.0"},
		{"add(t.a,3)", "add", "3.0"},
		{"pow(t.a,2)", "pow", "2.0"},
		{"delay(t.a,2)", "delay", "2"},
		{"nPercentile(t.a,50)", "nPercentile", "50.0"},
		{"stdev(t.a,5)", "stdev", "5"},
		{"integralByInterval(t.a,'1h')", "integralByInterval", "1h"},
		{"exponentialMovingAverage(t.a,5)", "exponentialMovingAverage", "5"},
		{"exponentialMovingAverage(t.a,'5min')", "exponentialMovingAverage", "5min"},
		{"setXFilesFactor(t.a,0.5)", "xFilesFactor", "0.5"},
		{"setXFilesFactor(t.a,1)", "xFilesFactor", "1.0"},
		{"log(t.a)", "log", "10"},
		{"log(t.a,2)", "log", "2"},
		{"dashed(t.a)", "dashed", "5"},
		{"dashed(t.a,2.5)", "dashed", "2.5"},
		{"transformNull(t.a)", "transformNull", "0"},
		{"transformNull(t.a,-1,t.c)", "transformNull", "-1.0"},
		{"transformNull(t.a,-1,t.c)", "referenceSeries", "1"},
		{"exp(t.a)", "exp", "e"},
		{"sigmoid(t.a)", "sigmoid", "sigmoid"},
		{"logit(t.a)", "logit", "logit"},
		{"squareRoot(t.a)", "squareRoot", "1"},
		{"invert(t.a)", "invert", "1"},
		{"absolute(t.a)", "absolute", "1"},
		{"integral(t.a)", "integral", "1"},
		{"isNonNull(t.a)", "isNonNull", "1"},
		{"round(t.a)", "round", "0"},
		{"round(t.a,2)", "round", "2"},
		{"offsetToZero(t.a)", "offsetToZero", "2.0"}, // the first point read is t.a=2
		{"scaleToSeconds(t.a,1)", "scaleToSeconds", "1.0"},
		{"holtWintersForecast(t.a)", "holtWintersForecast", "1"},
		{"holtWintersAberration(t.a)", "holtWintersAberration", "1"},
		{"holtWintersConfidenceArea(t.a)", "holtWintersConfidenceArea", "1"},
		// Tags of the inputs an aggregate's series agree on are kept.
		{"sumSeries(scale(t.*,2))", "scale", "2.0"},
		{"averageSeries(t.a,t.c)", "aggregatedBy", "average"},
		{"aggregate(t.*,'avg')", "aggregatedBy", "avg"},
	}
	for _, tc := range cases {
		got, err := EvalTarget(context.Background(), Request{From: oracleBase, Until: oracleBase + 600, Now: oracleBase + 600, Fetch: oracleFetcher{}}, tc.target)
		if err != nil {
			t.Errorf("%s: %v", tc.target, err)
			continue
		}
		if len(got) == 0 {
			t.Errorf("%s: no series", tc.target)
			continue
		}
		for _, s := range got {
			if s.Tags[tc.tag] != tc.want {
				t.Errorf("%s: %s tag %s=%q, want %q (tags %v)", tc.target, s.Name, tc.tag, s.Tags[tc.tag], tc.want, s.Tags)
			}
		}
	}
	got, err := EvalTarget(context.Background(), Request{From: oracleBase, Until: oracleBase + 600, Now: oracleBase + 600, Fetch: oracleFetcher{}}, "holtWintersConfidenceArea(t.a)")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range got {
		if _, ok := s.Tags["areaBetween"]; ok {
			t.Errorf("holtWintersConfidenceArea keeps the areaBetween tag: %v", s.Tags)
		}
	}
}
