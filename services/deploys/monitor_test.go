package deploys

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// hookRecorder is a fake webhook receiver.
type hookRecorder struct {
	mu     sync.Mutex
	bodies []map[string]any
	srv    *httptest.Server
}

func newHookRecorder(t *testing.T) *hookRecorder {
	r := &hookRecorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		data, _ := io.ReadAll(req.Body)
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Errorf("webhook body %q: %v", data, err)
		}
		r.mu.Lock()
		r.bodies = append(r.bodies, v)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookRecorder) got() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.bodies...)
}

func (r *hookRecorder) waitN(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if b := r.got(); len(b) >= n {
			return b
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("webhook got %d alerts within 15s, want %d: %v", len(r.got()), n, r.got())
	return nil
}

type monitorEvents struct {
	mu  sync.Mutex
	evs []*eventsv1.MonitorStateChanged
}

func watchMonitors(t *testing.T, b *bus.Bus, repo string) *monitorEvents {
	w := &monitorEvents{}
	sub, err := b.Conn().Subscribe(bus.EventSubject("monitor.*", repo), func(m *nats.Msg) {
		if ev, err := bus.Decode(m); err == nil && ev.Type == "monitor.state_changed" {
			w.mu.Lock()
			w.evs = append(w.evs, ev.Data.(*eventsv1.MonitorStateChanged))
			w.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

func (w *monitorEvents) changes() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, e := range w.evs {
		out = append(out, stateName(e.GetFrom())+"->"+stateName(e.GetTo()))
	}
	return out
}

func (w *monitorEvents) waitN(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c := w.changes(); len(c) >= n {
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%d monitor.state_changed within 15s, want %d: %v", len(w.changes()), n, w.changes())
	return nil
}

// TestMonitors: a monitor keeps probing staging after its deploy, with two
// deploys replicas on one database. The service going down makes it
// CRITICAL after fail_after checks (one event, one alert per webhook,
// promotion to production refused), coming back makes it OK (one event, a
// resolved alert); a silence keeps the next alert from being sent but not
// the event.
func TestMonitors(t *testing.T) {
	var healthy atomic.Bool
	var probes atomic.Int64
	healthy.Store(true)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		if !healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer app.Close()
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		healthy.Store(true)
		slack, generic := newHookRecorder(t), newHookRecorder(t)
		h := newHarness(t, db)
		// A second replica on the same database and bus.
		ctx, cancel := context.WithCancel(context.Background())
		other, err := New(ctx, Config{DB: db, Bus: h.bus, Tick: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- other.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })

		repo := "acme/mon"
		cfg := fmt.Sprintf(`environments:
  - name: staging
    auto: true
    steps: [{name: deploy, commands: [./deploy.sh]}]
    block_promotion_on: [web-up]
    monitors:
      - {name: web-up, http: {url: %q, expect: 200}, every: 1s, fail_after: 2}
    alerts:
      - {webhook: %q, format: slack}
      - {webhook: %q, format: generic}
  - name: production
    steps: [{name: deploy, commands: [./deploy.sh]}]
`, app.URL+"/healthz", slack.srv.URL+"/services/T0/B0/secret", generic.srv.URL+"/hook?token=secret")
		w := watchMonitors(t, h.bus, repo)
		h.build(repo, "refs/heads/main", "1.0.0", cfg, "push", "first")
		h.run(h.nextJob(), true)
		h.waitFor(repo, "staging", "1.0.0 deployed", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))

		// First decision: UNKNOWN -> OK, an event but no alert.
		w.waitN(t, 1)
		probes.Store(0)
		start := time.Now()
		healthy.Store(false)
		got := w.waitN(t, 2)
		if took := time.Since(start); took < 900*time.Millisecond {
			t.Errorf("CRITICAL after %s: fail_after 2 wants two failed checks a second apart", took)
		}
		if want := []string{"UNKNOWN->OK", "OK->CRITICAL"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("events %v, want %v", got, want)
		}
		ev := w.evs[1]
		if ev.GetMonitor() != "web-up" || ev.GetEnvironment() != "staging" || ev.GetRelease() != "1.0.0" || !strings.Contains(ev.GetDetail(), "503") || ev.GetSince() == nil {
			t.Errorf("event %+v", ev)
		}
		// Promotion out of staging is refused while it lasts.
		_, err = h.api.Promote(context.Background(), &deploysv1.PromoteRequest{Repository: repo, Environment: "production", By: "ann"})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "web-up") {
			t.Fatalf("promote while CRITICAL: %v", err)
		}
		s1, g1 := slack.waitN(t, 1), generic.waitN(t, 1)
		if text, _ := s1[0]["text"].(string); len(s1[0]) != 1 || !strings.Contains(text, "web-up is CRITICAL (was OK)") || !strings.Contains(text, "staging") {
			t.Errorf("slack alert %v", s1[0])
		}
		if g := g1[0]; g["monitor"] != "web-up" || g["environment"] != "staging" || g["state"] != "CRITICAL" || g["since"] == nil || !strings.Contains(fmt.Sprint(g["detail"]), "503") {
			t.Errorf("generic alert %v", g)
		}

		// Back up: CRITICAL -> OK and a resolved alert.
		healthy.Store(true)
		got = w.waitN(t, 3)
		if got[2] != "CRITICAL->OK" {
			t.Fatalf("events %v", got)
		}
		s2, g2 := slack.waitN(t, 2), generic.waitN(t, 2)
		if text, _ := s2[1]["text"].(string); !strings.Contains(text, "RESOLVED") {
			t.Errorf("resolved slack alert %v", s2[1])
		}
		if g2[1]["state"] != "OK" || g2[1]["resolved"] != true {
			t.Errorf("resolved generic alert %v", g2[1])
		}
		// One alert per change, not per check; one check per second
		// between both replicas.
		time.Sleep(2500 * time.Millisecond)
		if n, m := len(slack.got()), len(generic.got()); n != 2 || m != 2 {
			t.Errorf("alerts: slack %d, generic %d, want 2 each", n, m)
		}
		if c := w.changes(); len(c) != 3 {
			t.Errorf("events %v, want 3", c)
		}
		if n, secs := probes.Load(), time.Since(start).Seconds(); float64(n) > secs+2 {
			t.Errorf("%d probes in %.1fs with every: 1s on two replicas: checked more than once per period", n, secs)
		}
		if _, err := h.api.Promote(context.Background(), &deploysv1.PromoteRequest{Repository: repo, Environment: "production", By: "ann"}); err != nil {
			t.Fatalf("promote once OK: %v", err)
		}

		// A silence: the change is an event, its alerts are recorded, not sent.
		sl, err := h.api.Silence(context.Background(), &deploysv1.SilenceRequest{Repository: repo, Environment: "staging", Monitor: "web-up",
			EndsAt: timestamppb.New(time.Now().Add(time.Hour)), Reason: "maintenance", By: "ann"})
		if err != nil {
			t.Fatal(err)
		}
		healthy.Store(false)
		if got = w.waitN(t, 4); got[3] != "OK->CRITICAL" {
			t.Fatalf("events %v", got)
		}
		ls, err := h.api.ListMonitors(context.Background(), &deploysv1.ListMonitorsRequest{Repository: repo, Environment: "staging"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ls.GetMonitors()) != 1 || ls.GetMonitors()[0].GetState() != stateCritical || ls.GetMonitors()[0].GetSilenceId() != sl.GetSilence().GetId() ||
			!ls.GetMonitors()[0].GetBlocksPromotion() || len(ls.GetSilences()) != 1 || ls.GetSilences()[0].GetReason() != "maintenance" {
			t.Errorf("ListMonitors %v", ls)
		}
		if strings.Contains(fmt.Sprint(ls), "secret") || strings.Contains(fmt.Sprint(ls), slack.srv.URL) {
			t.Errorf("ListMonitors shows a webhook URL: %v", ls)
		}
		var silenced int
		deadline := time.Now().Add(5 * time.Second)
		for silenced < 2 && time.Now().Before(deadline) {
			if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM monitor_alerts WHERE status = 'silenced' AND silence_id = $1`, sl.GetSilence().GetId()).Scan(&silenced); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if silenced != 2 {
			t.Errorf("%d silenced alerts recorded, want 2", silenced)
		}
		time.Sleep(300 * time.Millisecond)
		if n, m := len(slack.got()), len(generic.got()); n != 2 || m != 2 {
			t.Errorf("silenced alerts were sent: slack %d, generic %d", n, m)
		}
		if _, err := h.api.Unsilence(context.Background(), &deploysv1.UnsilenceRequest{Id: sl.GetSilence().GetId(), By: "ann"}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.api.Unsilence(context.Background(), &deploysv1.UnsilenceRequest{Id: sl.GetSilence().GetId()}); status.Code(err) != codes.NotFound {
			t.Errorf("second unsilence: %v", err)
		}
		healthy.Store(true)
	})
}

// TestMonitorAlertsHideWebhooks: a webhook that fails is logged by host
// only, never with its path or query (tokens).
func TestMonitorAlertsHideWebhooks(t *testing.T) {
	s := &Service{http: &http.Client{Timeout: time.Second}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 403) }))
	defer srv.Close()
	for _, u := range []string{srv.URL + "/services/T0/B0/sekrit?token=sekrit", "http://127.0.0.1:1/sekrit?token=sekrit"} {
		err := s.postAlert(context.Background(), u, []byte(`{}`))
		if err == nil || strings.Contains(err.Error(), "sekrit") {
			t.Errorf("postAlert(%s) = %v", u, err)
		}
	}
}

// TestCommandMonitors: a command monitor's check is a deploy-kind job on an
// agent, with the release's commit, the environment's variables and
// secrets, and one step running the commands; its job's success is OK, a
// failed step CRITICAL naming the step, and a job nobody finishes in time
// is canceled and the check UNKNOWN, saying no agent ran it.
func TestCommandMonitors(t *testing.T) {
	oldMin, oldGrace := commandMinTimeout, commandGrace
	commandMinTimeout, commandGrace = 2*time.Second, time.Second // room for a loaded machine
	t.Cleanup(func() { commandMinTimeout, commandGrace = oldMin, oldGrace })
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		repo := "acme/cmdmon"
		const cfg = `secrets: [FILE_TOKEN]
environments:
  - name: staging
    auto: true
    variables: {APP_URL: "http://staging.internal"}
    secrets: [SMOKE_TOKEN]
    steps: [{name: deploy, commands: [./deploy.sh]}]
    monitors:
      - {name: infra, command: ["pytest -q tests/infra", "./smoke.sh"], every: 1s}
`
		w := watchMonitors(t, h.bus, repo)
		h.build(repo, "refs/heads/main", "1.0.0", cfg, "push")
		h.run(h.nextJob(), true)
		h.waitFor(repo, "staging", "1.0.0 deployed", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))

		j := h.nextJob()
		if len(j.GetSteps()) != 1 || j.GetSteps()[0].GetName() != "monitor-infra" || strings.Join(j.GetSteps()[0].GetCommands(), "; ") != "pytest -q tests/infra; ./smoke.sh" ||
			strings.Join(j.GetSteps()[0].GetSecrets(), ",") != "FILE_TOKEN,SMOKE_TOKEN" || j.GetKind() != "deploy" || j.GetCommit() == "" ||
			j.GetEnvironment()["APP_URL"] != "http://staging.internal" || j.GetEnvironment()["SHIPLOOP_ENVIRONMENT"] != "staging" || j.GetEnvironment()["SHIPLOOP_RELEASE"] != "1.0.0" {
			t.Fatalf("command check job: %v", j)
		}
		// While the job is out, no second check starts.
		select {
		case j2 := <-h.jobs:
			t.Fatalf("a second check job %v while the first is out", j2.GetSteps())
		case <-time.After(150 * time.Millisecond):
		}
		h.run(j, true)
		if got := w.waitN(t, 1); got[0] != "UNKNOWN->OK" {
			t.Fatalf("events %v", got)
		}
		h.run(h.nextJob(), false)
		if got := w.waitN(t, 2); got[1] != "OK->CRITICAL" || !strings.Contains(w.evs[1].GetDetail(), "command: step deploy failed") {
			t.Fatalf("events %v, detail %q", got, w.evs[1].GetDetail())
		}
		// Nobody runs the next check: canceled, UNKNOWN.
		lost := h.nextJob()
		if got := w.waitN(t, 3); got[2] != "CRITICAL->UNKNOWN" || !strings.Contains(w.evs[2].GetDetail(), "no agent finished the check within") {
			t.Fatalf("events %v, detail %q", got, w.evs[2].GetDetail())
		}
		kv, err := h.bus.Cancels(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Get(context.Background(), lost.GetJobId()); err != nil {
			t.Errorf("the lost check's job was not canceled: %v", err)
		}
		// Its late job.finished changes nothing; the next check does.
		h.run(lost, true)
		h.run(h.nextJob(), true)
		if got := w.waitN(t, 4); got[3] != "UNKNOWN->OK" || len(w.changes()) != 4 {
			t.Fatalf("events %v", got)
		}
		ls, err := h.api.ListMonitors(context.Background(), &deploysv1.ListMonitorsRequest{Repository: repo, Environment: "staging"})
		if err != nil || len(ls.GetMonitors()) != 1 || ls.GetMonitors()[0].GetState() != stateOK || !strings.HasPrefix(ls.GetMonitors()[0].GetDetail(), "command: passed") {
			t.Errorf("ListMonitors %v, %v", ls, err)
		}
	})
}
