package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestIsConflictSQLite provokes a real SQLITE_BUSY: a deferred transaction reads, another
// connection commits a write, and the first then tries to write from its stale snapshot, which
// WAL refuses at once (SQLITE_BUSY_SNAPSHOT, no busy_timeout wait). InTx's own transactions
// begin IMMEDIATE and avoid this, but other processes' may not.
func TestIsConflictSQLite(t *testing.T) {
	ctx := context.Background()
	url := "sqlite://" + filepath.Join(t.TempDir(), "busy.db")
	a, err := Open(ctx, Config{URL: url, Service: "busy"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, Config{URL: url, Service: "busy"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.ExecContext(ctx, `CREATE TABLE c (n INTEGER); INSERT INTO c VALUES (0)`); err != nil {
		t.Fatal(err)
	}
	tx, err := a.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}) // ReadOnly begins DEFERRED
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT n FROM c`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ExecContext(ctx, `UPDATE c SET n = 1`); err != nil {
		t.Fatal(err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE c SET n = 2`)
	if err == nil {
		t.Fatal("write from a stale snapshot succeeded")
	}
	if !isConflict(fmt.Errorf("wrapped: %w", err)) {
		t.Errorf("isConflict(%v) = false, want true", err)
	}
	if IsUniqueViolation(err) {
		t.Errorf("IsUniqueViolation(%v) = true", err)
	}
}

func TestIsConflictPostgresCodes(t *testing.T) {
	for code, want := range map[string]bool{"40001": true, "40P01": true, "23505": false, "42P01": false} {
		if got := isConflict(fmt.Errorf("x: %w", &pgconn.PgError{Code: code})); got != want {
			t.Errorf("isConflict(SQLSTATE %s) = %v, want %v", code, got, want)
		}
	}
}

func TestExpand(t *testing.T) {
	const ddl = "CREATE TABLE t (id {{serial_pk}}, b {{bytes}}, n {{bigint}})"
	want := map[Engine]string{
		Postgres: "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, b BYTEA, n BIGINT)",
		SQLite:   "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, b BLOB, n INTEGER)",
	}
	for engine, w := range want {
		if got, err := engine.expand(ddl); err != nil || got != w {
			t.Errorf("%s: expand = %q, %v; want %q", engine, got, err, w)
		}
	}
}
