//go:build unix

package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/vcsarg"
)

// testRepo is a bare repository with two commits of f.txt ("first", "second").
type testRepo struct {
	bare, work    string // bare repository, and the non-bare one it was cloned from
	first, second string
}

func newTestRepo(t testing.TB) testRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	r := testRepo{bare: filepath.Join(dir, "repo.git"), work: filepath.Join(dir, "work")}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=Test", "-c", "user.email=test@example.com"}, args...)...)
		cmd.Dir = r.work
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if err := os.Mkdir(r.work, 0o755); err != nil {
		t.Fatal(err)
	}
	git("init", "-q", "-b", "main")
	writeFile(t, filepath.Join(r.work, "f.txt"), "first\n")
	git("add", "f.txt")
	git("commit", "-q", "-m", "first")
	r.first = git("rev-parse", "HEAD")
	writeFile(t, filepath.Join(r.work, "f.txt"), "second\n")
	git("commit", "-q", "-am", "second")
	r.second = git("rev-parse", "HEAD")
	git("clone", "-q", "--bare", r.work, r.bare)
	return r
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newTestBackend(t testing.TB, grace time.Duration) *Process {
	return NewProcess(ProcessConfig{WorkRoot: t.TempDir(), KillGrace: grace})
}

func prepare(t testing.TB, p *Process, job JobSpec) *Workspace {
	t.Helper()
	ws, err := p.Prepare(context.Background(), job)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Destroy(ws); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	return ws
}

func TestPrepareChecksOutCommit(t *testing.T) {
	r := newTestRepo(t)
	tests := []struct {
		name      string
		url       string
		fetchOnly bool
	}{
		{"bare repository path", r.bare, false},
		{"file URL", "file://" + r.bare, false},
		{"non-bare repository path", r.work, false},
		{"fetch from bare repository", r.bare, true},
		{"fetch from file URL", "file://" + r.bare, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestBackend(t, 0)
			p.fetchOnly = tt.fetchOnly
			// The first commit is no branch's head: checking it out proves the
			// backend fetches by SHA rather than by branch.
			ws := prepare(t, p, JobSpec{ID: "42", CloneURL: tt.url, Commit: r.first, Ref: "refs/heads/main"})
			if got := readFile(t, filepath.Join(ws.Dir, "f.txt")); got != "first\n" {
				t.Errorf("f.txt = %q, want the first commit's %q", got, "first\n")
			}
			o := runScript(t, p, ws, Step{Name: "git", Commands: []string{
				"git rev-parse HEAD",
				"git symbolic-ref -q HEAD || echo detached",
				"git status --porcelain",
				"git log --format=%s",
			}}, nil)
			if o.outcome.ExitCode != 0 {
				t.Fatalf("git in workspace: exit %d, stderr %q", o.outcome.ExitCode, o.stderr)
			}
			want := []string{r.first, "detached", "first"}
			if !reflect.DeepEqual(o.stdout, want) {
				t.Errorf("git in workspace printed %q, want %q", o.stdout, want)
			}
		})
	}
}

