package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// JobConsumerConfig configures the agents' shared work-queue consumer.
type JobConsumerConfig struct {
	// Name is the durable name all agents share (default "agents").
	Name string
	// Filters select job subjects (default all jobs).
	Filters []string
	// AckWait before a silent agent's job goes to another (default 30s);
	// Take sends InProgress heartbeats while the job runs.
	AckWait time.Duration
	// MaxDeliver bounds how often a job is tried (default 5).
	MaxDeliver int
}

// Job is one job message taken from the JOBS stream.
type Job struct {
	Event
	// Attempt is 1 on the first delivery.
	Attempt uint64
	msg     jetstream.Msg
}

// Done acknowledges the job: it leaves the work queue.
func (j *Job) Done() error { return j.msg.Ack() }

// Retry gives the job back for another agent after delay.
func (j *Job) Retry(delay time.Duration) error { return j.msg.NakWithDelay(delay) }

// Take pulls jobs one at a time (no pre-buffering, so a long job cannot make
// queued ones time out) and calls fn for each while heartbeating it. fn
// decides the job's fate with Done or Retry; if it does neither, the job is
// acknowledged when fn returns nil and retried after a delay otherwise.
func (b *Bus) Take(ctx context.Context, cfg JobConsumerConfig, fn func(ctx context.Context, job *Job) error) error {
	if cfg.Name == "" {
		cfg.Name = "agents"
	}
	if len(cfg.Filters) == 0 {
		cfg.Filters = []string{jobPrefix + ">"}
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = 5
	}
	cc := jetstream.ConsumerConfig{
		Durable: cfg.Name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: cfg.AckWait,
		MaxDeliver: cfg.MaxDeliver, MaxAckPending: -1,
	}
	if len(cfg.Filters) == 1 {
		cc.FilterSubject = cfg.Filters[0]
	} else {
		cc.FilterSubjects = cfg.Filters
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, StreamJobs, cc)
	if err != nil {
		return fmt.Errorf("bus: creating job consumer %s: %w", cfg.Name, err)
	}
	for ctx.Err() == nil {
		// The pull ends with ctx, not only at its expiry, so that an idle
		// agent stops at once when asked to.
		job, m, ok := next(ctx, cons, 5*time.Second)
		if !ok {
			continue
		}
		jctx := ContextFrom(ctx, job.Event)
		hbCtx, hbStop := context.WithCancel(jctx)
		go heartbeat(hbCtx, m, jobHeartbeat(cfg.AckWait))
		err = fn(jctx, job)
		hbStop()
		if err != nil {
			_ = m.NakWithDelay(time.Second)
		} else {
			_ = m.Ack()
		}
	}
	return nil
}

// jobHeartbeat is how often a running job tells JetStream it is in
// progress: a third of the consumer's lease (AckWait), at least every 5 s.
func jobHeartbeat(lease time.Duration) time.Duration {
	return min(lease/3, 5*time.Second)
}
