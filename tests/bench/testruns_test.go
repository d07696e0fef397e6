package bench

// The test-runs service's benchmarks: ingesting a large JUnit report through
// the service's own path (Object Store → testruns-jobs consumer → parse →
// tests/test_results → testrun.finished), and TestHistory over millions of
// stored results on PostgreSQL.

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	testrunsv1 "github.com/shiploop/shiploop/proto/shiploop/testruns/v1"
	"github.com/shiploop/shiploop/services/testruns"
)

// benchEnvInt reads a positive integer knob, or returns def.
func benchEnvInt(name string, def int) int {
	if n, err := strconv.Atoi(strings.ReplaceAll(os.Getenv(name), "_", "")); err == nil && n > 0 {
		return n
	}
	return def
}

// junitReport is a generated report and what it holds.
type junitReport struct {
	path                                string
	size                                int64
	cases, suites                       int
	failed, errors, skipped, flaky, out int
}

// Words for names that look like a Java code base's tests.
var (
	trModules = []string{"billing", "payments", "accounts", "catalog", "orders", "shipping", "inventory", "pricing",
		"search", "notifications", "auth", "reporting", "tax", "returns", "loyalty", "checkout", "warehouse", "fraud",
		"ledger", "subscriptions", "invoices", "customers", "gateway", "scheduler"}
	trNouns = []string{"Invoice", "Order", "Payment", "Account", "Customer", "Discount", "Shipment", "Parcel", "Refund",
		"Ledger", "Currency", "TaxRate", "Coupon", "Basket", "Address", "Token", "Session", "Report", "Schedule", "Warehouse"}
	trVerbs = []string{"calculates", "rejects", "accepts", "rounds", "persists", "loads", "merges", "splits", "validates",
		"retries", "expires", "renders", "publishes", "cancels", "refunds", "applies", "ignores", "sorts"}
)

// writeJUnitReport writes a Surefire-style report of n cases: several
// suites (one per module), classes of 20 tests, 2% failures and 0.5% errors
// with stack traces (14–16 lines), 1% skipped, 0.2% flaky (passed after a failed rerun),
// 10% with system-out and 1% with system-err. The mix is fixed by a seed.
func writeJUnitReport(path string, n int) (junitReport, error) {
	f, err := os.Create(path)
	if err != nil {
		return junitReport{}, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(2026, 11))
	rep := junitReport{path: path, cases: n, suites: len(trModules)}
	stack := func(mod, cls string, depth int) string {
		var b strings.Builder
		for i := range depth {
			switch {
			case i < depth/2:
				fmt.Fprintf(&b, "\tat com.acme.%s.%s.%s(%s.java:%d)\n", mod, cls, strings.ToLower(trVerbs[(i+depth)%len(trVerbs)]), cls, 20+rng.IntN(400))
			default:
				fmt.Fprintf(&b, "\tat org.junit.platform.engine.support.hierarchical.NodeTestTask.executeRecursively(NodeTestTask.java:%d)\n", 100+i)
			}
		}
		return b.String()
	}
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"acme\" tests=\"%d\">\n", n)
	per := (n + len(trModules) - 1) / len(trModules)
	i := 0
	for s, mod := range trModules {
		count := min(per, n-i)
		if count <= 0 {
			rep.suites = s
			break
		}
		fmt.Fprintf(w, "  <testsuite name=\"com.acme.%s\" tests=\"%d\" time=\"%.3f\" timestamp=\"2026-11-25T10:00:00\" hostname=\"ci-runner-7\">\n", mod, count, float64(count)*0.011)
		fmt.Fprintf(w, "    <properties><property name=\"java.version\" value=\"21.0.5\"/><property name=\"module\" value=\"%s\"/></properties>\n", mod)
		cls := ""
		for k := range count {
			if k%20 == 0 {
				cls = trNouns[rng.IntN(len(trNouns))] + trNouns[rng.IntN(len(trNouns))] + "Test"
			}
			name := fmt.Sprintf("%s%sWhen%s_%d", trVerbs[rng.IntN(len(trVerbs))], trNouns[rng.IntN(len(trNouns))], trNouns[rng.IntN(len(trNouns))], i)
			fmt.Fprintf(w, "    <testcase name=\"%s\" classname=\"com.acme.%s.%s\" time=\"%.3f\"", name, mod, cls, rng.Float64()*0.05)
			body := ""
			switch r := rng.IntN(1000); {
			case r < 20:
				rep.failed++
				body = fmt.Sprintf("<failure message=\"expected: &lt;%d&gt; but was: &lt;%d&gt;\" type=\"org.opentest4j.AssertionFailedError\">org.opentest4j.AssertionFailedError: expected: &lt;%d&gt; but was: &lt;%d&gt;\n%s</failure>",
					r, r+1, r, r+1, stack(mod, cls, 16))
			case r < 25:
				rep.errors++
				body = fmt.Sprintf("<error message=\"Connection refused: localhost/127.0.0.1:5432\" type=\"java.net.ConnectException\">java.net.ConnectException: Connection refused\n%s</error>", stack(mod, cls, 14))
			case r < 35:
				rep.skipped++
				body = `<skipped message="requires Docker"/>`
			case r < 37:
				rep.flaky++
				body = fmt.Sprintf("<flakyFailure message=\"timed out after 5 seconds\" type=\"java.util.concurrent.TimeoutException\"><stackTrace>java.util.concurrent.TimeoutException: timed out after 5 seconds\n%s</stackTrace></flakyFailure>", stack(mod, cls, 12))
			}
			if rng.IntN(10) == 0 {
				rep.out++
				var b strings.Builder
				for l := range 2 + rng.IntN(3) {
					fmt.Fprintf(&b, "2026-11-25 10:%02d:%02d.%03d INFO  [main] c.a.%s.%sService - handled request %d in %d ms\n", l, rng.IntN(60), rng.IntN(1000), mod, cls, rng.IntN(100000), rng.IntN(50))
				}
				body += "<system-out><![CDATA[" + b.String() + "]]></system-out>"
			}
			if rng.IntN(100) == 0 {
				body += "<system-err>WARNING: An illegal reflective access operation has occurred</system-err>"
			}
			if body == "" {
				w.WriteString("/>\n")
			} else {
				w.WriteString(">" + body + "</testcase>\n")
			}
			i++
		}
		w.WriteString("  </testsuite>\n")
	}
	w.WriteString("</testsuites>\n")
	if err := w.Flush(); err != nil {
		return rep, err
	}
	st, err := f.Stat()
	if err != nil {
		return rep, err
	}
	rep.size = st.Size()
	return rep, f.Close()
}

