package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	dashboardsv1 "github.com/shiploop/shiploop/proto/shiploop/dashboards/v1"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// The closed loop as a team adopting shiploop walks it, from the docs only:
// a small Python service (tests/e2e/testdata/closedloop) with pytest, JUnit
// and coverage.py reports, flake8 as the gate's lint input, a gate, staging
// (automatic, a smoke check of /healthz) and production (one approval, then
// its own traffic judged by errortrack), both deployed by deploy.sh, which
// starts the server in the background; the server reports to shiploop's own
// intake with Debian's sentry_sdk, which takes release and environment from
// SENTRY_RELEASE/SENTRY_ENVIRONMENT (set by the deploy job, nothing in the
// app). The first release goes to production after an approval and verifies
// on the traffic the test sends; the second raises ZeroDivisionError on
// every request to /. Its /healthz still answers, so staging's smoke check
// passes it: it is production's verification that catches it, within its
// window, from the new issue, and rolls production back to the first
// release. DORA, the badges and the pages must then tell the same story.

// closedLoopApt installs the Python modules the project needs from Debian:
// pytest, coverage.py, flake8 and sentry_sdk (1.9.10 in bookworm).
const closedLoopApt = "apt-get install -y python3-pytest python3-coverage flake8 python3-sentry-sdk"

// requireClosedLoopPython skips without /usr/bin/python3 and the modules
// outside CI; CI must have them (.ci/run installs them).
func requireClosedLoopPython(t *testing.T) {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "-c", "import pytest, coverage, flake8, sentry_sdk; print(sentry_sdk.VERSION)").CombinedOutput()
	if err == nil {
		t.Logf("Debian's sentry_sdk %s", strings.TrimSpace(string(out)))
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("/usr/bin/python3 lacks pytest, coverage, flake8 or sentry_sdk (%v: %s); .ci/run installs them: %s", err, out, closedLoopApt)
	}
	t.Skipf("/usr/bin/python3 lacks pytest, coverage, flake8 or sentry_sdk (%s); to run this test: %s", strings.TrimSpace(string(out)), closedLoopApt)
}

// TestClosedLoop walks the loop once on git and once on Mercurial.
func TestClosedLoop(t *testing.T) {
	requireClosedLoopPython(t)
	t.Run("git", func(t *testing.T) { closedLoop(t, "git") })
	t.Run("hg", func(t *testing.T) {
		requireHg(t)
		closedLoop(t, "hg")
	})
}

// loopRepo is the project's repository, git or Mercurial.
type loopRepo struct {
	vcs    string
	git    *gitRepo
	hg     *hgRepo
	dir    string
	branch string // the default branch
}

func (r *loopRepo) commit(msg string, files map[string]string) string {
	if r.git != nil {
		return r.git.commit(msg, files)
	}
	return r.hg.commit(msg, files)
}

