package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// newJob makes a job.requested message.
func newJob(i int) bus.Event {
	id := fmt.Sprintf("job-%02d", i)
	return bus.NewEvent("job.requested", "acme/web", id, &eventsv1.Job{JobId: id, BuildId: "b1", Kind: "build", Repository: "acme/web"})
}

// enqueue publishes a job on the JOBS stream as a producer without a
// database would.
func enqueue(t testing.TB, b *bus.Bus, ev bus.Event) {
	t.Helper()
	m, err := bus.Encode(t.Context(), bus.JobSubject("build", ev.Repository), ev)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := apiCtx(t)
	defer cancel()
	if err := b.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// jobsLeft is how many jobs the work queue still holds.
func jobsLeft(t testing.TB, b *bus.Bus) uint64 {
	t.Helper()
	ctx, cancel := apiCtx(t)
	defer cancel()
	s, err := b.JetStream().Stream(ctx, bus.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// agent is a Bus on its own connection, as a separate agent process has.
func agent(t testing.TB, emb *bus.Embedded, name string) *bus.Bus {
	t.Helper()
	return newBus(t, connect(t, emb, name), bus.Options{Source: "/shiploop/agent"})
}

// TestTakeSharesJobs: two agents on the same consumer run every job exactly
// once between them, and since each holds one job at a time, a job that is
// running does not keep the next one from the other agent.
func TestTakeSharesJobs(t *testing.T) {
	t.Parallel()
	b, emb := startBus(t)
	cfg := bus.JobConsumerConfig{Name: "agents"}
	const n = 20

	var mu sync.Mutex
	ran := map[string][]string{} // job id -> agents that ran it
	var started atomic.Int64
	bothBusy := make(chan struct{})
	var lonely atomic.Bool
	run := func(name string) func(context.Context, *bus.Job) error {
		return func(ctx context.Context, job *bus.Job) error {
			// The first two jobs wait for each other: only two agents
			// taking one job each can run them together.
			if k := started.Add(1); k <= 2 {
				if k == 2 {
					close(bothBusy)
				}
				select {
				case <-bothBusy:
				case <-time.After(waitTimeout):
					lonely.Store(true)
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			mu.Lock()
			ran[job.ID] = append(ran[job.ID], name)
			mu.Unlock()
			return nil
		}
	}
	for _, name := range []string{"agent-a", "agent-b"} {
		a := agent(t, emb, name)
		runBG(t, name, func(ctx context.Context) error { return a.Take(ctx, cfg, run(name)) })
	}
	var want []string
	for i := range n {
		ev := newJob(i)
		want = append(want, ev.ID)
		enqueue(t, b, ev)
	}
	waitFor(t, "every job to run and leave the queue", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ran) == n && jobsLeft(t, b) == 0
	})
	if lonely.Load() {
		t.Error("the first job blocked its agent and the other agent never took the second one")
	}
	mu.Lock()
	defer mu.Unlock()
	byAgent := map[string]int{}
	for _, id := range want {
		if len(ran[id]) != 1 {
			t.Errorf("job %s ran %d times (%v), want once", id, len(ran[id]), ran[id])
		}
		for _, a := range ran[id] {
			byAgent[a]++
		}
	}
	if byAgent["agent-a"] == 0 || byAgent["agent-b"] == 0 {
		t.Errorf("jobs per agent %v, want both to have run some", byAgent)
	}
	if d := consumerInfo(t, b, bus.StreamJobs, cfg.Name).Delivered.Consumer; d != n {
		t.Errorf("consumer made %d deliveries for %d jobs, want no redelivery", d, n)
	}
	t.Logf("jobs per agent: %v", byAgent)
}

// TestTakeRetry: a job whose run fails, or that asks for a retry, comes back
// with Attempt 2; one marked done does not, whatever fn returns after.
func TestTakeRetry(t *testing.T) {
	errFailed := errors.New("step 2 exited with status 1")
	tests := []struct {
		name         string
		first        func(job *bus.Job) error
		wantAttempts []uint64
	}{
		{"fn returns an error", func(*bus.Job) error { return errFailed }, []uint64{1, 2}},
		{"fn calls Retry", func(j *bus.Job) error { return j.Retry(50 * time.Millisecond) }, []uint64{1, 2}},
		{"fn calls Done then fails", func(j *bus.Job) error {
			if err := j.Done(); err != nil {
				return fmt.Errorf("Done: %w", err)
			}
			return errFailed
		}, []uint64{1}},
		{"fn returns nil", func(*bus.Job) error { return nil }, []uint64{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, _ := startBus(t)
			cfg := bus.JobConsumerConfig{Name: "agents"}
			var mu sync.Mutex
			var attempts []uint64
			ev := newJob(1)
			runBG(t, "Take", func(ctx context.Context) error {
				return b.Take(ctx, cfg, func(_ context.Context, job *bus.Job) error {
					mu.Lock()
					attempts = append(attempts, job.Attempt)
					mu.Unlock()
					if job.ID == ev.ID && job.Attempt == 1 {
						return tt.first(job)
					}
					return nil
				})
			})
			enqueue(t, b, ev)
			waitFor(t, "the job to leave the queue", func() bool { return jobsLeft(t, b) == 0 })
			// A sentinel job behind it: once it has run, a redelivery of
			// the first would have shown.
			sentinel := newJob(2)
			enqueue(t, b, sentinel)
			waitFor(t, "the sentinel to leave the queue", func() bool { return jobsLeft(t, b) == 0 })
			mu.Lock()
			defer mu.Unlock()
			got := attempts[:len(attempts)-1] // the last is the sentinel's
			if !slices.Equal(got, tt.wantAttempts) {
				t.Errorf("job ran with attempts %v, want %v", got, tt.wantAttempts)
			}
		})
	}
}

// TestTakeHeartbeatKeepsLongJob: a job running longer than AckWait stays
// with the agent running it; the other agent never gets it.
func TestTakeHeartbeatKeepsLongJob(t *testing.T) {
	t.Parallel()
	b, emb := startBus(t)
	cfg := bus.JobConsumerConfig{Name: "agents", AckWait: time.Second}
	const runFor = 2500 * time.Millisecond

	var mu sync.Mutex
	var runs []string
	for _, name := range []string{"agent-a", "agent-b"} {
		a := agent(t, emb, name)
		runBG(t, name, func(ctx context.Context) error {
			return a.Take(ctx, cfg, func(ctx context.Context, job *bus.Job) error {
				mu.Lock()
				runs = append(runs, fmt.Sprintf("%s attempt %d", name, job.Attempt))
				mu.Unlock()
				select { // the job's work
				case <-time.After(runFor):
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		})
	}
	start := time.Now()
	enqueue(t, b, newJob(1))
	waitFor(t, "the job to finish", func() bool { return jobsLeft(t, b) == 0 })
	if took := time.Since(start); took < runFor {
		t.Fatalf("job left the queue after %v, before its %v of work ended", took, runFor)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != 1 {
		t.Errorf("job ran %d times (%v), want once: heartbeats must keep it past AckWait", len(runs), runs)
	}
	if d := consumerInfo(t, b, bus.StreamJobs, cfg.Name).Delivered.Consumer; d != 1 {
		t.Errorf("consumer made %d deliveries, want 1", d)
	}
}

// TestTakeFromOutbox: a job enqueued in a transaction reaches an agent with
// its payload and the chain id of the event being handled.
func TestTakeFromOutbox(t *testing.T) {
	t.Parallel()
	b, _ := startBus(t)
	o := bus.NewOutbox(sqliteDB(t), b, quietLog())
	runBG(t, "relay", o.Run)
	got := make(chan *bus.Job, 1)
	runBG(t, "Take", func(ctx context.Context) error {
		return b.Take(ctx, bus.JobConsumerConfig{}, func(_ context.Context, job *bus.Job) error {
			got <- job
			return nil
		})
	})
	ev := newJob(7)
	ev.ChainID = "chain-7"
	if err := o.InTx(t.Context(), func(tx *bus.Tx) error { return tx.Enqueue("build", ev) }); err != nil {
		t.Fatal(err)
	}
	select {
	case job := <-got:
		if job.ID != ev.ID || job.Type != "job.requested" || job.ChainID != "chain-7" || job.Attempt != 1 {
			t.Errorf("took %s %s chain %q attempt %d, want %s job.requested chain-7 attempt 1", job.ID, job.Type, job.ChainID, job.Attempt, ev.ID)
		}
		if want := "shiploop.job.build.any.acme_web"; job.NatsSubject != want {
			t.Errorf("job subject %q, want %q", job.NatsSubject, want)
		}
		if j, ok := job.Data.(*eventsv1.Job); !ok || j.GetJobId() != "job-07" {
			t.Errorf("job payload %v, want the Job job-07", job.Data)
		}
	case <-time.After(waitTimeout):
		t.Fatal("job not taken")
	}
}

// TestTakeReturnsWhenContextEnds: an idle agent stops promptly at shutdown.
func TestTakeReturnsWhenContextEnds(t *testing.T) {
	t.Parallel()
	b, _ := startBus(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- b.Take(ctx, bus.JobConsumerConfig{Name: "agents"}, func(context.Context, *bus.Job) error { return nil })
	}()
	waitFor(t, "the agent to wait for a job", func() bool {
		return consumerExists(t, b, bus.StreamJobs, "agents") && consumerInfo(t, b, bus.StreamJobs, "agents").NumWaiting > 0
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Take = %v, want nil", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Take did not return within 1s of its context ending")
	}
}