func TestPrepareErrors(t *testing.T) {
	r := newTestRepo(t)
	missing := filepath.Join(t.TempDir(), "no-such-repo.git")
	unknown := strings.Repeat("ab", 20)
	// mark is what an injected command would create.
	mark := filepath.Join(t.TempDir(), "pwned")
	defer func() {
		if _, err := os.Stat(mark); err == nil {
			t.Errorf("%s exists: an injected command ran", mark)
		}
	}()
	tests := []struct {
		name      string
		job       JobSpec
		fetchOnly bool
		want      []string // substrings of the error
	}{
		{"missing repository", JobSpec{CloneURL: missing, Commit: r.first}, false, []string{missing, r.first, "git fetch", "does not appear to be a git repository"}},
		{"unknown host", JobSpec{CloneURL: "https://shiploop.invalid/x.git", Commit: r.first}, false, []string{"https://shiploop.invalid/x.git", r.first}},
		{"unknown commit", JobSpec{CloneURL: r.bare, Commit: unknown}, false, []string{r.bare, unknown, "git checkout"}},
		{"unknown commit by fetch", JobSpec{CloneURL: r.bare, Commit: unknown}, true, []string{r.bare, unknown}},
		{"short commit", JobSpec{CloneURL: r.bare, Commit: r.first[:7]}, false, []string{r.first[:7], "not a full SHA"}},
		{"empty URL", JobSpec{Commit: r.first}, false, []string{"clone URL"}},
		{"password hidden", JobSpec{CloneURL: "https://bob:hunter22@shiploop.invalid/x.git", Commit: r.first}, false, []string{"bob:xxxxx@shiploop.invalid", r.first}},
		{"clone URL as an option", JobSpec{CloneURL: "--upload-pack=touch " + mark + ";git-upload-pack", Commit: r.first}, false, []string{"starts with '-'"}},
		{"clone URL as a remote helper", JobSpec{CloneURL: "ext::sh -c touch% " + mark, Commit: r.first}, false, []string{`remote helper "ext"`}},
		{"commit as an option", JobSpec{CloneURL: r.bare, Commit: "--upload-pack=touch " + mark}, false, []string{"not a full SHA"}},
		{"hg clone URL as an option", JobSpec{VCS: "hg", CloneURL: "--config=hooks.pre-clone=touch " + mark, Commit: r.first}, false, []string{"starts with '-'"}},
		{"hg ssh host as an option", JobSpec{VCS: "hg", CloneURL: "ssh://-oProxyCommand=touch/x", Commit: r.first}, false, []string{"starts with '-'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			workRoot := t.TempDir()
			p := NewProcess(ProcessConfig{WorkRoot: workRoot})
			p.fetchOnly = tt.fetchOnly
			ws, err := p.Prepare(context.Background(), tt.job)
			if err == nil {
				p.Destroy(ws)
				t.Fatal("Prepare succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter22") {
				t.Errorf("error %q shows the password", err)
			}
			if ents, _ := os.ReadDir(workRoot); len(ents) != 0 {
				t.Errorf("failed Prepare left %d entries in WorkRoot", len(ents))
			}
		})
	}
}

func TestPrepareCanceled(t *testing.T) {
	r := newTestRepo(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newTestBackend(t, 0).Prepare(ctx, JobSpec{CloneURL: r.bare, Commit: r.first})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Prepare with canceled ctx: %v, want context.Canceled", err)
	}
}

// result is what a user sees of a step.
type result struct {
	outcome        Outcome
	err            error
	elapsed        time.Duration
	stdout, stderr []string
	lines          []Line
}

// runScript runs step; onLine, if set, sees each line as it arrives.
func runScript(t testing.TB, p *Process, ws *Workspace, step Step, onLine func(Line)) result {
	return runScriptCtx(context.Background(), t, p, ws, step, onLine)
}

func runScriptCtx(ctx context.Context, t testing.TB, p *Process, ws *Workspace, step Step, onLine func(Line)) result {
	t.Helper()
	var r result
	var mu sync.Mutex // RunStep promises no concurrent calls; the race detector checks it
	start := time.Now()
	r.outcome, r.err = p.RunStep(ctx, ws, step, func(l Line) {
		if !mu.TryLock() {
			t.Error("out called concurrently")
			return
		}
		defer mu.Unlock()
		r.lines = append(r.lines, l)
		switch l.Stream {
		case Stdout:
			r.stdout = append(r.stdout, l.Text)
		case Stderr:
			r.stderr = append(r.stderr, l.Text)
		default:
			t.Errorf("line with stream %q", l.Stream)
		}
		if onLine != nil {
			onLine(l)
		}
	})
	r.elapsed = time.Since(start)
	return r
}

func TestRunStep(t *testing.T) {
	r := newTestRepo(t)
	p := newTestBackend(t, 0)
	ws := prepare(t, p, JobSpec{
		ID: "job-7", CloneURL: r.bare, Commit: r.first, Ref: "refs/heads/main",
		Env:     map[string]string{"FROM_JOB": "job", "BOTH": "job"},
		Secrets: []string{"s3cr3t-value", "x"},
	})
	tests := []struct {
		name       string
		commands   []string
		env        map[string]string
		wantExit   int
		wantStdout []string
		wantStderr []string
	}{
		{name: "success", commands: []string{"true"}},
		{name: "exit code", commands: []string{"exit 3"}, wantExit: 3},
		{name: "first failing command ends the step", commands: []string{"echo before", "false", "echo after"}, wantExit: 1, wantStdout: []string{"before"}},
		{name: "commands share one shell", commands: []string{"X=kept", "cd sub 2>/dev/null || mkdir sub && cd sub", "echo $X ${PWD##*/}"}, wantStdout: []string{"kept sub"}},
		{name: "streams in order", commands: []string{"echo one", "echo two >&2", "echo three", "echo four >&2", "printf 'no newline'"},
			wantStdout: []string{"one", "three", "no newline"}, wantStderr: []string{"two", "four"}},
		{name: "empty lines and CRLF", commands: []string{`printf 'a\r\n\nb\n'`}, wantStdout: []string{"a", "", "b"}},
		{name: "secret masked", commands: []string{"echo token=s3cr3t-value", "echo s3cr3t-value >&2", "echo x stays"},
			wantStdout: []string{"token=********", "x stays"}, wantStderr: []string{"********"}},
		{name: "invalid UTF-8 replaced", commands: []string{`printf 'a\377b\n'`}, wantStdout: []string{"a\uFFFDb"}},
		{name: "workspace is the checkout", commands: []string{"cat f.txt", `test "$PWD" = "$SHIPLOOP_WORKSPACE" && echo in workspace`},
			wantStdout: []string{"first", "in workspace"}},
		{name: "env", env: map[string]string{"FROM_STEP": "step", "BOTH": "step", "CI": "false"},
			commands:   []string{"echo $FROM_JOB $FROM_STEP $BOTH", "echo $CI $SHIPLOOP_JOB_ID $SHIPLOOP_COMMIT $SHIPLOOP_REF $SHIPLOOP_STEP", `test -d "$TMPDIR" && echo tmp`},
			wantStdout: []string{"job step step", "true job-7 " + r.first + " refs/heads/main env", "tmp"}},
		{name: "agent env not passed on", commands: []string{`echo "[$SHIPLOOP_TEST_AGENT_ONLY]"`}, wantStdout: []string{"[]"}},
		{name: "killed by a signal", commands: []string{"kill -9 $$"}, wantExit: 137},
	}
	t.Setenv("SHIPLOOP_TEST_AGENT_ONLY", "leak")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runScript(t, p, ws, Step{Name: tt.name, Commands: tt.commands, Env: tt.env}, nil)
			if res.err != nil {
				t.Fatalf("RunStep: %v", res.err)
			}
			o := res.outcome
			if o.ExitCode != tt.wantExit || o.TimedOut || o.Canceled {
				t.Errorf("outcome %+v, want exit %d", o, tt.wantExit)
			}
			if !reflect.DeepEqual(res.stdout, tt.wantStdout) {
				t.Errorf("stdout %q, want %q", res.stdout, tt.wantStdout)
			}
			if !reflect.DeepEqual(res.stderr, tt.wantStderr) {
				t.Errorf("stderr %q, want %q", res.stderr, tt.wantStderr)
			}
			for _, l := range res.lines {
				if l.Step != tt.name || l.Time.Before(o.StartedAt) {
					t.Errorf("line %+v: want step %q and a time after %v", l, tt.name, o.StartedAt)
				}
			}
			if o.StartedAt.IsZero() || o.Duration <= 0 {
				t.Errorf("outcome %+v lacks StartedAt or Duration", o)
			}
		})
	}
}

