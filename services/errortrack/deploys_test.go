package errortrack

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestDeployEventsRecordReleases: a deploy.started event of the repository
// a project names records the release as running in that environment, once
// even when the event is delivered twice; other repositories' deploys are
// not this project's.
func TestDeployEventsRecordReleases(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		h.project("web", 0)
		if _, err := h.api.UpdateProject(ctx, &errortrackv1.UpdateProjectRequest{Project: "web", Repository: "acme/web"}); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		deploy := func(repo, release string) bus.Event {
			return bus.Event{Type: "deploy.started", Repository: repo, Subject: "d-" + release, Data: &eventsv1.DeployStarted{
				Deploy:    &eventsv1.DeployRef{DeployId: "d-" + release, Repository: repo, Environment: "production", Release: release, Kind: "deploy"},
				StartedAt: timestamppb.New(at),
			}}
		}
		// Another repository's deploy first: once the later one is recorded,
		// the consumer (in stream order) has handled it too.
		if err := h.bus.Publish(ctx, deploy("acme/other", "9.9.9")); err != nil {
			t.Fatal(err)
		}
		ev := deploy("acme/web", "1.4.0")
		ev.ID = bus.NewID()
		for range 2 { // the same event twice
			if err := h.bus.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(20 * time.Second)
		for h.count(`SELECT COUNT(*) FROM deploys WHERE release = '1.4.0' AND environment = 'production'`) != 1 {
			if time.Now().After(deadline) {
				t.Fatal("the deploy was not recorded within 20s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		resp, err := h.api.ListReleases(ctx, &errortrackv1.ListReleasesRequest{Project: "web"})
		if err != nil || len(resp.GetReleases()) != 1 || resp.GetReleases()[0].GetVersion() != "1.4.0" || !resp.GetReleases()[0].GetFirstSeen().AsTime().Equal(at) {
			t.Fatalf("ListReleases = %v, %v", resp.GetReleases(), err)
		}
		if n := h.count(`SELECT COUNT(*) FROM deploys WHERE release = '9.9.9'`); n != 0 {
			t.Errorf("another repository's deploy was recorded %d times", n)
		}
	})
}

// TestReleaseWindow: ListReleases with a window release answers what a
// deploy's verification needs: the release's own errors, transactions and
// sessions in the environment (a package prefix matches), and errors under
// other releases there, per release (an app that reports "dev", an older
// version still serving); other environments and times outside the window
// do not count, nor info messages.
func TestReleaseWindow(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		resp, err := h.api.CreateProject(ctx, &errortrackv1.CreateProjectRequest{Name: "shop", Repository: "acme/shop"})
		if err != nil {
			t.Fatal(err)
		}
		path := fmt.Sprintf("/api/%d/envelope/?sentry_key=%s", resp.GetProject().GetId(), resp.GetKey().GetPublicKey())
		n := 0
		send := func(itemType, payload string) {
			t.Helper()
			n++
			body := fmt.Sprintf("{\"event_id\":\"%032x\"}\n{\"type\":%q}\n%s\n", n, itemType, payload)
			if r, b := h.post(path, "", nil, []byte(body)); r.StatusCode != 200 {
				t.Fatalf("envelope %d: %d %s", n, r.StatusCode, b)
			}
		}
		since := time.Now().Add(-time.Second)
		for range 3 {
			send("event", `{"release":"dev","environment":"production","exception":{"values":[{"type":"ZeroDivisionError","value":"division by zero"}]}}`)
		}
		send("event", `{"release":"shop@0.0.1-dev.2","environment":"production","level":"fatal","message":"old one"}`)
		send("event", `{"release":"dev","environment":"staging","message":"boom"}`)                 // another environment
		send("event", `{"release":"dev","environment":"production","level":"info","message":"hi"}`) // not an error
		ask := func(release string, since, until time.Time) *errortrackv1.ReleaseWindow {
			t.Helper()
			r, err := h.api.ListReleases(ctx, &errortrackv1.ListReleasesRequest{Project: "shop", WindowRelease: release, WindowEnvironment: "production",
				WindowSince: timestamppb.New(since), WindowUntil: timestamppb.New(until)})
			if err != nil {
				t.Fatal(err)
			}
			return r.GetWindow()
		}
		want := "errors=0 transactions=0 sessions=0 other=4 map[dev:3 shop@0.0.1-dev.2:1]"
		show := func(w *errortrackv1.ReleaseWindow) string {
			return fmt.Sprintf("errors=%d transactions=%d sessions=%d other=%d %v", w.GetErrors(), w.GetTransactions(), w.GetSessions(), w.GetOtherErrors(), w.GetOtherReleaseErrors())
		}
		var got string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if got = show(ask("0.0.1-dev.3", since, time.Now().Add(time.Second))); got == want {
				break
			}
		}
		if got != want {
			t.Fatalf("0.0.1-dev.3 window: %s, want %s", got, want)
		}
		if w := ask("0.0.1-dev.3", since.Add(-time.Hour), since); show(w) != "errors=0 transactions=0 sessions=0 other=0 map[]" {
			t.Errorf("before the errors: %s", show(w))
		}

		// The deployed release's own transactions, sessions and an error.
		send("transaction", `{"type":"transaction","transaction":"/cart","release":"shop@0.0.1-dev.3","environment":"production","start_timestamp":1700000000,"timestamp":1700000001}`)
		send("event", `{"release":"shop@0.0.1-dev.3","environment":"production","exception":{"values":[{"type":"KeyError","value":"a"}]}}`)
		send("session", `{"sid":"s1","status":"ok","attrs":{"release":"shop@0.0.1-dev.3","environment":"production"}}`)
		send("session", `{"sid":"s2","status":"ok","attrs":{"release":"shop@0.0.1-dev.3","environment":"staging"}}`)
		want = "errors=1 transactions=1 sessions=1 other=4 map[dev:3 shop@0.0.1-dev.2:1]"
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if got = show(ask("0.0.1-dev.3", since, time.Now().Add(time.Second))); got == want {
				break
			}
		}
		if got != want {
			t.Fatalf("0.0.1-dev.3 window: %s, want %s", got, want)
		}
		if w := ask("dev", since, time.Now().Add(time.Second)); w.GetErrors() != 3 || w.GetOtherErrors() != 2 {
			t.Errorf("dev window: %s", show(w))
		}
		if r, err := h.api.ListReleases(ctx, &errortrackv1.ListReleasesRequest{Project: "shop"}); err != nil || r.GetWindow() != nil {
			t.Errorf("without a window release: %v, %v", r.GetWindow(), err)
		}
	})
}

