package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// Options configure a Bus.
type Options struct {
	// Source is this producer's CloudEvents source, e.g. "/shiploop/builds".
	Source string
	// Replicas for the streams: 1 embedded, 3 on a cluster.
	Replicas int
	// EventsMaxAge bounds EVENTS retention (default 30 days).
	EventsMaxAge time.Duration
	// DuplicateWindow is JetStream's dedup window; it must cover the outbox
	// relay's worst-case retry span (default 10 minutes).
	DuplicateWindow time.Duration
}

// Bus publishes and consumes shiploop events on JetStream.
type Bus struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options
	// replicated holds the Object Store buckets whose replicas this
	// process has checked (ObjectStore), so the check is one round trip
	// per bucket, not one per log store or artifact.
	replicated sync.Map
}

// New wraps a connection and makes sure the streams exist.
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Bus, error) {
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.EventsMaxAge <= 0 {
		opts.EventsMaxAge = 30 * 24 * time.Hour
	}
	if opts.DuplicateWindow <= 0 {
		opts.DuplicateWindow = 10 * time.Minute
	}
	// An async publish whose ack died with a cluster node must fail (and be
	// retried by the relay), not wait forever.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	b := &Bus{nc: nc, js: js, opts: opts}
	if err := b.EnsureStreams(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// Conn is the underlying NATS connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream is the underlying JetStream context.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Source is this bus's CloudEvents source.
func (b *Bus) Source() string { return b.opts.Source }

// EnsureStreams creates or updates EVENTS, JOBS and DLQ. It is idempotent
// and safe to call from every service at start.
func (b *Bus) EnsureStreams(ctx context.Context) error {
	streams := []jetstream.StreamConfig{
		{
			Name: StreamEvents, Subjects: []string{eventPrefix + ">"},
			Retention: jetstream.LimitsPolicy, MaxAge: b.opts.EventsMaxAge,
			Storage: jetstream.FileStorage, Replicas: b.opts.Replicas,
			Duplicates: b.opts.DuplicateWindow, AllowDirect: true,
			Description: "shiploop events (CloudEvents binary mode, protobuf payloads)",
		},
		{
			Name: StreamJobs, Subjects: []string{jobPrefix + ">"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
			Replicas: b.opts.Replicas, Duplicates: b.opts.DuplicateWindow,
			Description: "jobs for agents (work queue)",
		},
		{
			Name: StreamDLQ,
			Subjects: []string{
				dlqPrefix + ">",
				"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.EVENTS.>",
				"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.JOBS.>",
			},
			Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
			Replicas: b.opts.Replicas, MaxAge: 90 * 24 * time.Hour,
			Description: "dead letters: poison copies with the reason, and max-deliveries advisories",
		},
	}
	for _, cfg := range streams {
		err := UntilSettled(ctx, slog.Default(), "creating stream "+cfg.Name, func() error {
			_, err := b.js.CreateOrUpdateStream(ctx, cfg)
			return err
		})
		if err != nil {
			return fmt.Errorf("bus: creating stream %s: %w", cfg.Name, err)
		}
	}
	// The outbox writes pool registrations into this bucket (EnqueueFor).
	return UntilSettled(ctx, slog.Default(), "opening the job pool bucket", func() error {
		_, err := b.Pools(ctx)
		return err
	})
}

func (b *Bus) fill(ev *Event) {
	if ev.ID == "" {
		ev.ID = NewID()
	}
	if ev.Source == "" {
		ev.Source = b.opts.Source
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
}

// Publish publishes an event directly (not from a transaction) and waits for
// JetStream's ack. Producers with a database use Outbox instead.
func (b *Bus) Publish(ctx context.Context, ev Event) error {
	b.fill(&ev)
	m, err := Encode(ctx, EventSubject(ev.Type, ev.Repository), ev)
	if err != nil {
		return err
	}
	if _, err := b.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("bus: publishing %s: %w", ev.Type, err)
	}
	return nil
}

// PublishMsg publishes an already encoded message and waits for the ack.
func (b *Bus) PublishMsg(ctx context.Context, m *nats.Msg) error {
	if _, err := b.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("bus: publishing to %s: %w", m.Subject, err)
	}
	return nil
}

// PublishLog sends a live log line on core NATS (best effort, not stored).
func (b *Bus) PublishLog(jobID string, line proto.Message) error {
	data, err := proto.Marshal(line)
	if err != nil {
		return err
	}
	return b.nc.Publish(LogSubject(jobID), data)
}

// WatchOptions select events for Watch.
type WatchOptions struct {
	// Filters are subject filters (see EventFilter); all events when empty.
	Filters []string
	// Since replays events from this time; only new events when zero.
	Since time.Time
	// FromStart replays the whole stream.
	FromStart bool
	// Ready, when set, is called once the consumer is in place: every event
	// published after it returns will be seen.
	Ready func() error
}

// Watch streams decoded events to fn until ctx ends or fn returns an error.
// It uses an ordered, ephemeral consumer: nothing is left behind.
func (b *Bus) Watch(ctx context.Context, opts WatchOptions, fn func(Event) error) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	switch {
	case opts.FromStart:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	case !opts.Since.IsZero():
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		t := opts.Since
		cfg.OptStartTime = &t
	}
	cfg.FilterSubjects = opts.Filters
	cons, err := b.js.OrderedConsumer(ctx, StreamEvents, cfg)
	if err != nil {
		return fmt.Errorf("bus: watching events: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("bus: watching events: %w", err)
	}
	if opts.Ready != nil {
		if err := opts.Ready(); err != nil {
			it.Stop()
			return err
		}
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return ctx.Err()
			}
			return fmt.Errorf("bus: watching events: %w", err)
		}
		ev, err := Decode(natsMsg(m))
		if err != nil {
			continue // not ours; a watcher shows what it understands
		}
		if md, err := m.Metadata(); err == nil {
			ev.Sequence = md.Sequence.Stream
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// natsMsg adapts a jetstream.Msg to the *nats.Msg Decode reads.
func natsMsg(m jetstream.Msg) *nats.Msg {
	return &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
}
