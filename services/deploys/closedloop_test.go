package deploys

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestDeployJobEnvironment: a deploy job carries the release, environment,
// deploy id and previous release as SHIPLOOP_*, and SENTRY_RELEASE and
// SENTRY_ENVIRONMENT for Sentry SDKs; the file's env and a step's env do not
// override SHIPLOOP_*, while a step may set SENTRY_*.
func TestDeployJobEnvironment(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		repo := "acme/envs"
		cfg := `env: {SHIPLOOP_RELEASE: dev, APP: web}
environments:
  - name: staging
    auto: true
    variables: {SHIPLOOP_ENVIRONMENT: nope}
    steps:
      - {name: deploy, commands: [echo], env: {SHIPLOOP_DEPLOY_ID: mine, SENTRY_ENVIRONMENT: stage, OWN: x}}
`
		h.build(repo, "refs/heads/main", "1.0.0", cfg, "push")
		j := h.nextJob()
		d := h.waitFor(repo, "staging", "running", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_RUNNING))
		want := map[string]string{
			"SHIPLOOP_RELEASE": "1.0.0", "SHIPLOOP_VERSION": "1.0.0", "SHIPLOOP_ENVIRONMENT": "staging", "SHIPLOOP_DEPLOY_ID": d.GetId(),
			"SHIPLOOP_PREVIOUS_RELEASE": "", "SHIPLOOP_DEPLOY_KIND": "deploy", "SENTRY_RELEASE": "1.0.0", "SENTRY_ENVIRONMENT": "staging", "APP": "web",
		}
		for k, v := range want {
			if got, ok := j.Environment[k]; !ok || got != v {
				t.Errorf("first deploy: %s = %q (set %v), want %q", k, got, ok, v)
			}
		}
		st := j.Steps[0].Environment
		if _, ok := st["SHIPLOOP_DEPLOY_ID"]; ok || st["SENTRY_ENVIRONMENT"] != "stage" || st["OWN"] != "x" {
			t.Errorf("step env %v: SHIPLOOP_* must be dropped, SENTRY_* and the rest kept", st)
		}
		h.run(j, true)
		h.waitFor(repo, "staging", "1.0.0 deployed", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))

		h.build(repo, "refs/heads/main", "1.1.0", cfg, "push")
		j = h.nextJob()
		if j.Environment["SHIPLOOP_PREVIOUS_RELEASE"] != "1.0.0" || j.Environment["SHIPLOOP_RELEASE"] != "1.1.0" || j.Environment["SENTRY_RELEASE"] != "1.1.0" {
			t.Errorf("second deploy env %v", j.Environment)
		}
		h.run(j, true)
		h.waitFor(repo, "staging", "1.1.0 deployed", is("1.1.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
	})
}

// buildInChain is h.build with the build's events in chain.
func (h *harness) buildInChain(repo, version, config, chain string) {
	h.t.Helper()
	n := builds.Add(1)
	sha := fmt.Sprintf("%040d", n)
	id := fmt.Sprintf("build-%d", n)
	pub := func(typ string, ev bus.Event) {
		ev.ChainID = chain
		if err := h.bus.Publish(context.Background(), ev); err != nil {
			h.t.Fatal(err)
		}
	}
	pub("change.pushed", bus.NewEvent("change.pushed", repo, "", &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Repository: repo, CloneUrl: "/nonexistent", DefaultBranch: "main", Ref: "refs/heads/main", After: sha}))
	pub("build.created", bus.NewEvent("build.created", repo, id, &eventsv1.BuildCreated{BuildId: id, Number: n, Repository: repo, Ref: "refs/heads/main", Commit: sha, Version: version, Trigger: "push", Config: []byte(config)}))
	pub("build.finished", bus.NewEvent("build.finished", repo, id, &eventsv1.BuildFinished{BuildId: id, Number: n, Repository: repo, Ref: "refs/heads/main", Commit: sha, Version: version, Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS}))
}

// failStep plays an agent whose step exits with code.
func (h *harness) failStep(j *eventsv1.Job, step string, code int32) {
	h.t.Helper()
	h.publish("job.started", j.Repository, &eventsv1.JobStarted{JobId: j.JobId, BuildId: j.BuildId, Repository: j.Repository, Agent: "a1", Attempt: 1, StartedAt: timestamppb.Now()})
	h.publish("job.finished", j.Repository, &eventsv1.JobFinished{JobId: j.JobId, BuildId: j.BuildId, Repository: j.Repository, Status: eventsv1.BuildStatus_BUILD_STATUS_FAILURE,
		FailedStep: step, Error: "step " + step + " failed", // what the agent says
		Steps: []*eventsv1.StepResult{{Name: step, Status: eventsv1.BuildStatus_BUILD_STATUS_FAILURE, ExitCode: code, Error: fmt.Sprintf("exit code %d", code)}}})
}

