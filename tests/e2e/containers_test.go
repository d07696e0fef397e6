package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// containerImage has redis-server and redis-tools; scripts/redis-image.sh
// builds it with debootstrap (no registry needed).
const containerImage = "shiploop-redis:local"

// needDocker skips (outside CI) or fails (CI=true, where .ci/run starts
// dockerd) when no Docker engine answers, and builds containerImage if it
// is missing. It returns the engine's version.
func needDocker(t *testing.T) string {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format+" (outside CI this skips; start dockerd to run it)", args...)
	}
	out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})").CombinedOutput()
	if err != nil {
		unavailable("no Docker engine answers: %v %s", err, out)
	}
	if exec.Command("docker", "image", "inspect", containerImage).Run() != nil {
		script, _ := filepath.Abs("../../scripts/redis-image.sh")
		if b, err := exec.Command(script).CombinedOutput(); err != nil {
			unavailable("building %s with %s: %v\n%s", containerImage, script, err, b)
		}
	}
	return strings.TrimSpace(string(out))
}

// labelled lists the containers and networks labelled shiploop.agent=agent.
func labelled(t *testing.T, agent string) string {
	t.Helper()
	var all []string
	for _, args := range [][]string{
		{"ps", "-a", "--format", "container {{.Names}} {{.Status}}", "--filter", "label=shiploop.agent=" + agent},
		{"network", "ls", "--format", "network {{.Name}}", "--filter", "label=shiploop.agent=" + agent},
	} {
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			all = append(all, s)
		}
	}
	return strings.Join(all, "\n")
}

// dockerAgentID is cmd/shiploop's label value for an agent's data directory.
func dockerAgentID(dataDir string) string {
	host, _ := os.Hostname()
	abs, _ := filepath.Abs(dataDir)
	sum := sha256.Sum256([]byte(abs))
	return host + "-" + hex.EncodeToString(sum[:6])
}

// TestStepsInContainers: `up --backend docker` runs a pipeline whose steps
// have no image of their own (the pipeline's image applies, pull: never),
// with a Redis service container from a local image: the test step reaches
// it under its name (redis-cli -h redis ping), the build and the test run
// pass, and no container or network of the agent is left afterwards.
func TestStepsInContainers(t *testing.T) {
	engine := needDocker(t)
	t.Logf("engine: Docker %s", engine)
	inst := startUp(t, "--backend", "docker")
	repo := newRepo(t, map[string]string{
		".shiploop.yml": `image: ` + containerImage + `
pull: never
steps:
  - name: build
    commands:
      - test "$PWD" = "$SHIPLOOP_WORKSPACE"
      - test -f .shiploop.yml
      - test -f /.dockerenv
    cpus: 1
    memory: 256m
test:
  steps:
    - name: ping
      commands:
        - redis-cli -h redis ping | tee ping.txt
        - grep -qx PONG ping.txt
  services:
    - name: redis
      image: ` + containerImage + `
      command: exec redis-server --protected-mode no
      ready: {tcp: "redis:6379"}
`,
	})
	secret := inst.register(t, "acme/containers", repo)
	w := inst.watch(t, "acme/containers")
	start := time.Now()
	inst.push(t, "acme/containers", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))
	evs := w.until("testrun.finished", 180*time.Second)
	t.Logf("build and test run in %s", time.Since(start))
	for _, e := range evs {
		if short(e.GetType()) == "build.finished" {
			if b := payload(t, e, &eventsv1.BuildFinished{}); b.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
				t.Errorf("build.finished %v %s", b.GetStatus(), b.GetError())
			}
		}
	}
	fin := payload(t, evs[len(evs)-1], &eventsv1.TestRunFinished{})
	if fin.GetStatus() != eventsv1.TestRunStatus_TEST_RUN_STATUS_PASSED {
		t.Errorf("testrun.finished %v %s\nserver stderr:\n%s", fin.GetStatus(), fin.GetError(), inst.stderr)
	}
	agent := dockerAgentID(inst.DataDir)
	deadline := time.Now().Add(30 * time.Second)
	for left := labelled(t, agent); left != ""; left = labelled(t, agent) {
		if time.Now().After(deadline) {
			t.Fatalf("left after the jobs (agent %s):\n%s", agent, left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
