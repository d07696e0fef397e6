package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
)

// crashDeployConfig is crashConfig with an environment every good build of
// the default branch deploys to.
const crashDeployConfig = crashConfig + `environments:
  - name: acceptance
    auto: true
    steps:
      - {name: deploy, commands: [echo deploying $SHIPLOOP_VERSION]}
`

// TestCrashSplitModeThroughDeploy is TestCrashSplitMode with the deploy
// stage: n repositories get one push each to their default branch (pushes
// to one branch would supersede each other, and only the default branch
// deploys), so every push runs build → tests → gate → deploy, while the
// driver kill -9s builds, testruns, gates, deploys and both agents. Per
// chain id each action, deploy.started and deploy.finished included, must
// be in EVENTS exactly once, and every deploy must succeed. It runs when
// SHIPLOOP_CRASH_DEPLOY_PUSHES is set (the load is 1000); the
// 100-push TestCrashSplitMode runs with every make test.
func TestCrashSplitModeThroughDeploy(t *testing.T) {
	v := os.Getenv("SHIPLOOP_CRASH_DEPLOY_PUSHES")
	if v == "" {
		t.Skip("crash test through deploy: set SHIPLOOP_CRASH_DEPLOY_PUSHES (e.g. 1000) to run it")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("SHIPLOOP_CRASH_DEPLOY_PUSHES=%q: want a positive number of pushes", v)
	}
	natsURL := startNATSServer(t, natsServerBinary(t))
	dbURL := createDatabase(t)
	common := func(dir string) []string {
		return []string{"--json", "--nats-url", natsURL, "--database-url", dbURL, "--data-dir", dir,
			"--carbon-listen", "127.0.0.1:0", "--pickle-listen", "127.0.0.1:0"}
	}
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	procs := []*killable{{name: "serve builds", ready: readyJSON,
		args: append(append([]string{"serve"}, common(t.TempDir())...), "--http-listen", httpAddr, "--grpc-listen", grpcAddr, "builds")}}
	for _, svc := range []string{"testruns", "gates", "deploys"} {
		procs = append(procs, &killable{name: "serve " + svc, ready: readyJSON,
			args: append(append([]string{"serve"}, common(t.TempDir())...), "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", svc)})
	}
	for i := range 2 {
		procs = append(procs, &killable{name: fmt.Sprintf("agent %d", i+1), ready: readyLog,
			args: []string{"agent", "--nats-url", natsURL, "--data-dir", t.TempDir(), "--lease", "3s"}})
	}
	for _, p := range procs {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.stop(t) })
	}

	// n repositories on one git directory, each with a commit of its own.
	repo := newRepo(t, map[string]string{".shiploop.yml": crashDeployConfig})
	commits := make([]string, n)
	for i := range n {
		commits[i] = repo.commit(fmt.Sprintf("change %d", i), map[string]string{"n.txt": strconv.Itoa(i)})
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	names, secrets := make([]string, n), make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("acme/crash-%04d", i)
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			reg, err := buildsv1.NewBuildServiceClient(conn).RegisterRepository(ctx,
				&buildsv1.RegisterRepositoryRequest{Name: names[i], CloneUrl: repo.dir, DefaultBranch: "main"})
			cancel()
			if err == nil {
				secrets[i] = reg.GetWebhookSecret()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("RegisterRepository %s: %v", names[i], err)
			}
		}
	}
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
	stopKills := make(chan struct{})
	killsDone := make(chan struct{})
	kills := map[string]int{}
	go func() {
		defer close(killsDone)
		var order []*killable
		for {
			select {
			case <-stopKills:
				return
			case <-time.After(time.Duration(300+rand.IntN(900)) * time.Millisecond):
			}
			if len(order) == 0 {
				order = append(order, procs...)
				rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			}
			p := order[0]
			order = order[1:]
			p.kill9()
			kills[p.name]++
			if err := p.start(); err != nil {
				t.Errorf("restarting after kill -9: %v", err)
				return
			}
		}
	}()

	for i, sha := range commits {
		body := pushBody(names[i], "refs/heads/main", zero, sha)
		delivery := fmt.Sprintf("crashdeploy-%d-%d", time.Now().UnixNano(), i)
		for attempt := 0; ; attempt++ {
			if code, err := postHook(httpAddr, delivery, sign(secrets[i], body), body); err == nil && code/100 == 2 {
				break
			} else if attempt > 600 {
				t.Fatalf("push %d never accepted: HTTP %d, %v", i, code, err)
			}
			time.Sleep(100 * time.Millisecond) // a forge's redelivery, compressed
		}
		time.Sleep(30 * time.Millisecond) // spread the pushes over the faults
	}
	pushed := time.Since(start)

	waitChainsTo(t, js, "deploy.finished", n*9/10, 10*time.Minute)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if killedAll(procs) {
			break
		}
	}
	close(stopKills)
	<-killsDone
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
