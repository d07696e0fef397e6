package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// changes is the filter of the test consumers: they take change.* events and
// publish build.created, which they do not consume themselves.
var changes = []string{bus.EventFilter("change", "")}

// recordAndPublish is the handler the idempotency tests run: it writes a row
// and publishes a build.created event in the handler's transaction.
func recordAndPublish(ctx context.Context, tx *bus.Tx, ev bus.Event) (derivedID string, err error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO bustest_rows (event_id, note) VALUES ($1, 'handled')`, ev.ID); err != nil {
		return "", err
	}
	out := bus.NewEvent("build.created", ev.Repository, "build-of-"+ev.ID, &eventsv1.BuildCreated{BuildId: "b", Repository: ev.Repository})
	return out.ID, tx.Publish(out)
}

// publishOrFail publishes ev and returns its stream sequence.
func publishOrFail(t testing.TB, b *bus.Bus, ev bus.Event) uint64 {
	t.Helper()
	ctx, cancel := apiCtx(t)
	defer cancel()
	if err := b.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	for _, m := range streamMsgs(t, b, bus.StreamEvents, ">") {
		if m.Header.Get(bus.HeaderID) == ev.ID {
			return m.Sequence
		}
	}
	t.Fatalf("event %s not stored", ev.ID)
	return 0
}

// derivedEvents returns the build.created events on EVENTS.
func derivedEvents(t testing.TB, b *bus.Bus) []bus.Event {
	t.Helper()
	var out []bus.Event
	for _, m := range streamMsgs(t, b, bus.StreamEvents, bus.EventFilter("build.created", "")) {
		out = append(out, decodeStored(t, m))
	}
	return out
}

// eventIDs lists the ids of events, for messages.
func eventIDs(evs []bus.Event) []string {
	ids := make([]string, 0, len(evs))
	for _, ev := range evs {
		ids = append(ids, ev.ID)
	}
	return ids
}

// TestConsumeIsIdempotent: however an event comes to be delivered twice, the
// handler's effects (a row, an outbox event) happen once.
func TestConsumeIsIdempotent(t *testing.T) {
	tests := []struct {
		name string
		// deliverTwice publishes ev so that the consumer gets it twice and
		// returns the stream sequence the consumer must get past; crash is
		// called by the handler on its first run.
		deliverTwice func(t *testing.T, b *bus.Bus, ev bus.Event) uint64
		// crashAfterFirst makes the first consuming process lose its
		// connection right after its handler ran, so the commit happens
		// but the ack never arrives.
		crashAfterFirst bool
		wantDeliveries  uint64
	}{
		{
			name: "published again under another Nats-Msg-Id",
			deliverTwice: func(t *testing.T, b *bus.Bus, ev bus.Event) uint64 {
				publishOrFail(t, b, ev)
				m, err := bus.Encode(t.Context(), bus.EventSubject(ev.Type, ev.Repository), ev)
				if err != nil {
					t.Fatal(err)
				}
				m.Header.Set(nats.MsgIdHdr, ev.ID+"-retried-by-a-producer")
				if err := b.PublishMsg(t.Context(), m); err != nil {
					t.Fatal(err)
				}
				var seqs []uint64
				for _, m := range streamMsgs(t, b, bus.StreamEvents, ">") {
					if m.Header.Get(bus.HeaderID) == ev.ID {
						seqs = append(seqs, m.Sequence)
					}
				}
				if len(seqs) != 2 {
					t.Fatalf("EVENTS holds the event %d times, want 2 for this test", len(seqs))
				}
				return seqs[1]
			},
			wantDeliveries: 2,
		},
		{
			name: "redelivered after a crash between commit and ack",
			deliverTwice: func(t *testing.T, b *bus.Bus, ev bus.Event) uint64 {
				return publishOrFail(t, b, ev)
			},
			crashAfterFirst: true,
			wantDeliveries:  2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			engines(t, func(t *testing.T, db *store.DB) {
				t.Parallel()
				b, emb := startBus(t)
				relay := bus.NewOutbox(db, b, quietLog())
				relay.Poll = 20 * time.Millisecond // the consumers' outboxes wake only themselves
				runBG(t, "relay", relay.Run)

				cfg := bus.ConsumerConfig{Name: "test-idem", Filters: changes, AckWait: time.Second, Backoff: []time.Duration{50 * time.Millisecond}}
				var calls atomic.Int64
				var mu sync.Mutex
				var derived []string
				handler := func(crash func()) bus.Handler {
					return func(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
						calls.Add(1)
						id, err := recordAndPublish(ctx, tx, ev)
						mu.Lock()
						derived = append(derived, id)
						mu.Unlock()
						if crash != nil {
							crash()
						}
						return err
					}
				}

				// The first process: its own connection, which it may lose.
				nc1 := connect(t, emb, "process-1")
				first := bus.NewOutbox(db, newBus(t, nc1, bus.Options{}), quietLog())
				var crash func()
				if tt.crashAfterFirst {
					crash = func() { nc1.Close() }
				}
				runBG(t, "Consume 1", func(ctx context.Context) error { return first.Consume(ctx, cfg, handler(crash)) })
				ev := changePushed("acme/web", "c0ffee")
				seq := tt.deliverTwice(t, b, ev)
				if tt.crashAfterFirst {
					waitFor(t, "the first handler run", func() bool { return calls.Load() == 1 })
					// The process restarts; the server redelivers after AckWait.
					second := bus.NewOutbox(db, newBus(t, connect(t, emb, "process-2"), bus.Options{}), quietLog())
					runBG(t, "Consume 2", func(ctx context.Context) error { return second.Consume(ctx, cfg, handler(nil)) })
				}

				info := waitSettled(t, b, bus.StreamEvents, cfg.Name, seq)
				if got := info.Delivered.Consumer; got != tt.wantDeliveries {
					t.Errorf("consumer made %d deliveries, want %d (the event must really arrive twice)", got, tt.wantDeliveries)
				}
				if n := calls.Load(); n != 1 {
					t.Errorf("handler ran %d times, want 1", n)
				}
				if n := countRows(t, db, ev.ID); n != 1 {
					t.Errorf("handler's row written %d times, want 1", n)
				}
				waitFor(t, "an empty outbox", func() bool { return outboxLen(t, db) == 0 })
				got := derivedEvents(t, b)
				mu.Lock()
				defer mu.Unlock()
				if len(got) != 1 || got[0].ID != derived[0] {
					t.Fatalf("build.created events %v, want exactly the one the handler published (%v)", eventIDs(got), derived)
				}
				if got[0].ChainID != ev.ChainID {
					t.Errorf("build.created chain id = %q, want the cause's %q", got[0].ChainID, ev.ChainID)
				}
			})
		})
	}
}

// TestConsumeHandlerErrorRollsBackAndRetries: a failed attempt leaves no
// row and publishes nothing; the event comes back (no sooner than Backoff[0])
// and the next attempt's effects are the only ones.
func TestConsumeHandlerErrorRollsBackAndRetries(t *testing.T) {
	engines(t, func(t *testing.T, db *store.DB) {
		t.Parallel()
		b, _ := startBus(t)
		o := bus.NewOutbox(db, b, quietLog())
		runBG(t, "relay", o.Run)
		const backoff = 200 * time.Millisecond
		cfg := bus.ConsumerConfig{Name: "test-retry", Filters: changes, Backoff: []time.Duration{backoff}}

		var mu sync.Mutex
		var starts, ends []time.Time
		var derived []string
		var rowsSeen []int
		runBG(t, "Consume", func(ctx context.Context) error {
			return o.Consume(ctx, cfg, func(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
				mu.Lock()
				starts = append(starts, time.Now())
				attempt := len(starts)
				mu.Unlock()
				var n int
				if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM bustest_rows WHERE event_id = $1`, ev.ID).Scan(&n); err != nil {
					return err
				}
				id, err := recordAndPublish(ctx, tx, ev)
				mu.Lock()
				defer mu.Unlock()
				rowsSeen = append(rowsSeen, n)
				derived = append(derived, id)
				ends = append(ends, time.Now())
				if err != nil {
					return err
				}
				if attempt == 1 {
					return errors.New("transient: repository host unreachable")
				}
				return nil
			})
		})
		ev := changePushed("acme/web", "c0ffee")
		seq := publishOrFail(t, b, ev)
		info := waitSettled(t, b, bus.StreamEvents, cfg.Name, seq)

		mu.Lock()
		defer mu.Unlock()
		if len(starts) != 2 {
			t.Fatalf("handler ran %d times, want 2 (fail, then succeed)", len(starts))
		}
		if info.Delivered.Consumer != 2 || info.Delivered.Stream != seq {
			t.Errorf("consumer delivered %d times up to stream seq %d, want 2 deliveries of seq %d",
				info.Delivered.Consumer, info.Delivered.Stream, seq)
		}
		if gap := starts[1].Sub(ends[0]); gap < backoff {
			t.Errorf("second delivery came %v after the failure, want at least Backoff[0] = %v", gap, backoff)
		}
		if !slices.Equal(rowsSeen, []int{0, 0}) {
			t.Errorf("rows for the event seen by each attempt = %v, want [0 0]: the failed attempt's row must roll back", rowsSeen)
		}
		if n := countRows(t, db, ev.ID); n != 1 {
			t.Errorf("rows after success = %d, want 1", n)
		}
		waitFor(t, "an empty outbox", func() bool { return outboxLen(t, db) == 0 })
		got := derivedEvents(t, b)
		if len(got) != 1 || got[0].ID != derived[1] {
			t.Errorf("build.created events %v; want only the successful attempt's %s, not the failed one's %s", eventIDs(got), derived[1], derived[0])
		}
	})
}

