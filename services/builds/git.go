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

	"github.com/shiploop/shiploop/pkg/vcsarg"
)

// mirrors keeps one bare mirror per repository under a directory, fetched
// on demand, so that the builds service can read .shiploop.yml and compute
// versions without a full checkout.
type mirrors struct {
	dir string
	// transports are the clone URL transports the operator allows.
	transports vcsarg.Transports
	mu         sync.Mutex
	locks      map[string]*sync.Mutex
}

func newMirrors(dir string, transports vcsarg.Transports) *mirrors {
	return &mirrors{dir: dir, transports: transports, locks: map[string]*sync.Mutex{}}
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
// when it does not. It returns the mirror's directory. cloneURL must be of
// an allowed transport and commit (when set) hexadecimal: nothing from a
// webhook or the API reaches git as an option (TestGitInjection).
func (m *mirrors) ensure(ctx context.Context, repo, cloneURL, commit string) (string, error) {
	if err := m.transports.CloneURL(VCSGit, cloneURL); err != nil {
		return "", err
	}
	if commit != "" {
		if err := vcsarg.CommitOrPrefix(commit); err != nil {
			return "", err
		}
	}
	defer m.lock(repo)()
	dir := filepath.Join(m.dir, strings.NewReplacer("/", "__", "..", "_").Replace(repo)+".git")
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		if _, err := m.git(ctx, dir, "init", "--bare", "--quiet"); err != nil {
			return "", err
		}
	}
	if commit != "" {
		if _, err := m.git(ctx, dir, "cat-file", "-e", "--end-of-options", commit+"^{commit}"); err == nil {
			return dir, nil
		}
	}
	// Fetch branches and tags (tags matter for versions).
	if _, err := m.git(ctx, dir, fetchAllArgs(cloneURL)...); err != nil {
		return "", fmt.Errorf("fetching %s: %w", vcsarg.Redact(cloneURL), err)
	}
	if commit != "" && !isBranchOrTagHead(ctx, dir, commit) {
		if _, err := m.git(ctx, dir, "cat-file", "-e", "--end-of-options", commit+"^{commit}"); err != nil {
			// A pull request head or an unreferenced commit: ask for it by id.
			if _, err := m.git(ctx, dir, fetchCommitArgs(cloneURL, commit)...); err != nil {
				return "", fmt.Errorf("commit %s is not in %s: %w", commit, vcsarg.Redact(cloneURL), err)
			}
		}
	}
	return dir, nil
}

// fetchAllArgs fetches every branch and tag of cloneURL into a mirror.
func fetchAllArgs(cloneURL string) []string {
	return []string{"fetch", "--quiet", "--prune", "--force", "--end-of-options", cloneURL,
		"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}
}

// fetchCommitArgs fetches one commit by id.
func fetchCommitArgs(cloneURL, commit string) []string {
	return []string{"fetch", "--quiet", "--end-of-options", cloneURL, commit}
}

// git runs git in a mirror with git's own protocol allow-list set to the
// transports the operator allows, so a redirect or a submodule cannot reach
// another one either.
func (m *mirrors) git(ctx context.Context, dir string, args ...string) (string, error) {
	return gitWith(ctx, dir, m.gitEnv(), args...)
}

func (m *mirrors) gitEnv() []string {
	return append(gitEnv(), "GIT_ALLOW_PROTOCOL="+m.transports.GitAllowProtocol())
}

// resolve turns a ref into a commit sha in a mirror.
func resolve(ctx context.Context, dir, ref string) (string, error) {
	if strings.HasPrefix(ref, "-") {
		return "", fmt.Errorf("ref %q not found", ref)
	}
	out, err := git(ctx, dir, "rev-parse", "--verify", "--quiet", "--end-of-options", ref+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("ref %q not found", ref)
	}
	return strings.TrimSpace(out), nil
}

// errNoFile is returned by readFile when the commit has no such file.
var errNoFile = errors.New("no such file in commit")

func readFile(ctx context.Context, dir, commit, path string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", "cat-file", "blob", "--end-of-options", commit+":"+path)
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

// git runs git in a local repository (a mirror); commands that reach a
// remote go through mirrors.git.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	return gitWith(ctx, dir, append(gitEnv(), "GIT_ALLOW_PROTOCOL=file"), args...)
}

func gitWith(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = env
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
