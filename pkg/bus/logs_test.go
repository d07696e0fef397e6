package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// storeLog puts lines 1..n (and, with end, the end marker n+1) as the
// stored log of job.
func storeLog(t *testing.T, b *bus.Bus, job string, n int, end bool) {
	t.Helper()
	var buf bytes.Buffer
	for i := 1; i <= n; i++ {
		if err := bus.EncodeLog(&buf, &eventsv1.LogLine{JobId: job, Step: "s", Number: uint64(i), Stream: "stdout", Text: fmt.Sprint(i), Time: timestamppb.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if end {
		_ = bus.EncodeLog(&buf, &eventsv1.LogLine{JobId: job, Number: uint64(n + 1), Stream: "end"})
	}
	ctx, cancel := apiCtx(t)
	defer cancel()
	obs, err := b.LogStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: job}, &buf); err != nil {
		t.Fatal(err)
	}
}

// TestFollowLogFromStore: the stored log streams in order from any point,
// each line once, and a follower switches from the store to the live tail
// without a gap or a repeat.
func TestFollowLogFromStore(t *testing.T) {
	t.Parallel()
	b, _ := startBus(t)
	storeLog(t, b, "job-1", 20_000, true)
	for _, after := range []uint64{0, 1, 12_345, 19_999, 20_000} {
		var got []uint64
		err := b.FollowLog(t.Context(), "job-1", after, false, func(l *eventsv1.LogLine) error {
			got = append(got, l.GetNumber())
			return nil
		})
		if err != nil {
			t.Fatalf("after %d: %v", after, err)
		}
		if want := 20_000 - int(after); len(got) != want {
			t.Fatalf("after %d: got %d lines, want %d", after, len(got), want)
		}
		for i, n := range got {
			if n != after+uint64(i)+1 {
				t.Fatalf("after %d: line %d is number %d, want %d", after, i, n, after+uint64(i)+1)
			}
		}
	}

	// A running job: 500 lines stored, the rest only live.
	storeLog(t, b, "job-2", 500, false)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	lines := make(chan uint64, 2000)
	done := make(chan error, 1)
	go func() {
		done <- b.FollowLog(ctx, "job-2", 0, true, func(l *eventsv1.LogLine) error {
			lines <- l.GetNumber()
			return nil
		})
	}()
	for want := uint64(1); want <= 500; want++ {
		if n := <-lines; n != want {
			t.Fatalf("stored part: got line %d, want %d", n, want)
		}
	}
	// FollowLog subscribed to the live tail before it read the store.
	for i := 450; i <= 1000; i++ { // the live tail repeats some stored lines
		l := &eventsv1.LogLine{JobId: "job-2", Step: "s", Number: uint64(i), Stream: "stdout", Text: fmt.Sprint(i)}
		if i == 1000 {
			l.Stream = "end"
		}
		if err := b.PublishLog("job-2", l); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(lines)
	want := uint64(501)
	for n := range lines {
		if n != want {
			t.Fatalf("live part: got line %d, want %d", n, want)
		}
		want++
	}
	if want != 1000 {
		t.Errorf("live part ended before line %d, want 999 lines then the end", want)
	}
}