// TestConsumeDeadLetters: a handler that keeps failing, a permanent error and
// a malformed message each end as one copy on shiploop.dlq.<consumer> with
// the reason and the original message, and the original stops coming.
func TestConsumeDeadLetters(t *testing.T) {
	const maxDeliver = 3
	tests := []struct {
		name string
		// mangle, when set, damages the message before it is published.
		mangle      func(m *nats.Msg)
		handlerErr  error
		wantCalls   int
		wantDeliv   int
		wantReasons []string
	}{
		{
			name:        "handler always fails",
			handlerErr:  errors.New("boom: disk on fire"),
			wantCalls:   maxDeliver,
			wantDeliv:   maxDeliver,
			wantReasons: []string{"boom: disk on fire"},
		},
		{
			name:        "permanent error",
			handlerErr:  bus.Permanent(errors.New("config: line 3: unknown field")),
			wantCalls:   1,
			wantDeliv:   1,
			wantReasons: []string{"config: line 3: unknown field"},
		},
		{
			name:        "wrapped permanent error",
			handlerErr:  fmt.Errorf("creating build: %w", bus.Permanent(errors.New("no such ref"))),
			wantCalls:   1,
			wantDeliv:   1,
			wantReasons: []string{"creating build: no such ref"},
		},
		{
			name:        "handler reports malformed",
			handlerErr:  fmt.Errorf("%w: change without a ref", bus.ErrMalformed),
			wantCalls:   1,
			wantDeliv:   1,
			wantReasons: []string{"change without a ref"},
		},
		{
			name:        "garbage payload",
			mangle:      func(m *nats.Msg) { m.Data = []byte{0xff, 0xff, 0xff, 0xff} },
			wantCalls:   0,
			wantDeliv:   1,
			wantReasons: []string{bus.ErrMalformed.Error(), "payload is not a shiploop.events.v1.Change"},
		},
		{
			name:        "unknown ce-dataschema",
			mangle:      func(m *nats.Msg) { m.Header.Set(bus.HeaderDataSchema, "shiploop.events.v1.NoSuchThing") },
			wantCalls:   0,
			wantDeliv:   1,
			wantReasons: []string{bus.ErrMalformed.Error(), `unknown ce-dataschema "shiploop.events.v1.NoSuchThing"`},
		},
		{
			name:        "no ce-type",
			mangle:      func(m *nats.Msg) { delete(m.Header, bus.HeaderType) },
			wantCalls:   0,
			wantDeliv:   1,
			wantReasons: []string{bus.ErrMalformed.Error(), "no ce-id or ce-type"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, _ := startBus(t)
			o := bus.NewOutbox(sqliteDB(t), b, quietLog())
			cfg := bus.ConsumerConfig{Name: "test-dlq", Filters: changes, MaxDeliver: maxDeliver, Backoff: []time.Duration{20 * time.Millisecond}}
			poison := changePushed("acme/web", "bad")
			var calls atomic.Int64
			runBG(t, "Consume", func(ctx context.Context) error {
				return o.Consume(ctx, cfg, func(_ context.Context, _ *bus.Tx, ev bus.Event) error {
					if ev.ID != poison.ID {
						return nil
					}
					calls.Add(1)
					return tt.handlerErr
				})
			})

			m, err := bus.Encode(t.Context(), bus.EventSubject(poison.Type, poison.Repository), poison)
			if err != nil {
				t.Fatal(err)
			}
			if tt.mangle != nil {
				tt.mangle(m)
			}
			if err := b.PublishMsg(t.Context(), m); err != nil {
				t.Fatal(err)
			}
			orig := streamMsgs(t, b, bus.StreamEvents, ">")[0]

			dlqSubject := "shiploop.dlq." + cfg.Name
			waitFor(t, "a copy on "+dlqSubject, func() bool { return len(streamMsgs(t, b, bus.StreamDLQ, dlqSubject)) > 0 })

			// An event after it: once it is handled, the poison one has had
			// every chance to come back.
			sentinel := changePushed("acme/web", "good")
			seq := publishOrFail(t, b, sentinel)
			info := waitSettled(t, b, bus.StreamEvents, cfg.Name, seq)
			if got, want := info.Delivered.Consumer, uint64(tt.wantDeliv+1); got != want {
				t.Errorf("consumer made %d deliveries, want %d for the poison event and 1 for the next", got, want)
			}
			if n := calls.Load(); n != int64(tt.wantCalls) {
				t.Errorf("handler ran %d times on the poison event, want %d", n, tt.wantCalls)
			}

			dead := streamMsgs(t, b, bus.StreamDLQ, dlqSubject)
			if len(dead) != 1 {
				t.Fatalf("%s holds %d messages, want 1", dlqSubject, len(dead))
			}
			d := dead[0]
			reason := d.Header.Get(bus.HeaderDLQReason)
			for _, want := range tt.wantReasons {
				if !strings.Contains(reason, want) {
					t.Errorf("%s = %q, want it to contain %q", bus.HeaderDLQReason, reason, want)
				}
			}
			for _, h := range []struct{ name, want string }{
				{bus.HeaderDLQConsumer, cfg.Name},
				{bus.HeaderDLQDeliveries, strconv.Itoa(tt.wantDeliv)},
				{bus.HeaderDLQStreamSeq, strconv.FormatUint(orig.Sequence, 10)},
				{bus.HeaderDLQSubject, orig.Subject},
			} {
				if got := d.Header.Get(h.name); got != h.want {
					t.Errorf("%s = %q, want %q", h.name, got, h.want)
				}
			}
			for name, vals := range orig.Header {
				if strings.HasPrefix(name, "Nats-") {
					// Nats-Msg-Id: the copy has its own, so that it is not taken
					// for the original; the others are added by direct get.
					continue
				}
				if got := d.Header[name]; !slices.Equal(got, vals) {
					t.Errorf("DLQ copy header %s = %q, want the original %q", name, got, vals)
				}
			}
			if !slices.Equal(d.Data, orig.Data) {
				t.Errorf("DLQ copy payload differs from the original")
			}
		})
	}
}

