package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/bus"
)

// natsNode is one nats-server of a three-node JetStream cluster on loopback.
type natsNode struct {
	name, conf, clientURL string
	cmd                   *exec.Cmd
	stderr                *output
	exited                chan struct{}
}

func (n *natsNode) start(t *testing.T, bin string) {
	t.Helper()
	n.stderr = newOutput()
	n.cmd = exec.Command(bin, "-c", n.conf)
	n.cmd.Stderr = n.stderr
	n.exited = make(chan struct{})
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", n.name, err)
	}
	cmd, exited := n.cmd, n.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.After(30 * time.Second)
	for {
		if _, ok, _ := n.stderr.find(func(l string) bool { return strings.Contains(l, "Server is ready") }); ok {
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s exited:\n%s", n.name, n.stderr)
		case <-deadline:
			t.Fatalf("%s not ready in 30s:\n%s", n.name, n.stderr)
		case <-time.After(20 * time.Millisecond): // polling its log
		}
	}
}

func (n *natsNode) kill9() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// startNATSCluster starts three nats-server processes clustered with
// JetStream and returns them and the comma-separated client URLs.
func startNATSCluster(t *testing.T, bin string) ([]*natsNode, string) {
	t.Helper()
	var clients, routes []string
	for range 3 {
		clients = append(clients, freeAddr(t))
		routes = append(routes, freeAddr(t))
	}
	var nodes []*natsNode
	var urls []string
	for i := range 3 {
		dir := t.TempDir()
		n := &natsNode{name: fmt.Sprintf("nats-%d", i+1), conf: filepath.Join(dir, "nats.conf"), clientURL: "nats://" + clients[i]}
		var rs []string
		for _, r := range routes {
			rs = append(rs, "nats-route://"+r)
		}
		conf := fmt.Sprintf(`server_name: %s
listen: %s
jetstream { store_dir: %q }
cluster {
  name: shiploop
  listen: %s
  routes: [%s]
}
`, n.name, clients[i], filepath.Join(dir, "js"), routes[i], strings.Join(rs, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		urls = append(urls, n.clientURL)
	}
	// Start all three at once: JetStream waits for the cluster to form.
	done := make(chan struct{})
	for _, n := range nodes {
		go func() { defer func() { done <- struct{}{} }(); n.start(t, bin) }()
	}
	for range nodes {
		<-done
	}
	// Then until the cluster has a JetStream meta leader.
	js := jetStreamAt(t, strings.Join(urls, ","))
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster not ready in 60s: %v", err)
		}
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			select {
			case <-n.exited:
				continue
			default:
			}
			_ = n.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-n.exited:
			case <-time.After(15 * time.Second):
				n.kill9()
			}
			if t.Failed() {
				t.Logf("%s stderr:\n%s", n.name, n.stderr)
			}
		}
	})
	return nodes, strings.Join(urls, ",")
}

