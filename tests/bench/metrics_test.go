package bench

import (
	"bufio"
	encbinary "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The load the research measured go-carbon with: 4 TCP connections, 2,500
// series each, 200 points per series at 10 s, every value 1.
const (
	metricsConns, metricsPerConn, metricsPoints = 4, 2500, 200
	metricsSumRuns                              = 15 // sequential, after one warm-up
	metricsFinds                                = 20
	// metricsRounds: the ingest runs this often per store, shiploop and
	// go-carbon in turn, each on a fresh store; the table shows medians
	// (the machine is shared, and one round can be twice as slow as the
	// next). Find and sumSeries are measured in the last round.
	metricsRounds = 3
	// metricsWait bounds every wait for a peer; shiploop failing it fails
	// the benchmark, a peer failing it is reported.
	metricsWait = 2 * time.Minute
	// metricsFindWait bounds the wait for one new series in a peer's find.
	metricsFindWait = 30 * time.Second
)

// BenchmarkMetricsCarbon measures the metrics service of `shiploop up` and,
// when GO_CARBON_BIN (and CARBONAPI_BIN) name the peers' binaries, go-carbon
// (and carbonapi reading go-carbon's carbonserver) in the same run, one after
// the other, with the same client: Carbon plaintext ingest, checked for zero
// drops by reading every point back; how long a new series takes to appear
// in find; and sumSeries over the 10,000 series, over the load's window and
// over a day at 10 s. Figures go to docs/benchmarks.md.
func BenchmarkMetricsCarbon(b *testing.B) {
	binary(b) // built before any clock starts
	load := newCarbonLoad(metricsConns, metricsPerConn, metricsPoints)
	gcBin, apiBin := os.Getenv("GO_CARBON_BIN"), os.Getenv("CARBONAPI_BIN")
	var ours, peers []*metricsSide
	for r := 0; r < metricsRounds; r++ {
		full := r == metricsRounds-1
		ours = append(ours, measureShiploop(b, load, full))
		if gcBin != "" {
			peers = append(peers, measureGoCarbon(b, load, gcBin, apiBin, full))
		}
	}
	var defaultFind string
	if gcBin != "" {
		defaultFind = goCarbonDefaultFind(b, gcBin)
	}
	if err := writeSection("metrics-carbon", metricsReport(load, ours, peers, defaultFind, gcBin, apiBin)); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(load.total())/median(ours, func(m *metricsSide) time.Duration { return m.visible }).Seconds(), "points/s")
}

// carbonLoad is the one client load every store gets: the same bytes over
// the same number of connections.
type carbonLoad struct {
	conns, perConn, points int
	base                   int64 // timestamp of the first point
	payloads               [][]byte
}

func newCarbonLoad(conns, perConn, points int) *carbonLoad {
	now := time.Now().Unix()
	l := &carbonLoad{conns: conns, perConn: perConn, points: points, base: now - now%10 - int64(points)*10}
	for c := 0; c < conns; c++ {
		var sb strings.Builder
		for p := 0; p < points; p++ {
			for m := 0; m < perConn; m++ {
				fmt.Fprintf(&sb, "bench.c%d.m%d 1 %d\n", c, m, l.base+int64(p)*10)
			}
		}
		l.payloads = append(l.payloads, []byte(sb.String()))
	}
	return l
}

func (l *carbonLoad) series() int { return l.conns * l.perConn }
func (l *carbonLoad) total() int  { return l.series() * l.points }

func (l *carbonLoad) names() []string {
	out := make([]string, 0, l.series())
	for c := 0; c < l.conns; c++ {
		for m := 0; m < l.perConn; m++ {
			out = append(out, fmt.Sprintf("bench.c%d.m%d", c, m))
		}
	}
	return out
}