// processGone reports whether pid has exited. A zombie counts as gone: it runs
// nothing, and an orphan stays one until init reaps it, which can take seconds.
func processGone(t testing.TB, pid int) bool {
	t.Helper()
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] == 'Z'
}

// readPID reads a pid a step wrote into the workspace.
func readPID(t testing.TB, ws *Workspace, name string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(ws.Dir, name))))
	if err != nil {
		t.Fatalf("pid file %s: %v", name, err)
	}
	return pid
}

func TestRunStepKillsProcessGroup(t *testing.T) {
	r := newTestRepo(t)
	const grace = 400 * time.Millisecond
	tests := []struct {
		name       string
		commands   []string
		timeout    time.Duration
		cancel     bool // cancel the ctx when the step prints "ready"
		wantExit   int
		wantStdout []string
		minElapsed time.Duration
		maxElapsed time.Duration
	}{
		{
			name:       "timeout",
			commands:   []string{"echo $$ > pid", "sleep 300 & echo $! > child", "echo ready", "sleep 30"},
			timeout:    100 * time.Millisecond,
			wantExit:   -1,
			wantStdout: []string{"ready"},
			maxElapsed: 100*time.Millisecond + grace, // SIGTERM suffices: no waiting for the grace period
		},
		{
			name:       "timeout with SIGTERM ignored",
			commands:   []string{"trap '' TERM", "echo $$ > pid", "sleep 300 & echo $! > child", "echo ready", "sleep 30"},
			timeout:    100 * time.Millisecond,
			wantExit:   -1,
			wantStdout: []string{"ready"},
			minElapsed: 100*time.Millisecond + grace,
			maxElapsed: 100*time.Millisecond + grace + 2*time.Second,
		},
		{
			name:       "cancel",
			commands:   []string{"echo $$ > pid", "sleep 300 & echo $! > child", "echo ready", "sleep 30"},
			cancel:     true,
			wantExit:   -1,
			wantStdout: []string{"ready"},
			maxElapsed: grace,
		},
		{
			name:       "background child holding stdout after normal exit",
			commands:   []string{"echo $$ > pid", "sleep 300 & echo $! > child", "echo done"},
			wantStdout: []string{"done"},
			maxElapsed: 2 * time.Second,
		},
		{
			name:       "detached background child after normal exit",
			commands:   []string{"echo $$ > pid", "sleep 300 >/dev/null 2>&1 </dev/null & echo $! > child"},
			maxElapsed: 2 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestBackend(t, grace)
			ws := prepare(t, p, JobSpec{CloneURL: r.bare, Commit: r.first})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res := runScriptCtx(ctx, t, p, ws, Step{Name: tt.name, Commands: tt.commands, Timeout: tt.timeout}, func(l Line) {
				if tt.cancel && l.Text == "ready" {
					cancel()
				}
			})
			if res.err != nil {
				t.Fatalf("RunStep: %v", res.err)
			}
			o := res.outcome
			wantTimedOut, wantCanceled := tt.timeout > 0, tt.cancel
			if o.ExitCode != tt.wantExit || o.TimedOut != wantTimedOut || o.Canceled != wantCanceled {
				t.Errorf("outcome %+v, want exit %d, TimedOut %v, Canceled %v", o, tt.wantExit, wantTimedOut, wantCanceled)
			}
			if !reflect.DeepEqual(res.stdout, tt.wantStdout) {
				t.Errorf("stdout %q, want %q", res.stdout, tt.wantStdout)
			}
			if res.elapsed < tt.minElapsed || res.elapsed > tt.maxElapsed {
				t.Errorf("RunStep took %v, want %v to %v", res.elapsed, tt.minElapsed, tt.maxElapsed)
			}
			// No polling: RunStep promises both are gone when it returns.
			for _, name := range []string{"pid", "child"} {
				if pid := readPID(t, ws, name); !processGone(t, pid) {
					syscall.Kill(pid, syscall.SIGKILL)
					t.Errorf("%s process %d still running after RunStep returned", name, pid)
				}
			}
		})
	}
}

