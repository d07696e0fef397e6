package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to create the run's own database
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	"github.com/shiploop/shiploop/pkg/testfixture"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// The error-intake goals: 5,000 events/s in and stored, p99 ≤ 50 ms at the
// intake, and the process under 1 GB (the reliability issue's bound).
const (
	etGoalRate = 5000
	etGoalP99  = 50 * time.Millisecond
	etGoalRSS  = 1 << 30
	etClients  = 32
)

// etSetup is one way of running the error intake.
type etSetup struct {
	name  string // the table's column
	key   string // the sub-benchmark's name
	serve bool   // `shiploop serve errortrack` on a NATS server in this process, else `shiploop up`
	pg    bool   // PostgreSQL, in a database of its own, else SQLite in the data dir
}

// etResult is what one setup measured.
type etResult struct {
	skipped            string
	intake, end        time.Duration
	intakeRate, stored float64
	left               int64         // events not yet stored when the intake ended
	drain              time.Duration // from then until all were stored
	lat                stats
	rssKB              int64 // VmHWM of the shiploop process
	cpu, pgCPU         time.Duration
	others             float64
}

// BenchmarkErrortrackIngest posts sentry-go-shaped error envelopes (the
// captured 1.7 KB chained error, each with its own event id) over HTTP from
// 32 clients, and measures the intake (each 200 means the envelope is
// durable on JetStream) and the end-to-end rate until every event is grouped
// and stored, counted once. It runs `shiploop up` on SQLite, and `shiploop
// serve errortrack` (NATS in this process) on SQLite and on PostgreSQL, so
// the two engines compare on the same footing. Figures go to
// docs/benchmarks.md. SHIPLOOP_BENCH_ERRORTRACK_EVENTS sets the number of
// events (default 20,000); SHIPLOOP_BENCH_PPROF_DIR saves a CPU profile of
// each shiploop process (SHIPLOOP_BENCH_PPROF_SECONDS long, default 10)
// taken from the start of the intake, or from its end with
// SHIPLOOP_BENCH_PPROF_AFTER_INTAKE=1 (the consumer alone).
func BenchmarkErrortrackIngest(b *testing.B) {
	n := etEnvInt(b, "SHIPLOOP_BENCH_ERRORTRACK_EVENTS", 20_000)
	tmpl, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "testdata", "sentry", "captured", "sentry-go-0.50.0", "01_error_chained.envelope"))
	if err != nil {
		testfixture.Missing(b, "shared Sentry fixtures: %v", err)
	}
	binary(b) // built before any clock starts
	setups := []etSetup{
		{name: "SQLite, `up`", key: "sqlite-up"},
		{name: "SQLite, `serve`", key: "sqlite-serve", serve: true},
		{name: "PostgreSQL, `serve`", key: "postgres-serve", serve: true, pg: true},
	}
	results := make([]etResult, len(setups))
	size := 0
	for i, su := range setups {
		results[i].skipped = "not run"
		b.Run(su.key, func(b *testing.B) {
			var sz int
			results[i], sz = etRun(b, su, tmpl, n)
			size = max(size, sz)
			if results[i].skipped != "" {
				b.Skip(results[i].skipped)
			}
			r := results[i]
			b.Logf("%s: intake %s events/s (p99 %s), stored %s events/s (%d left after the intake, stored in %s), VmHWM %.0f MiB, CPU %s (PostgreSQL %s), others %.2f CPUs",
				su.name, num(r.intakeRate), ms(r.lat.p99), num(r.stored), r.left, ms(r.drain), float64(r.rssKB)/1024, r.cpu.Round(10*time.Millisecond), r.pgCPU.Round(10*time.Millisecond), r.others)
			b.ReportMetric(r.intakeRate, "intake-events/s")
			b.ReportMetric(r.stored, "stored-events/s")
			b.ReportMetric(float64(r.lat.p99)/1e6, "p99-ms")
			b.ReportMetric(float64(r.rssKB)/1024, "MiB-hwm")
		})
	}
	for i, r := range results {
		if r.skipped == "not run" {
			b.Logf("%s was not run (-bench filter): docs/benchmarks.md left as it was", setups[i].key)
			return
		}
	}
	if err := writeSection("errortrack-ingest", etReport(setups, results, n, size)); err != nil {
		b.Fatal(err)
	}
}

