package bus_test

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/bus"
)

// TestEnsureStreamsIdempotent starts two "services" on one server: both
// create the streams, neither fails, and what the first published survives
// the second's start.
func TestEnsureStreamsIdempotent(t *testing.T) {
	t.Parallel()
	emb := startServer(t, bus.EmbeddedConfig{})
	first := newBus(t, connect(t, emb, "first"), bus.Options{})
	ev := buildFinished("acme/web", "b1")
	if err := first.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	second := newBus(t, connect(t, emb, "second"), bus.Options{})
	if err := second.EnsureStreams(t.Context()); err != nil {
		t.Fatalf("EnsureStreams again: %v", err)
	}

	tests := []struct {
		name      string
		retention jetstream.RetentionPolicy
		subjects  []string
		maxAge    time.Duration
		dupes     time.Duration
	}{
		{bus.StreamEvents, jetstream.LimitsPolicy, []string{"shiploop.evt.>"}, 30 * 24 * time.Hour, 10 * time.Minute},
		{bus.StreamJobs, jetstream.WorkQueuePolicy, []string{"shiploop.job.>"}, 0, 10 * time.Minute},
		{bus.StreamDLQ, jetstream.LimitsPolicy, []string{
			"shiploop.dlq.>",
			"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.EVENTS.>",
			"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.JOBS.>",
		}, 90 * 24 * time.Hour, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := second.JetStream().Stream(t.Context(), tt.name)
			if err != nil {
				t.Fatalf("stream %s: %v", tt.name, err)
			}
			info, err := s.Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			cfg := info.Config
			if cfg.Retention != tt.retention {
				t.Errorf("retention = %v, want %v", cfg.Retention, tt.retention)
			}
			if !slices.Equal(sortedCopy(cfg.Subjects), sortedCopy(tt.subjects)) {
				t.Errorf("subjects = %q, want %q", cfg.Subjects, tt.subjects)
			}
			if cfg.Storage != jetstream.FileStorage {
				t.Errorf("storage = %v, want file", cfg.Storage)
			}
			if cfg.Replicas != 1 {
				t.Errorf("replicas = %d, want 1", cfg.Replicas)
			}
			if cfg.MaxAge != tt.maxAge {
				t.Errorf("max age = %v, want %v", cfg.MaxAge, tt.maxAge)
			}
			if tt.dupes != 0 && cfg.Duplicates != tt.dupes {
				t.Errorf("duplicate window = %v, want %v", cfg.Duplicates, tt.dupes)
			}
		})
	}

	if got := idsOf(streamMsgs(t, second, bus.StreamEvents, ">")); !slices.Equal(got, []string{ev.ID}) {
		t.Errorf("EVENTS after the second start holds %q, want the one event published before it", got)
	}
}

// TestEnsureStreamsUpdatesOptions: a later start with other options updates
// the existing stream instead of failing.
func TestEnsureStreamsUpdatesOptions(t *testing.T) {
	t.Parallel()
	emb := startServer(t, bus.EmbeddedConfig{})
	nc := connect(t, emb, "c")
	newBus(t, nc, bus.Options{})
	b := newBus(t, nc, bus.Options{EventsMaxAge: time.Hour, DuplicateWindow: time.Minute})
	s, err := b.JetStream().Stream(t.Context(), bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != time.Hour || info.Config.Duplicates != time.Minute {
		t.Errorf("EVENTS max age %v, duplicates %v; want 1h and 1m", info.Config.MaxAge, info.Config.Duplicates)
	}
}