func TestRunStepCanceledBeforeStart(t *testing.T) {
	r := newTestRepo(t)
	p := newTestBackend(t, 0)
	ws := prepare(t, p, JobSpec{CloneURL: r.bare, Commit: r.first})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := runScriptCtx(ctx, t, p, ws, Step{Commands: []string{"touch ran"}}, nil)
	if res.err != nil || !res.outcome.Canceled || res.outcome.ExitCode != -1 {
		t.Errorf("RunStep = %+v, %v; want Canceled, exit -1", res.outcome, res.err)
	}
	if _, err := os.Stat(filepath.Join(ws.Dir, "ran")); err == nil {
		t.Error("the step ran despite the canceled ctx")
	}
}

func TestRunStepErrors(t *testing.T) {
	r := newTestRepo(t)
	p := newTestBackend(t, 0)
	ws := prepare(t, p, JobSpec{CloneURL: r.bare, Commit: r.first})
	if _, err := p.RunStep(context.Background(), &Workspace{Dir: t.TempDir()}, Step{Commands: []string{"true"}}, nil); err == nil {
		t.Error("RunStep on a workspace not from Prepare: no error")
	}
	if _, err := p.RunStep(context.Background(), ws, Step{Commands: []string{"true"}, Env: map[string]string{"A=B": "c"}}, nil); err == nil {
		t.Error("RunStep with env name containing '=': no error")
	}
	removed := *ws
	removed.Dir = filepath.Join(ws.root, "gone")
	if _, err := p.RunStep(context.Background(), &removed, Step{Commands: []string{"true"}}, nil); err == nil {
		t.Error("RunStep in a missing dir: no error")
	}
}

