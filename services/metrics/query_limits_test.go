package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/store/storetest"
	"github.com/shiploop/shiploop/services/metrics/carbon"
)

// queryService is a metrics service over SQLite with a.b.c.d, a.x.y.z and
// a.q.r.s holding a point every 10 s for the last hour, served over HTTP.
func queryService(t *testing.T, cfg Config) (*Service, string) {
	t.Helper()
	cfg.DB = storetest.OpenSQLite(t, "metrics")
	svc, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	var pts []carbon.Point
	for _, n := range []string{"a.b.c.d", "a.x.y.z", "a.q.r.s"} {
		for ts := now - 3600; ts <= now; ts += 10 {
			pts = append(pts, carbon.Point{Name: n, Value: float64(ts % 97), Timestamp: ts})
		}
	}
	if err := svc.Storage().Add(context.Background(), pts); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return svc, srv.URL
}

func getRender(t *testing.T, base, query string) (int, string, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := http.Get(base + "/graphite/render?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(start)
}

func nested(fn string, depth int, inner, arg string) string {
	return strings.Repeat(fn+"(", depth) + inner + strings.Repeat(","+arg+")", depth)
}

// The reviewer's hostile queries are refused with 400 and a reason that
// names what is too big and the limit, before they read anything; a
// legitimate query next to them still answers.
func TestHostileQueriesRefusedByCost(t *testing.T) {
	_, base := queryService(t, Config{})
	for _, c := range []struct {
		name, query string
		want        []string
	}{
		{"absolute huge until", "target=a.b.c.d&from=0&until=9999999999999",
			[]string{"query too expensive", "a.b.c.d over about 317", "at 3600s steps", "(limit 20000000)"}},
		{"moving window of 1e8 points", "target=" + url.QueryEscape("movingAverage(a.*.*.*,100000000)"),
			[]string{"query too expensive", "movingAverage window of 100000000 points", "for 3 series", "(limit 20000000)"}},
		{"hitcount 1s over 20y", "target=" + url.QueryEscape(`hitcount(a.*.*.*,"1s")`) + "&from=-20y",
			[]string{"query too expensive", `hitcount bucket "1s" over 20y gives 1892160006 buckets for 3 series (limit 10000000)`}},
		{"summarize 1s over 100y", "target=" + url.QueryEscape(`summarize(a.*.*.*,"1s","sum")`) + "&from=-100y&maxDataPoints=1e9",
			[]string{"query too expensive", `summarize bucket "1s" over 100y gives 9460800006 buckets for 3 series (limit 10000000)`}},
		{"60 deep", "target=" + url.QueryEscape(nested("movingAverage", 60, "a.b.c.d", "2")) + "&from=-1y",
			[]string{"query too expensive", "nests function calls 60 deep (limit 32)"}},
		{"20 deep doubles", "target=" + url.QueryEscape(nested("movingAverage", 20, "a.b.c.d", "2")) + "&from=-1h",
			[]string{"query too expensive", "more than 10000 functions and paths (limit 10000)"}},
		{"timeFunction every second for 100y", "target=" + url.QueryEscape(`timeFunction("t",1)`) + "&from=-100y",
			[]string{"query too expensive", "timeFunction with step 1 over 100y", "(limit 10000000)"}},
	} {
		code, body, took := getRender(t, base, c.query)
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", c.name, code, body)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: %q does not say %q", c.name, body, w)
			}
		}
		t.Logf("%s: %d in %s: %s", c.name, code, took.Round(time.Millisecond), strings.TrimSpace(body))
	}
	// Legitimate neighbours of the same shapes answer.
	for _, q := range []string{
		"target=a.b.c.d&from=-1h&until=now",
		"target=" + url.QueryEscape("movingAverage(a.*.*.*,10)") + "&from=-1h",
		"target=" + url.QueryEscape(`movingAverage(a.*.*.*,"7d")`) + "&from=-1d",
		"target=" + url.QueryEscape(`hitcount(a.*.*.*,"1min")`) + "&from=-1d",
		"target=" + url.QueryEscape(`summarize(a.*.*.*,"1h","sum")`) + "&from=-1y&maxDataPoints=1e9",
		"target=" + url.QueryEscape(nested("movingAverage", 8, "a.b.c.d", "2")) + "&from=-1d",
		"target=" + url.QueryEscape(nested("scale", 32, "a.b.c.d", "2")) + "&from=-1d",
	} {
		code, body, took := getRender(t, base, q)
		if code != 200 || !strings.Contains(body, `"datapoints"`) {
			t.Errorf("%s: %d %.300s, want 200 with series", q, code, body)
		}
		t.Logf("%s: %d in %s", q, code, took.Round(time.Millisecond))
	}
}

