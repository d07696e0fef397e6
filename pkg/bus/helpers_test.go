package bus_test

// Shared test helpers: every test gets a real nats-server running in-process
// with its JetStream files under t.TempDir(), and real databases from
// storetest. Nothing is mocked; waits poll real state against a deadline.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// waitTimeout bounds every wait; generous because two shared cores may be
// busy with the rest of the package.
const waitTimeout = 15 * time.Second

// apiCtx bounds one call to the server. Without a deadline JetStream allows
// 5s, which two busy shared cores can exceed.
func apiCtx(t testing.TB) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), waitTimeout)
}

// testSource is the CloudEvents source of buses made by startBus.
const testSource = "/shiploop/bustest"

// startServer starts an embedded nats-server with JetStream in t.TempDir(),
// shut down when the test ends.
func startServer(t testing.TB, cfg bus.EmbeddedConfig) *bus.Embedded {
	t.Helper()
	cfg.StoreDir = t.TempDir()
	emb, err := bus.StartEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	return emb
}

// connect opens an in-process client connection, closed when the test ends.
func connect(t testing.TB, emb *bus.Embedded, name string) *nats.Conn {
	t.Helper()
	nc, err := emb.Connect(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// newBus makes a Bus on nc (creating the streams).
func newBus(t testing.TB, nc *nats.Conn, opts bus.Options) *bus.Bus {
	t.Helper()
	if opts.Source == "" {
		opts.Source = testSource
	}
	ctx, cancel := apiCtx(t)
	defer cancel()
	b, err := bus.New(ctx, nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startBus starts a fresh embedded server and returns a Bus on it, plus the
// server so a test can open more connections (other "processes").
func startBus(t testing.TB) (*bus.Bus, *bus.Embedded) {
	t.Helper()
	emb := startServer(t, bus.EmbeddedConfig{})
	return newBus(t, connect(t, emb, t.Name()), bus.Options{}), emb
}

// quietLog drops the bus's logs (handler failures are expected in tests).
func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// rowsMigrations adds the table the test handlers write to.
var rowsMigrations = store.Migrations{Component: "bustest", FS: fstest.MapFS{
	"001_rows.sql": {Data: []byte(`CREATE TABLE bustest_rows (
    id       {{serial_pk}},
    event_id TEXT NOT NULL,
    note     TEXT NOT NULL
)`)},
}}

// sqliteDB opens a migrated SQLite database for tests that need only one engine.
func sqliteDB(t testing.TB) *store.DB {
	t.Helper()
	db := storetest.OpenSQLite(t, "bustest")
	if err := db.Migrate(t.Context(), bus.Migrations, rowsMigrations); err != nil {
		t.Fatal(err)
	}
	return db
}

// engines runs fn on SQLite and PostgreSQL with the bus and test migrations.
func engines(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	storetest.Engines(t, "bustest", []store.Migrations{bus.Migrations, rowsMigrations}, fn)
}

// runBG runs fn in a goroutine until the test ends: cleanup cancels its
// context and fails the test if fn does not return promptly or returns an
// error.
func runBG(t testing.TB, name string, fn func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s returned %v", name, err)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("%s did not return within 3s of its context ending", name)
		}
	})
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// streamMsgs returns the messages stored in stream on subjects matching
// filter (wildcards allowed), in stream order.
func streamMsgs(t testing.TB, b *bus.Bus, stream, filter string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := apiCtx(t)
	defer cancel()
	s, err := b.JetStream().Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatalf("reading %s from %s at %d: %v", filter, stream, seq, err)
		}
		out = append(out, m)
		seq = m.Sequence + 1
	}
}

// idsOf lists the ce-id of each message.
func idsOf(msgs []*jetstream.RawStreamMsg) []string {
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		ids = append(ids, m.Header.Get(bus.HeaderID))
	}
	return ids
}

// countID counts the messages whose ce-id is id.
func countID(msgs []*jetstream.RawStreamMsg, id string) int {
	n := 0
	for _, got := range idsOf(msgs) {
		if got == id {
			n++
		}
	}
	return n
}

// consumerInfo reads a durable consumer's state from the server.
func consumerInfo(t testing.TB, b *bus.Bus, stream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := apiCtx(t)
	defer cancel()
	c, err := b.JetStream().Consumer(ctx, stream, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// consumerExists reports whether the durable consumer has been created yet.
func consumerExists(t testing.TB, b *bus.Bus, stream, name string) bool {
	t.Helper()
	ctx, cancel := apiCtx(t)
	defer cancel()
	_, err := b.JetStream().Consumer(ctx, stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// waitSettled waits until the consumer has been delivered every message up to
// stream sequence seq and holds none unacknowledged: everything it got was
// acked or terminated.
func waitSettled(t testing.TB, b *bus.Bus, stream, name string, seq uint64) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	waitFor(t, "consumer "+name+" to settle", func() bool {
		if !consumerExists(t, b, stream, name) {
			return false
		}
		info = consumerInfo(t, b, stream, name)
		return info.AckFloor.Stream >= seq && info.NumAckPending == 0 && info.NumPending == 0
	})
	return info
}

// changePushed makes a change.pushed event for repo with its own chain.
func changePushed(repo, after string) bus.Event {
	ev := bus.NewEvent("change.pushed", repo, "refs/heads/main", &eventsv1.Change{
		Forge: "github", Repository: repo, Ref: "refs/heads/main", After: after,
	})
	ev.ChainID = ev.ID
	return ev
}

// buildFinished makes a build.finished event for repo.
func buildFinished(repo, buildID string) bus.Event {
	return bus.NewEvent("build.finished", repo, buildID, &eventsv1.BuildFinished{
		BuildId: buildID, Repository: repo, Number: 7, Commit: "0123abcd",
		FinishedAt: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
	})
}

// countRows counts bustest_rows written for an event.
func countRows(t testing.TB, db *store.DB, eventID string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM bustest_rows WHERE event_id = $1`, eventID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// outboxLen counts rows waiting in bus_outbox.
func outboxLen(t testing.TB, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM bus_outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// sortedCopy returns s sorted, leaving s alone.
func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
