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
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
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
	b := bustest.Start(t, bus.Options{Source: "/test"})
	ctx := context.Background()
	svc, err := New(ctx, Config{DB: db, Bus: b, DataDir: t.TempDir(), AllowedTransports: "https,ssh,git,file"})
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

// hmLintConfig has a gate that reads a flake8 report: the final message
// waits for the gate's findings.
const hmLintConfig = `steps:
  - name: flake8
    commands: [flake8 --output-file out/flake8.txt .]
    artifacts: [out/flake8.txt]
gate:
  conditions:
    - {metric: issues_error, operator: "==", threshold: 0}
  reports:
    flake8: [out/flake8.txt]
`

// heldFor waits until a target's final message is held for the gate and
// returns when it was held and when it falls due.
func heldFor(t *testing.T, db *store.DB, target string) (heldAt, retryAt int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := db.QueryRowContext(context.Background(), `SELECT held_at, retry_at FROM harbormaster_targets WHERE target_phid = $1 AND held IS NOT NULL`, target).Scan(&heldAt, &retryAt)
		if err == nil {
			return heldAt, retryAt
		}
		if time.Now().After(deadline) {
			t.Fatalf("the final message of %s was not held: %v", target, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHarbormasterLint: a Harbormaster build whose gate reads a flake8
// report holds its final message until gate.evaluated, then sends it with
// the findings as lint[] exactly as Phabricator's
// HarbormasterBuildLintMessage reads them (severity from the level, no
// line or char when the report gave none) and says how many did not fit.
// A build whose gate never reports gets its result once the wait is over,
// without lint and saying why, through a failed attempt and its retry.
func TestHarbormasterLint(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h, _ := newStatusHarness(t, db, 20*time.Millisecond, 50*time.Millisecond)
		ctx := context.Background()
		fake := conduittest.NewServer(t, conduitToken)
		dir, sha := gitRepo(t, map[string]string{".shiploop.yml": hmLintConfig})
		if _, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/web", CloneUrl: dir, ConduitUrl: fake.URL, ConduitToken: conduitToken}); err != nil {
			t.Fatal(err)
		}
		request := func(target string) *eventsv1.Job {
			t.Helper()
			if _, err := h.svc.acceptHarbormaster(ctx, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: ForgeHarbormaster, DeliveryId: target,
				HarbormasterTargetPhid: target, Repository: "acme/web", CloneUrl: dir, Ref: "refs/heads/main", Branch: "main", After: sha}); err != nil {
				t.Fatal(err)
			}
			job := h.nextJob(ctx)
			h.jobStarted(job)
			return job
		}
		accepted := func(c []conduittest.Call) (out []conduittest.Call) {
			for _, x := range c {
				if x.Status == http.StatusOK && x.Error == "" {
					out = append(out, x)
				}
			}
			return out
		}

		// The gate reports: fail with the findings as lint.
		job := request("PHID-HMBT-lint1")
		fake.Wait(t, 30*time.Second, "work", func(c []conduittest.Call) bool { return len(c) == 1 })
		if err := h.bus.Publish(ctx, bus.Event{Type: "job.finished", Repository: "acme/web", Subject: job.GetJobId(), Data: &eventsv1.JobFinished{
			JobId: job.GetJobId(), BuildId: job.GetBuildId(), Repository: "acme/web", Status: eventsv1.BuildStatus_BUILD_STATUS_FAILURE, FailedStep: "flake8", Agent: "a1",
			Steps: []*eventsv1.StepResult{{Name: "flake8", Status: eventsv1.BuildStatus_BUILD_STATUS_FAILURE, ExitCode: 1}}}}); err != nil {
			t.Fatal(err)
		}
		heldAt, retryAt := heldFor(t, db, "PHID-HMBT-lint1")
		if retryAt-heldAt != int64(hmGateWait) {
			t.Errorf("held message due %v after it was held, want %v", time.Duration(retryAt-heldAt), hmGateWait)
		}
		if n := len(fake.Calls()); n != 1 {
			t.Fatalf("%d calls before the gate reported, want only work: %+v", n, fake.Calls())
		}
		if err := h.bus.Publish(ctx, bus.Event{Type: "gate.evaluated", Repository: "acme/web", Subject: job.GetBuildId(), Data: &eventsv1.GateEvaluated{
			BuildId: job.GetBuildId(), Repository: "acme/web", Status: eventsv1.GateStatus_GATE_STATUS_ERROR, Revision: 1, Issues: 10, NewIssues: 10,
			Findings: []*eventsv1.GateFinding{
				{Tool: "flake8", Rule: "E999", Level: "error", Path: "subfolder/syntax_error.py", Line: 1, Column: 4, Message: "SyntaxError: invalid syntax", IsNew: true},
				{Tool: "flake8", Rule: "F401", Level: "warning", Path: "num_guess.py", Line: 4, Column: 1, Message: "'sys' imported but unused", IsNew: true},
				{Tool: "Clang Analyzer", Level: "note", Path: "", Message: "Value stored is never read\nat the end of the function", IsNew: true},
			},
			FindingsTruncated: 7,
		}}); err != nil {
			t.Fatal(err)
		}
		calls := fake.Wait(t, 30*time.Second, "the result with lint", func(c []conduittest.Call) bool { return len(c) == 2 })
		c := calls[1]
		if c.Error != "" || c.Type() != "fail" || c.Target() != "PHID-HMBT-lint1" || c.Encoding != "params-json" {
			t.Fatalf("result call = %+v, want an accepted fail", c)
		}
		wantLint := []map[string]any{
			{"name": "SyntaxError: invalid syntax", "code": "E999", "severity": "error", "path": "subfolder/syntax_error.py",
				"line": json.Number("1"), "char": json.Number("4"), "description": "flake8: SyntaxError: invalid syntax"},
			{"name": "'sys' imported but unused", "code": "F401", "severity": "warning", "path": "num_guess.py",
				"line": json.Number("4"), "char": json.Number("1"), "description": "flake8: 'sys' imported but unused"},
			{"name": "Value stored is never read", "code": "Clang Analyzer", "severity": "advice", "path": "",
				"description": "Clang Analyzer: Value stored is never read\nat the end of the function"},
		}
		if got := c.Lints(); !reflect.DeepEqual(got, wantLint) {
			t.Errorf("lint =\n%#v\nwant\n%#v", got, wantLint)
		}
		units := c.Units()
		if len(units) != 2 || units[0]["name"] != "flake8" || units[0]["result"] != "fail" || units[0]["details"] != "exit code 1" ||
			units[1]["name"] != "lint" || units[1]["result"] != "skip" || units[1]["engine"] != "shiploop gate" ||
			units[1]["details"] != "7 more findings are not sent as lint: Harbormaster gets the first 3, new ones first." {
			t.Errorf("units = %v", units)
		}
		waitSent := func(id, want string) *buildsv1.HarbormasterReport {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for {
				got, err := h.api.GetBuild(ctx, &buildsv1.GetBuildRequest{Id: id})
				if hm := got.GetBuild().GetHarbormaster(); err == nil && hm.GetSent() == want {
					return hm
				}
				if time.Now().After(deadline) {
					t.Fatalf("build's harbormaster report = %v, %v; want sent %s", got.GetBuild().GetHarbormaster(), err, want)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		waitSent(job.GetBuildId(), "fail")

		// The gate never reports: once the wait is over (moved to now here,
		// as if two minutes had passed) the result goes without lint, after
		// one failed attempt and its retry.
		job = request("PHID-HMBT-lint2")
		fake.Wait(t, 30*time.Second, "work", func(c []conduittest.Call) bool { return len(accepted(c)) == 3 })
		if err := h.bus.Publish(ctx, bus.Event{Type: "job.finished", Repository: "acme/web", Subject: job.GetJobId(), Data: &eventsv1.JobFinished{
			JobId: job.GetJobId(), BuildId: job.GetBuildId(), Repository: "acme/web", Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, Agent: "a1",
			Steps: []*eventsv1.StepResult{{Name: "flake8", Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS}}}}); err != nil {
			t.Fatal(err)
		}
		heldFor(t, db, "PHID-HMBT-lint2")
		fake.FailNext(1, http.StatusServiceUnavailable)
		if _, err := db.ExecContext(ctx, `UPDATE harbormaster_targets SET retry_at = $1 WHERE target_phid = 'PHID-HMBT-lint2'`, time.Now().UnixNano()); err != nil {
			t.Fatal(err)
		}
		calls = fake.Wait(t, 30*time.Second, "the result after the wait", func(c []conduittest.Call) bool { return len(accepted(c)) == 4 })
		if len(calls) != 5 || calls[3].Status != http.StatusServiceUnavailable {
			t.Fatalf("calls = %+v, want work, fail, work, a 503, then the result", calls)
		}
		c = calls[4]
		if c.Type() != "pass" || c.Target() != "PHID-HMBT-lint2" || len(c.Lints()) != 0 {
			t.Errorf("result = %+v, want pass without lint", c)
		}
		units = c.Units()
		if len(units) != 2 || units[0]["name"] != "flake8" || units[0]["result"] != "pass" || units[1]["name"] != "lint" || units[1]["result"] != "skip" ||
			units[1]["details"] != "The gate did not report its findings within 2m0s, so no lint was sent (is the gates service running?)." {
			t.Errorf("units = %v", units)
		}
		if hm := waitSent(job.GetBuildId(), "pass"); hm.GetAttempts() != 0 || hm.GetError() != "" {
			t.Errorf("after the retry: %v", hm)
		}
	})
}
