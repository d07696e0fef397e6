package deploys

import (
	"io/fs"
	"testing"
	"testing/fstest"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
)

// TestEarlyEventsMigration: a database that kept a passed gate in
// passed_gates (migration 003) keeps it through 004, as an early
// gate.evaluated, so the build still deploys when build.created comes.
func TestEarlyEventsMigration(t *testing.T) {
	storetest.Engines(t, "deploys", nil, func(t *testing.T, db *store.DB) {
		sub, err := fs.Sub(migrationsFS, "migrations")
		if err != nil {
			t.Fatal(err)
		}
		upTo3 := fstest.MapFS{}
		for _, name := range []string{"001_init.sql", "002_error_counts.sql", "003_passed_gates.sql"} {
			data, err := fs.ReadFile(sub, name)
			if err != nil {
				t.Fatal(err)
			}
			upTo3[name] = &fstest.MapFile{Data: data}
		}
		if err := db.Migrate(t.Context(), bus.Migrations, store.Migrations{Component: "deploys", FS: upTo3}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(t.Context(), `INSERT INTO passed_gates (build_id, at) VALUES ($1, $2)`, "build-1", 42); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(t.Context(), Migrations()...); err != nil {
			t.Fatalf("migrating to 004 with a passed gate kept: %v", err)
		}
		var typ string
		var status int32
		var at int64
		if err := db.QueryRowContext(t.Context(), `SELECT type, status, at FROM early_events WHERE build_id = $1`, "build-1").Scan(&typ, &status, &at); err != nil {
			t.Fatalf("the kept gate is not in early_events: %v", err)
		}
		if typ != "gate.evaluated" || status != 1 || at != 42 {
			t.Errorf("early event %s status %d at %d, want gate.evaluated 1 (passed) at 42", typ, status, at)
		}
		if _, err := db.ExecContext(t.Context(), `SELECT 1 FROM passed_gates`); err == nil {
			t.Error("passed_gates is still there")
		}
	})
}

// TestEarlyEventsPruned: an early event whose build.created has not come in
// a month (EVENTS keeps a month) is deleted; a recent one is kept.
func TestEarlyEventsPruned(t *testing.T) {
	db := storetest.OpenSQLite(t, "deploys")
	if err := db.Migrate(t.Context(), Migrations()...); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for id, at := range map[string]time.Time{"old": now.Add(-31 * 24 * time.Hour), "recent": now.Add(-time.Hour)} {
		if _, err := db.ExecContext(t.Context(), `INSERT INTO early_events (build_id, type, status, at) VALUES ($1, 'build.finished', 3, $2)`, id, at.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	newHarness(t, db) // its loop prunes at its first tick
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var ids []string
		rows, err := db.QueryContext(t.Context(), `SELECT build_id FROM early_events ORDER BY build_id`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		rows.Close()
		if len(ids) == 1 && ids[0] == "recent" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("early events left: %v, want only the recent one", ids)
		}
	}
}
