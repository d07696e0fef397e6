package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// githubStatus is one commit status a fake GitHub received.
type githubStatus struct {
	Path, Auth, Accept                     string
	State, Description, Context, TargetURL string
}

// TestCommitStatuses: a repository registered with `shiploop repo add
// --forge github` gets its commit's status on "GitHub" (a local fake
// checking GitHub's request shape): pending when the build is created and
// started, success when it passed, linked to the build in the web UI.
func TestCommitStatuses(t *testing.T) {
	const token = "ghp_e2e-status-token"
	var mu sync.Mutex
	var seen []githubStatus
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body struct {
			State       string `json:"state"`
			Description string `json:"description"`
			Context     string `json:"context"`
			TargetURL   string `json:"target_url"`
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(raw, &body) != nil {
			t.Errorf("fake GitHub got %s %s (%s) %q", r.Method, r.RequestURI, r.Header.Get("Content-Type"), raw)
		}
		mu.Lock()
		seen = append(seen, githubStatus{Path: r.RequestURI, Auth: r.Header.Get("Authorization"), Accept: r.Header.Get("Accept"),
			State: body.State, Description: body.Description, Context: body.Context, TargetURL: body.TargetURL})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"state":"` + body.State + `"}`))
	}))
	defer fake.Close()
	statuses := func() []githubStatus {
		mu.Lock()
		defer mu.Unlock()
		return append([]githubStatus(nil), seen...)
	}

	inst := startUp(t, "--public-url", "https://ci.example.com")
	repo := newRepo(t, map[string]string{".shiploop.yml": goodConfig, "src/app.txt": "v1\n"})
	sha := repo.git("rev-parse", "HEAD")

	// The operator registers the repository; the token comes from the
	// environment, not the command line.
	add := exec.Command(binary, "repo", "--server", inst.GRPCAddr, "--json", "--clone-url", repo.dir,
		"--forge", "github", "--forge-api", fake.URL, "add", "acme/statuses")
	add.Env = append(os.Environ(), "SHIPLOOP_FORGE_TOKEN="+token)
	out, err := add.CombinedOutput()
	if err != nil {
		t.Fatalf("shiploop repo add: %v\n%s", err, out)
	}
	var reg struct {
		Repository struct {
			Forge         string `json:"forge"`
			ForgeAPIURL   string `json:"forge_api_url"`
			ForgeRepo     string `json:"forge_repo"`
			ForgeTokenSet bool   `json:"forge_token_set"`
		} `json:"repository"`
		WebhookSecret string `json:"webhook_secret"`
	}
	if err := json.Unmarshal(out, &reg); err != nil || reg.WebhookSecret == "" {
		t.Fatalf("repo add printed %q: %v", out, err)
	}
	if r := reg.Repository; r.Forge != "github" || r.ForgeAPIURL != fake.URL || r.ForgeRepo != "acme/statuses" || !r.ForgeTokenSet {
		t.Errorf("registered %+v", r)
	}
	list, err := exec.Command(binary, "repo", "--server", inst.GRPCAddr, "list").CombinedOutput()
	if err != nil || !strings.Contains(string(list), "github acme/statuses") {
		t.Errorf("repo list: %v\n%s", err, list)
	}
	if strings.Contains(string(out)+string(list), token) {
		t.Error("the CLI printed the forge token")
	}

	w := inst.watch(t, "acme/statuses")
	if res := inst.push(t, "acme/statuses", reg.WebhookSecret, "refs/heads/main", zero, sha); res.Status != http.StatusAccepted {
		t.Fatalf("push: HTTP %d %s", res.Status, res.Raw)
	}
	evs := w.until("build.finished", 60*time.Second)
	bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
	if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("build %v: %s", bf.GetStatus(), bf.GetError())
	}

	// The final build status follows build.finished through the statuses
	// consumer; the gates service posts its own context after it.
	byContext := func() (build, gate []string, all int) {
		got := statuses()
		for _, s := range got {
			if s.Path != "/repos/acme/statuses/statuses/"+sha || s.Auth != "Bearer "+token || s.Accept != "application/vnd.github+json" ||
				s.TargetURL != "https://ci.example.com/builds/"+bf.GetBuildId() {
				t.Errorf("status request %+v (want commit %s, build %s)", s, sha, bf.GetBuildId())
			}
			switch s.Context {
			case "shiploop/build":
				build = append(build, s.State+" "+s.Description)
			case "shiploop/gate":
				gate = append(gate, s.State+" "+s.Description)
			default:
				t.Errorf("status with context %q", s.Context)
			}
		}
		return build, gate, len(got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		build, gate, _ := byContext()
		if n := len(build); n > 0 && strings.HasPrefix(build[n-1], "success") && len(gate) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no final build and gate statuses within 30s; the fake saw build %q gate %q\nserver stderr:\n%s", build, gate, inst.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // nothing may follow the final statuses
	states, gate, _ := byContext()
	if len(states) != 3 || states[0] != "pending shiploop #1 queued" || states[1] != "pending shiploop #1 running" || !strings.HasPrefix(states[2], "success shiploop #1 passed in ") {
		t.Errorf("build statuses in order: %q; want pending (queued), pending (running), success", states)
	}
	// No gate section, no tests, no reports: the built-in policy has no
	// data to judge, and no data is never a pass.
	if len(gate) != 1 || !strings.HasPrefix(gate[0], "failure gate failed: 0 of 5 conditions met; ") || !strings.Contains(gate[0], "no data") {
		t.Errorf("gate statuses %q; want one failure for want of data", gate)
	}
	if strings.Contains(inst.stderr.String(), token) {
		t.Error("the server logged the forge token")
	}
}
