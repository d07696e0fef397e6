// The contract every store relies on, run on both engines: if a query shape works here it works
// on SQLite and on PostgreSQL alike.
package store_test

import (
	"bytes"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
)

//go:embed testdata/migrations
var testMigrations embed.FS

// migrationSet returns the test migrations in testdata/migrations/<component>.
func migrationSet(t testing.TB, component string) store.Migrations {
	t.Helper()
	sub, err := fs.Sub(testMigrations, "testdata/migrations/"+component)
	if err != nil {
		t.Fatal(err)
	}
	return store.Migrations{Component: component, FS: sub}
}

func contract(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	storetest.Engines(t, "contract", []store.Migrations{migrationSet(t, "contract")}, fn)
}

func TestPlaceholders(t *testing.T) {
	contract(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		// $10..$12 must not be read as $1 followed by a digit.
		_, err := db.ExecContext(ctx,
			`INSERT INTO kv (k, v, updated_ms) VALUES ($1, $2, $3), ($4, $5, $6), ($7, $8, $9), ($10, $11, $12)`,
			"a", "va", 1, "b", "vb", 2, "c", "vc", 3, "d", "vd", 4)
		if err != nil {
			t.Fatal(err)
		}
		// Out of order, as an UPDATE naturally is.
		res, err := db.ExecContext(ctx, `UPDATE kv SET v = $2, updated_ms = $3 WHERE k = $1`, "b", "vb2", 20)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Errorf("UPDATE affected %d rows, want 1", n)
		}
		// The same parameter twice.
		rows, err := db.QueryContext(ctx, `SELECT k, v, updated_ms FROM kv WHERE k = $1 OR v = $1 OR k = $2 ORDER BY k`, "d", "vb2")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var k, v string
			var ms int64
			if err := rows.Scan(&k, &v, &ms); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s=%s@%d", k, v, ms))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if want := []string{"d=vd@4"}; !slices.Equal(got, want) {
			t.Errorf("k = $1 OR v = $1 OR k = $2 with (d, vb2): got %v, want %v", got, want)
		}
		var v string
		if err := db.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = $1`, "b").Scan(&v); err != nil || v != "vb2" {
			t.Errorf("after UPDATE with $2, $3, $1: v = %q, %v; want vb2", v, err)
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv`).Scan(&n); err != nil || n != 4 {
			t.Errorf("twelve-parameter insert left %d rows (%v), want 4", n, err)
		}
	})
}

func TestOnConflictDoNothing(t *testing.T) {
	contract(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		const q = `INSERT INTO kv (k, v, updated_ms) VALUES ($1, $2, $3) ON CONFLICT (k) DO NOTHING`
		for i, want := range []int64{1, 0, 0} {
			res, err := db.ExecContext(ctx, q, "key", fmt.Sprintf("value %d", i), i)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := res.RowsAffected(); err != nil || n != want {
				t.Errorf("insert %d: %d rows affected (%v), want %d", i, n, err, want)
			}
		}
		var v string
		if err := db.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = $1`, "key").Scan(&v); err != nil || v != "value 0" {
			t.Errorf("v = %q (%v), want the first insert's %q", v, err, "value 0")
		}
	})
}

func TestOnConflictDoUpdate(t *testing.T) {
	contract(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		const q = `INSERT INTO kv (k, v, updated_ms) VALUES ($1, $2, $3)
			ON CONFLICT (k) DO UPDATE SET v = excluded.v, updated_ms = excluded.updated_ms
			RETURNING v, updated_ms`
		for i := range 3 {
			var v string
			var ms int64
			if err := db.QueryRowContext(ctx, q, "key", fmt.Sprintf("value %d", i), 100+i).Scan(&v, &ms); err != nil {
				t.Fatal(err)
			}
			if v != fmt.Sprintf("value %d", i) || ms != int64(100+i) {
				t.Errorf("upsert %d returned (%q, %d), want (%q, %d)", i, v, ms, fmt.Sprintf("value %d", i), 100+i)
			}
		}
		var n int
		var v string
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*), MAX(v) FROM kv`).Scan(&n, &v); err != nil {
			t.Fatal(err)
		}
		if n != 1 || v != "value 2" {
			t.Errorf("after three upserts of one key: %d rows, v = %q; want 1 row, %q", n, v, "value 2")
		}
	})
}