type prepared struct{ attempt int }

// TestConsumePrepare: what Prepare returns reaches the handler as
// tx.Prepared; a Prepare error is retried like a handler error, a permanent
// one dead-letters at once, and the handler never sees a failed Prepare.
func TestConsumePrepare(t *testing.T) {
	tests := []struct {
		name       string
		failFirst  error
		wantCalls  int    // Prepare calls
		wantSeen   []int  // tx.Prepared attempts seen by the handler
		wantDLQ    string // reason, "" for none
		wantRowsOK int
	}{
		{name: "result reaches handler", wantCalls: 1, wantSeen: []int{1}, wantRowsOK: 1},
		{name: "error is retried", failFirst: errors.New("git fetch: timeout"), wantCalls: 2, wantSeen: []int{2}, wantRowsOK: 1},
		{name: "permanent error dead-letters", failFirst: bus.Permanent(errors.New("repository deleted")), wantCalls: 1, wantDLQ: "repository deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, _ := startBus(t)
			db := sqliteDB(t)
			o := bus.NewOutbox(db, b, quietLog())
			var mu sync.Mutex
			var prepares int
			var seen []int
			cfg := bus.ConsumerConfig{
				Name: "test-prepare", Filters: changes, Backoff: []time.Duration{20 * time.Millisecond},
				Prepare: func(_ context.Context, ev bus.Event) (any, error) {
					if _, ok := ev.Data.(*eventsv1.Change); !ok {
						return nil, fmt.Errorf("Prepare got %T, want the decoded *Change", ev.Data)
					}
					mu.Lock()
					defer mu.Unlock()
					prepares++
					if prepares == 1 && tt.failFirst != nil {
						return nil, tt.failFirst
					}
					return &prepared{attempt: prepares}, nil
				},
			}
			runBG(t, "Consume", func(ctx context.Context) error {
				return o.Consume(ctx, cfg, func(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
					p, ok := tx.Prepared.(*prepared)
					if !ok {
						return bus.Permanent(fmt.Errorf("tx.Prepared = %#v, want *prepared", tx.Prepared))
					}
					mu.Lock()
					seen = append(seen, p.attempt)
					mu.Unlock()
					_, err := tx.ExecContext(ctx, `INSERT INTO bustest_rows (event_id, note) VALUES ($1, 'ok')`, ev.ID)
					return err
				})
			})
			ev := changePushed("acme/web", "c0ffee")
			seq := publishOrFail(t, b, ev)
			waitSettled(t, b, bus.StreamEvents, cfg.Name, seq)

			mu.Lock()
			defer mu.Unlock()
			if prepares != tt.wantCalls {
				t.Errorf("Prepare ran %d times, want %d", prepares, tt.wantCalls)
			}
			if !slices.Equal(seen, tt.wantSeen) {
				t.Errorf("handler saw tx.Prepared from attempts %v, want %v", seen, tt.wantSeen)
			}
			if n := countRows(t, db, ev.ID); n != tt.wantRowsOK {
				t.Errorf("rows = %d, want %d", n, tt.wantRowsOK)
			}
			dead := streamMsgs(t, b, bus.StreamDLQ, "shiploop.dlq."+cfg.Name)
			switch {
			case tt.wantDLQ == "" && len(dead) != 0:
				t.Errorf("dead-lettered: %q", dead[0].Header.Get(bus.HeaderDLQReason))
			case tt.wantDLQ != "" && len(dead) != 1:
				t.Errorf("%d DLQ copies, want 1", len(dead))
			case tt.wantDLQ != "" && !strings.Contains(dead[0].Header.Get(bus.HeaderDLQReason), tt.wantDLQ):
				t.Errorf("DLQ reason %q, want it to contain %q", dead[0].Header.Get(bus.HeaderDLQReason), tt.wantDLQ)
			}
		})
	}
}

