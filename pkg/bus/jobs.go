package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

// LostJobSubjects are JetStream's advisories for job messages that reached
// their consumer's MaxDeliver unacknowledged: each agent that took the job
// stopped before it ended (killed, out of memory, its host gone). The DLQ
// stream stores them (EnsureStreams).
const LostJobSubjects = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamJobs + ".>"

// LostJobsConfig configures LostJobs.
type LostJobsConfig struct {
	// Name is the durable consumer's name on the DLQ stream.
	Name string
	// Retry is the delay before a lost job whose handler failed is offered
	// again (default 5s).
	Retry time.Duration
}

// LostJobs calls fn, until ctx ends, with every job that no agent will run
// again: JetStream gave up delivering it (LostJobSubjects). deliveries is
// how many times it was delivered. When fn returns nil the job's message
// is deleted from the JOBS stream (its advisory stays in the DLQ, listed
// with its original gone). fn must be idempotent: an advisory is offered
// again until fn returns nil and the job is deleted, and the durable
// consumer starts with the oldest advisory the DLQ stream holds. A job
// whose message is gone (acked after all, or deleted) is skipped, and so is
// a message stored after the advisory was (JOBS recreated since, its
// sequence numbers reused).
func (b *Bus) LostJobs(ctx context.Context, cfg LostJobsConfig, fn func(ctx context.Context, job Event, deliveries uint64) error) error {
	if cfg.Retry <= 0 {
		cfg.Retry = 5 * time.Second
	}
	for first := true; ctx.Err() == nil; first = false {
		var cons jetstream.Consumer
		err := UntilSettled(ctx, slog.Default(), "creating consumer "+cfg.Name+" on "+StreamDLQ, func() error {
			var err error
			cons, err = b.js.CreateOrUpdateConsumer(ctx, StreamDLQ, jetstream.ConsumerConfig{
				Durable: cfg.Name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
				FilterSubject: LostJobSubjects, DeliverPolicy: jetstream.DeliverAllPolicy,
			})
			return err
		})
		switch {
		case ctx.Err() != nil:
			return nil // stopped
		case err != nil && first:
			return fmt.Errorf("bus: creating lost-job consumer %s: %w", cfg.Name, err)
		case err != nil:
			// Made again after its pulls found it gone, which they also do
			// through a long JetStream outage: keep trying, do not stop the
			// service for it.
			slog.Default().Warn("lost-job consumer not made again; trying again", "consumer", cfg.Name, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(cfg.Retry):
			}
			continue
		}
		b.handleLostJobs(ctx, cfg, cons, fn) // returns when the consumer is gone, or ctx ends
	}
	return nil
}

func (b *Bus) handleLostJobs(ctx context.Context, cfg LostJobsConfig, cons jetstream.Consumer, fn func(ctx context.Context, job Event, deliveries uint64) error) {
	for ctx.Err() == nil {
		m, err := pullOne(ctx, cons, 5*time.Second)
		if gone(err) {
			return // someone deleted it: make it again
		}
		if err != nil {
			continue
		}
		job, deliveries, ok, err := b.lostJob(ctx, m.Data())
		switch {
		case err != nil:
			_ = m.NakWithDelay(cfg.Retry)
		case !ok:
			_ = m.Ack()
		default:
			if err := fn(ctx, job, deliveries); err != nil {
				_ = m.NakWithDelay(cfg.Retry)
				continue
			}
			// The job is over: out of the work queue, where LiveJob would
			// still count it as queued or running.
			if err := b.deleteJob(ctx, job.Sequence); err != nil {
				_ = m.NakWithDelay(cfg.Retry)
				continue
			}
			_ = m.Ack()
		}
	}
}

// lostJob reads the job a max-deliveries advisory names from the JOBS
// stream. ok is false for an advisory that names no job still there, a
// message stored after the advisory (not the job it names), or one that
// cannot be read (nothing could run it anyway).
func (b *Bus) lostJob(ctx context.Context, advisory []byte) (job Event, deliveries uint64, ok bool, err error) {
	var a struct {
		Time       time.Time `json:"timestamp"`
		Stream     string    `json:"stream"`
		StreamSeq  uint64    `json:"stream_seq"`
		Deliveries uint64    `json:"deliveries"`
	}
	if json.Unmarshal(advisory, &a) != nil || a.Stream != StreamJobs || a.StreamSeq == 0 {
		return Event{}, 0, false, nil
	}
	s, err := b.js.Stream(ctx, StreamJobs)
	if err != nil {
		return Event{}, 0, false, fmt.Errorf("reading the %s stream: %w", StreamJobs, err)
	}
	m, err := s.GetMsg(ctx, a.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Event{}, 0, false, nil
	}
	if err != nil {
		return Event{}, 0, false, fmt.Errorf("reading job %d of the %s stream: %w", a.StreamSeq, StreamJobs, err)
	}
	if !a.Time.IsZero() && m.Time.After(a.Time) {
		return Event{}, 0, false, nil
	}
	ev, err := Decode(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
	if err != nil {
		return Event{}, 0, false, nil
	}
	ev.Sequence = m.Sequence
	return ev, a.Deliveries, true, nil
}

// deleteJob removes the job at seq from the JOBS stream; one already gone
// is fine.
func (b *Bus) deleteJob(ctx context.Context, seq uint64) error {
	s, err := b.js.Stream(ctx, StreamJobs)
	if err == nil {
		err = s.DeleteMsg(ctx, seq)
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("deleting job %d from the %s stream: %w", seq, StreamJobs, err)
	}
	return nil
}
