package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startRuns is how often each start variant runs (SHIPLOOP_BENCH_STARTS overrides).
func startRuns() int {
	if n, err := strconv.Atoi(os.Getenv("SHIPLOOP_BENCH_STARTS")); err == nil && n > 0 {
		return n
	}
	return 10
}

// idleFor is how long `shiploop up` idles after ready before its RSS is read.
const idleFor = 5 * time.Second

// BenchmarkColdStart starts the built binary with `shiploop up` on a fresh
// data directory (streams, SQLite files and migrations created from
// nothing) and on an existing one, and reads its memory after idling.
func BenchmarkColdStart(b *testing.B) {
	runs := startRuns()
	for range b.N {
		coldStart(b, runs)
	}
}

func coldStart(b *testing.B, runs int) {
	binary(b) // built before the clock starts
	cpu := startCPU()
	var freshReady, freshWall, warmReady, warmWall []time.Duration
	existing := b.TempDir()
	b.ResetTimer()
	start := func(dir string) *instance {
		inst, err := launch(b, dir)
		if err != nil {
			b.Fatal(err)
		}
		return inst
	}
	stop := func(inst *instance) {
		if err := inst.stop(); err != nil {
			b.Fatalf("stopping shiploop up: %v\nstderr:\n%s", err, inst.stderr)
		}
	}
	for i := range runs {
		inst := start(b.TempDir())
		freshReady = append(freshReady, time.Duration(inst.ReadyMS)*time.Millisecond)
		freshWall = append(freshWall, inst.Wall)
		stop(inst)

		dir := existing
		if i == 0 {
			stop(start(dir)) // creates it; not counted
		}
		inst = start(dir)
		warmReady = append(warmReady, time.Duration(inst.ReadyMS)*time.Millisecond)
		warmWall = append(warmWall, inst.Wall)
		stop(inst)
	}

	// Idle memory: a fresh start, then idleFor of nothing.
	inst := start(b.TempDir())
	time.Sleep(idleFor) // the measurement itself: memory after idling
	rss, err := inst.status("VmRSS")
	if err != nil {
		b.Fatal(err)
	}
	hwm, _ := inst.status("VmHWM")
	threads, _ := inst.status("Threads")
	stop(inst)
	b.StopTimer()

	fr, fw, wr, ww := summarize(freshReady), summarize(freshWall), summarize(warmReady), summarize(warmWall)
	b.ReportMetric(float64(fr.median)/1e6, "ready-median-ms")
	b.ReportMetric(float64(fw.median)/1e6, "exec-to-ready-median-ms")
	b.ReportMetric(float64(rss)/1024, "idle-RSS-MiB")

	var s strings.Builder
	fmt.Fprintf(&s, "`shiploop up --json` (built binary; every service, one agent and the embedded NATS in one process), %d starts per row, each stopped with SIGINT before the next; the binary and its files are in the page cache (no cache dropping on a shared machine). %s.\n\n",
		runs, measured(cpu, 0))
	s.WriteString("| what | min | median | p90 | max | goal | verdict |\n|---|---:|---:|---:|---:|---|---|\n")
	row := func(what string, st stats, goal string, ok bool) {
		v := "—"
		if goal != "" {
			v = verdict(ok)
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s | %s |\n", what, ms(st.min), ms(st.median), ms(st.p90), ms(st.max), goal, v)
	}
	row("fresh data dir: `ready_ms` printed by `up`", fr, "≤ 1 s, every start", fr.max <= time.Second)
	row("fresh data dir: exec → ready line read", fw, "≤ 1 s, every start", fw.max <= time.Second)
	row("existing data dir: `ready_ms`", wr, "", false)
	row("existing data dir: exec → ready line read", ww, "", false)
	fmt.Fprintf(&s, "\n| memory after ready + %s idle (fresh data dir) | value | goal | verdict |\n|---|---:|---|---|\n", idleFor)
	fmt.Fprintf(&s, "| VmRSS | %.1f MiB | ≤ 150 MB | %s |\n", float64(rss)/1024, verdict(rss*1024 <= 150e6))
	fmt.Fprintf(&s, "| VmHWM (peak RSS) | %.1f MiB | | |\n", float64(hwm)/1024)
	fmt.Fprintf(&s, "| threads | %d | | |\n", threads)
	b.Log("\n" + s.String())
	if err := writeSection("coldstart", s.String()); err != nil {
		b.Error(err)
	}
}
