package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

func TestPoolCanonical(t *testing.T) {
	a, set, err := bus.Pool([]string{"os=linux", "gpu", "gpu"})
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := bus.Pool([]string{"gpu", "os=linux"})
	if a != b || len(set) != 2 || set[0] != "gpu" {
		t.Errorf("Pool: %q %v and %q, want the same pool for the same set, sorted without duplicates", a, set, b)
	}
	if p, _, _ := bus.Pool(nil); p != bus.DefaultPool {
		t.Errorf("Pool(nil) = %q, want %q", p, bus.DefaultPool)
	}
	for _, bad := range [][]string{{"a b"}, {""}, {strings.Repeat("x", 65)}} {
		if _, _, err := bus.Pool(bad); err == nil {
			t.Errorf("Pool(%q) accepted", bad)
		}
	}
	var many []string
	for i := range 17 {
		many = append(many, fmt.Sprint("l", i))
	}
	if _, _, err := bus.Pool(many); err == nil || !strings.Contains(err.Error(), "at most 16") {
		t.Errorf("Pool(17 labels) = %v, want an error naming the limit", err)
	}
}

// TestServeRoutesByLabels: jobs asking for labels go only to agents having
// all of them; jobs without labels go to any agent; an agent limited to test
// jobs takes no build job; a pool that appears while the agents run is
// picked up; every job runs exactly once.
func TestServeRoutesByLabels(t *testing.T) {
	t.Parallel()
	b, emb := startBus(t)
	o := bus.NewOutbox(sqliteDB(t), b, quietLog())
	runBG(t, "relay", o.Run)

	var mu sync.Mutex
	ran := map[string][]string{} // job id -> agents
	run := func(name string) func(context.Context, *bus.Job) error {
		return func(_ context.Context, job *bus.Job) error {
			mu.Lock()
			ran[job.ID] = append(ran[job.ID], name)
			mu.Unlock()
			return nil
		}
	}
	agents := map[string]bus.ServeConfig{
		"gpu-box":   {Labels: []string{"gpu", "os=linux"}, Slots: 2},
		"plain-box": {Labels: []string{"os=linux"}},
		"test-only": {Labels: []string{"gpu", "os=linux", "arm"}, Kinds: []string{"test"}},
	}
	for name, cfg := range agents {
		a := agent(t, emb, name)
		cfg.Logger = quietLog()
		runBG(t, name, func(ctx context.Context) error { return a.Serve(ctx, cfg, run(name)) })
	}
	enq := func(i int, kind string, labels ...string) string {
		id := fmt.Sprintf("%s-%02d", kind, i)
		ev := bus.NewEvent("job.requested", "acme/web", id, &eventsv1.Job{JobId: id, Kind: kind, Repository: "acme/web", Labels: labels})
		if err := o.InTx(t.Context(), func(tx *bus.Tx) error { return tx.EnqueueFor(kind, labels, ev) }); err != nil {
			t.Fatal(err)
		}
		return ev.ID
	}
	want := map[string][]string{} // job id -> agents allowed
	for i := range 6 {
		want[enq(i, "build")] = []string{"gpu-box", "plain-box"}
		want[enq(10+i, "build", "gpu")] = []string{"gpu-box"}
		want[enq(20+i, "test", "arm")] = []string{"test-only"}
	}
	// Nobody has "tpu": the job waits in the queue.
	enq(30, "build", "tpu")
	time.Sleep(200 * time.Millisecond) // let the agents see the new pools
	for i := range 3 {
		want[enq(40+i, "build", "os=linux", "gpu")] = []string{"gpu-box"}
	}
	waitFor(t, "every servable job to run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ran) == len(want)
	})
	time.Sleep(300 * time.Millisecond) // a wrong or second delivery would show now
	mu.Lock()
	defer mu.Unlock()
	for id, allowed := range want {
		got := ran[id]
		if len(got) != 1 {
			t.Errorf("job %s ran on %v, want exactly once", id, got)
			continue
		}
		ok := false
		for _, a := range allowed {
			ok = ok || got[0] == a
		}
		if !ok {
			t.Errorf("job %s ran on %s, want one of %v", id, got[0], allowed)
		}
	}
	if len(ran) != len(want) {
		t.Errorf("%d jobs ran, want %d (the tpu job must wait)", len(ran), len(want))
	}
	if left := jobsLeft(t, b); left != 1 {
		t.Errorf("%d jobs left in the queue, want the tpu job only", left)
	}
}

