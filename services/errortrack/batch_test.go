package errortrack

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	"github.com/shiploop/shiploop/pkg/testfixture"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// TestBatchStoresAsOneByOne: the same envelopes stored in batches of
// several sizes (handleEnvelopes) and one by one (handleEnvelope) leave
// the same rows in every table and the same events in the outbox: issues
// opened in the middle of a batch and joined later in it, repeated and
// already stored events, new hashes of a known issue, users, releases and
// environments, events older than the issue's last one, a resolved issue
// that regresses and one resolved in the next release, and envelopes the
// batch hands to handleEnvelope (attachments, sessions, transactions).
func TestBatchStoresAsOneByOne(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		var db2 *store.DB
		if db.Engine == store.Postgres {
			db2 = storetest.OpenPostgres(t, "errortrack")
		} else {
			db2 = storetest.OpenSQLite(t, "errortrack")
		}
		b := bustest.Start(t, bus.Options{Source: "/test"})
		one, batched := bareService(t, db, b), bareService(t, db2, b)
		ctx := context.Background()
		var pid int64
		for _, s := range []*Service{one, batched} {
			resp, err := (&grpcServer{s: s}).CreateProject(ctx, &errortrackv1.CreateProjectRequest{Name: "shop"})
			if err != nil {
				t.Fatal(err)
			}
			pid = resp.GetProject().GetId()
		}
		base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		n := 0
		env := func(id, itemType, payload string, extra ...string) bus.Event {
			n++
			header := `{}`
			if id != "" {
				header = fmt.Sprintf(`{"event_id":%q}`, id)
			}
			body := header + "\n" + fmt.Sprintf(`{"type":%q}`, itemType) + "\n" + payload + "\n" + strings.Join(extra, "")
			return bus.NewEvent("errortrack.envelope", "", id, &errortrackv1.IngestedEnvelope{
				ProjectId: pid, PublicKey: "k", Body: []byte(body), ReceivedAt: timestamppb.New(base.Add(time.Duration(n) * time.Second)),
			})
		}
		// An error with an in-app frame and a system frame: events that
		// differ only in the system frame share the app hash (and issue).
		errorEvent := func(typ, system, release, environment, user, level string, at time.Time) string {
			return fmt.Sprintf(`{"platform":"go","level":%q,"release":%q,"environment":%q,"user":{"id":%q},"timestamp":%q,"exception":{"values":[{"type":%q,"value":"v","stacktrace":{"frames":[{"function":%q,"module":"net/http","in_app":false},{"function":"handle","module":"shop/api","in_app":true}]}}]}}`,
				level, release, environment, user, at.Format(time.RFC3339Nano), typ, system)
		}
		id := func(i int) string { return fmt.Sprintf("%032x", i) }
		phase1 := []bus.Event{
			env(id(1), "event", errorEvent("KeyError", "serve", "shop@1.0.0", "production", "u1", "error", base)),
			env(id(2), "event", errorEvent("KeyError", "serve", "shop@1.0.0", "production", "u2", "error", base.Add(time.Minute))),
			env(id(3), "event", errorEvent("KeyError", "serveTLS", "shop@1.1.0", "staging", "u1", "error", base.Add(-time.Minute))), // older, new system hash
			env(id(4), "event", `{"level":"fatal","message":"out of memory","release":"shop@1.1.0"}`),
			env(id(2), "event", errorEvent("KeyError", "serve", "shop@1.0.0", "production", "u2", "error", base.Add(time.Minute))), // repeated
			env(id(5), "event", errorEvent("ValueError", "serve", "shop@1.0.0", "production", "", "error", base.Add(2*time.Minute))),
			env(id(6), "event", `{"level":"info","message":"user signed up","release":"shop@1.1.0"}`),
			env(id(7), "event", errorEvent("ValueError", "serve", "shop@1.1.0", "production", "u3", "warning", base.Add(3*time.Minute)),
				`{"type":"attachment","length":5,"filename":"a.txt"}`+"\nhello\n"),
			env(id(8), "transaction", `{"type":"transaction","transaction":"/cart","release":"shop@1.1.0","start_timestamp":1700000000,"timestamp":1700000001}`),
			env("", "event", fmt.Sprintf(`{"event_id":%q,"level":"fatal","message":"out of memory","release":"shop@1.1.0","timestamp":%q}`, id(9), base.Add(48*time.Hour).Format(time.RFC3339))), // id in the payload; in the future
			env("", "session", `{"sid":"s1","status":"ok","attrs":{"release":"shop@1.1.0","environment":"production"}}`),
			env(id(10), "event", errorEvent("KeyError", "serve", "shop@1.1.0", "production", "u1", "error", base.Add(time.Minute))), // same time as the latest
			env(id(12), "event", errorEvent("KeyError", "serve", "shop@1.0.0", "production", "u1", "error", base.Add(time.Minute))), // again: its release is the last
			env(id(11), "event", `{"level":"error","message":"disk full","release":"shop@1.0.0","fingerprint":["disk"]}`),
		}
		phase2 := []bus.Event{
			env(id(4), "event", `{"level":"fatal","message":"out of memory","release":"shop@1.1.0"}`),                                   // stored before
			env(id(20), "event", errorEvent("KeyError", "serve", "shop@1.0.0", "production", "u4", "error", base.Add(5*time.Minute))),   // older than the fix
			env(id(21), "event", errorEvent("KeyError", "serve", "shop@1.2.0", "production", "u4", "error", base.Add(6*time.Minute))),   // regresses
			env(id(22), "event", errorEvent("KeyError", "serve", "shop@1.2.0", "production", "u5", "error", base.Add(4*time.Minute))),   // then joins
			env(id(23), "event", errorEvent("ValueError", "serve", "shop@1.1.0", "production", "u1", "error", base.Add(7*time.Minute))), // same release: stays resolved
			env(id(24), "event", `{"level":"error","message":"disk full","release":"shop@1.0.0","fingerprint":["disk"]}`),
		}
		resolve := func(s *Service) {
			for _, r := range []struct {
				title   string
				status  errortrackv1.IssueStatus
				release string
			}{
				{"KeyError", errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED, "shop@1.1.0"},
				{"ValueError", errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED_IN_NEXT_RELEASE, "shop@1.1.0"},
			} {
				res, err := s.db.ExecContext(ctx, `UPDATE issues SET status = $1, resolved_in_release = $2, resolved_at = 1 WHERE title LIKE $3`, int32(r.status), r.release, r.title+"%")
				if err != nil {
					t.Fatal(err)
				}
				if n, _ := res.RowsAffected(); n != 1 {
					t.Fatalf("resolving %s: %d issues, want 1", r.title, n)
				}
			}
		}
		compare := func(stage string) {
			t.Helper()
			for _, table := range []string{"issues", "issue_hashes", "issue_users", "issue_releases", "events", "releases", "attachments", "sessions", "counters", "release_counts"} {
				want, got := dumpTable(t, one.db, table), dumpTable(t, batched.db, table)
				if !slices.Equal(got, want) {
					t.Errorf("%s, %s stored in batches:\n  %s\none by one:\n  %s", stage, table, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
				}
			}
			if want, got := outboxEvents(t, one.db), outboxEvents(t, batched.db); !slices.Equal(got, want) {
				t.Errorf("%s, outbox in batches:\n  %s\none by one:\n  %s", stage, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		}
		for _, ev := range phase1 {
			if err := one.ob.InTx(ctx, func(tx *bus.Tx) error { return one.handleEnvelope(ctx, tx, ev) }); err != nil {
				t.Fatalf("one by one: %v", err)
			}
		}
		// Batches of 1, 3, 4 and the rest.
		for _, chunk := range [][]bus.Event{phase1[:1], phase1[1:4], phase1[4:8], phase1[8:]} {
			if err := batched.ob.InTx(ctx, func(tx *bus.Tx) error { return batched.handleEnvelopes(ctx, tx, chunk) }); err != nil {
				t.Fatalf("batched: %v", err)
			}
		}
		compare("after the first part")
		resolve(one)
		resolve(batched)
		for _, ev := range phase2 {
			if err := one.ob.InTx(ctx, func(tx *bus.Tx) error { return one.handleEnvelope(ctx, tx, ev) }); err != nil {
				t.Fatalf("one by one: %v", err)
			}
		}
		if err := batched.ob.InTx(ctx, func(tx *bus.Tx) error { return batched.handleEnvelopes(ctx, tx, phase2) }); err != nil {
			t.Fatalf("batched: %v", err)
		}
		compare("after the second part")
		// And what a user sees: the KeyError issue regressed, once.
		var status, regressed, seen int64
		if err := batched.db.QueryRowContext(ctx, `SELECT status, regressed, times_seen FROM issues WHERE title LIKE 'KeyError%'`).Scan(&status, &regressed, &seen); err != nil {
			t.Fatal(err)
		}
		if errortrackv1.IssueStatus(status) != errortrackv1.IssueStatus_ISSUE_STATUS_UNRESOLVED || regressed != 1 || seen != 8 {
			t.Errorf("KeyError issue: status %v, regressed %d, seen %d; want unresolved, regressed once, seen 8 times", errortrackv1.IssueStatus(status), regressed, seen)
		}
	})
}

// bareService is the service without its consumers running: the test calls
// the handlers itself.
func bareService(t *testing.T, db *store.DB, b *bus.Bus) *Service {
	t.Helper()
	s, err := New(t.Context(), Config{DB: db, Bus: b})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dumpTable lists a table's rows as text, sorted.
func dumpTable(t *testing.T, db *store.DB, table string) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT * FROM `+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		parts := make([]string, len(cols))
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			parts[i] = fmt.Sprintf("%s=%v", cols[i], v)
		}
		out = append(out, strings.Join(parts, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// outboxEvents lists the outbox's events in order: subject and payload.
func outboxEvents(t *testing.T, db *store.DB) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT subject, data FROM bus_outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var subject string
		var data []byte
		if err := rows.Scan(&subject, &data); err != nil {
			t.Fatal(err)
		}
		out = append(out, subject+" "+hex.EncodeToString(data))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkStoreEnvelopes stores the captured sentry-go error envelope,
// each with its own event id (one issue), 256 to a transaction as the
// ingest consumer does: in one handleEnvelopes call, or one handleEnvelope
// call each. It measures the storage side alone, without HTTP or NATS.
func BenchmarkStoreEnvelopes(b *testing.B) {
	tmpl, err := os.ReadFile("../../../shared/testdata/sentry/captured/sentry-go-0.50.0/01_error_chained.envelope")
	if err != nil {
		testfixture.Missing(b, "shared Sentry fixtures: %v", err)
	}
	for _, engine := range []store.Engine{store.SQLite, store.Postgres} {
		for _, batched := range []bool{true, false} {
			name := string(engine) + "/one-by-one"
			if batched {
				name = string(engine) + "/batched"
			}
			b.Run(name, func(b *testing.B) {
				var db *store.DB
				if engine == store.Postgres {
					db = storetest.OpenPostgres(b, "errortrack")
				} else {
					db = storetest.OpenSQLite(b, "errortrack")
				}
				bs := bustest.Start(b, bus.Options{Source: "/bench"})
				ctx := context.Background()
				s, err := New(ctx, Config{DB: db, Bus: bs})
				if err != nil {
					b.Fatal(err)
				}
				resp, err := (&grpcServer{s: s}).CreateProject(ctx, &errortrackv1.CreateProjectRequest{Name: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				const batch = 256
				n := 0
				next := func() []bus.Event {
					evs := make([]bus.Event, batch)
					for i := range evs {
						n++
						body := bytes.ReplaceAll(tmpl, []byte("ebc4a82cdbc040f0a88539b6acca6edf"), fmt.Appendf(nil, "%032x", n))
						evs[i] = bus.NewEvent("errortrack.envelope", "", "", &errortrackv1.IngestedEnvelope{
							ProjectId: resp.GetProject().GetId(), Body: body, ReceivedAt: timestamppb.Now(),
						})
					}
					return evs
				}
				batches := make([][]bus.Event, b.N)
				for i := range batches {
					batches[i] = next()
				}
				b.ResetTimer()
				for _, evs := range batches {
					err := s.ob.InTx(ctx, func(tx *bus.Tx) error {
						if batched {
							return s.handleEnvelopes(ctx, tx, evs)
						}
						for _, ev := range evs {
							if err := s.handleEnvelope(ctx, tx, ev); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
