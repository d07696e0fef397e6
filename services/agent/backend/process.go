//go:build unix

package backend

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shiploop/shiploop/pkg/vcsarg"
	"github.com/shiploop/shiploop/services/agent/backend/mask"
)

// DefaultKillGrace is ProcessConfig.KillGrace when it is zero.
const DefaultKillGrace = 5 * time.Second

const (
	// leftoverTimeout bounds the wait for SIGKILLed processes to die (only a
	// process stuck in the kernel, state D, takes longer than microseconds).
	leftoverTimeout = 10 * time.Second
	// pipeDrainTimeout bounds the wait for output after the step's process group
	// is gone: only a process that left the group (setsid) can still hold the
	// pipes open, and RunStep does not wait for it.
	pipeDrainTimeout = 2 * time.Second
)

// ProcessConfig configures the process backend.
type ProcessConfig struct {
	// WorkRoot is the directory workspaces are made in; "" means os.TempDir().
	// It is created if missing.
	WorkRoot string
	// KillGrace is how long a timed-out or canceled step has between SIGTERM
	// and SIGKILL; 0 means DefaultKillGrace.
	KillGrace time.Duration
	// Env is the base environment of every step, as "KEY=value". nil means the
	// agent's PATH (or a standard one) and HOME only; the agent's other
	// variables are not passed on.
	Env []string
	// AllowedTransports are the clone URL transports checkouts may use
	// (git's GIT_ALLOW_PROTOCOL too). The zero value allows every known
	// one (vcsarg.AllTransports): builds refuses the others when a
	// repository is registered. Options and remote helpers are always
	// refused.
	AllowedTransports vcsarg.Transports
}

// Process is the Backend that runs steps as child processes on the agent's
// machine, as the agent's user. Each step is a `/bin/sh -e -c` leading its own
// process group; the group is what gets killed. Processes that leave the group
// (setsid, setpgid) escape the kill, as with any process-group backend.
// A Step with Detach is not killed when its shell exits on its own: what it
// started in the background keeps running (timeouts and cancels still kill
// the group). The workspace is removed after the job, so a detached process
// must not need it (its cwd, its files): deploy scripts copy what the
// service runs to a directory of its own and start it from there.
//
// Workspace layout under the workspace root (a fresh dir in WorkRoot):
// src/ is the checkout (Workspace.Dir) and tmp/ is the steps' TMPDIR.
// Step environment, later entries winning: ProcessConfig.Env, TMPDIR,
// JobSpec.Env, Step.Env, then CI=true, SHIPLOOP_JOB_ID, SHIPLOOP_COMMIT,
// SHIPLOOP_REF, SHIPLOOP_STEP and SHIPLOOP_WORKSPACE, which steps cannot override.
//
// A Process is safe for concurrent use: different workspaces may prepare and
// run steps in parallel.
type Process struct {
	workRoot string
	grace    time.Duration
	baseEnv  []string
	gitEnv   []string
	// transports are the clone URL transports checkouts may use.
	transports vcsarg.Transports
	// fetchOnly turns off borrowing a local repository's objects (tests use it
	// to exercise the fetch path against a local repository).
	fetchOnly bool
}

var _ Backend = (*Process)(nil)

// NewProcess returns a process backend.
func NewProcess(cfg ProcessConfig) *Process {
	p := &Process{workRoot: cfg.WorkRoot, grace: cfg.KillGrace, baseEnv: slices.Clone(cfg.Env)}
	if p.workRoot == "" {
		p.workRoot = os.TempDir()
	}
	if p.grace <= 0 {
		p.grace = DefaultKillGrace
	}
	if p.baseEnv == nil {
		path := os.Getenv("PATH")
		if path == "" {
			path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		}
		p.baseEnv = []string{"PATH=" + path}
		if home := os.Getenv("HOME"); home != "" {
			p.baseEnv = append(p.baseEnv, "HOME="+home)
		}
	}
	p.transports = cfg.AllowedTransports
	if len(p.transports.Allowed()) == 0 {
		p.transports = vcsarg.MustTransports(strings.Join(vcsarg.AllTransports, ","))
	}
	p.gitEnv = append(gitEnv(os.Environ()), "GIT_ALLOW_PROTOCOL="+p.transports.GitAllowProtocol())
	return p
}