// deployEvents records the deploy.* events of repo.
type deployEvents struct {
	mu  sync.Mutex
	evs []bus.Event
}

func (h *harness) watchDeploys(repo string) *deployEvents {
	h.t.Helper()
	w := &deployEvents{}
	sub, err := h.bus.Conn().Subscribe(bus.EventSubject("deploy.*", repo), func(m *nats.Msg) {
		if ev, err := bus.Decode(m); err == nil {
			w.mu.Lock()
			w.evs = append(w.evs, ev)
			w.mu.Unlock()
		}
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

// wait returns the first event that matches within 10s.
func (w *deployEvents) wait(t *testing.T, what string, ok func(bus.Event) bool) bus.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, ev := range w.evs {
			if ok(ev) {
				w.mu.Unlock()
				return ev
			}
		}
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s event within 10s", what)
	return bus.Event{}
}

// TestFailedStepRollsBack: a failed deploy step ends the deployment FAILED
// with one reason naming the step and exit code; with on_failure: rollback
// the last good release is deployed again, in the bad change's chain, and
// the environment says the previous release runs, by rollback.
func TestFailedStepRollsBack(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		repo := "acme/loop"
		w := h.watchDeploys(repo)
		cfg := `environments:
  - name: staging
    auto: true
    on_failure: rollback
    steps: [{name: deploy, commands: [./deploy.sh]}]
`
		h.buildInChain(repo, "1.0.0", cfg, "chain-good")
		h.run(h.nextJob(), true)
		h.waitFor(repo, "staging", "1.0.0 deployed", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))

		h.buildInChain(repo, "1.1.0", cfg, "chain-bad")
		h.failStep(h.nextJob(), "deploy", 3)
		bad := h.waitFor(repo, "staging", "1.1.0 failed", is("1.1.0", eventsv1.DeployStatus_DEPLOY_STATUS_FAILED))
		if bad.GetReason() != "step deploy failed: exit code 3" {
			t.Errorf("failed deploy's reason %q, want %q", bad.GetReason(), "step deploy failed: exit code 3")
		}
		rbJob := h.nextJob()
		if rbJob.Environment["SHIPLOOP_RELEASE"] != "1.0.0" || rbJob.Environment["SHIPLOOP_DEPLOY_KIND"] != "rollback" || rbJob.ChainId != "chain-bad" {
			t.Fatalf("rollback job chain %q env %v", rbJob.ChainId, rbJob.Environment)
		}
		h.run(rbJob, true)
		back := h.waitFor(repo, "staging", "rollback done", func(d *deploysv1.Deployment) bool {
			return d.GetKind() == "rollback" && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
		})
		if back.GetRelease() != "1.0.0" || back.GetRollbackOf() != bad.GetId() || !strings.Contains(back.GetCause(), "step deploy failed: exit code 3") {
			t.Errorf("rollback %+v", back)
		}
		envs, err := h.api.ListEnvironments(ctx, &deploysv1.ListEnvironmentsRequest{Repository: repo})
		if err != nil {
			t.Fatal(err)
		}
		if e := envs.GetEnvironments()[0]; e.GetCurrentRelease() != "1.0.0" || e.GetCurrentDeployId() != back.GetId() {
			t.Errorf("staging %+v: want 1.0.0 by the rollback %s", e, back.GetId())
		}

		// Every event of the rollback is in the bad change's chain.
		rolled := w.wait(t, "deploy.rolled_back", func(ev bus.Event) bool { return ev.Type == "deploy.rolled_back" })
		if rolled.ChainID != "chain-bad" {
			t.Errorf("deploy.rolled_back chain %q, want chain-bad", rolled.ChainID)
		}
		if d := rolled.Data.(*eventsv1.DeployRolledBack); d.GetRolledBackDeployId() != bad.GetId() || d.GetDeploy().GetBuildId() == "" || d.GetToRelease() != "1.0.0" {
			t.Errorf("deploy.rolled_back %+v", d)
		}
		for _, typ := range []string{"deploy.started", "deploy.finished"} {
			ev := w.wait(t, typ+" of the rollback", func(ev bus.Event) bool { return ev.Type == typ && ev.Subject == back.GetId() })
			if ev.ChainID != "chain-bad" {
				t.Errorf("%s of the rollback: chain %q, want chain-bad", typ, ev.ChainID)
			}
		}
		fin := w.wait(t, "deploy.finished of 1.1.0", func(ev bus.Event) bool { return ev.Type == "deploy.finished" && ev.Subject == bad.GetId() })
		if d := fin.Data.(*eventsv1.DeployFinished); d.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_FAILED || d.GetReason() != "step deploy failed: exit code 3" || fin.ChainID != "chain-bad" {
			t.Errorf("deploy.finished of 1.1.0: %v %q chain %q", d.GetStatus(), d.GetReason(), fin.ChainID)
		}
	})
}

