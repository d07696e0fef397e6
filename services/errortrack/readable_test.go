package errortrack

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// readableEvent is a Python-SDK-shaped error with a chained exception,
// context lines, tags, user, breadcrumbs and a request with credentials.
const readableEvent = `{"event_id":"%s","release":"1.1.0","environment":"production","level":"error","platform":"python",
"timestamp":"2026-12-01T10:00:00Z","server_name":"web-1","tags":{"region":"eu"},
"user":{"id":"42","email":"ann@example.com","ip_address":"10.0.0.1","plan":"pro"},
"breadcrumbs":{"values":[{"timestamp":1764583190.5,"category":"http","level":"info","message":"GET /api/cart","data":{"status_code":200}}]},
"request":{"method":"POST","url":"https://shop.example/api/cart","headers":{"Content-Type":"application/json","Cookie":"session=secret","Authorization":"Bearer t0ken"},"cookies":"session=secret"},
"exception":{"values":[
 {"type":"KeyError","value":"'sku'","stacktrace":{"frames":[{"filename":"app/cart.py","abs_path":"/srv/app/cart.py","function":"lookup","lineno":10,"in_app":true,
   "pre_context":["def lookup(items):","    # find it"],"context_line":"    return items['sku']","post_context":["",""]}]}},
 {"type":"ValueError","value":"bad cart","mechanism":{"type":"django","handled":false},"stacktrace":{"frames":[
   {"filename":"django/core/handlers.py","abs_path":"/usr/lib/python3/site-packages/django/core/handlers.py","function":"inner","lineno":55,"in_app":false},
   {"filename":"app/views.py","abs_path":"/srv/app/views.py","function":"checkout","lineno":27,"in_app":true,
    "pre_context":["def checkout(request):"],"context_line":"    total = cart.total()","post_context":["    return total"]}]}}]}}`