// memPeak samples the Go heap while an ingest runs; the process's peak RSS
// comes from VmHWM, reset before the ingest through /proc/self/clear_refs.
type memPeak struct {
	stop      chan struct{}
	done      chan struct{}
	heapPeak  atomic.Uint64
	hwmReset  bool
	startHeap uint64
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startMemPeak() *memPeak {
	runtime.GC()
	debug.FreeOSMemory()
	m := &memPeak{stop: make(chan struct{}), done: make(chan struct{}), startHeap: heapObjects()}
	// "5" resets the peak resident set size (Linux ≥ 4.0).
	m.hwmReset = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	m.heapPeak.Store(m.startHeap)
	go func() {
		defer close(m.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				if h := heapObjects(); h > m.heapPeak.Load() {
					m.heapPeak.Store(h)
				}
			}
		}
	}()
	return m
}

// end returns the peak Go heap and the peak RSS (VmHWM) in bytes.
func (m *memPeak) end() (heap, rss uint64) {
	close(m.stop)
	<-m.done
	return m.heapPeak.Load(), procStatusKB("VmHWM") << 10
}

func procStatusKB(field string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// storedLog keeps the service's "report stored" log records (parse and
// write times of each report).
type storedLog struct {
	mu   sync.Mutex
	recs []map[string]string
}

func (l *storedLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }
func (l *storedLog) Handle(_ context.Context, r slog.Record) error {
	rec := map[string]string{"msg": r.Message, "level": r.Level.String()}
	r.Attrs(func(a slog.Attr) bool {
		rec[a.Key] = a.Value.String()
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, rec)
	return nil
}
func (l *storedLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *storedLog) WithGroup(string) slog.Handler      { return l }

// find returns the last record with this message and attribute value.
func (l *storedLog) find(msg, key, value string) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.recs) - 1; i >= 0; i-- {
		if l.recs[i]["msg"] == msg && l.recs[i][key] == value {
			return l.recs[i]
		}
	}
	return nil
}

// problems are the warnings and errors the service logged.
func (l *storedLog) problems() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if r["level"] != "INFO" {
			out = append(out, fmt.Sprintf("%s %s %s", r["level"], r["msg"], r["err"]))
		}
	}
	return out
}