// Prepare makes a workspace root in WorkRoot and checks the commit out into
// its src/ dir; see checkout for how.
func (p *Process) Prepare(ctx context.Context, job JobSpec) (*Workspace, error) {
	job.Commit = strings.ToLower(job.Commit)
	job.Env = maps.Clone(job.Env)
	job.Secrets = slices.Clone(job.Secrets)
	masker := mask.New(job.Secrets...)
	fail := func(err error) (*Workspace, error) {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("backend: prepare job %s: %w", job.ID, ctxErr)
		}
		// Git's stderr may quote a URL with a token in it.
		return nil, fmt.Errorf("backend: prepare job %s: %s", job.ID, masker.Mask(err.Error()))
	}
	if !isFullSHA(job.Commit) {
		return fail(fmt.Errorf("commit %q is not a full SHA", job.Commit))
	}
	vcs := job.VCS
	if vcs == "" {
		vcs = "git"
	}
	if err := p.transports.CloneURL(vcs, job.CloneURL); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(p.workRoot, 0o755); err != nil {
		return fail(err)
	}
	root, err := os.MkdirTemp(p.workRoot, "job-"+safeName(job.ID)+"-")
	if err != nil {
		return fail(err)
	}
	ws := &Workspace{
		Dir:    filepath.Join(root, "src"),
		root:   root,
		tmp:    filepath.Join(root, "tmp"),
		job:    job,
		masker: masker,
	}
	err = os.Mkdir(ws.tmp, 0o700)
	if err == nil {
		switch job.VCS {
		case "", "git":
			err = checkout(ctx, ws.Dir, job.CloneURL, job.Commit, p.gitEnv, !p.fetchOnly)
		case "hg":
			err = checkoutHg(ctx, ws.Dir, job.CloneURL, job.Commit, p.gitEnv) // hg.go
		default:
			err = fmt.Errorf("unknown version control system %q (want git or hg)", job.VCS)
		}
	}
	if err != nil {
		_ = os.RemoveAll(root)
		return fail(err)
	}
	return ws, nil
}

// RunStep runs step in ws; see the Backend contract.
func (p *Process) RunStep(ctx context.Context, ws *Workspace, step Step, out func(Line)) (Outcome, error) {
	if ws == nil || ws.root == "" {
		return Outcome{}, errors.New("backend: RunStep needs a workspace made by Prepare")
	}
	env, err := p.stepEnv(ws, step)
	if err != nil {
		return Outcome{}, fmt.Errorf("backend: step %q: %w", step.Name, err)
	}
	if ctx.Err() != nil {
		return Outcome{ExitCode: -1, Canceled: true, StartedAt: time.Now()}, nil
	}

	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return Outcome{}, fmt.Errorf("backend: step %q: %w", step.Name, err)
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		stdoutR.Close()
		stdoutW.Close()
		return Outcome{}, fmt.Errorf("backend: step %q: %w", step.Name, err)
	}
	// A detached step's background processes may hold the pipes after the
	// step ends; then the readers keep draining them (see below) and close them.
	keepReading := false
	defer func() {
		if !keepReading {
			stdoutR.Close()
			stderrR.Close()
		}
	}()

	cmd := exec.Command("/bin/sh", "-e", "-c", strings.Join(step.Commands, "\n"))
	cmd.Dir = ws.Dir
	cmd.Env = env
	// *os.File outputs go to the child as they are: no copying goroutines, so
	// Wait returns when the shell exits even if a background child holds them.
	cmd.Stdout = stdoutW
	cmd.Stderr = stderrW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	startedAt := time.Now()
	err = cmd.Start()
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		return Outcome{}, fmt.Errorf("backend: step %q: starting /bin/sh: %w", step.Name, err)
	}
	pgid := cmd.Process.Pid

	var (
		outMu   sync.Mutex
		readers sync.WaitGroup
		ended   bool // under outMu: the step returned, lines are discarded
	)
	read := func(r *os.File, stream string) {
		defer readers.Done()
		scanLines(r, func(text string) {
			if out == nil {
				return
			}
			outMu.Lock()
			gone := ended
			outMu.Unlock()
			if gone {
				return
			}
			line := Line{Step: step.Name, Stream: stream, Text: cleanText(ws.masker.Mask(text)), Time: time.Now()}
			outMu.Lock()
			defer outMu.Unlock()
			if !ended {
				out(line)
			}
		})
	}
	readers.Add(2)
	go read(stdoutR, Stdout)
	go read(stderrR, Stderr)

	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	var timeout <-chan time.Time
	if step.Timeout > 0 {
		t := time.NewTimer(step.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	o := Outcome{StartedAt: startedAt}
	var waitErr error
	select {
	case waitErr = <-waited:
	case <-timeout:
		o.TimedOut = true
		waitErr = p.stop(pgid, waited)
	case <-ctx.Done():
		o.Canceled = true
		waitErr = p.stop(pgid, waited)
	}

	// The shell is reaped. Its process group id stays reserved while any member
	// lives, so signalling -pgid cannot hit an unrelated process. A detached
	// step that ended on its own leaves the group running.
	detached := step.Detach && !o.TimedOut && !o.Canceled
	var cleanupErr error
	if !detached {
		cleanupErr = killGroup(pgid)
	}

	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(pipeDrainTimeout):
		if detached {
			// Background processes hold the pipes. Read on, discarding, until
			// they close them (or exit): a write to a pipe nobody reads would
			// block them, and to a closed one kill them with SIGPIPE.
			outMu.Lock()
			ended = true
			outMu.Unlock()
			keepReading = true
			go func() {
				<-drained
				stdoutR.Close()
				stderrR.Close()
			}()
			break
		}
		now := time.Now()
		_ = stdoutR.SetReadDeadline(now)
		_ = stderrR.SetReadDeadline(now)
		<-drained
	}
	o.Duration = time.Since(startedAt)

	var exitErr *exec.ExitError
	switch {
	case o.TimedOut || o.Canceled:
		o.ExitCode = -1
	case waitErr == nil:
		o.ExitCode = 0
	case errors.As(waitErr, &exitErr):
		o.ExitCode = exitErr.ExitCode()
		if st, ok := exitErr.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			o.ExitCode = 128 + int(st.Signal())
		}
	default:
		return o, fmt.Errorf("backend: step %q: %w", step.Name, waitErr)
	}
	if cleanupErr != nil {
		return o, fmt.Errorf("backend: step %q: %w", step.Name, cleanupErr)
	}
	return o, nil
}

