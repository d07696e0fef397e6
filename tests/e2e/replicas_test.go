package e2e

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// replicaServices are the services TestCrashReplicas runs three times
// each: every one that acts on a pipeline.
var replicaServices = []string{"builds", "testruns", "gates", "deploys"}

// TestCrashReplicas: three replicas of each of builds, testruns, gates and
// deploys (and two agents) on one NATS and one PostgreSQL database, one
// push per repository through build → tests → gate → deploy, while the
// crash driver kill -9s any of the 14 processes at random and restarts it.
// Per chain every action must be in EVENTS exactly once, every deploy must
// succeed; then each replica's shiploop_consumer_handled_total shows its
// share of the work since its last start.
func TestCrashReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: pushes and kills")
	}
	n := envPushes(t, "SHIPLOOP_REPLICAS_PUSHES", 24) // the load is 1000: docs/benchmarks.md
	natsURL := startNATSServer(t, natsServerBinary(t))
	dbURL := createDatabase(t)
	common := func(dir string) []string {
		return []string{"--json", "--nats-url", natsURL, "--database-url", dbURL, "--data-dir", dir,
			"--carbon-listen", "127.0.0.1:0", "--pickle-listen", "127.0.0.1:0"}
	}
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	var procs []*killable
	metricsAt := map[*killable]string{}
	for _, svc := range replicaServices {
		for r := range 3 {
			h, g := freeAddr(t), "127.0.0.1:0"
			if svc == "builds" && r == 0 {
				h, g = httpAddr, grpcAddr // the forge's webhook target and the tests' gRPC
			}
			p := &killable{name: fmt.Sprintf("serve %s #%d", svc, r+1), ready: readyJSON,
				args: append(append([]string{"serve"}, common(t.TempDir())...), "--http-listen", h, "--grpc-listen", g, svc)}
			procs = append(procs, p)
			metricsAt[p] = "http://" + h + "/metrics"
		}
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
	crashRun{name: "three replicas each", natsURL: natsURL, httpAddr: httpAddr, procs: procs, pushes: crashDeployRepos(t, grpcAddr, n),
		last: "deploy.finished", timeout: 3 * time.Minute, actions: append(slices.Clone(gateActions), "deploy.started", "deploy.finished"),
		pushNote: " (one repository each)"}.run(t)

	// The spread: each replica's handled events per consumer since it last
	// started (a kill -9 starts the count again).
	for _, svc := range replicaServices {
		var parts []string
		for _, p := range procs {
			if !strings.HasPrefix(p.name, "serve "+svc+" ") {
				continue
			}
			counts := scrapeHandled(t, metricsAt[p])
			keys := make([]string, 0, len(counts))
			for k := range counts {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var cs []string
			for _, k := range keys {
				cs = append(cs, fmt.Sprintf("%s=%d", k, counts[k]))
			}
			parts = append(parts, fmt.Sprintf("%s (started %d times): %s", p.name, p.startCount(), strings.Join(cs, " ")))
		}
		t.Logf("spread of %s: %s", svc, strings.Join(parts, "; "))
	}
}

// scrapeHandled reads shiploop_consumer_handled_total from a process's
// /metrics: events handled per consumer.
func scrapeHandled(t *testing.T, url string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if resp, err = http.Get(url); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("GET %s: %v", url, err)
			return out
		}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Errorf("parsing %s: %v", url, err)
		return out
	}
	if f, ok := fams["shiploop_consumer_handled_total"]; ok {
		for _, m := range f.GetMetric() {
			out[labelOf(m, "consumer")] = int64(m.GetCounter().GetValue())
		}
	}
	return out
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
