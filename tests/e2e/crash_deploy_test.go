package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// crashDeployConfig is crashConfig with an environment every good build of
// the default branch deploys to. Its step is idempotent, so it says
// on_interrupt: rerun: a deploy whose agent is killed mid-step runs again
// on the next agent instead of ending interrupted.
const crashDeployConfig = crashConfig + `environments:
  - name: acceptance
    auto: true
    on_interrupt: rerun
    steps:
      - {name: deploy, commands: [echo deploying $SHIPLOOP_VERSION]}
`

// TestCrashSplitModeThroughDeploy is TestCrashSplitMode with the deploy
// stage: n repositories get one push each to their default branch (pushes
// to one branch would supersede each other, and only the default branch
// deploys), so every push runs build → tests → gate → deploy, while the
// driver kill -9s builds, testruns, gates, deploys and both agents. Per
// chain id each action, deploy.started and deploy.finished included, must
// be in EVENTS exactly once, and every deploy must succeed.
func TestCrashSplitModeThroughDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: pushes and kills")
	}
	n := envPushes(t, "SHIPLOOP_CRASH_DEPLOY_PUSHES", 20) // the load is 1000: docs/benchmarks.md
	natsURL := startNATSServer(t, natsServerBinary(t))
	dbURL := createDatabase(t)
	procs, httpAddr, grpcAddr := startSplit(t, natsURL, dbURL, "testruns", "gates", "deploys")
	crashRun{name: "crash through deploy", natsURL: natsURL, httpAddr: httpAddr, procs: procs, pushes: crashDeployRepos(t, grpcAddr, n),
		last: "deploy.finished", timeout: 3 * time.Minute, actions: append(slices.Clone(gateActions), "deploy.started", "deploy.finished"),
		pushNote: " (one repository each)"}.run(t)
}

// crashDeployRepos registers n repositories, acme/crash-NNNN, on one git
// directory with crashDeployConfig and returns a push of a commit of each
// to its default branch.
func crashDeployRepos(t *testing.T, grpcAddr string, n int) []push {
	t.Helper()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	repo := newRepo(t, map[string]string{".shiploop.yml": crashDeployConfig})
	pushes := make([]push, n)
	for i := range n {
		name := fmt.Sprintf("acme/crash-%04d", i)
		sha := repo.commit(fmt.Sprintf("change %d", i), map[string]string{"n.txt": strconv.Itoa(i)})
		pushes[i] = push{repo: name, secret: registerRepo(t, conn, name, repo.dir), ref: "refs/heads/main", sha: sha}
	}
	return pushes
}