// push tells shiploop about the commit as the forge would: a GitHub push
// for git, the generic hook for Mercurial (docs/architecture.md, Mercurial
// builds).
func (r *loopRepo) push(t *testing.T, inst *instance, name, secret, before, after string) {
	t.Helper()
	if r.vcs == "git" {
		if res := inst.push(t, name, secret, "refs/heads/main", before, after); res.Status != 202 {
			t.Fatalf("push: HTTP %d %s", res.Status, res.Raw)
		}
		return
	}
	body, _ := json.Marshal(map[string]string{"event": "push", "repository": name, "ref": "refs/heads/" + r.branch, "commit": after, "before": before, "sender": "e2e"})
	req, _ := http.NewRequest(http.MethodPost, inst.HTTPURL+"/hooks/generic", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Shiploop-Signature", sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 202 {
		t.Fatalf("generic push: HTTP %d %s", resp.StatusCode, raw)
	}
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "closedloop", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func closedLoop(t *testing.T, vcs string) {
	start := time.Now()
	defer func() { t.Logf("closed loop on %s took %s", vcs, time.Since(start).Round(time.Second)) }()
	mark := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	ctx := context.Background()
	inst, et := errortrackUp(t)
	cl := deployClient(t, inst)
	name := "team/greeter-" + vcs

	// Where deploy.sh installs and runs the service, outside any workspace;
	// the servers it leaves running are stopped when the test ends.
	deployRoot := t.TempDir()
	t.Cleanup(func() { stopDeployedServers(t, deployRoot) })
	stagingPort, productionPort := freePort(t), freePort(t)
	config := strings.NewReplacer("@DEPLOY_ROOT@", deployRoot, "@STAGING_PORT@", stagingPort, "@PRODUCTION_PORT@", productionPort).
		Replace(readTestdata(t, "shiploop.yml"))
	goodApp := readTestdata(t, "app.py")
	files := map[string]string{
		".shiploop.yml": config,
		".coveragerc":   readTestdata(t, ".coveragerc"),
		"app.py":        goodApp,
		"test_app.py":   readTestdata(t, "test_app.py"),
		"deploy.sh":     readTestdata(t, "deploy.sh"),
	}

	// The repository, registered; the error project tied to it; the DSN a
	// repository secret the environments name.
	repo := &loopRepo{vcs: vcs}
	var secret string
	if vcs == "git" {
		repo.git = newRepo(t, files)
		repo.dir, repo.branch = repo.git.dir, "main"
		secret = inst.register(t, name, repo.git)
	} else {
		repo.hg = newHgRepo(t)
		repo.hg.commit("greeter", files)
		repo.dir, repo.branch = repo.hg.dir, "default"
		resp, err := inst.client.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: name, CloneUrl: repo.dir, Vcs: "hg"})
		if err != nil {
			t.Fatalf("RegisterRepository (hg): %v", err)
		}
		if b := resp.GetRepository().GetDefaultBranch(); b != "default" {
			t.Errorf("hg repository's default branch %q, want default", b)
		}
		secret = resp.GetWebhookSecret()
	}
	out := shiploopCLI(t, "errors", "project", "create", "greeter-"+vcs, "--repo", name, "--server", inst.GRPCAddr)
	m := dsnLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no DSN in:\n%s", out)
	}
	dsn := m[1]
	shiploopCLI(t, "secret", "set", name, "SENTRY_DSN", "--value", dsn, "--server", inst.GRPCAddr)
	w := inst.watch(t, name)

	// Release 1: build, tests, gate, staging, then production once approved.
	sha1 := loopHead(t, repo)
	repo.push(t, inst, name, secret, strings.Repeat("0", 40), sha1)
	v1, chain1 := passesGate(t, w, vcs, sha1)
	t.Logf("release 1: %s (chain %s)", v1, chain1)
	mark("release 1 passed its gate")
	if vcs == "hg" && !strings.Contains(v1, "+h") || vcs == "git" && !strings.Contains(v1, "+g") {
		t.Errorf("release %q is not a %s version", v1, vcs)
	}
	staged := waitDeployment(t, cl, name, "staging", "release 1 verified in staging", released(v1, eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
	mark("release 1 verified in staging")
	if got := deployedRelease(t, deployRoot, "staging"); got != v1 {
		t.Errorf("staging runs %q, want %s", got, v1)
	}
	if !allChecksPassed(staged) {
		t.Errorf("staging checks of release 1: %s", checksText(staged))
	}
	prod1 := waitDeployment(t, cl, name, "production", "release 1 awaits approval", released(v1, eventsv1.DeployStatus_DEPLOY_STATUS_AWAITING_APPROVAL))
	mark("release 1 awaits approval")
	approved := shiploopCLI(t, "deploy", "approve", prod1.GetId(), "--by", "alice", "--comment", "staging looks good", "--server", inst.GRPCAddr)
	if !strings.Contains(approved, "alice") {
		t.Errorf("deploy approve printed:\n%s", approved)
	}
	waitDeployment(t, cl, name, "production", "release 1 verifying in production", released(v1, eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING))
	mark("release 1 verifying in production")
	// Users: the transactions they cause are the evidence that the release
	// runs and is healthy.
	for i := range 5 {
		if code, body := appGet(t, productionPort, "/"); code != 200 || body != "hello, world\n" {
			t.Fatalf("request %d to release 1 in production: %d %q", i, code, body)
		}
	}
	good := waitDeployment(t, cl, name, "production", "release 1 verified in production", func(d *deploysv1.Deployment) bool {
		switch d.GetStatus() {
		case eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED, eventsv1.DeployStatus_DEPLOY_STATUS_FAILED, eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK,
			eventsv1.DeployStatus_DEPLOY_STATUS_PAUSED, eventsv1.DeployStatus_DEPLOY_STATUS_CANCELED, eventsv1.DeployStatus_DEPLOY_STATUS_INTERRUPTED:
			return d.GetRelease() == v1 && d.GetKind() == "deploy"
		}
		return false
	})
	if good.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED || !allChecksPassed(good) {
		t.Fatalf("release 1 in production: %s (%s)\n%s", good.GetStatus(), good.GetReason(), checksText(good))
	}
	for _, c := range good.GetChecks() {
		if strings.HasPrefix(c.GetCheck(), "errortrack.") && !strings.Contains(c.GetReason(), "evidence: 0 error(s)") {
			t.Errorf("release 1's %s passed without saying what it stands on: %s", c.GetCheck(), c.GetReason())
		}
	}
	if got := deployedRelease(t, deployRoot, "production"); got != v1 {
		t.Errorf("production runs %q, want %s", got, v1)
	}

	mark("release 1 verified in production")

	// Release 2 divides by zero on every request to /. Its tests pass (they
	// do not request /), the gate passes, staging's smoke check passes.
	badApp := strings.Replace(goodApp, `                body = index()
                STATS["served"] += 1`, `                ratio = STATS["errors"] / STATS["served"]
                body = index() + "error ratio: %.2f\n" % ratio
                STATS["served"] += 1`, 1)
	if badApp == goodApp {
		t.Fatal("testdata/closedloop/app.py changed: the bad release's edit no longer applies")
	}
	sha2 := repo.commit("show the error ratio on /", map[string]string{"app.py": badApp})
	repo.push(t, inst, name, secret, sha1, sha2)
	v2, chain2 := passesGate(t, w, vcs, sha2)
	t.Logf("release 2: %s (chain %s)", v2, chain2)
	mark("release 2 passed its gate")
	waitDeployment(t, cl, name, "staging", "release 2 through staging", released(v2, eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
	mark("release 2 verified in staging")
	prod2 := waitDeployment(t, cl, name, "production", "release 2 awaits approval", released(v2, eventsv1.DeployStatus_DEPLOY_STATUS_AWAITING_APPROVAL))
	shiploopCLI(t, "deploy", "approve", prod2.GetId(), "--by", "bob", "--comment", "ship it", "--server", inst.GRPCAddr)
	verifying := waitDeployment(t, cl, name, "production", "release 2 verifying in production", released(v2, eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING))
	mark("release 2 verifying in production")
	if got := deployedRelease(t, deployRoot, "production"); got != v2 {
		t.Fatalf("production runs %q, want %s", got, v2)
	}
	for i := range 5 {
		if code, body := appGet(t, productionPort, "/"); code != 500 {
			t.Fatalf("request %d to release 2 in production: %d %q, want 500", i, code, body)
		}
	}

	// Verification fails on the new issue and rolls production back to
	// release 1, in the bad change's chain.
	var rolled *eventsv1.DeployRolledBack
	var rolledEv *eventsv1.Event
	for rolled == nil {
		evs := w.until("deploy.rolled_back", 60*time.Second)
		ev := evs[len(evs)-1]
		if rb := payload(t, ev, &eventsv1.DeployRolledBack{}); rb.GetDeploy().GetEnvironment() == "production" {
			rolled, rolledEv = rb, ev
		} else {
			t.Errorf("rolled back in %s: %+v", rb.GetDeploy().GetEnvironment(), rb)
		}
	}
	if rolled.GetFromRelease() != v2 || rolled.GetToRelease() != v1 || rolled.GetRolledBackDeployId() != verifying.GetId() {
		t.Errorf("deploy.rolled_back %+v, want %s → %s of %s", rolled, v2, v1, verifying.GetId())
	}
	if rolledEv.GetChainId() != chain2 {
		t.Errorf("deploy.rolled_back in chain %s, want the bad change's %s", rolledEv.GetChainId(), chain2)
	}
	// The cause: the new issue, of release 2, in production (the SDK took
	// both from the deploy job's SENTRY_RELEASE and SENTRY_ENVIRONMENT).
	wantCause := regexp.MustCompile(`errortrack\.new_issues == 0: .*` + regexp.QuoteMeta(" in "+v2+" on production") + `.*ZeroDivisionError`)
	if !wantCause.MatchString(rolled.GetCause()) {
		t.Errorf("rollback cause %q does not name the new ZeroDivisionError issue", rolled.GetCause())
	}
	bad, err := cl.GetDeployment(ctx, &deploysv1.GetDeploymentRequest{Id: verifying.GetId()})
	mark("release 2 rolled back")
	if err != nil {
		t.Fatal(err)
	}
	badDep := bad.GetDeployment()
	if badDep.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK || !wantCause.MatchString(badDep.GetReason()) {
		t.Errorf("release 2 in production: %s %q", badDep.GetStatus(), badDep.GetReason())
	}
	if took := badDep.GetFinishedAt().AsTime().Sub(badDep.GetStartedAt().AsTime()); took >= 20*time.Second+10*time.Second {
		t.Errorf("release 2 ended %s after it started: not within its 20s window", took)
	}
	back := waitDeployment(t, cl, name, "production", "release 1 restored", func(d *deploysv1.Deployment) bool {
		return d.GetKind() == "rollback" && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
	})
	if back.GetRelease() != v1 || back.GetRollbackOf() != verifying.GetId() || !wantCause.MatchString(back.GetCause()) {
		t.Errorf("rollback %s of %s (of %s): %q", back.GetKind(), back.GetRelease(), back.GetRollbackOf(), back.GetCause())
	}
	if got := deployedRelease(t, deployRoot, "production"); got != v1 {
		t.Errorf("production runs %q after the rollback, want %s", got, v1)
	}
	if code, body := appGet(t, productionPort, "/"); code != 200 || body != "hello, world\n" {
		t.Errorf("production after the rollback answers %d %q", code, body)
	}

	// errortrack: the issue, under release 2 in production, from the SDK.
	issues := waitErrorIssues(t, et, "greeter-"+vcs, "the ZeroDivisionError issue", func(is []*errortrackv1.Issue) bool {
		return len(is) > 0
	})
	if len(issues) != 1 || !strings.Contains(issues[0].GetTitle(), "ZeroDivisionError") {
		t.Errorf("issues: %v", issues)
	}

	// watch --chain <bad change> shows the story to its end.
	chainLines := watchChain(t, inst, chain2, "deploy.rolled_back")
	for _, typ := range []string{"change.pushed", "build.finished", "gate.evaluated", "deploy.approved", "deploy.rolled_back"} {
		if !strings.Contains(chainLines, `"dev.shiploop.`+typ+`.v1"`) {
			t.Errorf("watch --chain %s lacks %s:\n%s", chain2, typ, chainLines)
		}
	}

	// deploy status: production runs release 1, put back by the rollback.
	status := shiploopCLI(t, "deploy", "status", name, "--server", inst.GRPCAddr)
	t.Logf("shiploop deploy status %s:\n%s", name, status)
	if prod := lineOf(status, "production"); !strings.Contains(prod, v1+" (rollback)") || !strings.Contains(prod, "rolled back from "+v2+": verification failed") || !strings.Contains(prod, "ZeroDivisionError") {
		t.Errorf("deploy status does not say production runs %s, put back by the rollback of %s:\n%s", v1, v2, status)
	}
	if stg := lineOf(status, "staging"); !strings.Contains(stg, v2) {
		t.Errorf("deploy status does not say staging runs %s:\n%s", v2, status)
	}
	envs, err := cl.ListEnvironments(ctx, &deploysv1.ListEnvironmentsRequest{Repository: name})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range envs.GetEnvironments() {
		switch e.GetName() {
		case "production":
			if e.GetCurrentRelease() != v1 || !e.GetCurrentByRollback() || e.GetRolledBackRelease() != v2 || !strings.Contains(e.GetCurrentCause(), "ZeroDivisionError") {
				t.Errorf("production: %s by rollback %v of %q: %q", e.GetCurrentRelease(), e.GetCurrentByRollback(), e.GetRolledBackRelease(), e.GetCurrentCause())
			}
		case "staging":
			if e.GetCurrentRelease() != v2 {
				t.Errorf("staging runs %s, want %s", e.GetCurrentRelease(), v2)
			}
		}
	}

	mark("rollback checked")

	// DORA: two production deploys, one failed; the rollback is no deploy.
	dora := settles(t, "DORA counts the two production deploys, one failed", func() (string, bool) {
		out, err := exec.Command(binary, "dora", name, "--json", "--server", inst.GRPCAddr).CombinedOutput()
		if err != nil {
			return fmt.Sprintf("%v: %s", err, out), false
		}
		var d dashboardsv1.DoraResponse
		if err := protojson.Unmarshal(out, &d); err != nil {
			return fmt.Sprintf("%v: %s", err, out), false
		}
		return string(out), d.GetDeploys() == 2 && d.GetFailedDeploys() == 1
	})
	t.Logf("shiploop dora %s --json: %s", name, dora)
	var doraResp dashboardsv1.DoraResponse
	_ = protojson.Unmarshal([]byte(dora), &doraResp)
	metrics := map[string]*dashboardsv1.DoraMetric{}
	for _, mt := range doraResp.GetMetrics() {
		metrics[mt.GetName()] = mt
	}
	if cfr := metrics["change_failure_rate"]; !cfr.GetHasValue() || cfr.GetValue() != 0.5 || cfr.GetDisplay() != "50%" {
		t.Errorf("change failure rate %v, want 0.5 (1 of 2 production deploys)", cfr)
	}
	// The rollback is rework: 1 of 3 (2 deploys and 1 rollback).
	if rw := metrics["rework_rate"]; !rw.GetHasValue() || math.Abs(rw.GetValue()-1.0/3) > 1e-9 {
		t.Errorf("rework rate %v, want 1/3", rw)
	}
	if ttr := metrics["time_to_restore"]; !ttr.GetHasValue() {
		t.Errorf("time to restore %v: the rollback restored production", ttr)
	}

	// Badges and pages say the same.
	badges := map[string]string{
		"deploy/production": v1,
		"deploy/staging":    v2,
		"build":             "passing",
		"tests":             "3 passed",
		"gate":              "passed",
	}
	for path, want := range badges {
		settles(t, "badge "+path+" says "+want, func() (string, bool) {
			msg := badgeMessage(t, inst, name, path)
			return msg, msg == want
		})
	}
	settles(t, "the environments page shows release 1 in production, put back by the rollback", func() (string, bool) {
		page := webPage(t, inst, "/environments")
		row := envRow(page, name, "production")
		return row, strings.Contains(row, v1) && !strings.Contains(row, ">"+v2+" ") && strings.Contains(row, "by rollback") && strings.Contains(row, "ZeroDivisionError")
	})
	settles(t, "the DORA page counts 2 production deploys, 1 failed", func() (string, bool) {
		page := webPage(t, inst, "/dora?repo="+name)
		return page, strings.Contains(page, "2 production deploys, 1 failed")
	})
	settles(t, "the change page of release 2 shows its rollback", func() (string, bool) {
		page := webPage(t, inst, "/changes/"+chain2)
		return page, strings.Contains(page, v2) && strings.Contains(page, "rolled")
	})
}

// loopHead is the repository's current commit.
func loopHead(t *testing.T, r *loopRepo) string {
	t.Helper()
	if r.git != nil {
		return r.git.git("rev-parse", "HEAD")
	}
	return r.hg.hg("log", "-r", ".", "-T", "{node}")
}

// passesGate follows the build of commit to its gate, which must pass with
// the tests, coverage and flake8 report it judged; it returns the release
// and the change's chain id.
func passesGate(t *testing.T, w *watcher, vcs, commit string) (version, chain string) {
	t.Helper()
	var finished *eventsv1.BuildFinished
	var run *eventsv1.TestRunFinished
	var steps []string // when each stage ended, after the push
	var pushed time.Time
	for {
		evs := w.until("gate.evaluated", 90*time.Second)
		for _, ev := range evs {
			typ := short(ev.GetType())
			if typ == "change.pushed" {
				pushed = ev.GetTime().AsTime()
			}
			if !pushed.IsZero() && (strings.HasSuffix(typ, ".finished") || strings.HasSuffix(typ, ".started") || typ == "gate.evaluated") {
				steps = append(steps, fmt.Sprintf("%s +%.1fs", typ, ev.GetTime().AsTime().Sub(pushed).Seconds()))
			}
			switch typ {
			case "build.finished":
				if b := payload(t, ev, &eventsv1.BuildFinished{}); b.GetCommit() == commit {
					finished = b
				}
			case "testrun.finished":
				if r := payload(t, ev, &eventsv1.TestRunFinished{}); r.GetCommit() == commit {
					run = r
				}
			}
		}
		ev := evs[len(evs)-1]
		g := payload(t, ev, &eventsv1.GateEvaluated{})
		if g.GetCommit() != commit {
			continue
		}
		if finished == nil || finished.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
			t.Fatalf("%s build of %s: %+v", vcs, commit, finished)
		}
		if run == nil || run.GetStatus() != eventsv1.TestRunStatus_TEST_RUN_STATUS_PASSED || run.GetCounts().GetPassed() != 3 || run.GetCoverage().GetLinesTotal() == 0 {
			t.Fatalf("test run of %s: %+v", commit, run)
		}
		if g.GetStatus() != eventsv1.GateStatus_GATE_STATUS_PASSED {
			t.Fatalf("gate of %s: %s: %s", commit, g.GetStatus(), g.GetSummary())
		}
		judged := map[string]bool{}
		for _, c := range g.GetConditions() {
			judged[c.GetMetric()] = true
		}
		for _, m := range []string{"tests_failed", "tests_total", "coverage", "issues"} {
			if !judged[m] {
				t.Errorf("gate of %s did not judge %s: %s", commit, m, g.GetSummary())
			}
		}
		t.Logf("%s push of %s: %s", vcs, commit[:12], strings.Join(steps, ", "))
		return g.GetVersion(), ev.GetChainId()
	}
}

func allChecksPassed(d *deploysv1.Deployment) bool {
	if len(d.GetChecks()) == 0 {
		return false
	}
	for _, c := range d.GetChecks() {
		if c.GetStatus() != eventsv1.CheckStatus_CHECK_STATUS_SUCCESS {
			return false
		}
	}
	return true
}

func checksText(d *deploysv1.Deployment) string {
	var b strings.Builder
	for _, c := range d.GetChecks() {
		fmt.Fprintf(&b, "  %s: %s — %s\n", c.GetCheck(), c.GetStatus(), c.GetReason())
	}
	return b.String()
}

// freePort is a port nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	addr := freeAddr(t)
	return addr[strings.LastIndexByte(addr, ':')+1:]
}

// appGet requests path from the deployed service on port.
func appGet(t *testing.T, port, path string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + port + path)
	if err != nil {
		t.Fatalf("GET %s on port %s: %v", path, port, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// deployedRelease is the release deploy.sh last installed in env.
func deployedRelease(t *testing.T, root, env string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, env, "RELEASE"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// stopDeployedServers stops the servers deploy.sh left running under root.
func stopDeployedServers(t *testing.T, root string) {
	pids, _ := filepath.Glob(filepath.Join(root, "*", "app.pid"))
	for _, p := range pids {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 50 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond) // bounded: 5s, then SIGKILL
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(filepath.Dir(p), "app.log")); err == nil {
				t.Logf("%s:\n%s", filepath.Join(filepath.Dir(p), "app.log"), log)
			}
		}
	}
}

// watchChain runs `shiploop watch --chain ID --json` until a line of type
// last arrives (at most 30 s) and returns what it printed.
func watchChain(t *testing.T, inst *instance, chain, last string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "watch", "--chain", chain, "--json", "--server", inst.GRPCAddr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()
	var b strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), `"dev.shiploop.`+last+`.v1"`) {
			return b.String()
		}
	}
	t.Errorf("shiploop watch --chain %s printed no %s within 30s:\n%s\nstderr: %s", chain, last, b.String(), stderr.String())
	return b.String()
}

