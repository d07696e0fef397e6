package bus

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/bits"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/store"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations creates the inbox and outbox tables; every service that
// consumes or publishes from a transaction applies them beside its own.
var Migrations = store.Migrations{Component: "bus", FS: mustSub(migrationsFS, "migrations")}

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the embedded directory is part of this package
	}
	return s
}

// Outbox publishes events written in a database transaction once that
// transaction has committed. Run its relay with Run.
type Outbox struct {
	db   *store.DB
	bus  *Bus
	log  *slog.Logger
	wake chan struct{}
	// stmts are the event path's statements, prepared once (SQLite).
	stmts stmtCache
	// Poll is how often the relay looks for rows nobody woke it for
	// (written by a process that crashed before publishing).
	Poll time.Duration
}

// NewOutbox makes an outbox on a service's database. The database must have
// Migrations applied.
func NewOutbox(db *store.DB, b *Bus, log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.Default()
	}
	return &Outbox{db: db, bus: b, log: log.With("component", "outbox"), wake: make(chan struct{}, 1), Poll: time.Second}
}

// Bus is the bus this outbox publishes to.
func (o *Outbox) Bus() *Bus { return o.bus }

// DB is the database the outbox lives in.
func (o *Outbox) DB() *store.DB { return o.db }

// Tx is a database transaction that can also publish events: they are
// written to the outbox table and sent after commit.
type Tx struct {
	*sql.Tx
	ctx    context.Context
	ob     *Outbox
	cause  *Event
	queued int
	// Prepared is what ConsumerConfig.Prepare returned for this event.
	Prepared any
}

// Publish adds an event to the outbox. When the transaction handles an
// event, the new one inherits its chain id unless it has its own.
func (tx *Tx) Publish(ev Event) error {
	return tx.add(EventSubject(ev.Type, ev.Repository), ev)
}

// Lock takes, until the transaction ends, a lock on key that the
// service's other transactions taking the same key wait for (see
// store.DB.Lock). A handler that joins several events about one thing,
// where each may come first, takes it before reading: two replicas
// handling two of them at once would otherwise each miss the other's
// uncommitted write and neither would act.
func (tx *Tx) Lock(key string) error { return tx.ob.db.Lock(tx.ctx, tx.Tx, key) }

// Enqueue adds a job message for any agent (subject
// shiploop.job.<kind>.any.<repo>); EnqueueFor asks for labels.
func (tx *Tx) Enqueue(kind string, ev Event) error {
	return tx.add(JobSubject(kind, ev.Repository), ev)
}

func (tx *Tx) add(subject string, ev Event) error {
	tx.ob.bus.fill(&ev)
	if ev.ChainID == "" && tx.cause != nil {
		ev.ChainID = tx.cause.ChainID
	}
	m, err := Encode(tx.ctx, subject, ev)
	if err != nil {
		return err
	}
	_, err = tx.ob.exec(tx.ctx, tx.Tx, sqlOutboxInsert,
		subject, ev.ID, encodeHeaders(m.Header), m.Data, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("outbox: writing %s: %w", ev.Type, err)
	}
	tx.queued++
	return nil
}

// InTx runs fn in a transaction and wakes the relay if fn published.
func (o *Outbox) InTx(ctx context.Context, fn func(*Tx) error) error {
	return o.inTx(ctx, nil, fn)
}

func (o *Outbox) inTx(ctx context.Context, cause *Event, fn func(*Tx) error) error {
	queued := 0
	o.warm(ctx, sqlOutboxInsert, sqlInboxInsert, sqlSavepoint, sqlRelease, sqlRollbackTo)
	err := o.db.InTx(ctx, func(sqlTx *sql.Tx) error {
		tx := &Tx{Tx: sqlTx, ctx: ctx, ob: o, cause: cause}
		err := fn(tx)
		queued = tx.queued
		return err
	})
	if err == nil && queued > 0 {
		o.Notify()
	}
	return err
}

