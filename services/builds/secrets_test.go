package builds

import (
	"context"
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
	})
}