// A query over the limits is refused the same way over gRPC's path
// (Service.Query), and the series and points limits are configurable.
func TestQueryCostLimitsConfigurable(t *testing.T) {
	svc, _ := queryService(t, Config{MaxPoints: 2000, MaxSeries: 2, MaxBuckets: 100})
	now := time.Now().Unix()
	for _, c := range []struct {
		target string
		span   int64
		want   string
	}{
		{"a.b.c.d", 2 * 86400, "query too expensive: a.b.c.d over 2d at 60s steps: the query reads 2880 points (limit 2000)"},
		{"timeShift(a.b.c.d, '1d')", 2 * 86400, "query too expensive: a.b.c.d over 2d at 60s steps: the query reads 2880 points (limit 2000)"},
		{"a.*.*.*", 3600, "the query matches more than 2 series (limit 2)"},
		{`summarize(a.b.c.d, "10s", "sum")`, 3 * 3600, `query too expensive: summarize bucket "10s" over 3h gives 1082 buckets for 1 series (limit 100)`},
	} {
		_, err := svc.Query(context.Background(), []string{c.target}, now-c.span, now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.target, err, c.want)
		}
	}
	if _, err := svc.Query(context.Background(), []string{`summarize(a.b.c.d, "10min", "sum")`}, now-3600, now); err != nil {
		t.Errorf("a small query: %v", err)
	}
}

// A query that costs little to read but much to compute (a median over a
// window of a day of 1-second points) is stopped by its deadline: the
// window loop looks at the context, and the answer is 503 with the reason.
func TestQueryDeadlineStopsEvaluation(t *testing.T) {
	ret, err := ParseRetentions("1s:30d")
	if err != nil {
		t.Fatal(err)
	}
	svc, base := queryService(t, Config{QueryTimeout: 300 * time.Millisecond,
		Schemas: []Schema{{Name: "fine", Pattern: regexp.MustCompile(`.*`), Archives: ret, Aggregation: "average"}}})
	q := "target=" + url.QueryEscape(`movingMedian(a.b.c.d,"1d")`) + "&from=-2d"
	code, body, took := getRender(t, base, q)
	t.Logf("%d in %s: %s", code, took.Round(time.Millisecond), strings.TrimSpace(body))
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "query timed out after 300ms") {
		t.Errorf("got %d %s, want 503 query timed out after 300ms", code, body)
	}
	if took > 3*time.Second {
		t.Errorf("took %s: the evaluation did not stop at its deadline", took)
	}
	// The same over Service.Query (the gRPC path) ends with the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	now := time.Now().Unix()
	start := time.Now()
	_, err = svc.Query(ctx, []string{`movingMedian(a.b.c.d,"1d")`}, now-2*86400, now)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") || time.Since(start) > 3*time.Second {
		t.Errorf("Query: %v after %s, want deadline exceeded soon after 200ms", err, time.Since(start))
	}
}

// PlanRead, which the cost check adds up, reads what ReadAt reads.
func TestPlanReadMatchesRead(t *testing.T) {
	svc, _ := queryService(t, Config{})
	st := svc.Storage()
	now := time.Now().Unix()
	for _, r := range [][2]int64{{now - 3600, now}, {now - 86400, now}, {now - 86401, now - 7}, {now - 40*86400, now + 3600}, {now - 6*365*86400, now}, {now + 5, now + 100}} {
		s, err := st.ReadAt(context.Background(), "a.b.c.d", r[0], r[1], now)
		if err != nil {
			t.Fatal(err)
		}
		pts, step := st.PlanRead("a.b.c.d", r[0], r[1], now)
		if int64(len(s.Values)) != pts || s.Step != step {
			t.Errorf("%s: ReadAt read %d points at %ds, PlanRead said %d at %ds", fmt.Sprint(r[0]-now, r[1]-now), len(s.Values), s.Step, pts, step)
		}
	}
}
