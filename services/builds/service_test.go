package builds

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	"github.com/shiploop/shiploop/pkg/vcsarg"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// harness runs the builds service on an embedded NATS and a given store,
// playing the agent's part by hand.
type harness struct {
	t   *testing.T
	svc *Service
	bus *bus.Bus
	api *grpcServer
}

func newHarness(t *testing.T, db *store.DB) *harness {
	t.Helper()
	b := bustest.Start(t, bus.Options{Source: "/test"})
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := New(ctx, Config{DB: db, Bus: b, DataDir: t.TempDir(), AllowedTransports: "https,ssh,git,file"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &harness{t: t, svc: svc, bus: b, api: &grpcServer{s: svc}}
}

func gitRepo(t *testing.T, files map[string]string) (dir, sha string) {
	t.Helper()
	dir = t.TempDir()
	run := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t.invalid")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "--quiet", "--initial-branch=main")
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run("add", "-A")
	run("commit", "--quiet", "-m", "first")
	return dir, run("rev-parse", "HEAD")
}

// nextJob waits for the job the service queued.
func (h *harness) nextJob(ctx context.Context) *eventsv1.Job {
	h.t.Helper()
	got := make(chan *eventsv1.Job, 1)
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = h.bus.Take(tctx, bus.JobConsumerConfig{Name: "test-agent"}, func(ctx context.Context, j *bus.Job) error {
			got <- j.Data.(*eventsv1.Job)
			cancel()
			return nil
		})
	}()
	select {
	case j := <-got:
		return j
	case <-time.After(30 * time.Second):
		h.t.Fatal("no job queued within 30s")
	}
	return nil
}

func (h *harness) waitBuild(ctx context.Context, id string, want eventsv1.BuildStatus) *buildsv1.Build {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := h.api.GetBuild(ctx, &buildsv1.GetBuildRequest{Id: id})
		if err == nil && resp.GetBuild().GetStatus() == want {
			return resp.GetBuild()
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("build %s not %v within 30s (last: %v, %v)", id, want, resp.GetBuild(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLostJobFailsItsBuild: agents that take a job and die (never ack,
// never finish) until JetStream stops delivering it leave the build
// running for ever unless someone ends the job; builds does, from the
// max-deliveries advisory, with an error naming what happened.
func TestLostJobFailsItsBuild(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		dir, sha := gitRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: oom\n    commands: [./eat-all-memory]\n"})
		if _, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/lost", CloneUrl: dir}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.acceptChange(ctx, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "github", DeliveryId: "lost-1",
			Repository: "acme/lost", CloneUrl: dir, Ref: "refs/heads/main", Branch: "main", After: sha}); err != nil {
			t.Fatal(err)
		}
		// Two agents in turn take the job and die with it: no ack, no
		// job.finished; the consumer gives up after two deliveries.
		cons, err := h.bus.JetStream().CreateOrUpdateConsumer(ctx, bus.StreamJobs, jetstream.ConsumerConfig{
			Durable: "dying-agents", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second, MaxDeliver: 2})
		if err != nil {
			t.Fatal(err)
		}
		var job *eventsv1.Job
		for attempt := uint64(1); attempt <= 2; attempt++ {
			m, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
			if err != nil {
				t.Fatalf("delivery %d: %v", attempt, err)
			}
			md, _ := m.Metadata()
			ev, err := bus.Decode(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
			if err != nil || md.NumDelivered != attempt {
				t.Fatalf("delivery %d: %v, delivered %d times", attempt, err, md.NumDelivered)
			}
			job = ev.Data.(*eventsv1.Job)
			if err := h.bus.Publish(ctx, bus.Event{Type: "job.started", Repository: job.Repository, Subject: job.JobId, Data: &eventsv1.JobStarted{
				JobId: job.JobId, BuildId: job.BuildId, Repository: job.Repository, Agent: fmt.Sprintf("a%d", attempt), Attempt: attempt, StartedAt: timestamppb.Now()}}); err != nil {
				t.Fatal(err)
			}
		}
		// A third agent asks: the server, due to redeliver, gives up
		// instead and publishes the advisory.
		if m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second)); err == nil {
			t.Fatalf("a third delivery of %s", m.Subject())
		}
		b := h.waitBuild(ctx, job.BuildId, eventsv1.BuildStatus_BUILD_STATUS_ERROR)
		if !strings.Contains(b.GetError(), "agent lost: the job was delivered 2 times") {
			t.Errorf("build error %q does not say the agents were lost", b.GetError())
		}
		// An agent still running it (one that lost its lease, not its
		// life) is told to stop.
		kv, err := h.bus.Cancels(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			e, err := kv.Get(ctx, job.JobId)
			if err == nil {
				if !strings.Contains(string(e.Value()), "agent lost") {
					t.Errorf("cancel reason %q", e.Value())
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the lost job was not canceled: %v", err)
			}
		}
		// The job is out of the work queue: no longer live for secrets.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			_, live, err := h.bus.LiveJob(ctx, job.Repository, job.JobId)
			if err == nil && !live {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the lost job is still in JOBS (live %v, %v)", live, err)
			}
		}
	})
}

// TestBuildLifecycle drives a change through the builds service on both
// store engines: the change becomes a build and a job; the agent's events
// move the build to running and to its final state.
func TestBuildLifecycle(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		dir, sha := gitRepo(t, map[string]string{".shiploop.yml": "env: {A: b}\nsteps:\n  - name: one\n    commands: [echo 1]\n  - name: two\n    commands: [echo 2]\n    timeout: 5s\n"})
		if _, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/web", CloneUrl: dir}); err != nil {
			t.Fatal(err)
		}
		reply, err := h.svc.acceptChange(ctx, &eventsv1.Change{
			Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "github", DeliveryId: "d1", Repository: "acme/web",
			CloneUrl: dir, Ref: "refs/heads/main", Branch: "main", After: sha,
		})
		if err != nil || reply.Duplicate {
			t.Fatalf("acceptChange: %+v %v", reply, err)
		}
		again, err := h.svc.acceptChange(ctx, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "github", DeliveryId: "d1", Repository: "acme/web", After: sha})
		if err != nil || !again.Duplicate || again.EventID != reply.EventID {
			t.Fatalf("redelivery: %+v %v", again, err)
		}

		job := h.nextJob(ctx)
		if job.GetCommit() != sha || job.GetKind() != "build" || len(job.GetSteps()) != 2 || job.GetSteps()[1].GetTimeout().AsDuration() != 5*time.Second {
			t.Fatalf("job = %v", job)
		}
		if job.GetSteps()[0].GetEnvironment()["A"] != "b" || job.GetEnvironment()["SHIPLOOP_VERSION"] != "0.0.1-dev.1+g"+sha[:7] {
			t.Errorf("job env = %v", job.GetEnvironment())
		}
		b := h.waitBuild(ctx, job.GetBuildId(), eventsv1.BuildStatus_BUILD_STATUS_QUEUED)
		if b.GetNumber() != 1 || b.GetChainId() != reply.EventID {
			t.Errorf("build = %v", b)
		}

		now := time.Now()
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(h.bus.Publish(ctx, bus.Event{Type: "job.started", Repository: "acme/web", Subject: job.GetJobId(), Data: &eventsv1.JobStarted{
			JobId: job.GetJobId(), BuildId: job.GetBuildId(), Repository: "acme/web", Agent: "a1", StartedAt: timestamppb.New(now)}}))
		h.waitBuild(ctx, job.GetBuildId(), eventsv1.BuildStatus_BUILD_STATUS_RUNNING)
		steps := []*eventsv1.StepResult{
			{Name: "one", Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, ExitCode: 0, Duration: durationpb.New(time.Millisecond), StartedAt: timestamppb.New(now)},
			{Name: "two", Status: eventsv1.BuildStatus_BUILD_STATUS_FAILURE, ExitCode: 2, Duration: durationpb.New(2 * time.Millisecond), StartedAt: timestamppb.New(now), Error: "exit code 2"},
		}
		must(h.bus.Publish(ctx, bus.Event{Type: "job.finished", Repository: "acme/web", Subject: job.GetJobId(), Data: &eventsv1.JobFinished{
			JobId: job.GetJobId(), BuildId: job.GetBuildId(), Repository: "acme/web", Status: eventsv1.BuildStatus_BUILD_STATUS_FAILURE,
			FailedStep: "two", Steps: steps, Agent: "a1"}}))
		b = h.waitBuild(ctx, job.GetBuildId(), eventsv1.BuildStatus_BUILD_STATUS_FAILURE)
		if b.GetFailedStep() != "two" || len(b.GetSteps()) != 2 || b.GetSteps()[1].GetExitCode() != 2 || b.GetSteps()[1].GetError() != "exit code 2" || b.GetFinishedAt() == nil {
			t.Errorf("finished build = %v", b)
		}

		list, err := h.api.ListBuilds(ctx, &buildsv1.ListBuildsRequest{Repository: "acme/web"})
		if err != nil || len(list.GetBuilds()) != 1 {
			t.Errorf("ListBuilds = %v, %v", list, err)
		}
	})
}

