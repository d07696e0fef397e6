package deploys

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

const runbookConfig = `environments:
  - name: staging
    variables: {DB: staging_db}
    secrets: [STAGING_DSN]
    steps: [{name: deploy, commands: [echo deploy]}]
  - name: production
    variables: {DB: prod_db}
    secrets: [PROD_DSN]
    steps: [{name: deploy, commands: [echo prod]}]
runbooks:
  - name: restart
    environment: production
    options:
      - {name: service, type: enum, values: [web, worker], required: true}
      - {name: drain, type: bool, default: false}
      - {name: count, type: int}
    steps:
      - {name: restart, commands: ['systemctl restart "$OPTION_SERVICE"']}
  - name: refresh-staging
    kind: data
    from: production
    to: staging
    steps:
      - {name: copy, commands: ['pg_dump "$FROM_DB" | psql "$TO_DB"']}
`

// TestRunbooks: options validated and passed as OPTION_* only; a runbook
// holds its environment's lock (a person's promote is refused naming it);
// a data runbook waits for the to environment's lock, gets both
// environments' variables (FROM_*, TO_*) and secrets, and records
// environment.data_copied on both; the audit trail says who ran what.
func TestRunbooks(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		repo := "acme/ops"
		var mu sync.Mutex
		var events []string
		sub, err := h.bus.Conn().Subscribe("shiploop.evt.>", func(m *nats.Msg) {
			ev, err := bus.Decode(m)
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch d := ev.Data.(type) {
			case *eventsv1.RunbookStarted:
				events = append(events, ev.Type+" "+d.Run.Runbook+" by "+d.Run.By)
			case *eventsv1.RunbookFinished:
				events = append(events, ev.Type+" "+d.Run.Runbook+" "+d.Run.Status)
			case *eventsv1.DataCopied:
				events = append(events, ev.Type+" "+d.Environment+" "+d.FromEnvironment+"->"+d.ToEnvironment+" by "+d.By)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		h.build(repo, "refs/heads/main", "1.0.0", runbookConfig, "push")
		h.waitForBuild(repo)
		api := &runbookServer{s: h.svc}

		// Refused options name the option (and an enum its values).
		for opts, want := range map[*map[string]string]string{
			{"service": "db"}:                    `option service: "db" is not one of web, worker`,
			{}:                                   "option service is required (one of web, worker)",
			{"service": "web", "drain": "maybe"}: `option drain: "maybe" is not true or false`,
			{"service": "web", "count": "x"}:     `option count: "x" is not an integer`,
			{"service": "web", "colour": "red"}:  "option colour: runbook restart has no such option",
		} {
			_, err := api.RunRunbook(ctx, &deploysv1.RunRunbookRequest{Repository: repo, Runbook: "restart", Options: *opts})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), want) {
				t.Errorf("options %v: got %v, want InvalidArgument %q", *opts, err, want)
			}
		}
		if _, err := api.RunRunbook(ctx, &deploysv1.RunRunbookRequest{Repository: repo, Runbook: "nope"}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("unknown runbook: %v", err)
		}

		resp, err := api.RunRunbook(ctx, &deploysv1.RunRunbookRequest{Repository: repo, Runbook: "restart", Options: map[string]string{"service": "worker; rm -rf /", "drain": "yes"}})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("enum with a shell tail: %v", err)
		}
		resp, err = api.RunRunbook(ctx, &deploysv1.RunRunbookRequest{Repository: repo, Runbook: "restart", Options: map[string]string{"service": "worker", "drain": "1"}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Run.Status != "running" || resp.Run.Environment != "production" || resp.Run.By != "anonymous" {
			t.Fatalf("run: %v", resp.Run)
		}
		j := h.nextJob()
		if j.Kind != "deploy" || j.Environment["OPTION_SERVICE"] != "worker" || j.Environment["OPTION_DRAIN"] != "true" || j.Environment["SHIPLOOP_RUNBOOK"] != "restart" ||
			j.Environment["DB"] != "prod_db" || j.Environment["SHIPLOOP_ENVIRONMENT"] != "production" {
			t.Fatalf("job: kind %s env %v", j.Kind, j.Environment)
		}
		if _, ok := j.Environment["OPTION_COUNT"]; ok {
			t.Errorf("an option not given and without default is set: %v", j.Environment)
		}
		for _, st := range j.Steps {
			for _, c := range st.Commands {
				if strings.Contains(c, "worker") {
					t.Errorf("an option's value reached a command line: %q", c)
				}
			}
			if strings.Join(st.Secrets, ",") != "PROD_DSN" {
				t.Errorf("secrets %v, want the environment's", st.Secrets)
			}
		}
		// The runbook holds production: a person's promote names it.
		_, err = (&grpcServer{s: h.svc}).Promote(ctx, &deploysv1.PromoteRequest{Repository: repo, Environment: "production", Release: "1.0.0", By: "carol"})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "runbook restart run "+resp.Run.RunId) {
			t.Errorf("promote while the runbook runs: %v", err)
		}
		h.run(j, true)
		waitRun(t, api, resp.Run.RunId, "succeeded")

		// A data runbook waits for the to environment's lock.
		if _, err := (&grpcServer{s: h.svc}).Lock(ctx, &deploysv1.LockRequest{Repository: repo, Environment: "staging", Reason: "tests", By: "bob"}); err != nil {
			t.Fatal(err)
		}
		dr, err := api.RunRunbook(ctx, &deploysv1.RunRunbookRequest{Repository: repo, Runbook: "refresh-staging"})
		if err != nil {
			t.Fatal(err)
		}
		if dr.Run.Status != "queued" || !strings.Contains(dr.Run.Reason, "user bob") {
			t.Fatalf("data run behind bob's lock: %v", dr.Run)
		}
		select {
		case j := <-h.jobs:
			t.Fatalf("a job before the lock was released: %v", j)
		case <-time.After(300 * time.Millisecond):
		}
		if _, err := (&grpcServer{s: h.svc}).Unlock(ctx, &deploysv1.UnlockRequest{Repository: repo, Environment: "staging", By: "bob"}); err != nil {
			t.Fatal(err)
		}
		j = h.nextJob()
		if j.Environment["FROM_DB"] != "prod_db" || j.Environment["TO_DB"] != "staging_db" || j.Environment["SHIPLOOP_FROM_ENVIRONMENT"] != "production" ||
			j.Environment["SHIPLOOP_TO_ENVIRONMENT"] != "staging" || j.Environment["SHIPLOOP_ENVIRONMENT"] != "staging" {
			t.Fatalf("data job env: %v", j.Environment)
		}
		if got := strings.Join(j.Steps[0].Secrets, ","); got != "PROD_DSN,STAGING_DSN" {
			t.Errorf("data job secrets %s, want both environments'", got)
		}
		h.run(j, true)
		waitRun(t, api, dr.Run.RunId, "succeeded")

		hist, err := api.ListRunbookRuns(ctx, &deploysv1.ListRunbookRunsRequest{Repository: repo})
		if err != nil || len(hist.Runs) != 2 || hist.Runs[0].Runbook != "refresh-staging" || hist.Runs[1].Options["service"] != "worker" || hist.Runs[1].By != "anonymous" {
			t.Fatalf("history: %v %v", hist, err)
		}
		want := []string{"runbook.started restart by anonymous", "runbook.finished restart succeeded", "runbook.started refresh-staging by anonymous",
			"runbook.finished refresh-staging succeeded", "environment.data_copied production production->staging by anonymous",
			"environment.data_copied staging production->staging by anonymous"}
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			got := strings.Join(events, "\n")
			mu.Unlock()
			if got == strings.Join(want, "\n") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("events:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func waitRun(t *testing.T, api *runbookServer, id, want string) *eventsv1.RunbookRun {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := api.GetRunbookRun(context.Background(), &deploysv1.GetRunbookRunRequest{RunId: id})
		if err != nil {
			t.Fatal(err)
		}
		if r.Run.Status == want {
			return r.Run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: %s (%s), want %s", id, r.Run.Status, r.Run.Reason, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestScheduledRunbookRuns: runbook.requested (a schedule's slot, from
// builds) runs the runbook as "schedule <name>" once per event, however
// often it is delivered; one the runbook refuses is recorded as a failed
// run naming why. ListRunbooks gives the runbooks with their options, and
// on_behalf_of is recorded beside the caller, never instead of it.
func TestScheduledRunbookRuns(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		repo := "acme/sched"
		h.build(repo, "refs/heads/main", "1.0.0", runbookConfig, "push")
		h.waitForBuild(repo)
		api := &runbookServer{s: h.svc}

		ev := bus.NewEvent("runbook.requested", repo, "nightly", &eventsv1.RunbookRequested{Repository: repo, Runbook: "restart",
			Options: map[string]string{"service": "web"}, Schedule: "nightly"})
		for range 2 { // a redelivery: one run
			if err := h.bus.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		j := h.nextJob()
		if j.Environment["OPTION_SERVICE"] != "web" || j.Environment["SHIPLOOP_RUNBOOK_BY"] != "schedule nightly" {
			t.Fatalf("scheduled job env %v", j.Environment)
		}
		h.run(j, true)
		bad := bus.NewEvent("runbook.requested", repo, "weekly", &eventsv1.RunbookRequested{Repository: repo, Runbook: "restart",
			Options: map[string]string{"service": "db"}, Schedule: "weekly"})
		if err := h.bus.Publish(ctx, bad); err != nil {
			t.Fatal(err)
		}
		var runs []*eventsv1.RunbookRun
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			ls, err := api.ListRunbookRuns(ctx, &deploysv1.ListRunbookRunsRequest{Repository: repo})
			if err != nil {
				t.Fatal(err)
			}
			runs = ls.GetRuns()
			done := 0
			for _, r := range runs {
				if r.GetStatus() == "succeeded" || r.GetStatus() == "failed" {
					done++
				}
			}
			if done == 2 || time.Now().After(deadline) {
				break
			}
		}
		got := map[string]*eventsv1.RunbookRun{}
		for _, r := range runs {
			got[r.GetBy()] = r
		}
		if len(runs) != 2 || got["schedule nightly"].GetStatus() != "succeeded" {
			t.Fatalf("runs %v: want the nightly run once, succeeded, and the weekly one failed", runs)
		}
		if w := got["schedule weekly"]; w.GetStatus() != "failed" || !strings.Contains(w.GetReason(), `not run: option service: "db" is not one of web, worker`) || w.GetJobId() != "" {
			t.Errorf("refused scheduled run %v", w)
		}

		lr, err := api.ListRunbooks(ctx, &deploysv1.ListRunbooksRequest{Repository: repo})
		if err != nil {
			t.Fatal(err)
		}
		if len(lr.GetRunbooks()) != 2 || lr.GetVersion() != "1.0.0" {
			t.Fatalf("ListRunbooks %v", lr)
		}
		r := lr.GetRunbooks()[0]
		if r.GetName() != "restart" || r.GetEnvironment() != "production" || len(r.GetOptions()) != 3 ||
			r.GetOptions()[0].GetType() != "enum" || strings.Join(r.GetOptions()[0].GetValues(), ",") != "web,worker" || !r.GetOptions()[0].GetRequired() ||
			!r.GetOptions()[1].GetHasDefault() || r.GetOptions()[1].GetDefault() != "false" || strings.Join(r.GetSteps(), ",") != "restart" {
			t.Errorf("restart %v", r)
		}
		st, err := api.ListRunbooks(ctx, &deploysv1.ListRunbooksRequest{Repository: repo, Environment: "staging"})
		if err != nil || len(st.GetRunbooks()) != 1 || st.GetRunbooks()[0].GetName() != "refresh-staging" || st.GetRunbooks()[0].GetEnvironment() != "staging" {
			t.Errorf("ListRunbooks staging = %v, %v", st, err)
		}
		if _, err := api.ListRunbooks(ctx, &deploysv1.ListRunbooksRequest{Repository: "acme/none"}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("ListRunbooks of a repository never built: %v", err)
		}

		resp, err := api.RunRunbook(ctx, &deploysv1.RunRunbookRequest{Repository: repo, Runbook: "restart", Options: map[string]string{"service": "web"}, OnBehalfOf: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetRun().GetBy() != "alice via anonymous" {
			t.Errorf("by %q, want the claim beside the caller", resp.GetRun().GetBy())
		}
		h.run(h.nextJob(), true)
		if _, err := api.RunRunbook(ctx, &deploysv1.RunRunbookRequest{Repository: repo, Runbook: "restart", OnBehalfOf: "a\nb"}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("a two-line on_behalf_of: %v", err)
		}
	})
}
