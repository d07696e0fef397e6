//go:build unix

package backend

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// checkout makes dir a git repository with commit checked out, detached.
//
// Prepare is on the webhook → first step latency path, where every git process
// costs 2-3 ms, so it runs as few as it can. git init is replaced by writing
// the few files of a .git dir. For a local repository (an absolute path or a
// file:// URL) the new repository borrows the source's objects through
// objects/info/alternates, like `git clone --shared`, and one `git checkout`
// does the rest: no upload-pack, no copying. Anything else gets
// `git fetch --depth=1 origin <commit>`, which also works for a commit no branch
// points at (protocol v2 servers, or v0 ones that allow it); if the server
// refuses a bare SHA, all branches are fetched instead.
func checkout(ctx context.Context, dir, cloneURL, commit string, env []string, borrow bool) error {
	if !isFullSHA(commit) {
		return fmt.Errorf("commit %q is not a full SHA", commit)
	}
	cloneURL = absLocalPath(cloneURL)
	var gitDir, objects string
	if borrow {
		gitDir, objects = localGitDir(cloneURL)
	}
	if err := writeGitDir(filepath.Join(dir, ".git"), cloneURL, commit, gitDir, objects); err != nil {
		return fmt.Errorf("making git dir: %w", err)
	}
	if objects == "" {
		if err := runGit(ctx, dir, env, "fetch", "-q", "--depth=1", "--no-tags", "--end-of-options", "origin", commit); err != nil {
			if err := runGit(ctx, dir, env, "fetch", "-q", "--no-tags", "--end-of-options", "origin"); err != nil {
				return fmt.Errorf("fetching commit %s from %s: %w", commit, redactURL(cloneURL), err)
			}
		}
	}
	// checkout takes no --end-of-options before a commit in git 2.39; the
	// "--" ends the revisions and commit is a full hexadecimal id (Prepare).
	if err := runGit(ctx, dir, env, "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit, "--"); err != nil {
		return fmt.Errorf("checking out commit %s from %s: %w", commit, redactURL(cloneURL), err)
	}
	return nil
}

// absLocalPath makes a relative local path absolute, as git would resolve it
// from the agent's working directory rather than the workspace.
func absLocalPath(cloneURL string) string {
	if strings.Contains(cloneURL, "://") || filepath.IsAbs(cloneURL) {
		return cloneURL
	}
	if _, err := os.Stat(cloneURL); err != nil {
		return cloneURL // scp-like host:path, or nothing git could use either
	}
	if abs, err := filepath.Abs(cloneURL); err == nil {
		return abs
	}
	return cloneURL
}

// localGitDir finds the git dir and its objects dir of a repository on this
// machine, or returns "" for anything else (remote URLs, linked worktrees).
func localGitDir(cloneURL string) (gitDir, objects string) {
	path := cloneURL
	if strings.HasPrefix(cloneURL, "file://") {
		u, err := url.Parse(cloneURL)
		if err != nil || (u.Host != "" && u.Host != "localhost") {
			return "", ""
		}
		path = u.Path
	}
	if !filepath.IsAbs(path) {
		return "", ""
	}
	path = filepath.Clean(path)
	for _, d := range []string{path, filepath.Join(path, ".git")} {
		if isDir(filepath.Join(d, "objects")) && isFile(filepath.Join(d, "HEAD")) {
			return d, filepath.Join(d, "objects")
		}
	}
	return "", ""
}

// writeGitDir writes what `git init` would, minus samples; objects, when set,
// is a local repository's objects dir to borrow, and srcGitDir its git dir.
func writeGitDir(gitDir, cloneURL, commit, srcGitDir, objects string) error {
	for _, d := range []string{"objects/info", "refs/heads", "refs/tags"} {
		if err := os.MkdirAll(filepath.Join(gitDir, d), 0o755); err != nil {
			return err
		}
	}
	var config strings.Builder
	version := 0
	if len(commit) == 64 {
		version = 1 // needed for extensions.objectformat
	}
	fmt.Fprintf(&config, "[core]\n\trepositoryformatversion = %d\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n", version)
	if version == 1 {
		config.WriteString("[extensions]\n\tobjectformat = sha256\n")
	}
	fmt.Fprintf(&config, "[remote \"origin\"]\n\turl = %s\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n", quoteConfig(cloneURL))
	files := map[string]string{
		"HEAD":   "ref: refs/heads/main\n",
		"config": config.String(),
	}
	if objects != "" {
		files["objects/info/alternates"] = objects + "\n"
		// A shallow source's history ends where its shallow file says.
		if b, err := os.ReadFile(filepath.Join(srcGitDir, "shallow")); err == nil {
			files["shallow"] = string(b)
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(gitDir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runGit runs git in dir; its error includes git's stderr.
func runGit(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// git fetch starts helpers (ssh, remote-https, upload-pack); cancel them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		name := "git " + args[0]
		if args[0] == "-c" {
			name = "git " + args[2]
		}
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2048 {
			msg = "…" + msg[len(msg)-2048:]
		}
		if msg == "" {
			return fmt.Errorf("%s: %w", name, err)
		}
		return fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return nil
}

// gitEnv is the agent's environment for git, without the variables that would
// point git at another repository, and with prompts for credentials off: a
// prompt would hang the job.
func gitEnv(environ []string) []string {
	local := map[string]bool{
		"GIT_ALTERNATE_OBJECT_DIRECTORIES": true, "GIT_COMMON_DIR": true, "GIT_CONFIG": true,
		"GIT_DIR": true, "GIT_GRAFT_FILE": true, "GIT_IMPLICIT_WORK_TREE": true, "GIT_INDEX_FILE": true,
		"GIT_NO_REPLACE_OBJECTS": true, "GIT_OBJECT_DIRECTORY": true, "GIT_PREFIX": true,
		"GIT_REPLACE_REF_BASE": true, "GIT_SHALLOW_FILE": true, "GIT_WORK_TREE": true,
	}
	env := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !local[k] && k != "GIT_TERMINAL_PROMPT" {
			env = append(env, kv)
		}
	}
	return append(env, "GIT_TERMINAL_PROMPT=0")
}

func isFullSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// quoteConfig quotes a git config value.
func quoteConfig(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\t", `\t`).Replace(s) + `"`
}

// redactURL hides a password in a URL's user info.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
