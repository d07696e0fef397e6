package bench

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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
)

var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shiploop-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// The benchmarks' repositories are local paths: allow file clone URLs
	// (off by default) in every server and agent they start.
	os.Setenv("SHIPLOOP_ALLOWED_TRANSPORTS", "https,ssh,git,file")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binary builds the shiploop binary once, the first time a benchmark needs
// it, or takes SHIPLOOP_BENCH_BIN, a binary built elsewhere (an older
// commit's, from a git worktree, to compare with).
func binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		if bin := os.Getenv("SHIPLOOP_BENCH_BIN"); bin != "" {
			binPath, buildErr = filepath.Abs(bin)
			return
		}
		binPath = filepath.Join(binDir, "shiploop")
		build := exec.Command("go", "build", "-o", binPath, "github.com/shiploop/shiploop/cmd/shiploop")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		buildErr = build.Run()
	})
	if buildErr != nil {
		tb.Fatalf("building shiploop: %v", buildErr)
	}
	return binPath
}

// instance is one running `shiploop up`.
type instance struct {
	HTTPURL  string `json:"http_url"`
	GRPCAddr string `json:"grpc_addr"`
	DataDir  string `json:"data_dir"`
	ReadyMS  int64  `json:"ready_ms"`
	// Wall is the time from exec to the ready line on stdout.
	Wall   time.Duration `json:"-"`
	cmd    *exec.Cmd
	conn   *grpc.ClientConn
	client buildsv1.BuildServiceClient
	stderr *lockedBuffer
	// stopped is set once stop has run: a benchmark may stop an instance
	// early (the next one needs its ports), and the cleanup then has
	// nothing to do.
	stopped bool
	stopErr error
}

// launchBinary, when set, is the shiploop that launch starts instead of
// this tree's: a benchmark sets it to run the previous code beside this
// one in the same run.
var launchBinary string

// launch starts `shiploop up --json` on free ports in dataDir and waits for
// its ready line. Call stop when done.
func launch(tb testing.TB, dataDir string, extra ...string) (*instance, error) {
	tb.Helper()
	args := append([]string{"up", "--json", "--data-dir", dataDir, "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"}, extra...)
	bin := launchBinary
	if bin == "" {
		bin = binary(tb)
	}
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	inst := &instance{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = inst.stderr
	ready := make(chan error, 1)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() {
			ready <- fmt.Errorf("shiploop up exited before it was ready")
			return
		}
		inst.Wall = time.Since(start)
		ready <- json.Unmarshal(sc.Bytes(), inst)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("shiploop up: %v\nstderr:\n%s", err, inst.stderr)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("shiploop up not ready after 30s\nstderr:\n%s", inst.stderr)
	}
	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		inst.stop()
		return nil, err
	}
	inst.conn = conn
	inst.client = buildsv1.NewBuildServiceClient(conn)
	return inst, nil
}

// stop interrupts the process and waits for it (killing it after 15s).
func (inst *instance) stop() error {
	if inst.stopped {
		return inst.stopErr
	}
	inst.stopped = true
	inst.stopErr = inst.doStop()
	return inst.stopErr
}

func (inst *instance) doStop() error {
	if inst.conn != nil {
		inst.conn.Close()
	}
	_ = inst.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- inst.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(15 * time.Second):
		_ = inst.cmd.Process.Kill()
		<-done
		return fmt.Errorf("shiploop up still running 15s after SIGINT")
	}
}

// rssKB reads VmRSS (or another /proc/<pid>/status field) in KiB.
func (inst *instance) status(field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", inst.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, inst.cmd.Process.Pid)
}

// startUp launches an instance for the benchmark and stops it at cleanup.
func startUp(tb testing.TB, extra ...string) *instance {
	tb.Helper()
	inst, err := launch(tb, tb.TempDir(), extra...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := inst.stop(); err != nil {
			tb.Errorf("stopping shiploop up: %v\nstderr:\n%s", err, inst.stderr)
		}
	})
	return inst
}

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

// gitRepo is a repository on disk that shiploop clones from.
type gitRepo struct {
	tb  testing.TB
	dir string
}

func gitEnv() []string {
	return append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@example.invalid", "GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@example.invalid")
}

