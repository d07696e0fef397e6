package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shiploop/shiploop/pkg/bus"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// crashConfig runs the whole pipeline the chain can run off the default
// branch: build, tests with a JUnit report, and a gate on the tests. (Deploys
// follow the default branch only, where each push would supersede the one
// before; see docs/benchmarks.md.)
const crashConfig = `steps:
  - name: build
    commands: [echo building $SHIPLOOP_VERSION]
test:
  steps:
    - name: unit
      commands:
        - mkdir -p reports
        - printf '<testsuite name="calc"><testcase classname="calc" name="TestAdd" time="0.01"/></testsuite>' > reports/TEST-0.xml
  reports: {junit: ["reports/*.xml"]}
gate:
  conditions:
    - {metric: tests_failed, operator: "==", threshold: 0}
`

// killable is a service process the crash driver kill -9s and restarts
// with the same arguments (same data directory, same ports).
type killable struct {
	name  string
	args  []string
	ready func(stdout, stderr *output) bool

	mu     sync.Mutex
	cmd    *exec.Cmd
	stdout *output
	stderr *output
	exited chan struct{}
	log    strings.Builder // every incarnation's stderr, for failures
	starts int
}

func (k *killable) start() error {
	k.mu.Lock()
	k.stdout, k.stderr = newOutput(), newOutput()
	k.cmd = exec.Command(binary, k.args...)
	k.cmd.Stdout, k.cmd.Stderr = k.stdout, k.stderr
	k.exited = make(chan struct{})
	if err := k.cmd.Start(); err != nil {
		k.mu.Unlock()
		return fmt.Errorf("starting %s: %w", k.name, err)
	}
	k.starts++
	cmd, exited, stdout, stderr := k.cmd, k.exited, k.stdout, k.stderr
	go func() { _ = cmd.Wait(); close(exited) }()
	k.mu.Unlock()
	deadline := time.After(60 * time.Second)
	for !k.ready(stdout, stderr) {
		select {
		case <-exited:
			return fmt.Errorf("%s exited before it was ready:\n%s", k.name, stderr)
		case <-deadline:
			return fmt.Errorf("%s not ready within 60s:\n%s", k.name, stderr)
		case <-time.After(20 * time.Millisecond): // polling its output
		}
	}
	return nil
}

// startCount is how many times the process was started.
func (k *killable) startCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.starts
}

// kill9 kills the process without a chance to clean up and waits for it.
func (k *killable) kill9() {
	k.mu.Lock()
	cmd, exited := k.cmd, k.exited
	k.log.WriteString(k.stderr.String())
	k.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop interrupts the process and checks it stops cleanly.
func (k *killable) stop(t *testing.T) {
	k.mu.Lock()
	cmd, exited := k.cmd, k.exited
	k.mu.Unlock()
	select {
	case <-exited:
		t.Errorf("%s exited on its own:\n%s", k.name, k.stderr)
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Errorf("%s still running 20s after SIGINT", k.name)
	}
	if t.Failed() {
		t.Logf("%s stderr (last incarnation):\n%s", k.name, k.stderr)
	}
}

// dumpGoroutines makes a running process print its goroutines (SIGQUIT)
// and logs them with the rest of its stderr; the process exits.
func (k *killable) dumpGoroutines(t *testing.T) {
	t.Helper()
	k.mu.Lock()
	cmd, exited, stderr := k.cmd, k.exited, k.stderr
	k.mu.Unlock()
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
	}
	t.Logf("%s goroutines (SIGQUIT):\n%s", k.name, stderr)
}

func readyJSON(stdout, _ *output) bool {
	_, ok, _ := stdout.find(func(string) bool { return true })
	return ok
}

func readyLog(_, stderr *output) bool {
	_, ok, _ := stderr.find(func(l string) bool { return strings.Contains(l, `msg="shiploop ready"`) })
	return ok
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// envPushes is how many pushes a test sends: the environment variable
// name when set, else def.
func envPushes(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number of pushes", name, v)
	}
	return n
}