// TestConsumeBatched: a Batched handler takes whole batches, each event
// once however often it is delivered; when it fails, the batch's events are
// handled one by one, and only the bad one is dead-lettered.
func TestConsumeBatched(t *testing.T) {
	for _, withBad := range []bool{false, true} {
		t.Run(fmt.Sprintf("bad event %v", withBad), func(t *testing.T) {
			t.Parallel()
			engines(t, func(t *testing.T, db *store.DB) {
				t.Parallel()
				b, _ := startBus(t)
				o := bus.NewOutbox(db, b, quietLog())
				var evs []bus.Event
				var last uint64
				for i := range 10 {
					after := fmt.Sprintf("c0ffee%d", i)
					if withBad && i == 4 {
						after = "bad"
					}
					ev := changePushed("acme/web", after)
					evs = append(evs, ev)
					last = publishOrFail(t, b, ev)
				}
				// The first event again under another Nats-Msg-Id: a second
				// delivery that the inbox must stop.
				m, err := bus.Encode(t.Context(), bus.EventSubject(evs[0].Type, evs[0].Repository), evs[0])
				if err != nil {
					t.Fatal(err)
				}
				m.Header.Set(nats.MsgIdHdr, evs[0].ID+"-again")
				if err := b.PublishMsg(t.Context(), m); err != nil {
					t.Fatal(err)
				}
				last++
				var mu sync.Mutex
				var batched, single []string
				cfg := bus.ConsumerConfig{
					Name: "test-batched", Filters: changes, Backoff: []time.Duration{20 * time.Millisecond},
					Batched: func(ctx context.Context, tx *bus.Tx, evs []bus.Event) error {
						for _, ev := range evs {
							if _, err := tx.ExecContext(ctx, `INSERT INTO bustest_rows (event_id, note) VALUES ($1, 'batched')`, ev.ID); err != nil {
								return err
							}
							if ev.Data.(*eventsv1.Change).GetAfter() == "bad" {
								return errors.New("one event in the batch is bad")
							}
						}
						mu.Lock()
						batched = append(batched, eventIDs(evs)...)
						mu.Unlock()
						return nil
					},
				}
				runBG(t, "Consume", func(ctx context.Context) error {
					return o.Consume(ctx, cfg, func(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
						if ev.Data.(*eventsv1.Change).GetAfter() == "bad" {
							return bus.Permanent(errors.New("bad event"))
						}
						mu.Lock()
						single = append(single, ev.ID)
						mu.Unlock()
						_, err := tx.ExecContext(ctx, `INSERT INTO bustest_rows (event_id, note) VALUES ($1, 'single')`, ev.ID)
						return err
					})
				})
				waitSettled(t, b, bus.StreamEvents, cfg.Name, last)

				mu.Lock()
				defer mu.Unlock()
				handled := append(slices.Clone(batched), single...)
				var want []string
				for _, ev := range evs {
					if ev.Data.(*eventsv1.Change).GetAfter() != "bad" {
						want = append(want, ev.ID)
					}
				}
				if !slices.Equal(sortedCopy(handled), sortedCopy(want)) {
					t.Errorf("handled %v (batched %v, one by one %v), want each good event once: %v", sortedCopy(handled), batched, single, sortedCopy(want))
				}
				if !withBad && len(single) > 0 {
					t.Errorf("the Handler ran for %v although no batch failed", single)
				}
				if withBad && len(single) == 0 {
					t.Errorf("no event was handled one by one after the batch with the bad event failed")
				}
				for _, ev := range evs {
					wantRows := 1
					if ev.Data.(*eventsv1.Change).GetAfter() == "bad" {
						wantRows = 0
					}
					if n := countRows(t, db, ev.ID); n != wantRows {
						t.Errorf("event %s has %d rows, want %d", ev.ID, n, wantRows)
					}
				}
				dead := streamMsgs(t, b, bus.StreamDLQ, "shiploop.dlq."+cfg.Name)
				switch {
				case !withBad && len(dead) > 0:
					t.Errorf("dead-lettered %v", idsOf(dead))
				case withBad && (len(dead) != 1 || dead[0].Header.Get(bus.HeaderID) != evs[4].ID):
					t.Errorf("dead-lettered %v, want only the bad event %s", idsOf(dead), evs[4].ID)
				}
			})
		})
	}
}