// TestFailedStepStops: without on_failure: rollback a failed step ends the
// deploy FAILED, nothing is deployed again and the last good release stays
// current.
func TestFailedStepStops(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		repo := "acme/stop"
		cfg := `environments:
  - {name: staging, auto: true, steps: [{name: deploy, commands: [./deploy.sh]}]}
`
		h.build(repo, "refs/heads/main", "1.0.0", cfg, "push")
		h.run(h.nextJob(), true)
		h.waitFor(repo, "staging", "1.0.0 deployed", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		h.build(repo, "refs/heads/main", "1.1.0", cfg, "push")
		h.failStep(h.nextJob(), "deploy", 2)
		bad := h.waitFor(repo, "staging", "1.1.0 failed", is("1.1.0", eventsv1.DeployStatus_DEPLOY_STATUS_FAILED))
		if bad.GetReason() != "step deploy failed: exit code 2" {
			t.Errorf("reason %q", bad.GetReason())
		}
		select {
		case j := <-h.jobs:
			t.Fatalf("a job after the failure: %v", j.Environment)
		case <-time.After(300 * time.Millisecond):
		}
	})
}

// TestHgDeployJob: the deploy job of a Mercurial repository's build says
// vcs hg, so the agent does not run git fetch on it.
func TestHgDeployJob(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		repo := "acme/hgapp"
		cfg := `environments:
  - {name: staging, auto: true, steps: [{name: deploy, commands: [./deploy.sh]}]}
`
		n := builds.Add(1)
		sha, id := fmt.Sprintf("%040x", n), fmt.Sprintf("build-%d", n)
		h.publish("change.pushed", repo, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Repository: repo, CloneUrl: "/srv/hg/app", DefaultBranch: "default", Ref: "refs/heads/default", After: sha})
		h.publish("build.created", repo, &eventsv1.BuildCreated{BuildId: id, Number: n, Repository: repo, Ref: "refs/heads/default", Commit: sha, Version: "0.1.0", Trigger: "push", Config: []byte(cfg), Vcs: "hg"})
		h.publish("build.finished", repo, &eventsv1.BuildFinished{BuildId: id, Number: n, Repository: repo, Ref: "refs/heads/default", Commit: sha, Version: "0.1.0", Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS})
		j := h.nextJob()
		if j.Vcs != "hg" || j.CloneUrl != "/srv/hg/app" || j.Commit != sha {
			t.Fatalf("deploy job vcs %q clone %q commit %q, want hg", j.Vcs, j.CloneUrl, j.Commit)
		}
		h.run(j, true)
		h.waitFor(repo, "staging", "deployed", is("0.1.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		// A git repository's job says nothing (git is the default).
		h.build("acme/gitapp", "refs/heads/main", "1.0.0", cfg, "push")
		if j := h.nextJob(); j.Vcs != "" {
			t.Errorf("git deploy job vcs %q", j.Vcs)
		}
	})
}

// TestDeployJobCloneURLWithoutChange: a build whose change.pushed has not
// been handled yet (JetStream redelivers a lost message after the ack wait,
// while the build's later events arrive at once) still gets a deploy job
// that can fetch it: the clone URL comes with build.created. Before, the job
// went out with no clone URL and the agent failed it ("clone URL "":
// empty"), seen in TestCrashSplitModeThroughDeploy with a repository per push.
func TestDeployJobCloneURLWithoutChange(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		repo := "acme/nochange"
		cfg := "environments:\n  - {name: staging, auto: true, steps: [{name: deploy, commands: [./deploy.sh]}]}\n"
		n := builds.Add(1)
		sha, id := fmt.Sprintf("%040x", n), fmt.Sprintf("build-%d", n)
		h.publish("build.created", repo, &eventsv1.BuildCreated{BuildId: id, Number: n, Repository: repo, Ref: "refs/heads/main", Commit: sha, Version: "0.2.0",
			Trigger: "push", Config: []byte(cfg), CloneUrl: "https://git.example/acme/nochange.git"})
		h.publish("build.finished", repo, &eventsv1.BuildFinished{BuildId: id, Number: n, Repository: repo, Ref: "refs/heads/main", Commit: sha, Version: "0.2.0", Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS})
		if j := h.nextJob(); j.CloneUrl != "https://git.example/acme/nochange.git" || j.Commit != sha {
			t.Fatalf("deploy job clone URL %q commit %q, want build.created's clone URL", j.CloneUrl, j.Commit)
		}
	})
}