// jetStreamAt connects to the NATS server(s) at url, closed at the test's
// end, with opts added.
func jetStreamAt(t *testing.T, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// crashRun is one crash test: pushes sent to httpAddr while killDriver
// kill -9s procs, until every chain has its last event.
type crashRun struct {
	name     string // for the log line
	natsURL  string
	httpAddr string
	procs    []*killable
	pushes   []push
	last     string        // the event that ends a chain
	timeout  time.Duration // how long each of the two waits goes on without a chain completing
	actions  []string      // each exactly once per chain (verifyChainsOf)
	pushNote string        // "" or what the log line says of each push
}

// run sends the pushes under the kill driver, keeps killing until 90% of
// the chains are through (and every process was killed at least twice),
// lets the rest finish on a steady system, and checks every chain.
func (c crashRun) run(t *testing.T) {
	t.Helper()
	js := jetStreamAt(t, c.natsURL)
	n := len(c.pushes)
	start := time.Now()
	stopKills := killDriver(t, c.procs)
	pushAll(t, c.httpAddr, c.pushes, nil)
	pushed := time.Since(start)
	waitChainsTo(t, js, c.last, n*9/10, c.timeout)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if killedAll(c.procs) {
			break
		}
	}
	kills := stopKills()
	evs, per := waitChainsTo(t, js, c.last, n, c.timeout)
	total := time.Since(start)
	missing, dup := verifyChainsOf(t, evs, per, n, c.actions...)
	if missing+dup > 0 {
		logDLQ(t, js)
	}
	nkills := 0
	for _, k := range kills {
		nkills += k
	}
	t.Logf("%s: %d pushes%s, %d pipelines, %d events, %d kill -9 (%v); pushes sent in %s, all done in %s; %d actions missing, %d duplicated",
		c.name, n, c.pushNote, len(per), len(evs), nkills, kills, pushed.Round(time.Second), total.Round(time.Second), missing, dup)
}

// TestCrashSplitMode: in split mode on PostgreSQL, many pushes (one branch
// each) flow through build → tests → gate while a driver kill -9s a random
// service process (builds, testruns, gates, either agent) at random
// moments and restarts it. Webhook deliveries that hit a dead builds
// process are redelivered with the same delivery id, as a forge does. At
// the end every pipeline has completed (gate.evaluated, passed), and per
// chain id the EVENTS stream holds each action exactly once: nothing
// missing, nothing acted on twice.
func TestCrashSplitMode(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: minutes of pushes and kills")
	}
	n := envPushes(t, "SHIPLOOP_CRASH_PUSHES", 100)
	natsBin := natsServerBinary(t)
	dbURL := createDatabase(t)
	natsURL := startNATSServer(t, natsBin)
	procs, httpAddr, grpcAddr := startSplit(t, natsURL, dbURL, "testruns", "gates")
	crashRun{name: "crash", natsURL: natsURL, httpAddr: httpAddr, procs: procs, pushes: crashRepo(t, grpcAddr, n),
		last: "gate.evaluated", timeout: 2 * time.Minute, actions: gateActions}.run(t)
}

// startSplit starts, in split mode on natsURL and dbURL, serve builds (its
// webhook and gRPC addresses returned), serve for each of services, and two
// agents, each a killable process, stopped at the test's end.
func startSplit(t *testing.T, natsURL, dbURL string, services ...string) (procs []*killable, httpAddr, grpcAddr string) {
	t.Helper()
	common := func(dir string) []string {
		return []string{"--json", "--nats-url", natsURL, "--database-url", dbURL, "--data-dir", dir,
			"--carbon-listen", "127.0.0.1:0", "--pickle-listen", "127.0.0.1:0"}
	}
	httpAddr, grpcAddr = freeAddr(t), freeAddr(t)
	procs = []*killable{{name: "serve builds", ready: readyJSON,
		args: append(append([]string{"serve"}, common(t.TempDir())...), "--http-listen", httpAddr, "--grpc-listen", grpcAddr, "builds")}}
	for _, svc := range services {
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
	return procs, httpAddr, grpcAddr
}

// killDriver kill -9s one of procs every 0.3–1.2s, each in turn in a
// shuffled order, and restarts it at once, until the returned stop is
// called (or the test ends); stop returns the kills per process.
func killDriver(t *testing.T, procs []*killable) (stop func() map[string]int) {
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
	var once sync.Once
	stop = func() map[string]int {
		once.Do(func() {
			close(stopKills)
			<-killsDone
		})
		return kills
	}
	// A test that ends early (t.Fatal) must not leave the driver killing
	// and restarting processes its cleanups are stopping.
	t.Cleanup(func() { stop() })
	return stop
}

// push is one webhook delivery to send: a push of sha to ref of repo,
// signed with secret.
type push struct{ repo, secret, ref, sha string }

// registerRepo registers name, cloned from dir, over conn, retrying
// while builds starts, and returns its webhook secret.
func registerRepo(t *testing.T, conn *grpc.ClientConn, name, dir string) string {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		reg, err := buildsv1.NewBuildServiceClient(conn).RegisterRepository(ctx,
			&buildsv1.RegisterRepositoryRequest{Name: name, CloneUrl: dir, DefaultBranch: "main"})
		cancel()
		if err == nil {
			return reg.GetWebhookSecret()
		}
		if time.Now().After(deadline) {
			t.Fatalf("RegisterRepository %s: %v", name, err)
		}
	}
}

