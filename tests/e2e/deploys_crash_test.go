package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// slowDeployConfig deploys to acceptance automatically and to production
// after one approval. Each run of a deploy step leaves a marker file named
// after the environment and the shell's pid, then takes 3 s: the test can
// kill the deploys service while the step runs, and count the runs.
func slowDeployConfig(marks string) string {
	return fmt.Sprintf(`steps:
  - name: build
    commands: [echo building $SHIPLOOP_VERSION]
environments:
  - name: acceptance
    auto: true
    variables: {MARKS: %[1]q}
    steps:
      - name: deploy
        commands: ['touch $MARKS/$SHIPLOOP_ENVIRONMENT-$$', 'sleep 3', 'echo deployed $SHIPLOOP_VERSION']
  - name: production
    approval: {required: 1}
    variables: {MARKS: %[1]q}
    steps:
      - name: deploy
        commands: ['touch $MARKS/$SHIPLOOP_ENVIRONMENT-$$', 'sleep 3', 'echo deployed $SHIPLOOP_VERSION']
`, marks)
}

// TestDeploysKilledMidDeploy: in split mode (standalone nats-server,
// PostgreSQL, builds, testruns, gates, deploys and an agent as separate
// processes), the deploys process is killed with SIGKILL while a deploy
// job runs (restarted after the job ended, and again restarted while it
// still runs), while a deploy awaits an approval, and while it waits for a
// person's lock. Each time the restarted service carries the deployment
// through: the deploy step runs exactly once per environment, each
// deployment starts and finishes once, and the environments show the
// release.
func TestDeploysKilledMidDeploy(t *testing.T) {
	natsURL := startNATSServer(t, natsServerBinary(t))
	dbURL := createDatabase(t)
	common := []string{"--nats-url", natsURL, "--database-url", dbURL}
	inst := startServer(t, "serve", append(common, "--data-dir", t.TempDir(), "builds")...)
	for _, svc := range []string{"testruns", "gates"} {
		startServer(t, "serve", append(common, "--data-dir", t.TempDir(), svc)...)
	}
	grpcAddr := freeAddr(t)
	deploys := &killable{name: "serve deploys", ready: readyJSON,
		args: append(append([]string{"serve", "--json"}, common...), "--data-dir", t.TempDir(), "--http-listen", "127.0.0.1:0", "--grpc-listen", grpcAddr,
			"--carbon-listen", "127.0.0.1:0", "--pickle-listen", "127.0.0.1:0", "deploys")}
	if err := deploys.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deploys.stop(t) })
	startAgent(t, natsURL)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cl := deploysv1.NewDeployServiceClient(conn)
	ctx := context.Background()

	marks := t.TempDir()
	runs := func(env string) int {
		m, err := filepath.Glob(filepath.Join(marks, env+"-*"))
		if err != nil {
			t.Fatal(err)
		}
		return len(m)
	}
	waitRun := func(env string) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); runs(env) == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the %s deploy step never started", env)
			}
		}
	}
	restart := func() {
		t.Helper()
		if err := deploys.start(); err != nil {
			t.Fatal(err)
		}
	}
	const repoName = "acme/deploycrash"
	repo := newRepo(t, map[string]string{".shiploop.yml": slowDeployConfig(marks)})
	secret := inst.register(t, repoName, repo)
	w := inst.watch(t, repoName)
	var seen []*eventsv1.Event
	until := func(typ string) *eventsv1.Event {
		t.Helper()
		evs := w.until(typ, 90*time.Second)
		seen = append(seen, evs...)
		return evs[len(evs)-1]
	}
	inst.push(t, repoName, secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))

	// 1. Killed while the acceptance deploy job runs; restarted only after
	// the agent reported the job's end, so the service learns it from the
	// stream on its way back.
	started := payload(t, until("deploy.started"), &eventsv1.DeployStarted{})
	release := started.GetDeploy().GetRelease()
	waitRun("acceptance")
	deploys.kill9()
	for {
		jf := payload(t, until("job.finished"), &eventsv1.JobFinished{})
		if jf.GetJobId() != started.GetJobId() {
			continue // the build's own job
		}
		if jf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
			t.Fatalf("the acceptance deploy job ended %v: %s", jf.GetStatus(), jf.GetError())
		}
		break
	}
	restart()
	acc := waitDeployment(t, cl, repoName, "acceptance", "acceptance deployed after the restart", released(release, eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
	if acc.GetId() != started.GetDeploy().GetDeployId() || acc.GetJobId() != started.GetJobId() {
		t.Errorf("acceptance deployment %s (job %s), want the one started before the kill: %s (job %s)", acc.GetId(), acc.GetJobId(), started.GetDeploy().GetDeployId(), started.GetJobId())
	}

	// 2. Killed while production awaits its approval.
	prod := waitDeployment(t, cl, repoName, "production", "production awaits an approval", released(release, eventsv1.DeployStatus_DEPLOY_STATUS_AWAITING_APPROVAL))
	deploys.kill9()
	restart()
	waitDeployment(t, cl, repoName, "production", "still awaiting the approval after the restart", func(d *deploysv1.Deployment) bool {
		return d.GetId() == prod.GetId() && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_AWAITING_APPROVAL
	})

	// 3. Killed while the approved deploy waits for a person's lock.
	if _, err := cl.Lock(ctx, &deploysv1.LockRequest{Repository: repoName, Environment: "production", Reason: "database migration", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	ap, err := cl.Approve(ctx, &deploysv1.ApproveRequest{DeployId: prod.GetId(), Approver: "alice", Comment: "go"})
	if err != nil {
		t.Fatal(err)
	}
	if d := ap.GetDeployment(); d.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_QUEUED || !strings.Contains(d.GetReason(), "user ops") {
		t.Fatalf("approved into a locked environment: %v (%s), want queued behind ops's lock", d.GetStatus(), d.GetReason())
	}
	deploys.kill9()
	restart()
	waitDeployment(t, cl, repoName, "production", "still queued behind the lock after the restart", func(d *deploysv1.Deployment) bool {
		return d.GetId() == prod.GetId() && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_QUEUED
	})
	if n := runs("production"); n != 0 {
		t.Fatalf("production deploy step ran %d times while the environment was locked", n)
	}

	// 4. Unlocked: the deploy starts; killed while its job runs and
	// restarted at once, before the job ends.
	if _, err := cl.Unlock(ctx, &deploysv1.UnlockRequest{Repository: repoName, Environment: "production", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	waitRun("production")
	deploys.kill9()
	restart()
	waitDeployment(t, cl, repoName, "production", "production deployed after the restart", func(d *deploysv1.Deployment) bool {
		return d.GetId() == prod.GetId() && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
	})
	for {
		if fin := payload(t, until("deploy.finished"), &eventsv1.DeployFinished{}); fin.GetDeploy().GetDeployId() == prod.GetId() {
			break
		}
	}

	// What a user sees: each deploy step ran once, each environment runs
	// the release, and the stream has one start and one end per deployment.
	for _, env := range []string{"acceptance", "production"} {
		if n := runs(env); n != 1 {
			t.Errorf("the %s deploy step ran %d times, want once", env, n)
		}
	}
	envs, err := cl.ListEnvironments(ctx, &deploysv1.ListEnvironmentsRequest{Repository: repoName})
	if err != nil {
		t.Fatal(err)
	}
	if len(envs.GetEnvironments()) != 2 {
		t.Fatalf("environments %v", envs.GetEnvironments())
	}
	for _, e := range envs.GetEnvironments() {
		if e.GetCurrentRelease() != release || e.GetLockedBy() != "" || e.GetPendingDeployId() != "" {
			t.Errorf("environment %s: release %q, locked by %q, pending %q; want %s, unlocked, nothing pending",
				e.GetName(), e.GetCurrentRelease(), e.GetLockedBy(), e.GetPendingDeployId(), release)
		}
	}
	list, err := cl.ListDeployments(ctx, &deploysv1.ListDeploymentsRequest{Repository: repoName})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetDeployments()) != 2 {
		t.Errorf("%d deployments, want 2 (one per environment)", len(list.GetDeployments()))
	}
	// Wait a little so a second deploy.finished or a second run would show.
	time.Sleep(2 * time.Second)
drain:
	for {
		select {
		case ev, ok := <-w.events:
			if !ok {
				break drain
			}
			seen = append(seen, ev)
		default:
			break drain
		}
	}
	startedN, finishedN, jobStarts := map[string]int{}, map[string]int{}, map[string]int{}
	for _, ev := range seen {
		switch short(ev.GetType()) {
		case "deploy.started":
			startedN[payload(t, ev, &eventsv1.DeployStarted{}).GetDeploy().GetDeployId()]++
		case "deploy.finished":
			fin := payload(t, ev, &eventsv1.DeployFinished{})
			finishedN[fin.GetDeploy().GetDeployId()]++
			if fin.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED {
				t.Errorf("deploy.finished %s to %s: %v (%s)", fin.GetDeploy().GetRelease(), fin.GetDeploy().GetEnvironment(), fin.GetStatus(), fin.GetReason())
			}
		case "job.started":
			js := payload(t, ev, &eventsv1.JobStarted{})
			jobStarts[js.GetJobId()]++
			if js.GetAttempt() != 1 {
				t.Errorf("job %s started on attempt %d", js.GetJobId(), js.GetAttempt())
			}
		}
	}
	for _, id := range []string{acc.GetId(), prod.GetId()} {
		if startedN[id] != 1 || finishedN[id] != 1 {
			t.Errorf("deployment %s: %d deploy.started, %d deploy.finished; want one each", id, startedN[id], finishedN[id])
		}
	}
	for job, n := range jobStarts {
		if n != 1 {
			t.Errorf("job %s started %d times", job, n)
		}
	}
	if len(finishedN) != 2 {
		t.Errorf("deploy.finished for %d deployments, want 2: %v", len(finishedN), finishedN)
	}
}
