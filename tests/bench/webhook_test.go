package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// pushCount is how many pushes each variant sends (SHIPLOOP_BENCH_PUSHES overrides).
func pushCount() int {
	if n, err := strconv.Atoi(os.Getenv("SHIPLOOP_BENCH_PUSHES")); err == nil && n > 0 {
		return n
	}
	return 200
}

// gitReplays is how many pushes' git work is replayed alone.
const gitReplays = 20

// burstSenders is how many webhooks are in flight at once in the burst.
const burstSenders = 8

// BenchmarkWebhookToStep measures, against the built binary, the time from a
// signed GitHub push webhook's 202 to the first step's process running: the
// step's first command stamps the wall clock (date +%s%N) with the commit
// into a file outside the workspace. The agent's own StepResult.started_at
// (taken just before it forks the step) is reported beside it.
func BenchmarkWebhookToStep(b *testing.B) {
	n := pushCount()
	for range b.N {
		webhookToStep(b, n)
	}
}

func webhookToStep(b *testing.B, n int) {
	cpu := startCPU()
	inst := startUp(b)
	stamps := filepath.Join(b.TempDir(), "stamps")
	config := fmt.Sprintf("steps:\n  - name: stamp\n    commands:\n      - echo \"$SHIPLOOP_COMMIT $(date +%%s%%N)\" >> %s\n", stamps)
	repo := newRepo(b, map[string]string{".shiploop.yml": config})
	initial := repo.git("rev-parse", "HEAD")
	commits := repo.commits(1 + n + gitReplays + n)
	const name = "bench/latency"
	secret := inst.register(b, name, repo)
	tr := track(b, inst, name)

	deliveries := 0
	pushOne := func(before, after string) sent {
		deliveries++
		s, err := inst.push(name, secret, fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), deliveries), "refs/heads/main", before, after)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}

	// Warm-up: the first push creates the bare mirror and fetches everything.
	repo.git("update-ref", "refs/heads/main", commits[0])
	first := pushOne(initial, commits[0])
	tr.wait(b, first.eventID, time.Minute)

	// Sequential: the branch moves, the webhook is sent, the build finishes.
	seq := make([]sent, 0, n)
	prev := commits[0]
	b.ResetTimer()
	seqStart := time.Now()
	for _, c := range commits[1 : 1+n] {
		repo.git("update-ref", "refs/heads/main", c) // the push itself, not timed
		s := pushOne(prev, c)
		tr.wait(b, s.eventID, time.Minute)
		seq = append(seq, s)
		prev = c
	}
	seqElapsed := time.Since(seqStart)

	// Burst: n pushes, burstSenders at a time, without waiting for builds.
	// Each goes to a branch of its own (a newer push to the same branch
	// supersedes, that is cancels, the older unfinished build). The branches
	// all exist before the first webhook, so only the first build fetches.
	// The git work alone, for reference: the commands the builds service
	// runs for one push, replayed on a mirror of our own.
	replay := replayGit(b, repo, commits[1+n:1+n+gitReplays])

	burstCommits := commits[1+n+gitReplays:]
	for i, c := range burstCommits {
		repo.git("update-ref", fmt.Sprintf("refs/heads/burst-%d", i), c)
	}
	burst := make([]sent, len(burstCommits))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan int)
	burstStart := time.Now()
	for range burstSenders {
		wg.Go(func() {
			for i := range work {
				mu.Lock()
				deliveries++
				d := fmt.Sprintf("bench-burst-%d-%d", time.Now().UnixNano(), deliveries)
				mu.Unlock()
				s, err := inst.push(name, secret, d, fmt.Sprintf("refs/heads/burst-%d", i), zero, burstCommits[i])
				if err != nil {
					b.Error(err)
				}
				burst[i] = s
			}
		})
	}
	for i := range burstCommits {
		work <- i
	}
	close(work)
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	sendDone := time.Since(burstStart)
	for _, s := range burst {
		tr.wait(b, s.eventID, burstTimeout())
	}
	burstElapsed := time.Since(burstStart)
	b.StopTimer()

	rss, _ := inst.status("VmRSS")
	hwm, _ := inst.status("VmHWM")

	stampAt := readStamps(b, stamps)
	// Each push's timeline: sent, 202, build.created (builds fetched the
	// commit, read .shiploop.yml, computed the version), the agent took the
	// job (JobStarted.started_at), the agent forked the step
	// (StepResult.started_at), the step's own clock.
	type timeline struct {
		accepted, fromSend, http           []time.Duration // to the step's clock
		toCreated, toTaken, toFork, toExec []time.Duration // segments
		agentFork                          []time.Duration // 202 → fork
	}
	measure := func(ss []sent) timeline {
		var t timeline
		for _, s := range ss {
			st, ok := stampAt[s.commit]
			if !ok {
				b.Fatalf("no stamp for commit %s: its first step did not run", s.commit)
			}
			r := tr.record(s.eventID)
			t.accepted = append(t.accepted, st.Sub(s.acceptAt))
			t.fromSend = append(t.fromSend, st.Sub(s.sentAt))
			t.http = append(t.http, s.acceptAt.Sub(s.sentAt))
			t.agentFork = append(t.agentFork, r.stepStart.Sub(s.acceptAt))
			t.toCreated = append(t.toCreated, r.created.Sub(s.acceptAt))
			t.toTaken = append(t.toTaken, r.taken.Sub(r.created))
			t.toFork = append(t.toFork, r.stepStart.Sub(r.taken))
			t.toExec = append(t.toExec, st.Sub(r.stepStart))
		}
		return t
	}
	ts, tb := measure(seq), measure(burst)
	warm := measure([]sent{first})

	seqStats, burstStats := summarize(ts.accepted), summarize(tb.accepted)
	b.ReportMetric(float64(seqStats.median)/1e6, "seq-median-ms")
	b.ReportMetric(float64(seqStats.p99)/1e6, "seq-p99-ms")
	b.ReportMetric(float64(burstStats.median)/1e6, "burst-median-ms")
	b.ReportMetric(float64(burstStats.p99)/1e6, "burst-p99-ms")

	var s strings.Builder
	fmt.Fprintf(&s, "%d signed GitHub push webhooks per variant to `shiploop up` (built binary, embedded NATS, SQLite, one built-in agent: `--agents 1`), "+
		"one new commit each; the only step is `echo \"$SHIPLOOP_COMMIT $(date +%%s%%N)\" >> FILE`, so \"step process running\" is the step's own clock. %s.\n\n",
		n, measured(cpu, procCPU(inst.cmd.Process.Pid)))
	fmt.Fprintf(&s, "*Sequential*: each build finishes before the next push, which moves `main` one commit. "+
		"*Burst*: %d webhooks in flight at a time, each for a branch of its own (a newer push to a branch supersedes the older build), builds queue for the one agent.\n\n", burstSenders)
	seqName, burstName := "sequential", "burst"
	s.WriteString("| variant | from → to | median | p90 | p99 | max | goal median ≤ 20 ms | goal p99 ≤ 100 ms |\n|---|---|---:|---:|---:|---:|---|---|\n")
	row := func(variant, span string, d []time.Duration, goal bool) {
		st := summarize(d)
		g1, g2 := "", ""
		if goal {
			g1, g2 = verdict(st.median <= 20*time.Millisecond), verdict(st.p99 <= 100*time.Millisecond)
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", variant, span, ms(st.median), ms(st.p90), ms(st.p99), ms(st.max), g1, g2)
	}
	for _, v := range []struct {
		name string
		t    timeline
	}{{seqName, ts}, {burstName, tb}} {
		row("**"+v.name+"**", "**202 received → step process running**", v.t.accepted, true)
		row("", "request sent → step process running", v.t.fromSend, false)
		row("", "202 received → agent forks the step (`StepResult.started_at`)", v.t.agentFork, false)
		row("", "request sent → 202 received", v.t.http, false)
	}
	s.WriteString("\nWhere the time goes (medians per segment; they add up to roughly the median total):\n\n")
	s.WriteString("| segment | sequential | burst |\n|---|---:|---:|\n")
	seg := func(name string, a, c []time.Duration) {
		fmt.Fprintf(&s, "| %s | %s | %s |\n", name, ms(summarize(a).median), ms(summarize(c).median))
	}
	seg("202 → `build.created` (change relayed and consumed; mirror fetch, `.shiploop.yml`, version; build, job and events written)", ts.toCreated, tb.toCreated)
	seg("`build.created` → agent takes the job (`JobStarted.started_at`; job relayed, pulled)", ts.toTaken, tb.toTaken)
	seg("job taken → step forked (`job.started` published, workspace checkout, log set up)", ts.toFork, tb.toFork)
	seg("step forked → the step's `date` runs (`/bin/sh`, `date`)", ts.toExec, tb.toExec)
	fmt.Fprintf(&s, "\nFor reference, the git commands the builds service runs for one push (`cat-file -e`, `fetch`, `cat-file -e`, `cat-file blob`, `rev-parse`, `for-each-ref`, "+
		"`rev-parse --is-shallow-repository`, `describe`, `rev-list --count`: 9 processes), replayed alone on a bare mirror for %d new commits: median %s, max %s; "+
		"the `fetch` alone: median %s; one `git cat-file -e` (the cost of starting a git process): median %s.\n",
		gitReplays, ms(replay.all.median), ms(replay.all.max), ms(replay.fetch.median), ms(replay.spawn.median))
	slowest := func(name string, ss []sent, t timeline) {
		idx := make([]int, len(ss))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, c int) int { return cmp.Compare(t.accepted[c], t.accepted[a]) })
		var parts []string
		for _, i := range idx[:min(3, len(idx))] {
			parts = append(parts, fmt.Sprintf("%s (%s + %s + %s + %s)", ms(t.accepted[i]), ms(t.toCreated[i]), ms(t.toTaken[i]), ms(t.toFork[i]), ms(t.toExec[i])))
		}
		fmt.Fprintf(&s, "Slowest %s pushes, total (segments in the order above): %s.\n", name, strings.Join(parts, ", "))
	}
	s.WriteString("\n")
	slowest("sequential", seq, ts)
	fmt.Fprintf(&s, "\nSequential: %d builds in %s (%.1f builds/s, webhook to `build.finished`). "+
		"Burst: all %d webhooks answered in %s; the last build finished %s after the first webhook was sent (%.1f builds/s). "+
		"The warm-up push before them (not counted; it creates the bare mirror): %s. `shiploop up` RSS after these %d builds: %.0f MiB (peak %.0f MiB).\n",
		n, seqElapsed.Round(time.Millisecond), float64(n)/seqElapsed.Seconds(),
		n, sendDone.Round(time.Millisecond), burstElapsed.Round(time.Millisecond), float64(n)/burstElapsed.Seconds(),
		ms(warm.accepted[0]), 1+2*n, float64(rss)/1024, float64(hwm)/1024)
	b.Log("\n" + s.String())
	if err := writeSection("webhook", s.String()); err != nil {
		b.Error(err)
	}
}

