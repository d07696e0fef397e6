package bus_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shiploop/shiploop/pkg/bus"
)

// watch runs Watch until the test ends and passes on what it sees.
func watch(t *testing.T, b *bus.Bus, opts bus.WatchOptions) <-chan bus.Event {
	t.Helper()
	seen := make(chan bus.Event, 100)
	runBG(t, "Watch", func(ctx context.Context) error {
		return b.Watch(ctx, opts, func(ev bus.Event) error {
			select {
			case seen <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	})
	return seen
}

// collectUntil reads events until one with id last arrives, and returns
// their ids in order.
func collectUntil(t *testing.T, seen <-chan bus.Event, last string) []string {
	t.Helper()
	var ids []string
	timeout := time.After(waitTimeout)
	for {
		select {
		case ev := <-seen:
			if ev.Sequence == 0 {
				t.Errorf("event %s (%s) arrived without its stream sequence", ev.ID, ev.Type)
			}
			ids = append(ids, ev.ID)
			if ev.ID == last {
				return ids
			}
		case <-timeout:
			t.Fatalf("%s not seen; got %v", last, ids)
		}
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	mustPublish := func(t *testing.T, b *bus.Bus, evs ...bus.Event) []string {
		t.Helper()
		var ids []string
		ctx, cancel := apiCtx(t)
		defer cancel()
		for _, ev := range evs {
			if err := b.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, ev.ID)
		}
		return ids
	}
	t.Run("filters", func(t *testing.T) {
		t.Parallel()
		b, _ := startBus(t)
		match := buildFinished("acme/web", "b1")
		mustPublish(t, b,
			match,
			buildFinished("acme/api", "b2"),
			bus.NewEvent("build.started", "acme/web", "b3", buildFinished("acme/web", "b3").Data),
			changePushed("acme/web", "c0ffee"),
		)
		// Not a shiploop event, on a matching subject: skipped, not fatal.
		junk := nats.NewMsg(bus.EventSubject("build.finished", "acme/web"))
		junk.Data = []byte("not protobuf")
		if err := b.PublishMsg(t.Context(), junk); err != nil {
			t.Fatal(err)
		}
		last := buildFinished("acme/web", "b4")
		mustPublish(t, b, last)
		seen := watch(t, b, bus.WatchOptions{Filters: []string{bus.EventFilter("build.finished", "acme/web")}, FromStart: true})
		if got, want := collectUntil(t, seen, last.ID), []string{match.ID, last.ID}; !slices.Equal(got, want) {
			t.Errorf("watched %v, want only the matching %v", got, want)
		}
	})
	t.Run("several filters", func(t *testing.T) {
		t.Parallel()
		b, _ := startBus(t)
		ids := mustPublish(t, b,
			buildFinished("acme/web", "b1"),
			buildFinished("acme/api", "b2"),
			changePushed("acme/web", "c1"),
			changePushed("other/x", "c2"),
		)
		seen := watch(t, b, bus.WatchOptions{FromStart: true, Filters: []string{
			bus.EventFilter("build", "acme/api"), bus.EventFilter("change.pushed", "acme/web"),
		}})
		if got, want := collectUntil(t, seen, ids[2]), []string{ids[1], ids[2]}; !slices.Equal(got, want) {
			t.Errorf("watched %v, want %v", got, want)
		}
	})
	t.Run("since", func(t *testing.T) {
		t.Parallel()
		b, _ := startBus(t)
		mustPublish(t, b, buildFinished("acme/web", "old1"), buildFinished("acme/web", "old2"))
		since := time.Now()
		newer := mustPublish(t, b, buildFinished("acme/web", "new1"), changePushed("acme/web", "new2"))
		seen := watch(t, b, bus.WatchOptions{Since: since})
		if got := collectUntil(t, seen, newer[1]); !slices.Equal(got, newer) {
			t.Errorf("watched %v, want only the events since %v: %v", got, since, newer)
		}
	})
	t.Run("from start", func(t *testing.T) {
		t.Parallel()
		b, _ := startBus(t)
		all := mustPublish(t, b, buildFinished("acme/web", "b1"), changePushed("acme/api", "c1"), buildFinished("x/y", "b2"))
		seen := watch(t, b, bus.WatchOptions{FromStart: true})
		if got := collectUntil(t, seen, all[2]); !slices.Equal(got, all) {
			t.Errorf("watched %v, want everything in order: %v", got, all)
		}
	})
	t.Run("new only by default", func(t *testing.T) {
		t.Parallel()
		b, _ := startBus(t)
		old := mustPublish(t, b, buildFinished("acme/web", "old"))
		seen := watch(t, b, bus.WatchOptions{})
		// Publish until the watcher, which starts asynchronously, sees one.
		var got []string
		var published []string
		deadline := time.Now().Add(waitTimeout)
		for len(got) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("watcher saw nothing")
			}
			published = append(published, mustPublish(t, b, buildFinished("acme/web", "new"))...)
			select {
			case ev := <-seen:
				got = append(got, ev.ID)
			case <-time.After(50 * time.Millisecond):
			}
		}
		if slices.Contains(got, old[0]) || !slices.Contains(published, got[0]) {
			t.Errorf("first watched event %s, want one published after Watch started (old: %s)", got[0], old[0])
		}
	})
	t.Run("fn error stops Watch", func(t *testing.T) {
		t.Parallel()
		b, _ := startBus(t)
		mustPublish(t, b, buildFinished("acme/web", "b1"))
		errStop := errors.New("enough")
		done := make(chan error, 1)
		go func() {
			done <- b.Watch(t.Context(), bus.WatchOptions{FromStart: true}, func(bus.Event) error { return errStop })
		}()
		select {
		case err := <-done:
			if !errors.Is(err, errStop) {
				t.Errorf("Watch = %v, want fn's error", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Watch did not return fn's error")
		}
	})
}
