package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/store/storetest"
	"github.com/shiploop/shiploop/services/metrics/carbon"
)

// compatServer is a metrics service on SQLite with the given schemas
// (DefaultSchemas when nil), serving the Graphite API.
func compatServer(t *testing.T, schemas []Schema) (*Service, *httptest.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db := storetest.OpenSQLite(t, "metrics")
	svc, err := New(ctx, Config{DB: db, Schemas: schemas, FlushInterval: time.Hour, MaxSeries: 10000})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); cancel() })
	return svc, srv
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v in %s", u, err, b)
	}
}

// maxDataPoints consolidates as graphite-web's TimeSeries does: by
// average with xFilesFactor 0 unless consolidateBy says otherwise, whatever
// storage-aggregation.conf says of rollups (here: *.count by sum, xff 0.5).
func TestMaxDataPointsConsolidatesLikeGraphiteWeb(t *testing.T) {
	ret, _ := ParseRetentions("10s:1d")
	svc, srv := compatServer(t, []Schema{{Name: "count", Pattern: regexp.MustCompile(`\.count$`), Archives: ret, Aggregation: "sum", XFilesFactor: 0.5}})
	now := time.Now().Unix()
	base := now - now%60 - 1200
	var pts []carbon.Point
	raw := map[int64]float64{}
	for i := int64(1); i <= 60; i++ {
		if i%6 < 4 { // 4 of every 6 slots are null
			continue
		}
		ts := base + 10*i
		pts = append(pts, carbon.Point{Name: "app.req.count", Value: float64(i), Timestamp: ts})
		raw[ts] = float64(i)
	}
	if err := svc.st.Add(context.Background(), pts); err != nil {
		t.Fatal(err)
	}
	// 60 points (base+10 .. base+600), maxDataPoints 10: 6 values per
	// point; the nudge moves start to base+60 and drops 4 values.
	for _, c := range []struct {
		target string
		agg    func([]float64) float64
	}{
		{"app.req.count", func(v []float64) float64 {
			s := 0.0
			for _, x := range v {
				s += x
			}
			return s / float64(len(v))
		}},
		{"consolidateBy(app.req.count,'sum')", func(v []float64) float64 {
			s := 0.0
			for _, x := range v {
				s += x
			}
			return s
		}},
	} {
		var got []renderSeries
		getJSON(t, srv.URL+"/graphite/render?"+url.Values{"target": {c.target}, "from": {fmt.Sprint(base)}, "until": {fmt.Sprint(base + 600)}, "maxDataPoints": {"10"}}.Encode(), &got)
		if len(got) != 1 {
			t.Fatalf("%s: %d series", c.target, len(got))
		}
		var want [][2]float64
		vals := []float64{}
		for ts := base + 50; ts <= base+600; ts += 10 {
			if v, ok := raw[ts]; ok {
				vals = append(vals, v)
			}
			if (ts-base-50)%60 == 50 || ts == base+600 {
				w := math.NaN()
				if len(vals) > 0 {
					w = c.agg(vals)
				}
				want = append(want, [2]float64{w, float64(base + 60 + int64(len(want))*60)})
				vals = vals[:0]
			}
		}
		dp := got[0].Datapoints
		if len(dp) != len(want) {
			t.Fatalf("%s: %d points %v, want %d %v", c.target, len(dp), fmtDP(dp), len(want), want)
		}
		for i := range want {
			okv := (dp[i][0] == nil && math.IsNaN(want[i][0])) || (dp[i][0] != nil && math.Abs(*dp[i][0]-want[i][0]) < 1e-9)
			if !okv || dp[i][1] == nil || *dp[i][1] != want[i][1] {
				t.Fatalf("%s: %v, want %v", c.target, fmtDP(dp), want)
			}
		}
	}
}

func fmtDP(dp [][2]*float64) string {
	s := "["
	for _, p := range dp {
		v := "null"
		if p[0] != nil {
			v = fmt.Sprint(*p[0])
		}
		s += fmt.Sprintf("[%s %v] ", v, *p[1])
	}
	return s + "]"
}