// TestEventsReadable: GetEvent answers by event id with what Sentry's issue
// page shows (the exception chain with in-app and system frames, context
// lines, tags, user, breadcrumbs, the request without cookies or
// authorization); an issue keeps its first event's title; ListReleases
// counts errors, transactions and sessions apart, per environment, and
// lists transactions by name with p50/p95; ListTransactions filters by release.
func TestEventsReadable(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		p, k := h.project("shop", 0)
		path := fmt.Sprintf("/api/%d/envelope/?sentry_key=%s", p.GetId(), k.GetPublicKey())
		send := func(id, itemType, payload string) {
			t.Helper()
			body := fmt.Sprintf("{\"event_id\":%q}\n{\"type\":%q}\n%s\n", id, itemType, strings.ReplaceAll(payload, "\n", ""))
			if r, b := h.post(path, "", nil, []byte(body)); r.StatusCode != 200 {
				t.Fatalf("envelope %s: %d %s", id, r.StatusCode, b)
			}
		}
		first := fmt.Sprintf("%032x", 1)
		send(first, "event", fmt.Sprintf(readableEvent, first))
		// Same frames, another message: the same issue, its title stays.
		second := fmt.Sprintf("%032x", 2)
		send(second, "event", strings.Replace(fmt.Sprintf(readableEvent, second), "bad cart", "bad cart again", 1))
		for i, d := range []float64{0.1, 0.2, 0.3, 0.4, 2.0} {
			send(fmt.Sprintf("%032x", 10+i), "transaction", fmt.Sprintf(`{"type":"transaction","transaction":"POST /api/cart","release":"1.1.0","environment":"production",
"start_timestamp":1764583200,"timestamp":%g,"contexts":{"trace":{"trace_id":"%032x","span_id":"%016x"}}}`, 1764583200+d, i, i))
		}
		send(fmt.Sprintf("%032x", 20), "session", `{"sid":"s1","status":"exited","started":"2026-12-01T10:00:00Z","attrs":{"release":"1.1.0","environment":"staging"}}`)
		issues := h.waitIssues("shop", "one issue seen twice", func(is []*errortrackv1.Issue) bool { return len(is) == 1 && is[0].GetTimesSeen() == 2 })
		if got := issues[0].GetTitle(); got != "ValueError: bad cart" {
			t.Errorf("title = %q, want the first event's", got)
		}
		// A second issue numbers after the first, whatever its SDK timestamp.
		send(fmt.Sprintf("%032x", 3), "event", `{"timestamp":"2020-01-01T00:00:00Z","message":"another","level":"error","release":"1.1.0"}`)
		issues = h.waitIssues("shop", "two issues", func(is []*errortrackv1.Issue) bool { return len(is) == 2 })
		shorts := map[string]string{}
		for _, is := range issues {
			shorts[is.GetTitle()] = is.GetShortId()
		}
		if shorts["ValueError: bad cart"] != "SHOP-1" || shorts["another"] != "SHOP-2" {
			t.Errorf("short ids = %v, want SHOP-1 then SHOP-2 in arrival order", shorts)
		}
		for _, is := range issues {
			if is.GetTitle() != "another" {
				issues = []*errortrackv1.Issue{is}
			}
		}
		resp, err := h.api.GetEvent(ctx, &errortrackv1.GetEventRequest{EventId: "00000000-0000-0000-0000-000000000001"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetIssue().GetId() != issues[0].GetId() || resp.GetEvent().GetEventId() != first {
			t.Errorf("GetEvent = event %s issue %d", resp.GetEvent().GetEventId(), resp.GetIssue().GetId())
		}
		d := resp.GetEvent().GetDetail()
		if len(d.GetExceptions()) != 2 || d.GetExceptions()[1].GetType() != "ValueError" || !d.GetExceptions()[1].GetUnhandled() || d.GetExceptions()[1].GetMechanism() != "django" {
			t.Fatalf("exceptions = %v", d.GetExceptions())
		}
		f := d.GetExceptions()[1].GetFrames()[1]
		if !f.GetInApp() || f.GetLineno() != 27 || f.GetContextLine() != "    total = cart.total()" || len(f.GetPreContext()) != 1 || f.GetPostContext()[0] != "    return total" {
			t.Errorf("frame = %v", f)
		}
		if d.GetExceptions()[1].GetFrames()[0].GetInApp() {
			t.Errorf("django frame in app")
		}
		kv := func(l []*errortrackv1.KeyValue) string {
			var s []string
			for _, x := range l {
				s = append(s, x.GetKey()+"="+x.GetValue())
			}
			return strings.Join(s, " ")
		}
		if got := kv(d.GetTags()); got != "environment=production level=error region=eu release=1.1.0 server_name=web-1" {
			t.Errorf("tags = %s", got)
		}
		if u := d.GetUser(); u.GetId() != "42" || u.GetEmail() != "ann@example.com" || kv(u.GetData()) != "plan=pro" {
			t.Errorf("user = %v", u)
		}
		if b := d.GetBreadcrumbs(); len(b) != 1 || b[0].GetMessage() != "GET /api/cart" || kv(b[0].GetData()) != "status_code=200" || b[0].GetTimestamp().AsTime().Unix() != 1764583190 {
			t.Errorf("breadcrumbs = %v", b)
		}
		if r := d.GetRequest(); r.GetMethod() != "POST" || r.GetUrl() != "https://shop.example/api/cart" || kv(r.GetHeaders()) != "Content-Type=application/json" {
			t.Errorf("request = %v", r)
		}
		if _, err := h.api.GetEvent(ctx, &errortrackv1.GetEventRequest{EventId: fmt.Sprintf("%032x", 99)}); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("unknown event: %v", err)
		}
		evs, err := h.api.ListIssueEvents(ctx, &errortrackv1.ListIssueEventsRequest{IssueId: issues[0].GetId()})
		if err != nil || len(evs.GetEvents()) != 2 || len(evs.GetEvents()[0].GetDetail().GetExceptions()) != 2 {
			t.Errorf("ListIssueEvents = %v, %v", evs, err)
		}

		var rel *errortrackv1.Release
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			rs, err := h.api.ListReleases(ctx, &errortrackv1.ListReleasesRequest{Project: "shop"})
			if err != nil {
				t.Fatal(err)
			}
			if len(rs.GetReleases()) == 1 && rs.GetReleases()[0].GetTransactions() == 5 && rs.GetReleases()[0].GetSessions() == 1 {
				rel = rs.GetReleases()[0]
				break
			}
		}
		if rel == nil {
			t.Fatal("release 1.1.0 with 5 transactions and a session: not within 20s")
		}
		if rel.GetEvents() != 3 || rel.GetErrors() != 3 {
			t.Errorf("release events=%d errors=%d, want 3 and 3 (transactions apart)", rel.GetEvents(), rel.GetErrors())
		}
		var envs []string
		for _, e := range rel.GetHealth() {
			envs = append(envs, fmt.Sprintf("%s:e%d/t%d/s%d/%.0f%%", e.GetEnvironment(), e.GetErrors(), e.GetTransactions(), e.GetSessions(), 100*e.GetCrashFreeRate()))
		}
		if got := strings.Join(envs, " "); got != "staging:e0/t0/s1/100% production:e3/t5/s0/100%" {
			t.Errorf("health = %s", got)
		}
		if tn := rel.GetTransactionNames(); len(tn) != 1 || tn[0].GetName() != "POST /api/cart" || tn[0].GetCount() != 5 || tn[0].GetP50Ms() != 300 || tn[0].GetP95Ms() != 2000 {
			t.Errorf("transactions = %v", tn)
		}
		tr, err := h.api.ListTransactions(ctx, &errortrackv1.ListTransactionsRequest{Project: "shop", Release: "9.9"})
		if err != nil || len(tr.GetTransactions()) != 0 {
			t.Errorf("ListTransactions(9.9) = %v, %v", tr, err)
		}
	})
}

