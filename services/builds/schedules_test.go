package builds

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/builds/pipeline"
)

// scheduledFile's schedule fires on 29 February only, so the scheduler
// running on the real clock never fires during the test; the test fires
// it with fireDue and a fake now.
const scheduledFile = `schedules:
  - name: nightly
    cron: "0 3 29 2 *"
    timezone: Europe/Paris
steps:
  all: {commands: make}
  long: {commands: make long, when: {event: [cron], cron: [nightly]}}
`

// waitBuildOfChange waits for the build of a change, finished or not.
func waitBuildOfChange(t *testing.T, db *store.DB, changeID string) (id, trigger string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if err := db.QueryRowContext(context.Background(), `SELECT id, trigger FROM builds WHERE change_id = $1`, changeID).Scan(&id, &trigger); err == nil {
			return id, trigger
		}
		if time.Now().After(deadline) {
			t.Fatalf("no build for change %s", changeID)
		}
	}
}

func countRows(t *testing.T, db *store.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestScheduledPipelines: a push of the default branch stores the file's
// schedules; at a slot exactly one build of the branch head is created,
// with the event cron (and the steps that ask for it), however many
// replicas try and however often the scheduler restarts; a paused schedule
// does not fire; after a long time down only the latest slot fires.
func TestScheduledPipelines(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		dir, sha := gitRepo(t, map[string]string{".shiploop.yml": scheduledFile})
		if _, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/cron", CloneUrl: dir}); err != nil {
			t.Fatal(err)
		}
		push, err := h.svc.acceptChange(ctx, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "github", DeliveryId: "cron-1",
			Repository: "acme/cron", CloneUrl: dir, Ref: "refs/heads/main", Branch: "main", After: sha})
		if err != nil {
			t.Fatal(err)
		}
		if _, trigger := waitBuildOfChange(t, db, push.EventID); trigger != "push" {
			t.Fatalf("push build trigger %q", trigger)
		}
		ls, err := h.api.ListSchedules(ctx, &buildsv1.ListSchedulesRequest{Repository: "acme/cron"})
		if err != nil || len(ls.GetSchedules()) != 1 {
			t.Fatalf("ListSchedules = %v, %v", ls, err)
		}
		sc := ls.GetSchedules()[0]
		if sc.GetName() != "nightly" || sc.GetCron() != "0 3 29 2 *" || sc.GetTimezone() != "Europe/Paris" || sc.GetPaused() || sc.GetNextRun() == nil {
			t.Fatalf("schedule %v", sc)
		}
		paris, _ := time.LoadLocation("Europe/Paris")
		cron, _ := pipeline.ParseCron("0 3 29 2 *")
		slot := sc.GetNextRun().AsTime().In(paris)
		if want := cron.Next(time.Now().In(paris)); !slot.Equal(want) || slot.Hour() != 3 {
			t.Fatalf("next run %s, want %s", slot, want)
		}

		// Two replicas on one database (and a third instance started at
		// the slot, as after a restart) fire the slot once.
		replica := func() *Service {
			svc, err := New(ctx, Config{DB: storetest.Reopen(t, db), Bus: h.bus, DataDir: t.TempDir(), AllowedTransports: "https,ssh,git,file"})
			if err != nil {
				t.Fatal(err)
			}
			return svc
		}
		now := slot.Add(20 * time.Second)
		instances := []*Service{h.svc, replica()}
		var mu sync.Mutex
		var wg sync.WaitGroup
		total := 0
		for _, svc := range instances {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := svc.fireDue(ctx, now)
				if err != nil {
					t.Errorf("fireDue: %v", err)
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}()
		}
		wg.Wait()
		if total != 1 {
			t.Fatalf("replicas fired %d times for one slot", total)
		}
		for _, svc := range []*Service{replica(), h.svc} {
			if n, err := svc.fireDue(ctx, now.Add(30*time.Second)); err != nil || n != 0 {
				t.Fatalf("a restarted scheduler fired again: %d, %v", n, err)
			}
		}
		if n := countRows(t, db, `SELECT COUNT(*) FROM schedule_runs WHERE repository = 'acme/cron' AND schedule = 'nightly' AND slot = $1`, slot.UnixNano()); n != 1 {
			t.Fatalf("%d runs recorded for the slot", n)
		}
		ls, _ = h.api.ListSchedules(ctx, &buildsv1.ListSchedulesRequest{})
		sc = ls.GetSchedules()[0]
		if !sc.GetLastRun().AsTime().Equal(slot) || sc.GetLastEventId() == "" {
			t.Fatalf("after firing: %v", sc)
		}
		id, trigger := waitBuildOfChange(t, db, sc.GetLastEventId())
		if trigger != "cron" {
			t.Errorf("scheduled build trigger %q, want cron", trigger)
		}
		b, err := h.api.GetBuild(ctx, &buildsv1.GetBuildRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		var steps []string
		for _, st := range b.GetBuild().GetSteps() {
			steps = append(steps, st.GetName())
		}
		if b.GetBuild().GetCommit() != sha || b.GetBuild().GetRef() != "refs/heads/main" || !slices.Contains(steps, "long") || !slices.Contains(steps, "all") {
			t.Errorf("scheduled build %s of %s, steps %v", b.GetBuild().GetCommit(), b.GetBuild().GetRef(), steps)
		}
		if n := countRows(t, db, `SELECT COUNT(*) FROM builds WHERE repository = 'acme/cron' AND trigger = 'cron'`); n != 1 {
			t.Errorf("%d cron builds, want 1", n)
		}

		// Paused: the next slot passes without a build.
		slot2 := cron.Next(slot)
		if _, err := h.api.SetSchedulePaused(ctx, &buildsv1.SetSchedulePausedRequest{Repository: "acme/cron", Name: "nightly", Paused: true}); err != nil {
			t.Fatal(err)
		}
		if n, err := h.svc.fireDue(ctx, slot2.Add(time.Minute)); err != nil || n != 0 {
			t.Fatalf("a paused schedule fired: %d, %v", n, err)
		}
		if _, err := h.api.SetSchedulePaused(ctx, &buildsv1.SetSchedulePausedRequest{Repository: "acme/cron", Name: "nope", Paused: true}); err == nil {
			t.Error("pausing an unknown schedule succeeded")
		}
		resumed, err := h.api.SetSchedulePaused(ctx, &buildsv1.SetSchedulePausedRequest{Repository: "acme/cron", Name: "nightly", Paused: false})
		if err != nil || resumed.GetSchedule().GetPaused() {
			t.Fatalf("resume: %v, %v", resumed, err)
		}

		// Down for three slots: the latest fires, once; no backlog.
		slot3 := cron.Next(cron.Next(slot2))
		if n, err := h.svc.fireDue(ctx, slot3.Add(48*time.Hour)); err != nil || n != 1 {
			t.Fatalf("after a long time down: fired %d, %v", n, err)
		}
		var last int64
		if err := db.QueryRowContext(ctx, `SELECT MAX(slot) FROM schedule_runs WHERE repository = 'acme/cron'`).Scan(&last); err != nil || last != slot3.UnixNano() {
			t.Errorf("latest slot fired %d, want %s (%v)", last, slot3, err)
		}
		if n := countRows(t, db, `SELECT COUNT(*) FROM schedule_runs WHERE repository = 'acme/cron'`); n != 2 {
			t.Errorf("%d slots fired, want 2", n)
		}
	})
}

