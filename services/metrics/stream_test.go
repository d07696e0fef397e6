package metrics

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	"github.com/shiploop/shiploop/services/metrics/carbon"
	"github.com/shiploop/shiploop/services/metrics/render"
)

// listFetcher hides the fetcher's FetchEach: the engine then reads every
// series before aggregating, as it did before streaming.
type listFetcher struct{ render.Fetcher }

// countingFetcher counts the streams the engine asks for.
type countingFetcher struct {
	fetcher
	streams *int
}

func (f countingFetcher) FetchEach(ctx context.Context, path string, from, until int64, fn func(*render.Series) error) error {
	*f.streams++
	return f.fetcher.FetchEach(ctx, path, from, until, fn)
}

// TestStreamedAggregatesMatchMaterialised: sumSeries and its kin over a
// plain path, streamed a series at a time from Storage, answer the same
// /render JSON as the same targets evaluated over the whole fetched list:
// series with gaps, that begin and end at different times, negative and
// -0 values, empty ones, some points flushed to the database and some
// only in memory, duplicates in the glob, and a glob over two steps
// (which the stream must hand back to the usual path).
func TestStreamedAggregatesMatchMaterialised(t *testing.T) {
	storetest.Engines(t, "metrics", nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, Migrations()...); err != nil {
			t.Fatal(err)
		}
		schemas, err := ParseStorageSchemas("test.conf", []byte("[slow]\npattern = ^mixed\\.slow\nretentions = 1m:1d\n\n[all]\npattern = .*\nretentions = 10s:1d,1m:30d\n"))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Unix(1_800_000_000, 0)
		st, err := NewStorage(ctx, StorageConfig{DB: db, Schemas: schemas, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		t0 := now.Unix() - 3600
		var early, late []carbon.Point
		for h := range 12 {
			for m := range 25 {
				name := fmt.Sprintf("app.h%02d.m%02d", h, m)
				if h == 3 && m == 7 {
					continue // app.h03.m07 only has points outside the window
				}
				// Each series begins and ends somewhere in the hour and
				// misses about a third of its slots.
				first, last := rng.IntN(200), 360-rng.IntN(200)
				for i := first; i < last; i++ {
					if rng.IntN(3) == 0 {
						continue
					}
					v := math.Round(rng.NormFloat64()*1e4) / 100
					switch rng.IntN(40) {
					case 0:
						v = math.Copysign(0, -1)
					case 1:
						v = 1e300
					}
					p := carbon.Point{Name: name, Value: v, Timestamp: t0 + int64(i)*10}
					if i < 180 {
						early = append(early, p)
					} else {
						late = append(late, p)
					}
				}
			}
		}
		early = append(early, carbon.Point{Name: "app.h03.m07", Value: 5, Timestamp: t0 - 7200})
		for i := range 360 {
			ts := t0 + int64(i)*10
			early = append(early, carbon.Point{Name: "mixed.fast", Value: float64(i), Timestamp: ts},
				carbon.Point{Name: "mixed.slow", Value: float64(i % 7), Timestamp: ts},
				carbon.Point{Name: "disk.used;host=a;dc=x", Value: float64(i) / 3, Timestamp: ts})
		}
		// The first half is flushed to the database, the second stays in
		// memory, and a few late points overwrite flushed slots.
		if err := st.Add(ctx, early); err != nil {
			t.Fatal(err)
		}
		if err := st.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			p := early[rng.IntN(len(early))]
			p.Value = float64(i)
			late = append(late, p)
		}
		if err := st.Add(ctx, late); err != nil {
			t.Fatal(err)
		}

		targets := []string{
			"sumSeries(app.*.*)", "averageSeries(app.*.*)", "minSeries(app.*.*)", "maxSeries(app.*.*)",
			"countSeries(app.*.*)", "sum(app.h0*.m1*)", "avg(app.h0*.m1*)", "sumSeries(app.h03.m0*)",
			"sumSeries(app.{h01,h02,h01}.m0*)", "averageSeries(app.h1?.*)",
			"aggregate(app.*.*, 'sum', 0.5)", "aggregate(app.*.*, 'average', 0.3)", "aggregate(app.*.*, 'avg', 0.6)",
			"aggregate(app.*.*, 'count')", "aggregate(app.*.*, 'maxSeries', 0.9)", "aggregate(app.*.*, 'min', 0.7)",
			"aggregate(app.*.*, 'total')", "aggregate(app.*.*, 'median', 0.5)", "sumSeries(app.h03.m07)",
			"sumSeries(nothing.*)", "countSeries(nothing.*)", "sumSeries(mixed.*)", "countSeries(mixed.*)",
			"aggregate(mixed.*, 'max', 0.5)", "sumSeries(disk.used;host=a;dc=x)",
			"averageSeries(app.h01.*, app.h02.*)", "sumSeries(scale(app.h01.*, 2))", "diffSeries(app.h01.*)",
		}
		ranges := [][2]int64{{t0, now.Unix()}, {t0 + 1234, now.Unix() - 777}, {now.Unix() - 2*86400, now.Unix()}}
		streamed := 0
		for _, r := range ranges {
			for _, target := range targets {
				f := fetcher{st: st, maxSeries: 1000, now: now.Unix()}
				want, wantErr := render.EvalTarget(ctx, render.Request{From: r[0], Until: r[1], Fetch: listFetcher{f}}, target)
				got, gotErr := render.EvalTarget(ctx, render.Request{From: r[0], Until: r[1], Fetch: countingFetcher{f, &streamed}}, target)
				if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
					t.Fatalf("%s over %v: error %v, want %v", target, r, gotErr, wantErr)
				}
				for _, mdp := range []int{0, 37} {
					for _, noNull := range []bool{false, true} {
						var gw, ww bytes.Buffer
						writeRenderJSON(&ww, copies(want), mdp, noNull)
						writeRenderJSON(&gw, copies(got), mdp, noNull)
						if gw.String() != ww.String() {
							t.Fatalf("%s over %v (maxDataPoints %d, noNullPoints %v):\nstreamed     %s\nmaterialised %s", target, r, mdp, noNull, gw.String(), ww.String())
						}
					}
				}
				var raw strings.Builder
				for _, s := range got {
					fmt.Fprintf(&raw, "%s %d %d %d %v %s %g|", s.Name, s.Start, s.Stop, s.Step, s.Values, s.ConsolidationFunc, s.XFilesFactor)
				}
				for _, s := range want {
					fmt.Fprintf(&raw, "%s %d %d %d %v %s %g|", s.Name, s.Start, s.Stop, s.Step, s.Values, s.ConsolidationFunc, s.XFilesFactor)
				}
				if h := raw.String(); h[:len(h)/2] != h[len(h)/2:] {
					t.Fatalf("%s over %v: the series differ beyond the JSON: %s", target, r, h)
				}
				// The comparison must be over something: values and nulls.
				if target == "aggregate(app.*.*, 'sum', 0.5)" && (len(got) != 1 || !hasNull(got[0].Values) || hasOnlyNull(got[0].Values)) {
					t.Fatalf("%s over %v: %d series; want one with values and nulls", target, r, len(got))
				}
			}
		}
		// Every plain-path sum, average, min, max and count above streamed;
		// the nested and two-list ones did not.
		if want := 3 * 24; streamed != want {
			t.Errorf("FetchEach was called %d times, want %d", streamed, want)
		}

		// Limits refuse a streamed query with the same message.
		f := fetcher{st: st, maxSeries: 1000, now: now.Unix()}
		for _, lim := range []render.Limits{{MaxPoints: 5000}, {MaxSeries: 100}} {
			_, wantErr := render.EvalTarget(ctx, render.Request{From: t0, Until: now.Unix(), Fetch: listFetcher{f}, Limits: lim}, "sumSeries(app.*.*)")
			_, gotErr := render.EvalTarget(ctx, render.Request{From: t0, Until: now.Unix(), Fetch: f, Limits: lim}, "sumSeries(app.*.*)")
			if wantErr == nil || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Errorf("limits %+v: streamed error %v, want %v", lim, gotErr, wantErr)
			}
		}
		f.maxSeries = 10
		if _, err := render.EvalTarget(ctx, render.Request{From: t0, Until: now.Unix(), Fetch: f}, "sumSeries(app.*.*)"); !render.IsBadRequest(err) {
			t.Errorf("sumSeries over 299 series with the fetcher's limit at 10: %v, want a limit error", err)
		}
	})
}

// copies lets each JSON writing consolidate its own series.
func copies(list []*render.Series) []*render.Series {
	out := make([]*render.Series, len(list))
	for i, s := range list {
		out[i] = s.Copy()
	}
	return out
}

func hasNull(v []float64) bool {
	for _, x := range v {
		if math.IsNaN(x) {
			return true
		}
	}
	return false
}

func hasOnlyNull(v []float64) bool {
	for _, x := range v {
		if !math.IsNaN(x) {
			return false
		}
	}
	return true
}