// TestServeSlots: an agent serving several pools runs as many jobs at once
// as it has slots, never more, even while its other pools stand idle.
func TestServeSlots(t *testing.T) {
	t.Parallel()
	b, emb := startBus(t)
	o := bus.NewOutbox(sqliteDB(t), b, quietLog())
	runBG(t, "relay", o.Run)
	var mu sync.Mutex
	running, most, done := 0, 0, 0
	a := agent(t, emb, "agent")
	runBG(t, "agent", func(ctx context.Context) error {
		// Three kinds and a labelled pool: four pools, two slots.
		return a.Serve(ctx, bus.ServeConfig{Slots: 2, Labels: []string{"gpu"}, Logger: quietLog()}, func(ctx context.Context, _ *bus.Job) error {
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			time.Sleep(150 * time.Millisecond)
			mu.Lock()
			running--
			done++
			mu.Unlock()
			return nil
		})
	})
	const n = 8
	for i := range n {
		id := fmt.Sprintf("build-%02d", i)
		ev := bus.NewEvent("job.requested", "acme/web", id, &eventsv1.Job{JobId: id, Kind: "build", Repository: "acme/web"})
		if err := o.InTx(t.Context(), func(tx *bus.Tx) error { return tx.EnqueueFor("build", nil, ev) }); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every job to run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done == n
	})
	mu.Lock()
	defer mu.Unlock()
	if most != 2 {
		t.Errorf("at most %d jobs ran at once, want the agent's 2 slots", most)
	}
}

// TestServeHoldsNoJobItCannotStart: an agent with one slot takes one job
// however many of its pools have work. Jobs of two pools are queued before a
// one-slot agent starts; while its first job runs, the other job is left in
// the queue and a second agent runs it, instead of it waiting, held and
// heartbeated, behind the first.
func TestServeHoldsNoJobItCannotStart(t *testing.T) {
	t.Parallel()
	b, emb := startBus(t)
	o := bus.NewOutbox(sqliteDB(t), b, quietLog())
	runBG(t, "relay", o.Run)
	for _, kind := range []string{"build", "test"} {
		id := kind + "-1"
		ev := bus.NewEvent("job.requested", "acme/web", id, &eventsv1.Job{JobId: id, Kind: kind, Repository: "acme/web"})
		if err := o.InTx(t.Context(), func(tx *bus.Tx) error { return tx.EnqueueFor(kind, nil, ev) }); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both jobs in the queue", func() bool { return jobsLeft(t, b) == 2 })

	var mu sync.Mutex
	ran := map[string][]string{} // job subject -> agents
	release := make(chan struct{})
	defer close(release)
	first := agent(t, emb, "first")
	runBG(t, "first", func(ctx context.Context) error {
		return first.Serve(ctx, bus.ServeConfig{Slots: 1, Logger: quietLog()}, func(ctx context.Context, job *bus.Job) error {
			mu.Lock()
			ran[job.Subject] = append(ran[job.Subject], "first")
			mu.Unlock()
			select { // the first agent's job runs until the test ends
			case <-release:
			case <-ctx.Done():
			}
			return nil
		})
	})
	waitFor(t, "the first agent to start a job", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ran) == 1
	})
	second := agent(t, emb, "second")
	runBG(t, "second", func(ctx context.Context) error {
		return second.Serve(ctx, bus.ServeConfig{Slots: 1, Logger: quietLog()}, func(ctx context.Context, job *bus.Job) error {
			mu.Lock()
			ran[job.Subject] = append(ran[job.Subject], "second")
			mu.Unlock()
			return nil
		})
	})
	waitFor(t, "the other job to run on the second agent while the first agent's job runs", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ran) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	for id, agents := range ran {
		if len(agents) != 1 {
			t.Errorf("job %s ran on %v, want once", id, agents)
		}
	}
}

