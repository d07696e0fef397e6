package errortrack

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/getsentry/sentry-go"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// harness runs errortrack on an embedded NATS, a given store and an
// httptest server for the intake.
type harness struct {
	t   *testing.T
	svc *Service
	bus *bus.Bus
	api *grpcServer
	srv *httptest.Server
}

func newHarness(t *testing.T, db *store.DB) *harness {
	t.Helper()
	b := bustest.Start(t, bus.Options{Source: "/test"})
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, bus: b}
	mux := http.NewServeMux()
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	svc, err := New(ctx, Config{DB: db, Bus: b, PublicURL: func() string { return h.srv.URL }, MaxEnvelopeBytes: 2 << 20, MaxBodyBytes: 1 << 20,
		CountInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	svc.Routes(mux)
	h.svc, h.api = svc, &grpcServer{s: svc}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

func (h *harness) project(name string, rate int64) (*errortrackv1.Project, *errortrackv1.ProjectKey) {
	h.t.Helper()
	resp, err := h.api.CreateProject(context.Background(), &errortrackv1.CreateProjectRequest{Name: name, RateLimitPerMinute: rate})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.GetProject(), resp.GetKey()
}

// waitIssues polls until fn accepts the project's issues.
func (h *harness) waitIssues(project string, what string, fn func([]*errortrackv1.Issue) bool) []*errortrackv1.Issue {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := h.api.ListIssues(context.Background(), &errortrackv1.ListIssuesRequest{Project: project})
		if err == nil && fn(resp.GetIssues()) {
			return resp.GetIssues()
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: not within 20s (last: %v, %v)", what, resp.GetIssues(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) count(q string, args ...any) int64 {
	h.t.Helper()
	var n int64
	if err := h.svc.db.QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) post(path, encoding string, header http.Header, body []byte) (*http.Response, string) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+path, bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func newClient(t *testing.T, dsn, release string) *sentry.Hub {
	t.Helper()
	c, err := sentry.NewClient(sentry.ClientOptions{Dsn: dsn, Release: release, Environment: "test", AttachStacktrace: true})
	if err != nil {
		t.Fatal(err)
	}
	hub := sentry.NewHub(c, sentry.NewScope())
	hub.Scope().SetUser(sentry.User{ID: "u-" + release})
	return hub
}

func flush(t *testing.T, hub *sentry.Hub) {
	t.Helper()
	if !hub.Flush(10 * time.Second) {
		t.Fatal("sentry-go did not flush within 10s")
	}
}

type notFound struct{ id int }

func (e *notFound) Error() string { return fmt.Sprintf("record %d not found", e.id) }

// capture reports the same error from the same place, with a varying value.
func capture(hub *sentry.Hub, id int) {
	hub.CaptureException(fmt.Errorf("loading: %w", &notFound{id}))
}

// TestSentryGoToIssues: the real sentry-go SDK sends through the DSN the
// service printed; events group into issues with counts, users and
// releases; a resolved issue regresses only in a newer release.
func TestSentryGoToIssues(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		p, k := h.project("web", 0)
		if !strings.HasPrefix(k.GetDsn(), "http://"+k.GetPublicKey()+"@127.0.0.1:") || !strings.HasSuffix(k.GetDsn(), fmt.Sprintf("/%d", p.GetId())) {
			t.Fatalf("DSN = %q", k.GetDsn())
		}
		hub := newClient(t, k.GetDsn(), "app@1.0.0")
		capture(hub, 1)
		capture(hub, 2)
		hub.CaptureMessage("cache miss for key 12345")
		hub.CaptureMessage("cache miss for key 67890")
		flush(t, hub)
		issues := h.waitIssues("web", "two issues with four events", func(is []*errortrackv1.Issue) bool {
			var n int64
			for _, i := range is {
				n += i.GetTimesSeen()
			}
			return len(is) == 2 && n == 4
		})
		var errIssue *errortrackv1.Issue
		for _, is := range issues {
			if is.GetType() == "error" {
				errIssue = is
			}
		}
		if errIssue == nil || errIssue.GetTimesSeen() != 2 || errIssue.GetUsers() != 1 || errIssue.GetFirstRelease() != "app@1.0.0" || !strings.Contains(errIssue.GetTitle(), "loading: record 2 not found") && !strings.Contains(errIssue.GetTitle(), "loading: record 1 not found") {
			t.Fatalf("error issue = %v", errIssue)
		}
		evs, err := h.api.ListIssueEvents(ctx, &errortrackv1.ListIssueEventsRequest{IssueId: errIssue.GetId()})
		if err != nil || len(evs.GetEvents()) != 2 || evs.GetEvents()[0].GetRelease() != "app@1.0.0" || !strings.Contains(evs.GetEvents()[0].GetJson(), "notFound") {
			t.Fatalf("events = %v, %v", evs, err)
		}

		// Resolved in the next release: the same and older releases do not reopen it.
		if _, err := h.api.ResolveIssue(ctx, &errortrackv1.ResolveIssueRequest{Id: errIssue.GetId(), InNextRelease: true}); err != nil {
			t.Fatal(err)
		}
		got, _ := h.api.GetIssue(ctx, &errortrackv1.GetIssueRequest{Id: errIssue.GetId()})
		if got.GetIssue().GetStatus() != errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED_IN_NEXT_RELEASE || got.GetIssue().GetResolvedInRelease() != "app@1.0.0" {
			t.Fatalf("resolved issue = %v", got.GetIssue())
		}
		for _, rel := range []string{"app@1.0.0", "app@0.9.0"} {
			old := newClient(t, k.GetDsn(), rel)
			capture(old, 3)
			flush(t, old)
		}
		h.waitIssues("web", "old releases counted", func(is []*errortrackv1.Issue) bool {
			for _, i := range is {
				if i.GetId() == errIssue.GetId() {
					return i.GetTimesSeen() == 4
				}
			}
			return false
		})
		got, _ = h.api.GetIssue(ctx, &errortrackv1.GetIssueRequest{Id: errIssue.GetId()})
		if got.GetIssue().GetStatus() != errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED_IN_NEXT_RELEASE || got.GetIssue().GetRegressed() {
			t.Fatalf("an old release reopened the issue: %v", got.GetIssue())
		}
		// A newer release regresses it, and says so on the bus.
		newer := newClient(t, k.GetDsn(), "app@1.1.0")
		capture(newer, 4)
		flush(t, newer)
		h.waitIssues("web", "regression", func(is []*errortrackv1.Issue) bool {
			for _, i := range is {
				if i.GetId() == errIssue.GetId() {
					return i.GetStatus() == errortrackv1.IssueStatus_ISSUE_STATUS_UNRESOLVED && i.GetRegressed()
				}
			}
			return false
		})
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var types []string
		_ = h.bus.Watch(wctx, bus.WatchOptions{FromStart: true, Filters: []string{"shiploop.evt.errortrack.issue.>"}}, func(ev bus.Event) error {
			types = append(types, ev.Type)
			if ev.Type == "errortrack.issue.regressed" {
				r := ev.Data.(*errortrackv1.IssueRegressed)
				if r.GetRelease() != "app@1.1.0" || r.GetResolvedInRelease() != "app@1.0.0" || r.GetIssue().GetIssueId() != errIssue.GetId() {
					t.Errorf("regressed = %v", r)
				}
				return io.EOF
			}
			return nil
		})
		if strings.Join(types, ",") != "errortrack.issue.opened,errortrack.issue.opened,errortrack.issue.resolved,errortrack.issue.regressed" {
			t.Errorf("events = %v", types)
		}
		// Plain resolve in a release: older releases do not reopen it.
		if _, err := h.api.ResolveIssue(ctx, &errortrackv1.ResolveIssueRequest{Id: errIssue.GetId(), InRelease: "app@1.2.0"}); err != nil {
			t.Fatal(err)
		}
		capture(newer, 5)
		flush(t, newer)
		h.waitIssues("web", "1.1.0 event counted", func(is []*errortrackv1.Issue) bool {
			for _, i := range is {
				if i.GetId() == errIssue.GetId() {
					return i.GetTimesSeen() == 6 && i.GetStatus() == errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED
				}
			}
			return false
		})
	})
}

// TestBadInput: every malformed or unauthorised request gets its status
// and a Sentry-style detail, and nothing of it is stored.
func TestBadInput(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		p, k := h.project("api", 0)
		_, other := h.project("other", 0)
		revoked, _ := h.api.RotateKey(ctx, &errortrackv1.RotateKeyRequest{Project: "api"})
		if _, err := h.api.RevokeKey(ctx, &errortrackv1.RevokeKeyRequest{PublicKey: revoked.GetKey().GetPublicKey()}); err != nil {
			t.Fatal(err)
		}
		pid := p.GetId()
		auth := func(key string) http.Header {
			return http.Header{"X-Sentry-Auth": {"Sentry sentry_version=7, sentry_client=test/1, sentry_key=" + key}}
		}
		good := func(id string) []byte {
			return []byte(`{"event_id":"` + id + `"}` + "\n" + `{"type":"event","length":20}` + "\n" + `{"message":"hello!"}` + "\n")
		}
		var bomb bytes.Buffer
		zw := gzip.NewWriter(&bomb)
		zw.Write(bytes.Repeat([]byte("A"), 64<<20))
		zw.Close()
		envPath := fmt.Sprintf("/api/%d/envelope/", pid)
		cases := []struct {
			name, path, encoding string
			header               http.Header
			body                 []byte
			status               int
			detail               string
		}{
			{"no auth", envPath, "", nil, good("a1000000000000000000000000000001"), 401, "missing authentication"},
			{"unknown key", envPath, "", auth("nope"), good("a1000000000000000000000000000002"), 403, "unknown DSN key"},
			{"revoked key", envPath, "", auth(revoked.GetKey().GetPublicKey()), good("a1000000000000000000000000000003"), 403, "revoked"},
			{"key of another project", envPath, "", auth(other.GetPublicKey()), good("a1000000000000000000000000000004"), 403, "belongs to project"},
			{"project does not exist", "/api/999/envelope/", "", auth(k.GetPublicKey()), good("a1000000000000000000000000000005"), 403, "project 999 does not exist"},
			{"project id not a number", "/api/web/envelope/", "", auth(k.GetPublicKey()), good("a1000000000000000000000000000006"), 400, "not a number"},
			{"conflicting keys", envPath + "?sentry_key=" + other.GetPublicKey(), "", auth(k.GetPublicKey()), good("a1000000000000000000000000000007"), 401, "conflicting keys"},
			{"dsn of another project", envPath, "", auth(k.GetPublicKey()), []byte(`{"dsn":"http://` + k.GetPublicKey() + `@x/5"}` + "\n"), 400, "names project"},
			{"invalid JSON event", envPath, "", auth(k.GetPublicKey()), []byte("{}\n{\"type\":\"event\"}\n{\"message\":\n"), 400, "invalid JSON"},
			{"broken length", envPath, "", auth(k.GetPublicKey()), []byte("{}\n{\"type\":\"event\",\"length\":500}\n{}\n"), 400, "runs past the end"},
			{"broken header", envPath, "", auth(k.GetPublicKey()), []byte("not json\n"), 400, "envelope header"},
			{"gzip bomb", envPath, "gzip", auth(k.GetPublicKey()), bomb.Bytes(), 413, "limit once decompressed"},
			{"oversize body", envPath, "", auth(k.GetPublicKey()), bytes.Repeat([]byte("x"), 3<<20), 413, "limit"},
			{"oversize item", envPath, "", auth(k.GetPublicKey()), []byte("{}\n{\"type\":\"event\"}\n{\"m\":\"" + strings.Repeat("x", 1<<20+10) + "\"}\n"), 413, "over the"},
			{"corrupt gzip", envPath, "gzip", auth(k.GetPublicKey()), []byte("not gzip"), 400, "gzip"},
			{"store: not JSON", fmt.Sprintf("/api/%d/store/", pid), "", auth(k.GetPublicKey()), []byte("!!"), 400, "store body"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				resp, body := h.post(c.path, c.encoding, c.header, c.body)
				if resp.StatusCode != c.status || !strings.Contains(body, c.detail) || !strings.Contains(body, `"detail"`) {
					t.Errorf("%d %s, want %d with %q", resp.StatusCode, body, c.status, c.detail)
				}
				if resp.Header.Get("X-Sentry-Error") == "" {
					t.Errorf("no X-Sentry-Error header")
				}
			})
		}
		// One good request after all the bad ones: it alone is stored.
		resp, body := h.post(envPath, "", auth(k.GetPublicKey()), good("b2000000000000000000000000000001"))
		if resp.StatusCode != 200 || !strings.Contains(body, `"id":"b2000000000000000000000000000001"`) {
			t.Fatalf("good envelope: %d %s", resp.StatusCode, body)
		}
		// The store endpoint, with the key in the query and no trailing slash.
		resp, body = h.post(fmt.Sprintf("/api/%d/store?sentry_key=%s", pid, k.GetPublicKey()), "", nil, []byte(`{"event_id":"c3000000000000000000000000000001","message":"from store"}`))
		if resp.StatusCode != 200 || !strings.Contains(body, "c3000000000000000000000000000001") {
			t.Fatalf("store: %d %s", resp.StatusCode, body)
		}
		h.waitIssues("api", "two issues", func(is []*errortrackv1.Issue) bool { return len(is) == 2 })
		time.Sleep(200 * time.Millisecond) // let anything wrongly queued arrive
		if n := h.count(`SELECT COUNT(*) FROM events`); n != 2 {
			t.Errorf("%d events stored, want 2", n)
		}
	})
}

