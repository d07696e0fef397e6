package bus

import (
	"context"
	"database/sql"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/shiploop/shiploop/pkg/store"
)

// stmtCache holds the outbox's statements prepared once per database. On
// SQLite (modernc.org/sqlite) every Exec of plain SQL parses and plans it
// again, which cost about a third of an event's CPU on the event path; a
// *sql.Stmt prepared on the database is reused by every transaction on
// the same connection (tx.StmtContext). On PostgreSQL pgx already caches
// prepared statements per connection, so the cache stays empty there.
type stmtCache struct {
	m sync.Map // query → *sql.Stmt
}

// warm prepares queries not prepared yet. It must run outside any
// transaction of the caller: SQLite's pool has one connection, which an
// open transaction holds. (No lock is held while preparing: the goroutine
// holding the connection may be reading the cache.) A query that fails to
// prepare (its table not migrated yet) is tried again next time; until
// then it runs unprepared.
func (o *Outbox) warm(ctx context.Context, queries ...string) {
	if o.db.Engine != store.SQLite {
		return
	}
	for _, q := range queries {
		if _, ok := o.stmts.m.Load(q); ok {
			continue
		}
		s, err := o.db.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		if _, lost := o.stmts.m.LoadOrStore(q, s); lost {
			_ = s.Close()
		}
	}
}

func (o *Outbox) prepared(q string) *sql.Stmt {
	if s, ok := o.stmts.m.Load(q); ok {
		return s.(*sql.Stmt)
	}
	return nil
}

// exec runs q in tx, through its prepared statement when there is one.
func (o *Outbox) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if s := o.prepared(q); s != nil {
		return tx.StmtContext(ctx, s).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, q, args...)
}

// query is exec for a query returning rows.
func (o *Outbox) query(ctx context.Context, tx *sql.Tx, q string, args ...any) (*sql.Rows, error) {
	if s := o.prepared(q); s != nil {
		return tx.StmtContext(ctx, s).QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, q, args...)
}

// Statements of the event path, prepared by warm.
const (
	sqlOutboxInsert = `INSERT INTO bus_outbox (subject, msg_id, headers, data, created_at) VALUES ($1, $2, $3, $4, $5)`
	sqlOutboxSelect = `SELECT id, subject, headers, data FROM bus_outbox ORDER BY id LIMIT 1024`
	sqlInboxInsert  = `INSERT INTO bus_inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	sqlInboxDelete  = `DELETE FROM bus_inbox WHERE consumer = $1 AND event_id = $2`
	// One savepoint name for every event of a batch: each is released
	// (or rolled back to and released) before the next is taken, and a
	// constant text can be prepared once.
	sqlSavepoint  = `SAVEPOINT bus_ev`
	sqlRelease    = `RELEASE SAVEPOINT bus_ev`
	sqlRollbackTo = `ROLLBACK TO SAVEPOINT bus_ev`
)

// encodeHeaders stores a message's headers in the outbox as NATS writes
// them on the wire ("Name: value" lines ended by CRLF), without the
// leading version line: cheaper to write and read than the JSON the outbox
// held before (decodeHeaders still reads that, for rows written by an
// older version). A NATS header value cannot hold CR or LF, so the lines
// are unambiguous.
func encodeHeaders(h nats.Header) string {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	var b strings.Builder
	b.Grow(n)
	for k, vs := range h {
		for _, v := range vs {
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(v)
			b.WriteString("\r\n")
		}
	}
	return b.String()
}

// decodeHeaders reads what encodeHeaders wrote, or the JSON of older rows.
func decodeHeaders(s string) (nats.Header, error) {
	if strings.HasPrefix(s, "{") {
		var h nats.Header
		err := jsonUnmarshal(s, &h)
		return h, err
	}
	h := make(nats.Header, 12)
	for s != "" {
		line, rest, _ := strings.Cut(s, "\r\n")
		s = rest
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			return nil, errBadHeaderLine
		}
		h[k] = append(h[k], v)
	}
	return h, nil
}
