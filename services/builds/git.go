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
	"time"

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
	// catFiles are the mirrors' long-lived cat-file processes (catfile.go).
	catFiles map[string]*catFile
	// fullAt is when each mirror last fetched every branch and tag.
	fullAt map[string]time.Time
}

// fullFetchEvery is how often a push fetches every branch and tag (with
// --prune) rather than only its own ref: that fetch also brings tags no
// push named (auto-following brings only those pointing into fetched
// history), moved tags, and drops deleted branches and tags.
const fullFetchEvery = 10 * time.Minute

func newMirrors(dir string, transports vcsarg.Transports) *mirrors {
	return &mirrors{dir: dir, transports: transports, locks: map[string]*sync.Mutex{},
		catFiles: map[string]*catFile{}, fullAt: map[string]time.Time{}}
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
	return m.ensureRef(ctx, repo, cloneURL, "", commit)
}

// ensureRef is ensure for a push of ref (a branch or tag, "" when unknown):
// when the mirror lacks commit it fetches that ref only, with the tags that
// point into its history, rather than every branch and tag; a new mirror,
// a change without ref or commit, and the first push after fullFetchEvery
// fetch everything. Whether the mirror holds commit is asked of its
// cat-file process, not of a new git.
func (m *mirrors) ensureRef(ctx context.Context, repo, cloneURL, ref, commit string) (string, error) {
	if err := m.transports.CloneURL(VCSGit, cloneURL); err != nil {
		return "", err
	}
	if commit != "" {
		if err := vcsarg.CommitOrPrefix(commit); err != nil {
			return "", err
		}
	}
	if ref != "" && (vcsarg.Ref(ref) != nil || !strings.HasPrefix(ref, "refs/heads/") && !strings.HasPrefix(ref, "refs/tags/")) {
		ref = "" // a pull request's or another ref: fetch everything
	}
	defer m.lock(repo)()
	dir := filepath.Join(m.dir, strings.NewReplacer("/", "__", "..", "_").Replace(repo)+".git")
	fresh := false
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		if _, err := m.git(ctx, dir, "init", "--bare", "--quiet"); err != nil {
			return "", err
		}
		fresh = true
	}
	if commit != "" && !fresh {
		if ok, err := m.hasCommit(dir, commit); err == nil && ok {
			return dir, nil
		}
	}
	m.mu.Lock()
	full := fresh || commit == "" || ref == "" || time.Since(m.fullAt[dir]) > fullFetchEvery
	m.mu.Unlock()
	if !full {
		if _, err := m.git(ctx, dir, fetchRefArgs(cloneURL, ref)...); err != nil {
			full = true // the ref is gone already, say: fetch everything
		} else if ok, err := m.hasCommit(dir, commit); err != nil || !ok {
			full = true // the ref moved on without commit (a force push)
		}
		if !full {
			return dir, nil
		}
	}
	// Fetch branches and tags (tags matter for versions).
	if _, err := m.git(ctx, dir, fetchAllArgs(cloneURL)...); err != nil {
		return "", fmt.Errorf("fetching %s: %w", vcsarg.Redact(cloneURL), err)
	}
	m.mu.Lock()
	m.fullAt[dir] = time.Now()
	m.mu.Unlock()
	if commit != "" {
		if ok, err := m.hasCommit(dir, commit); err != nil || !ok {
			// A pull request head or an unreferenced commit: ask for it by id.
			if _, err := m.git(ctx, dir, fetchCommitArgs(cloneURL, commit)...); err != nil {
				return "", fmt.Errorf("commit %s is not in %s: %w", commit, vcsarg.Redact(cloneURL), err)
			}
		}
	}
	return dir, nil
}

// fetchRefArgs fetches one branch or tag of cloneURL into the same ref of a
// mirror, with the tags that point into the history fetched (git's tag
// auto-following: the refspec has a destination and --no-tags is not set).
// ref is a checked ref name (vcsarg.Ref: no leading '-', no ':' or '*').
func fetchRefArgs(cloneURL, ref string) []string {
	return []string{"fetch", "--quiet", "--force", "--end-of-options", cloneURL, "+" + ref + ":" + ref}
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
