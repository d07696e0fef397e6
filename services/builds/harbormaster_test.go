package builds

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/conduit"
	"github.com/shiploop/shiploop/pkg/conduit/conduittest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

const conduitToken = "api-0123456789abcdefghijklmnopqr"

func requireHg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("hg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("hg (Mercurial) is not installed; CI installs it with apt-get install -y mercurial")
		}
		t.Skip("hg (Mercurial) is not installed: apt-get install mercurial to run the Mercurial tests")
	}
}

func runIn(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t.invalid",
		"HGPLAIN=1", "HGUSER=t <t@t.invalid>", "HGRCPATH=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const hmConfig = "steps:\n  - name: unit\n    commands: [go test ./...]\n  - name: lint\n    commands: [go vet ./...]\n"

// hmCall sends a Harbormaster request the way a "Make HTTP Request" step
// does: the variables in the URI, the token as basic-auth password.
func hmCall(t *testing.T, base, method, password string, vars url.Values) (int, hookReply) {
	t.Helper()
	req, err := http.NewRequest(method, base+"/hooks/harbormaster?"+vars.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if password != "" {
		req.SetBasicAuth("harbormaster", password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r hookReply
	_ = json.Unmarshal(raw, &r)
	return resp.StatusCode, r
}

// TestHarbormasterGitDiff drives a Differential diff from the Harbormaster
// request to the pass/fail message, on both store engines: a request
// without a token starts nothing, one without target.phid is refused
// naming it, the diff is built from the staging area's tag, and the fake
// Conduit gets work, then fail with one unit result per step.
func TestHarbormasterGitDiff(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h, _ := newStatusHarness(t, db, 20*time.Millisecond, 50*time.Millisecond)
		ctx := context.Background()
		fake := conduittest.NewServer(t, conduitToken)
		mux := http.NewServeMux()
		h.svc.Routes(mux)
		web := httptest.NewServer(mux)
		t.Cleanup(web.Close)

		origin, base := gitRepo(t, map[string]string{".shiploop.yml": hmConfig})
		staging := t.TempDir()
		runIn(t, staging, "git", "clone", "--quiet", "--bare", origin, ".")
		work := t.TempDir()
		runIn(t, work, "git", "clone", "--quiet", origin, ".")
		write(t, work, "feature.go", "package x\n")
		runIn(t, work, "git", "add", "-A")
		runIn(t, work, "git", "commit", "--quiet", "-m", "D12 diff 34")
		diffSHA := runIn(t, work, "git", "rev-parse", "HEAD")
		runIn(t, work, "git", "push", "--quiet", staging, "HEAD:refs/tags/phabricator/diff/34")

		resp, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/web", CloneUrl: origin,
			ConduitUrl: fake.URL, ConduitToken: conduitToken, StagingUrl: staging, Callsign: "WEB"})
		if err != nil {
			t.Fatal(err)
		}
		if r := resp.GetRepository(); r.GetVcs() != "git" || !r.GetConduitTokenSet() || r.GetStagingUrl() != staging || r.GetCallsign() != "WEB" {
			t.Errorf("repository = %v", r)
		}
		secret := resp.GetWebhookSecret()
		vars := url.Values{"repository.callsign": {"WEB"}, "target.phid": {"PHID-HMBT-aaaa"}, "buildable.diff": {"34"}, "buildable.revision": {"12"},
			"buildable.commit": {""}, "repository.vcs": {"git"}, "build.id": {"99"}}

		if code, r := hmCall(t, web.URL, "GET", "", vars); code != http.StatusUnauthorized || !strings.Contains(r.Error, "token") {
			t.Errorf("no token: %d %+v", code, r)
		}
		if code, _ := hmCall(t, web.URL, "GET", "wrong", vars); code != http.StatusUnauthorized {
			t.Errorf("wrong token: %d", code)
		}
		noTarget := url.Values{"repository.callsign": {"WEB"}, "buildable.diff": {"34"}}
		if code, r := hmCall(t, web.URL, "POST", secret, noTarget); code != http.StatusBadRequest || !strings.HasPrefix(r.Error, "target.phid: required") {
			t.Errorf("no target.phid: %d %+v", code, r)
		}
		if list, _ := h.api.ListBuilds(ctx, &buildsv1.ListBuildsRequest{Repository: "acme/web"}); len(list.GetBuilds()) != 0 {
			t.Fatalf("refused requests started builds: %v", list)
		}

		code, r := hmCall(t, web.URL, "GET", secret, vars)
		if code != http.StatusAccepted || r.Type != "change.pr_updated" {
			t.Fatalf("request: %d %+v", code, r)
		}
		if code, again := hmCall(t, web.URL, "GET", secret, vars); code != http.StatusOK || !again.Duplicate || again.EventID != r.EventID {
			t.Errorf("repeated request: %d %+v", code, again)
		}
		job := h.nextJob(ctx)
		if job.GetCommit() != diffSHA || job.GetCloneUrl() != staging || job.GetRef() != "refs/tags/phabricator/diff/34" || job.GetVcs() != "" {
			t.Fatalf("job = %v", job)
		}
		if v := job.GetVersion(); v != "0.0.1-dev.2+g"+diffSHA[:7] {
			t.Errorf("version %q (base %s)", v, base)
		}
		b := h.waitBuild(ctx, job.GetBuildId(), eventsv1.BuildStatus_BUILD_STATUS_QUEUED)
		if b.GetTrigger() != "pull_request" || b.GetHarbormaster().GetTargetPhid() != "PHID-HMBT-aaaa" || b.GetHarbormaster().GetDiffId() != 34 || b.GetHarbormaster().GetRevisionId() != 12 {
			t.Errorf("build = %v", b)
		}

		h.jobStarted(job)
		fake.Wait(t, 30*time.Second, "work", func(c []conduittest.Call) bool { return len(c) == 1 })
		now := time.Now()
		if err := h.bus.Publish(ctx, bus.Event{Type: "job.finished", Repository: "acme/web", Subject: job.GetJobId(), Data: &eventsv1.JobFinished{
			JobId: job.GetJobId(), BuildId: job.GetBuildId(), Repository: "acme/web", Status: eventsv1.BuildStatus_BUILD_STATUS_FAILURE, FailedStep: "lint", Agent: "a1",
			Steps: []*eventsv1.StepResult{
				{Name: "unit", Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, Duration: durationpb.New(1500 * time.Millisecond), StartedAt: timestamppb.New(now)},
				{Name: "lint", Status: eventsv1.BuildStatus_BUILD_STATUS_FAILURE, ExitCode: 1, Duration: durationpb.New(time.Second), StartedAt: timestamppb.New(now)},
			}}}); err != nil {
			t.Fatal(err)
		}
		calls := fake.Wait(t, 30*time.Second, "the result", func(c []conduittest.Call) bool { return len(c) == 2 })
		for i, want := range []string{"work", "fail"} {
			c := calls[i]
			if c.Error != "" || c.Type() != want || c.Target() != "PHID-HMBT-aaaa" || c.Encoding != "params-json" {
				t.Errorf("call %d = %+v, want an accepted %s", i, c, want)
			}
		}
		units := calls[1].Units()
		if len(units) != 2 || units[0]["name"] != "unit" || units[0]["result"] != "pass" || units[0]["duration"].(json.Number).String() != "1.5" ||
			units[1]["name"] != "lint" || units[1]["result"] != "fail" || units[1]["details"] != "exit code 1" || units[1]["engine"] != "shiploop" {
			t.Errorf("units = %v", units)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := h.api.GetBuild(ctx, &buildsv1.GetBuildRequest{Id: job.GetBuildId()})
			if err == nil && got.GetBuild().GetHarbormaster().GetSent() == "fail" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("build's harbormaster report = %v, %v", got.GetBuild().GetHarbormaster(), err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestHarbormasterConduitDown: an unreachable Conduit is retried with
// back-off, each failure is recorded on the build, and the message goes
// through once Conduit is back; the build itself never waits for it.
func TestHarbormasterConduitDown(t *testing.T) {
	db := storetest.OpenSQLite(t, "builds")
	h, logs := newStatusHarness(t, db, 50*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond)
	ctx := context.Background()
	fake := conduittest.NewServer(t, conduitToken)
	fake.FailNext(2, http.StatusBadGateway)
	dir, sha := gitRepo(t, map[string]string{".shiploop.yml": hmConfig})
	resp, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/web", CloneUrl: dir, ConduitUrl: fake.URL, ConduitToken: conduitToken})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.acceptHarbormaster(ctx, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: ForgeHarbormaster, DeliveryId: "PHID-HMBT-bbbb",
		HarbormasterTargetPhid: "PHID-HMBT-bbbb", Repository: "acme/web", CloneUrl: dir, Ref: "refs/heads/main", Branch: "main", After: sha}); err != nil {
		t.Fatal(err)
	}
	_ = resp
	job := h.nextJob(ctx)
	h.jobStarted(job)
	h.waitBuild(ctx, job.GetBuildId(), eventsv1.BuildStatus_BUILD_STATUS_RUNNING)
	h.jobFinished(job, eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, "")
	h.waitBuild(ctx, job.GetBuildId(), eventsv1.BuildStatus_BUILD_STATUS_SUCCESS) // not held up by Conduit
	calls := fake.Wait(t, 30*time.Second, "work and pass after two failures", func(c []conduittest.Call) bool {
		n := 0
		for _, x := range c {
			if x.Status == http.StatusOK && x.Error == "" {
				n++
			}
		}
		return n == 2
	})
	if calls[0].Status != http.StatusBadGateway || calls[1].Status != http.StatusBadGateway {
		t.Errorf("calls = %+v", calls)
	}
	var types []string
	for _, c := range calls[2:] {
		types = append(types, c.Type())
	}
	if strings.Join(types, ",") != "work,pass" {
		t.Errorf("accepted messages %v, want work,pass", types)
	}
	if !strings.Contains(logs.String(), "HTTP 502") {
		t.Errorf("failures not logged:\n%s", logs)
	}
	// The failed attempts were recorded; the accepted message cleared them.
	var attempts int
	var lastErr string
	if err := db.QueryRowContext(ctx, `SELECT attempts, last_error FROM harbormaster_targets WHERE target_phid = 'PHID-HMBT-bbbb'`).Scan(&attempts, &lastErr); err != nil || attempts != 0 || lastErr != "" {
		t.Errorf("after success: attempts %d error %q %v", attempts, lastErr, err)
	}

	// Conduit gone for good: the error stays on the build.
	fake.Close()
	if _, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/web", CloneUrl: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.acceptHarbormaster(ctx, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: ForgeHarbormaster, DeliveryId: "PHID-HMBT-cccc",
		HarbormasterTargetPhid: "PHID-HMBT-cccc", Repository: "acme/web", CloneUrl: dir, Ref: "refs/heads/main", Branch: "main", After: sha}); err != nil {
		t.Fatal(err)
	}
	job = h.nextJob(ctx)
	h.jobStarted(job)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := h.api.GetBuild(ctx, &buildsv1.GetBuildRequest{Id: job.GetBuildId()})
		hm := got.GetBuild().GetHarbormaster()
		if err == nil && strings.Contains(hm.GetError(), "gave up after 5 attempts") && hm.GetAttempts() == 5 && hm.GetSent() == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("harbormaster report = %v, %v", hm, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRegisterHarbormasterSettings(t *testing.T) {
	db := storetest.OpenSQLite(t, "builds")
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := emb.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := context.Background()
	b, err := bus.New(ctx, nc, bus.Options{Source: "/test"})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(ctx, Config{DB: db, Bus: b, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, svc: svc, bus: b, api: &grpcServer{s: svc}} // no Run: registration only
	for _, c := range []struct {
		req   *buildsv1.RegisterRepositoryRequest
		field string
	}{
		{&buildsv1.RegisterRepositoryRequest{Name: "a/b", CloneUrl: "/x", Vcs: "svn"}, "vcs"},
		{&buildsv1.RegisterRepositoryRequest{Name: "a/b", CloneUrl: "/x", ConduitUrl: "phab.example.com", ConduitToken: conduitToken}, "conduit_url"},
		{&buildsv1.RegisterRepositoryRequest{Name: "a/b", CloneUrl: "/x", ConduitUrl: "https://phab.example.com"}, "conduit_token"},
		{&buildsv1.RegisterRepositoryRequest{Name: "a/b", CloneUrl: "/x", ConduitUrl: "https://phab.example.com", ConduitToken: "secret"}, "conduit_token"},
		{&buildsv1.RegisterRepositoryRequest{Name: "a/b", CloneUrl: "/x", PublicOnly: new(true)}, "public_only"},
	} {
		_, err := h.api.RegisterRepository(ctx, c.req)
		if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), c.field+":") {
			t.Errorf("%v: %v, want InvalidArgument naming %s", c.req, err, c.field)
		}
	}
	if list, _ := h.api.ListRepositories(ctx, &buildsv1.ListRepositoriesRequest{}); len(list.GetRepositories()) != 0 {
		t.Errorf("a refused registration was stored: %v", list)
	}
	r, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "a/b", CloneUrl: "/x", Vcs: "HG", PublicOnly: new(true), ConduitUrl: "https://phab.example.com/api/", ConduitToken: conduitToken})
	if err != nil || r.GetRepository().GetVcs() != "hg" || !r.GetRepository().GetPublicOnly() || r.GetRepository().GetConduitUrl() != "https://phab.example.com" {
		t.Fatalf("register: %v, %v", r, err)
	}
	// Empty fields keep what is stored.
	r, err = h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "a/b", CloneUrl: "/x"})
	if err != nil || r.GetRepository().GetVcs() != "hg" || !r.GetRepository().GetPublicOnly() || !r.GetRepository().GetConduitTokenSet() {
		t.Fatalf("re-register: %v, %v", r, err)
	}
	r, err = h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "a/b", CloneUrl: "/x", ConduitUrl: "none"})
	if err != nil || r.GetRepository().GetConduitUrl() != "" || r.GetRepository().GetConduitTokenSet() {
		t.Fatalf("clear: %v, %v", r, err)
	}
}

