// Package store opens a service's database, applies its embedded migrations and runs its
// transactions, on PostgreSQL or on an embedded SQLite file, with one set of queries for both.
//
// Each service owns its tables: a schema on PostgreSQL (named after the service) or a file on
// SQLite (<DataDir>/<service>.db). Queries are written once in the subset both engines share:
// $1 placeholders, ON CONFLICT … DO UPDATE / DO NOTHING, RETURNING, integer/text/blob columns,
// and times as integer unix nanoseconds or milliseconds UTC. Migration files carry the few DDL
// differences as tokens, see [Migrations].
//
// A service wires it at start:
//
//	//go:embed migrations/*.sql
//	var migrations embed.FS
//
//	db, err := store.Open(ctx, store.Config{URL: databaseURL, Service: "builds", DataDir: dataDir})
//	...
//	sub, _ := fs.Sub(migrations, "migrations")
//	err = db.Migrate(ctx, store.Migrations{Component: "builds", FS: sub})
//
// and tests its queries on both engines with package storetest.
package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Engine names the database engine behind a [DB].
type Engine string

// The engines a [DB] can run on.
const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// Config says which database a service uses.
type Config struct {
	// URL selects the engine and the database:
	//   ""  or "sqlite"                    SQLite file <DataDir>/<Service>.db
	//   "sqlite:///abs/path.db"            SQLite file at that path ("sqlite://rel/path.db" is relative)
	//   "sqlite::memory:"                  SQLite in memory, gone when the DB is closed
	//   "postgres://…" or "postgresql://…" PostgreSQL, tables in the schema named Service
	URL string
	// Service names the owner of the tables: the PostgreSQL schema and the default SQLite
	// file name. It must match ^[a-z][a-z0-9_]*$ and be at most 63 bytes.
	Service string
	// DataDir holds the default SQLite file; it is created if missing.
	DataDir string
}

// DB is a service's database. Use the embedded *sql.DB for single statements and [DB.InTx] for
// transactions.
type DB struct {
	*sql.DB
	Engine Engine
	// Schema is the PostgreSQL schema every connection uses; empty on SQLite.
	Schema string
	// Path is the SQLite database file, or ":memory:"; empty on PostgreSQL.
	Path string
}

var serviceName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// maxIdentifier is PostgreSQL's limit on identifier length (NAMEDATALEN-1); longer schema names
// would be silently truncated.
const maxIdentifier = 63

// connectTimeout bounds the first connection when ctx has no deadline, so an unreachable server
// fails start-up instead of hanging it.
const connectTimeout = 15 * time.Second

// Open opens the database cfg describes and checks that it is reachable. On PostgreSQL it creates
// the service's schema if missing and makes every connection use it. It does not migrate; call
// [DB.Migrate].
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if !serviceName.MatchString(cfg.Service) || len(cfg.Service) > maxIdentifier {
		return nil, fmt.Errorf("open store: service name %q must match %s and be at most %d bytes",
			cfg.Service, serviceName, maxIdentifier)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, connectTimeout)
		defer cancel()
	}
	u := cfg.URL
	lower := strings.ToLower(u)
	switch {
	case u == "" || lower == "sqlite":
		if cfg.DataDir == "" {
			return nil, fmt.Errorf("open store %s: the default SQLite database needs a data directory", cfg.Service)
		}
		return openSQLite(ctx, filepath.Join(cfg.DataDir, cfg.Service+".db"))
	case strings.HasPrefix(lower, "sqlite:"):
		path := strings.TrimPrefix(u[len("sqlite:"):], "//")
		if path == "" {
			return nil, fmt.Errorf("open store %s: database URL %q names no SQLite file", cfg.Service, u)
		}
		return openSQLite(ctx, path)
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return openPostgres(ctx, u, cfg.Service)
	default:
		scheme, _, ok := strings.Cut(u, ":")
		if !ok {
			scheme = u
		}
		return nil, fmt.Errorf("open store %s: unsupported database URL scheme %q in %s: want sqlite or postgres",
			cfg.Service, scheme, redact(u))
	}
}

const memoryPath = ":memory:"

// sqlitePragmas run on every new SQLite connection. busy_timeout comes first (the driver orders
// it so) so the others wait for a lock instead of failing. WAL lets readers in other processes
// proceed during a write; NORMAL sync is safe with WAL (a power loss can lose the last commits,
// never corrupt the file). _txlock=immediate makes BEGIN take the write lock up front, so a
// transaction that reads and then writes waits under busy_timeout at BEGIN rather than failing
// with SQLITE_BUSY when it upgrades its lock; read-only transactions still begin deferred.
const sqlitePragmas = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)" +
	"&_pragma=synchronous(NORMAL)&_txlock=immediate"

func openSQLite(ctx context.Context, path string) (*DB, error) {
	var dsn string
	if path == memoryPath {
		dsn = "file::memory:?" + sqlitePragmas
	} else {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
		}
		path = abs
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
		}
		// A file: URI, so the path is escaped: '?', '#' and '%' in it would otherwise end it.
		dsn = "file:" + (&url.URL{Path: filepath.ToSlash(path)}).EscapedPath() + "?" + sqlitePragmas
	}
	sqlDB, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	// SQLite allows one writer per file, so the pool holds a single connection: goroutines queue
	// for it in the pool instead of contending for the file lock. The cost is a rule for callers:
	// while a transaction is open, do all its work through the *sql.Tx, never through the *sql.DB,
	// which would wait forever for the connection the transaction holds. The one connection is
	// also what keeps a ":memory:" database alive, so it is never recycled.
	sqlDB.SetMaxOpenConns(1)
	sqlDB.SetMaxIdleConns(1)
	sqlDB.SetConnMaxLifetime(0)
	sqlDB.SetConnMaxIdleTime(0)
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	return &DB{DB: sqlDB, Engine: SQLite, Path: path}, nil
}

func openPostgres(ctx context.Context, rawURL, schema string) (*DB, error) {
	conf, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL %s: %w", redact(rawURL), err)
	}
	// search_path as a startup parameter applies to every connection the pool opens, so
	// unqualified table names always resolve in the service's own schema. Naming only that
	// schema keeps services from seeing each other's tables by accident.
	conf.RuntimeParams["search_path"] = quoteIdent(schema)
	sqlDB := stdlib.OpenDB(*conf)
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w (check --database-url or SHIPLOOP_DATABASE_URL)",
			redact(rawURL), err)
	}
	db := &DB{DB: sqlDB, Engine: Postgres, Schema: schema}
	// Two replicas starting at once would race in CREATE SCHEMA IF NOT EXISTS (it can fail with a
	// unique violation on pg_namespace), so it runs under the same lock as migrations.
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		if err := db.lockSchema(ctx, tx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoteIdent(schema))
		return err
	})
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("create schema %s on %s: %w", schema, redact(rawURL), err)
	}
	return db, nil
}

// Close closes the database, waiting for queries in progress to finish.
func (db *DB) Close() error {
	return db.DB.Close()
}

// quoteIdent quotes a PostgreSQL identifier. Service names are already restricted to safe
// characters; quoting keeps that from being load-bearing.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// redact returns rawURL with any password replaced, for error messages and logs.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		scheme, _, _ := strings.Cut(rawURL, ":")
		return scheme + "://(unparsable URL)"
	}
	return u.Redacted()
}
