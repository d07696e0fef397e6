// Package e2e drives the built shiploop binary through its public surfaces
// only: signed webhooks over HTTP, gRPC, and the CLI.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shiploop-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "shiploop")
	build := exec.Command("go", "build", "-o", binary, "github.com/shiploop/shiploop/cmd/shiploop")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building shiploop:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// instance is one running `shiploop up`.
type instance struct {
	HTTPURL  string `json:"http_url"`
	GRPCAddr string `json:"grpc_addr"`
	DataDir  string `json:"data_dir"`
	ReadyMS  int64  `json:"ready_ms"`
	client   buildsv1.BuildServiceClient
	stderr   *bytes.Buffer
}

// startUp starts `shiploop up` on free ports and waits for its ready line.
// Cleanup interrupts it and checks it stops cleanly.
func startUp(t *testing.T, extra ...string) *instance {
	t.Helper()
	args := append([]string{"up", "--json", "--data-dir", t.TempDir(), "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(binary, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	inst := &instance{stderr: &bytes.Buffer{}}
	cmd.Stderr = &lockedWriter{w: inst.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() {
			ready <- fmt.Errorf("shiploop up exited before it was ready")
			return
		}
		ready <- json.Unmarshal(sc.Bytes(), inst)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("shiploop up: %v\nstderr:\n%s", err, inst.stderr)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("shiploop up not ready after 30s\nstderr:\n%s", inst.stderr)
	}
	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	inst.client = buildsv1.NewBuildServiceClient(conn)
	t.Cleanup(func() {
		conn.Close()
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("shiploop up did not stop cleanly on SIGINT: %v\nstderr:\n%s", err, inst.stderr)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("shiploop up still running 15s after SIGINT\nstderr:\n%s", inst.stderr)
		}
		if t.Failed() {
			t.Logf("shiploop up stderr:\n%s", inst.stderr)
		}
	})
	return inst
}

// lockedWriter lets the test read stderr while the process writes it.
type lockedWriter struct {
	w  *bytes.Buffer
	mu sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// gitRepo is a repository on disk that shiploop clones from.
type gitRepo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T, files map[string]string) *gitRepo {
	t.Helper()
	r := &gitRepo{t: t, dir: t.TempDir()}
	r.git("init", "--quiet", "--initial-branch=main")
	r.commit("initial", files)
	return r
}

func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.invalid", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *gitRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git("add", "-A")
	r.git("commit", "--quiet", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

func (inst *instance) register(t *testing.T, name string, repo *gitRepo) string {
	t.Helper()
	resp, err := inst.client.RegisterRepository(context.Background(), &buildsv1.RegisterRepositoryRequest{Name: name, CloneUrl: repo.dir, DefaultBranch: "main"})
	if err != nil {
		t.Fatalf("RegisterRepository: %v", err)
	}
	return resp.GetWebhookSecret()
}

// watcher collects a repository's events from WatchEvents.
type watcher struct {
	t      *testing.T
	events chan *eventsv1.Event
	cancel context.CancelFunc
}

func (inst *instance) watch(t *testing.T, repo string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := inst.client.WatchEvents(ctx, &buildsv1.WatchEventsRequest{Repository: repo})
	if err != nil {
		cancel()
		t.Fatalf("WatchEvents: %v", err)
	}
	if _, err := st.Header(); err != nil { // the watch is in place
		cancel()
		t.Fatalf("WatchEvents header: %v", err)
	}
	w := &watcher{t: t, events: make(chan *eventsv1.Event, 1024), cancel: cancel}
	go func() {
		defer close(w.events)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			w.events <- r.GetEvent()
		}
	}()
	t.Cleanup(cancel)
	return w
}

// until reads events until one of type typ (short form) arrives and returns
// every event read, in order.
func (w *watcher) until(typ string, timeout time.Duration) []*eventsv1.Event {
	w.t.Helper()
	var seen []*eventsv1.Event
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-w.events:
			if !ok {
				w.t.Fatalf("event stream ended before %s; saw %v", typ, types(seen))
			}
			seen = append(seen, ev)
			if short(ev.GetType()) == typ {
				return seen
			}
		case <-deadline:
			w.t.Fatalf("no %s within %s; saw %v", typ, timeout, types(seen))
		}
	}
}

func short(full string) string {
	return strings.TrimSuffix(strings.TrimPrefix(full, "dev.shiploop."), ".v1")
}

func types(evs []*eventsv1.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = short(e.GetType())
	}
	return out
}

func payload[T proto.Message](t *testing.T, ev *eventsv1.Event, m T) T {
	t.Helper()
	if err := ev.GetData().UnmarshalTo(m); err != nil {
		t.Fatalf("event %s payload: %v", ev.GetType(), err)
	}
	return m
}

// hookResult is the HTTP answer to a webhook.
type hookResult struct {
	Status int
	Body   map[string]any
	Raw    string
}

// pushBody is a GitHub push payload for a commit on a branch or tag ref.
func pushBody(repo, ref, before, after string) []byte {
	b, _ := json.Marshal(map[string]any{
		"ref": ref, "before": before, "after": after, "created": before == strings.Repeat("0", 40), "deleted": false, "forced": false,
		"repository":  map[string]any{"full_name": repo, "name": repo[strings.Index(repo, "/")+1:], "clone_url": "https://example.invalid/" + repo + ".git", "default_branch": "main"},
		"pusher":      map[string]any{"name": "e2e", "email": "e2e@example.invalid"},
		"sender":      map[string]any{"login": "e2e"},
		"head_commit": map[string]any{"id": after, "message": "change", "added": []string{}, "modified": []string{"x"}, "removed": []string{}},
		"commits":     []any{map[string]any{"id": after, "message": "change", "added": []string{}, "modified": []string{"x"}, "removed": []string{}}},
		"compare":     "https://example.invalid/compare",
	})
	return b
}

func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

var deliveries atomic.Int64

func (inst *instance) hook(t *testing.T, event, delivery, signature string, body []byte) hookResult {
	t.Helper()
	if delivery == "" {
		delivery = fmt.Sprintf("delivery-%d-%d", time.Now().UnixNano(), deliveries.Add(1))
	}
	req, _ := http.NewRequest(http.MethodPost, inst.HTTPURL+"/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	if signature != "" {
		req.Header.Set("X-Hub-Signature-256", signature)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /hooks/github: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	res := hookResult{Status: resp.StatusCode, Raw: string(raw)}
	_ = json.Unmarshal(raw, &res.Body)
	return res
}

// push sends a correctly signed push webhook.
func (inst *instance) push(t *testing.T, repo, secret, ref, before, after string) hookResult {
	t.Helper()
	body := pushBody(repo, ref, before, after)
	return inst.hook(t, "push", "", sign(secret, body), body)
}

// lockedBuffer is a bytes.Buffer safe to read while a process writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
