package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Migrations is one component's schema history: files named NNN_description.sql at the root of
// FS (use fs.Sub for an embedded folder), applied in order of NNN. Other files are ignored.
//
// A file is shared by both engines. Before it runs, these tokens are replaced:
//
//	{{bytes}}      BYTEA                  (PostgreSQL)  BLOB                              (SQLite)
//	{{serial_pk}}  BIGSERIAL PRIMARY KEY  (PostgreSQL)  INTEGER PRIMARY KEY AUTOINCREMENT (SQLite)
//	{{bigint}}     BIGINT                 (PostgreSQL)  INTEGER                           (SQLite)
//	{{postgres: SQL}} / {{sqlite: SQL}}    SQL on that engine only, nothing on the other
//
// A file may hold several statements separated by semicolons; it runs as one Exec in its own
// transaction, so it applies entirely or not at all. A file that has been applied is never run
// again: to change a table, add a file.
type Migrations struct {
	Component string
	FS        fs.FS
}

// migrationsTable records what has been applied, per component so several components (a service
// and the libraries it embeds) can share one schema.
const migrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	component     TEXT NOT NULL,
	version       {{bigint}} NOT NULL,
	name          TEXT NOT NULL,
	applied_at_ms {{bigint}} NOT NULL,
	PRIMARY KEY (component, version)
)`

type migration struct {
	component string
	file      string
	version   int64
	sql       string // tokens already replaced
}

func (m migration) String() string { return m.component + "/" + m.file }

type migrationKey struct {
	component string
	version   int64
}

// Migrate applies the migrations in sets that the database has not recorded yet, set by set in
// the order given, each file in its own transaction. It is safe to call on every start and from
// several processes at once: on PostgreSQL a transaction-scoped advisory lock per schema lets one
// caller apply a file while the others wait and then find it recorded; on SQLite the write lock
// does the same.
func (db *DB) Migrate(ctx context.Context, sets ...Migrations) error {
	var pending []migration
	components := map[string]bool{}
	for _, set := range sets {
		if set.Component == "" || set.FS == nil {
			return fmt.Errorf("migrate: a migration set needs a component name and an FS (got %q)", set.Component)
		}
		if components[set.Component] {
			return fmt.Errorf("migrate %s: component given twice", set.Component)
		}
		components[set.Component] = true
		ms, err := db.loadMigrations(set)
		if err != nil {
			return err
		}
		pending = append(pending, ms...)
	}

	table, err := db.Engine.expand(migrationsTable)
	if err != nil {
		return err
	}
	// CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin on PostgreSQL, hence the lock.
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		if err := db.lockSchema(ctx, tx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, table)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}

	// Skip what is recorded without taking the lock, so a start with nothing to do is cheap.
	applied := map[migrationKey]bool{}
	rows, err := db.QueryContext(ctx, "SELECT component, version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	for rows.Next() {
		var k migrationKey
		if err := rows.Scan(&k.component, &k.version); err != nil {
			rows.Close()
			return fmt.Errorf("migrate: read schema_migrations: %w", err)
		}
		applied[k] = true
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("migrate: read schema_migrations: %w", err)
	}

	for _, m := range pending {
		if applied[migrationKey{m.component, m.version}] {
			continue
		}
		if err := db.apply(ctx, m); err != nil {
			return fmt.Errorf("migrate %s: %w", m, err)
		}
	}
	return nil
}

// apply runs one migration unless a concurrent caller has applied it since Migrate looked.
func (db *DB) apply(ctx context.Context, m migration) error {
	return db.InTx(ctx, func(tx *sql.Tx) error {
		if err := db.lockSchema(ctx, tx); err != nil {
			return err
		}
		var n int
		err := tx.QueryRowContext(ctx,
			"SELECT COUNT(*) FROM schema_migrations WHERE component = $1 AND version = $2",
			m.component, m.version).Scan(&n)
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		if strings.TrimSpace(m.sql) != "" {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx,
			"INSERT INTO schema_migrations (component, version, name, applied_at_ms) VALUES ($1, $2, $3, $4)",
			m.component, m.version, m.file, time.Now().UnixMilli())
		return err
	})
}

// lockSchema serialises schema changes across processes on PostgreSQL until tx ends. SQLite
// needs nothing: InTx's BEGIN IMMEDIATE already holds the database's only write lock.
func (db *DB) lockSchema(ctx context.Context, tx *sql.Tx) error {
	if err := db.lock(ctx, tx, "shiploop/store/schema/"+db.Schema); err != nil {
		return fmt.Errorf("lock schema %s: %w", db.Schema, err)
	}
	return nil
}

// Lock takes, until tx ends, a lock on key (within this database's schema)
// that every other transaction taking the same key waits for, across
// processes: replicas of a service that handle two events about one thing
// at once take it first, so the second sees what the first committed. On
// SQLite it takes nothing: InTx's BEGIN IMMEDIATE already holds the
// database's only write lock.
func (db *DB) Lock(ctx context.Context, tx *sql.Tx, key string) error {
	if err := db.lock(ctx, tx, "shiploop/"+db.Schema+"/"+key); err != nil {
		return fmt.Errorf("lock %s: %w", key, err)
	}
	return nil
}

func (db *DB) lock(ctx context.Context, tx *sql.Tx, key string) error {
	if db.Engine != Postgres {
		return nil
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(h.Sum64()))
	return err
}

var migrationName = regexp.MustCompile(`^([0-9]+)_[^/]+\.sql$`)

// loadMigrations reads and checks a whole set before anything runs, so a misnamed file or an
// unknown token fails the start before the database changes.
func (db *DB) loadMigrations(set Migrations) ([]migration, error) {
	entries, err := fs.ReadDir(set.FS, ".")
	if err != nil {
		return nil, fmt.Errorf("migrate %s: read migrations: %w", set.Component, err)
	}
	var ms []migration
	byVersion := map[int64]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		match := migrationName.FindStringSubmatch(name)
		if match == nil {
			return nil, fmt.Errorf("migrate %s/%s: file name must be NNN_description.sql", set.Component, name)
		}
		version, err := strconv.ParseInt(match[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("migrate %s/%s: version: %w", set.Component, name, err)
		}
		if other, ok := byVersion[version]; ok {
			return nil, fmt.Errorf("migrate %s/%s: version %d is also %s", set.Component, name, version, other)
		}
		byVersion[version] = name
		body, err := fs.ReadFile(set.FS, name)
		if err != nil {
			return nil, fmt.Errorf("migrate %s/%s: %w", set.Component, name, err)
		}
		text, err := db.Engine.expand(string(body))
		if err != nil {
			return nil, fmt.Errorf("migrate %s/%s: %w", set.Component, name, err)
		}
		ms = append(ms, migration{component: set.Component, file: name, version: version, sql: text})
	}
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	return ms, nil
}

// dialect holds the DDL each engine spells differently; everything else in a query is shared.
var dialect = map[Engine]map[string]string{
	Postgres: {
		"bytes":     "BYTEA",
		"serial_pk": "BIGSERIAL PRIMARY KEY",
		"bigint":    "BIGINT",
	},
	SQLite: {
		"bytes":     "BLOB",
		"serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
		"bigint":    "INTEGER",
	},
}

var dialectToken = regexp.MustCompile(`\{\{[^{}]*\}\}`)

// expand replaces the dialect tokens in a migration for engine e; an unknown token is an error,
// so a typo fails loudly instead of reaching the database as SQL.
func (e Engine) expand(text string) (string, error) {
	words, ok := dialect[e]
	if !ok {
		return "", fmt.Errorf("no SQL dialect for engine %q", e)
	}
	var unknown []string
	out := dialectToken.ReplaceAllStringFunc(text, func(tok string) string {
		inner := strings.TrimSpace(tok[2 : len(tok)-2])
		// {{postgres: SQL}} and {{sqlite: SQL}}: SQL for that engine only
		// (storage tuning such as a table's fillfactor).
		for _, only := range []Engine{Postgres, SQLite} {
			if rest, ok := strings.CutPrefix(inner, string(only)+":"); ok {
				if only == e {
					return strings.TrimSpace(rest)
				}
				return ""
			}
		}
		word, ok := words[inner]
		if !ok {
			unknown = append(unknown, tok)
			return tok
		}
		return word
	})
	if unknown != nil {
		return "", fmt.Errorf("unknown dialect token %s (known: {{bytes}}, {{serial_pk}}, {{bigint}}, {{postgres: SQL}}, {{sqlite: SQL}})",
			strings.Join(unknown, ", "))
	}
	return out, nil
}
