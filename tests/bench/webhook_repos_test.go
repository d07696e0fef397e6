package bench

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// burstRepos is how many repositories the many-repository burst pushes to.
const burstRepos = 100

// burstAgents is how many jobs the built-in agent of that burst runs at once.
const burstAgents = 8

// BenchmarkWebhookBurstRepos measures, against the built binary, the time
// from a signed GitHub push webhook's 202 to the first step's process
// running when 2 pushes to each of 100 repositories arrive at once (8 in
// flight at a time, as the burst of BenchmarkWebhookToStep; each push to a
// branch of its own, so none supersedes another), with 8 agent slots. The
// mirrors exist before (one warm-up push per repository). It checks that
// every build succeeds and that each repository's two builds were created
// in the order of their webhooks.
func BenchmarkWebhookBurstRepos(b *testing.B) {
	for range b.N {
		webhookBurstRepos(b)
	}
}

func webhookBurstRepos(b *testing.B) {
	cpu := startCPU()
	inst := startUp(b, "--agents", fmt.Sprint(burstAgents))
	stamps := b.TempDir() + "/stamps"
	type repoRec struct {
		name, secret string
		repo         *gitRepo
		commits      []string
	}
	repos := make([]repoRec, burstRepos)
	for i := range repos {
		// The name in the file keeps commits of different repositories apart.
		config := fmt.Sprintf("# repository %d\nsteps:\n  - name: stamp\n    commands:\n      - echo \"$SHIPLOOP_COMMIT $(date +%%s%%N)\" >> %s\n", i, stamps)
		r := newRepo(b, map[string]string{".shiploop.yml": config})
		name := fmt.Sprintf("bench/repo-%03d", i)
		repos[i] = repoRec{name: name, repo: r, commits: r.commits(3), secret: inst.register(b, name, r)}
	}
	tr := track(b, inst, "")
	deliveries := 0
	var mu sync.Mutex
	delivery := func() string {
		mu.Lock()
		defer mu.Unlock()
		deliveries++
		return fmt.Sprintf("bench-repos-%d-%d", time.Now().UnixNano(), deliveries)
	}

	// Warm-up: one push per repository makes its mirror (not counted).
	var warm []sent
	for _, r := range repos {
		r.repo.git("update-ref", "refs/heads/main", r.commits[0])
		s, err := inst.push(r.name, r.secret, delivery(), "refs/heads/main", zero, r.commits[0])
		if err != nil {
			b.Fatal(err)
		}
		warm = append(warm, s)
	}
	for _, s := range warm {
		tr.wait(b, s.eventID, burstTimeout())
	}

	// The burst: each repository's two pushes, repository after repository
	// interleaved (0a, 1a, …, 99a, 0b, …), burstSenders in flight.
	type push struct {
		repo int
		ref  string
		sha  string
	}
	var pushes []push
	for k, branch := range []string{"burst-a", "burst-b"} {
		for i, r := range repos {
			r.repo.git("update-ref", "refs/heads/"+branch, r.commits[1+k])
			pushes = append(pushes, push{repo: i, ref: "refs/heads/" + branch, sha: r.commits[1+k]})
		}
	}
	got := make([]sent, len(pushes))
	work := make(chan int)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range burstSenders {
		wg.Go(func() {
			for i := range work {
				p := pushes[i]
				s, err := inst.push(repos[p.repo].name, repos[p.repo].secret, delivery(), p.ref, zero, p.sha)
				if err != nil {
					b.Error(err)
				}
				got[i] = s
			}
		})
	}
	for i := range pushes {
		work <- i
	}
	close(work)
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	sendDone := time.Since(start)
	for _, s := range got {
		tr.wait(b, s.eventID, burstTimeout())
	}
	elapsed := time.Since(start)
	b.StopTimer()

	stampAt := readStamps(b, stamps)
	var accepted, toCreated, toTaken, toFork []time.Duration
	for _, s := range got {
		st, ok := stampAt[s.commit]
		if !ok {
			b.Fatalf("no stamp for commit %s: its first step did not run", s.commit)
		}
		r := tr.record(s.eventID)
		accepted = append(accepted, st.Sub(s.acceptAt))
		toCreated = append(toCreated, r.created.Sub(s.acceptAt))
		toTaken = append(toTaken, r.taken.Sub(r.created))
		toFork = append(toFork, r.stepStart.Sub(r.taken))
	}
	// One repository's changes are handled in order: its second push's
	// build is created after its first's.
	outOfOrder := 0
	for i := range repos {
		a, c := tr.record(got[i].eventID), tr.record(got[burstRepos+i].eventID)
		if got[burstRepos+i].acceptAt.After(got[i].acceptAt) && c.created.Before(a.created) {
			outOfOrder++
		}
	}
	if outOfOrder > 0 {
		b.Errorf("%d repositories' second build was created before their first", outOfOrder)
	}
	st := summarize(accepted)
	b.ReportMetric(float64(st.median)/1e6, "median-ms")
	b.ReportMetric(float64(st.p99)/1e6, "p99-ms")

	var s strings.Builder
	fmt.Fprintf(&s, "%d signed GitHub push webhooks, 2 to each of %d repositories (each to a branch of its own), %d in flight at a time, to `shiploop up --agents %d` (built binary, embedded NATS, SQLite); the mirrors exist (one warm-up push per repository before, not counted). "+
		"The only step stamps `date +%%s%%N`, as in the table above. %s.\n\n", len(pushes), burstRepos, burstSenders, burstAgents, measured(cpu, procCPU(inst.cmd.Process.Pid)))
	s.WriteString("| from → to | median | p90 | p99 | max | goal p99 ≤ 250 ms |\n|---|---:|---:|---:|---:|---|\n")
	row := func(span string, d []time.Duration, goal bool) {
		x := summarize(d)
		g := ""
		if goal {
			g = verdict(x.p99 <= 250*time.Millisecond)
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s |\n", span, ms(x.median), ms(x.p90), ms(x.p99), ms(x.max), g)
	}
	row("**202 received → step process running**", accepted, true)
	row("202 → `build.created`", toCreated, false)
	row("`build.created` → agent takes the job", toTaken, false)
	row("job taken → step forked", toFork, false)
	fmt.Fprintf(&s, "\nAll %d webhooks answered in %s; the last build finished %s after the first webhook was sent (%.1f builds/s). Each repository's second build was created after its first in all %d repositories.\n",
		len(pushes), sendDone.Round(time.Millisecond), elapsed.Round(time.Millisecond), float64(len(pushes))/elapsed.Seconds(), burstRepos)
	b.Log("\n" + s.String())
	if err := writeSection("webhook-repos", s.String()); err != nil {
		b.Error(err)
	}
}
