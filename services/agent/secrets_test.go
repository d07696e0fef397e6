package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/agent/backend"
)

// newSecretsRig is newRig with a short SecretsWait, so a builds service
// that never answers fails the job within the test.
func newSecretsRig(t *testing.T, wait time.Duration) *rig {
	t.Helper()
	b := bustest.Start(t, bus.Options{Source: "/test"})
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(Config{Bus: b, Backend: backend.NewProcess(backend.ProcessConfig{WorkRoot: t.TempDir()}), Name: "agent-s", SecretsWait: wait})
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

// answerSecrets plays the builds service's side of bus.SecretsSubject with
// the given secrets of one repository; the function returns the requests
// seen so far.
func (r *rig) answerSecrets(repo string, secrets map[string]string) func() []*eventsv1.ResolveSecretsRequest {
	var mu sync.Mutex
	var got []*eventsv1.ResolveSecretsRequest
	_, err := r.bus.Conn().Subscribe(bus.SecretsSubject, func(m *nats.Msg) {
		req := &eventsv1.ResolveSecretsRequest{}
		if err := proto.Unmarshal(m.Data, req); err != nil {
			r.t.Errorf("request: %v", err)
			return
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		resp := &eventsv1.ResolveSecretsResponse{Values: map[string]string{}}
		for _, n := range req.GetNames() {
			if v, ok := secrets[n]; ok && req.GetRepository() == repo {
				resp.Values[n] = v
			} else {
				resp.Missing = append(resp.Missing, n)
			}
		}
		if len(resp.Missing) > 0 {
			resp = &eventsv1.ResolveSecretsResponse{Missing: resp.Missing, Error: "secret " + resp.Missing[0] + " is not set for " + req.GetRepository()}
		}
		data, _ := proto.Marshal(resp)
		_ = m.Respond(data)
	})
	if err != nil {
		r.t.Errorf("answering secrets: %v", err) // may run on another goroutine
	}
	return func() []*eventsv1.ResolveSecretsRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]*eventsv1.ResolveSecretsRequest(nil), got...)
	}
}

func (r *rig) storedLog(fin *eventsv1.JobFinished) string {
	r.t.Helper()
	lines, err := r.bus.StoredLog(context.Background(), fin.GetJobId())
	if err != nil {
		r.t.Fatalf("stored log of %s: %v", fin.GetJobId(), err)
	}
	var out []string
	for _, l := range lines {
		out = append(out, l.GetStep()+": "+l.GetText())
	}
	return strings.Join(out, "\n")
}

// TestJobAsksForItsSecrets: a deploy job whose steps name secrets it does
// not carry gets them from builds at its start; the step sees the value,
// the log shows it masked, and a secret the job already carries is not
// asked for.
func TestJobAsksForItsSecrets(t *testing.T) {
	r := newSecretsRig(t, 5*time.Second)
	requests := r.answerSecrets("acme/app", map[string]string{"DEPLOY_TOKEN": "tok-6c1f-deploy", "DB_URL": "postgres://u:pw-91ab@db/app"})
	dir, sha := repo(t)
	job := &eventsv1.Job{JobId: bus.NewID(), BuildId: "b1", Kind: "deploy", Repository: "acme/app", CloneUrl: dir, Commit: sha,
		Timeout: durationpb.New(time.Minute), Secrets: map[string]string{"CARRIED": "carried-value-77"},
		Steps: []*eventsv1.Step{
			{Name: "migrate", Secrets: []string{"DB_URL"}, Commands: []string{`test "$DB_URL" = "postgres://u:pw-91ab@db/app"`, `echo "db=$DB_URL"`}},
			{Name: "deploy", Secrets: []string{"DEPLOY_TOKEN", "CARRIED"}, Commands: []string{
				`test "$DEPLOY_TOKEN" = tok-6c1f-deploy`, `test "$CARRIED" = carried-value-77`, `echo "token=$DEPLOY_TOKEN carried=$CARRIED"`}},
		}}
	_, fin := r.run(job)
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("job %v: %s %v", fin.GetStatus(), fin.GetError(), fin.GetSteps())
	}
	if len(requests()) != 1 {
		t.Fatalf("%d secrets requests, want 1", len(requests()))
	}
	req := requests()[0]
	if req.GetRepository() != "acme/app" || req.GetJobId() != job.JobId || strings.Join(req.GetNames(), ",") != "DB_URL,DEPLOY_TOKEN" {
		t.Errorf("request %v: want acme/app, job %s, names DB_URL,DEPLOY_TOKEN", req, job.JobId)
	}
	log := r.storedLog(fin)
	for _, v := range []string{"tok-6c1f-deploy", "pw-91ab", "carried-value-77"} {
		if strings.Contains(log, v) {
			t.Errorf("the log shows %q:\n%s", v, log)
		}
	}
	if !strings.Contains(log, "deploy: token=******** carried=********") || !strings.Contains(log, "migrate: db=********") {
		t.Errorf("masked lines missing:\n%s", log)
	}
}

