package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkMetricsCarbon measures the metrics service of `shiploop up`:
// Carbon plaintext ingest over 4 TCP connections (2,500 series × 200 points
// each, the load go-carbon was measured with in the research), checked for
// zero drops by summing every series back; how long a new series takes to
// appear in /metrics/find; and sumSeries over the 10,000 series. Peers are
// run only when GO_CARBON_BIN / CARBONAPI_BIN are set; see docs/benchmarks.md.
func BenchmarkMetricsCarbon(b *testing.B) {
	const conns, perConn, points = 4, 2500, 200
	series := conns * perConn
	carbon := metricsFreeAddr(b)
	inst := startUp(b, "--carbon-listen", carbon, "--pickle-listen", "")
	now := time.Now().Unix()
	base := now - now%10 - points*10
	payloads := make([][]byte, conns)
	for c := range payloads {
		var sb strings.Builder
		for p := 0; p < points; p++ {
			for m := 0; m < perConn; m++ {
				fmt.Fprintf(&sb, "bench.c%d.m%d 1 %d\n", c, m, base+int64(p)*10)
			}
		}
		payloads[c] = []byte(sb.String())
	}
	total := series * points
	start := time.Now()
	var wg sync.WaitGroup
	for c := range payloads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", carbon)
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			w := bufio.NewWriterSize(conn, 1<<20)
			_, _ = w.Write(payloads[c])
			_ = w.Flush()
		}()
	}
	wg.Wait()
	sent := time.Since(start)
	// Visible: the sum over all series is `series` at every one of the points.
	q := url.Values{"target": {"sumSeries(bench.c*.m*)"}, "from": {fmt.Sprint(base - 1)}, "until": {fmt.Sprint(base + points*10 - 1)}}
	var missing int
	for {
		missing = -1
		var got []struct {
			Datapoints [][2]*float64 `json:"datapoints"`
		}
		if err := metricsGetJSON(inst.HTTPURL+"/graphite/render?"+q.Encode(), &got); err == nil && len(got) == 1 {
			missing = 0
			for _, p := range got[0].Datapoints {
				if p[0] == nil {
					missing += series
				} else {
					missing += series - int(*p[0])
				}
			}
		}
		if missing == 0 || time.Since(start) > 2*time.Minute {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	visible := time.Since(start)
	if missing != 0 {
		b.Fatalf("%d of %d points never became visible (dropped?)", missing, total)
	}

	// New-series visibility in /metrics/find.
	var finds []time.Duration
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("fresh.s%d.value", i)
		conn, err := net.Dial("tcp", carbon)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		fmt.Fprintf(conn, "%s 1 %d\n", name, time.Now().Unix())
		for {
			var nodes []map[string]any
			if err := metricsGetJSON(inst.HTTPURL+"/graphite/metrics/find?query="+url.QueryEscape(name), &nodes); err == nil && len(nodes) == 1 {
				break
			}
			if time.Since(t0) > time.Minute {
				b.Fatalf("%s not findable after a minute", name)
			}
		}
		finds = append(finds, time.Since(t0))
		conn.Close()
	}
	sort.Slice(finds, func(i, j int) bool { return finds[i] < finds[j] })

	// sumSeries over 10k series, sequential, warm.
	var lat []time.Duration
	for i := 0; i < 15; i++ {
		t0 := time.Now()
		var got []json.RawMessage
		if err := metricsGetJSON(inst.HTTPURL+"/graphite/render?"+q.Encode(), &got); err != nil || len(got) != 1 {
			b.Fatalf("sumSeries: %v", err)
		}
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	rss, _ := inst.status("VmHWM")

	peer := "GO_CARBON_BIN is unset: go-carbon was not run beside it in this run (see the notes above for how to)."
	if os.Getenv("GO_CARBON_BIN") != "" {
		peer = "GO_CARBON_BIN is set, but this benchmark does not drive go-carbon yet: see the notes above."
	}
	api := "CARBONAPI_BIN is unset: no carbonapi figure on the same data in this run."
	if os.Getenv("CARBONAPI_BIN") != "" {
		api = "CARBONAPI_BIN is set, but this benchmark does not drive carbonapi yet."
	}
	body := fmt.Sprintf(`%d plaintext points (%d series × %d points, values 1) over %d TCP connections from one client on loopback, `+"`shiploop up`"+` (SQLite, flush every 1 s).

| measure | result | goal | verdict |
|---|---|---|---|
| client finished sending | %s (%s points/s) | | |
| all points visible in /render (sum checked: 0 missing) | %s (%s points/s) | ≥ go-carbon, zero silent drops | %s |
| new series visible in /metrics/find, p50 / max of 20 | %s / %s | ≤ 1 s | %s |
| sumSeries over %d series × %d points, p50 / p95 (15 sequential, warm) | %s / %s | ≤ carbonapi p50 | absolute only |
| peak RSS of shiploop up | %.0f MiB | | |

%s %s
`, total, series, points, conns, sent.Round(time.Millisecond), metricsRate(total, sent), visible.Round(time.Millisecond), metricsRate(total, visible), "no peer figure",
		finds[len(finds)/2].Round(time.Microsecond), finds[len(finds)-1].Round(time.Microsecond), verdict(finds[len(finds)-1] <= time.Second),
		series, points, lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*95/100].Round(time.Millisecond), float64(rss)/1024, peer, api)
	if err := writeSection("metrics-carbon", body); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(total)/visible.Seconds(), "points/s")
}

func metricsRate(n int, d time.Duration) string {
	return fmt.Sprintf("%.0f", float64(n)/d.Seconds())
}

func metricsFreeAddr(tb testing.TB) string {
	tb.Helper()
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	tb.Fatal("no free TCP+UDP port")
	return ""
}

func metricsGetJSON(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %d %s", u, resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}