// TestConsumeReturnsWhenContextEnds: Consume stops with its context.
func TestConsumeReturnsWhenContextEnds(t *testing.T) {
	t.Parallel()
	b, _ := startBus(t)
	o := bus.NewOutbox(sqliteDB(t), b, quietLog())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- o.Consume(ctx, bus.ConsumerConfig{Name: "test-stop"}, func(context.Context, *bus.Tx, bus.Event) error { return nil })
	}()
	waitFor(t, "the consumer to wait for events", func() bool {
		return consumerExists(t, b, bus.StreamEvents, "test-stop") && consumerInfo(t, b, bus.StreamEvents, "test-stop").NumWaiting > 0
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Consume = %v, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Consume did not return after its context ended")
	}
}

// TestConsumeSurvivesItsConsumerDeleted: a durable consumer deleted while
// the service runs (by an operator, or lost with a cluster's state) is made
// again and the service goes on handling events; before, Consume returned
// nil and the service silently stopped consuming.
func TestConsumeSurvivesItsConsumerDeleted(t *testing.T) {
	t.Parallel()
	b, _ := startBus(t)
	o := bus.NewOutbox(sqliteDB(t), b, quietLog())
	handled := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- o.Consume(t.Context(), bus.ConsumerConfig{Name: "test-deleted", Filters: changes}, func(_ context.Context, _ *bus.Tx, ev bus.Event) error {
			handled <- ev.ID
			return nil
		})
	}()
	wait := func(id string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case got := <-handled:
				if got == id {
					return
				}
			case err := <-done:
				t.Fatalf("Consume returned %v while waiting for %s", err, id)
			case <-deadline:
				t.Fatalf("event %s not handled within 20s", id)
			}
		}
	}
	first := bus.NewEvent("change.pushed", "acme/app", "1", &eventsv1.Change{Repository: "acme/app"})
	publishOrFail(t, b, first)
	wait(first.ID)
	ctx, cancel := apiCtx(t)
	defer cancel()
	if err := b.JetStream().DeleteConsumer(ctx, bus.StreamEvents, "test-deleted"); err != nil {
		t.Fatal(err)
	}
	second := bus.NewEvent("change.pushed", "acme/app", "2", &eventsv1.Change{Repository: "acme/app"})
	publishOrFail(t, b, second)
	wait(second.ID)
}

