package render

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
)

// streamOf serves a Fetcher's lists a series at a time, in the order
// FetchEach promises (name order) unless unsorted is set.
type streamOf struct {
	Fetcher
	unsorted bool
	streams  *int
}

func (f streamOf) FetchEach(ctx context.Context, path string, from, until int64, fn func(*Series) error) error {
	*f.streams++
	list, err := f.Fetch(ctx, path, from, until)
	if err != nil {
		return err
	}
	if !f.unsorted {
		stableSort(list, func(a, b *Series) bool { return a.Name < b.Name })
	}
	for _, s := range list {
		if err := fn(s); err != nil {
			return err
		}
	}
	return nil
}

// listOf serves fixed series by path expression, fresh copies each time
// (evaluation marks the series it reads).
type listOf map[string][]*Series

func (l listOf) Fetch(_ context.Context, path string, _, _ int64) ([]*Series, error) {
	var out []*Series
	for _, s := range l[path] {
		out = append(out, s.Copy())
	}
	return out, nil
}

func (l listOf) FetchTagged(ctx context.Context, exprs []string, from, until int64) ([]*Series, error) {
	return l.Fetch(ctx, "seriesByTag("+strings.Join(exprs, ",")+")", from, until)
}

// dump shows everything of a result a user could see, nulls and -0 included.
func dump(list []*Series, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "err=%v\n", err)
	for _, s := range list {
		fmt.Fprintf(&b, "%q tags=%v pe=%q start=%d stop=%d step=%d cf=%s xff=%g vpp=%d\n", s.Name, s.Tags, s.PathExpression, s.Start, s.Stop, s.Step, s.ConsolidationFunc, s.XFilesFactor, s.ValuesPerPoint)
		for _, v := range s.Points() {
			fmt.Fprintf(&b, " %v", math.Float64bits(v))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func mk(name string, start, step int64, vals ...float64) *Series {
	return NewSeries(name, start, step, vals)
}

// TestStreamedAggregatesMatch: the streamed aggregates give what the same
// targets give over the whole fetched list, for the 222 agreed cases and
// for series that start and end apart, repeat a name, share some tags,
// carry other path expressions, or come unsorted or at several steps
// (which must fall back).
func TestStreamedAggregatesMatch(t *testing.T) {
	nz := math.Copysign(0, -1)
	pe := mk("g.6", 90, 10, 4, 4)
	pe.PathExpression = "other.*"
	tagged := func(s *Series) *Series { s.Tags["dc"] = "x"; return s }
	data := listOf{
		"g.*": {
			mk("g.3", 100, 10, 1, nan, 3, 4),
			tagged(mk("g.1;dc=x;env=p", 80, 10, nan, 2, nz, 5, 6, 7)),
			mk("g.3", 100, 10, 9, 9, 9, 9, 9, 9, 9), // a second g.3: the first is kept
			mk("g.2", 130, 10),
			tagged(mk("g.4;dc=x;env=q", 60, 10, -1, nan, nan, -8)),
			mk("g.5", 110, 10, nan, nan, nan),
			pe,
		},
		"t.*":     {tagged(mk("t.a;dc=x;env=p", 100, 10, 1, 2)), tagged(mk("t.b;dc=x;env=q", 100, 10, 3))},
		"m.*":     {mk("m.a", 100, 10, 1, 2, 3, 4), mk("m.b", 100, 20, 5, 6)},
		"z.*":     {mk("z.a", 100, 0, 1, 2)},
		"empty.*": nil,
	}
	var targets []string
	for _, g := range []string{"g.*", "t.*", "m.*", "z.*", "empty.*"} {
		for _, f := range []string{"sumSeries", "averageSeries", "minSeries", "maxSeries", "countSeries", "sum", "avg"} {
			targets = append(targets, f+"("+g+")")
		}
		for _, a := range []string{"'sum', 0.5", "'average'", "'count', 0.4", "'max', 1", "'minSeries', 0.3", "'last'", "'nope'"} {
			targets = append(targets, "aggregate("+g+", "+a+")")
		}
	}
	for _, unsorted := range []bool{false, true} {
		streams := 0
		for _, target := range targets {
			req := Request{From: 0, Until: 200, Fetch: data}
			want := dump(EvalTarget(context.Background(), req, target))
			req.Fetch = streamOf{data, unsorted, &streams}
			if got := dump(EvalTarget(context.Background(), req, target)); got != want {
				t.Errorf("%s (unsorted %v):\nstreamed\n%s\nmaterialised\n%s", target, unsorted, got, want)
			}
		}
		// Every target but aggregate's last and nope streams (or tries to).
		if want := 5 * 12; streams != want {
			t.Errorf("unsorted %v: FetchEach was called %d times, want %d", unsorted, streams, want)
		}
	}

	cases := loadCases(t, "cases.agreed_with_graphite_web.jsonl")
	streams := 0
	for _, c := range cases {
		req := Request{From: c.From, Until: c.Until, Fetch: caseFetcher{c.Inputs}}
		want := dump(EvalTarget(context.Background(), req, c.Target))
		req.Fetch = streamOf{caseFetcher{c.Inputs}, false, &streams}
		if got := dump(EvalTarget(context.Background(), req, c.Target)); got != want {
			t.Errorf("%s:\nstreamed\n%s\nmaterialised\n%s", c.Target, got, want)
		}
	}
	if streams == 0 {
		t.Error("no agreed case streamed")
	}
	t.Logf("%d of %d agreed cases streamed", streams, len(cases))
}