func TestRunStepLongLines(t *testing.T) {
	r := newTestRepo(t)
	p := newTestBackend(t, 0)
	ws := prepare(t, p, JobSpec{CloneURL: r.bare, Commit: r.first})
	// 150,000 bytes of "é" (2 bytes each), then a short line.
	res := runScript(t, p, ws, Step{Commands: []string{`awk 'BEGIN { for (i = 0; i < 75000; i++) printf "é"; print ""; print "end" }'`}}, nil)
	if res.err != nil || res.outcome.ExitCode != 0 {
		t.Fatalf("RunStep = %+v, %v, stderr %q", res.outcome, res.err, res.stderr)
	}
	if n := len(res.stdout); n != 4 || res.stdout[3] != "end" {
		t.Fatalf("got %d lines (last %.10q), want 3 chunks and \"end\"", n, res.stdout[n-1])
	}
	if got := strings.Join(res.stdout[:3], ""); got != strings.Repeat("é", 75000) {
		t.Errorf("chunks do not add up to the line")
	}
	for i, l := range res.stdout[:3] {
		if len(l) > MaxLineBytes {
			t.Errorf("chunk %d is %d bytes, over MaxLineBytes", i, len(l))
		}
	}
}

func TestDestroy(t *testing.T) {
	r := newTestRepo(t)
	workRoot := t.TempDir()
	p := NewProcess(ProcessConfig{WorkRoot: workRoot})
	ws, err := p.Prepare(context.Background(), JobSpec{ID: "../../evil id", CloneURL: r.bare, Commit: r.first})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(ws.root) != workRoot {
		t.Errorf("workspace root %s is not directly in WorkRoot %s", ws.root, workRoot)
	}
	// Go's module cache leaves read-only dirs behind; Destroy must cope.
	res := runScript(t, p, ws, Step{Commands: []string{"mkdir -p ro/sub", "touch ro/sub/f", "chmod 500 ro/sub ro", `touch "$TMPDIR/t"`}}, nil)
	if res.err != nil || res.outcome.ExitCode != 0 {
		t.Fatalf("RunStep = %+v, %v, stderr %q", res.outcome, res.err, res.stderr)
	}
	if err := p.Destroy(ws); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if ents, _ := os.ReadDir(workRoot); len(ents) != 0 {
		t.Errorf("WorkRoot still has %d entries after Destroy", len(ents))
	}
	if err := p.Destroy(ws); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if err := p.Destroy(nil); err != nil {
		t.Errorf("Destroy(nil): %v", err)
	}
}

