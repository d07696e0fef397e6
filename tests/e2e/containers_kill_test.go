package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestDockerAgentKilledMidStep: a `shiploop agent --backend docker` is
// kill -9'd while its step's container runs `sleep 300`; the container and
// the job's network stay behind. Restarted with the same data directory
// (so the same shiploop.agent identity), its reaper removes them before it
// takes jobs, and the job, whose lease ran out, runs again from the start
// (attempt 2, docs/architecture.md "Leases") and ends the build. Attempt 2
// knows it is the second from a marker attempt 1 left in the repository's
// cache volume (which the reaper keeps), so it does not sleep.
func TestDockerAgentKilledMidStep(t *testing.T) {
	needDocker(t)
	// The embedded NATS exposed so that a separate agent process can join.
	inst := startUp(t, "--nats-listen", freeAddr(t))
	if inst.NATSURL == "" {
		t.Fatal("shiploop up --nats-listen: no nats_url in its ready line")
	}
	dataDir := t.TempDir()
	agent := &killable{name: "docker agent", ready: readyLog,
		args: []string{"agent", "--nats-url", inst.NATSURL, "--data-dir", dataDir, "--backend", "docker", "--labels", "docker", "--lease", "3s"}}
	if err := agent.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.stop(t) })
	id := dockerAgentID(dataDir)
	name := "acme/killed-" + time.Now().Format("150405.000000")
	t.Cleanup(func() { // the cache volume outlives agents by design
		out, _ := exec.Command("docker", "volume", "ls", "-q", "--filter", "label=shiploop.cache="+strings.NewReplacer("/", "_", ".", "_", ":", "_").Replace(name)).Output()
		for _, v := range strings.Fields(string(out)) {
			_ = exec.Command("docker", "volume", "rm", "-f", v).Run()
		}
	})
	repo := newRepo(t, map[string]string{
		".shiploop.yml": `image: ` + containerImage + `
pull: never
labels: [docker]
steps:
  - name: long
    cache: {paths: [.marker]}
    commands:
      - if [ -f .marker/attempted ]; then echo second attempt; exit 0; fi
      - touch .marker/attempted
      - echo first attempt
      - sleep 300
`,
	})
	secret := inst.register(t, name, repo)
	w := inst.watch(t, name)
	inst.push(t, name, secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))
	w.until("job.started", 60*time.Second)

	// Wait for the step's container to run, then kill the agent.
	var orphans []string
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		left := labelled(t, id)
		if strings.Contains(left, "container ") && strings.Contains(left, " Up ") && strings.Contains(left, "network ") {
			orphans = strings.Split(left, "\n")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the step's container did not run within 90s (agent %s): %q\nagent stderr:\n%s", id, left, agent.stderr)
		}
	}
	agent.kill9()
	if left := labelled(t, id); !strings.Contains(left, "container ") || !strings.Contains(left, "network ") {
		t.Fatalf("after kill -9 the container and network should still be there, got %q", left)
	}
	t.Logf("left by the killed agent: %q", orphans)

	// Restarted: ready means the reaper ran.
	if err := agent.start(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(agent.stderr.String(), "leftovers_removed") {
		t.Errorf("the restarted agent does not report its reaper:\n%s", agent.stderr)
	}
	// (Attempt 2 may have started already: its container and network have
	// other names.)
	now := map[string]bool{}
	for _, l := range strings.Split(labelled(t, id), "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			now[f[0]+" "+f[1]] = true
		}
	}
	for _, o := range orphans {
		if f := strings.Fields(o); len(f) >= 2 && now[f[0]+" "+f[1]] {
			t.Errorf("%s %s of the killed agent is still there after the restart", f[0], f[1])
		}
	}

	evs := w.until("build.finished", 3*time.Minute)
	attempts := 1
	for _, e := range evs {
		if short(e.GetType()) == "job.started" {
			attempts = max(attempts, int(payload(t, e, &eventsv1.JobStarted{}).GetAttempt()))
		}
	}
	if attempts < 2 {
		t.Errorf("the job was not run again after the agent died (attempts %d)", attempts)
	}
	if b := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{}); b.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Errorf("build.finished %v %s, want success from attempt 2\nagent stderr:\n%s", b.GetStatus(), b.GetError(), agent.stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for left := labelled(t, id); left != ""; left = labelled(t, id) {
		if time.Now().After(deadline) {
			t.Fatalf("left after the job (agent %s):\n%s", id, left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