// TestConsumeWorkersKeyed: with Workers, the events of one repository are
// handled one at a time in stream order, while another repository's are
// handled meanwhile (here: one repository's first Prepare waits until the
// other repository's events are all handled); every event is handled once.
func TestConsumeWorkersKeyed(t *testing.T) {
	b, _ := startBus(t)
	db := sqliteDB(t)
	o := bus.NewOutbox(db, b, quietLog())
	const perRepo = 20
	repos := []string{"acme/slow", "acme/a", "acme/b"}
	othersDone := make(chan struct{})
	var mu sync.Mutex
	order := map[string][]string{} // repository → afters, in handling order
	busy := map[string]bool{}      // repository → a Prepare or handler runs
	var overlap []string
	handled := 0
	cfg := bus.ConsumerConfig{
		Name: "test-workers", Filters: changes, Workers: 4, AckWait: 20 * time.Second,
		Prepare: func(ctx context.Context, ev bus.Event) (any, error) {
			mu.Lock()
			if busy[ev.Repository] {
				overlap = append(overlap, ev.Repository)
			}
			busy[ev.Repository] = true
			first := ev.Repository == "acme/slow" && len(order["acme/slow"]) == 0
			mu.Unlock()
			if first {
				select {
				case <-othersDone:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return nil, nil
		},
	}
	runBG(t, "Consume", func(ctx context.Context) error {
		return o.Consume(ctx, cfg, func(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO bustest_rows (event_id, note) VALUES ($1, 'ok')`, ev.ID); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			ch := ev.Data.(*eventsv1.Change)
			order[ev.Repository] = append(order[ev.Repository], ch.After)
			busy[ev.Repository] = false
			handled++
			if ev.Repository != "acme/slow" && len(order["acme/a"]) == perRepo && len(order["acme/b"]) == perRepo {
				close(othersDone)
			}
			return nil
		})
	})
	var last uint64
	var ids []string
	for i := range perRepo {
		for _, r := range repos {
			ev := changePushed(r, fmt.Sprintf("%040x", i))
			last = publishOrFail(t, b, ev)
			ids = append(ids, ev.ID)
		}
	}
	waitSettled(t, b, bus.StreamEvents, cfg.Name, last)
	mu.Lock()
	defer mu.Unlock()
	for _, r := range repos {
		var want []string
		for i := range perRepo {
			want = append(want, fmt.Sprintf("%040x", i))
		}
		if !slices.Equal(order[r], want) {
			t.Errorf("%s handled in order %v, want %v", r, order[r], want)
		}
	}
	if len(overlap) > 0 {
		t.Errorf("two events of one repository handled at once: %v", overlap)
	}
	if handled != len(ids) {
		t.Errorf("handled %d events, want %d", handled, len(ids))
	}
	for _, id := range ids {
		if n := countRows(t, db, id); n != 1 {
			t.Errorf("event %s: %d rows, want 1", id, n)
		}
	}
}
