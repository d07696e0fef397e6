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
)

// TestSplitCommitStatusThroughDiscovery: in split mode, `serve gates` runs
// in a process of its own with no builds address given. It finds builds
// through the addresses each process advertises in NATS, asks it for the
// repository's forge settings, and its shiploop/gate status reaches the
// (fake) forge. Before, gates asked its own gRPC listener, got
// "Unimplemented: unknown service shiploop.builds.v1.BuildService" and
// retried for ever.
func TestSplitCommitStatusThroughDiscovery(t *testing.T) {
	const token = "ghp_split-status-token"
	var mu sync.Mutex
	var contexts []string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body struct{ State, Context string }
		_ = json.Unmarshal(raw, &body)
		if r.Header.Get("Authorization") != "Bearer "+token {
			t.Errorf("status without the forge token: %s %s", r.Method, r.RequestURI)
		}
		mu.Lock()
		contexts = append(contexts, body.Context+" "+body.State)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{}`))
	}))
	defer fake.Close()

	natsURL := startNATSServer(t, natsServerBinary(t))
	procs, httpAddr, grpcAddr := startSplit(t, natsURL, createDatabase(t), "testruns", "gates")
	repo := newRepo(t, map[string]string{".shiploop.yml": goodConfig, "src/app.txt": "v1\n"})
	sha := repo.git("rev-parse", "HEAD")
	add := exec.Command(binary, "repo", "--server", grpcAddr, "--json", "--clone-url", repo.dir,
		"--forge", "github", "--forge-api", fake.URL, "add", "acme/split-status")
	add.Env = append(os.Environ(), "SHIPLOOP_FORGE_TOKEN="+token)
	out, err := add.CombinedOutput()
	if err != nil {
		t.Fatalf("shiploop repo add: %v\n%s", err, out)
	}
	var reg struct {
		WebhookSecret string `json:"webhook_secret"`
	}
	if err := json.Unmarshal(out, &reg); err != nil {
		t.Fatalf("repo add printed %q: %v", out, err)
	}
	pushAll(t, httpAddr, []push{{repo: "acme/split-status", secret: reg.WebhookSecret, ref: "refs/heads/main", sha: sha}}, nil)

	var gates *killable
	for _, p := range procs {
		if p.name == "serve gates" {
			gates = p
		}
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		got := strings.Join(contexts, ", ")
		mu.Unlock()
		if strings.Contains(got, "shiploop/gate ") && strings.Contains(got, "shiploop/build success") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the forge got %q within 90s, no shiploop/gate status\nserve gates stderr:\n%s", got, gates.stderr)
		}
	}
	if s := gates.stderr.String(); strings.Contains(s, "Unimplemented") {
		t.Errorf("serve gates asked a process without builds:\n%s", s)
	}
}
