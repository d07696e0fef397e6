package builds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// mirrors keeps one bare mirror per repository under a directory, fetched
// on demand, so that the builds service can read .shiploop.yml and compute
// versions without a full checkout.
type mirrors struct {
	dir   string
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func newMirrors(dir string) *mirrors {
	return &mirrors{dir: dir, locks: map[string]*sync.Mutex{}}
}

func (m *mirrors) lock(repo string) func() {
	m.mu.Lock()
	l, ok := m.locks[repo]
	if !ok {
		l = &sync.Mutex{}
		m.locks[repo] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// ensure makes sure the mirror of repo has commit, fetching from cloneURL
// when it does not. It returns the mirror's directory.
func (m *mirrors) ensure(ctx context.Context, repo, cloneURL, commit string) (string, error) {
	defer m.lock(repo)()
	dir := filepath.Join(m.dir, strings.NewReplacer("/", "__", "..", "_").Replace(repo)+".git")
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		if _, err := git(ctx, dir, "init", "--bare", "--quiet"); err != nil {
			return "", err
		}
	}
	if commit != "" {
		if _, err := git(ctx, dir, "cat-file", "-e", commit+"^{commit}"); err == nil {
			return dir, nil
		}
	}
	// Fetch branches and tags (tags matter for versions).
	if _, err := git(ctx, dir, "fetch", "--quiet", "--prune", "--force", cloneURL,
		"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"); err != nil {
		return "", fmt.Errorf("fetching %s: %w", cloneURL, err)
	}
	if commit != "" && !isBranchOrTagHead(ctx, dir, commit) {
		if _, err := git(ctx, dir, "cat-file", "-e", commit+"^{commit}"); err != nil {
			// A pull request head or an unreferenced commit: ask for it by id.
			if _, err := git(ctx, dir, "fetch", "--quiet", cloneURL, commit); err != nil {
				return "", fmt.Errorf("commit %s is not in %s: %w", commit, cloneURL, err)
			}
		}
	}
	return dir, nil
}

// resolve turns a ref into a commit sha in a mirror.
func resolve(ctx context.Context, dir, ref string) (string, error) {
	out, err := git(ctx, dir, "rev-parse", "--verify", "--quiet", ref+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("ref %q not found", ref)
	}
	return strings.TrimSpace(out), nil
}

// errNoFile is returned by readFile when the commit has no such file.
var errNoFile = errors.New("no such file in commit")

func readFile(ctx context.Context, dir, commit, path string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", "cat-file", "blob", commit+":"+path)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if strings.Contains(stderr.String(), "does not exist") || strings.Contains(stderr.String(), "Not a valid object name") {
			return nil, errNoFile
		}
		return nil, fmt.Errorf("git cat-file %s:%s: %v: %s", commit, path, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func gitEnv() []string {
	return append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
}

// isBranchOrTagHead reports, without running git, whether commit is what a
// branch or tag of the mirror points at (loose refs or packed-refs): after a
// fetch that is the usual case for a push, and saves a git process.
func isBranchOrTagHead(_ context.Context, dir, commit string) bool {
	if len(commit) < 40 {
		return false
	}
	found := false
	_ = filepath.WalkDir(filepath.Join(dir, "refs"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || found {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == commit {
			found = true
		}
		return nil
	})
	if found {
		return true
	}
	packed, err := os.ReadFile(filepath.Join(dir, "packed-refs"))
	return err == nil && strings.Contains(string(packed), commit+" refs/")
}