// Notify wakes the relay.
func (o *Outbox) Notify() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Run relays outbox rows to JetStream until ctx ends.
func (o *Outbox) Run(ctx context.Context) error {
	t := time.NewTicker(o.Poll)
	defer t.Stop()
	backoff := 100 * time.Millisecond
	for {
		n, err := o.Flush(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			o.log.Warn("relaying outbox", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		case n > 0:
			backoff = 100 * time.Millisecond
			continue // there may be more
		}
		select {
		case <-ctx.Done():
			return nil
		case <-o.wake:
		case <-t.C:
		}
	}
}

// Flush publishes up to one batch of pending rows and deletes them once
// JetStream acked them. It returns how many it published.
func (o *Outbox) Flush(ctx context.Context) (int, error) {
	var rows []outboxRow
	o.warm(ctx, sqlOutboxSelect)
	err := o.db.InTx(ctx, func(tx *sql.Tx) error {
		rows = rows[:0]
		rs, err := o.query(ctx, tx, sqlOutboxSelect)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var r outboxRow
			if err := rs.Scan(&r.id, &r.subject, &r.headers, &r.data); err != nil {
				return err
			}
			rows = append(rows, r)
		}
		return rs.Err()
	})
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(rows))
	for _, r := range rows {
		m := &nats.Msg{Subject: r.subject, Data: r.data}
		h, err := decodeHeaders(r.headers)
		if err != nil {
			return 0, fmt.Errorf("outbox row %d: bad headers: %w", r.id, err)
		}
		m.Header = h
		f, err := o.bus.js.PublishMsgAsync(m)
		if err != nil {
			return 0, fmt.Errorf("outbox: publishing row %d: %w", r.id, err)
		}
		futures = append(futures, f)
	}
	done := 0
	for i, f := range futures {
		select {
		case <-f.Ok():
			done = i + 1
		case err := <-f.Err():
			o.deleteUpTo(ctx, rows, done)
			return done, fmt.Errorf("outbox: publishing to %s: %w", rows[i].subject, err)
		case <-ctx.Done():
			return done, ctx.Err()
		}
	}
	return done, o.deleteUpTo(ctx, rows, done)
}

type outboxRow struct {
	id      int64
	subject string
	headers string
	data    []byte
}

// deleteUpTo deletes the first n rows by id. Ids, not a range: on
// PostgreSQL a row with a lower id can commit after a higher one.
func (o *Outbox) deleteUpTo(ctx context.Context, rows []outboxRow, n int) error {
	if n == 0 {
		return nil
	}
	// One statement per chunk of up to 256 ids rather than one per row.
	// A chunk is padded to a power of two by repeating its last id, so
	// there are only a few statement texts, each prepared once.
	const chunk = 256
	for size := 1; size <= chunk; size *= 2 {
		o.warm(ctx, deleteIn(size))
	}
	return o.db.InTx(ctx, func(tx *sql.Tx) error {
		for start := 0; start < n; start += chunk {
			ids := rows[start:min(start+chunk, n)]
			size := 1 << bits.Len(uint(len(ids)-1))
			args := make([]any, 0, size)
			for _, r := range ids {
				args = append(args, r.id)
			}
			for len(args) < size {
				args = append(args, ids[len(ids)-1].id)
			}
			if _, err := o.exec(ctx, tx, deleteIn(size), args...); err != nil {
				return err
			}
		}
		return nil
	})
}

var deleteStmts sync.Map // size → statement text

// deleteIn is the statement deleting size rows by id.
func deleteIn(size int) string {
	if q, ok := deleteStmts.Load(size); ok {
		return q.(string)
	}
	var q strings.Builder
	q.WriteString(`DELETE FROM bus_outbox WHERE id IN (`)
	for i := range size {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "$%d", i+1)
	}
	q.WriteString(")")
	deleteStmts.Store(size, q.String())
	return q.String()
}

var errBadHeaderLine = errors.New("header line without \": \"")

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