// crashRepo registers acme/crash with crashConfig and n commits, each on a
// branch of its own (a newer push to one branch would supersede the older),
// and returns their pushes.
func crashRepo(t *testing.T, grpcAddr string, n int) []push {
	t.Helper()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	repo := newRepo(t, map[string]string{".shiploop.yml": crashConfig})
	secret := registerRepo(t, conn, "acme/crash", repo.dir)
	pushes := make([]push, n)
	for i := range n {
		sha := repo.commit(fmt.Sprintf("change %d", i), map[string]string{"n.txt": strconv.Itoa(i)})
		repo.git("branch", fmt.Sprintf("topic-%d", i), sha)
		pushes[i] = push{repo: "acme/crash", secret: secret, ref: fmt.Sprintf("refs/heads/topic-%d", i), sha: sha}
	}
	return pushes
}

// pushAll sends the pushes in order, each redelivered with its delivery id
// until accepted, as a forge does; between, when set, runs before push i.
func pushAll(t *testing.T, httpAddr string, pushes []push, between func(i int)) {
	t.Helper()
	for i, p := range pushes {
		if between != nil {
			between(i)
		}
		body := pushBody(p.repo, p.ref, zero, p.sha)
		delivery := fmt.Sprintf("crash-%d-%d", time.Now().UnixNano(), i)
		for attempt := 0; ; attempt++ {
			if code, err := postHook(httpAddr, delivery, sign(p.secret, body), body); err == nil && code/100 == 2 {
				break
			} else if attempt > 600 {
				t.Fatalf("push %d never accepted: HTTP %d, %v", i, code, err)
			}
			time.Sleep(100 * time.Millisecond) // a forge's redelivery, compressed
		}
		time.Sleep(30 * time.Millisecond) // spread the pushes over the faults
	}
}

// waitChains polls the EVENTS stream until want chains have their
// gate.evaluated, and returns the events and the counts per chain.
func waitChains(t *testing.T, js jetstream.JetStream, want int, timeout time.Duration) ([]bus.Event, map[string]map[string]int) {
	t.Helper()
	return waitChainsTo(t, js, "gate.evaluated", want, timeout)
}

// waitChainsTo polls the EVENTS stream until want chains have an event of
// type last, and returns the events and the counts per chain. timeout is
// how long it waits without progress: each chain that completes extends
// the wait, so a loaded machine that is slow but moving is not a failure,
// and a stalled system still fails within timeout of its last progress.
func waitChainsTo(t *testing.T, js jetstream.JetStream, last string, want int, timeout time.Duration) ([]bus.Event, map[string]map[string]int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	best := -1
	var lastErr error
	for {
		evs, err := readEvents(js)
		if err != nil {
			lastErr = err
			if time.Now().After(deadline) {
				t.Fatalf("pipelines not readable within %s: %v", timeout, err)
			}
			time.Sleep(500 * time.Millisecond) // polling the stream
			continue
		}
		per := perChain(evs)
		done := 0
		for _, c := range per {
			if c[last] > 0 {
				done++
			}
		}
		if done >= want {
			return evs, per
		}
		if done > best {
			best, deadline = done, time.Now().Add(timeout)
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d pipelines completed, none in the last %s (last read error: %v)", done, want, timeout, lastErr)
			return evs, per
		}
		time.Sleep(500 * time.Millisecond) // polling the stream
	}
}

// verifyChains checks every chain holds each action exactly once, no event
// is stored twice, no job attempt started twice, and every build and gate
// passed. It returns the chain/action pairs missing and those seen more
// than once.
func verifyChains(t *testing.T, evs []bus.Event, per map[string]map[string]int, n int) (missing, dup int) {
	t.Helper()
	return verifyChainsOf(t, evs, per, n, gateActions...)
}

// gateActions are the actions of a chain through the gate, each once.
var gateActions = []string{"change.pushed", "build.created", "build.finished", "testrun.finished", "gate.evaluated"}