func TestReturningSerialID(t *testing.T) {
	contract(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		var ids []int64
		for _, name := range []string{"first", "second", "third"} {
			var id int64
			err := db.QueryRowContext(ctx,
				`INSERT INTO items (name, created_ns) VALUES ($1, $2) RETURNING id`, name, 0).Scan(&id)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if ids[0] <= 0 || ids[1] <= ids[0] || ids[2] <= ids[1] {
			t.Errorf("RETURNING id gave %v, want positive and increasing", ids)
		}
		var name string
		if err := db.QueryRowContext(ctx, `SELECT name FROM items WHERE id = $1`, ids[1]).Scan(&name); err != nil || name != "second" {
			t.Errorf("row with returned id %d has name %q (%v), want second", ids[1], name, err)
		}
	})
}

func TestBlobRoundTrip(t *testing.T) {
	every := make([]byte, 256)
	for i := range every {
		every[i] = byte(i)
	}
	cases := []struct {
		name    string
		payload []byte
	}{
		{"zeros inside", []byte{0, 'a', 0, 0, 0xff, 0xfe, 0}},
		{"every byte", every},
		{"large", bytes.Repeat([]byte{0, 1, 2, 0xff}, 1<<16)},
		{"empty", []byte{}},
		{"null", nil},
	}
	contract(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		for _, c := range cases {
			_, err := db.ExecContext(ctx, `INSERT INTO items (name, payload, created_ns) VALUES ($1, $2, 0)`, c.name, c.payload)
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range cases {
			var got []byte
			var isNull bool
			err := db.QueryRowContext(ctx, `SELECT payload, payload IS NULL FROM items WHERE name = $1`, c.name).Scan(&got, &isNull)
			if err != nil {
				t.Fatal(err)
			}
			// An empty blob reads back as nil on SQLite and as []byte{} on PostgreSQL: both are
			// empty and neither is NULL, which is what a store can rely on.
			if !bytes.Equal(got, c.payload) || isNull != (c.payload == nil) {
				t.Errorf("%s: read back %d bytes (NULL %v), want %d bytes (NULL %v)",
					c.name, len(got), isNull, len(c.payload), c.payload == nil)
			}
		}
	})
}