// /metrics/find names each matched name once, with an id built from the
// query (graphite-web's tree_json); leavesOnly, wildcards and expand's
// groupByExpr and leavesOnly act as graphite-web 1.1.8's.
func TestFindLikeGraphiteWeb(t *testing.T) {
	svc, srv := compatServer(t, nil)
	now := time.Now().Unix()
	var pts []carbon.Point
	for _, n := range []string{"app.db.a.cpu", "app.db.b.cpu", "app.db.a.mem", "app.db.c", "app.web1.x", "app.web2.x", "app.web3.y", "app.web4.z"} {
		pts = append(pts, carbon.Point{Name: n, Value: 1, Timestamp: now - 30})
	}
	if err := svc.st.Add(context.Background(), pts); err != nil {
		t.Fatal(err)
	}
	find := func(q string) string {
		t.Helper()
		resp, err := http.Get(srv.URL + "/graphite/metrics/find?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	leaf := func(text, id string) string {
		return fmt.Sprintf(`{"text":%q,"id":%q,"allowChildren":0,"expandable":0,"leaf":1}`, text, id)
	}
	branch := func(text, id string) string {
		return fmt.Sprintf(`{"text":%q,"id":%q,"allowChildren":1,"expandable":1,"leaf":0}`, text, id)
	}
	for _, c := range []struct{ q, want string }{
		{"query=app.db.*.*", "[" + leaf("cpu", "app.db.*.cpu") + "," + leaf("mem", "app.db.*.mem") + "]"},
		{"query=app.web[1-3].*", "[" + leaf("x", "app.web[1-3].x") + "," + leaf("y", "app.web[1-3].y") + "]"},
		{"query=app.db.{a,b}.cpu", "[" + leaf("cpu", "app.db.{a,b}.cpu") + "]"},
		{"query=app.db.*", "[" + branch("a", "app.db.a") + "," + branch("b", "app.db.b") + "," + leaf("c", "app.db.c") + "]"},
		{"query=app.db.*&leavesOnly=1", "[" + leaf("c", "app.db.c") + "]"},
		{"query=app.db.*&wildcards=1", "[" + branch("*", "app.db.*") + "," + branch("a", "app.db.a") + "," + branch("b", "app.db.b") + "," + leaf("c", "app.db.c") + "]"},
		{"query=app.web*.*&wildcards=1", "[" + leaf("*", "app.web*.*") + "," + leaf("x", "app.web*.x") + "," + leaf("y", "app.web*.y") + "," + leaf("z", "app.web*.z") + "]"},
		{"query=app.db.*.*&format=nodelist&position=2", `{"nodes":["a","b"]}`},
	} {
		if got := find(c.q); got != c.want+"\n" {
			t.Errorf("find %s:\n got %s\nwant %s", c.q, got, c.want)
		}
	}
	var grouped struct {
		Results map[string][]string `json:"results"`
	}
	getJSON(t, srv.URL+"/graphite/metrics/expand?query=app.db.*&query=app.web[12].x&groupByExpr=1&leavesOnly=1", &grouped)
	if fmt.Sprint(grouped.Results) != "map[app.db.*:[app.db.c] app.web[12].x:[app.web1.x app.web2.x]]" {
		t.Errorf("expand groupByExpr leavesOnly: %v", grouped.Results)
	}
}

// Reads end at now, as whisper's: timeShift(x,'+20min') over the last hour
// has 40 minutes of points, not an hour ending in 20 minutes of nulls.
func TestTimeShiftForwardStopsAtNow(t *testing.T) {
	svc, srv := compatServer(t, nil)
	now := time.Now().Unix()
	var pts []carbon.Point
	for ts := now - 7200; ts <= now; ts += 10 {
		pts = append(pts, carbon.Point{Name: "app.x", Value: 1, Timestamp: ts})
	}
	if err := svc.st.Add(context.Background(), pts); err != nil {
		t.Fatal(err)
	}
	var got []renderSeries
	getJSON(t, srv.URL+"/graphite/render?target="+url.QueryEscape("timeShift(app.x,'+20min')")+"&from=-1h", &got)
	if len(got) != 1 {
		t.Fatalf("%d series", len(got))
	}
	dp := got[0].Datapoints
	last := int64(*dp[len(dp)-1][1])
	if last > now-1200+10 || len(dp) < 230 || len(dp) > 242 {
		t.Errorf("timeShift +20min: %d points, last at now%+d s; want about 240 ending 20 min before now", len(dp), last-now)
	}
	// Shifted back an hour around it, the inner shift reads well before
	// now: the whole hour, as graphite-web 1.1.8 answers (its inner series
	// keeps its end though it has fewer values).
	getJSON(t, srv.URL+"/graphite/render?target="+url.QueryEscape("timeShift(timeShift(app.x,'+20min'),'-1h')")+"&from=-1h", &got)
	if len(got) != 1 || len(got[0].Datapoints) < 359 || len(got[0].Datapoints) > 361 {
		t.Errorf("timeShift(timeShift(+20min),-1h) over an hour: %d series, want one of 360 points", len(got))
		if len(got) == 1 {
			t.Errorf("%d points", len(got[0].Datapoints))
		}
	}
}

// A shifted series ends where the unshifted one does (graphite-web sets
// shiftedSeries.end = series.end): with maxDataPoints it has the unshifted
// series' timestamps. The case that differed is the oracle's
// (timeShift(exponentialMovingAverage(…,10),'1h'), maxDataPoints=100: 86
// points, graphite-web 85); this holds the property, and passed before the
// fix too.
func TestTimeShiftEndsWithTheUnshiftedSeries(t *testing.T) {
	ret, _ := ParseRetentions("60s:3d")
	svc, srv := compatServer(t, []Schema{{Name: "m", Pattern: regexp.MustCompile(`.*`), Archives: ret, Aggregation: "average"}})
	now := time.Now().Unix()
	var pts []carbon.Point
	for ts := now - now%60 - 6*3600; ts <= now; ts += 60 {
		pts = append(pts, carbon.Point{Name: "app.x", Value: float64(ts % 7), Timestamp: ts})
	}
	if err := svc.st.Add(context.Background(), pts); err != nil {
		t.Fatal(err)
	}
	for _, mdp := range []string{"", "100", "77"} {
		var orig, shifted []renderSeries
		q := fmt.Sprintf("&from=%d&until=%d&maxDataPoints=%s", now-4*3600-17, now-now%60, mdp)
		getJSON(t, srv.URL+"/graphite/render?target="+url.QueryEscape("exponentialMovingAverage(app.x,10)")+q, &orig)
		getJSON(t, srv.URL+"/graphite/render?target="+url.QueryEscape("timeShift(exponentialMovingAverage(app.x,10),'1h')")+q, &shifted)
		if len(orig) != 1 || len(shifted) != 1 {
			t.Fatalf("%d and %d series", len(orig), len(shifted))
		}
		o, s := orig[0].Datapoints, shifted[0].Datapoints
		if len(o) != len(s) || *o[0][1] != *s[0][1] || *o[len(o)-1][1] != *s[len(s)-1][1] {
			t.Errorf("maxDataPoints %q: shifted %d points from %v to %v, unshifted %d from %v to %v", mdp, len(s), *s[0][1], *s[len(s)-1][1], len(o), *o[0][1], *o[len(o)-1][1])
		}
	}
}
