package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
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

// LiveJob finds job jobID of repo in the JOBS stream, where a job stays
// while it is queued and while an agent runs it (the agent acknowledges it
// when it ends, and that removes it). ok is false when it is not there:
// never queued, of another repository, or done. It reads the repository's
// jobs one by one, so it costs a JetStream request per job of that
// repository still queued or running.
func (b *Bus) LiveJob(ctx context.Context, repo, jobID string) (ev Event, ok bool, err error) {
	if repo == "" || jobID == "" {
		return Event{}, false, nil
	}
	s, err := b.js.Stream(ctx, StreamJobs)
	if err != nil {
		return Event{}, false, fmt.Errorf("reading the %s stream: %w", StreamJobs, err)
	}
	filter := jobPrefix + "*.*." + RepoToken(repo)
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return Event{}, false, nil
		}
		if err != nil {
			return Event{}, false, fmt.Errorf("reading the jobs of %s: %w", repo, err)
		}
		seq = m.Sequence + 1
		if unpct(m.Header.Get(HeaderSubject)) != jobID {
			continue
		}
		ev, err := Decode(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
		if err != nil || ev.Repository != repo {
			continue // unreadable, or another repository with the same token
		}
		ev.Sequence = m.Sequence
		return ev, true, nil
	}
}
