package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// jobLog reads a job's whole stored log as "step: text" lines.
func (inst *instance) jobLog(t *testing.T, jobID string, follow bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := inst.client.StreamLogs(ctx, &buildsv1.StreamLogsRequest{JobId: jobID, Follow: follow})
	if err != nil {
		t.Fatalf("StreamLogs: %v", err)
	}
	var lines []string
	var last uint64
	for {
		r, err := st.Recv()
		if err != nil {
			break
		}
		if n := r.GetLine().GetNumber(); n != last+1 {
			t.Errorf("log line %d follows line %d: out of order or missing", n, last)
		}
		last = r.GetLine().GetNumber()
		lines = append(lines, r.GetLine().GetStep()+": "+r.GetLine().GetText())
	}
	return strings.Join(lines, "\n")
}

// TestSecretsAreMasked: a repository secret reaches the step that asks for
// it and never appears in the live or the stored log; a missing secret
// fails the build naming the field.
func TestSecretsAreMasked(t *testing.T) {
	inst := startUp(t)
	const value = "s3cr3t-value-4711"
	repo := newRepo(t, map[string]string{".shiploop.yml": `steps:
  - name: deploy
    secrets: [API_TOKEN]
    commands:
      - echo "token=$API_TOKEN"
      - echo "twice $API_TOKEN and $API_TOKEN"
      - test "$API_TOKEN" = "` + value + `"
  - name: other
    commands:
      - echo "other sees [$API_TOKEN]"
`})
	secret := inst.register(t, "acme/secrets", repo)
	ctx := context.Background()
	if _, err := inst.client.SetSecret(ctx, &buildsv1.SetSecretRequest{Repository: "acme/secrets", Name: "API_TOKEN", Value: value}); err != nil {
		t.Fatal(err)
	}
	names, err := inst.client.ListSecrets(ctx, &buildsv1.ListSecretsRequest{Repository: "acme/secrets"})
	if err != nil || len(names.GetNames()) != 1 || names.GetNames()[0] != "API_TOKEN" {
		t.Fatalf("ListSecrets = %v, %v", names, err)
	}
	w := inst.watch(t, "acme/secrets")
	inst.push(t, "acme/secrets", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))
	evs := w.until("job.queued", 60*time.Second)
	jobID := payload(t, evs[len(evs)-1], &eventsv1.JobQueued{}).GetJobId()
	live := make(chan string, 1)
	go func() { live <- inst.jobLog(t, jobID, true) }()
	evs = w.until("build.finished", 60*time.Second)
	if bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{}); bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("build %v: %s", bf.GetStatus(), bf.GetError())
	}
	stored := inst.jobLog(t, jobID, false)
	followed := <-live
	for name, log := range map[string]string{"stored": stored, "followed": followed} {
		if strings.Contains(log, value) {
			t.Errorf("%s log shows the secret:\n%s", name, log)
		}
		for _, want := range []string{"deploy: token=********", "deploy: twice ******** and ********", "other: other sees []"} {
			if !strings.Contains(log, want) {
				t.Errorf("%s log lacks %q:\n%s", name, want, log)
			}
		}
	}

	// Without the secret the build fails before anything runs.
	if _, err := inst.client.DeleteSecret(ctx, &buildsv1.DeleteSecretRequest{Repository: "acme/secrets", Name: "API_TOKEN"}); err != nil {
		t.Fatal(err)
	}
	next := repo.commit("again", map[string]string{"b": "b"})
	inst.push(t, "acme/secrets", secret, "refs/heads/main", zero, next)
	evs = w.until("build.finished", 60*time.Second)
	bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
	if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_ERROR || !strings.Contains(bf.GetError(), ".shiploop.yml:3:") || !strings.Contains(bf.GetError(), "steps[0].secrets[0]") || !strings.Contains(bf.GetError(), "API_TOKEN is not set") {
		t.Errorf("build without the secret: %v %q", bf.GetStatus(), bf.GetError())
	}
}