// TestListBuildsPages: pages cover every build once, newest first.
func TestListBuildsPages(t *testing.T) {
	storetest.Engines(t, "builds", Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for i := 1; i <= 7; i++ {
			_, err := db.ExecContext(ctx, `INSERT INTO builds (id, repository, number, ref, commit_sha, version, status, trigger, chain_id, change_id, created_at) VALUES ($1, 'r', $2, 'refs/heads/main', 'c', 'v', 1, 'push', 'x', $1, $3)`,
				"b"+string(rune('0'+i)), i, int64(1000+i/2)) // equal timestamps on purpose
			if err != nil {
				t.Fatal(err)
			}
		}
		api := &grpcServer{s: &Service{db: db, mirrors: newMirrors(t.TempDir(), vcsarg.MustTransports("https,ssh,git,file"))}}
		var numbers []int64
		token := ""
		for range 10 {
			resp, err := api.ListBuilds(ctx, &buildsv1.ListBuildsRequest{PageSize: 3, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range resp.GetBuilds() {
				numbers = append(numbers, b.GetNumber())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		want := []int64{7, 6, 5, 4, 3, 2, 1}
		if len(numbers) != len(want) {
			t.Fatalf("pages gave %v, want %v", numbers, want)
		}
		for i := range want {
			if numbers[i] != want[i] {
				t.Fatalf("pages gave %v, want %v", numbers, want)
			}
		}
		if _, err := api.ListBuilds(ctx, &buildsv1.ListBuildsRequest{PageToken: "garbage!"}); err == nil || !strings.Contains(err.Error(), "page_token") {
			t.Errorf("bad token: %v", err)
		}
	})
}

// TestConcurrencyGroup: with limit 1, a second build's job waits until the
// first one's job finishes, across repositories.
func TestConcurrencyGroup(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		cfg := ".shiploop.yml"
		content := "concurrency: {group: prod-deploys}\nsteps:\n  - name: deploy\n    commands: [echo deploy]\n"
		var shas []string
		for _, name := range []string{"acme/one", "acme/two"} {
			dir, sha := gitRepo(t, map[string]string{cfg: content})
			if _, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: name, CloneUrl: dir}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.svc.acceptChange(ctx, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "github", DeliveryId: name,
				Repository: name, CloneUrl: dir, Ref: "refs/heads/main", Branch: "main", After: sha}); err != nil {
				t.Fatal(err)
			}
			shas = append(shas, sha)
		}
		jobs := make(chan *eventsv1.Job, 4)
		tctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			_ = h.bus.Take(tctx, bus.JobConsumerConfig{Name: "test-agent"}, func(ctx context.Context, j *bus.Job) error {
				jobs <- j.Data.(*eventsv1.Job)
				return nil
			})
		}()
		first := <-jobs
		// Both builds are recorded; only one job is out.
		deadline := time.Now().Add(10 * time.Second)
		for {
			list, err := h.api.ListBuilds(ctx, &buildsv1.ListBuildsRequest{})
			if err == nil && len(list.GetBuilds()) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("builds not recorded: %v %v", list, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		select {
		case j := <-jobs:
			t.Fatalf("second job %s dispatched while the group is full", j.GetRepository())
		case <-time.After(300 * time.Millisecond):
		}
		if err := h.bus.Publish(ctx, bus.Event{Type: "job.finished", Repository: first.GetRepository(), Subject: first.GetJobId(), Data: &eventsv1.JobFinished{
			JobId: first.GetJobId(), BuildId: first.GetBuildId(), Repository: first.GetRepository(), Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS}}); err != nil {
			t.Fatal(err)
		}
		select {
		case second := <-jobs:
			if second.GetRepository() == first.GetRepository() {
				t.Errorf("the same repository's job came twice")
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the waiting job was not dispatched after the first finished")
		}
		_ = shas
	})
}
