package deploys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// harness runs the deploys service on an embedded NATS and a given store;
// the test plays builds, the agent and errortrack by publishing their events.
type harness struct {
	t    *testing.T
	svc  *Service
	bus  *bus.Bus
	api  *grpcServer
	jobs chan *eventsv1.Job
	hook chan TicketNotice
}

func newHarness(t *testing.T, db *store.DB) *harness {
	t.Helper()
	b := bustest.Start(t, bus.Options{Source: "/test"})
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, bus: b, jobs: make(chan *eventsv1.Job, 16), hook: make(chan TicketNotice, 16)}
	sub, err := b.Conn().Subscribe("shiploop.job.deploy.>", func(m *nats.Msg) {
		if ev, err := bus.Decode(m); err == nil {
			h.jobs <- ev.Data.(*eventsv1.Job)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n TicketNotice
		_ = json.NewDecoder(r.Body).Decode(&n)
		h.hook <- n
	}))
	t.Cleanup(receiver.Close)
	svc, err := New(ctx, Config{DB: db, Bus: b, TicketWebhook: receiver.URL, Tick: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h.svc, h.api = svc, &grpcServer{s: svc}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

func (h *harness) publish(typ, repo string, data any) {
	h.t.Helper()
	ev := bus.NewEvent(typ, repo, "", data.(proto.Message))
	if err := h.bus.Publish(context.Background(), ev); err != nil {
		h.t.Fatal(err)
	}
}

var builds atomic.Int64

// build plays builds: a push with commit messages, then a successful build
// of version with the config.
func (h *harness) build(repo, ref, version, config string, trigger string, messages ...string) string {
	h.t.Helper()
	n := builds.Add(1)
	sha := fmt.Sprintf("%040d", n)
	ch := &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Repository: repo, CloneUrl: "/nonexistent", DefaultBranch: "main", Ref: ref, After: sha}
	for i, m := range messages {
		c := sha
		if i < len(messages)-1 {
			c = fmt.Sprintf("%039d%d", n, i)
		}
		ch.Commits = append(ch.Commits, &eventsv1.Commit{Sha: c, Message: m})
	}
	h.publish("change.pushed", repo, ch)
	id := fmt.Sprintf("build-%d", n)
	h.publish("build.created", repo, &eventsv1.BuildCreated{BuildId: id, Number: n, Repository: repo, Ref: ref, Commit: sha, Version: version, Trigger: trigger, Config: []byte(config)})
	h.publish("build.finished", repo, &eventsv1.BuildFinished{BuildId: id, Number: n, Repository: repo, Ref: ref, Commit: sha, Version: version, Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS})
	return sha
}

func (h *harness) nextJob() *eventsv1.Job {
	h.t.Helper()
	select {
	case j := <-h.jobs:
		return j
	case <-time.After(10 * time.Second):
		h.t.Fatal("no deploy job within 10s")
	}
	return nil
}

// run plays the agent for a job.
func (h *harness) run(j *eventsv1.Job, ok bool) {
	h.t.Helper()
	h.publish("job.started", j.Repository, &eventsv1.JobStarted{JobId: j.JobId, BuildId: j.BuildId, Repository: j.Repository, Agent: "a1", Attempt: 1, StartedAt: timestamppb.Now()})
	st := eventsv1.BuildStatus_BUILD_STATUS_SUCCESS
	if !ok {
		st = eventsv1.BuildStatus_BUILD_STATUS_FAILURE
	}
	h.publish("job.finished", j.Repository, &eventsv1.JobFinished{JobId: j.JobId, BuildId: j.BuildId, Repository: j.Repository, Status: st, FailedStep: map[bool]string{false: "deploy"}[ok], Error: map[bool]string{false: "exit status 1"}[ok]})
}

// waitFor polls the environment's deployments until one matches.
func (h *harness) waitFor(repo, env, what string, ok func(*deploysv1.Deployment) bool) *deploysv1.Deployment {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last []*deploysv1.Deployment
	for time.Now().Before(deadline) {
		resp, err := h.api.ListDeployments(context.Background(), &deploysv1.ListDeploymentsRequest{Repository: repo, Environment: env})
		if err != nil {
			h.t.Fatal(err)
		}
		last = resp.GetDeployments()
		for _, d := range last {
			if ok(d) {
				return d
			}
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	var got []string
	for _, d := range last {
		got = append(got, fmt.Sprintf("%s %s %s (%s)", d.GetKind(), d.GetRelease(), statusName(d.GetStatus()), d.GetReason()))
	}
	h.t.Fatalf("%s in %s: not within 15s; deployments: %v", what, env, got)
	return nil
}

func is(release string, st eventsv1.DeployStatus) func(*deploysv1.Deployment) bool {
	return func(d *deploysv1.Deployment) bool { return d.GetRelease() == release && d.GetStatus() == st }
}

func configWith(probe string) string {
	return fmt.Sprintf(`environments:
  - name: acceptance
    auto: true
    variables: {URL: %q}
    steps: [{name: deploy, commands: [echo deploy]}]
    verify:
      window: 300ms
      conditions:
        - {metric: "http_status(${URL})", operator: "==", threshold: 200}
        - {metric: errortrack.new_issues, operator: "<=", threshold: 0, require_evidence: false}
  - name: production
    approval: {required: 2}
    steps: [{name: deploy, commands: [echo prod]}]
  - name: preview
    steps:
      - {name: up, commands: [echo up]}
      - {name: teardown, commands: [echo down]}
`, probe)
}

func TestPromotionPath(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			http.Error(w, "broken", http.StatusInternalServerError)
		}
	}))
	defer app.Close()
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		cfg := configWith(app.URL)
		repo := "acme/web"

		// v1: acceptance automatically, verified, then waits for two approvals.
		healthy.Store(true)
		h.build(repo, "refs/heads/main", "1.0.0", cfg, "push", "ABC-1 first")
		j := h.nextJob()
		if j.Kind != "deploy" || j.Environment["SHIPLOOP_ENVIRONMENT"] != "acceptance" || j.Environment["SHIPLOOP_VERSION"] != "1.0.0" || j.Environment["URL"] != app.URL {
			t.Fatalf("job %+v", j)
		}
		h.run(j, true)
		acc := h.waitFor(repo, "acceptance", "1.0.0 verified", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		if len(acc.GetChecks()) != 2 || acc.GetChecks()[0].GetStatus() != eventsv1.CheckStatus_CHECK_STATUS_SUCCESS || acc.GetTickets()[0] != "ABC-1" {
			t.Fatalf("acceptance deployment %+v", acc)
		}
		select {
		case n := <-h.hook:
			if n.Ticket != "ABC-1" || n.Environment != "acceptance" || n.Version != "1.0.0" {
				t.Errorf("webhook %+v", n)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the ticket webhook got nothing")
		}
		prod := h.waitFor(repo, "production", "awaiting approval", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_AWAITING_APPROVAL))
		if _, err := h.api.Approve(ctx, &deploysv1.ApproveRequest{DeployId: prod.GetId(), Approver: "ann", Comment: "looks good"}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.api.Approve(ctx, &deploysv1.ApproveRequest{DeployId: prod.GetId(), Approver: "ann"}); status.Code(err) != codes.AlreadyExists {
			t.Errorf("second approval by the same person: %v", err)
		}
		r, err := h.api.Approve(ctx, &deploysv1.ApproveRequest{DeployId: prod.GetId(), Approver: "bob", Comment: "ship it"})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.GetDeployment(); got.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_RUNNING || len(got.GetApprovals()) != 2 || got.GetApprovals()[0].GetComment() != "looks good" {
			t.Fatalf("after two approvals: %+v", got)
		}
		h.run(h.nextJob(), true)
		h.waitFor(repo, "production", "1.0.0 in production", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))

		// v2 breaks the health check: rolled back to 1.0.0 with the cause.
		healthy.Store(false)
		h.build(repo, "refs/heads/main", "1.1.0", cfg, "push", "ABC-2 second")
		h.run(h.nextJob(), true)
		bad := h.waitFor(repo, "acceptance", "1.1.0 rolled back", is("1.1.0", eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK))
		if !strings.Contains(bad.GetReason(), "answered 500, want == 200") {
			t.Errorf("rolled back reason %q", bad.GetReason())
		}
		rb := h.nextJob()
		if rb.Environment["SHIPLOOP_VERSION"] != "1.0.0" || rb.Environment["SHIPLOOP_DEPLOY_KIND"] != "rollback" {
			t.Fatalf("rollback job %v", rb.Environment)
		}
		h.run(rb, true)
		back := h.waitFor(repo, "acceptance", "rollback done", func(d *deploysv1.Deployment) bool {
			return d.GetKind() == "rollback" && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
		})
		if back.GetRelease() != "1.0.0" || back.GetRollbackOf() != bad.GetId() || !strings.Contains(back.GetCause(), "verification failed") {
			t.Errorf("rollback %+v", back)
		}
		envs, err := h.api.ListEnvironments(ctx, &deploysv1.ListEnvironmentsRequest{Repository: repo})
		if err != nil {
			t.Fatal(err)
		}
		if envs.GetEnvironments()[0].GetCurrentRelease() != "1.0.0" || envs.GetEnvironments()[1].GetCurrentRelease() != "1.0.0" {
			t.Errorf("environments %+v", envs.GetEnvironments())
		}

		// An errortrack signal for the release fails verification too.
		healthy.Store(true)
		h.build(repo, "refs/heads/main", "1.2.0", cfg, "push", "fix")
		j = h.nextJob()
		h.publish("errortrack.issue.opened", repo, &errortrackv1.IssueOpened{Issue: &errortrackv1.IssueRef{IssueId: 7, Title: "nil map"}, Release: "web@1.2.0", Environment: "acceptance"})
		h.run(j, true)
		bad = h.waitFor(repo, "acceptance", "1.2.0 rolled back", is("1.2.0", eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK))
		if !strings.Contains(bad.GetReason(), "#7 nil map") {
			t.Errorf("reason %q", bad.GetReason())
		}
		h.run(h.nextJob(), true)
		h.waitFor(repo, "acceptance", "second rollback done", func(d *deploysv1.Deployment) bool {
			return d.GetKind() == "rollback" && d.GetRollbackOf() == bad.GetId() && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
		})
	})
}

