// Package storetest runs a service's store tests against both engines: a fresh SQLite file and
// a fresh schema on a real PostgreSQL server.
//
// The server comes from SHIPLOOP_TEST_DATABASE_URL, by default [DefaultPostgresURL]. Without a
// server the PostgreSQL subtests skip, except with CI=true, where they fail: CI must run them.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/shiploop/shiploop/pkg/store"
)

// DefaultPostgresURL is the server tests use when SHIPLOOP_TEST_DATABASE_URL is unset.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// PostgresURL returns the test server's URL: SHIPLOOP_TEST_DATABASE_URL or DefaultPostgresURL.
func PostgresURL() string {
	if u := os.Getenv("SHIPLOOP_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// Engines runs fn once per engine, as subtests "sqlite" and "postgres", each with a fresh
// database migrated with migrations.
func Engines(t *testing.T, service string, migrations []store.Migrations, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	t.Run(string(store.SQLite), func(t *testing.T) {
		db := OpenSQLite(t, service)
		migrate(t, db, migrations)
		fn(t, db)
	})
	t.Run(string(store.Postgres), func(t *testing.T) {
		db := OpenPostgres(t, service)
		migrate(t, db, migrations)
		fn(t, db)
	})
}

func migrate(t *testing.T, db *store.DB, migrations []store.Migrations) {
	t.Helper()
	if err := db.Migrate(t.Context(), migrations...); err != nil {
		t.Fatal(err)
	}
}

// OpenSQLite opens an empty, unmigrated SQLite database in a file under t.TempDir, closed when
// the test ends.
func OpenSQLite(t testing.TB, service string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Config{Service: service, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeDB(t, db) })
	return db
}

// OpenPostgres opens an empty, unmigrated schema of its own on the test server, named service
// plus a random suffix, and drops it with everything in it when the test ends. It skips the
// test if the server is unreachable, or fails it when CI=true.
func OpenPostgres(t testing.TB, service string) *store.DB {
	t.Helper()
	url := PostgresURL()
	if err := probePostgres(url); err != nil {
		msg := "PostgreSQL test server at " + redact(url) + " is unreachable: " + err.Error() + "\n" +
			"Point SHIPLOOP_TEST_DATABASE_URL at one, or start one with\n" +
			"  docker run --rm -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test postgres:17"
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal(msg + "\n(CI=true: the PostgreSQL side must run in CI)")
		}
		t.Skip(msg)
	}
	schema := uniqueSchema(service)
	db, err := store.Open(context.Background(), store.Config{URL: url, Service: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		closeDB(t, db)
		dropSchema(t, url, schema)
	})
	return db
}

// Reopen opens a second handle on db's database (the same SQLite file, or the same PostgreSQL
// schema), as another replica or process would, closed when the test ends. db's own cleanup
// still owns the database.
func Reopen(t testing.TB, db *store.DB) *store.DB {
	t.Helper()
	var cfg store.Config
	switch {
	case db.Engine == store.Postgres:
		cfg = store.Config{URL: PostgresURL(), Service: db.Schema}
	case db.Path == ":memory:":
		t.Fatal("storetest.Reopen: an in-memory SQLite database cannot be opened twice")
	default:
		cfg = store.Config{URL: "sqlite://" + filepath.ToSlash(db.Path), Service: "reopen"}
	}
	other, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeDB(t, other) })
	return other
}

func closeDB(t testing.TB, db *store.DB) {
	if err := db.Close(); err != nil {
		t.Errorf("close test database: %v", err)
	}
}

// probePostgres checks a server once per test binary: a server that is down stays down for the
// run, and each check of an unreachable host could take seconds.
func probePostgres(url string) error {
	probes.Lock()
	defer probes.Unlock()
	if err, ok := probes.results[url]; ok {
		return err
	}
	err := ping(url)
	probes.results[url] = err
	return err
}

var probes = struct {
	sync.Mutex
	results map[string]error
}{results: map[string]error{}}

func ping(url string) error {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

func redact(rawURL string) string {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return "(unparsable URL in SHIPLOOP_TEST_DATABASE_URL)"
	}
	return u.Redacted()
}

func uniqueSchema(service string) string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	suffix := "_" + hex.EncodeToString(b[:])
	const maxIdent = 63
	if len(service) > maxIdent-len(suffix) {
		service = service[:maxIdent-len(suffix)]
	}
	return service + suffix
}

func dropSchema(t testing.TB, url, schema string) {
	// A fresh connection: the test may have closed its handle, and the drop must not wait on a
	// transaction the test left open forever.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Errorf("drop test schema %s: %v", schema, err)
		return
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`); err != nil {
		t.Errorf("drop test schema %s: %v", schema, err)
	}
}
