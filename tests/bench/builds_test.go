package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// BenchmarkBuildsBurst pushes 100 builds at once (each to a branch of its
// own, so none supersedes another) at `shiploop up --agents 4` and measures
// the platform's share of each build's wait: job queued → an agent starts
// it, counted from when one of the 4 slots was free (dispatch). It checks
// that no build is lost.
func BenchmarkBuildsBurst(b *testing.B) {
	const builds, slots = 100, 4
	for range b.N {
		cpu := startCPU()
		inst := startUp(b, "--agents", fmt.Sprint(slots))
		repo := newRepo(b, map[string]string{".shiploop.yml": "steps:\n  - name: quick\n    commands: [\"true\"]\n"})
		commits := repo.commits(builds)
		const name = "bench/burst"
		secret := inst.register(b, name, repo)

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		st, err := inst.client.WatchEvents(ctx, &buildsv1.WatchEventsRequest{Repository: name})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Header(); err != nil {
			b.Fatal(err)
		}
		type rec struct{ queued, started, finished time.Time }
		var mu sync.Mutex
		jobs := map[string]*rec{}     // by job id
		finished := map[string]bool{} // build ids
		done := make(chan struct{})
		go func() {
			for {
				r, err := st.Recv()
				if err != nil {
					return
				}
				ev := r.GetEvent()
				mu.Lock()
				switch strings.TrimSuffix(strings.TrimPrefix(ev.GetType(), "dev.shiploop."), ".v1") {
				case "job.queued":
					jobs[ev.GetSubject()] = &rec{queued: ev.GetTime().AsTime()}
				case "job.started":
					if j := jobs[ev.GetSubject()]; j != nil {
						j.started = ev.GetTime().AsTime()
					}
				case "job.finished":
					if j := jobs[ev.GetSubject()]; j != nil {
						j.finished = ev.GetTime().AsTime()
					}
				case "build.finished":
					var bf eventsv1.BuildFinished
					if ev.GetData().UnmarshalTo(&bf) == nil && bf.GetStatus() == eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
						finished[bf.GetBuildId()] = true
					}
					if len(finished) == builds {
						close(done)
					}
				}
				mu.Unlock()
			}
		}()

		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, builds)
		for i, c := range commits {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := inst.push(name, secret, fmt.Sprintf("burst-%d", i), fmt.Sprintf("refs/heads/b%03d", i), zero, c); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			mu.Lock()
			b.Fatalf("only %d of %d builds succeeded within 5 minutes", len(finished), builds)
		}
		total := time.Since(start)
		others := cpu.others(0)

		mu.Lock()
		// Dispatch: queued → started, counting only the time a slot was free:
		// a job waits for the earliest finish among the jobs running when it
		// was queued once all slots are taken.
		var ends []time.Time
		for _, j := range jobs {
			ends = append(ends, j.finished)
		}
		var dispatch []time.Duration
		for _, j := range jobs {
			// The slot that took this job became free at the latest of its
			// queue time and the finish of a job that ended just before it started.
			free := j.queued
			for _, e := range ends {
				if e.After(free) && !e.After(j.started) {
					free = e
				}
			}
			dispatch = append(dispatch, j.started.Sub(free))
		}
		mu.Unlock()
		d := summarize(dispatch)
		var s strings.Builder
		fmt.Fprintf(&s, "%d builds pushed at once (each to its own branch) to `shiploop up --agents %d` (one built-in agent, %d slots); a one-step job (`true`). Measured %s; other processes kept %.2f of the 2 CPUs busy meanwhile.\n\n",
			builds, slots, slots, time.Now().UTC().Format("2006-01-02 15:04 MST"), others)
		fmt.Fprintf(&s, "| measure | median | p90 | p99 | max | goal p99 ≤ 100 ms |\n|---|---:|---:|---:|---:|---|\n")
		fmt.Fprintf(&s, "| dispatch: job queued (or a slot freed, whichever is later) → agent starts it | %s | %s | %s | %s | %s |\n",
			ms(d.median), ms(d.p90), ms(d.p99), ms(d.max), verdict(d.p99 <= 100*time.Millisecond))
		fmt.Fprintf(&s, "\nAll %d builds succeeded, none lost; %s from the first push to the last build finished (%.1f builds/s end to end).\n",
			builds, ms(total), float64(builds)/total.Seconds())
		b.ReportMetric(float64(d.median)/1e6, "dispatch-median-ms")
		b.ReportMetric(float64(d.p99)/1e6, "dispatch-p99-ms")
		b.ReportMetric(float64(builds)/total.Seconds(), "builds/s")
		b.Log("\n" + s.String())
		if err := writeSection("builds-burst", s.String()); err != nil {
			b.Log(err)
		}
	}
}