func TestLocksAndFreezes(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		repo := "acme/api"
		cfg := `environments:
  - {name: staging, steps: [{name: d, commands: [echo]}]}
`
		h.build(repo, "refs/heads/main", "2.0.0", cfg, "push")
		h.waitForBuild(repo)
		// Two promotions at once: one proceeds, the other is told who holds the lock.
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = h.api.Promote(ctx, &deploysv1.PromoteRequest{Repository: repo, Environment: "staging", By: fmt.Sprint("user", i)})
			}()
		}
		wg.Wait()
		okN, locked := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				okN++
			case status.Code(err) == codes.FailedPrecondition && strings.Contains(err.Error(), "is locked by deploy "):
				locked++
			default:
				t.Errorf("promote: %v", err)
			}
		}
		if okN != 1 || locked != 1 {
			t.Fatalf("two promotions: %d went ahead, %d were refused (%v)", okN, locked, errs)
		}
		h.run(h.nextJob(), true)
		h.waitFor(repo, "staging", "2.0.0 deployed", is("2.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))

		// A person's lock keeps promotions out until unlocked.
		if _, err := h.api.Lock(ctx, &deploysv1.LockRequest{Repository: repo, Environment: "staging", Reason: "db migration", By: "carol"}); err != nil {
			t.Fatal(err)
		}
		_, err := h.api.Promote(ctx, &deploysv1.PromoteRequest{Repository: repo, Environment: "staging", By: "dan"})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "user carol") || !strings.Contains(err.Error(), "db migration") {
			t.Fatalf("promote into a locked environment: %v", err)
		}
		if _, err := h.api.Unlock(ctx, &deploysv1.UnlockRequest{Repository: repo, Environment: "staging", By: "carol"}); err != nil {
			t.Fatal(err)
		}

		// A freeze window blocks the automatic deploy; a forced promote is recorded.
		auto := `environments:
  - {name: staging, auto: true, steps: [{name: d, commands: [echo]}]}
`
		if _, err := h.api.Freeze(ctx, &deploysv1.FreezeRequest{Repository: repo, EndsAt: timestamppb.New(time.Now().Add(time.Hour)), Reason: "holidays", By: "erin"}); err != nil {
			t.Fatal(err)
		}
		h.build(repo, "refs/heads/main", "2.1.0", auto, "push")
		blocked := h.waitFor(repo, "staging", "blocked", is("2.1.0", eventsv1.DeployStatus_DEPLOY_STATUS_BLOCKED))
		if !strings.Contains(blocked.GetReason(), "holidays") {
			t.Errorf("blocked reason %q", blocked.GetReason())
		}
		_, err = h.api.Promote(ctx, &deploysv1.PromoteRequest{Repository: repo, Environment: "staging", Release: "2.1.0"})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "--force") {
			t.Fatalf("promote in a freeze: %v", err)
		}
		r, err := h.api.Promote(ctx, &deploysv1.PromoteRequest{Repository: repo, Environment: "staging", Release: "2.1.0", Force: true, By: "frank"})
		if err != nil || !r.GetDeployment().GetForced() {
			t.Fatalf("forced promote: %v %+v", err, r.GetDeployment())
		}
		h.run(h.nextJob(), true)
		h.waitFor(repo, "staging", "forced 2.1.0", is("2.1.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		// Manual rollback to 2.0.0.
		rr, err := h.api.Rollback(ctx, &deploysv1.RollbackRequest{Repository: repo, Environment: "staging", By: "gina", Reason: "slow"})
		if err != nil || rr.GetDeployment().GetRelease() != "2.0.0" {
			t.Fatalf("rollback: %v %+v", err, rr.GetDeployment())
		}
		h.run(h.nextJob(), true)
		h.waitFor(repo, "staging", "rolled back by hand", func(d *deploysv1.Deployment) bool {
			return d.GetKind() == "rollback" && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED && d.GetCause() == "rolled back by gina: slow"
		})
	})
}

