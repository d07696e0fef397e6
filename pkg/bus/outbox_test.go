package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
)

// TestOutboxPublishesOnlyCommitted: an event published in a transaction
// reaches the stream after commit, and never when the transaction fails.
func TestOutboxPublishesOnlyCommitted(t *testing.T) {
	engines(t, func(t *testing.T, db *store.DB) {
		t.Parallel()
		b, _ := startBus(t)
		o := bus.NewOutbox(db, b, quietLog())
		runBG(t, "relay", o.Run)
		errBoom := errors.New("boom")
		tests := []struct {
			name    string
			fnErr   error
			publish bool
		}{
			{"commit", nil, true},
			{"rollback", errBoom, false},
			{"commit again", nil, true},
			{"rollback after writing", errBoom, false},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ev := buildFinished("acme/web", fmt.Sprintf("b%d", i))
				err := o.InTx(t.Context(), func(tx *bus.Tx) error {
					if _, err := tx.ExecContext(t.Context(), `INSERT INTO bustest_rows (event_id, note) VALUES ($1, 'x')`, ev.ID); err != nil {
						return err
					}
					if err := tx.Publish(ev); err != nil {
						return err
					}
					if n := countID(streamMsgs(t, b, bus.StreamEvents, ">"), ev.ID); n != 0 {
						t.Errorf("event on the stream before commit (%d copies)", n)
					}
					return tt.fnErr
				})
				if !errors.Is(err, tt.fnErr) {
					t.Fatalf("InTx = %v, want %v", err, tt.fnErr)
				}
				// A committed sentinel after it: once the relay has sent the
				// sentinel, it has sent everything committed before it.
				sentinel := buildFinished("acme/web", fmt.Sprintf("sentinel%d", i))
				if err := o.InTx(t.Context(), func(tx *bus.Tx) error { return tx.Publish(sentinel) }); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the sentinel on EVENTS", func() bool {
					return countID(streamMsgs(t, b, bus.StreamEvents, ">"), sentinel.ID) == 1
				})
				want := 0
				if tt.publish {
					want = 1
				}
				if n := countID(streamMsgs(t, b, bus.StreamEvents, ">"), ev.ID); n != want {
					t.Errorf("event stored %d times, want %d", n, want)
				}
				if n := countRows(t, db, ev.ID); n != want {
					t.Errorf("the transaction's row exists %d times, want %d", n, want)
				}
				waitFor(t, "an empty outbox", func() bool { return outboxLen(t, db) == 0 })
			})
		}
	})
}

// TestOutboxRelaysCrashedRows: rows a process committed but never relayed
// (it crashed) are published by the next relay, exactly once even when two
// relays on two database handles and two connections race for them.
func TestOutboxRelaysCrashedRows(t *testing.T) {
	engines(t, func(t *testing.T, db *store.DB) {
		t.Parallel()
		b, emb := startBus(t)
		crashed := bus.NewOutbox(db, b, quietLog()) // its relay never runs
		var want []string
		for tx := 0; tx < 5; tx++ {
			err := crashed.InTx(t.Context(), func(tx *bus.Tx) error {
				for range 10 {
					ev := buildFinished("acme/web", "b")
					want = append(want, ev.ID)
					if err := tx.Publish(ev); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := outboxLen(t, db); n != len(want) {
			t.Fatalf("bus_outbox holds %d rows, want %d", n, len(want))
		}
		if msgs := streamMsgs(t, b, bus.StreamEvents, ">"); len(msgs) != 0 {
			t.Fatalf("EVENTS holds %d messages before any relay ran", len(msgs))
		}

		// A core NATS subscriber sees every publish, duplicates included, so
		// the log shows whether the relays raced (they usually both send all).
		var sent atomic.Int64
		if _, err := connect(t, emb, "spy").Subscribe("shiploop.evt.>", func(*nats.Msg) { sent.Add(1) }); err != nil {
			t.Fatal(err)
		}

		// Two replicas restart: each its own database handle and connection.
		other := newBus(t, connect(t, emb, "replica-2"), bus.Options{})
		relays := []*bus.Outbox{
			bus.NewOutbox(db, b, quietLog()),
			bus.NewOutbox(storetest.Reopen(t, db), other, quietLog()),
		}
		for i, r := range relays {
			runBG(t, fmt.Sprintf("relay %d", i), r.Run)
		}
		waitFor(t, "the relays to empty the outbox", func() bool { return outboxLen(t, db) == 0 })
		got := idsOf(streamMsgs(t, b, bus.StreamEvents, ">"))
		if !slices.Equal(sortedCopy(got), sortedCopy(want)) {
			t.Errorf("EVENTS holds %d events, want each of the %d crashed rows exactly once", len(got), len(want))
		}
		t.Logf("%d events stored from at least %d publishes", len(got), sent.Load())
	})
}

// TestOutboxPollsForRowsNobodyWokeItFor: a relay already running finds rows
// another process committed (its relay crashed) by polling.
func TestOutboxPollsForRowsNobodyWokeItFor(t *testing.T) {
	t.Parallel()
	db := sqliteDB(t)
	b, _ := startBus(t)
	relay := bus.NewOutbox(db, b, quietLog())
	relay.Poll = 50 * time.Millisecond
	runBG(t, "relay", relay.Run)

	crashed := bus.NewOutbox(storetest.Reopen(t, db), b, quietLog())
	ev := buildFinished("acme/web", "b1")
	if err := crashed.InTx(t.Context(), func(tx *bus.Tx) error { return tx.Publish(ev) }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the polled row on EVENTS", func() bool {
		return countID(streamMsgs(t, b, bus.StreamEvents, ">"), ev.ID) == 1
	})
	waitFor(t, "an empty outbox", func() bool { return outboxLen(t, db) == 0 })
}

// TestOutboxRunReturnsWhenContextEnds: the relay stops with its context.
func TestOutboxRunReturnsWhenContextEnds(t *testing.T) {
	t.Parallel()
	b, _ := startBus(t)
	o := bus.NewOutbox(sqliteDB(t), b, quietLog())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