// readStamps reads "commit unix-ns" lines.
func readStamps(b *testing.B, path string) map[string]time.Time {
	b.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		commit, ns, ok := strings.Cut(line, " ")
		v, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil {
			b.Fatalf("stamp line %q", line)
		}
		if _, dup := out[commit]; dup {
			b.Fatalf("commit %s built twice", commit)
		}
		out[commit] = time.Unix(0, v)
	}
	return out
}

// tracker follows a repository's builds over WatchEvents, by chain id (the
// change event's id, which the webhook answers with).
type tracker struct {
	inst   *instance
	repo   string
	mu     sync.Mutex
	builds map[string]*buildRec
	ended  chan struct{}
}

type buildRec struct {
	created   time.Time // build.created's ce-time
	taken     time.Time // JobStarted.started_at
	stepStart time.Time
	status    eventsv1.BuildStatus
	err       string
	done      chan struct{}
}

func track(b *testing.B, inst *instance, repo string) *tracker {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	st, err := inst.client.WatchEvents(ctx, &buildsv1.WatchEventsRequest{
		Repository: repo, Types: []string{"build.created", "job.started", "job.step_finished", "build.finished"},
		Since: timestamppb.New(time.Now().Add(-time.Second)),
	})
	if err != nil {
		b.Fatalf("WatchEvents: %v", err)
	}
	if _, err := st.Header(); err != nil {
		b.Fatalf("WatchEvents: %v", err)
	}
	tr := &tracker{inst: inst, repo: repo, builds: map[string]*buildRec{}, ended: make(chan struct{})}
	go func() {
		defer close(tr.ended)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			ev := r.GetEvent()
			switch short(ev.GetType()) {
			case "build.created":
				tr.mu.Lock()
				tr.get(ev.GetChainId()).created = ev.GetTime().AsTime()
				tr.mu.Unlock()
			case "job.started":
				var m eventsv1.JobStarted
				if ev.GetData().UnmarshalTo(&m) == nil {
					tr.mu.Lock()
					tr.get(ev.GetChainId()).taken = m.GetStartedAt().AsTime()
					tr.mu.Unlock()
				}
			case "job.step_finished":
				var m eventsv1.JobStepFinished
				if ev.GetData().UnmarshalTo(&m) == nil && m.GetStep().GetName() == "stamp" {
					tr.mu.Lock()
					tr.get(ev.GetChainId()).stepStart = m.GetStep().GetStartedAt().AsTime()
					tr.mu.Unlock()
				}
			case "build.finished":
				var m eventsv1.BuildFinished
				if ev.GetData().UnmarshalTo(&m) == nil {
					tr.mu.Lock()
					rec := tr.get(ev.GetChainId())
					select {
					case <-rec.done: // a duplicate
					default:
						rec.status, rec.err = m.GetStatus(), m.GetError()
						close(rec.done)
					}
					tr.mu.Unlock()
				}
			}
		}
	}()
	return tr
}