// The latency path: webhook → Prepare → first step started. Run with
// go test -run '^$' -bench . ./backend/
func BenchmarkPrepare(b *testing.B) {
	r := newTestRepo(b)
	for _, fetchOnly := range []bool{false, true} {
		b.Run(fmt.Sprintf("fetchOnly=%v", fetchOnly), func(b *testing.B) {
			p := newTestBackend(b, 0)
			p.fetchOnly = fetchOnly
			for b.Loop() {
				ws, err := p.Prepare(context.Background(), JobSpec{CloneURL: r.bare, Commit: r.first})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				p.Destroy(ws)
				b.StartTimer()
			}
		})
	}
}

func BenchmarkRunStepTrue(b *testing.B) {
	r := newTestRepo(b)
	p := newTestBackend(b, 0)
	ws := prepare(b, p, JobSpec{CloneURL: r.bare, Commit: r.first})
	for b.Loop() {
		o, err := p.RunStep(context.Background(), ws, Step{Commands: []string{"true"}}, func(Line) {})
		if err != nil || o.ExitCode != 0 {
			b.Fatal(o, err)
		}
	}
}

// TestCheckoutTransports: an agent refuses a clone URL whose transport its
// operator did not allow, and git itself refuses the ext remote helper
// (GIT_ALLOW_PROTOCOL) even where a URL reached a remote's configuration
// without the checks.
func TestCheckoutTransports(t *testing.T) {
	r := newTestRepo(t)
	p := NewProcess(ProcessConfig{WorkRoot: t.TempDir(), AllowedTransports: vcsarg.MustTransports("https")})
	if _, err := p.Prepare(context.Background(), JobSpec{ID: "1", CloneURL: r.bare, Commit: r.first}); err == nil || !strings.Contains(err.Error(), "transport file is not allowed") {
		t.Errorf("Prepare of a local path with only https allowed = %v", err)
	}
	mark := filepath.Join(t.TempDir(), "pwned")
	dir := t.TempDir()
	all := NewProcess(ProcessConfig{WorkRoot: t.TempDir()})
	if err := writeGitDir(filepath.Join(dir, ".git"), "ext::sh -c touch% "+mark, r.first, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := runGit(context.Background(), dir, all.gitEnv, "fetch", "-q", "--end-of-options", "origin", r.first); err == nil {
		t.Error("fetch through ext:: succeeded")
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatalf("%s exists: the ext remote helper ran", mark)
	}
}

// TestRunStepDetach runs a deploy script that starts a long-running service
// in the background, as deploy scripts do: copied out of the workspace into a
// deploy dir and started with nohup. With Detach the service outlives the
// step and the workspace; without, it dies with the step. A timeout kills it
// even with Detach.
func TestRunStepDetach(t *testing.T) {
	r := newTestRepo(t)
	const grace = 400 * time.Millisecond
	script := func(deployDir, redirect string) []string {
		return []string{
			"cd " + deployDir,
			// The service: says it started, then ticks every 100 ms to its
			// output (a log file, or the step's stdout when not redirected)
			// and to the file ticks.
			`printf '%s\n' 'echo started' 'while true; do echo tick; echo tick >> ticks; sleep 0.1; done' > server.sh`,
			"nohup sh ./server.sh " + redirect + " &",
			"echo $! > server.pid",
			"echo deployed",
		}
	}
	tests := []struct {
		name       string
		detach     bool
		redirect   string
		extra      []string // commands after the service started
		timeout    time.Duration
		wantAlive  bool
		wantStdout []string
		maxElapsed time.Duration
	}{
		{name: "detach, output to a log file", detach: true, redirect: "> server.log 2>&1",
			wantAlive: true, wantStdout: []string{"deployed"}, maxElapsed: time.Second},
		// The reporter's script: nohup does not redirect a pipe, so the
		// service writes to the step's stdout. Its first lines reach the log;
		// after the step it must not block or die of SIGPIPE.
		{name: "detach, output to the step's log", detach: true,
			wantAlive: true, maxElapsed: pipeDrainTimeout + time.Second},
		{name: "no detach kills the service", redirect: "> server.log 2>&1",
			wantStdout: []string{"deployed"}, maxElapsed: time.Second},
		{name: "detach, timeout kills the service", detach: true, redirect: "> server.log 2>&1",
			extra: []string{"sleep 30"}, timeout: 300 * time.Millisecond, wantStdout: []string{"deployed"}, maxElapsed: time.Second + grace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestBackend(t, grace)
			ws, err := p.Prepare(context.Background(), JobSpec{ID: "deploy-1", CloneURL: r.bare, Commit: r.first})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Destroy(ws)
			deployDir := t.TempDir()
			step := Step{Name: "deploy", Commands: append(script(deployDir, tt.redirect), tt.extra...), Timeout: tt.timeout, Detach: tt.detach}
			res := runScript(t, p, ws, step, nil)
			if res.err != nil {
				t.Fatalf("RunStep: %v", res.err)
			}
			pidText, err := os.ReadFile(filepath.Join(deployDir, "server.pid"))
			if err != nil {
				t.Fatal(err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
			if timedOut := tt.timeout > 0; res.outcome.TimedOut != timedOut || !timedOut && res.outcome.ExitCode != 0 {
				t.Errorf("outcome %+v", res.outcome)
			}
			if res.elapsed > tt.maxElapsed {
				t.Errorf("RunStep took %v, want at most %v", res.elapsed, tt.maxElapsed)
			}
			if tt.redirect == "" {
				// The service's first output is the step's log.
				if len(res.stdout) < 3 || !slices.Contains(res.stdout, "deployed") || !slices.Contains(res.stdout, "started") || !slices.Contains(res.stdout, "tick") {
					t.Errorf("stdout %q, want deployed, started and ticks", res.stdout)
				}
			} else if !reflect.DeepEqual(res.stdout, tt.wantStdout) {
				t.Errorf("stdout %q, want %q", res.stdout, tt.wantStdout)
			}
			if !tt.wantAlive {
				// RunStep promises the group is gone when it returns.
				if !processGone(t, pid) {
					t.Errorf("service %d still running after RunStep returned", pid)
				}
				return
			}
			// The job ends: its workspace goes. The service lives on, and keeps
			// running (not blocked on a full pipe, not killed by SIGPIPE).
			if err := p.Destroy(ws); err != nil {
				t.Fatal(err)
			}
			// The service may not have ticked yet on a loaded machine: wait
			// for its first tick, then for more.
			before := 0
			for deadline := time.Now().Add(10 * time.Second); before == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				before = ticks(t, deployDir)
			}
			time.Sleep(700 * time.Millisecond)
			if processGone(t, pid) {
				t.Fatalf("service %d died after the step ended", pid)
			}
			if after := ticks(t, deployDir); after <= before {
				t.Errorf("service made %d ticks, had %d 700ms before: it is stuck", after, before)
			}
		})
	}
}

// ticks counts the lines the service wrote to deployDir/ticks, 0 before
// it wrote any.
func ticks(t *testing.T, deployDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "ticks"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "tick\n")
}
