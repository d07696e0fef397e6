package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
)

// TestConsumeBatchCrashMidway: a consuming process dies in the middle of a
// batch handled in one transaction, either before the commit (the whole
// batch rolls back, nothing is acked) or between the commit and the acks
// (all of it is in the inbox, nothing is acked). The process that takes
// over after AckWait leaves every event handled exactly once: each
// handler row and each derived event once, none lost.
func TestConsumeBatchCrashMidway(t *testing.T) {
	for _, beforeCommit := range []bool{true, false} {
		name := "between commit and acks"
		if beforeCommit {
			name = "before commit"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			engines(t, func(t *testing.T, db *store.DB) {
				t.Parallel()
				b, emb := startBus(t)
				relay := bus.NewOutbox(db, b, quietLog())
				relay.Poll = 20 * time.Millisecond
				runBG(t, "relay", relay.Run)
				const n = 40
				var evs []bus.Event
				var last uint64
				for i := range n {
					ev := changePushed("acme/web", fmt.Sprintf("c%03d", i))
					evs = append(evs, ev)
					last = publishOrFail(t, b, ev)
				}
				cfg := bus.ConsumerConfig{Name: "test-batch-crash", Filters: changes, Batch: 16,
					AckWait: time.Second, Backoff: []time.Duration{50 * time.Millisecond}}

				var mu sync.Mutex
				calls := map[string]int{} // calls per event that committed in process 2
				var crashed atomic.Bool
				nc1 := connect(t, emb, "process-1")
				first := bus.NewOutbox(db, newBus(t, nc1, bus.Options{}), quietLog())
				runBG(t, "Consume 1", func(ctx context.Context) error {
					ctx, crash := context.WithCancel(ctx)
					defer crash()
					var tx0 *bus.Tx
					inBatch := 0
					return first.Consume(ctx, cfg, func(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
						if crashed.Load() {
							return fmt.Errorf("process is dead")
						}
						if tx != tx0 {
							tx0, inBatch = tx, 0
						}
						inBatch++
						if _, err := recordAndPublish(ctx, tx, ev); err != nil {
							return err
						}
						// Midway through a batch after the first: the
						// transaction holds several events already.
						if inBatch == 4 && ev.ID != evs[3].ID {
							crashed.Store(true)
							nc1.Close() // the acks can no longer reach the server
							if beforeCommit {
								crash() // the transaction's next statement fails: rollback
							}
						}
						return nil
					})
				})
				waitFor(t, "the crash", crashed.Load)
				second := bus.NewOutbox(db, newBus(t, connect(t, emb, "process-2"), bus.Options{}), quietLog())
				runBG(t, "Consume 2", func(ctx context.Context) error {
					return second.Consume(ctx, cfg, func(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
						_, err := recordAndPublish(ctx, tx, ev)
						mu.Lock()
						calls[ev.ID]++
						mu.Unlock()
						return err
					})
				})
				waitSettled(t, b, bus.StreamEvents, cfg.Name, last)
				for _, ev := range evs {
					if got := countRows(t, db, ev.ID); got != 1 {
						t.Errorf("event %s: handler's row written %d times, want 1", ev.ID, got)
					}
				}
				waitFor(t, "an empty outbox", func() bool { return outboxLen(t, db) == 0 })
				derived := derivedEvents(t, b)
				causes := map[string]int{}
				for _, d := range derived {
					causes[d.Subject]++
				}
				for _, ev := range evs {
					if c := causes["build-of-"+ev.ID]; c != 1 {
						t.Errorf("event %s: %d derived events, want 1", ev.ID, c)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if len(calls) == 0 {
					t.Errorf("process 2 handled no event: the crash left nothing to take over")
				}
				t.Logf("process 2 handled %d of %d events", len(calls), n)
			})
		})
	}
}

// TestOutboxHeaders: the relay publishes a row's headers exactly as Encode
// made them, from rows in the current format and from JSON rows an older
// version wrote.
func TestOutboxHeaders(t *testing.T) {
	engines(t, func(t *testing.T, db *store.DB) {
		t.Parallel()
		b, _ := startBus(t)
		o := bus.NewOutbox(db, b, quietLog())
		ev := changePushed("acme/web: a repo with spaces", "c0ffee")
		ev.Source, ev.Subject, ev.ChainID = "/test/src", "sub ject%", "chain-1"
		ev.Time = time.Date(2026, 12, 7, 12, 0, 0, 123, time.UTC)
		subject := bus.EventSubject(ev.Type, ev.Repository)
		want, err := bus.Encode(t.Context(), subject, ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.InTx(t.Context(), func(tx *bus.Tx) error { return tx.Publish(ev) }); err != nil {
			t.Fatal(err)
		}
		old := ev
		old.ID = ev.ID + "-old"
		oldMsg, err := bus.Encode(t.Context(), subject, old)
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := json.Marshal(oldMsg.Header)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(t.Context(),
			`INSERT INTO bus_outbox (subject, msg_id, headers, data, created_at) VALUES ($1, $2, $3, $4, $5)`,
			subject, old.ID, string(hdr), oldMsg.Data, time.Now().UnixNano()); err != nil {
			t.Fatal(err)
		}
		if n, err := o.Flush(t.Context()); err != nil || n != 2 {
			t.Fatalf("Flush = %d, %v; want 2 rows relayed", n, err)
		}
		msgs := streamMsgs(t, b, bus.StreamEvents, ">")
		if len(msgs) != 2 {
			t.Fatalf("EVENTS holds %d messages, want 2", len(msgs))
		}
		for i, m := range []struct {
			name string
			want map[string][]string
		}{{"current row", want.Header}, {"JSON row of an older version", oldMsg.Header}} {
			got := maps.Clone(msgs[i].Header)
			for _, k := range []string{"Nats-Stream", "Nats-Sequence", "Nats-Subject", "Nats-Time-Stamp"} {
				delete(got, k) // the stream's own, on a stored message
			}
			if !maps.EqualFunc(map[string][]string(got), m.want, func(a, b []string) bool {
				return fmt.Sprint(a) == fmt.Sprint(b)
			}) {
				t.Errorf("%s: headers on the stream\n%v\nwant\n%v", m.name, got, m.want)
			}
		}
	})
}

// TestConsumeBatchOneFails: in a batch handled in one transaction, a handler
// that fails rolls back only its own event, inbox record included: the
// others commit once, and the failed one comes back and is handled.
func TestConsumeBatchOneFails(t *testing.T) {
	engines(t, func(t *testing.T, db *store.DB) {
		t.Parallel()
		b, _ := startBus(t)
		relay := bus.NewOutbox(db, b, quietLog())
		relay.Poll = 20 * time.Millisecond
		runBG(t, "relay", relay.Run)
		const n = 20
		var evs []bus.Event
		var last uint64
		for i := range n {
			ev := changePushed("acme/web", fmt.Sprintf("c%03d", i))
			evs = append(evs, ev)
			last = publishOrFail(t, b, ev)
		}
		bad := evs[7].ID
		cfg := bus.ConsumerConfig{Name: "test-batch-one-fails", Filters: changes, Batch: 16,
			Backoff: []time.Duration{50 * time.Millisecond}}
		var mu sync.Mutex
		calls := map[string]int{}
		txCalls := map[*bus.Tx]int{}
		var badTx *bus.Tx
		runBG(t, "Consume", func(ctx context.Context) error {
			return relay.Consume(ctx, cfg, func(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
				mu.Lock()
				calls[ev.ID]++
				txCalls[tx]++
				first := ev.ID == bad && calls[ev.ID] == 1
				if first {
					badTx = tx
				}
				mu.Unlock()
				if _, err := recordAndPublish(ctx, tx, ev); err != nil {
					return err
				}
				if first {
					return fmt.Errorf("transient: first delivery of %s fails", ev.ID)
				}
				return nil
			})
		})
		waitSettled(t, b, bus.StreamEvents, cfg.Name, last)
		waitFor(t, "the failed event handled again", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return calls[bad] == 2
		})
		waitSettled(t, b, bus.StreamEvents, cfg.Name, last)
		for _, ev := range evs {
			if got := countRows(t, db, ev.ID); got != 1 {
				t.Errorf("event %s: handler's row written %d times, want 1", ev.ID, got)
			}
		}
		waitFor(t, "an empty outbox", func() bool { return outboxLen(t, db) == 0 })
		if d := derivedEvents(t, b); len(d) != n {
			t.Errorf("%d derived events, want %d (the failed attempt's must roll back)", len(d), n)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			want := 1
			if ev.ID == bad {
				want = 2
			}
			if calls[ev.ID] != want {
				t.Errorf("event %s handled %d times, want %d", ev.ID, calls[ev.ID], want)
			}
		}
		if txCalls[badTx] < 2 {
			t.Errorf("the failing event's transaction handled %d events; the test needs it in a batch", txCalls[badTx])
		}
	})
}