// TestMatrix: each combination is its own job with its variables.
func TestMatrix(t *testing.T) {
	inst := startUp(t, "--agents", "2")
	repo := newRepo(t, map[string]string{".shiploop.yml": `matrix:
  GO: ["1.25", "1.26"]
  DB: [sqlite, postgres]
  exclude: [{GO: "1.25", DB: postgres}]
steps:
  - name: test
    commands: ['echo "go=$GO db=$DB"']
`})
	secret := inst.register(t, "acme/matrix", repo)
	w := inst.watch(t, "acme/matrix")
	inst.push(t, "acme/matrix", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))
	evs := w.until("build.finished", 60*time.Second)
	bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
	if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("build %v: %s", bf.GetStatus(), bf.GetError())
	}
	got, err := inst.client.GetBuild(context.Background(), &buildsv1.GetBuildRequest{Id: bf.GetBuildId()})
	if err != nil {
		t.Fatal(err)
	}
	jobs := got.GetBuild().GetJobs()
	want := []string{"go=1.25 db=sqlite", "go=1.26 db=sqlite", "go=1.26 db=postgres"}
	if len(jobs) != len(want) {
		t.Fatalf("%d jobs, want %d: %v", len(jobs), len(want), jobs)
	}
	for i, j := range jobs {
		if j.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS || "go="+j.GetMatrix()["GO"]+" db="+j.GetMatrix()["DB"] != want[i] {
			t.Errorf("job %d: %v %v", i, j.GetStatus(), j.GetMatrix())
		}
		if log := inst.jobLog(t, j.GetId(), false); !strings.Contains(log, "test: "+want[i]) {
			t.Errorf("job %d log lacks %q:\n%s", i, want[i], log)
		}
	}
}

// processGone reports whether pid has exited (a zombie counts as gone).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}

// TestPushSupersedesRunningBuild: a newer push to the same branch cancels
// the running build, whose process group is killed; cancel and retry by
// hand work too.
func TestPushSupersedesRunningBuild(t *testing.T) {
	inst := startUp(t, "--agents", "2")
	marks := t.TempDir()
	pidFile := filepath.Join(marks, "pid")
	repo := newRepo(t, map[string]string{".shiploop.yml": `steps:
  - name: long
    commands:
      - sleep 300 &
      - echo $! > ` + pidFile + `
      - wait
`})
	secret := inst.register(t, "acme/long", repo)
	w := inst.watch(t, "acme/long")
	first := repo.git("rev-parse", "HEAD")
	inst.push(t, "acme/long", secret, "refs/heads/main", zero, first)
	evs := w.until("build.started", 60*time.Second)
	firstBuild := payload(t, evs[len(evs)-1], &eventsv1.BuildStarted{}).GetBuildId()
	var pid int
	deadline := time.Now().Add(30 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatal("the step never wrote its pid")
	}

	second := repo.commit("quick", map[string]string{".shiploop.yml": "steps:\n  - name: quick\n    commands: [echo quick]\n"})
	inst.push(t, "acme/long", secret, "refs/heads/main", first, second)
	var canceled, succeeded bool
	for !(canceled && succeeded) {
		evs = w.until("build.finished", 60*time.Second)
		bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
		switch {
		case bf.GetBuildId() == firstBuild:
			if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_CANCELED || !strings.Contains(bf.GetError(), "superseded by build #2") {
				t.Fatalf("first build finished %v %q, want canceled as superseded", bf.GetStatus(), bf.GetError())
			}
			canceled = true
		case bf.GetNumber() == 2:
			if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
				t.Fatalf("second build %v: %s", bf.GetStatus(), bf.GetError())
			}
			succeeded = true
		}
	}
	deadline = time.Now().Add(20 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the superseded build's process %d is still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Retry the canceled build by hand: same commit, a new build.
	ctx := context.Background()
	if _, err := inst.client.RetryBuild(ctx, &buildsv1.RetryBuildRequest{Id: firstBuild}); err != nil {
		t.Fatal(err)
	}
	evs = w.until("build.started", 60*time.Second)
	retried := payload(t, evs[len(evs)-1], &eventsv1.BuildStarted{}).GetBuildId()
	got, err := inst.client.GetBuild(ctx, &buildsv1.GetBuildRequest{Id: retried})
	if err != nil || got.GetBuild().GetCommit() != first || got.GetBuild().GetNumber() != 3 {
		t.Fatalf("retried build = %v, %v", got.GetBuild(), err)
	}
	// And cancel it by hand.
	resp, err := inst.client.CancelBuild(ctx, &buildsv1.CancelBuildRequest{Id: retried})
	if err != nil || !resp.GetCanceled() {
		t.Fatalf("CancelBuild = %v, %v", resp, err)
	}
	evs = w.until("build.finished", 60*time.Second)
	if bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{}); bf.GetBuildId() != retried || bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_CANCELED {
		t.Errorf("after cancel: %v %v", bf.GetBuildId(), bf.GetStatus())
	}
	if resp, err := inst.client.CancelBuild(ctx, &buildsv1.CancelBuildRequest{Id: retried}); err != nil || resp.GetCanceled() {
		t.Errorf("second cancel = %v, %v; want canceled=false", resp, err)
	}
}
