package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getsentry/sentry-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// deployConfig deploys by writing the version into a file per environment
// under out; acceptance is verified against probe.
func deployConfig(out, probe string) string {
	return fmt.Sprintf(`steps:
  - name: build
    commands: [echo building $SHIPLOOP_VERSION]
environments:
  - name: acceptance
    auto: true
    variables: {OUT: %[1]q, HEALTH: %[2]q}
    steps:
      - name: deploy
        commands: ['echo "deploying $SHIPLOOP_VERSION to $SHIPLOOP_ENVIRONMENT (was $SHIPLOOP_PREVIOUS_VERSION)"', 'echo $SHIPLOOP_VERSION > $OUT/$SHIPLOOP_ENVIRONMENT']
    verify:
      window: 1s
      conditions:
        - {metric: "http_status(${HEALTH})", operator: "==", threshold: 200}
        - {metric: "http_latency_ms(${HEALTH})", operator: "<", threshold: 2000}
  - name: production
    approval: {required: 1}
    variables: {OUT: %[1]q}
    steps:
      - {name: deploy, commands: ['echo $SHIPLOOP_VERSION > $OUT/$SHIPLOOP_ENVIRONMENT']}
  - name: preview
    variables: {OUT: %[1]q}
    steps:
      - {name: up, commands: ['echo $SHIPLOOP_VERSION > $OUT/$SHIPLOOP_ENVIRONMENT']}
      - {name: teardown, commands: ['rm $OUT/$SHIPLOOP_ENVIRONMENT']}
`, out, probe)
}

func deployClient(t *testing.T, inst *instance) deploysv1.DeployServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return deploysv1.NewDeployServiceClient(conn)
}

// waitDeployment polls an environment's deployments until one matches.
func waitDeployment(t *testing.T, cl deploysv1.DeployServiceClient, repo, env, what string, ok func(*deploysv1.Deployment) bool) *deploysv1.Deployment {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last []string
	for time.Now().Before(deadline) {
		resp, err := cl.ListDeployments(context.Background(), &deploysv1.ListDeploymentsRequest{Repository: repo, Environment: env})
		if err == nil {
			last = last[:0]
			for _, d := range resp.GetDeployments() {
				if ok(d) {
					return d
				}
				last = append(last, fmt.Sprintf("%s %s %s (%s)", d.GetKind(), d.GetRelease(), d.GetStatus(), d.GetReason()))
			}
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	t.Fatalf("%s: not within 60s; %s has %v", what, env, last)
	return nil
}

func released(version string, st eventsv1.DeployStatus) func(*deploysv1.Deployment) bool {
	return func(d *deploysv1.Deployment) bool { return d.GetRelease() == version && d.GetStatus() == st }
}

func readOut(t *testing.T, dir, env string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, env))
	if err != nil {
		t.Fatalf("%s was not deployed: %v", env, err)
	}
	return strings.TrimSpace(string(b))
}

// pushWithMessage is a GitHub push whose commit carries a message (for ticket keys).
func (inst *instance) pushWithMessage(t *testing.T, repo, secret, before, after, msg string) {
	t.Helper()
	var body map[string]any
	_ = json.Unmarshal(pushBody(repo, "refs/heads/main", before, after), &body)
	body["commits"] = []any{map[string]any{"id": after, "message": msg, "added": []string{}, "modified": []string{"x"}, "removed": []string{}}}
	raw, _ := json.Marshal(body)
	if res := inst.hook(t, "push", "", sign(secret, raw), raw); res.Status != 202 {
		t.Fatalf("push: HTTP %d %s", res.Status, res.Raw)
	}
}

// pullRequest sends a GitHub pull_request webhook.
func (inst *instance) pullRequest(t *testing.T, repo, secret, action string, merged bool, number int, branch, sha string) {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{
		"action": action, "number": number,
		"pull_request": map[string]any{"number": number, "title": "feature", "merged": merged, "html_url": "https://example.invalid/pr",
			"head": map[string]any{"ref": branch, "sha": sha}, "base": map[string]any{"ref": "main", "sha": sha}},
		"repository": map[string]any{"full_name": repo, "name": repo[strings.Index(repo, "/")+1:], "clone_url": "https://example.invalid/" + repo + ".git", "default_branch": "main"},
		"sender":     map[string]any{"login": "e2e"},
	})
	if res := inst.hook(t, "pull_request", "", sign(secret, raw), raw); res.Status != 202 {
		t.Fatalf("pull_request %s: HTTP %d %s", action, res.Status, res.Raw)
	}
}

