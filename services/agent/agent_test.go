package agent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/agent/backend"
)

type rig struct {
	t   *testing.T
	bus *bus.Bus
}

func newRig(t *testing.T) *rig {
	t.Helper()
	b := bustest.Start(t, bus.Options{Source: "/test"})
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(Config{Bus: b, Backend: backend.NewProcess(backend.ProcessConfig{WorkRoot: t.TempDir()}), Name: "agent-1", Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &rig{t: t, bus: b}
}

func repo(t *testing.T) (string, string) {
	dir := t.TempDir()
	env := append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t.invalid")
	for _, args := range [][]string{{"init", "-q"}, {"commit", "-q", "--allow-empty", "-m", "x"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git: %v %s", err, out)
		}
	}
	cmd := exec.Command("git", "rev-parse", "HEAD")
	cmd.Dir = dir
	out, _ := cmd.Output()
	return dir, strings.TrimSpace(string(out))
}

// run enqueues a job and returns its step_finished events and job.finished.
func (r *rig) run(job *eventsv1.Job) ([]*eventsv1.StepResult, *eventsv1.JobFinished) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	events := make(chan bus.Event, 100)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		_ = r.bus.Watch(watchCtx, bus.WatchOptions{Filters: []string{bus.EventFilter("job", "")}, FromStart: true}, func(ev bus.Event) error {
			if ev.Subject == job.JobId {
				events <- ev
			}
			return nil
		})
	}()
	m, err := bus.Encode(ctx, bus.JobSubject("build", job.Repository), bus.NewEvent("job.requested", job.Repository, job.JobId, job))
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.bus.PublishMsg(ctx, m); err != nil {
		r.t.Fatal(err)
	}
	var steps []*eventsv1.StepResult
	for {
		select {
		case ev := <-events:
			switch d := ev.Data.(type) {
			case *eventsv1.JobStepFinished:
				steps = append(steps, d.Step)
			case *eventsv1.JobFinished:
				return steps, d
			}
		case <-ctx.Done():
			r.t.Fatalf("job %s did not finish", job.JobId)
		}
	}
}

func TestStepsRunAsADAG(t *testing.T) {
	r := newRig(t)
	dir, sha := repo(t)
	marks := t.TempDir()
	// a and b are independent and each waits for the other to have started:
	// they can only both finish if they run at the same time.
	wait := func(self, other string) []string {
		return []string{
			"touch " + filepath.Join(marks, self),
			"i=0; while [ ! -e " + filepath.Join(marks, other) + " ]; do i=$((i+1)); [ $i -gt 500 ] && exit 9; sleep 0.01; done",
		}
	}
	job := &eventsv1.Job{JobId: bus.NewID(), BuildId: "b1", Kind: "build", Repository: "acme/dag", CloneUrl: dir, Commit: sha,
		Timeout: durationpb.New(time.Minute), Steps: []*eventsv1.Step{
			{Name: "a", Commands: wait("a", "b")},
			{Name: "b", Commands: wait("b", "a")},
			{Name: "c", Commands: []string{"echo c"}, DependsOn: []string{"a", "b"}},
		}}
	steps, fin := r.run(job)
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("job %v: %s %v", fin.GetStatus(), fin.GetError(), fin.GetSteps())
	}
	if len(steps) != 3 || steps[2].GetName() != "c" {
		t.Errorf("step order %v: c must finish last", steps)
	}
	if fin.GetLogKey() == "" {
		t.Error("no log stored")
	}
}