func newRepo(tb testing.TB, files map[string]string) *gitRepo {
	tb.Helper()
	r := &gitRepo{tb: tb, dir: tb.TempDir()}
	r.git("init", "--quiet", "--initial-branch=main")
	for name, content := range files {
		p := filepath.Join(r.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	r.git("add", "-A")
	r.git("commit", "--quiet", "-m", "initial")
	return r
}

func (r *gitRepo) git(args ...string) string {
	r.tb.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = gitEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.tb.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commits creates n commits on top of main with one git fast-import, each
// changing a file, and returns their ids in order. main is left where it
// was: the caller moves it as it "pushes".
func (r *gitRepo) commits(n int) []string {
	r.tb.Helper()
	head := r.git("rev-parse", "HEAD")
	var in bytes.Buffer
	now := time.Now().Unix()
	for i := 1; i <= n; i++ {
		content := fmt.Sprintf("change %d\n", i)
		msg := fmt.Sprintf("change %d\n", i)
		fmt.Fprintf(&in, "commit refs/bench/tip\nmark :%d\ncommitter bench <bench@example.invalid> %d +0000\ndata %d\n%s", i, now, len(msg), msg)
		if i == 1 {
			fmt.Fprintf(&in, "from %s\n", head)
		} else {
			fmt.Fprintf(&in, "from :%d\n", i-1)
		}
		fmt.Fprintf(&in, "M 644 inline counter.txt\ndata %d\n%s\n", len(content), content)
	}
	marks := filepath.Join(r.tb.TempDir(), "marks")
	cmd := exec.Command("git", "fast-import", "--quiet", "--export-marks="+marks)
	cmd.Dir = r.dir
	cmd.Env = gitEnv()
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		r.tb.Fatalf("git fast-import: %v\n%s", err, out)
	}
	b, err := os.ReadFile(marks)
	if err != nil {
		r.tb.Fatal(err)
	}
	ids := make([]string, n)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		mark, sha, _ := strings.Cut(line, " ")
		i, err := strconv.Atoi(strings.TrimPrefix(mark, ":"))
		if err != nil || i < 1 || i > n {
			r.tb.Fatalf("fast-import mark line %q", line)
		}
		ids[i-1] = sha
	}
	r.git("update-ref", "-d", "refs/bench/tip")
	return ids
}

func (inst *instance) register(tb testing.TB, name string, repo *gitRepo) string {
	tb.Helper()
	resp, err := inst.client.RegisterRepository(context.Background(), &buildsv1.RegisterRepositoryRequest{Name: name, CloneUrl: repo.dir, DefaultBranch: "main"})
	if err != nil {
		tb.Fatalf("RegisterRepository: %v", err)
	}
	return resp.GetWebhookSecret()
}

const zero = "0000000000000000000000000000000000000000"

// pushBody is a GitHub push payload for a commit on a branch.
func pushBody(repo, ref, before, after string) []byte {
	b, _ := json.Marshal(map[string]any{
		"ref": ref, "before": before, "after": after, "created": before == zero, "deleted": false, "forced": false,
		"repository":  map[string]any{"full_name": repo, "name": repo[strings.Index(repo, "/")+1:], "clone_url": "https://example.invalid/" + repo + ".git", "default_branch": "main"},
		"pusher":      map[string]any{"name": "bench", "email": "bench@example.invalid"},
		"sender":      map[string]any{"login": "bench"},
		"head_commit": map[string]any{"id": after, "message": "change", "added": []string{}, "modified": []string{"counter.txt"}, "removed": []string{}},
		"commits":     []any{map[string]any{"id": after, "message": "change", "added": []string{}, "modified": []string{"counter.txt"}, "removed": []string{}}},
		"compare":     "https://example.invalid/compare",
	})
	return b
}

func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// sent is one webhook delivery as the sender saw it.
type sent struct {
	commit   string
	sentAt   time.Time // just before the request was written
	acceptAt time.Time // the 202 response's headers were read
	eventID  string    // the change event's id, the chain id of its build's events
}

var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}

// push sends a signed GitHub push webhook and expects 202.
func (inst *instance) push(repo, secret, delivery, ref, before, after string) (sent, error) {
	body := pushBody(repo, ref, before, after)
	req, _ := http.NewRequest(http.MethodPost, inst.HTTPURL+"/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", sign(secret, body))
	s := sent{commit: after, sentAt: time.Now()}
	resp, err := httpClient.Do(req)
	if err != nil {
		return s, err
	}
	s.acceptAt = time.Now()
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return s, fmt.Errorf("POST /hooks/github: HTTP %d %s", resp.StatusCode, raw)
	}
	var out struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.EventID == "" {
		return s, fmt.Errorf("POST /hooks/github: no event_id in %s", raw)
	}
	s.eventID = out.EventID
	return s, nil
}