func FuzzParseHarbormaster(f *testing.F) {
	f.Add("target.phid=PHID-HMBT-1&buildable.diff=3&buildable.revision=D4", "")
	f.Add("buildable.commit=ABC&repository.vcs=svn&token=x", "a=b")
	f.Add("%zz", "buildable.diff=-1")
	f.Fuzz(func(t *testing.T, query, body string) {
		req, err := http.NewRequest("POST", "http://x/hooks/harbormaster", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.URL.RawQuery = query
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		q, err := parseHarbormaster(req)
		if err != nil {
			if _, ok := err.(*hmField); !ok {
				t.Fatalf("error %T %v does not name a field", err, err)
			}
			return
		}
		if err := q.check(); err == nil {
			if !phidRe.MatchString(q.TargetPHID) || (q.DiffID <= 0 && !hexRe.MatchString(q.Commit)) {
				t.Fatalf("accepted %+v", q)
			}
		}
	})
}

func TestAddTestUnits(t *testing.T) {
	m := conduit.Message{Type: conduit.Pass}
	addTestUnits(&m, &eventsv1.TestRunFinished{
		Status: eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED,
		Counts: &eventsv1.TestCounts{Tests: 12, Passed: 10, Failed: 1, Errors: 1, Skipped: 0},
		Failures: []*eventsv1.FailedTest{
			{Suite: "auth", ClassName: "LoginTest", Name: "test_wrong_password", Status: "failed", Message: "expected 401"},
			{Suite: "db", Name: "test_migrate", Status: "error", Message: "connection refused"},
		},
	})
	if m.Type != conduit.Fail || len(m.Unit) != 3 {
		t.Fatalf("message %+v", m)
	}
	want := []conduit.Unit{
		{Name: "test_wrong_password", Namespace: "LoginTest", Engine: "shiploop tests", Result: conduit.UnitFail, Details: "expected 401"},
		{Name: "test_migrate", Namespace: "db", Engine: "shiploop tests", Result: conduit.UnitBroken, Details: "connection refused"},
	}
	for i, w := range want {
		if m.Unit[i] != w {
			t.Errorf("unit %d = %+v, want %+v", i, m.Unit[i], w)
		}
	}
	if m.Unit[2].Result != conduit.UnitPass || m.Unit[2].Name != "10 tests passed" {
		t.Errorf("summary unit %+v", m.Unit[2])
	}
}
