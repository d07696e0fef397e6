package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// killableAgent starts `shiploop agent` that the test may kill -9; cleanup
// stops it if it still runs. It returns the process and its event name.
func killableAgent(t *testing.T, natsURL string, extra ...string) (*exec.Cmd, string) {
	t.Helper()
	args := append([]string{"agent", "--nats-url", natsURL, "--data-dir", t.TempDir()}, extra...)
	cmd := exec.Command(binary, args...)
	out := newOutput()
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	deadline := time.After(30 * time.Second)
	for {
		_, found, changed := out.find(func(l string) bool { return strings.Contains(l, `msg="shiploop ready"`) })
		if found {
			break
		}
		select {
		case <-changed:
		case <-done:
			t.Fatalf("agent exited before it was ready:\n%s", out)
		case <-deadline:
			t.Fatalf("agent not ready:\n%s", out)
		}
	}
	host, _ := os.Hostname()
	return cmd, fmt.Sprintf("%s-%d", host, cmd.Process.Pid)
}

// TestAgentKilledMidStep: kill -9 of the agent running a job; the job goes
// to the other agent once its lease runs out and the build records exactly
// one result.
func TestAgentKilledMidStep(t *testing.T) {
	natsURL := startNATSServer(t, natsServerBinary(t))
	inst := startServer(t, "serve", "--nats-url", natsURL, "--data-dir", t.TempDir(), "builds")
	marks := t.TempDir()
	repo := newRepo(t, map[string]string{".shiploop.yml": `steps:
  - name: work
    commands:
      - touch ` + filepath.Join(marks, "attempt-$$") + `
      - sleep 2
      - echo finished on attempt
`})
	secret := inst.register(t, "acme/kill", repo)
	w := inst.watch(t, "acme/kill")

	first, firstName := killableAgent(t, natsURL, "--lease", "2s")
	inst.push(t, "acme/kill", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))
	evs := w.until("job.started", 60*time.Second)
	if a := payload(t, evs[len(evs)-1], &eventsv1.JobStarted{}).GetAgent(); a != firstName {
		t.Fatalf("job started on %s, want %s", a, firstName)
	}
	// The step is running: kill the agent without a chance to clean up.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m, _ := filepath.Glob(filepath.Join(marks, "attempt-*")); len(m) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the step never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, secondName := killableAgent(t, natsURL, "--lease", "2s")

	evs = w.until("build.finished", 90*time.Second)
	var started []*eventsv1.JobStarted
	var finished []*eventsv1.JobFinished
	for _, ev := range evs {
		switch short(ev.GetType()) {
		case "job.started":
			started = append(started, payload(t, ev, &eventsv1.JobStarted{}))
		case "job.finished":
			finished = append(finished, payload(t, ev, &eventsv1.JobFinished{}))
		}
	}
	if len(started) != 1 || started[0].GetAgent() != secondName || started[0].GetAttempt() != 2 {
		t.Errorf("after the kill: job.started %v; want one on %s, attempt 2", started, secondName)
	}
	if len(finished) != 1 || finished[0].GetAgent() != secondName || finished[0].GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("job.finished %v; want one success on %s", finished, secondName)
	}
	bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
	got, err := inst.client.GetBuild(context.Background(), &buildsv1.GetBuildRequest{Id: bf.GetBuildId()})
	if err != nil {
		t.Fatal(err)
	}
	b := got.GetBuild()
	if b.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS || len(b.GetJobs()) != 1 || b.GetJobs()[0].GetAgent() != secondName || len(b.GetSteps()) != 1 {
		t.Errorf("build = %v", b)
	}
	// One result: a later build's events come next, not a second build.finished for this one.
	next := repo.commit("next", map[string]string{"n": "1", ".shiploop.yml": "steps:\n  - name: quick\n    commands: [echo ok]\n"})
	inst.push(t, "acme/kill", secret, "refs/heads/main", zero, next)
	for _, ev := range w.until("build.finished", 60*time.Second) {
		if short(ev.GetType()) == "build.finished" && payload(t, ev, &eventsv1.BuildFinished{}).GetBuildId() == bf.GetBuildId() {
			t.Errorf("the build finished twice")
		}
	}
}

// TestAgentLabels: a pipeline that asks for labels runs on the agent that has
// them, never on one without; a pipeline without labels runs anywhere.
func TestAgentLabels(t *testing.T) {
	natsURL := startNATSServer(t, natsServerBinary(t))
	inst := startServer(t, "serve", "--nats-url", natsURL, "--data-dir", t.TempDir(), "builds")
	repo := newRepo(t, map[string]string{".shiploop.yml": `labels: [gpu, os=linux]
steps:
  - name: train
    commands: [echo on the gpu box]
`})
	secret := inst.register(t, "acme/labels", repo)
	w := inst.watch(t, "acme/labels")
	_, plain := killableAgent(t, natsURL)
	_, gpu := killableAgent(t, natsURL, "--labels", "gpu", "--concurrency", "2")

	for i := range 3 {
		before := repo.git("rev-parse", "HEAD")
		after := repo.commit(fmt.Sprint("gpu ", i), map[string]string{"n": fmt.Sprint(i)})
		inst.push(t, "acme/labels", secret, "refs/heads/main", before, after)
		evs := w.until("build.finished", 60*time.Second)
		for _, ev := range evs {
			if short(ev.GetType()) == "job.started" {
				if a := payload(t, ev, &eventsv1.JobStarted{}).GetAgent(); a != gpu {
					t.Errorf("build %d: a job asking for [gpu, os=linux] started on %s, want %s", i, a, gpu)
				}
			}
		}
		if bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{}); bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
			t.Fatalf("build %d: %v", i, bf)
		}
	}
	// Without labels, both agents take builds.
	repo.commit("no labels", map[string]string{".shiploop.yml": "steps:\n  - name: quick\n    commands: [sleep 0.3]\n"})
	ran := map[string]int{}
	for i := range 8 {
		after := repo.commit(fmt.Sprint("any ", i), map[string]string{"m": fmt.Sprint(i)})
		inst.push(t, "acme/labels", secret, "refs/heads/feature-"+fmt.Sprint(i), zero, after)
	}
	for range 8 {
		for _, ev := range w.until("build.finished", 60*time.Second) {
			if short(ev.GetType()) == "job.started" {
				ran[payload(t, ev, &eventsv1.JobStarted{}).GetAgent()]++
			}
		}
	}
	if ran[plain] == 0 || ran[gpu] == 0 {
		t.Errorf("builds without labels ran on %v, want both %s and %s to take some", ran, plain, gpu)
	}
}
