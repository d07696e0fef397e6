package render

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

type tinyFetcher struct{}

func (tinyFetcher) Fetch(_ context.Context, path string, from, until int64) ([]*Series, error) {
	return []*Series{NewSeries(path+".a", 0, 10, []float64{1, nan, 3, -4, 0, 6}), NewSeries(path+".b", 0, 20, []float64{2, 2, nan})}, nil
}

func (f tinyFetcher) FetchTagged(ctx context.Context, exprs []string, from, until int64) ([]*Series, error) {
	return f.Fetch(ctx, "tagged", from, until)
}

// FuzzTarget parses and evaluates arbitrary targets: errors are fine,
// panics are not, and parse errors carry a position inside the target.
func FuzzTarget(f *testing.F) {
	for _, s := range []string{
		"sumSeries(a.*)", `aliasSub(a.b, "(^.*$)", "\1 A")`, "summarize(a, '1min', 'max', true)",
		"groupByNode(a.b.c, 1, 'sumSeries')", "movingAverage(a, '1min')", "asPercent(a, b, 0)",
		"seriesByTag('name=x', 'dc=~e.*')", "a.b | scale(2) | alias('x')", "holtWintersForecast(a,'1d','2d')",
		"hitcount(a, '1min', true)", "timeShift(a, '1h')", "constantLine(100)", "sortByName(a, natural=true)",
		"delay(a, -99999999999)", "round(a, -400)", "substr(a, -99, 99)", "{a,b}.[c-", "f(((((",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		e, err := Parse(target)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Pos < 0 || pe.Pos > len(target) {
				t.Fatalf("%q: error %v has no position inside the target", target, err)
			}
			return
		}
		ctx := context.Background()
		_, _ = evalNoRecover(ctx, Request{From: 0, Until: 60, Fetch: tinyFetcher{}, Limits: Limits{MaxSeries: 100, MaxPoints: 10000}}, e)
	})
}

// evalNoRecover is Eval without its panic guard, so fuzzing finds panics.
func evalNoRecover(ctx context.Context, req Request, e *Expr) ([]*Series, error) {
	ev := &evaluator{ctx: ctx, req: req}
	return ev.eval(e, req.From, req.Until)
}

// FuzzTime parses from/until values as Grafana and users send them: errors
// are fine, panics are not; an accepted interval stays within its bound and
// keeps its sign, and "now" plus an accepted offset is that many seconds
// from now (no overflow turns it around).
func FuzzTime(f *testing.F) {
	for _, s := range []string{"-6h", "now-30min", "1w2d", "+1y", "noon+yesterday", "16:00_20261125", "11/25/26", "jan1", "1764000000", "-99999999999999y", "teatime tomorrow", "midnight-1mon"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := ParseInterval(s); err == nil {
			if d > maxInterval || d < -maxInterval {
				t.Fatalf("ParseInterval(%q) = %d, beyond the bound", s, d)
			}
			if trimmed := strings.TrimSpace(s); strings.HasPrefix(trimmed, "-") && d > 0 || strings.HasPrefix(trimmed, "+") && d < 0 {
				t.Fatalf("ParseInterval(%q) = %d: the sign turned", s, d)
			}
			if at, err := ParseTime("now"+strings.TrimSpace(s), now, time.UTC); err == nil && (strings.HasPrefix(strings.TrimSpace(s), "-") || strings.HasPrefix(strings.TrimSpace(s), "+")) {
				if got := at.Unix() - now.Unix(); got != d {
					t.Fatalf("now%s = now%+ds, want %+ds", s, got, d)
				}
			}
		}
		_, _ = ParseTime(s, now, time.UTC)
	})
}
