package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A service starting while the cluster elects leaders waits for it instead
// of exiting (a CI run saw `shiploop serve` exit with "creating consumer
// gates-statuses on EVENTS: context deadline exceeded"); a request the
// server refuses is returned at once.
func TestUntilSettled(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("creating consumer: %w", context.DeadlineExceeded), true},
		{nats.ErrTimeout, true},
		{nats.ErrNoResponders, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{&jetstream.APIError{Code: 500, ErrorCode: 10118, Description: "consumer create failed"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10100, Description: "filter subject overlaps"}, false},
		{jetstream.ErrConsumerNotFound, false},
		{errors.New("invalid consumer name"), false},
	} {
		if got := transient(c.err); got != c.want {
			t.Errorf("transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	calls := 0
	err := UntilSettled(t.Context(), log, "creating consumer x", func() error {
		if calls++; calls < 3 {
			return fmt.Errorf("bus: %w", context.DeadlineExceeded)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("untilSettled: %v after %d calls, want success on the 3rd", err, calls)
	}
	calls = 0
	refused := &jetstream.APIError{Code: 400, ErrorCode: 10100, Description: "filter subject overlaps"}
	if err := UntilSettled(t.Context(), log, "creating consumer x", func() error { calls++; return refused }); !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("a refused request: %v after %d calls, want it at once", err, calls)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls = 0
	if err := UntilSettled(ctx, log, "creating consumer x", func() error { calls++; return nats.ErrTimeout }); !errors.Is(err, nats.ErrTimeout) || calls != 1 {
		t.Fatalf("after ctx ended: %v after %d calls, want the error at once", err, calls)
	}

	noJetStreamFor = 600 * time.Millisecond
	t.Cleanup(func() { noJetStreamFor = 30 * time.Second })
	calls = 0
	err = UntilSettled(t.Context(), log, "creating stream EVENTS", func() error { calls++; return nats.ErrNoResponders })
	if !errors.Is(err, nats.ErrNoResponders) || !strings.Contains(err.Error(), "JetStream enabled") || calls < 2 {
		t.Fatalf("a server without JetStream: %v after %d calls, want the error naming the fix after a few tries", err, calls)
	}
}
