package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shiploop/shiploop/pkg/store"
)

func TestOpenRejectsUnknownScheme(t *testing.T) {
	for _, url := range []string{"mysql://user:hunter2@db:3306/shiploop", "file:/var/lib/shiploop.db", "builds.db"} {
		_, err := store.Open(t.Context(), store.Config{URL: url, Service: "builds"})
		scheme, _, _ := strings.Cut(url, ":")
		if err == nil || !strings.Contains(err.Error(), `"`+scheme+`"`) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) = %v, want an error naming scheme %q and no password", url, err, scheme)
		}
	}
}

func TestOpenRejectsBadServiceName(t *testing.T) {
	for _, service := range []string{"", "Builds", "1builds", "build-s", "builds; DROP", strings.Repeat("a", 64)} {
		_, err := store.Open(t.Context(), store.Config{URL: "sqlite::memory:", Service: service})
		if err == nil || !strings.Contains(err.Error(), "service name") {
			t.Errorf("Open with service %q = %v, want a service name error", service, err)
		}
	}
}

func TestOpenUnreachablePostgres(t *testing.T) {
	// Port 1 on loopback refuses at once; nothing listens there.
	url := "postgres://shiploop:hunter2@127.0.0.1:1/shiploop?sslmode=disable"
	_, err := store.Open(t.Context(), store.Config{URL: url, Service: "builds"})
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	msg := err.Error()
	for _, want := range []string{"127.0.0.1:1", "--database-url", "SHIPLOOP_DATABASE_URL"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("error %q shows the password", msg)
	}
}

func TestOpenSQLite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet")
	abs := filepath.Join(t.TempDir(), "elsewhere", "a #weird? name%.db")
	cases := []struct {
		name string
		cfg  store.Config
		file string
	}{
		{"default", store.Config{Service: "builds", DataDir: dir}, filepath.Join(dir, "builds.db")},
		{"sqlite", store.Config{URL: "sqlite", Service: "deploys", DataDir: dir}, filepath.Join(dir, "deploys.db")},
		{"absolute URL", store.Config{URL: "sqlite://" + abs, Service: "builds"}, abs},
		{"memory", store.Config{URL: "sqlite::memory:", Service: "builds"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			db, err := store.Open(ctx, c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if db.Engine != store.SQLite {
				t.Errorf("Engine = %q, want sqlite", db.Engine)
			}
			if _, err := db.ExecContext(ctx, `CREATE TABLE t (x INTEGER)`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO t (x) VALUES ($1)`, 7); err != nil {
				t.Fatal(err)
			}
			var x int
			if err := db.QueryRowContext(ctx, `SELECT x FROM t`).Scan(&x); err != nil || x != 7 {
				t.Errorf("read back %d (%v), want 7", x, err)
			}
			if c.file != "" {
				if db.Path != c.file {
					t.Errorf("Path = %q, want %q", db.Path, c.file)
				}
				if _, err := os.Stat(c.file); err != nil {
					t.Errorf("database file: %v", err)
				}
			}
			wantJournal := "wal"
			if c.file == "" {
				wantJournal = "memory" // SQLite keeps an in-memory database's journal in memory
			}
			pragmas := []struct {
				name string
				want string
			}{
				{"journal_mode", wantJournal},
				{"busy_timeout", "10000"},
				{"foreign_keys", "1"},
				{"synchronous", "1"}, // NORMAL
			}
			for _, p := range pragmas {
				var got string
				if err := db.QueryRowContext(ctx, "PRAGMA "+p.name).Scan(&got); err != nil || got != p.want {
					t.Errorf("PRAGMA %s = %q (%v), want %q", p.name, got, err, p.want)
				}
			}
			if n := db.Stats().MaxOpenConnections; n != 1 {
				t.Errorf("MaxOpenConnections = %d, want 1", n)
			}
		})
	}
}
