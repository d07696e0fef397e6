package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// BenchmarkDispatchIdleAgents measures what idle agents cost JetStream and
// how fast one of them starts a job, for 1, 10 and 50 agents on one pool
// (each agent its own connection with one slot, all in this process, on an
// embedded nats-server). Jobs come one at a time, 100 ms apart, so every
// agent is idle when each arrives: the worst case for the agents' looks.
// Counted are the pull requests the agents send ($JS.API.CONSUMER.MSG.NEXT
// subjects, seen by a subscriber of its own), idle and per job.
//
// The peer, measured in the same run on the same consumer, is JetStream's
// own pattern for a work queue: each agent keeps one long pull pending
// (Fetch of 1 with a 1 s expiry, again when it ends) and the server hands
// each job to one of them.
func BenchmarkDispatchIdleAgents(b *testing.B) {
	const jobs = 40
	for range b.N {
		cpu := startCPU()
		var s strings.Builder
		fmt.Fprintf(&s, "Agents on one pool (default labels, build jobs), each its own NATS connection with one slot, in one process with an embedded nats-server; %d jobs published one at a time, 100 ms apart, each finishing at once. *Requests* are pull requests to JetStream (`$JS.API.CONSUMER.MSG.NEXT.>`); *idle* is their rate over 5 s with no job; *per job* is those of the job phase less the idle rate, per job (the goal allows one pull per idle agent and the look the agent that ran the previous job makes when its slot frees); *dispatch* is job published → its agent's function starts. *serve* is `bus.Serve` (what agents run); *long pull* is the peer: each agent keeps a Fetch(1, 1 s expiry) pending.\n\n", jobs)
		fmt.Fprintf(&s, "| agents | dispatcher | idle requests/s | requests per job | dispatch median | dispatch p99 | jobs started | goal: requests per job ≤ agents + 1, p99 ≤ 100 ms |\n|---:|---|---:|---:|---:|---:|---:|---|\n")
		for _, n := range []int{1, 10, 50} {
			for _, mode := range []string{"serve", "long pull"} {
				r := dispatchRun(b, n, mode, jobs)
				goal := "(peer)"
				if mode == "serve" {
					goal = verdict(r.perJob <= float64(n+1) && r.d.p99 <= 100*time.Millisecond && r.started == jobs)
				}
				fmt.Fprintf(&s, "| %d | %s | %.1f | %.1f | %s | %s | %d of %d | %s |\n", n, mode, r.idle, r.perJob, ms(r.d.median), ms(r.d.p99), r.started, jobs, goal)
				b.ReportMetric(r.perJob, fmt.Sprintf("req/job-%s-%d", strings.ReplaceAll(mode, " ", ""), n))
			}
		}
		fmt.Fprintf(&s, "\nMeasured %s; other processes kept %.2f of the 2 CPUs busy meanwhile.\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), cpu.others(0))
		b.Log("\n" + s.String())
		if err := writeSection("dispatch-idle-agents", s.String()); err != nil {
			b.Log(err)
		}
	}
}

type dispatchResult struct {
	idle, perJob float64
	d            stats
	started      int
}

func dispatchRun(b *testing.B, agents int, mode string, jobs int) dispatchResult {
	b.Helper()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nc, err := e.Connect("bench")
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	pub, err := bus.New(ctx, nc, bus.Options{Source: "/bench"})
	if err != nil {
		b.Fatal(err)
	}
	var pulls atomic.Int64
	if _, err := nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT.>", func(*nats.Msg) { pulls.Add(1) }); err != nil {
		b.Fatal(err)
	}

	var mu sync.Mutex
	startedAt := map[string]time.Time{}
	run := func(id string) {
		mu.Lock()
		if _, ok := startedAt[id]; !ok {
			startedAt[id] = time.Now()
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	actx, stop := context.WithCancel(ctx)
	for i := range agents {
		anc, err := e.Connect(fmt.Sprintf("agent-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		defer anc.Close()
		ab, err := bus.New(ctx, anc, bus.Options{Source: "/bench-agent"})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		switch mode {
		case "serve":
			go func() {
				defer wg.Done()
				_ = ab.Serve(actx, bus.ServeConfig{Kinds: []string{"build"}, Slots: 1}, func(ctx context.Context, j *bus.Job) error {
					run(j.Subject)
					return nil
				})
			}()
		default:
			go func() {
				defer wg.Done()
				longPull(actx, ab, run)
			}()
		}
	}
	defer func() { stop(); wg.Wait() }()
	time.Sleep(3 * time.Second) // every agent up and settled

	before := pulls.Load()
	time.Sleep(5 * time.Second)
	idle := float64(pulls.Load()-before) / 5

	published := map[string]time.Time{}
	before = pulls.Load()
	t0 := time.Now()
	for i := range jobs {
		id := fmt.Sprintf("job-%03d", i)
		m, err := bus.Encode(ctx, bus.JobSubject("build", "bench/dispatch"), bus.Event{Type: "job.requested", Repository: "bench/dispatch", Subject: id,
			Data: &eventsv1.Job{JobId: id, Repository: "bench/dispatch", Kind: "build"}})
		if err != nil {
			b.Fatal(err)
		}
		published[id] = time.Now()
		if err := pub.PublishMsg(ctx, m); err != nil {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the last job's looks end
	phase := time.Since(t0).Seconds()
	perJob := (float64(pulls.Load()-before) - idle*phase) / float64(jobs)

	mu.Lock()
	defer mu.Unlock()
	var d []time.Duration
	for id, at := range published {
		if s, ok := startedAt[id]; ok {
			d = append(d, s.Sub(at))
		}
	}
	return dispatchResult{idle: idle, perJob: perJob, d: summarize(d), started: len(d)}
}

// longPull is the peer: one pending Fetch(1) with a 1 s expiry, renewed,
// on the pool's consumer as bus.Serve makes it.
func longPull(ctx context.Context, ab *bus.Bus, run func(string)) {
	js := ab.JetStream()
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		c, err := js.CreateOrUpdateConsumer(ctx, bus.StreamJobs, bus.PoolConsumerConfig("build", bus.DefaultPool, 30*time.Second, 5))
		if err == nil {
			cons = c
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		for m := range batch.Messages() {
			ev, err := bus.Decode(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
			if err == nil {
				run(ev.Subject)
			}
			_ = m.Ack()
		}
	}
}
