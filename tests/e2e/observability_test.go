package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestMetricsScrape: `shiploop up` serves /metrics in the Prometheus text
// format. After one push has become a finished build, a scrape has the
// build's duration, consumer lag per consumer, the outbox depth per
// service, the DLQ and job queue gauges, and the webhook's latency under
// its route pattern.
func TestMetricsScrape(t *testing.T) {
	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": goodConfig, "src/app.txt": "v1\n"})
	secret := inst.register(t, "acme/metrics", repo)
	w := inst.watch(t, "acme/metrics")
	if res := inst.push(t, "acme/metrics", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD")); res.Status != 202 {
		t.Fatalf("push: HTTP %d %s", res.Status, res.Raw)
	}
	w.until("build.finished", 60*time.Second)
	// Every service of up is ready: its consumers (services.go) exist.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r := getReadyz(t, inst.HTTPURL+"/readyz")
		if r.code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("up's /readyz: %d %s", r.code, r.raw)
		}
	}

	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		fams = scrape(t, inst.HTTPURL)
		if sampleCount(fams["shiploop_build_duration_seconds"]) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no build duration observed within 10s of build.finished:\n%v", fams["shiploop_build_duration_seconds"])
		}
	}
	hooks := 0
	for _, m := range family(t, fams, "shiploop_http_request_duration_seconds").GetMetric() {
		if label(m, "route") == "POST /hooks/{forge}" {
			hooks += int(m.GetHistogram().GetSampleCount())
		}
		if r := label(m, "route"); strings.Contains(r, "acme") {
			t.Errorf("HTTP latency labelled with a raw path: %q", r)
		}
	}
	if hooks < 1 {
		t.Errorf("no latency observed for route POST /hooks/{forge}")
	}
	consumers := map[string]bool{}
	for _, m := range family(t, fams, "shiploop_consumer_pending_messages").GetMetric() {
		consumers[label(m, "consumer")] = true
		if v := m.GetGauge().GetValue(); v < 0 {
			t.Errorf("consumer %s lag %v", label(m, "consumer"), v)
		}
	}
	for _, c := range []string{"builds-changes", "builds-jobs", "testruns-jobs", "gates-events", "deploys-events", "dashboards-events", "metrics-events"} {
		if !consumers[c] {
			t.Errorf("no lag gauge for consumer %s (have %v)", c, consumers)
		}
	}
	handled := map[string]float64{}
	for _, m := range family(t, fams, "shiploop_consumer_handled_total").GetMetric() {
		handled[label(m, "consumer")] = m.GetCounter().GetValue()
	}
	for _, c := range []string{"builds-changes", "gates-events", "deploys-events"} {
		if handled[c] < 1 {
			t.Errorf("consumer %s handled %v events after a push, want some (have %v)", c, handled[c], handled)
		}
	}
	outbox := map[string]bool{}
	for _, m := range family(t, fams, "shiploop_outbox_depth").GetMetric() {
		outbox[label(m, "service")] = true
	}
	for _, s := range []string{"builds", "gates", "deploys"} {
		if !outbox[s] {
			t.Errorf("no outbox depth for %s (have %v)", s, outbox)
		}
	}
	if g := family(t, fams, "shiploop_dlq_messages").GetMetric(); len(g) != 1 || g[0].GetGauge().GetValue() != 0 {
		t.Errorf("shiploop_dlq_messages = %v, want one gauge 0", g)
	}
	pools := map[string]bool{}
	for _, m := range family(t, fams, "shiploop_job_queue_depth").GetMetric() {
		pools[label(m, "kind")+"/"+label(m, "pool")] = true
	}
	if !pools["build/any"] {
		t.Errorf("no job queue depth for the build/any pool (have %v)", pools)
	}
	if g := family(t, fams, "shiploop_agents").GetMetric(); len(g) != 1 || g[0].GetGauge().GetValue() != 1 {
		t.Errorf("shiploop_agents = %v, want 1 (up's agent)", g)
	}
	family(t, fams, "shiploop_grpc_request_duration_seconds")
}