// TestNATSClusterNodeKilled: three nats-server nodes clustered on loopback,
// every stream at R3 (`--replicas 3`, agents included). Under a stream of
// pushes the node leading the EVENTS stream is killed with kill -9; the
// services reconnect to the others, the stream elects a new leader, and
// every pipeline completes with each action exactly once. The node is then
// restarted and catches up.
func TestNATSClusterNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	n := envPushes(t, "SHIPLOOP_CLUSTER_PUSHES", 40)
	natsBin := natsServerBinary(t)
	dbURL := createDatabase(t)
	nodes, urls := startNATSCluster(t, natsBin)

	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	serve := &killable{name: "serve builds testruns gates", ready: readyJSON, args: []string{"serve", "--json", "--nats-url", urls, "--replicas", "3",
		"--database-url", dbURL, "--data-dir", t.TempDir(), "--http-listen", httpAddr, "--grpc-listen", grpcAddr,
		"--carbon-listen", "127.0.0.1:0", "--pickle-listen", "127.0.0.1:0", "builds", "testruns", "gates"}}
	procs := []*killable{serve}
	for i := range 2 {
		procs = append(procs, &killable{name: fmt.Sprintf("agent %d", i+1), ready: readyLog,
			args: []string{"agent", "--nats-url", urls, "--replicas", "3", "--data-dir", t.TempDir(), "--lease", "3s"}})
	}
	for _, p := range procs {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.stop(t) })
	}

	js := jetStreamAt(t, urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	leader := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, bus.StreamEvents)
		if err != nil {
			return "unknown (" + err.Error() + ")"
		}
		return st.CachedInfo().Cluster.Leader
	}
	for _, name := range []string{bus.StreamEvents, bus.StreamJobs, bus.StreamDLQ} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := js.Stream(ctx, name)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas after the agents started, want 3", name, r)
		}
	}

	pushes := crashRepo(t, grpcAddr, n)
	var killed *natsNode
	start := time.Now()
	pushAll(t, httpAddr, pushes, func(i int) {
		switch i {
		case n / 3:
			l := leader()
			for _, node := range nodes {
				if node.name == l {
					killed = node
				}
			}
			if killed == nil {
				t.Fatalf("EVENTS leader %q is none of the nodes", l)
			}
			killed.kill9()
			t.Logf("killed %s, the EVENTS leader, after %d pushes", killed.name, i)
		case 2 * n / 3:
			killed.start(t, natsBin)
			t.Logf("restarted %s after %d pushes", killed.name, i)
		}
	})
	evs, per := waitChains(t, js, n, 2*time.Minute) // without progress
	missing, dup := verifyChains(t, evs, per, n)
	logSlowChains(t, evs, 3)
	// Every stream and bucket the pipelines wrote (logs, artifacts and
	// reports included) must be replicated, or its data lives on one node.
	lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
	seen := map[string]bool{}
	for info := range js.ListStreams(lctx).Info() {
		seen[info.Config.Name] = true
		if info.Config.Replicas != 3 {
			t.Errorf("stream %s has %d replicas after the pipelines ran, want 3", info.Config.Name, info.Config.Replicas)
		}
	}
	lcancel()
	for _, name := range []string{"OBJ_logs", "OBJ_artifacts", "KV_job_pools"} {
		if !seen[name] {
			t.Errorf("no stream %s after the pipelines ran (streams: %v)", name, seen)
		}
	}
	if missing > 0 {
		// Where the stalled jobs are: still in JOBS (and with which
		// consumer state), dead-lettered, or held by an agent.
		logJobs(t, js)
		logDLQ(t, js)
		for _, p := range procs {
			p.dumpGoroutines(t)
		}
	}
	t.Logf("cluster: %d pushes, %d pipelines, %d events, EVENTS leader %s killed and restarted; all done in %s; %d actions missing, %d duplicated; new leader %s",
		n, len(per), len(evs), killed.name, time.Since(start).Round(time.Second), missing, dup, leader())
}

// logJobs logs the JOBS stream's consumers and the jobs it still holds,
// to explain a job that never started.
func logJobs(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, bus.StreamJobs)
	if err != nil {
		t.Logf("JOBS: %v", err)
		return
	}
	info := st.CachedInfo()
	t.Logf("JOBS holds %d messages (seq %d..%d), leader %s", info.State.Msgs, info.State.FirstSeq, info.State.LastSeq, info.Cluster.Leader)
	for c := range st.ListConsumers(ctx).Info() {
		t.Logf("JOBS consumer %s (leader %s): delivered %d, ack floor %d, pending %d, ack pending %d, redelivered %d, waiting pulls %d",
			c.Name, c.Cluster.Leader, c.Delivered.Stream, c.AckFloor.Stream, c.NumPending, c.NumAckPending, c.NumRedelivered, c.NumWaiting)
	}
	for seq := info.State.FirstSeq; seq != 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // acked and gone
		}
		t.Logf("JOBS %d %s: %s chain %s", m.Sequence, m.Subject, m.Header.Get(bus.HeaderType), m.Header.Get(bus.HeaderChainID))
	}
}

// logSlowChains logs the k chains that took longest from change.pushed to
// gate.evaluated, each event with its time since the push, to show where a
// fault delayed a pipeline.
func logSlowChains(t *testing.T, evs []bus.Event, k int) {
	t.Helper()
	byChain := map[string][]bus.Event{}
	for _, ev := range evs {
		if ev.ChainID != "" {
			byChain[ev.ChainID] = append(byChain[ev.ChainID], ev)
		}
	}
	type chain struct {
		id   string
		took time.Duration
	}
	var chains []chain
	for id, es := range byChain {
		first, last := es[0].Time, es[0].Time
		for _, ev := range es {
			if ev.Time.Before(first) {
				first = ev.Time
			}
			if ev.Time.After(last) {
				last = ev.Time
			}
		}
		chains = append(chains, chain{id, last.Sub(first)})
	}
	slices.SortFunc(chains, func(a, b chain) int { return int(b.took - a.took) })
	for _, c := range chains[:min(k, len(chains))] {
		es := byChain[c.id]
		first := es[0].Time
		for _, ev := range es {
			if ev.Time.Before(first) {
				first = ev.Time
			}
		}
		var steps []string
		for _, ev := range es {
			steps = append(steps, fmt.Sprintf("%s(%s)+%s", ev.Type, ev.Source, ev.Time.Sub(first).Round(10*time.Millisecond)))
		}
		t.Logf("slow chain %s took %s, started %s: %s", c.id, c.took.Round(10*time.Millisecond), first.Format("15:04:05.000"), strings.Join(steps, " "))
	}
}