func TestTimeRoundTrip(t *testing.T) {
	times := []time.Time{
		time.Date(2024, 2, 29, 23, 59, 59, 123456789, time.UTC),
		time.Date(1969, 7, 20, 20, 17, 40, 1, time.UTC), // before the epoch: negative
		time.Unix(0, math.MaxInt64).UTC(),               // the last instant an int64 of nanoseconds holds
		time.Unix(0, 0).UTC(),
	}
	contract(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		for i, tm := range times {
			_, err := db.ExecContext(ctx, `INSERT INTO items (name, created_ns) VALUES ($1, $2)`,
				fmt.Sprint("t", i), tm.UnixNano())
			if err != nil {
				t.Fatal(err)
			}
			_, err = db.ExecContext(ctx, `INSERT INTO kv (k, v, updated_ms) VALUES ($1, '', $2)`,
				fmt.Sprint("t", i), tm.UnixMilli())
			if err != nil {
				t.Fatal(err)
			}
		}
		// Ordering by the column must be numeric, negatives first, as a time ordering needs.
		rows, err := db.QueryContext(ctx, `SELECT items.created_ns, kv.updated_ms FROM items JOIN kv ON kv.k = items.name ORDER BY items.created_ns`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []time.Time
		for rows.Next() {
			var ns, ms int64
			if err := rows.Scan(&ns, &ms); err != nil {
				t.Fatal(err)
			}
			tm := time.Unix(0, ns).UTC()
			if ms != tm.UnixMilli() {
				t.Errorf("milliseconds for %v read back as %d, want %d", tm, ms, tm.UnixMilli())
			}
			got = append(got, tm)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(times)
		slices.SortFunc(want, func(a, b time.Time) int { return a.Compare(b) })
		if !slices.EqualFunc(got, want, time.Time.Equal) {
			t.Errorf("times read back in column order as\n%v\nwant\n%v", got, want)
		}
	})
}

type migrationRow struct {
	component string
	version   int64
	name      string
	appliedMS int64
}

func appliedMigrations(t *testing.T, db *store.DB) []migrationRow {
	t.Helper()
	rows, err := db.QueryContext(t.Context(),
		`SELECT component, version, name, applied_at_ms FROM schema_migrations ORDER BY component, version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []migrationRow
	for rows.Next() {
		var r migrationRow
		if err := rows.Scan(&r.component, &r.version, &r.name, &r.appliedMS); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func names(rows []migrationRow) []string {
	var s []string
	for _, r := range rows {
		s = append(s, fmt.Sprintf("%s/%d:%s", r.component, r.version, r.name))
	}
	return s
}

func TestMigrateTwiceIsNoOp(t *testing.T) {
	contract(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		before := appliedMigrations(t, db)
		if want := []string{"contract/1:001_items.sql", "contract/2:002_counters.sql"}; !slices.Equal(names(before), want) {
			t.Fatalf("recorded migrations %v, want %v", names(before), want)
		}
		// 002 inserts a row with a fixed primary key: running it again would fail.
		for range 2 {
			if err := db.Migrate(ctx, migrationSet(t, "contract")); err != nil {
				t.Fatalf("second Migrate: %v", err)
			}
		}
		if after := appliedMigrations(t, db); !slices.Equal(after, before) {
			t.Errorf("Migrate again changed schema_migrations from %v to %v", before, after)
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM counters`).Scan(&n); err != nil || n != 1 {
			t.Errorf("counters has %d rows (%v), want the 1 that 002 inserted", n, err)
		}
	})
}

func TestMigrateFailure(t *testing.T) {
	contract(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		for range 2 { // failing again on the next start, at the same file
			err := db.Migrate(ctx, migrationSet(t, "broken"))
			if err == nil || !strings.HasPrefix(err.Error(), "migrate broken/002_fails.sql: ") || !strings.Contains(err.Error(), "no_such_table") {
				t.Fatalf("Migrate(broken) = %v, want an error starting %q and naming no_such_table", err, "migrate broken/002_fails.sql: ")
			}
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO broken_ok (id) VALUES (1)`); err != nil {
			t.Errorf("001_ok.sql, before the failure, was not applied: %v", err)
		}
		for _, table := range []string{"broken_partial", "broken_never"} {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err == nil {
				t.Errorf("table %s exists after its migration failed", table)
			}
		}
		want := []string{"broken/1:001_ok.sql", "contract/1:001_items.sql", "contract/2:002_counters.sql"}
		if got := names(appliedMigrations(t, db)); !slices.Equal(got, want) {
			t.Errorf("recorded migrations %v, want %v", got, want)
		}
	})
}

func TestMigrateConcurrently(t *testing.T) {
	contract(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		// Two handles, as two replicas starting at once, each with two callers.
		handles := []*store.DB{db, storetest.Reopen(t, db)}
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { errs[i] = handles[i%2].Migrate(ctx, migrationSet(t, "race")) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Migrate %d: %v", i, err)
			}
		}
		var ids []int64
		rows, err := db.QueryContext(ctx, `SELECT id FROM race_once ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids, []int64{1, 2}) {
			t.Errorf("race_once holds %v, want [1 2]: each migration applied exactly once", ids)
		}
	})
}