// TestReadiness: /readyz answers 200 while every service is ready. In
// split mode, with the nats-server gone, /readyz turns 503 naming NATS and
// the gRPC health of BuildService turns NOT_SERVING, while /livez stays
// ok; with it back on the same port, both return to ready.
func TestReadiness(t *testing.T) {
	bin := natsServerBinary(t)
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	dir := t.TempDir()
	var nats *exec.Cmd
	natsStart := func() {
		t.Helper()
		nats = exec.Command(bin, "-a", "127.0.0.1", "-p", port, "-js", "-sd", dir)
		out := newOutput()
		nats.Stderr = out
		if err := nats.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, ok, _ := out.find(func(l string) bool { return strings.Contains(l, "Server is ready") }); ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("nats-server not ready within 30s:\n%s", out)
			}
		}
	}
	natsKill := func() { _ = nats.Process.Kill(); _ = nats.Wait() }
	natsStart()
	t.Cleanup(func() { natsKill() })
	inst := startServer(t, "serve", "--nats-url", "nats://127.0.0.1:"+port, "--data-dir", t.TempDir(), "builds")
	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	const svc = "shiploop.builds.v1.BuildService"

	waitReady := func(want int, within time.Duration) readyz {
		t.Helper()
		var last readyz
		for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
			last = getReadyz(t, inst.HTTPURL+"/readyz")
			if last.code == want {
				return last
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz answered %d within %v, want %d: %s", last.code, within, want, last.raw)
			}
		}
	}
	waitHealth := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			cancel()
			if err == nil && resp.GetStatus() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("gRPC health of %s: %v %v, want %v", svc, resp.GetStatus(), err, want)
			}
		}
	}

	r := waitReady(200, 15*time.Second)
	if !r.Services["builds"].Ready {
		t.Errorf("/readyz: builds not ready: %s", r.raw)
	}
	waitHealth(healthpb.HealthCheckResponse_SERVING)
	if one := getReadyz(t, inst.HTTPURL+"/readyz?service=builds"); one.code != 200 || len(one.Services) != 1 {
		t.Errorf("/readyz?service=builds: %d %s", one.code, one.raw)
	}
	if other := getReadyz(t, inst.HTTPURL+"/readyz?service=gates"); other.code != 404 {
		t.Errorf("/readyz?service=gates (not run here): %d, want 404", other.code)
	}

	natsKill()
	r = waitReady(503, 15*time.Second)
	if p := strings.Join(r.Services["builds"].Problems, "; "); !strings.Contains(p, "nats") || r.NATS.OK {
		t.Errorf("/readyz does not name NATS: %s", r.raw)
	}
	waitHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	if resp, err := http.Get(inst.HTTPURL + "/livez"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/livez without NATS: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	natsStart()
	waitReady(200, 30*time.Second)
	waitHealth(healthpb.HealthCheckResponse_SERVING)
}

type readyz struct {
	code int
	raw  string
	NATS struct {
		OK bool `json:"ok"`
	} `json:"nats"`
	Services map[string]struct {
		Ready    bool     `json:"ready"`
		Problems []string `json:"problems"`
	} `json:"services"`
}

func getReadyz(t *testing.T, url string) readyz {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := readyz{code: resp.StatusCode, raw: string(raw)}
	if resp.StatusCode != 404 {
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("GET %s: %d %q: %v", url, resp.StatusCode, raw, err)
		}
	}
	return r
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, raw)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

func family(t *testing.T, fams map[string]*dto.MetricFamily, name string) *dto.MetricFamily {
	t.Helper()
	f, ok := fams[name]
	if !ok || len(f.GetMetric()) == 0 {
		t.Errorf("/metrics has no %s", name)
		return &dto.MetricFamily{}
	}
	return f
}

func sampleCount(f *dto.MetricFamily) uint64 {
	var n uint64
	for _, m := range f.GetMetric() {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
