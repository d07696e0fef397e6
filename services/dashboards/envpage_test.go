package dashboards

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// fakeDeploys records the environment page's calls.
type fakeDeploys struct {
	deploysv1.DeployServiceClient
	mu    sync.Mutex
	calls []string
}

func (f *fakeDeploys) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeDeploys) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeDeploys) Approve(_ context.Context, r *deploysv1.ApproveRequest, _ ...grpc.CallOption) (*deploysv1.ApproveResponse, error) {
	f.record("approve " + r.GetDeployId() + " by " + r.GetApprover())
	return &deploysv1.ApproveResponse{Deployment: &deploysv1.Deployment{Id: r.GetDeployId(), Release: "1.2.0"}}, nil
}

func (f *fakeDeploys) Lock(_ context.Context, r *deploysv1.LockRequest, _ ...grpc.CallOption) (*deploysv1.LockResponse, error) {
	f.record("lock " + r.GetRepository() + " " + r.GetEnvironment() + " by " + r.GetBy() + ": " + r.GetReason())
	return &deploysv1.LockResponse{}, nil
}

func (f *fakeDeploys) Rollback(_ context.Context, r *deploysv1.RollbackRequest, _ ...grpc.CallOption) (*deploysv1.RollbackResponse, error) {
	f.record("rollback " + r.GetEnvironment() + " by " + r.GetBy())
	return &deploysv1.RollbackResponse{Deployment: &deploysv1.Deployment{Release: "1.0.0"}}, nil
}

// fakeRunbooks lists two runbooks and records runs.
type fakeRunbooks struct {
	deploysv1.RunbookServiceClient
	fakeDeploys
}

func (f *fakeRunbooks) ListRunbooks(_ context.Context, r *deploysv1.ListRunbooksRequest, _ ...grpc.CallOption) (*deploysv1.ListRunbooksResponse, error) {
	f.record("list " + r.GetRepository() + " " + r.GetEnvironment())
	return &deploysv1.ListRunbooksResponse{Version: "1.2.0", Runbooks: []*deploysv1.Runbook{
		{Name: "restart", Kind: "task", Environment: "production", Steps: []string{"restart"}, Options: []*deploysv1.RunbookOption{
			{Name: "service", Type: "enum", Values: []string{"web", "worker"}, Required: true},
			{Name: "count", Type: "int"},
			{Name: "drain", Type: "bool", Default: "false", HasDefault: true},
		}},
		{Name: "refresh-staging", Kind: "data", Environment: "staging", FromEnvironment: "production", ToEnvironment: "staging"},
	}}, nil
}

func (f *fakeRunbooks) RunRunbook(_ context.Context, r *deploysv1.RunRunbookRequest, _ ...grpc.CallOption) (*deploysv1.RunRunbookResponse, error) {
	var opts []string
	for k, v := range r.GetOptions() {
		opts = append(opts, k+"="+v)
	}
	slices.Sort(opts)
	f.record("run " + r.GetRepository() + " " + r.GetRunbook() + " " + strings.Join(opts, ",") + " for " + r.GetOnBehalfOf())
	return &deploysv1.RunRunbookResponse{Run: &eventsv1.RunbookRun{RunId: "r9", Status: "queued", Reason: "waiting for the lock held by bob"}}, nil
}