// TestDeployPath: push → build → acceptance → verification success →
// approval (CLI) → production; a broken release rolls back on its own with
// the cause; a freeze window blocks the automatic deploy; a pull request
// gets a preview environment that its merge tears down.
func TestDeployPath(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer app.Close()
	out := t.TempDir()
	inst := startUp(t)
	cl := deployClient(t, inst)
	ctx := context.Background()
	repo := newRepo(t, map[string]string{".shiploop.yml": deployConfig(out, app.URL)})
	secret := inst.register(t, "acme/app", repo)
	v1sha := repo.git("rev-parse", "HEAD")
	w := inst.watch(t, "acme/app")
	inst.pushWithMessage(t, "acme/app", secret, zero, v1sha, "SHIP-1 first release")

	acc := waitDeployment(t, cl, "acme/app", "acceptance", "v1 verified in acceptance", func(d *deploysv1.Deployment) bool {
		return d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
	})
	v1 := acc.GetRelease()
	if readOut(t, out, "acceptance") != v1 || len(acc.GetChecks()) != 2 || acc.GetChecks()[0].GetStatus() != eventsv1.CheckStatus_CHECK_STATUS_SUCCESS {
		t.Fatalf("acceptance: %+v", acc)
	}
	if len(acc.GetTickets()) != 1 || acc.GetTickets()[0] != "SHIP-1" {
		t.Errorf("tickets %v, want SHIP-1", acc.GetTickets())
	}
	// deploy.* events carry release and environment.
	evs := w.until("deploy.finished", 30*time.Second)
	fin := payload(t, evs[len(evs)-1], &eventsv1.DeployFinished{})
	if fin.GetDeploy().GetRelease() != v1 || fin.GetDeploy().GetEnvironment() != "acceptance" {
		t.Errorf("deploy.finished %+v", fin)
	}
	// The shared deploy log.
	logs := shiploopCLI(t, "deploy", "logs", acc.GetId(), "--server", inst.GRPCAddr)
	if !strings.Contains(logs, "deploying "+v1+" to acceptance") {
		t.Errorf("deploy logs:\n%s", logs)
	}

	prod := waitDeployment(t, cl, "acme/app", "production", "production waits for an approval", released(v1, eventsv1.DeployStatus_DEPLOY_STATUS_AWAITING_APPROVAL))
	approved := shiploopCLI(t, "deploy", "approve", prod.GetId(), "--by", "alice", "--comment", "go", "--server", inst.GRPCAddr)
	if !strings.Contains(approved, "alice: go") {
		t.Errorf("approve printed:\n%s", approved)
	}
	waitDeployment(t, cl, "acme/app", "production", "v1 in production", released(v1, eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
	if readOut(t, out, "production") != v1 {
		t.Errorf("production runs %q", readOut(t, out, "production"))
	}
	status := shiploopCLI(t, "deploy", "status", "acme/app", "--server", inst.GRPCAddr)
	if !strings.Contains(status, "production") || strings.Count(status, v1) < 2 {
		t.Errorf("deploy status:\n%s", status)
	}

	// v2 breaks the health check: automatic rollback to v1, cause recorded.
	healthy.Store(false)
	v2sha := repo.commit("v2", map[string]string{"x": "2"})
	inst.pushWithMessage(t, "acme/app", secret, v1sha, v2sha, "SHIP-2 break things")
	rb := waitDeployment(t, cl, "acme/app", "acceptance", "automatic rollback", func(d *deploysv1.Deployment) bool {
		return d.GetKind() == "rollback" && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
	})
	if rb.GetRelease() != v1 || !strings.Contains(rb.GetCause(), "verification failed") || !strings.Contains(rb.GetCause(), "answered 503") {
		t.Errorf("rollback %+v", rb)
	}
	bad, err := cl.GetDeployment(ctx, &deploysv1.GetDeploymentRequest{Id: rb.GetRollbackOf()})
	if err != nil || bad.GetDeployment().GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK {
		t.Fatalf("the broken deploy: %v %+v", err, bad.GetDeployment())
	}
	if readOut(t, out, "acceptance") != v1 {
		t.Errorf("acceptance runs %q after the rollback, want %s", readOut(t, out, "acceptance"), v1)
	}

	// A freeze window blocks the automatic deploy of v3.
	healthy.Store(true)
	shiploopCLI(t, "deploy", "freeze", "acme/app", "acceptance", "--until", "1h", "--reason", "release weekend", "--server", inst.GRPCAddr)
	v3sha := repo.commit("v3", map[string]string{"x": "3"})
	inst.pushWithMessage(t, "acme/app", secret, v2sha, v3sha, "v3")
	blocked := waitDeployment(t, cl, "acme/app", "acceptance", "blocked by the freeze", func(d *deploysv1.Deployment) bool {
		return d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_BLOCKED
	})
	if !strings.Contains(blocked.GetReason(), "release weekend") || readOut(t, out, "acceptance") != v1 {
		t.Errorf("blocked %+v; acceptance runs %s", blocked, readOut(t, out, "acceptance"))
	}

	// A pull request gets a preview environment; merging it tears it down.
	repo.git("checkout", "--quiet", "-b", "feature")
	prSha := repo.commit("feature", map[string]string{"f": "1"})
	repo.git("checkout", "--quiet", "main")
	inst.pullRequest(t, "acme/app", secret, "opened", false, 7, "feature", prSha)
	preview := waitDeployment(t, cl, "acme/app", "pr-7", "preview deployed", func(d *deploysv1.Deployment) bool {
		return d.GetKind() == "preview" && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
	})
	if readOut(t, out, "pr-7") != preview.GetRelease() {
		t.Errorf("preview runs %q", readOut(t, out, "pr-7"))
	}
	inst.pullRequest(t, "acme/app", secret, "closed", true, 7, "feature", prSha)
	waitDeployment(t, cl, "acme/app", "pr-7", "preview torn down", func(d *deploysv1.Deployment) bool {
		return d.GetKind() == "teardown" && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
	})
	if _, err := os.Stat(filepath.Join(out, "pr-7")); !os.IsNotExist(err) {
		t.Errorf("teardown left the preview: %v", err)
	}
	envs, err := cl.ListEnvironments(ctx, &deploysv1.ListEnvironmentsRequest{Repository: "acme/app"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range envs.GetEnvironments() {
		if e.GetPreview() {
			t.Errorf("preview %s still listed after the merge", e.GetName())
		}
	}
}

// rateConfig deploys to acceptance and verifies the error rate over window.
func rateConfig(window string) string {
	return fmt.Sprintf(`steps:
  - name: build
    commands: [echo building $SHIPLOOP_VERSION]
environments:
  - name: acceptance
    auto: true
    steps:
      - {name: deploy, commands: [echo deploying $SHIPLOOP_VERSION]}
    verify:
      window: %s
      conditions:
        - {metric: errortrack.error_rate_ratio, operator: "<=", threshold: 1.5, require_evidence: false}
`, window)
}

// TestDeployErrorRate: errors the real sentry-go SDK sends for each release
// reach deploys as errortrack's counts; a release that sends many times the
// previous release's errors per minute is rolled back before its window
// ends, naming both rates.
func TestDeployErrorRate(t *testing.T) {
	inst, et := errortrackUp(t)
	cl := deployClient(t, inst)
	ctx := context.Background()
	proj, err := et.CreateProject(ctx, &errortrackv1.CreateProjectRequest{Name: "rate", Repository: "acme/rate"})
	if err != nil {
		t.Fatal(err)
	}
	send := func(release string, n int) {
		t.Helper()
		c, err := sentry.NewClient(sentry.ClientOptions{Dsn: proj.GetKey().GetDsn(), Release: release, Environment: "acceptance"})
		if err != nil {
			t.Fatal(err)
		}
		hub := sentry.NewHub(c, sentry.NewScope())
		for i := range n {
			payOrder(hub, i)
		}
		if !hub.Flush(15 * time.Second) {
			t.Fatal("sentry-go did not flush")
		}
	}
	// The counts errortrack publishes for the repository (a watch of their
	// own: errortrack's types have three parts).
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	counts, err := inst.client.WatchEvents(wctx, &buildsv1.WatchEventsRequest{Repository: "acme/rate", Types: []string{"errortrack.release.counted"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := counts.Header(); err != nil {
		t.Fatal(err)
	}

	repo := newRepo(t, map[string]string{".shiploop.yml": rateConfig("1s")})
	secret := inst.register(t, "acme/rate", repo)
	v1sha := repo.git("rev-parse", "HEAD")
	inst.push(t, "acme/rate", secret, "refs/heads/main", zero, v1sha)
	v1 := waitDeployment(t, cl, "acme/rate", "acceptance", "v1 verified", func(d *deploysv1.Deployment) bool {
		return d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
	}).GetRelease()
	if !strings.Contains(v1, "+g") {
		t.Fatalf("release %q", v1)
	}

	// v1 runs with a few errors; errortrack counts them within its interval.
	send(v1, 2)
	for {
		r, err := counts.Recv()
		if err != nil {
			t.Fatalf("no errortrack.release.counted for %s: %v", v1, err)
		}
		c := payload(t, r.GetEvent(), &errortrackv1.ReleaseCounted{})
		if c.GetRelease() == v1 && c.GetEnvironment() == "acceptance" && c.GetErrors() == 2 && c.GetProject() == "rate" {
			break
		}
	}

	// v2 sends far more errors per minute: rolled back within its window.
	v2sha := repo.commit("v2", map[string]string{".shiploop.yml": rateConfig("40s")})
	inst.push(t, "acme/rate", secret, "refs/heads/main", v1sha, v2sha)
	v2 := waitDeployment(t, cl, "acme/rate", "acceptance", "v2 verifying", func(d *deploysv1.Deployment) bool {
		return d.GetRelease() != v1 && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING
	}).GetRelease()
	send(v2, 25)
	bad := waitDeployment(t, cl, "acme/rate", "acceptance", "v2 rolled back", released(v2, eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK))
	if !strings.Contains(bad.GetReason(), "errortrack.error_rate_ratio <= 1.5: "+v2+": 25 error(s) in acceptance") || !strings.Contains(bad.GetReason(), "previous "+v1+": 2 error(s)") {
		t.Errorf("rolled back because %q", bad.GetReason())
	}
	if took := bad.GetFinishedAt().AsTime().Sub(bad.GetStartedAt().AsTime()); took >= 40*time.Second {
		t.Errorf("rolled back %s after the start, want within the 40s window", took)
	}
	waitDeployment(t, cl, "acme/rate", "acceptance", "rolled back to v1", func(d *deploysv1.Deployment) bool {
		return d.GetKind() == "rollback" && d.GetRelease() == v1 && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
	})
}