// send writes every payload on its own connection and returns when the
// client has written and closed them all.
func (l *carbonLoad) send(tb testing.TB, addr string) time.Duration {
	tb.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(l.payloads))
	for _, p := range l.payloads {
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
			if _, err := w.Write(p); err != nil {
				errs <- fmt.Errorf("writing to %s: %w", addr, err)
				return
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

// window is the load's time range as render parameters: (from, until]
// holds exactly its points.
func (l *carbonLoad) window() url.Values {
	return url.Values{"from": {fmt.Sprint(l.base - 1)}, "until": {fmt.Sprint(l.base + int64(l.points)*10 - 1)}}
}

// sumQuery is sumSeries over every series of the load; day stretches it
// over the last day (8,640 slots at 10 s) instead of the load's window.
func (l *carbonLoad) sumQuery(day bool) url.Values {
	q := l.window()
	if day {
		// A day less a second: at exactly 1 d a store with coarser archives
		// (shiploop, whisper) may pick the next one when the clock ticks
		// between parsing from and reading.
		now := time.Now().Unix()
		q = url.Values{"from": {fmt.Sprint(now - 86399)}, "until": {fmt.Sprint(now)}}
	}
	q.Set("target", "sumSeries(bench.c*.m*)")
	q.Set("format", "json")
	return q
}

// sumMissing reads sumSeries from a graphite-web style /render and says how
// many of the load's points it lacks: every slot of the window must sum to
// the number of series. For the day query every other slot must be empty.
func (l *carbonLoad) sumMissing(renderURL string, day bool) (int, error) {
	var got []struct {
		Datapoints [][2]*float64 `json:"datapoints"`
	}
	if err := metricsGetJSON(renderURL+"?"+l.sumQuery(day).Encode(), &got); err != nil {
		return 0, err
	}
	if len(got) != 1 {
		return 0, fmt.Errorf("sumSeries answered %d series, want 1", len(got))
	}
	byTS := map[int64]float64{}
	for _, p := range got[0].Datapoints {
		if p[0] != nil && p[1] != nil {
			byTS[int64(*p[1])] = *p[0]
		}
	}
	missing := 0
	for i := 0; i < l.points; i++ {
		ts := l.base + int64(i)*10
		v, ok := byTS[ts]
		if !ok {
			missing += l.series()
			continue
		}
		missing += l.series() - int(v)
		delete(byTS, ts)
	}
	for ts, v := range byTS {
		return missing, fmt.Errorf("sumSeries has %d values outside the load's points (one: %g at %d; the load is %d to %d)",
			len(byTS), v, ts, l.base, l.base+int64(l.points-1)*10)
	}
	if day && len(got[0].Datapoints) < 8639 {
		return missing, fmt.Errorf("sumSeries over a day answered %d slots, want 8,640 at 10 s", len(got[0].Datapoints))
	}
	return missing, nil
}

// metricsSide is what one store measured.
type metricsSide struct {
	sent, visible time.Duration
	visibleCPU    time.Duration // CPU time the store's processes used until then
	missing       int           // points still unreadable when the wait ended
	readVia       string        // how the points were read back
	onDisk        time.Duration
	diskMissing   int // -1 when not measured
	finds         []time.Duration
	findMiss      string // the series that did not appear in time
	window, day   sumFigures
	rss           []string // peak RSS per process
	ingestRSS     int64    // shiploop's peak RSS (KiB) once every point was readable, before the queries
	crash         string   // how a peer ended early, if it did
	others        float64  // CPUs other processes kept busy meanwhile
}

type sumFigures struct {
	lat []time.Duration
	err string // set when the store refused or answered wrongly
}

// measureShiploop runs the ingest on a fresh `shiploop up`; full adds the
// find and sumSeries measures.
func measureShiploop(b *testing.B, load *carbonLoad, full bool) *metricsSide {
	cpu := startCPU()
	carbon := metricsFreeAddr(b)
	inst, err := launch(b, b.TempDir(), "--carbon-listen", carbon, "--pickle-listen", "")
	if err != nil {
		b.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = inst.stop()
		}
	}()
	render := inst.HTTPURL + "/graphite/render"
	side := &metricsSide{diskMissing: -1, readVia: "sumSeries in its /graphite/render"}
	start := time.Now()
	cpu0 := procCPU(inst.cmd.Process.Pid)
	side.sent = load.send(b, carbon)
	side.missing, side.visible = waitAllVisible(func() (int, error) { return load.sumMissing(render, false) }, start, load.total())
	side.visibleCPU = procCPU(inst.cmd.Process.Pid) - cpu0
	if side.missing != 0 {
		b.Fatalf("shiploop: %d of %d points never became visible in %s (dropped?)", side.missing, load.total(), metricsWait)
	}
	side.ingestRSS, _ = inst.status("VmHWM")
	if full {
		measureShiploopReads(b, load, inst, carbon, side)
	}
	hwm, _ := inst.status("VmHWM")
	side.rss = []string{fmt.Sprintf("%.0f MiB", float64(hwm)/1024)}
	side.others = cpu.others(procCPU(inst.cmd.Process.Pid))
	stopped = true
	if err := inst.stop(); err != nil {
		b.Fatalf("stopping shiploop up: %v\nstderr:\n%s", err, inst.stderr)
	}
	return side
}

func measureShiploopReads(b *testing.B, load *carbonLoad, inst *instance, carbon string, side *metricsSide) {
	render := inst.HTTPURL + "/graphite/render"
	side.finds, side.findMiss = measureFinds(carbon, func(name string) bool {
		var nodes []map[string]any
		err := metricsGetJSON(inst.HTTPURL+"/graphite/metrics/find?query="+url.QueryEscape(name), &nodes)
		return err == nil && len(nodes) == 1
	}, time.Minute)
	if side.findMiss != "" {
		b.Fatalf("shiploop: %s", side.findMiss)
	}
	side.window = measureSum(load, render, false)
	if side.window.err != "" {
		b.Fatalf("shiploop: sumSeries over the window: %s", side.window.err)
	}
	side.day = measureSum(load, render, true)
}

// waitAllVisible polls missing (then sleeps 50 ms) until nothing is missing
// or metricsWait has passed since start; it returns the last count and when
// it was taken.
func waitAllVisible(missing func() (int, error), start time.Time, total int) (int, time.Duration) {
	for {
		n, err := missing()
		if err != nil {
			n = total
		}
		if n == 0 || time.Since(start) > metricsWait {
			return n, time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// measureFinds writes new series one at a time and times until findable
// says each is there; it stops at the first one not found within limit.
func measureFinds(carbon string, findable func(string) bool, limit time.Duration) ([]time.Duration, string) {
	var finds []time.Duration
	for i := 0; i < metricsFinds; i++ {
		name := fmt.Sprintf("fresh.s%d.value", i)
		conn, err := net.Dial("tcp", carbon)
		if err != nil {
			return finds, fmt.Sprintf("connecting to %s: %v", carbon, err)
		}
		t0 := time.Now()
		fmt.Fprintf(conn, "%s 1 %d\n", name, t0.Unix())
		for !findable(name) {
			if time.Since(t0) > limit {
				conn.Close()
				return finds, fmt.Sprintf("%s not findable within %s", name, limit)
			}
			time.Sleep(time.Millisecond)
		}
		finds = append(finds, time.Since(t0))
		conn.Close()
	}
	return finds, ""
}

// measureSum runs sumSeries once to warm up, then metricsSumRuns times in a
// row, each checked against the load.
func measureSum(load *carbonLoad, render string, day bool) sumFigures {
	var f sumFigures
	for i := 0; i <= metricsSumRuns; i++ {
		t0 := time.Now()
		missing, err := load.sumMissing(render, day)
		d := time.Since(t0)
		if err == nil && missing != 0 {
			err = fmt.Errorf("%d of %d points missing from the sum", missing, load.total())
		}
		if err != nil {
			f.err = err.Error()
			return f
		}
		if i > 0 {
			f.lat = append(f.lat, d)
		}
	}
	slices.Sort(f.lat)
	return f
}

// peerProc is a peer's process, its output going to a log file.
type peerProc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{} // closed once the process was waited for
}

// startPeer runs bin with args and waits until ready succeeds.
func startPeer(tb testing.TB, name, bin, dir string, args []string, ready func() error) *peerProc {
	tb.Helper()
	p := &peerProc{name: name, log: filepath.Join(dir, name+".out")}
	out, err := os.Create(p.log)
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("starting %s (%s): %v", name, bin, err)
	}
	p.exited = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.exited:
			tb.Fatalf("%s exited before it was ready (%s):\n%s", name, p.cmd.ProcessState, p.tail())
		default:
		}
		err := ready()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			p.stop()
			tb.Fatalf("%s not ready after 30s: %v\n%s", name, err, p.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Cleanup(p.stop)
	return p
}

// stop kills the process: nothing of a peer's state is needed afterwards.
func (p *peerProc) stop() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// gone says how the process ended, with its last output; "" while it runs.
func (p *peerProc) gone() string {
	select {
	case <-p.exited:
		return fmt.Sprintf("%s exited (%s); its last output:\n%s", p.name, p.cmd.ProcessState, p.tail())
	default:
		return ""
	}
}

func (p *peerProc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (p *peerProc) peakRSS() string {
	hwm, err := (&instance{cmd: p.cmd}).status("VmHWM")
	if err != nil {
		return p.name + " ?"
	}
	return fmt.Sprintf("%s %.0f MiB", p.name, float64(hwm)/1024)
}

// goCarbonConf is go-carbon's configuration for the benchmark: plaintext
// TCP and carbonserver on loopback, every other listener off, the data in
// dir. realtime turns on the trie index with realtime indexing (go-carbon's
// documented way to make new series findable without waiting for a scan)
// and turns off carbonserver's find, glob and query caches: they keep an
// answer, "not found" included, for minutes, so a poll that comes before
// the series would hide it, and a repeated query would be answered from
// memory (shiploop caches neither). Without realtime the index settings are
// go-carbon's defaults.
// goCarbonConf is go-carbon's configuration. scale (the million-series run)
// creates whisper files sparse, as large installations do (a million
// non-sparse 10s:1d files would take 100 GB of disk), and leaves the cache
// unbounded: go-carbon drops points past max-size where shiploop's bound
// holds up the senders, and a dropped point would not read back.
func goCarbonConf(dir, tcp, httpAddr string, realtime, scale bool) string {
	sparse, maxSize := "", uint64(4<<20)
	if scale {
		sparse, maxSize = "sparse-create = true\n", 0
	}
	index := ""
	if realtime {
		index = `trie-index = true
concurrent-index = true
realtime-index = 100000
find-cache-enabled = false
glob-cache-enabled = false
query-cache-enabled = false
`
	}
	return fmt.Sprintf(`[common]
user = ""
max-cpu = %d

[whisper]
data-dir = %q
schemas-file = %q
aggregation-file = %q
workers = %d
enabled = true
%s
[cache]
max-size = %d
write-strategy = "max"

[udp]
enabled = false

[tcp]
listen = %q
enabled = true

[pickle]
enabled = false

[carbonlink]
enabled = false

[grpc]
enabled = false

[carbonserver]
listen = %q
enabled = true
do-not-log-404s = true
%s
[[logging]]
logger = ""
file = "stderr"
level = "warn"
`, runtime.NumCPU(), filepath.Join(dir, "whisper"), filepath.Join(dir, "storage-schemas.conf"), filepath.Join(dir, "storage-aggregation.conf"),
		runtime.NumCPU(), sparse, maxSize, tcp, httpAddr, index)
}

// startGoCarbon writes go-carbon's configuration into a new directory and
// runs it; it returns the process, its plaintext address, carbonserver's URL
// and the whisper directory.
func startGoCarbon(tb testing.TB, bin string, realtime, scale bool) (*peerProc, string, string, string) {
	tb.Helper()
	dir := tb.TempDir()
	files := map[string]string{
		// The same finest archive as shiploop's default schema.
		"storage-schemas.conf":     "[default]\npattern = .*\nretentions = 10s:1d\n",
		"storage-aggregation.conf": "[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n",
	}
	tcp, httpAddr := metricsFreeAddr(tb), metricsFreeAddr(tb)
	files["go-carbon.conf"] = goCarbonConf(dir, tcp, httpAddr, realtime, scale)
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "whisper"), 0o755); err != nil {
		tb.Fatal(err)
	}
	server := "http://" + httpAddr
	p := startPeer(tb, "go-carbon", bin, dir, []string{"-config", filepath.Join(dir, "go-carbon.conf")}, func() error {
		c, err := net.Dial("tcp", tcp)
		if err != nil {
			return err
		}
		c.Close()
		resp, err := http.Get(server + "/metrics/find/?format=json&query=ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return p, tcp, server, filepath.Join(dir, "whisper")
}

// startCarbonAPI runs carbonapi over one go-carbon carbonserver: the
// carbonapi_v3_pb protocol, the response cache off (shiploop has none, and
// a repeated query would be answered from it) and globs sent to the backend
// as they are (maxBatchSize 0).
func startCarbonAPI(tb testing.TB, bin, carbonserver string) (*peerProc, string) {
	tb.Helper()
	dir := tb.TempDir()
	addr := metricsFreeAddr(tb)
	conf := fmt.Sprintf(`listen: %q
cache:
  type: "null"
maxBatchSize: 0
upstreams:
  tldCacheDisabled: true
  timeouts:
    find: "60s"
    render: "120s"
    connect: "1s"
  backendsv2:
    backends:
      - groupName: "go-carbon"
        protocol: "carbonapi_v3_pb"
        lbMethod: "broadcast"
        servers:
          - %q
logger:
  - logger: ""
    file: "stderr"
    level: "warn"
    encoding: "console"
`, addr, carbonserver)
	path := filepath.Join(dir, "carbonapi.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	base := "http://" + addr
	p := startPeer(tb, "carbonapi", bin, dir, []string{"-config", path}, func() error {
		resp, err := http.Get(base + "/version")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return p, base + "/render"
}

// measureGoCarbon runs the ingest on a fresh go-carbon (and carbonapi);
// full adds the find and sumSeries measures.
func measureGoCarbon(b *testing.B, load *carbonLoad, gcBin, apiBin string, full bool) *metricsSide {
	cpu := startCPU()
	gc, tcp, server, whisper := startGoCarbon(b, gcBin, true, false)
	procs := []*peerProc{gc}
	side := &metricsSide{}
	// Read back through carbonapi's sumSeries, as shiploop's are; without
	// carbonapi, by counting carbonserver's answer for every series.
	readBack := func() (int, error) { return carbonserverMissing(server, load) }
	side.readVia = "carbonserver's /render (every series counted)"
	var render string
	if apiBin != "" {
		var api *peerProc
		api, render = startCarbonAPI(b, apiBin, server)
		procs = append(procs, api)
		readBack = func() (int, error) { return load.sumMissing(render, false) }
		side.readVia = "sumSeries in carbonapi's /render"
	}
	// Each phase runs only while both processes do: a peer that exited is
	// reported with its last output, and its remaining figures stay empty.
	phases := []func(){
		func() {
			start := time.Now()
			cpu0 := procsCPU(procs)
			side.sent = load.send(b, tcp)
			side.missing, side.visible = waitAllVisible(readBack, start, load.total())
			side.visibleCPU = procsCPU(procs) - cpu0
			// What go-carbon wrote to its whisper files, its cache drained.
			side.diskMissing, side.onDisk = waitAllVisible(func() (int, error) { return whisperMissing(whisper, load) }, start, load.total())
		},
		func() { side.finds, side.findMiss = measureFinds(tcp, carbonserverFindable(server), metricsFindWait) },
		func() {
			if render != "" {
				side.window = measureSum(load, render, false)
				side.day = measureSum(load, render, true)
			}
		},
	}
	if !full {
		phases = phases[:1]
	}
	for _, phase := range phases {
		phase()
		for _, p := range procs {
			if side.crash = p.gone(); side.crash != "" {
				b.Log(side.crash)
				break
			}
		}
		if side.crash != "" {
			break
		}
	}
	for _, p := range procs {
		side.rss = append(side.rss, p.peakRSS())
	}
	side.others = cpu.others(procsCPU(procs))
	for _, p := range procs {
		p.stop()
	}
	return side
}

// median is the median of a figure over the rounds, leaving out rounds a
// peer did not finish.
func median(sides []*metricsSide, f func(*metricsSide) time.Duration) time.Duration {
	var ds []time.Duration
	for _, m := range sides {
		if m.crash == "" && m.missing == 0 {
			ds = append(ds, f(m))
		}
	}
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// procsCPU is the CPU time the processes used so far.
func procsCPU(procs []*peerProc) time.Duration {
	var sum time.Duration
	for _, p := range procs {
		sum += procCPU(p.cmd.Process.Pid)
	}
	return sum
}

// goCarbonDefaultFind writes one new series to a go-carbon with its default
// index settings (trigram index rebuilt by a scan every 5 min, find cache on)
// and says how long it took to appear in carbonserver's find.
func goCarbonDefaultFind(b *testing.B, bin string) string {
	gc, tcp, server, _ := startGoCarbon(b, bin, false, false)
	defer gc.stop()
	finds, miss := measureFinds(tcp, carbonserverFindable(server), metricsFindWait)
	return findCell(finds, miss)
}

// findCell is p50 / max of the finds, then the one that failed if any.
func findCell(finds []time.Duration, miss string) string {
	if len(finds) == 0 {
		return miss
	}
	finds = slices.Sorted(slices.Values(finds))
	out := fmt.Sprintf("%s / %s", finds[len(finds)/2].Round(time.Microsecond), finds[len(finds)-1].Round(time.Microsecond))
	if miss != "" {
		out += "; then " + miss
	}
	return out
}

// carbonserverFindable says whether carbonserver's find knows a series.
func carbonserverFindable(server string) func(string) bool {
	return func(name string) bool {
		var got struct {
			Metrics []struct {
				Matches []json.RawMessage `json:"matches"`
			} `json:"metrics"`
		}
		err := metricsGetJSON(server+"/metrics/find/?format=json&query="+url.QueryEscape(name), &got)
		return err == nil && len(got.Metrics) == 1 && len(got.Metrics[0].Matches) == 1
	}
}

// carbonserverMissing counts the load's points in carbonserver's JSON
// answer for every series.
func carbonserverMissing(server string, load *carbonLoad) (int, error) {
	q := load.window()
	q.Set("target", "bench.c*.m*")
	q.Set("format", "json")
	var got struct {
		Metrics []struct {
			StartTime int64     `json:"startTime"`
			StepTime  int64     `json:"stepTime"`
			Values    []float64 `json:"values"`
			IsAbsent  []bool    `json:"isAbsent"`
		} `json:"metrics"`
	}
	if err := metricsGetJSON(server+"/render/?"+q.Encode(), &got); err != nil {
		return 0, err
	}
	present := 0
	for _, m := range got.Metrics {
		for i, v := range m.Values {
			ts := m.StartTime + int64(i)*m.StepTime
			if i < len(m.IsAbsent) && !m.IsAbsent[i] && v == 1 && ts >= load.base && ts < load.base+int64(load.points)*10 {
				present++
			}
		}
	}
	return load.total() - present, nil
}

// whisperMissing counts the load's points missing from the whisper files
// under dir, reading each file's first archive directly: a 16-byte header
// (aggregation, max retention, xFilesFactor, archive count), 12 bytes per
// archive (offset, seconds per point, points), then 12-byte points
// (timestamp, float64 value), big-endian, the slot of a timestamp counted
// from the one stored in slot 0.
func whisperMissing(dir string, load *carbonLoad) (int, error) {
	missing := 0
	for _, name := range load.names() {
		n, err := whisperCount(filepath.Join(dir, strings.ReplaceAll(name, ".", "/")+".wsp"), load.base, load.points)
		if err != nil {
			return 0, err
		}
		missing += load.points - n
	}
	return missing, nil
}

func whisperCount(path string, base int64, points int) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	hdr := make([]byte, 28)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return 0, fmt.Errorf("%s: reading the header: %w", path, err)
	}
	be := encbinary.BigEndian
	if be.Uint32(hdr[12:]) == 0 {
		return 0, fmt.Errorf("%s: no archives", path)
	}
	offset, step, slots := int64(be.Uint32(hdr[16:])), int64(be.Uint32(hdr[20:])), int64(be.Uint32(hdr[24:]))
	arch := make([]byte, 12*slots)
	if _, err := f.ReadAt(arch, offset); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("%s: reading the archive: %w", path, err)
	}
	first := int64(be.Uint32(arch[0:]))
	if first == 0 {
		return 0, nil // nothing written yet
	}
	n := 0
	for i := 0; i < points; i++ {
		ts := base + int64(i)*10
		slot := ((ts-first)/step%slots + slots) % slots
		p := arch[12*slot:]
		if int64(be.Uint32(p)) == ts && math.Float64frombits(be.Uint64(p[4:])) == 1 {
			n++
		}
	}
	return n, nil
}

// metricsReport is the section of docs/benchmarks.md: shiploop's figures
// beside the peers' from the same run. ours and peers hold one side per
// round, the last one with the find and sumSeries figures; peers is empty
// when go-carbon was not run.
func metricsReport(load *carbonLoad, ours, peers []*metricsSide, defaultFind, gcBin, apiBin string) string {
	last := ours[len(ours)-1]
	var peer *metricsSide
	if len(peers) > 0 {
		peer = peers[len(peers)-1]
	}
	var s strings.Builder
	fmt.Fprintf(&s, "%s plaintext points (%s series × %d points at 10 s, values 1) over %d TCP connections from one client on loopback, to each store in turn, %d rounds on fresh stores (ingest figures are medians): "+
		"`shiploop up` (SQLite, flush every 1 s, its default schema 10s:1d,1m:30d,1h:5y)", num(float64(load.total())), num(float64(load.series())), load.points, load.conns, len(ours))
	switch {
	case peer == nil:
		s.WriteString(", alone: GO_CARBON_BIN is unset, so go-carbon and carbonapi were skipped in this run (set GO_CARBON_BIN and CARBONAPI_BIN to their binaries to run them beside it; see the notes above).\n\n")
	case apiBin == "":
		s.WriteString(", then go-carbon (10s:1d); CARBONAPI_BIN is unset, so there is no carbonapi sumSeries figure in this run.\n\n")
	default:
		s.WriteString(", then go-carbon (10s:1d) with carbonapi over its carbonserver.\n\n")
	}
	na := "not run"
	if peer != nil {
		na = "not measured"
	}
	peerCell := func(f func() string) string {
		if peer == nil {
			return na
		}
		return f()
	}
	rate := func(d time.Duration) string {
		if d == 0 {
			return "no complete round"
		}
		return fmt.Sprintf("%s (%s points/s)", d.Round(time.Millisecond), num(float64(load.total())/d.Seconds()))
	}
	med := func(sides []*metricsSide, f func(*metricsSide) time.Duration) time.Duration { return median(sides, f) }
	sent := func(m *metricsSide) time.Duration { return m.sent }
	visible := func(m *metricsSide) time.Duration { return m.visible }
	rounds := func(sides []*metricsSide) string {
		var parts []string
		for _, m := range sides {
			switch {
			case m.crash != "":
				parts = append(parts, "ended early")
			case m.missing != 0:
				parts = append(parts, fmt.Sprintf("**%s points missing** after %s", num(float64(m.missing)), m.visible.Round(time.Millisecond)))
			default:
				parts = append(parts, num(float64(load.total())/m.visible.Seconds()))
			}
		}
		return "rounds: " + strings.Join(parts, ", ")
	}
	sumCell := func(f sumFigures) string {
		if f.err != "" {
			return "refused or wrong: " + f.err
		}
		if len(f.lat) == 0 {
			return na
		}
		return fmt.Sprintf("%s / %s", f.lat[len(f.lat)/2].Round(time.Millisecond), f.lat[(len(f.lat)*95+99)/100-1].Round(time.Millisecond))
	}
	sumVerdict := func(o, p sumFigures) string {
		switch {
		case o.err != "":
			return "**not met**"
		case len(p.lat) == 0:
			return "absolute only"
		}
		return fmt.Sprintf("%s (%.2f×)", verdict(o.lat[len(o.lat)/2] <= p.lat[len(p.lat)/2]), float64(p.lat[len(p.lat)/2])/float64(o.lat[len(o.lat)/2]))
	}

	s.WriteString("| measure | shiploop | go-carbon / carbonapi | goal | verdict |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&s, "| client finished sending | %s | %s | | |\n", rate(med(ours, sent)), peerCell(func() string { return rate(med(peers, sent)) }))
	ingest := "no peer figure"
	if peer != nil {
		// shiploop's points per second over go-carbon's, round by round:
		// each pair ran back to back, under about the same other load.
		var ratios []float64
		for r := range peers {
			if peers[r].crash == "" && peers[r].missing == 0 {
				ratios = append(ratios, peers[r].visible.Seconds()/ours[r].visible.Seconds())
			}
		}
		if len(ratios) == 0 {
			ingest = "go-carbon finished no round"
		} else {
			each := make([]string, len(ratios))
			for i, x := range ratios {
				each[i] = fmt.Sprintf("%.2f", x)
			}
			m := slices.Sorted(slices.Values(ratios))[len(ratios)/2]
			ingest = fmt.Sprintf("%s (ratio %.2f; rounds %s)", verdict(m >= 1), m, strings.Join(each, ", "))
		}
	}
	fmt.Fprintf(&s, "| every point readable back (sum checked) | %s, 0 missing (%s), read via %s | %s | ≥ go-carbon, zero silent drops | %s |\n",
		rate(med(ours, visible)), rounds(ours), last.readVia, peerCell(func() string {
			return fmt.Sprintf("%s (%s), read via %s", rate(med(peers, visible)), rounds(peers), peer.readVia)
		}), ingest)
	fmt.Fprintf(&s, "| CPU time the store used until then (its processes; they also answered the polls) | %s | %s | | |\n",
		med(ours, func(m *metricsSide) time.Duration { return m.visibleCPU }).Round(10*time.Millisecond),
		peerCell(func() string {
			return med(peers, func(m *metricsSide) time.Duration { return m.visibleCPU }).Round(10 * time.Millisecond).String()
		}))
	if peer != nil {
		disk := rate(med(peers, func(m *metricsSide) time.Duration { return m.onDisk })) + ", 0 missing"
		for r, m := range peers {
			if m.crash == "" && m.diskMissing != 0 {
				disk += fmt.Sprintf("; **round %d: %s of %s points missing** after %s", r+1, num(float64(m.diskMissing)), num(float64(load.total())), m.onDisk.Round(time.Millisecond))
			}
		}
		fmt.Fprintf(&s, "| go-carbon: every point in its whisper files (read from disk) | | %s | | |\n", disk)
	}
	fmt.Fprintf(&s, "| new series findable, p50 / max of %d | %s | %s | ≤ 1 s | %s |\n", metricsFinds, findCell(last.finds, last.findMiss),
		peerCell(func() string { return findCell(peer.finds, peer.findMiss) + " (trie + realtime index)" }), verdict(last.findMiss == "" && last.finds[len(last.finds)-1] <= time.Second))
	if peer != nil {
		fmt.Fprintf(&s, "| new series findable, go-carbon's default index (scan every 5 min, find cache on) | | %s | | |\n", defaultFind)
	}
	var pw, pd sumFigures
	if peer != nil {
		pw, pd = peer.window, peer.day
	}
	apiCell := func(f sumFigures) string {
		if peer != nil && apiBin == "" {
			return "not run (CARBONAPI_BIN unset)"
		}
		return sumCell(f)
	}
	fmt.Fprintf(&s, "| sumSeries over %s series × the %d points, p50 / p95 (%d sequential, warm) | %s | %s | ≤ carbonapi p50 | %s |\n",
		num(float64(load.series())), load.points, metricsSumRuns, sumCell(last.window), apiCell(pw), sumVerdict(last.window, pw))
	fmt.Fprintf(&s, "| sumSeries over %s series × a day at 10 s (from now − 86,399 s, 8,640 slots), p50 / p95 | %s | %s | ≤ carbonapi p50 | %s |\n",
		num(float64(load.series())), sumCell(last.day), apiCell(pd), sumVerdict(last.day, pd))
	fmt.Fprintf(&s, "| shiploop's peak RSS through the ingest (last round, before the queries) | %.0f MiB | | ≤ 1 GiB | %s |\n",
		float64(last.ingestRSS)/1024, verdict(last.ingestRSS <= 1<<20))
	fmt.Fprintf(&s, "| peak RSS (last round, queries included) | %s | %s | | |\n", strings.Join(last.rss, ", "), peerCell(func() string { return strings.Join(peer.rss, ", ") }))
	busy := func(sides []*metricsSide) string {
		lo, hi := math.Inf(1), 0.0
		for _, m := range sides {
			lo, hi = math.Min(lo, m.others), math.Max(hi, m.others)
		}
		return fmt.Sprintf("%.2f–%.2f", lo, hi)
	}
	fmt.Fprintf(&s, "\nMeasured %s; other processes kept %s of the %d CPUs busy during shiploop's rounds", time.Now().UTC().Format("2006-01-02 15:04 MST"), busy(ours), runtime.NumCPU())
	if peer != nil {
		fmt.Fprintf(&s, " and %s during the peers'", busy(peers))
	}
	s.WriteString(".\n")
	for r, m := range peers {
		if m.crash != "" {
			first, _, _ := strings.Cut(m.crash, "\n")
			fmt.Fprintf(&s, "**A peer ended during round %d; that round's figures are left out:** %s\n", r+1, first)
		}
	}
	if peer != nil {
		fmt.Fprintf(&s, "Peers: `%s`, `%s`.\n", peerVersion(gcBin), peerVersion(apiBin))
	}
	return s.String()
}

// peerVersion is the binary's name and what its -version flag prints.
func peerVersion(bin string) string {
	if bin == "" {
		return "carbonapi not run"
	}
	out, err := exec.Command(bin, "-version").CombinedOutput()
	v := strings.Join(strings.Fields(string(out)), " ")
	if err != nil || v == "" {
		v = "version unknown"
	}
	return filepath.Base(bin) + " " + v
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
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, v)
}
