package e2e

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// crashDeployPushes is how many pushes TestCrashSplitModeThroughDeploy
// sends: SHIPLOOP_CRASH_DEPLOY_PUSHES, default 20 (the load is
// 1000; docs/benchmarks.md records those runs).
func crashDeployPushes(t *testing.T) int {
	n := 20
	if v := os.Getenv("SHIPLOOP_CRASH_DEPLOY_PUSHES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("SHIPLOOP_CRASH_DEPLOY_PUSHES=%q: want a positive number of pushes", v)
		}
	}
	return n
}

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
	n := crashDeployPushes(t)
	natsURL := startNATSServer(t, natsServerBinary(t))
	dbURL := createDatabase(t)
	procs, httpAddr, grpcAddr := startSplit(t, natsURL, dbURL, "testruns", "gates", "deploys")
	pushes := crashDeployRepos(t, grpcAddr, n)
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	stopKills := killDriver(t, procs)
	pushAll(t, httpAddr, pushes, nil)
	pushed := time.Since(start)

	waitChainsTo(t, js, "deploy.finished", n*9/10, 10*time.Minute)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if killedAll(procs) {
			break
		}
	}
	kills := stopKills()
	evs, per := waitChainsTo(t, js, "deploy.finished", n, 10*time.Minute)
	total := time.Since(start)

	missing, dup := verifyChainsOf(t, evs, per, n, "change.pushed", "build.created", "build.finished",
		"testrun.finished", "gate.evaluated", "deploy.started", "deploy.finished")
	if missing+dup > 0 {
		logDLQ(t, js)
	}
	nkills := 0
	for _, k := range kills {
		nkills += k
	}
	t.Logf("crash through deploy: %d pushes (one repository each), %d pipelines, %d events, %d kill -9 (%v); pushes sent in %s, all done in %s; %d actions missing, %d duplicated",
		n, len(per), len(evs), nkills, kills, pushed.Round(time.Second), total.Round(time.Second), missing, dup)
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