// TestEnvironmentPage: /environments/{repo}/{env} tells the deploy history
// (who, release, approvers, each verification check's verdict with
// inconclusive and no evidence, rollbacks with their cause); its action
// forms show for a write-scope session only; a same-origin POST with the
// session cookie calls DeploysService with the session's token name as
// the actor; a cross-origin POST, or one without Origin and Referer, is
// refused; a read-only session's POST is refused.
func TestEnvironmentPage(t *testing.T) {
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
	fake := &fakeDeploys{}
	rbs := &fakeRunbooks{}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := New(ctx, Config{DB: db, Bus: b, Auth: auth, Deploys: fake, Runbooks: rbs, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	auth.LoginRoutes(mux)
	srv := httptest.NewServer(server.SecurityHeaders(mux))
	t.Cleanup(srv.Close)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	const r = "acme/shop"
	t0 := time.Now().Add(-time.Hour)
	publish := func(typ, chain string, at time.Time, ev bus.Event) {
		ev.Type, ev.Repository, ev.ChainID, ev.Time = typ, r, chain, at
		if err := b.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	ref := func(id, release, kind, by string) *eventsv1.DeployRef {
		return &eventsv1.DeployRef{DeployId: id, Repository: r, Environment: "production", Release: release, Kind: kind, TriggeredBy: by, BuildId: "b-" + release}
	}
	good := ref("d1", "1.0.0", "deploy", "carol")
	publish("deploy.approved", "c1", t0, bus.Event{Data: &eventsv1.DeployApproved{Deploy: good, Approver: "dave"}})
	publish("deploy.finished", "c1", t0, bus.Event{Data: &eventsv1.DeployFinished{Deploy: good, Status: eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED,
		Reason: "deployed", FinishedAt: timestamppb.New(t0.Add(time.Minute)), Checks: []*eventsv1.CheckResult{
			{Check: "error-rate", Status: eventsv1.CheckStatus_CHECK_STATUS_SUCCESS, Reason: "0.1% <= 1%"},
			{Check: "errortrack", Status: eventsv1.CheckStatus_CHECK_STATUS_INCONCLUSIVE, Reason: "no evidence: errortrack received no event from 1.0.0"},
		}}})
	t1 := t0.Add(10 * time.Minute)
	bad := ref("d2", "1.1.0", "deploy", "carol")
	publish("deploy.finished", "c2", t1, bus.Event{Data: &eventsv1.DeployFinished{Deploy: bad, Status: eventsv1.DeployStatus_DEPLOY_STATUS_FAILED,
		Reason: "verification failed", FinishedAt: timestamppb.New(t1), Checks: []*eventsv1.CheckResult{
			{Check: "latency-p99", Status: eventsv1.CheckStatus_CHECK_STATUS_FAILURE, Reason: "p99 900ms > 500ms"}}}})
	back := ref("d3", "1.0.0", "rollback", "auto")
	publish("deploy.rolled_back", "c2", t1, bus.Event{Data: &eventsv1.DeployRolledBack{Deploy: back, FromRelease: "1.1.0", ToRelease: "1.0.0",
		Cause: "verification failed: latency-p99", RolledBackDeployId: "d2"}})
	publish("deploy.finished", "c2", t1, bus.Event{Data: &eventsv1.DeployFinished{Deploy: back, Status: eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED,
		Reason: "deployed", FinishedAt: timestamppb.New(t1.Add(time.Minute))}})
	waiting := ref("d4", "1.2.0", "deploy", "erin")
	publish("deploy.pending", "c3", t1.Add(5*time.Minute), bus.Event{Data: &eventsv1.DeployPending{Deploy: waiting,
		Status: eventsv1.DeployStatus_DEPLOY_STATUS_AWAITING_APPROVAL, Reason: "needs 1 approval"}})

	page := "/environments/" + r + "/production"
	login := func(tok string) *http.Client {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader(url.Values{"token": {tok}, "next": {"/"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", srv.URL)
		resp, err := c.Do(req)
		if err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login %s: %v %v", tok, resp, err)
		}
		resp.Body.Close()
		return c
	}
	do := func(c *http.Client, method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, srv.URL+path, body)
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
	rw, ro := login("rw-token"), login("ro-token")

	until(t, "the rollback and the waiting deploy on the page", func() bool {
		_, body := do(ro, "GET", page, nil, nil)
		return strings.Contains(body, "verification failed: latency-p99") && strings.Contains(body, `id="deploy-d4"`)
	})
	resp, body := do(ro, "GET", page, nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d\n%s", page, resp.StatusCode, body)
	}
	for _, want := range []string{
		"<h1>acme/shop · production</h1>",
		`by <span class="who">carol</span>`, `approved by <span class="approvers">dave</span>`,
		`<span class="st success">success</span> error-rate`,
		`<span class="st inconclusive">inconclusive</span> errortrack <span class="no-evidence">no evidence</span>`,
		`<span class="st failure">failure</span> latency-p99`,
		`<span class="cause">rolled back from 1.1.0: verification failed: latency-p99</span>`,
		`<b>rollback</b> of <b class="release">1.0.0</b> by <span class="who">auto</span>`,
		"read-only session",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("environment page lacks %q:\n%s", want, body)
		}
	}
	// Newest first, the waiting deploy before every finished one.
	if i, j, k := strings.Index(body, `id="deploy-d4"`), strings.Index(body, `id="deploy-d3"`), strings.Index(body, `id="deploy-d1"`); !(i < j && j < k) {
		t.Errorf("timeline order d4 %d, d3 %d, d1 %d", i, j, k)
	}
	if strings.Contains(body, "<form method=\"post\" action=\"/environments/") || strings.Contains(body, "runbook-form") {
		t.Errorf("a read-only session sees action forms:\n%s", body)
	}
	// The list links the page.
	if _, body := do(ro, "GET", "/environments", nil, nil); !strings.Contains(body, `<a href="/environments/acme/shop/production">production</a>`) {
		t.Errorf("/environments does not link the environment page:\n%s", body)
	}

	// A write-scope session sees the forms, the approve one on d4 only.
	_, body = do(rw, "GET", page, nil, nil)
	for _, want := range []string{`value="promote"`, `value="rollback"`, `value="lock"`, `name="deploy_id" value="d4"`} {
		if !strings.Contains(body, want) {
			t.Errorf("write session's page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, `name="deploy_id" value="d1"`) {
		t.Error("a finished deploy offers approve")
	}
	// A form per runbook, typed inputs per option.
	for _, want := range []string{`id="runbook-restart"`, `id="runbook-refresh-staging"`, `production → staging`,
		`<select name="option.service" required><option>web</option><option>worker</option></select>`,
		`<input name="option.count" type="number" step="1" placeholder="int">`,
		`<select name="option.drain"><option value="">default (false)</option><option>true</option><option>false</option></select>`,
		`<button type="submit">Run restart</button>`} {
		if !strings.Contains(body, want) {
			t.Errorf("write session's page lacks the runbook form's %q:\n%s", want, body)
		}
	}

	same := map[string]string{"Origin": srv.URL}
	resp, _ = do(rw, "POST", page, url.Values{"action": {"approve"}, "deploy_id": {"d4"}}, same)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=ann+approved+deployment+d4") {
		t.Fatalf("approve: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = do(rw, "POST", page, url.Values{"action": {"lock"}, "reason": {"incident 42"}}, map[string]string{"Referer": srv.URL + page})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("lock with a same-origin Referer: %d", resp.StatusCode)
	}
	want := []string{"approve d4 by ann", "lock acme/shop production by ann: incident 42"}
	if got := fake.got(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("deploys calls %q, want %q", got, want)
	}
	resp, _ = do(rw, "POST", page, url.Values{"action": {"runbook"}, "runbook": {"restart"}, "option.service": {"worker"}, "option.count": {""}, "option.drain": {"true"}}, same)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=ann+ran+runbook+restart%3A+run+r9+queued+%28waiting+for+the+lock+held+by+bob%29") {
		t.Fatalf("runbook: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := rbs.got(); !slices.Contains(got, "run acme/shop restart drain=true,service=worker for ann") || !slices.Contains(got, "list acme/shop production") {
		t.Fatalf("runbook calls %q", got)
	}
	if resp, _ := do(ro, "POST", page, url.Values{"action": {"runbook"}, "runbook": {"restart"}, "option.service": {"web"}}, same); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a read-only session ran a runbook: %d", resp.StatusCode)
	}

	// Refused: another site's form, no Origin nor Referer, a read-only
	// session, no credentials, an unknown action.
	for _, c := range []struct {
		name   string
		client *http.Client
		hdr    map[string]string
		form   url.Values
		code   int
	}{
		{"cross-origin", rw, map[string]string{"Origin": "https://evil.example"}, url.Values{"action": {"rollback"}}, http.StatusForbidden},
		{"cross-origin referer", rw, map[string]string{"Referer": "https://evil.example/x"}, url.Values{"action": {"rollback"}}, http.StatusForbidden},
		{"null origin", rw, map[string]string{"Origin": "null"}, url.Values{"action": {"rollback"}}, http.StatusForbidden},
		{"no origin", rw, nil, url.Values{"action": {"rollback"}}, http.StatusForbidden},
		{"read-only", ro, same, url.Values{"action": {"rollback"}}, http.StatusForbidden},
		{"anonymous", &http.Client{}, same, url.Values{"action": {"rollback"}}, http.StatusUnauthorized},
		{"unknown action", rw, same, url.Values{"action": {"nuke"}}, http.StatusBadRequest},
	} {
		if resp, body := do(c.client, "POST", page, c.form, c.hdr); resp.StatusCode != c.code {
			t.Errorf("%s POST: %d, want %d\n%s", c.name, resp.StatusCode, c.code, body)
		}
	}
	if got := fake.got(); len(got) != 2 {
		t.Errorf("refused posts reached deploys: %q", got)
	}
	// The flash of a done action.
	if _, body := do(rw, "GET", page+"?done=ann+locked+production", nil, nil); !strings.Contains(body, `<p class="flash done" role="status">ann locked production</p>`) {
		t.Errorf("no flash:\n%s", body)
	}
	// An unknown environment is a 404.
	if resp, _ := do(ro, "GET", "/environments/acme/shop/nowhere", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown environment: %d", resp.StatusCode)
	}
}
