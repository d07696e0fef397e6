package errortrack

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// TestReleaseCounted: what each release sends from each environment is
// published as errortrack.release.counted — error events (not info
// messages), transactions, sessions when they start — with the project's
// repository; a redelivered event and a session's update are not counted
// again, and items without a release are left out.
func TestReleaseCounted(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		resp, err := h.api.CreateProject(ctx, &errortrackv1.CreateProjectRequest{Name: "shop", Repository: "acme/shop"})
		if err != nil {
			t.Fatal(err)
		}
		path := fmt.Sprintf("/api/%d/envelope/?sentry_key=%s", resp.GetProject().GetId(), resp.GetKey().GetPublicKey())
		send := func(id, itemType, payload string) {
			t.Helper()
			body := fmt.Sprintf("{\"event_id\":%q}\n{\"type\":%q}\n%s\n", id, itemType, payload)
			if r, b := h.post(path, "", nil, []byte(body)); r.StatusCode != 200 {
				t.Fatalf("envelope %s: %d %s", id, r.StatusCode, b)
			}
		}
		type key struct{ release, env string }
		want := map[key][3]int64{ // errors, transactions, sessions
			{"shop@2.0.0", "production"}: {2, 1, 4},
			{"shop@1.9.0", "production"}: {1, 0, 0},
			{"shop@2.0.0", "staging"}:    {0, 0, 1},
		}
		send("e0000000000000000000000000000001", "event", `{"release":"shop@2.0.0","environment":"production","exception":{"values":[{"type":"KeyError","value":"a"}]}}`)
		send("e0000000000000000000000000000001", "event", `{"release":"shop@2.0.0","environment":"production","exception":{"values":[{"type":"KeyError","value":"a"}]}}`)
		send("e0000000000000000000000000000002", "event", `{"release":"shop@2.0.0","environment":"production","level":"fatal","message":"out of memory"}`)
		send("e0000000000000000000000000000003", "event", `{"release":"shop@2.0.0","environment":"production","level":"info","message":"user signed up"}`)
		send("e0000000000000000000000000000004", "transaction", `{"type":"transaction","transaction":"/cart","release":"shop@2.0.0","environment":"production","start_timestamp":1700000000,"timestamp":1700000001}`)
		send("e0000000000000000000000000000005", "event", `{"release":"shop@1.9.0","message":"boom"}`) // environment defaults to production
		send("e0000000000000000000000000000006", "event", `{"message":"no release"}`)
		send("", "session", `{"sid":"s1","status":"ok","attrs":{"release":"shop@2.0.0","environment":"production"}}`)
		send("", "session", `{"sid":"s1","status":"exited","attrs":{"release":"shop@2.0.0","environment":"production"}}`)
		send("", "session", `{"sid":"s2","status":"ok","attrs":{"release":"shop@2.0.0","environment":"staging"}}`)
		send("", "sessions", `{"aggregates":[{"started":"2024-01-01T00:00:00Z","exited":2,"errored":1}],"attrs":{"release":"shop@2.0.0","environment":"production"}}`)

		var mu sync.Mutex
		got := map[key][3]int64{}
		snapshot := func() string {
			mu.Lock()
			defer mu.Unlock()
			return fmt.Sprint(got)
		}
		wctx, cancel := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			_ = h.bus.Watch(wctx, bus.WatchOptions{FromStart: true, Filters: []string{"shiploop.evt.errortrack.release.>"}}, func(ev bus.Event) error {
				c := ev.Data.(*errortrackv1.ReleaseCounted)
				if ev.Type != "errortrack.release.counted" || ev.Repository != "acme/shop" || c.GetProject() != "shop" || c.GetProjectId() != resp.GetProject().GetId() {
					t.Errorf("%s for repository %q: %v", ev.Type, ev.Repository, c)
				}
				if !c.GetLastReceived().AsTime().After(time.Now().Add(-time.Minute)) || c.GetFirstReceived().AsTime().After(c.GetLastReceived().AsTime()) {
					t.Errorf("received %v..%v", c.GetFirstReceived().AsTime(), c.GetLastReceived().AsTime())
				}
				mu.Lock()
				defer mu.Unlock()
				k := key{c.GetRelease(), c.GetEnvironment()}
				v := got[k]
				got[k] = [3]int64{v[0] + c.GetErrors(), v[1] + c.GetTransactions(), v[2] + c.GetSessions()}
				return nil
			})
		}()
		for deadline := time.Now().Add(20 * time.Second); snapshot() != fmt.Sprint(want) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond) // polling what the watch has summed
		}
		time.Sleep(300 * time.Millisecond) // several count intervals: nothing more may come
		cancel()
		<-watched
		if snapshot() != fmt.Sprint(want) {
			t.Errorf("counted (errors, transactions, sessions) %v, want %v", snapshot(), want)
		}
		if n := h.count(`SELECT COUNT(*) FROM release_counts`); n != 0 {
			t.Errorf("%d counts left unpublished", n)
		}
	})
}