// TestRateLimit: past its rate a project gets 429 with Retry-After and
// X-Sentry-Rate-Limits naming the categories.
func TestRateLimit(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, "errortrack"))
	p, k := h.project("limited", 2)
	path := fmt.Sprintf("/api/%d/envelope/?sentry_key=%s", p.GetId(), k.GetPublicKey())
	var statuses []int
	var last *http.Response
	for i := range 3 {
		resp, _ := h.post(path, "", nil, []byte(fmt.Sprintf("{\"event_id\":\"d%031d\"}\n{\"type\":\"event\"}\n{\"message\":\"m\"}\n", i)))
		statuses = append(statuses, resp.StatusCode)
		last = resp
	}
	if fmt.Sprint(statuses) != "[200 200 429]" {
		t.Fatalf("statuses %v", statuses)
	}
	if ra := last.Header.Get("Retry-After"); ra == "" || !strings.HasSuffix(last.Header.Get("X-Sentry-Rate-Limits"), ":error;default;security:project:project_rate_limit") {
		t.Errorf("Retry-After %q X-Sentry-Rate-Limits %q", ra, last.Header.Get("X-Sentry-Rate-Limits"))
	}
	// Sessions are not limited.
	resp, _ := h.post(path, "", nil, []byte("{}\n{\"type\":\"session\"}\n{\"sid\":\"s1\",\"status\":\"ok\"}\n"))
	if resp.StatusCode != 200 {
		t.Errorf("session: %d", resp.StatusCode)
	}
}