func lineOf(text, word string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			return l
		}
	}
	return ""
}

// settles retries check (the read models are projected from events,
// so they follow a moment later) for up to 20 s; the test fails with the
// last thing seen.
func settles(t *testing.T, what string, check func() (string, bool)) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		seen, ok := check()
		if ok {
			return seen
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: not within 20s; last:\n%s", what, seen)
			return seen
		}
		time.Sleep(200 * time.Millisecond) // polling with a deadline
	}
}

func badgeMessage(t *testing.T, inst *instance, repo, path string) string {
	t.Helper()
	resp, err := http.Get(inst.HTTPURL + "/badges/" + repo + "/" + path + ".json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct {
		Message string `json:"message"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &b); err != nil {
		return fmt.Sprintf("HTTP %d %s", resp.StatusCode, raw)
	}
	return b.Message
}

func webPage(t *testing.T, inst *instance, path string) string {
	t.Helper()
	resp, err := http.Get(inst.HTTPURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Sprintf("HTTP %d %s", resp.StatusCode, b)
	}
	return html.UnescapeString(string(b)) // html/template writes + as &#43;
}

// envRow is the environments page's row of repo's env.
func envRow(page, repo, env string) string {
	for _, row := range strings.Split(page, `<tr class="environment">`)[1:] {
		if end := strings.Index(row, "</tr>"); end >= 0 {
			row = row[:end]
		}
		// The environment's name links to its own page.
		if strings.Contains(row, "<td>"+repo+"</td><td>") && strings.Contains(row, `">`+env+"</a>") {
			return row
		}
	}
	return ""
}