// TestScheduledRunbook: a schedule that names a runbook publishes
// runbook.requested at its slot (once, whatever the replicas), with the
// runbook, environment and options of the file, and builds nothing.
func TestScheduledRunbook(t *testing.T) {
	const file = `schedules:
  - name: refresh
    cron: "0 3 29 2 *"
    runbook: refresh-staging
    environment: staging
    options: {rows: 100}
environments:
  - {name: staging, steps: [{name: d, commands: [x]}]}
runbooks:
  - name: refresh-staging
    options: [{name: rows, type: int}]
    steps: [{name: copy, commands: [x]}]
steps:
  all: {commands: make}
`
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		dir, sha := gitRepo(t, map[string]string{".shiploop.yml": file})
		if _, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/rb", CloneUrl: dir}); err != nil {
			t.Fatal(err)
		}
		push, err := h.svc.acceptChange(ctx, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "github", DeliveryId: "rb-1",
			Repository: "acme/rb", CloneUrl: dir, Ref: "refs/heads/main", Branch: "main", After: sha})
		if err != nil {
			t.Fatal(err)
		}
		waitBuildOfChange(t, db, push.EventID)
		ls, err := h.api.ListSchedules(ctx, &buildsv1.ListSchedulesRequest{Repository: "acme/rb"})
		if err != nil || len(ls.GetSchedules()) != 1 {
			t.Fatalf("ListSchedules = %v, %v", ls, err)
		}
		sc := ls.GetSchedules()[0]
		if sc.GetRunbook() != "refresh-staging" || sc.GetEnvironment() != "staging" || sc.GetOptions()["rows"] != "100" {
			t.Fatalf("schedule %v", sc)
		}
		slot := sc.GetNextRun().AsTime()
		replica, err := New(ctx, Config{DB: storetest.Reopen(t, db), Bus: h.bus, DataDir: t.TempDir(), AllowedTransports: "https,ssh,git,file"})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		total := 0
		for _, svc := range []*Service{h.svc, replica} {
			wg.Go(func() {
				n, err := svc.fireDue(ctx, slot.Add(time.Second))
				if err != nil {
					t.Errorf("fireDue: %v", err)
				}
				mu.Lock()
				total += n
				mu.Unlock()
			})
		}
		wg.Wait()
		if total != 1 {
			t.Fatalf("fired %d times for one slot", total)
		}
		var got []*eventsv1.RunbookRequested
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = h.bus.Watch(wctx, bus.WatchOptions{Filters: []string{bus.EventFilter("runbook.requested", "")}, FromStart: true}, func(ev bus.Event) error {
			if d, ok := ev.Data.(*eventsv1.RunbookRequested); ok && d.GetRepository() == "acme/rb" {
				got = append(got, d)
				if ev.ChainID != ev.ID {
					t.Errorf("runbook.requested chain %q, want its own id %q", ev.ChainID, ev.ID)
				}
			}
			if len(got) == 1 {
				time.AfterFunc(500*time.Millisecond, cancel) // a second would come right after
			}
			return nil
		})
		if len(got) != 1 {
			t.Fatalf("%d runbook.requested events, want 1", len(got))
		}
		d := got[0]
		if d.GetRunbook() != "refresh-staging" || d.GetEnvironment() != "staging" || d.GetOptions()["rows"] != "100" || d.GetSchedule() != "refresh" || !d.GetSlot().AsTime().Equal(slot) {
			t.Errorf("runbook.requested %v", d)
		}
		if n := countRows(t, db, `SELECT COUNT(*) FROM builds WHERE repository = 'acme/rb' AND trigger = 'cron'`); n != 0 {
			t.Errorf("%d cron builds for a runbook schedule, want 0", n)
		}
	})
}