// TestSuspectCommitsFromPushes: with no upload at all, an issue opened in a
// release shiploop deployed names the commits pushed between the previous
// deploy's commit and this one that touched its in-app files, the
// innermost frame's first, with authors; commits before the previous
// deploy and commits touching other files are not suspects. The
// issue.opened event carries them.
func TestSuspectCommitsFromPushes(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		p, k := h.project("shop", 0)
		if _, err := h.api.UpdateProject(ctx, &errortrackv1.UpdateProjectRequest{Project: "shop", Repository: "acme/shop"}); err != nil {
			t.Fatal(err)
		}
		push := func(before, after string, commits ...*eventsv1.Commit) {
			t.Helper()
			if err := h.bus.Publish(ctx, bus.NewEvent("change.pushed", "acme/shop", after, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH,
				Repository: "acme/shop", Before: before, After: after, Commits: commits})); err != nil {
				t.Fatal(err)
			}
		}
		deploy := func(release, commit string, at time.Time) {
			t.Helper()
			if err := h.bus.Publish(ctx, bus.NewEvent("deploy.started", "acme/shop", "d-"+release, &eventsv1.DeployStarted{
				Deploy:    &eventsv1.DeployRef{DeployId: "d-" + release, Repository: "acme/shop", Environment: "production", Release: release, Commit: commit, Kind: "deploy"},
				StartedAt: timestamppb.New(at)})); err != nil {
				t.Fatal(err)
			}
		}
		push("0000000", "a0", &eventsv1.Commit{Sha: "a0", Message: "old cart work", AuthorName: "Old", Modified: []string{"app/views.py"}})
		deploy("1.0.0", "a0", time.Now().Add(-2*time.Hour))
		push("a0", "b2",
			&eventsv1.Commit{Sha: "b1", Message: "touch views\n\nlong body", AuthorName: "Bo", AuthorEmail: "bo@example.com", Modified: []string{"app/views.py"}},
			&eventsv1.Commit{Sha: "b2", Message: "docs", AuthorName: "Cy", Modified: []string{"README.md"}})
		push("b2", "c1", &eventsv1.Commit{Sha: "c1", Message: "cart lookup", AuthorName: "Di", Added: []string{"app/cart.py"}})
		deploy("1.1.0", "c1", time.Now().Add(-time.Hour))
		for deadline := time.Now().Add(20 * time.Second); h.count(`SELECT COUNT(*) FROM deploys`) != 2 || h.count(`SELECT COUNT(*) FROM pushes`) != 3; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("deploys and pushes not recorded within 20s")
			}
		}
		id := fmt.Sprintf("%032x", 1)
		body := fmt.Sprintf("{\"event_id\":%q}\n{\"type\":\"event\"}\n%s\n", id, strings.ReplaceAll(fmt.Sprintf(readableEvent, id), "\n", ""))
		if r, b := h.post(fmt.Sprintf("/api/%d/envelope/?sentry_key=%s", p.GetId(), k.GetPublicKey()), "", nil, []byte(body)); r.StatusCode != 200 {
			t.Fatalf("envelope: %d %s", r.StatusCode, b)
		}
		issues := h.waitIssues("shop", "one issue", func(is []*errortrackv1.Issue) bool { return len(is) == 1 })
		got, err := h.api.GetIssue(ctx, &errortrackv1.GetIssueRequest{Id: issues[0].GetId()})
		if err != nil {
			t.Fatal(err)
		}
		show := func(cs []*errortrackv1.SuspectCommit) string {
			var s []string
			for _, c := range cs {
				s = append(s, c.GetSha()+"("+c.GetAuthor()+";"+strings.Join(c.GetMatchedFiles(), ",")+")")
			}
			return strings.Join(s, " ")
		}
		// views.py is the raised exception's innermost in-app frame: b1 first.
		want := "b1(Bo <bo@example.com>;app/views.py) c1(Di;app/cart.py)"
		if s := show(got.GetIssue().GetSuspectCommits()); s != want {
			t.Errorf("suspect commits = %s, want %s", s, want)
		}
		var opened string
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_ = h.bus.Watch(wctx, bus.WatchOptions{FromStart: true, Filters: []string{"shiploop.evt.errortrack.issue.>"}}, func(ev bus.Event) error {
			if o, ok := ev.Data.(*errortrackv1.IssueOpened); ok {
				opened = show(o.GetSuspectCommits())
				return io.EOF
			}
			return nil
		})
		if opened != want {
			t.Errorf("issue.opened suspect commits = %s, want %s", opened, want)
		}
	})
}