func (h *harness) waitForBuild(repo string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		if err := h.svc.db.QueryRow(`SELECT COUNT(*) FROM builds WHERE repository = $1 AND status = $2`, repo, int32(eventsv1.BuildStatus_BUILD_STATUS_SUCCESS)).Scan(&n); err == nil && n > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatal("build not seen")
}

func TestPreviewAndInterruption(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		repo := "acme/shop"
		cfg := configWith("http://127.0.0.1:1")
		h.publish("change.pr_opened", repo, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_OPENED, Repository: repo, CloneUrl: "/x",
			DefaultBranch: "main", Ref: "refs/heads/feature", After: fmt.Sprintf("%040d", builds.Load()+1), PullRequestNumber: 42, PullRequestTitle: "feature"})
		h.build(repo, "refs/heads/feature", "0.1.0-pr", cfg, "pull_request")
		j := h.nextJob()
		if j.Environment["SHIPLOOP_ENVIRONMENT"] != "pr-42" || j.Environment["SHIPLOOP_PULL_REQUEST"] != "42" || len(j.Steps) != 1 || j.Steps[0].Name != "up" {
			t.Fatalf("preview job %v %v", j.Environment, j.Steps)
		}
		h.run(j, true)
		h.waitFor(repo, "pr-42", "preview up", is("0.1.0-pr", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		h.publish("change.pr_merged", repo, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_MERGED, Repository: repo, PullRequestNumber: 42})
		td := h.nextJob()
		if len(td.Steps) != 1 || td.Steps[0].Name != "teardown" {
			t.Fatalf("teardown steps %v", td.Steps)
		}
		h.run(td, true)
		h.waitFor(repo, "pr-42", "torn down", func(d *deploysv1.Deployment) bool {
			return d.GetKind() == "teardown" && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
		})
		deadline := time.Now().Add(10 * time.Second)
		for {
			envs, err := h.api.ListEnvironments(context.Background(), &deploysv1.ListEnvironmentsRequest{Repository: repo})
			if err != nil {
				t.Fatal(err)
			}
			if len(envs.GetEnvironments()) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("preview still listed: %v", envs.GetEnvironments())
			}
			time.Sleep(20 * time.Millisecond)
		}

		// A deploy job delivered to a second agent is stopped, never run twice.
		h.build(repo, "refs/heads/main", "1.0.0", cfg, "push")
		j = h.nextJob()
		h.publish("job.started", repo, &eventsv1.JobStarted{JobId: j.JobId, Repository: repo, Agent: "a1", Attempt: 1})
		h.publish("job.started", repo, &eventsv1.JobStarted{JobId: j.JobId, Repository: repo, Agent: "a2", Attempt: 2})
		d := h.waitFor(repo, "acceptance", "interrupted", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_INTERRUPTED))
		if !strings.Contains(d.GetReason(), "attempt 2") {
			t.Errorf("reason %q", d.GetReason())
		}
		kv, err := h.bus.Cancels(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Get(context.Background(), j.JobId); err != nil && !errors.Is(err, nil) {
			t.Errorf("no cancel for the interrupted job: %v", err)
		}
	})
}