func short(full string) string {
	return strings.TrimSuffix(strings.TrimPrefix(full, "dev.shiploop."), ".v1")
}

// get returns the record of a chain, creating it; mu must be held.
func (tr *tracker) get(chain string) *buildRec {
	rec, ok := tr.builds[chain]
	if !ok {
		rec = &buildRec{done: make(chan struct{})}
		tr.builds[chain] = rec
	}
	return rec
}

// wait blocks until the build of a chain finished, and fails unless it succeeded.
func (tr *tracker) wait(b *testing.B, chain string, timeout time.Duration) {
	b.Helper()
	tr.mu.Lock()
	rec := tr.get(chain)
	tr.mu.Unlock()
	select {
	case <-rec.done:
	case <-tr.ended:
		b.Fatalf("event stream ended before the build of %s finished", chain)
	case <-time.After(timeout):
		b.Fatalf("build of %s not finished after %s\n%s", chain, timeout, tr.diagnose())
	}
	if rec.status != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		b.Fatalf("build of %s finished %v: %s", chain, rec.status, rec.err)
	}
}

func (tr *tracker) record(chain string) buildRec {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return *tr.get(chain)
}

// diagnose lists the repository's builds and the tail of the server's log.
func (tr *tracker) diagnose() string {
	var s strings.Builder
	list, err := tr.inst.client.ListBuilds(context.Background(), &buildsv1.ListBuildsRequest{Repository: tr.repo})
	if err != nil {
		fmt.Fprintf(&s, "ListBuilds: %v\n", err)
	}
	for _, bd := range list.GetBuilds() {
		fmt.Fprintf(&s, "build #%d %s %v %s\n", bd.GetNumber(), bd.GetCommit(), bd.GetStatus(), bd.GetError())
	}
	logs := tr.inst.stderr.String()
	if len(logs) > 8000 {
		logs = logs[len(logs)-8000:]
	}
	return s.String() + "shiploop up stderr (tail):\n" + logs
}

func burstTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("SHIPLOOP_BENCH_BURST_TIMEOUT")); err == nil {
		return d
	}
	return 5 * time.Minute
}

type replayStats struct{ all, fetch, spawn stats }

// replayGit times, for each commit, the git commands builds runs for a push
// (services/builds: mirrors.ensure, readFile, version.Compute) on a bare
// mirror of repo, moving main to the commit first as a push would.
func replayGit(b *testing.B, repo *gitRepo, commits []string) replayStats {
	b.Helper()
	mirror := b.TempDir()
	run := func(args ...string) (time.Duration, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = mirror
		cmd.Env = gitEnv()
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("git %v: %v: %s", args, err, out)
		}
		return time.Since(start), err
	}
	must := func(args ...string) time.Duration {
		d, err := run(args...)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	fetch := []string{"fetch", "--quiet", "--prune", "--force", repo.dir, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}
	must("init", "--bare", "--quiet")
	must(fetch...)
	var all, fetches, spawns []time.Duration
	for _, c := range commits {
		repo.git("update-ref", "refs/heads/main", c)
		start := time.Now()
		d, err := run("cat-file", "-e", c+"^{commit}")
		if err == nil {
			b.Fatalf("commit %s already in the mirror", c)
		}
		spawns = append(spawns, d)
		fetches = append(fetches, must(fetch...))
		must("cat-file", "-e", c+"^{commit}")
		must("cat-file", "blob", c+":.shiploop.yml")
		must("rev-parse", "--verify", c+"^{commit}")
		must("for-each-ref", "--format=%(refname:strip=2) %(objecttype) %(objectname) %(*objecttype) %(*objectname)", "refs/tags")
		must("rev-parse", "--is-shallow-repository")
		must("describe", "--tags", "--long", "--always", "--abbrev=7", "--match=v[0-9]*.[0-9]*.[0-9]*", "--match=[0-9]*.[0-9]*.[0-9]*", c)
		must("rev-list", "--count", c)
		all = append(all, time.Since(start))
	}
	return replayStats{all: summarize(all), fetch: summarize(fetches), spawn: summarize(spawns)}
}