// trService is the testruns service in process on an embedded NATS.
type trService struct {
	bus      *bus.Bus
	svc      *testruns.Service
	db       *store.DB
	obs      jetstream.ObjectStore
	log      *storedLog
	mu       sync.Mutex
	finished map[string]*eventsv1.TestRunFinished // by build id
}

func startTestRuns(b *testing.B, db *store.DB, run bool) *trService {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	bs := bustest.Start(b, bus.Options{Source: "/bench"})
	t := &trService{bus: bs, db: db, log: &storedLog{}, finished: map[string]*eventsv1.TestRunFinished{}}
	var err error
	t.svc, err = testruns.New(ctx, testruns.Config{DB: db, Bus: bs, Logger: slog.New(t.log)})
	if err != nil {
		b.Fatal(err)
	}
	t.obs, err = bs.JetStream().CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: testruns.ReportBucket, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	if run {
		ready := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := t.svc.Run(ctx); err != nil && ctx.Err() == nil {
				b.Errorf("testruns Run: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			err := bs.Watch(ctx, bus.WatchOptions{Filters: []string{bus.EventFilter("testrun", "")}, Ready: func() error { close(ready); return nil }}, func(ev bus.Event) error {
				if f, ok := ev.Data.(*eventsv1.TestRunFinished); ok {
					t.mu.Lock()
					t.finished[f.BuildId] = f
					t.mu.Unlock()
				}
				return nil
			})
			if err != nil && ctx.Err() == nil {
				b.Errorf("watching testrun events: %v", err)
			}
		}()
		<-ready
	}
	b.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return t
}

func (t *trService) send(b *testing.B, ev bus.Event) {
	b.Helper()
	if err := t.bus.Publish(context.Background(), ev); err != nil {
		b.Fatal(err)
	}
}