// BenchmarkLogThroughput has a step print a million lines and a live
// `StreamLogs` follower read them, and reports lines/s at the follower and
// the peak memory of the process (the agent spills the log to a file and
// appends it to the Object Store). A second run prints ten times as many
// lines: memory independent of the log's length means its peak stays
// within 10 % of the first one's. SHIPLOOP_BENCH_LOG_LINES sets the two
// sizes ("1000000,10000000" by default); SHIPLOOP_BENCH_PREV_BIN, a
// shiploop binary built from the previous code, runs each size with it
// too, right before this code's run, for a side-by-side table.
func BenchmarkLogThroughput(b *testing.B) {
	sizes := []int{1_000_000, 10_000_000}
	if v := os.Getenv("SHIPLOOP_BENCH_LOG_LINES"); v != "" {
		sizes = sizes[:0]
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("SHIPLOOP_BENCH_LOG_LINES=%q: want two line counts", v)
			}
			sizes = append(sizes, n)
		}
		if len(sizes) != 2 {
			b.Fatalf("SHIPLOOP_BENCH_LOG_LINES=%q: want two line counts", v)
		}
	}
	prev := os.Getenv("SHIPLOOP_BENCH_PREV_BIN")
	type result struct {
		rate float64
		hwm  int64
		load string
	}
	run := func(bin string, lines int) result {
		launchBinary = bin
		defer func() { launchBinary = "" }()
		rate, hwm := followLog(b, lines)
		return result{rate, hwm, loadAvg()}
	}
	for range b.N {
		cpu := startCPU()
		before := loadAvg()
		var now, old [2]result
		for i, n := range sizes {
			if prev != "" {
				old[i] = run(prev, n)
			}
			now[i] = run("", n)
		}
		ratio := func(r [2]result) float64 { return float64(r[1].hwm) / float64(r[0].hwm) }
		mib := func(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
		var s strings.Builder
		fmt.Fprintf(&s, "One step prints N lines (`seq`) under `shiploop up`; a live `StreamLogs` follower (gRPC, follow, in the benchmark's process) reads them, each line checked in order. Peak RSS is `shiploop up`'s VmHWM (agent, server and embedded NATS in one process). A fresh `shiploop up` per run. Measured %s; other processes kept %.2f of the 2 CPUs busy meanwhile; load average (1/5/15 min) before: %s, after: %s.\n\n",
			time.Now().UTC().Format("2006-01-02 15:04 MST"), cpu.others(0), before, loadAvg())
		fmt.Fprintf(&s, "| measure | code | %s lines | %s lines | goal |\n|---|---|---:|---:|---|\n", num(float64(sizes[0])), num(float64(sizes[1])))
		if prev != "" {
			fmt.Fprintf(&s, "| lines/s at the live follower | previous | %s | %s | |\n", num(old[0].rate), num(old[1].rate))
		}
		fmt.Fprintf(&s, "| lines/s at the live follower | this | %s | %s | ≥ 200,000: %s |\n", num(now[0].rate), num(now[1].rate), verdict(now[0].rate >= 200_000 && now[1].rate >= 200_000))
		if prev != "" {
			fmt.Fprintf(&s, "| peak RSS of `shiploop up` | previous | %s | %s | ratio %.2f |\n", mib(old[0].hwm), mib(old[1].hwm), ratio(old))
		}
		fmt.Fprintf(&s, "| peak RSS of `shiploop up` | this | %s | %s | independent of the length — within 10 %%: ratio %.2f, %s |\n",
			mib(now[0].hwm), mib(now[1].hwm), ratio(now), verdict(ratio(now) <= 1.10 && ratio(now) >= 1/1.10))
		fmt.Fprintf(&s, "\nLoad average after each run (previous, then this code): ")
		for i, n := range sizes {
			if prev != "" {
				fmt.Fprintf(&s, "%s lines previous %s, ", num(float64(n)), old[i].load)
			}
			fmt.Fprintf(&s, "%s lines this %s", num(float64(n)), now[i].load)
			if i == 0 {
				s.WriteString("; ")
			}
		}
		s.WriteString(".\n")
		b.ReportMetric(now[0].rate, "lines/s")
		b.Log("\n" + s.String())
		if err := writeSection("builds-logs", s.String()); err != nil {
			b.Log(err)
		}
	}
}

// followLog runs a step printing lines under a fresh `shiploop up`, follows
// its log live to the end, and returns lines/s at the follower and the
// process's peak RSS in KiB.
func followLog(b *testing.B, lines int) (float64, int64) {
	inst := startUp(b)
	repo := newRepo(b, map[string]string{".shiploop.yml": fmt.Sprintf("steps:\n  - name: chatty\n    commands: [\"seq 1 %d\"]\n", lines)})
	const name = "bench/logs"
	secret := inst.register(b, name, repo)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := inst.client.WatchEvents(ctx, &buildsv1.WatchEventsRequest{Repository: name, Types: []string{"job.queued"}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.Header(); err != nil {
		b.Fatal(err)
	}
	if _, err := inst.push(name, secret, "logs-1", "refs/heads/main", zero, repo.git("rev-parse", "HEAD")); err != nil {
		b.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil {
		b.Fatal(err)
	}
	logs, err := inst.client.StreamLogs(ctx, &buildsv1.StreamLogsRequest{JobId: r.GetEvent().GetSubject(), Follow: true})
	if err != nil {
		b.Fatal(err)
	}
	var got int
	var first, last time.Time
	var next uint64 = 0
	var end error
	for {
		m, err := logs.Recv()
		if err != nil {
			end = err
			break
		}
		l := m.GetLine()
		if l.GetStep() != "chatty" || l.GetStream() != "stdout" {
			continue
		}
		if got == 0 {
			first = time.Now()
		}
		got++
		last = time.Now()
		if want := fmt.Sprint(next + 1); l.GetText() != want {
			b.Fatalf("line %d is %q, want %s: out of order or lost", got, l.GetText(), want)
		}
		next++
	}
	hwm, _ := inst.status("VmHWM")
	if got != lines {
		b.Fatalf("the follower got %d of %d lines, then %v", got, lines, end)
	}
	cancel()
	_ = inst.stop() // the next run listens on the same default ports
	return float64(got) / last.Sub(first).Seconds(), hwm
}