func TestFailureSkipsTheRest(t *testing.T) {
	r := newRig(t)
	dir, sha := repo(t)
	job := &eventsv1.Job{JobId: bus.NewID(), BuildId: "b2", Kind: "build", Repository: "acme/seq", CloneUrl: dir, Commit: sha,
		Timeout: durationpb.New(time.Minute), Steps: []*eventsv1.Step{
			{Name: "flaky", Commands: []string{"exit 4"}, FailureIgnore: true},
			{Name: "bad", Commands: []string{"echo SECRET_NOT_MASKED_HERE", "exit 3"}},
			{Name: "after", Commands: []string{"echo never"}},
			{Name: "slow", Commands: []string{"sleep 5"}, Timeout: durationpb.New(200 * time.Millisecond)},
		}}
	_, fin := r.run(job)
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_FAILURE || fin.GetFailedStep() != "bad" {
		t.Fatalf("job %v failed_step %q", fin.GetStatus(), fin.GetFailedStep())
	}
	got := fin.GetSteps()
	want := []struct {
		name   string
		status eventsv1.BuildStatus
		exit   int32
	}{
		{"flaky", eventsv1.BuildStatus_BUILD_STATUS_FAILURE, 4},
		{"bad", eventsv1.BuildStatus_BUILD_STATUS_FAILURE, 3},
		{"after", eventsv1.BuildStatus_BUILD_STATUS_SKIPPED, -1},
		{"slow", eventsv1.BuildStatus_BUILD_STATUS_SKIPPED, -1},
	}
	for i, w := range want {
		if got[i].GetName() != w.name || got[i].GetStatus() != w.status || got[i].GetExitCode() != w.exit {
			t.Errorf("step %d = %s %v %d, want %s %v %d", i, got[i].GetName(), got[i].GetStatus(), got[i].GetExitCode(), w.name, w.status, w.exit)
		}
	}
}

func TestStepTimeout(t *testing.T) {
	r := newRig(t)
	dir, sha := repo(t)
	job := &eventsv1.Job{JobId: bus.NewID(), BuildId: "b3", Kind: "build", Repository: "acme/slow", CloneUrl: dir, Commit: sha,
		Timeout: durationpb.New(time.Minute), Steps: []*eventsv1.Step{
			{Name: "slow", Commands: []string{"sleep 30"}, Timeout: durationpb.New(300 * time.Millisecond)},
		}}
	_, fin := r.run(job)
	st := fin.GetSteps()[0]
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_FAILURE || st.GetError() != "timed out after 300ms" || st.GetExitCode() != -1 {
		t.Fatalf("job %v, step %v", fin.GetStatus(), st)
	}
}

func TestBadCloneURLIsAnError(t *testing.T) {
	r := newRig(t)
	job := &eventsv1.Job{JobId: bus.NewID(), BuildId: "b4", Kind: "build", Repository: "acme/gone", CloneUrl: filepath.Join(t.TempDir(), "missing"),
		Commit: strings.Repeat("a", 40), Timeout: durationpb.New(time.Minute), Steps: []*eventsv1.Step{{Name: "x", Commands: []string{"true"}}}}
	_, fin := r.run(job)
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_ERROR || !strings.Contains(fin.GetError(), "preparing the workspace") {
		t.Fatalf("job %v: %s", fin.GetStatus(), fin.GetError())
	}
	if fin.GetSteps()[0].GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SKIPPED {
		t.Errorf("step %v", fin.GetSteps()[0])
	}
}