// TestIssueEventsCarryDeployChain: an issue opened or regressed by errors
// from a release shiploop deployed carries the chain id of the change that
// deployed that release to that environment (an SDK release "web@1.4.0"
// matches the deployed "1.4.0"); one from a release never deployed, or
// deployed only to another environment, has no chain.
func TestIssueEventsCarryDeployChain(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		_, k := h.project("web", 0)
		if _, err := h.api.UpdateProject(ctx, &errortrackv1.UpdateProjectRequest{Project: "web", Repository: "acme/web"}); err != nil {
			t.Fatal(err)
		}
		deploy := func(release, env, chain string) {
			ev := bus.NewEvent("deploy.started", "acme/web", "d-"+release, &eventsv1.DeployStarted{
				Deploy:    &eventsv1.DeployRef{DeployId: "d-" + release + env, Repository: "acme/web", Environment: env, Release: release, Kind: "deploy"},
				StartedAt: timestamppb.New(time.Now().Add(-time.Minute)),
			})
			ev.ChainID = chain
			if err := h.bus.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		deploy("1.4.0", "production", "chain-old")
		deploy("1.4.0", "test", "chain-bad") // newClient reports environment "test"
		deploy("1.5.0", "production", "chain-prod-only")
		deadline := time.Now().Add(20 * time.Second)
		for h.count(`SELECT COUNT(*) FROM deploys`) != 3 {
			if time.Now().After(deadline) {
				t.Fatal("the deploys were not recorded within 20s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, rel := range []string{"web@1.4.0", "web@1.5.0", "web@9.0.0"} {
			hub := newClient(t, k.GetDsn(), rel)
			hub.Scope().SetFingerprint([]string{rel}) // one issue per release
			hub.CaptureMessage("boom in " + rel)
			flush(t, hub)
		}
		want := map[string]string{"web@1.4.0": "chain-bad", "web@1.5.0": "", "web@9.0.0": ""}
		got := map[string]string{}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_ = h.bus.Watch(wctx, bus.WatchOptions{FromStart: true, Filters: []string{"shiploop.evt.errortrack.issue.>"}}, func(ev bus.Event) error {
			if o, ok := ev.Data.(*errortrackv1.IssueOpened); ok {
				got[o.GetRelease()] = ev.ChainID
			}
			if len(got) == len(want) {
				return io.EOF
			}
			return nil
		})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("issue.opened chain ids by release = %v, want %v", got, want)
		}

		// Resolved, then back in the same release: the regression is the
		// deploying change's too.
		issues := h.waitIssues("web", "three issues", func(is []*errortrackv1.Issue) bool { return len(is) == 3 })
		var id int64
		for _, is := range issues {
			if is.GetFirstRelease() == "web@1.4.0" {
				id = is.GetId()
			}
		}
		if _, err := h.api.ResolveIssue(ctx, &errortrackv1.ResolveIssueRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		hub := newClient(t, k.GetDsn(), "web@1.4.0")
		hub.Scope().SetFingerprint([]string{"web@1.4.0"})
		hub.CaptureMessage("boom in web@1.4.0")
		flush(t, hub)
		chain := "(none)"
		wctx2, cancel2 := context.WithTimeout(ctx, 20*time.Second)
		defer cancel2()
		_ = h.bus.Watch(wctx2, bus.WatchOptions{FromStart: true, Filters: []string{"shiploop.evt.errortrack.issue.regressed.>"}}, func(ev bus.Event) error {
			chain = ev.ChainID
			return io.EOF
		})
		if chain != "chain-bad" {
			t.Errorf("issue.regressed chain id = %q, want chain-bad", chain)
		}
	})
}