// startBuild plays the builds service for a build with one test job and
// takes that job as an agent would.
func (t *trService) startBuild(b *testing.B, repo, buildID, commit string) *eventsv1.Job {
	b.Helper()
	plan := &eventsv1.TestPlan{Steps: []*eventsv1.Step{{Name: "test", Commands: []string{"mvn -B test"}}},
		Reports: &eventsv1.TestReportGlobs{Junit: []string{"target/surefire-reports/*.xml"}}}
	chain := "chain-" + buildID
	t.send(b, bus.Event{Type: "build.created", Repository: repo, Subject: buildID, ChainID: chain, Data: &eventsv1.BuildCreated{
		BuildId: buildID, Repository: repo, Ref: "refs/heads/main", Commit: commit, Version: "1.0.0-" + buildID}})
	t.send(b, bus.Event{Type: "build.tests_planned", Repository: repo, Subject: buildID, ChainID: chain, Data: &eventsv1.BuildTestsPlanned{
		BuildId: buildID, Repository: repo, Ref: "refs/heads/main", Commit: commit, Version: "1.0.0-" + buildID, Plan: plan}})
	t.send(b, bus.Event{Type: "build.finished", Repository: repo, Subject: buildID, ChainID: chain, Data: &eventsv1.BuildFinished{
		BuildId: buildID, Repository: repo, Ref: "refs/heads/main", Commit: commit, Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var job *eventsv1.Job
	err := t.bus.Take(ctx, bus.JobConsumerConfig{Name: "bench-agent", Filters: []string{bus.JobFilter("test")}}, func(_ context.Context, j *bus.Job) error {
		if d, ok := j.Data.(*eventsv1.Job); ok && d.BuildId == buildID {
			job = d
			cancel()
		}
		return nil
	})
	if job == nil {
		b.Fatalf("no test job queued for build %s: %v; the service logged %v", buildID, err, t.log.problems())
	}
	return job
}

// ingestResult is one report ingested.
type ingestResult struct {
	label            string
	wall             time.Duration
	parse, write     string // from the service's log: parsing (waits for the writer left out), batch writes
	heapPeak, rssHWM uint64
	hwmReset         bool
	run              *eventsv1.TestRunFinished
	// CPU time used meanwhile by this process and by PostgreSQL's
	// processes, and the CPUs other processes kept busy on average.
	ownCPU, pgCPU time.Duration
	others        float64
}

// ingest stores the report as the job's artifact, reports the job finished
// and waits for testrun.finished; the clock and the memory peaks cover that.
func (t *trService) ingest(b *testing.B, rep junitReport, repo, buildID, commit string) ingestResult {
	b.Helper()
	job := t.startBuild(b, repo, buildID, commit)
	key := job.JobId + "/target/surefire-reports/TEST-acme.xml"
	f, err := os.Open(rep.path)
	if err != nil {
		b.Fatal(err)
	}
	_, err = t.obs.Put(context.Background(), jetstream.ObjectMeta{Name: key}, f)
	f.Close()
	if err != nil {
		b.Fatalf("putting the report in the Object Store: %v", err)
	}
	name := "target/surefire-reports/TEST-acme.xml"
	mem := startMemPeak()
	cpu, own, pg := startCPU(), ownCPU(), postgresCPU("")
	start := time.Now()
	t.send(b, bus.Event{Type: "job.finished", Repository: repo, Subject: job.JobId, Data: &eventsv1.JobFinished{
		JobId: job.JobId, BuildId: buildID, Repository: repo, Status: eventsv1.BuildStatus_BUILD_STATUS_FAILURE, FailedStep: "test",
		Reports: []*eventsv1.ReportFile{{Name: name, Kind: "junit", Key: key, Size: rep.size}}}})
	deadline := time.Now().Add(15 * time.Minute)
	var fin *eventsv1.TestRunFinished
	for fin == nil {
		if time.Now().After(deadline) {
			mem.end()
			b.Fatalf("no testrun.finished for build %s after 15 minutes; the service logged %v", buildID, t.log.problems())
		}
		time.Sleep(5 * time.Millisecond)
		t.mu.Lock()
		fin = t.finished[buildID]
		t.mu.Unlock()
	}
	wall := time.Since(start)
	// A postgres process that ended meanwhile takes its CPU time with it.
	res := ingestResult{wall: wall, run: fin, ownCPU: ownCPU() - own, pgCPU: max(0, postgresCPU("")-pg)}
	res.others = max(0, cpu.others(0)-res.pgCPU.Seconds()/wall.Seconds())
	res.heapPeak, res.rssHWM = mem.end()
	res.hwmReset = mem.hwmReset
	if rec := t.log.find("report stored", "run", fin.RunId); rec != nil {
		res.parse, res.write = rec["parse"], rec["write"]
	}
	// What a user would see: every case counted, every result kept.
	c := fin.Counts
	if c.GetTests() != int64(rep.cases) || c.GetFailed() != int64(rep.failed) || c.GetErrors() != int64(rep.errors) ||
		c.GetSkipped() != int64(rep.skipped) || c.GetFlaky() != int64(rep.flaky) ||
		c.GetPassed() != int64(rep.cases-rep.failed-rep.errors-rep.skipped) {
		b.Fatalf("testrun.finished counts %+v, want %d tests, %d failed, %d errors, %d skipped, %d flaky; error %q; the service logged %v",
			c, rep.cases, rep.failed, rep.errors, rep.skipped, rep.flaky, fin.Error, t.log.problems())
	}
	var stored int
	if err := t.db.QueryRow(`SELECT COUNT(*) FROM test_results WHERE run_id = $1`, fin.RunId).Scan(&stored); err != nil {
		b.Fatal(err)
	}
	if stored != rep.cases {
		b.Fatalf("%d results stored for run %s, want %d", stored, fin.RunId, rep.cases)
	}
	return res
}

// BenchmarkTestRunsIngest: a 100 MB JUnit report of 500,000 cases through
// the testruns service's own path, on SQLite and PostgreSQL. Goals: ≤ 10 s
// and ≤ 500 MB peak memory. SHIPLOOP_BENCH_INGEST_CASES sets the size.
func BenchmarkTestRunsIngest(b *testing.B) {
	n := benchEnvInt("SHIPLOOP_BENCH_INGEST_CASES", 500_000)
	genStart := time.Now()
	rep, err := writeJUnitReport(filepath.Join(b.TempDir(), "TEST-acme.xml"), n)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %s: %d cases, %.1f MiB in %s", rep.path, rep.cases, float64(rep.size)/(1<<20), time.Since(genStart).Round(time.Millisecond))
	type engineRun struct {
		engine  string
		skipped string
		results []ingestResult
	}
	var runs []*engineRun
	for _, engine := range []string{"sqlite", "postgres"} {
		er := &engineRun{engine: engine, skipped: "not run"}
		runs = append(runs, er)
		ok := b.Run(engine, func(b *testing.B) {
			var db *store.DB
			if engine == "postgres" {
				er.skipped = "skipped: PostgreSQL at " + storetest.PostgresURL() + " is unreachable (set SHIPLOOP_TEST_DATABASE_URL)"
				db = storetest.OpenPostgres(b, "testruns")
			} else {
				db = storetest.OpenSQLite(b, "testruns")
			}
			er.skipped = ""
			t := startTestRuns(b, db, true)
			// The first report brings 500,000 new tests; the next build's
			// report updates the same tests and adds to their history.
			for i, label := range []string{"first build (every test new)", "next build (same tests, history grows)"} {
				res := t.ingest(b, rep, "acme/shop", fmt.Sprintf("build-%s-%d", engine, i+1), fmt.Sprintf("%040x", i+1))
				res.label = label
				er.results = append(er.results, res)
				b.Logf("%s %s: %s (parse %s, write %s; CPU %s, postgres %s, others %.2f CPUs), peak heap %s, peak RSS %s", engine, label, res.wall.Round(time.Millisecond),
					res.parse, res.write, res.ownCPU.Round(time.Millisecond), res.pgCPU.Round(time.Millisecond), res.others, mib(res.heapPeak), mib(res.rssHWM))
				b.ReportMetric(res.wall.Seconds(), fmt.Sprintf("s-ingest%d", i+1))
				b.ReportMetric(float64(res.rssHWM)/(1<<20), fmt.Sprintf("MiB-rss%d", i+1))
			}
		})
		if !ok {
			return // a failed ingest has no figures to write
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "JUnit report of %s test cases (%.1f MiB: %d suites, %s failures and %s errors with stack traces, %s skipped, %s flaky reruns, %s with system-out), generated in a temp dir and put in the Object Store as an agent does. "+
		"The testruns service runs in process on an embedded NATS: its `testruns-jobs` consumer reads the report from the Object Store, parses it and writes `tests` and `test_results` in the job's transaction, then finishes the run. "+
		"The clock runs from publishing `job.finished` until `testrun.finished` is seen.\n\n",
		num(float64(rep.cases)), float64(rep.size)/(1<<20), rep.suites, num(float64(rep.failed)), num(float64(rep.errors)), num(float64(rep.skipped)), num(float64(rep.flaky)), num(float64(rep.out)))
	out.WriteString("Memory: *peak RSS* is the benchmark process's VmHWM, reset just before `job.finished` (`/proc/self/clear_refs`); the process also runs the embedded NATS server that serves the report. *Peak Go heap* is the largest `/memory/classes/heap/objects:bytes` sampled every 10 ms (live and not yet swept objects), the part the service's code controls.\n\n")
	out.WriteString("*Parse / write*: the JUnit parse runs on its own goroutine while the batches it hands over are written, so the two overlap; *parse* leaves out its waits for the writer, *write* is the time spent in batch statements. *CPU* is the CPU time this process (the service, NATS, the benchmark) and PostgreSQL's processes used during the ingest; *others* is how many of the machine's CPUs the remaining processes kept busy on average.\n\n")
	out.WriteString("| engine | report | job.finished → testrun.finished | parse / write | CPU: process / PostgreSQL | others | peak RSS | peak Go heap | goal ≤ 10 s | goal ≤ 500 MB |\n|---|---|---:|---|---|---:|---:|---:|---|---|\n")
	for _, er := range runs {
		name := map[string]string{"sqlite": "SQLite", "postgres": "PostgreSQL"}[er.engine]
		if er.skipped != "" {
			fmt.Fprintf(&out, "| %s | %s | | | | | | | not measured | not measured |\n", name, er.skipped)
			continue
		}
		for _, r := range er.results {
			rss := mib(r.rssHWM)
			if !r.hwmReset {
				rss += " (VmHWM not reset: since process start)"
			}
			pgCPU := "–"
			if er.engine == "postgres" {
				pgCPU = fmt.Sprintf("%.1f s", r.pgCPU.Seconds())
			}
			fmt.Fprintf(&out, "| %s | %s | %.2f s | %s / %s | %.1f s / %s | %.2f | %s | %s | %s | %s |\n", name, r.label, r.wall.Seconds(), seconds(r.parse), seconds(r.write),
				r.ownCPU.Seconds(), pgCPU, r.others, rss, mib(r.heapPeak), verdict(r.wall <= 10*time.Second), verdict(r.rssHWM <= 500_000_000))
		}
	}
	fmt.Fprintf(&out, "\nMeasured %s.\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	if err := writeSection("testruns-ingest", out.String()); err != nil {
		b.Fatal(err)
	}
}

// seconds writes a logged duration ("2.511s") as "2.51 s"; "–" when the
// service logged none.
func seconds(logged string) string {
	d, err := time.ParseDuration(logged)
	if err != nil {
		return "–"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// BenchmarkTestRunsHistory: TestHistory for one test over millions of stored
// results on PostgreSQL, through gRPC. Goal: p99 ≤ 50 ms.
// SHIPLOOP_BENCH_HISTORY_ROWS (default 10,000,000) sets the stored results,
// SHIPLOOP_BENCH_HISTORY_CALLS (default 200) the calls.
func BenchmarkTestRunsHistory(b *testing.B) {
	rows := benchEnvInt("SHIPLOOP_BENCH_HISTORY_ROWS", 10_000_000)
	calls := benchEnvInt("SHIPLOOP_BENCH_HISTORY_CALLS", 200)
	const tests = 10_000
	runs := max(1, rows/tests)
	rows = runs * tests
	db := storetest.OpenPostgres(b, "testruns")
	t := startTestRuns(b, db, false)
	ctx := context.Background()

	loadStart := time.Now()
	indexes, err := trLoadHistory(ctx, b, db, tests, runs)
	if err != nil {
		b.Fatal(err)
	}
	load := time.Since(loadStart)
	b.Logf("loaded %d results (%d tests × %d runs) in %s", rows, tests, runs, load.Round(time.Second))

	srv := grpc.NewServer()
	t.svc.RegisterGRPC(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := testrunsv1.NewTestRunServiceClient(conn)

	scansBefore, err := trScans(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	lastRun := trRunID(runs)
	cpu := startCPU()
	var took []time.Duration
	for i := range calls + 5 {
		k := rng.IntN(tests)
		req := &testrunsv1.TestHistoryRequest{Test: &testrunsv1.TestID{Repository: "acme/shop", Suite: trSuite(k), ClassName: trClass(k), Name: trName(k)}}
		start := time.Now()
		resp, err := client.TestHistory(ctx, req)
		d := time.Since(start)
		if err != nil {
			b.Fatalf("TestHistory %s: %v", req.Test.Name, err)
		}
		// What a user sees: a full page, newest first, of this test's runs.
		if len(resp.Entries) != min(50, runs) || resp.Entries[0].RunId != lastRun || resp.Stats.GetRuns() != int64(runs) ||
			(runs > 50) != (resp.NextPageToken != "") {
			b.Fatalf("TestHistory %s: %d entries, first run %q (want %q), stats %v, next page %q", req.Test.Name, len(resp.Entries), resp.Entries[0].GetRunId(), lastRun, resp.Stats, resp.NextPageToken)
		}
		for j := 1; j < len(resp.Entries); j++ {
			if resp.Entries[j].Time.AsTime().After(resp.Entries[j-1].Time.AsTime()) {
				b.Fatalf("TestHistory %s: entry %d is newer than entry %d", req.Test.Name, j, j-1)
			}
		}
		if i >= 5 { // the first calls open connections and prepare statements
			took = append(took, d)
		}
	}
	cpuNote := measured(cpu, 0)
	s := summarize(took)
	b.ReportMetric(float64(s.median)/1e6, "ms-p50")
	b.ReportMetric(float64(s.p99)/1e6, "ms-p99")

	// Which index served the calls: PostgreSQL's counters (they reach the
	// statistics views within a second or so).
	var scans trScanCounts
	for range 30 {
		scans, err = trScans(ctx, db)
		if err != nil {
			b.Fatal(err)
		}
		if scans.testIdx-scansBefore.testIdx >= int64(calls) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	plan, err := trExplain(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("EXPLAIN of the history query:\n%s", plan)

	var out strings.Builder
	fmt.Fprintf(&out, "%s results of %s tests × %s runs in `test_results` (PostgreSQL, the migrations' indexes: %s), loaded with `generate_series` in %s (setup, not measured; indexes built after the load, then ANALYZE). "+
		"Then %d `TestHistory` calls over gRPC (loopback, in process) for random tests, one after the other, each returning the newest page of 50 (after 5 warm-up calls).\n\n",
		num(float64(rows)), num(tests), num(float64(runs)), strings.Join(indexes, ", "), load.Round(time.Second), calls)
	out.WriteString("| measure | result | goal | verdict |\n|---|---|---|---|\n")
	fmt.Fprintf(&out, "| TestHistory, p50 / p90 / p99 / max | %s / %s / %s / %s | p99 ≤ 50 ms | %s |\n", ms(s.median), ms(s.p90), ms(s.p99), ms(s.max), verdict(s.p99 <= 50*time.Millisecond))
	fmt.Fprintf(&out, "| index scans of `test_results_test` (test_id, id) during the %d calls (warm-up included) | %d | one per call | %s |\n", calls+5, scans.testIdx-scansBefore.testIdx, verdict(scans.testIdx-scansBefore.testIdx >= int64(calls)))
	fmt.Fprintf(&out, "| sequential scans of `test_results` during the calls | %d | 0 | %s |\n", scans.seq-scansBefore.seq, verdict(scans.seq == scansBefore.seq))
	fmt.Fprintf(&out, "\nPlan of the history query for one test (`EXPLAIN ANALYZE`, the query of `TestHistory` in `services/testruns/grpc.go`):\n\n```\n%s\n```\n\n%s.\n", plan, cpuNote)
	if err := writeSection("testruns-history", out.String()); err != nil {
		b.Fatal(err)
	}
}

// Names of the k-th loaded test; the SQL of trLoadHistory builds the same.
func trSuite(k int) string { return fmt.Sprintf("com.acme.%s", trModules[k%len(trModules)]) }
func trClass(k int) string {
	return fmt.Sprintf("com.acme.%s.%sTest%d", trModules[k%len(trModules)], trNouns[(k/20)%len(trNouns)], k/20)
}
func trName(k int) string  { return fmt.Sprintf("handles%sCase_%d", trNouns[k%len(trNouns)], k) }
func trRunID(r int) string { return fmt.Sprintf("00000000-0000-7000-8000-%012d", r) }
func trSQLArray(a []string) string {
	return "ARRAY['" + strings.Join(a, "','") + "']"
}

// trLoadHistory fills test_runs, tests and test_results as `runs` builds of
// a repository with `tests` tests would have, oldest first. The secondary
// indexes of test_results are dropped for the load and built again from
// their own definitions (as the migrations made them): building an index
// once is much faster than 10 million inserts into it.
func trLoadHistory(ctx context.Context, b *testing.B, db *store.DB, tests, runs int) ([]string, error) {
	// One connection, so that its statistics (CREATE INDEX reads the table
	// sequentially) can be flushed before the calls are counted.
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	exec := func(q string, args ...any) error {
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("loading history: %w\n%s", err, q)
		}
		return nil
	}
	idx, err := conn.QueryContext(ctx, `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'test_results' AND indexname NOT LIKE '%_pkey' ORDER BY indexname`)
	if err != nil {
		return nil, err
	}
	var names, defs []string
	for idx.Next() {
		var n, d string
		if err := idx.Scan(&n, &d); err != nil {
			idx.Close()
			return nil, err
		}
		names, defs = append(names, "`"+n+"`"), append(defs, d)
	}
	idx.Close()
	for _, n := range names {
		if err := exec(`DROP INDEX ` + strings.Trim(n, "`")); err != nil {
			return nil, err
		}
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	mods, nouns := trSQLArray(trModules), trSQLArray(trNouns)
	if err := exec(`INSERT INTO test_runs (id, build_id, repository, ref, commit_sha, version, status, jobs_total, jobs_done, tests, passed, started_at, finished_at)
		SELECT '00000000-0000-7000-8000-' || lpad(r::text, 12, '0'), 'build-' || r, 'acme/shop', 'refs/heads/main', md5(r::text) || substr(md5('c' || r), 1, 8),
			'1.0.' || r, 2, 1, 1, $1::bigint, $1::bigint, $2::bigint + r * 600000000000, $2::bigint + r * 600000000000 + 300000000000
		FROM generate_series(1, $3::int) r`, tests, base, runs); err != nil {
		return nil, err
	}
	if err := exec(fmt.Sprintf(`INSERT INTO tests (repository, suite, class_name, name, runs, failures, total_duration_ns, last_status, first_seen, last_seen)
		SELECT 'acme/shop', 'com.acme.' || (%[1]s)[k %% %[3]d + 1], 'com.acme.' || (%[1]s)[k %% %[3]d + 1] || '.' || (%[2]s)[(k / 20) %% %[4]d + 1] || 'Test' || (k / 20),
			'handles' || (%[2]s)[k %% %[4]d + 1] || 'Case_' || k, $1::bigint, 0, $1::bigint * 12000000, 'passed', $2::bigint, $3::bigint
		FROM generate_series(0, $4::int - 1) k ORDER BY k`, mods, nouns, len(trModules), len(trNouns)), runs, base, base+int64(runs)*600_000_000_000, tests); err != nil {
		return nil, err
	}
	var first int64
	if err := conn.QueryRowContext(ctx, `SELECT MIN(id) FROM tests`).Scan(&first); err != nil {
		return nil, err
	}
	// Chunks of about a million rows, run by run as ingest writes them.
	step := max(1, 1_000_000/tests)
	for r := 1; r <= runs; r += step {
		last := min(runs, r+step-1)
		if err := exec(`INSERT INTO test_results (test_id, run_id, job_id, attempt, commit_sha, status, duration_ns, message, details, created_at)
			SELECT $1::bigint + k, '00000000-0000-7000-8000-' || lpad(r::text, 12, '0'), 'job-' || r, 1, md5(r::text) || substr(md5('c' || r), 1, 8),
				CASE WHEN (k * 7 + r) % 97 = 0 THEN 'failed' ELSE 'passed' END, 1000000 + (k * 31 + r) % 50000000,
				CASE WHEN (k * 7 + r) % 97 = 0 THEN 'expected: <' || r || '> but was: <' || (r + 1) || '>' ELSE '' END,
				CASE WHEN (k * 7 + r) % 97 = 0 THEN repeat(E'\tat com.acme.Service.handle(Service.java:42)\n', 20) ELSE '' END,
				$2::bigint + r * 600000000000 + 200000000000
			FROM generate_series($3::int, $4::int) r, generate_series(0, $5::int - 1) k
			ORDER BY r, k`, first, base, r, last, tests); err != nil {
			return nil, err
		}
		if done := int64(last) * int64(tests); last == runs || (r/step)%5 == 0 {
			b.Logf("history: %d of %d results loaded", done, int64(runs)*int64(tests))
		}
	}
	for _, d := range defs {
		if err := exec(d); err != nil {
			return nil, err
		}
	}
	if err := exec(`ANALYZE test_runs; ANALYZE tests; ANALYZE test_results`); err != nil {
		return nil, err
	}
	// PostgreSQL ≥ 15; older servers report the counters within seconds anyway.
	_, _ = conn.ExecContext(ctx, `SELECT pg_stat_force_next_flush()`)
	_, _ = conn.ExecContext(ctx, `SELECT 1`)
	return names, nil
}

type trScanCounts struct{ testIdx, seq int64 }

// trScans reads how often test_results was read sequentially and by its
// (test_id, id) index.
func trScans(ctx context.Context, db *store.DB) (trScanCounts, error) {
	var c trScanCounts
	err := db.QueryRowContext(ctx, `SELECT
			(SELECT COALESCE(seq_scan, 0) FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = 'test_results'),
			(SELECT COALESCE(idx_scan, 0) FROM pg_stat_user_indexes WHERE schemaname = current_schema() AND indexrelname = 'test_results_test')`).Scan(&c.seq, &c.testIdx)
	if err == sql.ErrNoRows {
		err = nil
	}
	return c, err
}

// trExplain shows how PostgreSQL runs TestHistory's query (the text of
// services/testruns/grpc.go) for the middle test.
func trExplain(ctx context.Context, db *store.DB) (string, error) {
	var id int64
	if err := db.QueryRowContext(ctx, `SELECT id FROM tests ORDER BY id OFFSET (SELECT COUNT(*) / 2 FROM tests) LIMIT 1`).Scan(&id); err != nil {
		return "", err
	}
	rows, err := db.QueryContext(ctx, fmt.Sprintf(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
		SELECT r.id, r.run_id, tr.build_id, r.commit_sha, tr.ref, r.status, r.duration_ns, r.message, r.flaky, r.created_at
		FROM test_results r JOIN test_runs tr ON tr.id = r.run_id WHERE r.test_id = %d AND r.id < %d ORDER BY r.id DESC LIMIT 51`, id, int64(1<<62-1)))
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return "", err
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n"), rows.Err()
}
