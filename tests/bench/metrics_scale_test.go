package bench

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The scale load: many series, few points each, over 4 plaintext
// connections. SHIPLOOP_BENCH_SCALE_SERIES lists the sizes to run
// ("100000,300000"); the default is a million.
const (
	scaleConns, scalePoints = 4, 10
	scaleSumSeries          = 100_000 // series the sumSeries measure covers
	scaleRuns               = 5       // of each query, after a warm-up
	scaleWait               = 15 * time.Minute
)

// BenchmarkMetricsCarbonScale writes N series × 10 points (plaintext, 4
// connections) into `shiploop up` with the Carbon limits raised, and
// reports the peak RSS (VmHWM) through the ingest, the ingest time, find
// over the whole index and sumSeries over 100,000 of the series; with
// GO_CARBON_BIN set, the same bytes go to go-carbon in the same run (peak
// RSS and time until its carbonserver answers the last point of every
// connection). Figures go to docs/benchmarks.md with the load average
// beside each; nothing here asserts a speed or a size.
func BenchmarkMetricsCarbonScale(b *testing.B) {
	binary(b)
	sizes := []int{1_000_000}
	if v := os.Getenv("SHIPLOOP_BENCH_SCALE_SERIES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < scaleSumSeries || n%(scaleConns*1000) != 0 {
				b.Fatalf("SHIPLOOP_BENCH_SCALE_SERIES: %q: want sizes of at least %d, multiples of %d", f, scaleSumSeries, scaleConns*1000)
			}
			sizes = append(sizes, n)
		}
	}
	gcBin := os.Getenv("GO_CARBON_BIN")
	var rows []scaleSide
	for _, n := range sizes {
		load := newScaleLoad(n)
		rows = append(rows, scaleShiploop(b, load))
		if gcBin != "" {
			rows = append(rows, scaleGoCarbon(b, load, gcBin))
		}
	}
	if err := writeSection("metrics-scale", scaleReport(rows, gcBin)); err != nil {
		b.Fatal(err)
	}
}

// scaleLoad names series scale.cC.hH.mM: connection C (0-3) sends its
// quarter of the series, H = j/1000 and M = j%1000 for its j-th series,
// every series' 10 points at 10 s, all series at one timestamp before the
// next. The sumSeries measure covers h0-h24 of every connection: 100,000
// series.
type scaleLoad struct {
	series int
	base   int64
}

func newScaleLoad(series int) *scaleLoad {
	now := time.Now().Unix()
	return &scaleLoad{series: series, base: now - now%10 - scalePoints*10}
}

func (l *scaleLoad) perConn() int { return l.series / scaleConns }

// last is the name of connection c's last series: the last line it sends.
func (l *scaleLoad) last(c int) string {
	j := l.perConn() - 1
	return fmt.Sprintf("scale.c%d.h%d.m%d", c, j/1000, j%1000)
}

func (l *scaleLoad) lastTS() int64 { return l.base + (scalePoints-1)*10 }

func (l *scaleLoad) window() url.Values {
	return url.Values{"from": {fmt.Sprint(l.base - 1)}, "until": {fmt.Sprint(l.lastTS())}, "format": {"json"}}
}