func TestMigrateRejectsBadSets(t *testing.T) {
	db := storetest.OpenSQLite(t, "bad")
	cases := []struct {
		name string
		fs   fstest.MapFS
		want string
	}{
		{"unknown token", fstest.MapFS{"001_x.sql": {Data: []byte("CREATE TABLE x (b {{blob}})")}},
			"migrate bad/001_x.sql: unknown dialect token {{blob}}"},
		{"misnamed", fstest.MapFS{"init.sql": {Data: []byte("CREATE TABLE x (a TEXT)")}},
			"migrate bad/init.sql: file name must be NNN_description.sql"},
		{"duplicate version", fstest.MapFS{
			"001_a.sql": {Data: []byte("CREATE TABLE a (a TEXT)")},
			"01_b.sql":  {Data: []byte("CREATE TABLE b (a TEXT)")},
		}, "version 1 is also"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := db.Migrate(t.Context(), store.Migrations{Component: "bad", FS: c.fs})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Migrate = %v, want an error containing %q", err, c.want)
			}
		})
	}
	// Sets are checked before anything runs: not even schema_migrations exists.
	var n int
	if err := db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM sqlite_master`).Scan(&n); err != nil || n != 0 {
		t.Errorf("rejected sets left %d objects in the database (%v), want 0", n, err)
	}
}

var errBoom = errors.New("boom")

func TestInTx(t *testing.T) {
	contract(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		insert := func(tx *sql.Tx, k string) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO kv (k, v, updated_ms) VALUES ($1, 'v', 0)`, k)
			return err
		}
		exists := func(k string) bool {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv WHERE k = $1`, k).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n == 1
		}

		err := db.InTx(ctx, func(tx *sql.Tx) error {
			if err := insert(tx, "rolled back"); err != nil {
				return err
			}
			return fmt.Errorf("after insert: %w", errBoom)
		})
		if !errors.Is(err, errBoom) {
			t.Errorf("InTx returned %v, want fn's error", err)
		}
		if exists("rolled back") {
			t.Error("a row inserted in a transaction whose fn failed is visible")
		}

		func() {
			defer func() {
				if p := recover(); p != errBoom {
					t.Errorf("InTx let through panic %v, want fn's panic", p)
				}
			}()
			_ = db.InTx(ctx, func(tx *sql.Tx) error {
				if err := insert(tx, "panicked"); err != nil {
					return err
				}
				panic(errBoom)
			})
		}()
		if exists("panicked") {
			t.Error("a row inserted in a transaction whose fn panicked is visible")
		}

		if err := db.InTx(ctx, func(tx *sql.Tx) error { return insert(tx, "committed") }); err != nil {
			t.Fatal(err)
		}
		if !exists("committed") {
			t.Error("a row inserted in a transaction whose fn succeeded is missing")
		}
	})
}

func TestIsUniqueViolation(t *testing.T) {
	contract(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		exec := func(q string, args ...any) error {
			_, err := db.ExecContext(ctx, q, args...)
			return err
		}
		if err := exec(`INSERT INTO items (name, created_ns) VALUES ('x', 0)`); err != nil {
			t.Fatal(err)
		}
		if err := exec(`INSERT INTO kv (k, v, updated_ms) VALUES ('x', '', 0)`); err != nil {
			t.Fatal(err)
		}
		uniqueErr := exec(`INSERT INTO items (name, created_ns) VALUES ('x', 1)`)
		pkErr := exec(`INSERT INTO kv (k, v, updated_ms) VALUES ('x', 'other', 0)`)
		notNullErr := exec(`INSERT INTO items (name, created_ns) VALUES (NULL, 0)`)
		cases := []struct {
			name string
			err  error
			want bool
		}{
			{"UNIQUE column", uniqueErr, true},
			{"primary key", pkErr, true},
			{"wrapped", fmt.Errorf("save item: %w", uniqueErr), true},
			{"NOT NULL", notNullErr, false},
			{"other error", errBoom, false},
			{"nil", nil, false},
		}
		if notNullErr == nil {
			t.Fatal("inserting NULL into a NOT NULL column succeeded")
		}
		for _, c := range cases {
			if got := store.IsUniqueViolation(c.err); got != c.want {
				t.Errorf("%s: IsUniqueViolation(%v) = %v, want %v", c.name, c.err, got, c.want)
			}
		}
	})
}

// TestConcurrentIncrements has 8 goroutines on two handles (two processes' worth on SQLite)
// read a counter and write it back plus one. Any lost update or unretried conflict shows in the
// total.
func TestConcurrentIncrements(t *testing.T) {
	const goroutines, each = 8, 25
	contract(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		handles := []*store.DB{db, storetest.Reopen(t, db)}
		var runs atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for g := range goroutines {
			wg.Go(func() {
				h := handles[g%len(handles)]
				for range each {
					err := h.InTxOptions(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable}, func(tx *sql.Tx) error {
						runs.Add(1)
						var n int64
						if err := tx.QueryRowContext(ctx, `SELECT n FROM counters WHERE id = $1`, 1).Scan(&n); err != nil {
							return err
						}
						_, err := tx.ExecContext(ctx, `UPDATE counters SET n = $1 WHERE id = $2`, n+1, 1)
						return err
					})
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		var n int64
		if err := db.QueryRowContext(ctx, `SELECT n FROM counters WHERE id = 1`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != goroutines*each {
			t.Errorf("counter = %d after %d increments", n, goroutines*each)
		}
		t.Logf("%d increments took %d runs of fn", goroutines*each, runs.Load())
	})
}

// TestInTxRetriesSerializationFailure makes two serializable transactions read the same row
// before either writes it, so PostgreSQL must abort one with 40001: InTx runs it again, and
// neither increment is lost. (On SQLite the second BEGIN waits for the first commit instead.)
func TestInTxRetriesSerializationFailure(t *testing.T) {
	db := storetest.OpenPostgres(t, "retry")
	ctx := t.Context()
	if err := db.Migrate(ctx, migrationSet(t, "contract")); err != nil {
		t.Fatal(err)
	}
	read := []chan struct{}{make(chan struct{}), make(chan struct{})}
	var runs atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			first := true
			errs[i] = db.InTxOptions(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable}, func(tx *sql.Tx) error {
				runs.Add(1)
				var n int64
				if err := tx.QueryRowContext(ctx, `SELECT n FROM counters WHERE id = 1`).Scan(&n); err != nil {
					return err
				}
				if first { // both have read before either writes
					first = false
					close(read[i])
					<-read[1-i]
				}
				_, err := tx.ExecContext(ctx, `UPDATE counters SET n = $1 WHERE id = 1`, n+1)
				return err
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := db.QueryRowContext(ctx, `SELECT n FROM counters WHERE id = 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 || runs.Load() != 3 {
		t.Errorf("counter = %d after %d runs of fn, want 2 after 3 (one retried)", n, runs.Load())
	}
}

