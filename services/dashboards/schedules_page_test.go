package dashboards

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// fakeBuilds serves the repository page's schedules and records pauses.
type fakeBuilds struct {
	buildsv1.BuildServiceClient
	mu        sync.Mutex
	schedules []*buildsv1.Schedule
	calls     []string
	down      bool
}

func (f *fakeBuilds) ListSchedules(_ context.Context, r *buildsv1.ListSchedulesRequest, _ ...grpc.CallOption) (*buildsv1.ListSchedulesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, status.Error(codes.Unavailable, "builds is down")
	}
	var out []*buildsv1.Schedule
	for _, s := range f.schedules {
		if s.GetRepository() == r.GetRepository() {
			out = append(out, s)
		}
	}
	return &buildsv1.ListSchedulesResponse{Schedules: out}, nil
}

func (f *fakeBuilds) SetSchedulePaused(_ context.Context, r *buildsv1.SetSchedulePausedRequest, _ ...grpc.CallOption) (*buildsv1.SetSchedulePausedResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.schedules {
		if s.GetRepository() == r.GetRepository() && s.GetName() == r.GetName() {
			s.Paused = r.GetPaused()
			f.calls = append(f.calls, r.GetRepository()+" "+r.GetName()+" paused="+map[bool]string{true: "true", false: "false"}[r.GetPaused()])
			return &buildsv1.SetSchedulePausedResponse{Schedule: s}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "schedule %q of %s not found", r.GetName(), r.GetRepository())
}

// TestRepositorySchedules: the repository page lists the repository's
// schedules from builds (name, cron, time zone, branch, next run, paused);
// a write session pauses and resumes them through its forms, a read-only
// session sees no form and its POST is refused, a cross-origin POST too;
// builds down leaves the page up with the section saying so.
func TestRepositorySchedules(t *testing.T) {
	db := storetest.OpenSQLite(t, "dashboards")
	b := bustest.Start(t, bus.Options{Source: "/test"})
	auth := &server.Auth{AdminToken: "admin-token", Lookup: func(_ context.Context, hash string) (server.Principal, error) {
		switch hash {
		case server.HashToken("ro-token"):
			return server.Principal{Name: "grafana", Scope: server.ScopeRead}, nil
		case server.HashToken("rw-token"):
			return server.Principal{Name: "ann", Scope: server.ScopeWrite}, nil
		}
		return server.Principal{}, server.ErrUnknownToken
	}}
	next := time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)
	fake := &fakeBuilds{schedules: []*buildsv1.Schedule{
		{Repository: "acme/shop", Name: "nightly", Cron: "0 3 * * *", Timezone: "Europe/Paris", NextRun: timestamppb.New(next)},
		{Repository: "acme/shop", Name: "weekly-deps", Cron: "0 6 * * 1", Timezone: "UTC", Branch: "deps", Paused: true},
		{Repository: "acme/shop", Name: "refresh", Cron: "30 2 * * *", Timezone: "UTC", Runbook: "refresh-staging", Environment: "staging"},
		{Repository: "acme/other", Name: "hidden", Cron: "* * * * *", Timezone: "UTC"},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := New(ctx, Config{DB: db, Bus: b, Auth: auth, Builds: fake, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	auth.LoginRoutes(mux)
	srv := newTestServer(t, mux)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The repository page needs the repository in the read model.
	ch := &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Repository: "acme/shop", DefaultBranch: "main", Ref: "refs/heads/main", Branch: "main", After: strings.Repeat("a", 40)}
	if err := b.Publish(t.Context(), bus.Event{Type: "change.pushed", Repository: "acme/shop", ChainID: "c1", Time: time.Now(), Data: ch}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), bus.Event{Type: "build.created", Repository: "acme/shop", ChainID: "c1", Time: time.Now(), Data: &eventsv1.BuildCreated{
		BuildId: "b1", Number: 1, Repository: "acme/shop", Ref: "refs/heads/main", Commit: ch.After, Trigger: "push", CreatedAt: timestamppb.Now()}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), bus.Event{Type: "build.created", Repository: "acme/shop", ChainID: "c2", Time: time.Now(), Data: &eventsv1.BuildCreated{
		BuildId: "b2", Number: 2, Repository: "acme/shop", Ref: "refs/heads/main", Commit: ch.After, Trigger: "cron", CreatedAt: timestamppb.Now()}}); err != nil {
		t.Fatal(err)
	}
	page := "/repos/acme/shop"
	rw, ro := srv.login(t, "rw-token"), srv.login(t, "ro-token")
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var resp *http.Response
		resp, body = srv.do(t, rw, "GET", page, nil, nil)
		if resp.StatusCode == http.StatusOK && strings.Contains(body, `href="/builds/b2"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("repository page: %d\n%s", resp.StatusCode, body)
		}
	}
	for _, want := range []string{`<h2>Schedules</h2>`, `<td>nightly</td>`, `<code>0 3 * * *</code>`, `<td>Europe/Paris</td>`, next.Local().Format("2006-01-02"),
		`<td>weekly-deps</td>`, `<td>pipeline on deps</td>`, `<span class="st paused">paused</span>`,
		`<td>runbook <strong>refresh-staging</strong> on staging</td>`, `<td>pipeline on <span class="muted">the default branch</span></td>`,
		`name="name" value="nightly"><input type="hidden" name="action" value="pause">`,
		`name="name" value="weekly-deps"><input type="hidden" name="action" value="resume">`} {
		if !strings.Contains(body, want) {
			t.Errorf("write session's repository page lacks %q:\n%s", want, body)
		}
	}
	// The history filters on the scheduled builds' event.
	if resp, body := srv.do(t, rw, "GET", page+"?event=cron", nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, `href="/builds/b2"`) || strings.Contains(body, `href="/builds/b1"`) {
		t.Errorf("?event=cron: %d, want build b2 alone:\n%s", resp.StatusCode, body)
	}
	if strings.Contains(body, "hidden</td>") {
		t.Error("another repository's schedule is listed")
	}
	if _, body := srv.do(t, ro, "GET", page, nil, nil); !strings.Contains(body, `<td>nightly</td>`) || strings.Contains(body, `value="pause"`) {
		t.Errorf("read-only session: want the schedules without forms:\n%s", body)
	}

	same := map[string]string{"Origin": srv.URL}
	resp, _ := srv.do(t, rw, "POST", page, url.Values{"action": {"pause"}, "name": {"nightly"}}, same)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != page+"?done="+url.QueryEscape("ann paused schedule nightly") {
		t.Fatalf("pause: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = srv.do(t, rw, "POST", page, url.Values{"action": {"resume"}, "name": {"weekly-deps"}}, same)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=ann+resumed+schedule+weekly-deps") {
		t.Fatalf("resume: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = srv.do(t, rw, "POST", page, url.Values{"action": {"pause"}, "name": {"nope"}}, same)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "error=") || !strings.Contains(loc, "not+found") {
		t.Fatalf("unknown schedule: %d %s", resp.StatusCode, loc)
	}
	if _, body := srv.do(t, rw, "GET", page+"?done=ann+paused+schedule+nightly", nil, nil); !strings.Contains(body, `<p class="flash done" role="status">ann paused schedule nightly</p>`) ||
		!strings.Contains(body, `name="name" value="nightly"><input type="hidden" name="action" value="resume">`) {
		t.Errorf("after pausing: want the flash and a resume form:\n%s", body)
	}
	for _, c := range []struct {
		name   string
		client *http.Client
		hdr    map[string]string
		form   url.Values
		code   int
	}{
		{"cross-origin", rw, map[string]string{"Origin": "https://evil.example"}, url.Values{"action": {"pause"}, "name": {"nightly"}}, http.StatusForbidden},
		{"no origin", rw, nil, url.Values{"action": {"pause"}, "name": {"nightly"}}, http.StatusForbidden},
		{"read-only", ro, same, url.Values{"action": {"pause"}, "name": {"nightly"}}, http.StatusForbidden},
		{"anonymous", &http.Client{}, same, url.Values{"action": {"pause"}, "name": {"nightly"}}, http.StatusUnauthorized},
		{"unknown action", rw, same, url.Values{"action": {"delete"}, "name": {"nightly"}}, http.StatusBadRequest},
		{"no name", rw, same, url.Values{"action": {"pause"}}, http.StatusBadRequest},
	} {
		if resp, body := srv.do(t, c.client, "POST", page, c.form, c.hdr); resp.StatusCode != c.code {
			t.Errorf("%s POST: %d, want %d\n%s", c.name, resp.StatusCode, c.code, body)
		}
	}
	fake.mu.Lock()
	calls := strings.Join(fake.calls, "|")
	fake.down = true
	fake.mu.Unlock()
	if want := "acme/shop nightly paused=true|acme/shop weekly-deps paused=false"; calls != want {
		t.Errorf("builds calls %q, want %q", calls, want)
	}
	if resp, body := srv.do(t, rw, "GET", page, nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "schedules unavailable: builds is down") || !strings.Contains(body, `class="build-row"`) {
		t.Errorf("builds down: want the page with the section saying so: %d\n%s", resp.StatusCode, body)
	}
}

// formServer is an httptest server of pages behind the security headers,
// with a browser's login and requests.
type formServer struct{ *httptest.Server }

func newTestServer(t *testing.T, h http.Handler) formServer {
	srv := httptest.NewServer(server.SecurityHeaders(h))
	t.Cleanup(srv.Close)
	return formServer{srv}
}

// login is a browser (cookie jar, redirects not followed) signed in with tok.
func (s formServer) login(t *testing.T, tok string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("POST", s.URL+"/login", strings.NewReader(url.Values{"token": {tok}, "next": {"/"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.URL)
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login %s: %v %v", tok, resp, err)
	}
	resp.Body.Close()
	return c
}

func (s formServer) do(t *testing.T, c *http.Client, method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, s.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "text/html")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}