// verifyChainsOf is verifyChains for the actions once (and, for a
// deploy.finished among the events, a succeeded deploy).
func verifyChainsOf(t *testing.T, evs []bus.Event, per map[string]map[string]int, n int, once ...string) (missing, dup int) {
	t.Helper()
	if len(per) != n {
		t.Errorf("%d chains in EVENTS, want %d", len(per), n)
	}
	for chain, c := range per {
		for _, typ := range once {
			if c[typ] != 1 {
				if c[typ] == 0 {
					missing++
				} else {
					dup++
				}
				if missing+dup <= 20 {
					var order []string
					for _, ev := range evs {
						if ev.ChainID == chain {
							order = append(order, fmt.Sprintf("%d:%s(%s)", ev.Sequence, ev.Type, ev.Subject))
						}
					}
					t.Errorf("chain %s: %d %s events, want 1; the chain in stream order: %s", chain, c[typ], typ, strings.Join(order, " "))
				}
			}
		}
	}
	ids := map[string]int{}
	started := map[string]int{} // job/attempt -> job.started
	for _, ev := range evs {
		ids[ev.ID]++
		if ids[ev.ID] == 2 {
			t.Errorf("event %s (%s) stored twice", ev.ID, ev.Type)
		}
		switch d := ev.Data.(type) {
		case *eventsv1.JobStarted:
			key := fmt.Sprintf("%s/%d", d.GetJobId(), d.GetAttempt())
			if started[key]++; started[key] == 2 {
				t.Errorf("job %s attempt %d started twice", d.GetJobId(), d.GetAttempt())
			}
		case *eventsv1.BuildFinished:
			if d.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
				t.Errorf("build %s finished %v: %s", d.GetBuildId(), d.GetStatus(), d.GetError())
			}
		case *eventsv1.GateEvaluated:
			if d.GetStatus() != eventsv1.GateStatus_GATE_STATUS_PASSED {
				t.Errorf("gate of chain %s: %v %s", ev.ChainID, d.GetStatus(), d.GetSummary())
			}
		case *eventsv1.DeployFinished:
			if d.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED {
				t.Errorf("deploy of chain %s: %v %s", ev.ChainID, d.GetStatus(), d.GetReason())
			}
		}
	}
	missing += max(0, n-len(per)) * len(once)
	return missing, dup
}

// logDLQ logs what the DLQ stream holds, to explain a stalled chain.
func logDLQ(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		t.Logf("DLQ: %v", err)
		return
	}
	t.Logf("DLQ holds %d messages", st.CachedInfo().State.Msgs)
	for seq := uint64(1); ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if err != nil {
			return
		}
		seq = m.Sequence + 1
		t.Logf("DLQ %d %s: %s %s: %s", m.Sequence, m.Subject, m.Header.Get(bus.HeaderType), m.Header.Get("ce-chainid"), m.Header.Get(bus.HeaderDLQReason))
	}
}

// killedAll reports whether every process was restarted at least twice.
func killedAll(procs []*killable) bool {
	for _, p := range procs {
		p.mu.Lock()
		starts := p.starts
		p.mu.Unlock()
		if starts < 3 {
			return false
		}
	}
	return true
}

// postHook sends one GitHub push delivery to the builds process.
func postHook(addr, delivery, signature string, body []byte) (int, error) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", signature)
	cl := http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var reply struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&reply)
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("HTTP %d: %s", resp.StatusCode, reply.Error)
	}
	return resp.StatusCode, nil
}

// readEvents reads the whole EVENTS stream. Errors are transient while a
// cluster elects a leader; the caller polls again.
func readEvents(js jetstream.JetStream) ([]bus.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("EVENTS stream: %w", err)
	}
	last := st.CachedInfo().State.LastSeq
	if last == 0 {
		return nil, nil
	}
	oc, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var out []bus.Event
	for {
		batch, err := oc.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("reading EVENTS: %w", err)
		}
		var seq uint64
		got := 0
		for m := range batch.Messages() {
			got++
			md, _ := m.Metadata()
			seq = md.Sequence.Stream
			ev, err := bus.Decode(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
			if err != nil {
				return nil, fmt.Errorf("EVENTS seq %d: %w", seq, err)
			}
			ev.Sequence = seq
			out = append(out, ev)
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("reading EVENTS: %w", err)
		}
		if seq >= last {
			return out, nil
		}
		if got == 0 {
			return nil, fmt.Errorf("EVENTS: read up to seq %d of %d", seq, last)
		}
	}
}

// perChain counts event types per chain id.
func perChain(evs []bus.Event) map[string]map[string]int {
	per := map[string]map[string]int{}
	for _, ev := range evs {
		if ev.ChainID == "" {
			continue
		}
		if per[ev.ChainID] == nil {
			per[ev.ChainID] = map[string]int{}
		}
		per[ev.ChainID][ev.Type]++
	}
	return per
}