func etReport(setups []etSetup, results []etResult, n, size int) string {
	var out strings.Builder
	fmt.Fprintf(&out, "%s sentry-go-shaped error envelopes (%d bytes each, one chained error with a stack, each with its own event id: one issue), %d concurrent HTTP clients. "+
		"`up` is everything in one process on its embedded NATS; `serve` is `shiploop serve errortrack` on a NATS server in the benchmark's process (TCP on loopback), "+
		"on SQLite in its data dir or on PostgreSQL %s (local, in a database of its own). "+
		"*Stored* runs until the issue's times_seen, as ListIssues answers it (polled every 10 ms), equals the events sent. "+
		"*VmHWM* is the shiploop process's peak RSS (with `serve` the NATS server is not in it). *CPU* is the shiploop process's CPU time and PostgreSQL's (the backends of the run's database and the server's shared processes); *others* is how many of the %d CPUs other processes kept busy on average: other work on the machine, not this benchmark's process (its clients and, with `serve`, the NATS server).\n\n",
		num(float64(n)), size, etClients, etPostgresVersion(), runtime.NumCPU())
	out.WriteString("| measure | goal |")
	for _, su := range setups {
		fmt.Fprintf(&out, " %s |", su.name)
	}
	out.WriteString("\n|---|---|")
	for range setups {
		out.WriteString("---|")
	}
	first := true
	row := func(measure, goal string, cell func(r etResult) string) {
		fmt.Fprintf(&out, "\n| %s | %s |", measure, goal)
		for _, r := range results {
			if r.skipped != "" && first {
				fmt.Fprintf(&out, " %s |", r.skipped)
				continue
			}
			if r.skipped != "" {
				out.WriteString(" – |")
				continue
			}
			fmt.Fprintf(&out, " %s |", cell(r))
		}
	}
	row("intake: 200 (durable on JetStream)", "≥ 5,000 events/s", func(r etResult) string {
		return fmt.Sprintf("%s events/s, %s", num(r.intakeRate), verdict(r.intakeRate >= etGoalRate))
	})
	first = false
	row("intake latency p50 / p90 / p99", "p99 ≤ 50 ms", func(r etResult) string {
		return fmt.Sprintf("%s / %s / %s, %s", ms(r.lat.median), ms(r.lat.p90), ms(r.lat.p99), verdict(r.lat.p99 <= etGoalP99))
	})
	row("end to end: parsed, grouped, stored", "≥ 5,000 events/s", func(r etResult) string {
		return fmt.Sprintf("%s events/s, %s", num(r.stored), verdict(r.stored >= etGoalRate))
	})
	row("not yet stored when the intake ended", "", func(r etResult) string {
		return fmt.Sprintf("%s events, stored in %s", num(float64(r.left)), ms(r.drain))
	})
	row("peak RSS (VmHWM)", "≤ 1 GB", func(r etResult) string {
		return fmt.Sprintf("%.0f MiB, %s", float64(r.rssKB)/1024, verdict(r.rssKB<<10 <= etGoalRSS))
	})
	row("CPU: shiploop / PostgreSQL; others", "", func(r etResult) string {
		pg := "–"
		if r.pgCPU > 0 {
			pg = fmt.Sprintf("%.1f s", r.pgCPU.Seconds())
		}
		return fmt.Sprintf("%.1f s / %s; %.2f CPUs", r.cpu.Seconds(), pg, r.others)
	})
	fmt.Fprintf(&out, "\n\nMeasured %s. Peers: Bugsink claims about 30 events/s on 2 vCPU; Telebugs about 50/s end to end.\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	return out.String()
}

// etRun measures one setup; it also returns the size of one envelope.
func etRun(b *testing.B, su etSetup, tmpl []byte, n int) (etResult, int) {
	var res etResult
	var dbName string // PostgreSQL's database, "" on SQLite
	args := []string{"--json", "--data-dir", b.TempDir(), "--grpc-listen", "127.0.0.1:0"}
	if su.serve {
		emb, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: b.TempDir(), Listen: "127.0.0.1:0", ServerName: "bench-errortrack"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(emb.Shutdown)
		args = append([]string{"serve", "--nats-url", emb.ClientURL()}, args...)
		if su.pg {
			dbURL, name, skip := etDatabase(b)
			if skip != "" {
				res.skipped = skip
				return res, 0
			}
			dbName = name
			args = append(args, "--database-url", dbURL)
		}
	} else {
		args = append([]string{"up"}, args...)
	}
	addr := freeAddr(b)
	args = append(args, "--http-listen", addr)
	var env []string
	var pprofAddr string
	profDir := os.Getenv("SHIPLOOP_BENCH_PPROF_DIR")
	if profDir != "" {
		pprofAddr = freeAddr(b)
		env = append(env, "SHIPLOOP_PPROF_LISTEN="+pprofAddr)
	}
	if su.serve {
		args = append(args, "errortrack")
	}
	inst := etStart(b, args, env)
	cl := errortrackv1.NewErrorServiceClient(inst.conn)
	ctx := context.Background()
	pr, err := cl.CreateProject(ctx, &errortrackv1.CreateProjectRequest{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	key, pid := pr.GetKey().GetPublicKey(), pr.GetProject().GetId()
	target := fmt.Sprintf("%s/api/%d/envelope/", inst.HTTPURL, pid)
	body := bytes.ReplaceAll(tmpl, []byte("ebc4a82cdbc040f0a88539b6acca6edf"), []byte("%032x"))
	body = bytes.Replace(body, []byte("http://publickey123@127.0.0.1:18999/42"), fmt.Appendf(nil, "http://%s@%s/%d", key, addr, pid), 1)
	body = bytes.ReplaceAll(body, []byte("%"), []byte("%%"))
	body = bytes.ReplaceAll(body, []byte("%%032x"), []byte("%032x"))
	// The bodies are made before the clock starts: the clients share the
	// machine with the server, and formatting is not what is measured.
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, string(body), i+1, i+1)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: etClients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	lat := make([]time.Duration, n)
	var failures sync.Map
	var wg sync.WaitGroup
	next := make(chan int)

	cpu := startCPU()
	pgCPU := func() time.Duration {
		if !su.pg {
			return 0
		}
		return postgresCPU(dbName)
	}
	cpu0, pg0 := procCPU(inst.cmd.Process.Pid), pgCPU()
	var profiled chan error
	profile := func() {
		profiled = make(chan error, 1)
		go func() { profiled <- etProfile(pprofAddr, filepath.Join(profDir, "errortrack-"+su.key+".pprof")) }()
	}
	afterIntake := os.Getenv("SHIPLOOP_BENCH_PPROF_AFTER_INTAKE") != ""
	if profDir != "" && !afterIntake {
		profile()
	}
	start := time.Now()
	for range etClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				req, _ := http.NewRequest(http.MethodPost, target, bytes.NewReader(bodies[i]))
				req.Header.Set("X-Sentry-Auth", "Sentry sentry_version=7, sentry_client=sentry.go/0.50.0, sentry_key="+key)
				req.Header.Set("Content-Type", "application/x-sentry-envelope")
				t0 := time.Now()
				resp, err := client.Do(req)
				lat[i] = time.Since(t0)
				if err != nil {
					failures.Store(i, err.Error())
					continue
				}
				if resp.StatusCode != http.StatusOK {
					failures.Store(i, resp.Status)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	res.intake = time.Since(start)
	if profDir != "" && afterIntake {
		profile()
	}
	failed := 0
	failures.Range(func(k, v any) bool { failed++; b.Logf("request %v: %v", k, v); return failed < 5 })
	if failed > 0 {
		b.Fatalf("%d requests failed", failed)
	}
	// Until every event is grouped and stored.
	deadline := time.Now().Add(10 * time.Minute)
	storedAtIntake := int64(-1)
	var stored int64
	for {
		resp, err := cl.ListIssues(ctx, &errortrackv1.ListIssuesRequest{Project: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		stored = 0
		for _, is := range resp.GetIssues() {
			stored += is.GetTimesSeen()
		}
		if storedAtIntake < 0 {
			storedAtIntake = stored
		}
		if stored >= int64(n) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d events stored after 10 minutes", stored, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.end = time.Since(start)
	res.left, res.drain = int64(n)-storedAtIntake, res.end-res.intake
	res.cpu = procCPU(inst.cmd.Process.Pid) - cpu0
	res.pgCPU = pgCPU() - pg0
	res.others = cpu.others(res.cpu + res.pgCPU)
	if stored != int64(n) {
		b.Fatalf("times_seen adds up to %d for %d events sent once each: counted twice", stored, n)
	}
	if profiled != nil {
		if err := <-profiled; err != nil {
			b.Errorf("CPU profile: %v", err)
		}
	}
	if res.rssKB, err = inst.status("VmHWM"); err != nil {
		b.Fatal(err)
	}
	res.lat = summarize(lat)
	res.intakeRate = float64(n) / res.intake.Seconds()
	res.stored = float64(n) / res.end.Seconds()
	return res, len(bodies[0])
}

// etStart runs the shiploop binary with args (and env added to this
// process's) and waits for its --json ready line; it is stopped at cleanup.
// Unlike launch it runs any command, not only `up`.
func etStart(b *testing.B, args, env []string) *instance {
	b.Helper()
	cmd := exec.Command(binary(b), args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	inst := &instance{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = inst.stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() {
			ready <- fmt.Errorf("exited before it was ready")
			return
		}
		ready <- json.Unmarshal(sc.Bytes(), inst)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err = <-ready:
	case <-time.After(30 * time.Second):
		err = fmt.Errorf("not ready after 30s")
	}
	if err == nil {
		inst.conn, err = grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b.Fatalf("shiploop %s: %v\nstderr:\n%s", args[0], err, inst.stderr)
	}
	inst.client = buildsv1.NewBuildServiceClient(inst.conn)
	b.Cleanup(func() {
		if err := inst.stop(); err != nil {
			b.Errorf("stopping shiploop %s: %v\nstderr:\n%s", args[0], err, inst.stderr)
		}
	})
	return inst
}

// etDatabase creates a database of its own on the PostgreSQL test server
// (`serve` keeps errortrack's tables in the schema "errortrack", so a
// database per run keeps runs apart) and drops it at cleanup. When the
// server is unreachable it returns why, to be reported as skipped, except
// with CI=true, where the benchmark fails.
func etDatabase(b *testing.B) (dbURL, name, skip string) {
	b.Helper()
	adminURL := storetest.PostgresURL()
	u, err := url.Parse(adminURL)
	if err != nil {
		b.Fatalf("SHIPLOOP_TEST_DATABASE_URL: %v", err)
	}
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		msg := "skipped: PostgreSQL at " + u.Redacted() + " is unreachable (set SHIPLOOP_TEST_DATABASE_URL)"
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			b.Fatalf("%s: %v (CI=true: the PostgreSQL side must run)", msg, err)
		}
		b.Logf("%s: %v", msg, err)
		return "", "", msg
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	name = "shiploop_bench_" + hex.EncodeToString(r[:])
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		b.Fatalf("create database %s: %v", name, err)
	}
	// Registered before the instance is started: cleanups run last-in
	// first-out, so the database is dropped after shiploop has stopped.
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
			b.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String(), name, ""
}

// etPostgresVersion names the PostgreSQL server the benchmark ran against.
func etPostgresVersion() string {
	db, err := sql.Open("pgx", storetest.PostgresURL())
	if err != nil {
		return ""
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var v string
	if db.QueryRowContext(ctx, `SHOW server_version`).Scan(&v) != nil {
		return ""
	}
	v, _, _ = strings.Cut(v, " ")
	return v
}

// postgresCPU is the CPU time (user and system, children left out) of the
// PostgreSQL server's processes on this machine: with database "", all of
// them; otherwise the shared ones (the postmaster, the WAL writer, the
// checkpointer…) and the backends working for database (other databases'
// backends are other work on the machine).
func postgresCPU(database string) time.Duration {
	dirs, _ := os.ReadDir("/proc")
	var sum int64
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		st := string(b)
		open, end := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if open < 0 || end < open || st[open+1:end] != "postgres" {
			continue
		}
		// A backend's title is "postgres: 15/main: user database host(port) state".
		cmd, _ := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		title := strings.ReplaceAll(string(cmd), "\x00", " ")
		perDatabase := strings.Contains(title, "(") || strings.Contains(title, "[local]") || strings.Contains(title, "autovacuum worker")
		if perDatabase && database != "" && !slices.Contains(strings.Fields(title), database) {
			continue
		}
		f := strings.Fields(st[end+2:])   // from field 3 on
		for _, i := range []int{11, 12} { // utime, stime (fields 14, 15)
			n, _ := strconv.ParseInt(f[i], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum) * time.Second / 100 // USER_HZ
}

// etProfile saves a CPU profile of the process serving pprof at addr.
func etProfile(addr, path string) error {
	secs := 10
	if v, err := strconv.Atoi(os.Getenv("SHIPLOOP_BENCH_PPROF_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /debug/pprof/profile: %s", resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func etEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
