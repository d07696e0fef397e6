package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
)

// TestCommandMonitorOnAgent: a command monitor (testinfra-style tests in
// the repository, run with Debian's pytest) keeps running on `up`'s agent
// after the deploy: OK while the service's marker exists, CRITICAL with
// pytest's failure in the detail once it is gone, OK again once it is back,
// each change a monitor.state_changed event; `shiploop monitor ls --json`
// shows it. Meanwhile an every-minute schedule runs a runbook on the real
// clock: its run is recorded by the schedule, with its option and log.
func TestCommandMonitorOnAgent(t *testing.T) {
	requireClosedLoopPython(t)
	marker := filepath.Join(t.TempDir(), "service-up")
	if err := os.WriteFile(marker, []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	ran := filepath.Join(t.TempDir(), "runbook-ran")
	cfg := `steps:
  - {name: build, commands: ["true"]}
schedules:
  - {name: tick, cron: "* * * * *", runbook: touch, options: {note: scheduled}}
runbooks:
  - name: touch
    environment: staging
    options: [{name: note, type: string, required: true}]
    steps: [{name: touch, commands: ['echo "$OPTION_NOTE" >> ` + ran + `', 'echo touched']}]
environments:
  - name: staging
    auto: true
    variables: {MARKER: "` + marker + `"}
    steps: [{name: deploy, commands: [echo deployed]}]
    monitors:
      - name: infra
        command: ["/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/infra"]
        every: 1s
`
	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": cfg, "tests/infra/test_host.py": `import os


def test_marker_present():
    assert os.path.exists(os.environ["MARKER"]), "the service's marker is gone"
`})
	reg, err := inst.client.RegisterRepository(t.Context(), &buildsv1.RegisterRepositoryRequest{Name: "acme/infra", CloneUrl: repo.dir, DefaultBranch: "main"})
	if err != nil {
		t.Fatal(err)
	}
	w := inst.watch(t, "acme/infra")
	if res := inst.push(t, "acme/infra", reg.GetWebhookSecret(), "refs/heads/main", strings.Repeat("0", 40), repo.git("rev-parse", "HEAD")); res.Status != 202 {
		t.Fatalf("push: HTTP %d %s", res.Status, res.Raw)
	}
	w.until("deploy.finished", 2*time.Minute)

	type monitor struct {
		Name, State, Detail string
	}
	state := func() monitor {
		out := cli(t, "monitor", "ls", "acme/infra", "staging", "--server", inst.GRPCAddr, "--json")
		var resp struct{ Monitors []monitor }
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("monitor ls --json: %v\n%s", err, out)
		}
		if len(resp.Monitors) != 1 {
			return monitor{}
		}
		return resp.Monitors[0]
	}
	waitState := func(want string) monitor {
		t.Helper()
		// Each check is a job: a checkout and a pytest run, a few seconds
		// on a loaded machine.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			m := state()
			if m.State == "MONITOR_STATE_"+want {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("monitor infra is %s (%s), want %s", m.State, m.Detail, want)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	if m := waitState("OK"); !strings.HasPrefix(m.Detail, "command: passed") {
		t.Errorf("OK detail %q", m.Detail)
	}
	w.until("monitor.state_changed", time.Minute)
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	m := waitState("CRITICAL")
	if !strings.Contains(m.Detail, "step monitor-infra failed") || !strings.Contains(m.Detail, "the service's marker is gone") {
		t.Errorf("CRITICAL detail %q: want the step and pytest's assertion", m.Detail)
	}
	if err := os.WriteFile(marker, []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitState("OK")

	// The scheduled runbook: one run per slot, by the schedule.
	type run struct {
		RunID               string `json:"run_id"`
		Runbook, By, Status string
		Options             map[string]string
	}
	var got run
	for deadline := time.Now().Add(150 * time.Second); ; time.Sleep(time.Second) {
		out := cli(t, "runbook", "history", "acme/infra", "--server", inst.GRPCAddr, "--json")
		got = run{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r run
			if json.Unmarshal([]byte(line), &r) == nil && r.By == "schedule tick" && r.Status == "succeeded" {
				got = r
			}
		}
		if got.RunID != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no succeeded run by schedule tick within 150 s (an every-minute schedule):\n%s", out)
		}
	}
	if got.Runbook != "touch" || got.Options["note"] != "scheduled" {
		t.Errorf("scheduled run %+v", got)
	}
	if b, err := os.ReadFile(ran); err != nil || !strings.HasPrefix(string(b), "scheduled\n") {
		t.Errorf("the runbook's step wrote %q (%v)", b, err)
	}
	if out := cli(t, "runbook", "logs", got.RunID, "--server", inst.GRPCAddr); !strings.Contains(out, "touched") {
		t.Errorf("runbook logs %s:\n%s", got.RunID, out)
	}
	// The checks are no build's jobs: nothing retried or dead-lettered.
	for _, l := range strings.Split(inst.stderr.String(), "\n") {
		if strings.Contains(l, "handler failed") && strings.Contains(l, "type=job.") {
			t.Errorf("a consumer failed on a monitor's job: %s", l)
		}
	}
}