// An agent that was full while another agent took the job published to one
// of its pools does not, once free, make a waiting pull on the pool that was
// emptied (the publish woke it): a job of another pool published meanwhile
// would wait for that pull to end, up to 150 ms.
func TestWokenAgentSkipsPoolsOthersEmptied(t *testing.T) {
	t.Parallel()
	b, emb := startBus(t)
	o := bus.NewOutbox(sqliteDB(t), b, quietLog())
	runBG(t, "relay", o.Run)
	enqueue := func(kind, id string) {
		t.Helper()
		ev := bus.NewEvent("job.requested", "acme/web", id, &eventsv1.Job{JobId: id, Kind: kind, Repository: "acme/web"})
		if err := o.InTx(t.Context(), func(tx *bus.Tx) error { return tx.EnqueueFor(kind, nil, ev) }); err != nil {
			t.Fatal(err)
		}
	}
	// Pulls that wait at the server, by consumer (no-wait ones are left out:
	// an idle agent makes those every second).
	watcher := connect(t, emb, "watcher")
	var mu sync.Mutex
	waiting := map[string]int{}
	if _, err := watcher.Subscribe("$JS.API.CONSUMER.MSG.NEXT.JOBS.*", func(m *nats.Msg) {
		if !bytes.Contains(m.Data, []byte(`"no_wait"`)) {
			mu.Lock()
			waiting[m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]]++
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 10)
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-started:
			if got != want {
				t.Fatalf("started %q, want %q", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%q did not start within 30s", want)
		}
	}
	release := make(chan struct{})
	first := agent(t, emb, "first")
	runBG(t, "first", func(ctx context.Context) error {
		return first.Serve(ctx, bus.ServeConfig{Kinds: []string{"build", "test"}, Slots: 1, Logger: quietLog()}, func(ctx context.Context, job *bus.Job) error {
			started <- "first " + job.Subject
			if job.Subject == "build-1" {
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return nil
		})
	})
	enqueue("build", "build-1")
	expect("first build-1")

	// While the first agent is full, a test job goes to a second agent.
	second := agent(t, emb, "second")
	sctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- second.Serve(sctx, bus.ServeConfig{Kinds: []string{"test"}, Slots: 1, Logger: quietLog()}, func(ctx context.Context, job *bus.Job) error {
			started <- "second " + job.Subject
			return nil
		})
	}()
	enqueue("test", "test-1")
	expect("second test-1")
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // longer than an agent's waiting pull waits (150 ms)

	mu.Lock()
	clear(waiting)
	mu.Unlock()
	close(release) // the first agent is free again, and woken (by test-1)
	enqueue("build", "build-2")
	expect("first build-2")
	mu.Lock()
	defer mu.Unlock()
	if n := waiting["jobs-test-"+bus.DefaultPool]; n != 0 {
		t.Errorf("%d waiting pulls on the emptied test pool after the agent was free, want 0 (pulls: %v)", n, waiting)
	}
}

// TestServeSurvivesItsPoolConsumerDeleted: a pool's consumer deleted while
// agents serve it (by an operator, or lost with a cluster's state) is made
// again, and the pool's next job runs; before, the agents kept pulling
// from the deleted consumer and never ran another job of that pool.
func TestServeSurvivesItsPoolConsumerDeleted(t *testing.T) {
	t.Parallel()
	b, emb := startBus(t)
	o := bus.NewOutbox(sqliteDB(t), b, quietLog())
	runBG(t, "relay", o.Run)
	ran := make(chan string, 4)
	a := agent(t, emb, "agent")
	runBG(t, "agent", func(ctx context.Context) error {
		return a.Serve(ctx, bus.ServeConfig{Slots: 1, Logger: quietLog()}, func(_ context.Context, j *bus.Job) error {
			ran <- j.Data.(*eventsv1.Job).JobId
			return nil
		})
	})
	enqueue := func(id string) {
		t.Helper()
		ev := bus.NewEvent("job.requested", "acme/web", id, &eventsv1.Job{JobId: id, Kind: "build", Repository: "acme/web"})
		if err := o.InTx(t.Context(), func(tx *bus.Tx) error { return tx.EnqueueFor("build", nil, ev) }); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-ran:
			if got != id {
				t.Fatalf("ran %s, want %s", got, id)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("job %s did not run within 20s", id)
		}
	}
	enqueue("build-1")
	ctx, cancel := apiCtx(t)
	defer cancel()
	// Its ack has removed it from the work queue (a consumer deleted
	// before that would hand the job out again: at least once).
	waitFor(t, "build-1 acknowledged", func() bool {
		st, err := b.JetStream().Stream(ctx, bus.StreamJobs)
		return err == nil && st.CachedInfo().State.Msgs == 0
	})
	if err := b.JetStream().DeleteConsumer(ctx, bus.StreamJobs, "jobs-build-"+bus.DefaultPool); err != nil {
		t.Fatal(err)
	}
	enqueue("build-2")
}