func TestPostgresSchemaIsolation(t *testing.T) {
	ctx := t.Context()
	alpha, beta := storetest.OpenPostgres(t, "alpha"), storetest.OpenPostgres(t, "beta")
	for _, db := range []*store.DB{alpha, beta} {
		if err := db.Migrate(ctx, migrationSet(t, "contract")); err != nil {
			t.Fatal(err)
		}
		var schema string
		if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil || schema != db.Schema {
			t.Errorf("current_schema() = %q (%v), want %q", schema, err, db.Schema)
		}
	}
	if _, err := alpha.ExecContext(ctx, `INSERT INTO kv (k, v, updated_ms) VALUES ('only', 'alpha', 0)`); err != nil {
		t.Fatal(err)
	}
	if _, err := alpha.ExecContext(ctx, `CREATE TABLE alpha_only (id BIGINT)`); err != nil {
		t.Fatal(err)
	}
	count := func(db *store.DB, table string) (int, error) {
		var n int
		err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n)
		return n, err
	}
	if n, err := count(alpha, "kv"); err != nil || n != 1 {
		t.Errorf("alpha's kv has %d rows (%v), want 1", n, err)
	}
	if n, err := count(beta, "kv"); err != nil || n != 0 {
		t.Errorf("beta's kv has %d rows (%v), want 0: it sees alpha's", n, err)
	}
	if _, err := count(beta, "alpha_only"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("beta reading alpha's table: %v, want does not exist", err)
	}
	for _, db := range []*store.DB{alpha, beta} {
		if n, err := count(db, "schema_migrations"); err != nil || n != 2 {
			t.Errorf("%s has %d migrations recorded (%v), want its own 2", db.Schema, n, err)
		}
	}
}