// send writes the load, generated as it goes, one connection per quarter.
func (l *scaleLoad) send(tb testing.TB, addr string) time.Duration {
	tb.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, scaleConns)
	for c := 0; c < scaleConns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			w := bufio.NewWriterSize(conn, 1<<20)
			line := make([]byte, 0, 64)
			for p := 0; p < scalePoints; p++ {
				ts := l.base + int64(p)*10
				for j := 0; j < l.perConn(); j++ {
					line = append(line[:0], "scale.c"...)
					line = strconv.AppendInt(line, int64(c), 10)
					line = append(line, ".h"...)
					line = strconv.AppendInt(line, int64(j/1000), 10)
					line = append(line, ".m"...)
					line = strconv.AppendInt(line, int64(j%1000), 10)
					line = append(line, " 1 "...)
					line = strconv.AppendInt(line, ts, 10)
					line = append(line, '\n')
					if _, err := w.Write(line); err != nil {
						errs <- fmt.Errorf("writing to %s: %w", addr, err)
						return
					}
				}
			}
			if err := w.Flush(); err != nil {
				errs <- fmt.Errorf("writing to %s: %w", addr, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	return time.Since(start)
}

// scaleSide is one store's figures at one size.
type scaleSide struct {
	store            string
	series           int
	sent, readable   time.Duration
	baseKB, ingestKB int64 // RSS before the load, peak RSS once every point was readable
	finalKB          int64 // peak RSS after the queries too
	findRoot         time.Duration
	findRootN        int
	findDeep         time.Duration
	findDeepN        int
	sum              []time.Duration // sumSeries over 100,000 series
	sumAll           time.Duration   // sumSeries over every series, the drop check
	load             string          // /proc/loadavg at the ingest's end
	note             string
}

// scaleShiploop runs the load into a fresh `shiploop up` whose Carbon and
// query limits let it through.
func scaleShiploop(b *testing.B, load *scaleLoad) scaleSide {
	carbon := metricsFreeAddr(b)
	inst, err := launch(b, b.TempDir(), "--carbon-listen", carbon, "--pickle-listen", "",
		"--carbon-max-series", "-1", "--carbon-max-new-series-per-minute", "-1",
		"--graphite-query-max-series", strconv.Itoa(load.series))
	if err != nil {
		b.Fatal(err)
	}
	side := scaleSide{store: "shiploop", series: load.series}
	defer func() {
		// Reported, not failed: at a million series the flush at shutdown
		// can outlast its 10 s (docs/benchmarks.md says what that means).
		if err := inst.stop(); err != nil {
			b.Logf("stopping shiploop up: %v\nstderr (last lines):\n%s", err, lastLines(inst.stderr.String(), 5))
		}
	}()
	side.baseKB, _ = inst.status("VmRSS")
	render := inst.HTTPURL + "/graphite/render"
	start := time.Now()
	side.sent = load.send(b, carbon)
	// Each connection's points are stored in the order sent: when its last
	// line is readable, so is the rest of it (checked below).
	for c := 0; c < scaleConns; c++ {
		if err := waitFor(start, func() bool { return renderHasLast(render, load, load.last(c)) }); err != nil {
			b.Fatalf("shiploop: %s at %d not readable: %v\nstderr:\n%s", load.last(c), load.lastTS(), err, inst.stderr)
		}
	}
	side.readable = time.Since(start)
	side.load = loadAvg()
	side.ingestKB, _ = inst.status("VmHWM")

	find := func(q string) (time.Duration, int) {
		var lat []time.Duration
		var n int
		for i := 0; i <= scaleRuns; i++ {
			// completer lists every matching path (treejson, the default,
			// merges nodes of the same name as graphite-web does).
			var got struct {
				Metrics []struct {
					Path string `json:"path"`
				} `json:"metrics"`
			}
			t0 := time.Now()
			if err := metricsGetJSON(inst.HTTPURL+"/graphite/metrics/find?format=completer&query="+url.QueryEscape(q), &got); err != nil {
				b.Fatalf("shiploop: find %s: %v", q, err)
			}
			if i > 0 {
				lat = append(lat, time.Since(t0))
			}
			n = 0
			for _, m := range got.Metrics {
				if m.Path != "" {
					n++
				}
			}
		}
		slices.Sort(lat)
		return lat[len(lat)/2], n
	}
	side.findRoot, side.findRootN = find("*")
	side.findDeep, side.findDeepN = find("scale.*.*.m7*")
	sub := "sumSeries(scale.*.h[0-9].m*,scale.*.h1[0-9].m*,scale.*.h2[0-4].m*)"
	for i := 0; i <= scaleRuns; i++ {
		t0 := time.Now()
		if err := sumEquals(render, load, sub, scaleSumSeries); err != nil {
			b.Fatalf("shiploop: %s: %v", sub, err)
		}
		if i > 0 {
			side.sum = append(side.sum, time.Since(t0))
		}
	}
	slices.Sort(side.sum)
	t0 := time.Now()
	if err := sumEquals(render, load, "sumSeries(scale.*.*.*)", load.series); err != nil {
		b.Fatalf("shiploop: points dropped? %v", err)
	}
	side.sumAll = time.Since(t0)
	side.finalKB, _ = inst.status("VmHWM")
	return side
}

// scaleGoCarbon runs the same load into go-carbon (realtime trie index, as
// in BenchmarkMetricsCarbon) and times until carbonserver answers each
// connection's last point.
func scaleGoCarbon(b *testing.B, load *scaleLoad, bin string) scaleSide {
	p, tcp, server, _ := startGoCarbon(b, bin, true, true)
	defer p.stop()
	side := scaleSide{store: "go-carbon", series: load.series}
	side.baseKB, _ = (&instance{cmd: p.cmd}).status("VmRSS")
	start := time.Now()
	side.sent = load.send(b, tcp)
	for c := 0; c < scaleConns; c++ {
		if err := waitFor(start, func() bool { return carbonserverHasLast(server, load, load.last(c)) }); err != nil {
			side.note = fmt.Sprintf("%s at %d not readable in carbonserver within %s", load.last(c), load.lastTS(), scaleWait)
			break
		}
	}
	side.readable = time.Since(start)
	side.load = loadAvg()
	side.ingestKB, _ = (&instance{cmd: p.cmd}).status("VmHWM")
	side.finalKB = side.ingestKB
	if gone := p.gone(); gone != "" {
		side.note = strings.TrimSpace(side.note + " " + gone)
	}
	return side
}

func waitFor(start time.Time, ok func() bool) error {
	for !ok() {
		if time.Since(start) > scaleWait {
			return fmt.Errorf("still not after %s", scaleWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// renderHasLast says whether shiploop's render has name's value at the
// load's last timestamp.
func renderHasLast(render string, load *scaleLoad, name string) bool {
	q := load.window()
	q.Set("target", name)
	var got []struct {
		Datapoints [][2]*float64 `json:"datapoints"`
	}
	if err := metricsGetJSON(render+"?"+q.Encode(), &got); err != nil || len(got) != 1 {
		return false
	}
	for _, p := range got[0].Datapoints {
		if p[0] != nil && p[1] != nil && int64(*p[1]) == load.lastTS() {
			return true
		}
	}
	return false
}

func carbonserverHasLast(server string, load *scaleLoad, name string) bool {
	q := load.window()
	q.Set("target", name)
	var got struct {
		Metrics []struct {
			StartTime int64     `json:"startTime"`
			StepTime  int64     `json:"stepTime"`
			Values    []float64 `json:"values"`
			IsAbsent  []bool    `json:"isAbsent"`
		} `json:"metrics"`
	}
	if err := metricsGetJSON(server+"/render/?"+q.Encode(), &got); err != nil || len(got.Metrics) != 1 {
		return false
	}
	m := got.Metrics[0]
	for i := range m.Values {
		if m.StartTime+int64(i)*m.StepTime == load.lastTS() && i < len(m.IsAbsent) && !m.IsAbsent[i] {
			return true
		}
	}
	return false
}

// sumEquals checks that target sums to want at every one of the load's
// timestamps.
func sumEquals(render string, load *scaleLoad, target string, want int) error {
	q := load.window()
	q.Set("target", target)
	var got []struct {
		Datapoints [][2]*float64 `json:"datapoints"`
	}
	if err := metricsGetJSON(render+"?"+q.Encode(), &got); err != nil {
		return err
	}
	if len(got) != 1 {
		return fmt.Errorf("%d series answered, want 1", len(got))
	}
	seen := 0
	for _, p := range got[0].Datapoints {
		if p[0] == nil || p[1] == nil {
			continue
		}
		if int(*p[0]) != want {
			return fmt.Errorf("%g at %d, want %d", *p[0], int64(*p[1]), want)
		}
		seen++
	}
	if seen != scalePoints {
		return fmt.Errorf("%d timestamps with a value, want %d", seen, scalePoints)
	}
	return nil
}

func scaleReport(rows []scaleSide, gcBin string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "Run %s: %d points per series over %d plaintext connections", time.Now().UTC().Format("2006-01-02 15:04 UTC"), scalePoints, scaleConns)
	if gcBin == "" {
		s.WriteString("; shiploop alone: GO_CARBON_BIN is unset, so go-carbon was skipped in this run.\n\n")
	} else {
		fmt.Fprintf(&s, "; go-carbon %s in the same run, after shiploop at each size.\n\n", peerVersion(gcBin))
	}
	s.WriteString("| store | series | sent | readable | RSS before | peak RSS (ingest) | per series | find `*` (paths) | find `scale.*.*.m7*` (paths) | sumSeries 100k p50 / max | sumSeries all | peak RSS (after queries) | load avg at ingest end |\n")
	s.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	ms := func(d time.Duration) string {
		if d == 0 {
			return "–"
		}
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	mib := func(kb int64) string { return fmt.Sprintf("%.0f MiB", float64(kb)/1024) }
	for _, r := range rows {
		sum := "–"
		if len(r.sum) > 0 {
			sum = ms(r.sum[len(r.sum)/2]) + " / " + ms(r.sum[len(r.sum)-1])
		}
		root, deep := "–", "–"
		if r.findRoot > 0 {
			root = fmt.Sprintf("%s (%d)", ms(r.findRoot), r.findRootN)
		}
		if r.findDeep > 0 {
			deep = fmt.Sprintf("%s (%d)", ms(r.findDeep), r.findDeepN)
		}
		per := float64(r.ingestKB-r.baseKB) * 1024 / float64(r.series)
		fmt.Fprintf(&s, "| %s | %d | %.1f s | %.1f s | %s | %s | %.0f B | %s | %s | %s | %s | %s | %s |\n",
			r.store, r.series, r.sent.Seconds(), r.readable.Seconds(), mib(r.baseKB), mib(r.ingestKB), per,
			root, deep, sum, ms(r.sumAll), mib(r.finalKB), r.load)
		if r.note != "" {
			fmt.Fprintf(&s, "\n%s, %d series: %s\n\n", r.store, r.series, r.note)
		}
	}
	s.WriteString("\n\"Per series\" is (peak RSS through the ingest − RSS before it) / series. \"Readable\" is from the first byte sent until the last point of every connection reads back; `sumSeries(scale.*.*.*)` then checks every point (shiploop).\n")
	return s.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