// stop ends a step early: SIGTERM to the group, then SIGKILL once the grace
// period is over if anything in the group still lives. It returns the shell's
// Wait result.
func (p *Process) stop(pgid int, waited <-chan error) error {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(p.grace)
	grace := time.NewTimer(p.grace)
	defer grace.Stop()
	select {
	case err := <-waited:
		// The shell is gone; the rest of the group gets what is left of the grace period.
		if !pollUntil(deadline, func() bool { return !groupAlive(pgid) }) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		return err
	case <-grace.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return <-waited
	}
}

// killGroup SIGKILLs whatever is left in process group pgid and waits for it to die.
func killGroup(pgid int) error {
	if err := syscall.Kill(-pgid, syscall.SIGKILL); errors.Is(err, syscall.ESRCH) {
		return nil // the usual case: nothing was left
	}
	if !pollUntil(time.Now().Add(leftoverTimeout), func() bool { return !groupAlive(pgid) }) {
		return fmt.Errorf("processes of group %d still alive %v after SIGKILL", pgid, leftoverTimeout)
	}
	return nil
}

// pollUntil calls done, backing off from 0.5 ms to 20 ms, until it reports true
// (pollUntil returns true) or deadline passes (false).
func pollUntil(deadline time.Time, done func() bool) bool {
	wait := 500 * time.Microsecond
	for {
		if done() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(wait, left))
		wait = min(2*wait, 20*time.Millisecond)
	}
}

func (p *Process) stepEnv(ws *Workspace, step Step) ([]string, error) {
	env := slices.Clone(p.baseEnv)
	env = append(env, "TMPDIR="+ws.tmp)
	for _, m := range []map[string]string{ws.job.Env, step.Env} {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(m[k], 0) {
				return nil, fmt.Errorf("invalid environment variable %q", k)
			}
			env = append(env, k+"="+m[k])
		}
	}
	// os/exec keeps the last of duplicate keys, so these cannot be overridden.
	return append(env,
		"CI=true",
		"SHIPLOOP_JOB_ID="+ws.job.ID,
		"SHIPLOOP_COMMIT="+ws.job.Commit,
		"SHIPLOOP_REF="+ws.job.Ref,
		"SHIPLOOP_STEP="+step.Name,
		"SHIPLOOP_WORKSPACE="+ws.Dir,
	), nil
}

// Destroy removes the workspace, including read-only dirs steps left behind
// (Go's module cache makes those).
func (p *Process) Destroy(ws *Workspace) error {
	if ws == nil || ws.root == "" {
		return nil
	}
	err := os.RemoveAll(ws.root)
	if err != nil {
		makeWritable(ws.root)
		err = os.RemoveAll(ws.root)
	}
	if err != nil {
		return fmt.Errorf("backend: destroy workspace: %w", err)
	}
	return nil
}

func makeWritable(root string) {
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
}

// safeName makes a job id usable in a directory name.
func safeName(id string) string {
	b := []byte(id)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}