// TestMigrateEngineOnly: {{postgres: SQL}} runs on PostgreSQL only and
// {{sqlite: SQL}} on SQLite only; the other engine sees nothing there.
func TestMigrateEngineOnly(t *testing.T) {
	storetest.Engines(t, "only", nil, func(t *testing.T, db *store.DB) {
		fs := fstest.MapFS{"001_x.sql": {Data: []byte(`CREATE TABLE only_x (a TEXT);
{{postgres: ALTER TABLE only_x SET (fillfactor = 70)}};
{{sqlite: CREATE INDEX only_x_a ON only_x (a)}};`)}}
		if err := db.Migrate(t.Context(), store.Migrations{Component: "only", FS: fs}); err != nil {
			t.Fatal(err)
		}
		switch db.Engine {
		case store.Postgres:
			var opts string
			if err := db.QueryRowContext(t.Context(), `SELECT COALESCE(array_to_string(reloptions, ','), '') FROM pg_class WHERE relname = 'only_x'`).Scan(&opts); err != nil {
				t.Fatal(err)
			}
			if opts != "fillfactor=70" {
				t.Errorf("PostgreSQL: only_x reloptions %q, want fillfactor=70", opts)
			}
		case store.SQLite:
			var n int
			if err := db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'only_x_a'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("SQLite: index only_x_a missing")
			}
		}
	})
}

// TestLock: on PostgreSQL a transaction that takes a key another holds
// waits until that one commits, and then reads what it wrote (under READ
// COMMITTED, which InTx uses); another key does not wait.
func TestLock(t *testing.T) {
	db := storetest.OpenPostgres(t, "lock")
	ctx := t.Context()
	if err := db.Migrate(ctx, migrationSet(t, "contract")); err != nil {
		t.Fatal(err)
	}
	other := storetest.Reopen(t, db)
	locked, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- db.InTx(ctx, func(tx *sql.Tx) error {
			if err := db.Lock(ctx, tx, "build/1"); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE counters SET n = n + 1 WHERE id = 1`); err != nil {
				return err
			}
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	// Another key is free while build/1 is held.
	otherKey := make(chan error, 1)
	go func() {
		otherKey <- other.InTx(ctx, func(tx *sql.Tx) error { return other.Lock(ctx, tx, "build/2") })
	}()
	select {
	case err := <-otherKey:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("a lock on build/2 waited for the holder of build/1")
	}
	// The same key waits for the holder, then sees its write.
	second := make(chan int64, 1)
	go func() {
		var n int64
		err := other.InTx(ctx, func(tx *sql.Tx) error {
			if err := other.Lock(ctx, tx, "build/1"); err != nil {
				return err
			}
			return tx.QueryRowContext(ctx, `SELECT n FROM counters WHERE id = 1`).Scan(&n)
		})
		if err != nil {
			t.Error(err)
		}
		second <- n
	}()
	select {
	case n := <-second:
		t.Fatalf("the second transaction took build/1 while the first held it (read n = %d)", n)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := <-second; n != 1 {
		t.Errorf("after the holder committed, the waiter read n = %d, want 1", n)
	}
}