// TestMissingSecretFailsTheJob: when builds says a secret is not set, the
// job ends in error with builds' message and no step runs.
func TestMissingSecretFailsTheJob(t *testing.T) {
	r := newSecretsRig(t, 5*time.Second)
	r.answerSecrets("acme/app", map[string]string{"OTHER": "other-value"})
	dir, sha := repo(t)
	marker := filepath.Join(t.TempDir(), "ran")
	job := &eventsv1.Job{JobId: bus.NewID(), BuildId: "b1", Kind: "test", Repository: "acme/app", CloneUrl: dir, Commit: sha,
		Timeout: durationpb.New(time.Minute), Steps: []*eventsv1.Step{
			{Name: "first", Commands: []string{"touch " + marker}},
			{Name: "uses", Secrets: []string{"API_KEY"}, Commands: []string{"touch " + marker}},
		}}
	_, fin := r.run(job)
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_ERROR || !strings.Contains(fin.GetError(), "secret API_KEY is not set for acme/app") {
		t.Fatalf("job %v: %q, want an error naming API_KEY", fin.GetStatus(), fin.GetError())
	}
	for _, st := range fin.GetSteps() {
		if st.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SKIPPED {
			t.Errorf("step %s %v, want skipped", st.GetName(), st.GetStatus())
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a step ran without its secret")
	}
	if log := r.storedLog(fin); !strings.Contains(log, "secret API_KEY is not set") {
		t.Errorf("the log does not say why:\n%s", log)
	}
}

// TestSecretsWaitForBuilds: no builds service answering at first; the
// agent asks again until one does. With none at all, each delivery of the
// job gives it back to the queue once SecretsWait passed, and the last one
// fails it, naming the secrets.
func TestSecretsWaitForBuilds(t *testing.T) {
	r := newSecretsRig(t, 1500*time.Millisecond)
	dir, sha := repo(t)
	job := func() *eventsv1.Job {
		return &eventsv1.Job{JobId: bus.NewID(), BuildId: "b1", Kind: "deploy", Repository: "acme/app", CloneUrl: dir, Commit: sha,
			Timeout: durationpb.New(time.Minute), Steps: []*eventsv1.Step{
				{Name: "deploy", Secrets: []string{"TOKEN"}, Commands: []string{`test "$TOKEN" = late-token-42`}},
			}}
	}
	start := time.Now()
	_, fin := r.run(job())
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_ERROR || !strings.Contains(fin.GetError(), "did not answer with the values of secrets TOKEN of acme/app within 1.5s") {
		t.Fatalf("job %v: %q", fin.GetStatus(), fin.GetError())
	}
	if d := time.Since(start); d < jobMaxDeliver*1500*time.Millisecond {
		t.Errorf("gave up after %s, before %d deliveries × SecretsWait: earlier deliveries go back to the queue", d, jobMaxDeliver)
	}

	time.AfterFunc(700*time.Millisecond, func() { r.answerSecrets("acme/app", map[string]string{"TOKEN": "late-token-42"}) })
	_, fin = r.run(job())
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("job with a late builds service %v: %s", fin.GetStatus(), fin.GetError())
	}
}

func TestNeededSecrets(t *testing.T) {
	job := &eventsv1.Job{Secrets: map[string]string{"B": "x"}, Steps: []*eventsv1.Step{
		{Secrets: []string{"C", "B"}}, {Secrets: []string{"A", "C"}}, {},
	}}
	if got := strings.Join(neededSecrets(job), ","); got != "A,C" {
		t.Errorf("neededSecrets = %s, want A,C", got)
	}
}
