package builds

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// ask sends a secrets request over NATS as an agent would.
func (h *harness) ask(repo, jobID string, names ...string) *eventsv1.ResolveSecretsResponse {
	h.t.Helper()
	data, err := proto.Marshal(&eventsv1.ResolveSecretsRequest{Repository: repo, Names: names, JobId: jobID})
	if err != nil {
		h.t.Fatal(err)
	}
	// The subscription starts with Run: the first request may find no one yet.
	var answer []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg, err := h.bus.Conn().Request(bus.SecretsSubject, data, 2*time.Second)
		if err == nil {
			answer = msg.Data
			break
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no answer on %s: %v", bus.SecretsSubject, err)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	resp := &eventsv1.ResolveSecretsResponse{}
	if err := proto.Unmarshal(answer, resp); err != nil {
		h.t.Fatalf("answer: %v", err)
	}
	return resp
}

// queueJob puts a job of repo into the JOBS stream as a service would: one
// step that declares secrets.
func (h *harness) queueJob(repo, jobID string, secrets ...string) {
	h.t.Helper()
	job := &eventsv1.Job{JobId: jobID, Repository: repo, Kind: "test", Steps: []*eventsv1.Step{{Name: "s", Commands: []string{"true"}, Secrets: secrets}}}
	m, err := bus.Encode(context.Background(), bus.JobSubject("test", repo), bus.Event{Type: "job.requested", Repository: repo, Subject: jobID, Data: job})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.bus.PublishMsg(context.Background(), m); err != nil {
		h.t.Fatal(err)
	}
}

// TestResolveSecrets: builds answers an agent's request with the values of
// the repository's secrets, only that repository's, and names every secret
// that is not set with the command that sets it.
func TestResolveSecrets(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		dir, _ := gitRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: one\n    commands: [echo 1]\n"})
		for _, repo := range []string{"acme/web", "acme/other"} {
			if _, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: repo, CloneUrl: dir}); err != nil {
				t.Fatal(err)
			}
		}
		set := func(repo, name, value string) {
			if _, err := h.api.SetSecret(ctx, &buildsv1.SetSecretRequest{Repository: repo, Name: name, Value: value}); err != nil {
				t.Fatal(err)
			}
		}
		set("acme/web", "TOKEN", "web-token-1")
		set("acme/web", "DB_PASSWORD", "pw-2")
		set("acme/other", "ONLY_OTHER", "other-3")

		h.queueJob("acme/web", "job-1", "TOKEN", "DB_PASSWORD")
		h.queueJob("acme/web", "job-2", "TOKEN", "ONLY_OTHER", "NOPE")
		h.queueJob("acme/web", "job-3", "NOPE")
		h.queueJob("acme/other", "job-5", "ONLY_OTHER")

		got := h.ask("acme/web", "job-1", "TOKEN", "DB_PASSWORD", "TOKEN")
		if got.GetError() != "" || len(got.GetValues()) != 2 || got.GetValues()["TOKEN"] != "web-token-1" || got.GetValues()["DB_PASSWORD"] != "pw-2" {
			t.Errorf("values of acme/web: %v", got)
		}

		// Another repository's secret is not this one's.
		got = h.ask("acme/web", "job-2", "TOKEN", "ONLY_OTHER", "NOPE")
		want := "secrets NOPE, ONLY_OTHER are not set for acme/web (shiploop secret set acme/web NOPE; shiploop secret set acme/web ONLY_OTHER)"
		if len(got.GetValues()) != 0 || got.GetError() != want || len(got.GetMissing()) != 2 || got.GetTemporary() {
			t.Errorf("missing secrets: values %v, error %q (want %q), missing %v, temporary %v", got.GetValues(), got.GetError(), want, got.GetMissing(), got.GetTemporary())
		}
		got = h.ask("acme/web", "job-3", "NOPE")
		if want := "secret NOPE is not set for acme/web (shiploop secret set acme/web NOPE)"; got.GetError() != want {
			t.Errorf("one missing secret: %q, want %q", got.GetError(), want)
		}
		got = h.ask("", "job-4", "TOKEN")
		if got.GetError() == "" || len(got.GetValues()) != 0 {
			t.Errorf("request without a repository: %v", got)
		}

		// Only a job in flight gets secrets, only its repository's and only
		// those its steps declare.
		for _, c := range []struct{ repo, job, name, want string }{
			{"acme/web", "job-9", "TOKEN", "job job-9 of acme/web is not queued or running: secrets go only to a job in flight that declares them"},
			{"acme/web", "", "TOKEN", "a secrets request needs the id of the job it is for"},
			{"acme/other", "job-1", "ONLY_OTHER", "job job-1 of acme/other is not queued or running: secrets go only to a job in flight that declares them"},
			{"acme/web", "job-5", "TOKEN", "job job-5 of acme/web is not queued or running: secrets go only to a job in flight that declares them"},
			{"acme/web", "job-3", "TOKEN", "no step of job job-3 of acme/web declares secret TOKEN"},
		} {
			got := h.ask(c.repo, c.job, c.name)
			if got.GetError() != c.want || len(got.GetValues()) != 0 || got.GetTemporary() {
				t.Errorf("%s of %s for %q: values %v, error %q (temporary %v), want %q", c.name, c.repo, c.job, got.GetValues(), got.GetError(), got.GetTemporary(), c.want)
			}
		}
		if got := h.ask("acme/other", "job-5", "ONLY_OTHER"); got.GetValues()["ONLY_OTHER"] != "other-3" {
			t.Errorf("acme/other's own job: %v", got)
		}

		// A job ends when its agent acknowledges it: then it gets nothing.
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = h.bus.Take(tctx, bus.JobConsumerConfig{Name: "test-agent", Filters: []string{bus.JobSubject("test", "acme/other")}}, func(ctx context.Context, j *bus.Job) error {
			defer cancel()
			return j.Done()
		})
		// The ack reaches the server a moment after Done returns (an ack
		// is not a request): ask until it has, for a few seconds at most.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			got := h.ask("acme/other", "job-5", "ONLY_OTHER")
			if len(got.GetValues()) == 0 && strings.Contains(got.GetError(), "not queued or running") {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("a done job asked again: values %v, error %q", got.GetValues(), got.GetError())
				break
			}
		}
	})
}
