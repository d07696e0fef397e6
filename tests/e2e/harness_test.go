// Package e2e drives the built shiploop binary through its public surfaces
// only: signed webhooks over HTTP, gRPC, and the CLI.
package e2e

import (
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
	// The tests' repositories are local paths: every server and agent the
	// tests start allows file clone URLs (off by default).
	os.Setenv("SHIPLOOP_ALLOWED_TRANSPORTS", "https,ssh,git,file")
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

// instance is one running shiploop server: `shiploop up` or `shiploop serve`.
type instance struct {
	HTTPURL  string `json:"http_url"`
	GRPCAddr string `json:"grpc_addr"`
	NATSURL  string `json:"nats_url"`
	DataDir  string `json:"data_dir"`
	ReadyMS  int64  `json:"ready_ms"`
	client   buildsv1.BuildServiceClient
	stderr   *output
}

// startUp starts `shiploop up` on free ports and waits for its ready line.
// Cleanup interrupts it and checks it stops cleanly.
func startUp(t *testing.T, extra ...string) *instance {
	t.Helper()
	return startServer(t, "up", append([]string{"--data-dir", t.TempDir()}, extra...)...)
}

// startServer starts `shiploop <command> --json` with HTTP and gRPC on free
// ports, then args (flags first, then any service names), waits for its
// ready line and connects a gRPC client. Cleanup interrupts it and checks it
// stops cleanly.
func startServer(t *testing.T, command string, args ...string) *instance {
	t.Helper()
	// Carbon too on free ports: parallel runs, or anything already on
	// 2003/2004, must not collide. A test's own flags come later and win.
	full := append([]string{command, "--json", "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0",
		"--carbon-listen", "127.0.0.1:0", "--pickle-listen", "127.0.0.1:0"}, args...)
	p := startProcess(t, "shiploop "+command, binary, full...)
	inst := &instance{stderr: p.stderr}
	line := p.waitLine(t, p.stdout, "its ready line", func(string) bool { return true }, 30*time.Second)
	if err := json.Unmarshal([]byte(line), inst); err != nil {
		t.Fatalf("shiploop %s ready line %q: %v\nstderr:\n%s", command, line, err, p.stderr)
	}
	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	inst.client = buildsv1.NewBuildServiceClient(conn)
	t.Cleanup(func() { conn.Close() }) // runs before the process is stopped
	return inst
}

// process is a running child process with its output recorded.
type process struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr *output
	exited         chan struct{} // closed once Wait returned; err is set then
	err            error
}

// startProcess starts path with args. Cleanup interrupts it (SIGINT) and
// checks it exits with status 0 within 15s, and shows its stderr when the
// test failed.
func startProcess(t *testing.T, name, path string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(path, args...), stdout: newOutput(), stderr: newOutput(), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *process) stop(t *testing.T) {
	select {
	case <-p.exited:
		t.Errorf("%s exited before the test ended: %v\nstderr:\n%s", p.name, p.err, p.stderr)
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("%s did not stop cleanly on SIGINT: %v\nstderr:\n%s", p.name, p.err, p.stderr)
		}
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("%s still running 15s after SIGINT\nstderr:\n%s", p.name, p.stderr)
	}
	if t.Failed() {
		t.Logf("%s stderr:\n%s", p.name, p.stderr)
	}
}

// waitLine waits until a complete line of o (the process's stdout or
// stderr) satisfies match and returns the first such line. It fails the
// test when the process exits first or the timeout passes.
func (p *process) waitLine(t *testing.T, o *output, what string, match func(string) bool, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		line, found, changed := o.find(match)
		if found {
			return line
		}
		select {
		case <-changed:
		case <-p.exited:
			if line, found, _ := o.find(match); found {
				return line
			}
			t.Fatalf("%s exited (%v) before printing %s\nstderr:\n%s", p.name, p.err, what, p.stderr)
		case <-deadline:
			t.Fatalf("%s did not print %s within %s\nstderr:\n%s", p.name, what, timeout, p.stderr)
		}
	}
}

// output records what a process writes and lets a test wait for a line.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed (and replaced) on every write
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, err := o.buf.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return n, err
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// find returns the first complete line satisfying match, or a channel
// closed at the next write.
func (o *output) find(match func(string) bool) (line string, found bool, changed <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	text := o.buf.String()
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		for _, l := range strings.Split(text[:i], "\n") {
			if match(l) {
				return l, true, nil
			}
		}
	}
	return "", false, o.changed
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