// TestInterruptedDeployRerun: an environment that says on_interrupt: rerun
// lets the next agent run a deploy whose first agent stopped mid-way; the
// deploy is not canceled and ends with that agent's result. Without the
// key the same events end it interrupted (TestPreviewEnvironments).
func TestInterruptedDeployRerun(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, "deploys"))
	repo := "acme/rerun"
	h.build(repo, "refs/heads/main", "4.0.0", "environments:\n  - {name: staging, auto: true, on_interrupt: rerun, steps: [{name: d, commands: [kubectl apply -f k8s]}]}\n", "push")
	j := h.nextJob()
	h.publish("job.started", repo, &eventsv1.JobStarted{JobId: j.JobId, BuildId: j.BuildId, Repository: repo, Agent: "a1", Attempt: 1})
	h.publish("job.started", repo, &eventsv1.JobStarted{JobId: j.JobId, BuildId: j.BuildId, Repository: repo, Agent: "a2", Attempt: 2})
	d := h.waitFor(repo, "staging", "the rerun", func(d *deploysv1.Deployment) bool {
		return d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_RUNNING && strings.Contains(d.GetReason(), "agent a2 (attempt 2)")
	})
	if !strings.Contains(d.GetReason(), "on_interrupt: rerun") {
		t.Errorf("reason %q does not say why it runs again", d.GetReason())
	}
	kv, err := h.bus.Cancels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(context.Background(), j.JobId); err == nil {
		t.Fatalf("the rerun was canceled: %s", e.Value())
	}
	h.publish("job.finished", repo, &eventsv1.JobFinished{JobId: j.JobId, BuildId: j.BuildId, Repository: repo, Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS})
	h.waitFor(repo, "staging", "4.0.0 deployed", is("4.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
}

// TestJobDeliveredAgain: a deploy job that reaches an agent again after the
// deploy ended (its message published a second time) is canceled, so its
// steps do not deploy twice; the deployment keeps its result.
func TestJobDeliveredAgain(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, "deploys"))
	repo := "acme/again"
	h.build(repo, "refs/heads/main", "3.0.0", "environments:\n  - {name: staging, auto: true, steps: [{name: d, commands: [echo]}]}\n", "push")
	j := h.nextJob()
	h.run(j, true)
	h.waitFor(repo, "staging", "3.0.0 deployed", is("3.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
	kv, err := h.bus.Cancels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(context.Background(), j.JobId); err == nil {
		t.Fatal("the job was canceled before a second delivery")
	}
	h.publish("job.started", repo, &eventsv1.JobStarted{JobId: j.JobId, Repository: repo, Agent: "a2", Attempt: 1})
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err := kv.Get(context.Background(), j.JobId)
		if err == nil {
			if !strings.Contains(string(e.Value()), "already ran (succeeded)") {
				t.Errorf("cancel reason %q", e.Value())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second delivery of the job was not canceled: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.waitFor(repo, "staging", "3.0.0 still deployed", is("3.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
}

// TestBuildEventsHandledAtOnce: two replicas of deploys on PostgreSQL
// handle a build's build.created and build.finished at the same moment.
// Without the build's lock the finish, not seeing the uncommitted build,
// was kept as early while the creation, not seeing the uncommitted early
// event, found none: the deploy was lost.
func TestBuildEventsHandledAtOnce(t *testing.T) {
	db := storetest.OpenPostgres(t, "deploys")
	if err := db.Migrate(t.Context(), Migrations()...); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, db)
	repo, id, sha := "acme/replicas", "build-replicas-1", fmt.Sprintf("%040d", 515151)
	cfg := "steps:\n  - {name: build, commands: [\"true\"]}\nenvironments:\n  - {name: acceptance, auto: true, steps: [{name: deploy, commands: [\"true\"]}]}\n"
	h.publish("change.pushed", repo, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Repository: repo, CloneUrl: "/nonexistent", DefaultBranch: "main", Ref: "refs/heads/main", After: sha})
	created := bus.Event{ID: bus.NewID(), Type: "build.created", Repository: repo, Data: &eventsv1.BuildCreated{BuildId: id, Number: 1, Repository: repo, Ref: "refs/heads/main", Commit: sha, Version: "1.0.0", Trigger: "push", Config: []byte(cfg)}}
	finished := bus.Event{ID: bus.NewID(), Type: "build.finished", Repository: repo, Data: &eventsv1.BuildFinished{BuildId: id, Number: 1, Repository: repo, Ref: "refs/heads/main", Commit: sha, Version: "1.0.0", Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS}}
	handled, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- h.svc.ob.InTx(t.Context(), func(tx *bus.Tx) error {
			if err := h.svc.handle(t.Context(), tx, created); err != nil {
				return err
			}
			close(handled)
			<-release // the other replica handles build.finished meanwhile
			return nil
		})
	}()
	<-handled
	second := make(chan error, 1)
	go func() {
		second <- h.svc.ob.InTx(t.Context(), func(tx *bus.Tx) error { return h.svc.handle(t.Context(), tx, finished) })
	}()
	time.Sleep(300 * time.Millisecond)
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	j := h.nextJob()
	if j.Repository != repo || j.Environment["SHIPLOOP_VERSION"] != "1.0.0" {
		t.Fatalf("job %+v", j)
	}
}

// TestEventsBeforeBuildCreated: a crash of deploys while it handled
// build.created makes the redelivery come after the build's later events.
// A passed gate, or for an environment without a gate a successful
// build.finished, waits for the build, which then deploys once (dropping
// the gate lost 3 deploys of 1,000 in TestCrashSplitModeThroughDeploy).
func TestEventsBeforeBuildCreated(t *testing.T) {
	gated := "steps:\n  - {name: build, commands: [\"true\"]}\ngate:\n  conditions:\n    - {metric: tests_failed, operator: \"==\", threshold: 0}\nenvironments:\n  - name: acceptance\n    auto: true\n    steps:\n      - {name: deploy, commands: [\"true\"]}\n"
	ungated := "steps:\n  - {name: build, commands: [\"true\"]}\nenvironments:\n  - name: acceptance\n    auto: true\n    steps:\n      - {name: deploy, commands: [\"true\"]}\n"
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		for i, tc := range []struct {
			name, cfg string
			early     []string // published before build.created, in this order
			late      []string // after it
			deploys   bool
		}{
			{"passed gate twice", gated, []string{"gate", "gate"}, []string{"finished"}, true},
			{"finished and gate", gated, []string{"finished", "gate"}, nil, true},
			{"gate then finished", gated, []string{"gate", "finished"}, nil, true},
			{"finished without a gate", ungated, []string{"finished", "finished"}, nil, true},
			{"failed build without a gate", ungated, []string{"failed"}, nil, false},
			{"finished, gate still to come", gated, []string{"finished"}, []string{"gate"}, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				repo := fmt.Sprintf("acme/early-%d", i)
				id, sha := fmt.Sprintf("build-early-%d", i), fmt.Sprintf("%040d", 424200+i)
				h.publish("change.pushed", repo, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Repository: repo, CloneUrl: "/nonexistent", DefaultBranch: "main", Ref: "refs/heads/main", After: sha})
				send := func(what string) {
					switch what {
					case "gate":
						h.publish("gate.evaluated", repo, &eventsv1.GateEvaluated{BuildId: id, Repository: repo, Status: eventsv1.GateStatus_GATE_STATUS_PASSED})
					case "finished", "failed":
						st := eventsv1.BuildStatus_BUILD_STATUS_SUCCESS
						if what == "failed" {
							st = eventsv1.BuildStatus_BUILD_STATUS_FAILURE
						}
						h.publish("build.finished", repo, &eventsv1.BuildFinished{BuildId: id, Number: 1, Repository: repo, Ref: "refs/heads/main", Commit: sha, Version: "1.0.0", Status: st})
					}
				}
				for _, e := range tc.early {
					send(e)
				}
				h.publish("build.created", repo, &eventsv1.BuildCreated{BuildId: id, Number: 1, Repository: repo, Ref: "refs/heads/main", Commit: sha, Version: "1.0.0", Trigger: "push", Config: []byte(tc.cfg)})
				for _, e := range tc.late {
					send(e)
				}
				// The build's result is recorded whatever the order.
				want := eventsv1.BuildStatus_BUILD_STATUS_SUCCESS
				if slices.Contains(tc.early, "failed") {
					want = eventsv1.BuildStatus_BUILD_STATUS_FAILURE
				}
				for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					var st int32
					if err := db.QueryRowContext(t.Context(), `SELECT status FROM builds WHERE id = $1`, id).Scan(&st); err == nil && st == int32(want) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("build %s: status not recorded as %v within 10s", id, want)
					}
				}
				if !tc.deploys {
					select {
					case j := <-h.jobs:
						t.Fatalf("a failed build deployed: %+v", j)
					case <-time.After(time.Second):
					}
					return
				}
				j := h.nextJob()
				if j.Repository != repo || j.Environment["SHIPLOOP_ENVIRONMENT"] != "acceptance" || j.Environment["SHIPLOOP_VERSION"] != "1.0.0" {
					t.Fatalf("job %+v", j)
				}
				select {
				case j2 := <-h.jobs:
					t.Fatalf("a second deploy job %+v", j2)
				case <-time.After(time.Second):
				}
			})
		}
	})
}