// TestDependencyCache: a step's cache is saved after it succeeds and
// restored into the next job whose key files hash the same.
func TestDependencyCache(t *testing.T) {
	r := newRig(t)
	dir, sha := repo(t)
	step := func() *eventsv1.Step {
		return &eventsv1.Step{Name: "deps", Cache: &eventsv1.StepCache{KeyFiles: []string{"go.sum"}, Paths: []string{"vendor"}},
			Commands: []string{"if [ -f vendor/dep.txt ]; then echo \"cached: $(cat vendor/dep.txt)\"; else mkdir -p vendor && echo fetched > vendor/dep.txt && echo downloaded; fi"}}
	}
	job := func() *eventsv1.Job {
		return &eventsv1.Job{JobId: bus.NewID(), BuildId: "b", Kind: "build", Repository: "acme/cache", CloneUrl: dir, Commit: sha,
			Timeout: durationpb.New(time.Minute), Steps: []*eventsv1.Step{step()}}
	}
	readLog := func(fin *eventsv1.JobFinished) string {
		obs, err := r.bus.LogStore(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		data, err := obs.GetBytes(context.Background(), fin.GetLogKey())
		if err != nil {
			t.Fatal(err)
		}
		lines, _ := bus.DecodeLog(data)
		var out []string
		for _, l := range lines {
			out = append(out, l.GetText())
		}
		return strings.Join(out, "\n")
	}
	_, first := r.run(job())
	if log := readLog(first); !strings.Contains(log, "downloaded") || !strings.Contains(log, "saved") {
		t.Fatalf("first job:\n%s", log)
	}
	_, second := r.run(job())
	if log := readLog(second); !strings.Contains(log, "cached: fetched") || !strings.Contains(log, "restored (1 files)") {
		t.Fatalf("second job did not use the cache:\n%s", log)
	}
}

func TestCacheRootsRefuseEscapes(t *testing.T) {
	if _, err := cacheRoots("/w", "/home/u", []string{"../etc"}); err == nil {
		t.Error("../etc accepted")
	}
	if _, err := cacheRoots("/w", "/home/u", []string{"~/../../etc"}); err == nil {
		t.Error("~/../../etc accepted")
	}
	roots, err := cacheRoots("/w", "/home/u", []string{"vendor", "~/.cache/go-build"})
	if err != nil || roots["vendor"] != "/w/vendor" || roots["~/.cache/go-build"] != "/home/u/.cache/go-build" {
		t.Errorf("roots %v, %v", roots, err)
	}
}

// TestStoreInterval: a growing log is rewritten to the Object Store less
// often the bigger it is, and at least every two minutes.
func TestStoreInterval(t *testing.T) {
	for _, c := range []struct {
		size int64
		want time.Duration
	}{{0, 5 * time.Second}, {8<<20 - 1, 5 * time.Second}, {8 << 20, 10 * time.Second}, {80 << 20, 55 * time.Second}, {1 << 30, 2 * time.Minute}} {
		if got := storeInterval(5*time.Second, c.size); got != c.want {
			t.Errorf("storeInterval(5s, %d) = %v, want %v", c.size, got, c.want)
		}
	}
}

// A write JetStream refuses (a leader election in a cluster) is tried again
// with back-off until it is taken; a permanent error, the end of the
// budget or of ctx ends it with the last error.
func TestPersist(t *testing.T) {
	calls := 0
	err := persist(t.Context(), func() error {
		if calls++; calls < 3 {
			return errors.New("nats: no responders available for request")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("persist: %v after %d calls, want success on the 3rd", err, calls)
	}

	calls = 0
	gone := errors.New("open report.xml: no such file or directory")
	if err := persist(t.Context(), func() error { calls++; return permanentError{gone} }); err != gone || calls != 1 {
		t.Fatalf("persist of a permanent error: %v after %d calls, want %v after 1", err, calls, gone)
	}

	old := persistBudget
	persistBudget = 300 * time.Millisecond
	t.Cleanup(func() { persistBudget = old })
	calls = 0
	refused := errors.New("nats: timeout")
	if err := persist(t.Context(), func() error { calls++; return refused }); err != refused || calls < 2 {
		t.Fatalf("persist past its budget: %v after %d calls, want %v after several", err, calls, refused)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls = 0
	if err := persist(ctx, func() error { calls++; return refused }); err != refused || calls != 1 {
		t.Fatalf("persist after ctx ended: %v after %d calls, want %v after 1", err, calls, refused)
	}
}

// A JetStream request whose answer never comes (the node holding it was
// killed) must end after nats.go's own per-request timeout, not at the
// job's deadline an hour away: withoutDeadline drops the deadline and keeps
// the job's cancel.
func TestJetStreamCallsForAJobDoNotWaitForItsDeadline(t *testing.T) {
	b := bustest.Start(t, bus.Options{Source: "/test"})
	nc := b.Conn()
	// Takes every request and never answers, like a node that died with it.
	sink, err := nc.SubscribeSync("lost.API.>")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.NewWithAPIPrefix(nc, "lost.API")
	if err != nil {
		t.Fatal(err)
	}
	jobCtx, cancel := context.WithTimeoutCause(t.Context(), time.Hour, errors.New("job timed out"))
	defer cancel()
	ctx := withoutDeadline(jobCtx)
	if _, ok := ctx.Deadline(); ok {
		t.Fatal("withoutDeadline kept a deadline")
	}
	if _, err := js.KeyValue(ctx, bus.CancelBucket); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a request nobody answers: %v, want nats.go's own timeout (context deadline exceeded)", err)
	}
	if _, err := sink.NextMsg(time.Second); err != nil {
		t.Fatalf("the request never went out: %v", err)
	}
	jobCancel := errors.New("canceled: superseded")
	dctx, dcancel := context.WithTimeout(t.Context(), time.Hour)
	defer dcancel()
	cctx, stop := context.WithCancelCause(dctx)
	ctx = withoutDeadline(cctx)
	stop(jobCancel)
	<-ctx.Done()
	if !errors.Is(context.Cause(ctx), jobCancel) {
		t.Fatalf("cause after the job's cancel: %v, want %v", context.Cause(ctx), jobCancel)
	}
}
