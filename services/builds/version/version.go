// Package version gives every build a unique, SemVer 2.0.0 version computed
// from git, in the spirit of setuptools-scm and Go pseudo-versions:
//
//	tag build of v1.4.0                 -> 1.4.0
//	3 commits after v1.4.0              -> 1.4.1-dev.3+gebcd98c
//	2 commits after 2.0.0-rc.1          -> 2.0.0-rc.1.dev.2+g1a2b3c4
//	no semver tag, 12 commits reachable -> 0.0.1-dev.12+g0599820
//
// A development version sorts after the tag it descends from and before the
// next release: 1.4.0 < 1.4.1-dev.3 < 1.4.1, and after a prerelease
// 2.0.0-rc.1 < 2.0.0-rc.1.dev.2 < 2.0.0-rc.2 < 2.0.0 (SemVer compares
// prerelease identifiers field by field and a longer list sorts after its
// prefix). The "+g<sha>" build metadata keeps versions of different commits
// with the same distance apart; SemVer ignores it for ordering, so two
// branches the same distance from a tag share a precedence but never a
// string.
//
// The base is the highest SemVer tag reachable from the commit (not the
// nearest, as git describe would take), and the distance counts the commits
// reachable from the commit but not from that tag. So versions are
// monotonic along a repository's history: a commit's version is higher than
// every ancestor's, merges included (a merged maintenance tag v1.9.5 does
// not pull a main branch past v2.0.0 back down). The one exception is a
// prerelease tag whose first identifier sorts before "dev" (1.4.1-alpha.1
// after 1.4.0): development versions after 1.4.0 are 1.4.1-dev.N, which
// SemVer orders above 1.4.1-alpha.1.
//
// Tags count when they are SemVer versions with an optional "v" and no
// build metadata: v1.2.3, 1.2.3, v2.0.0-rc.1. Others ("latest",
// "release-foo", "v1.2", "v1.2.3.4") are ignored. Versions need the full
// history: a shallow clone gives ErrShallow.
package version

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// ErrShallow is returned for a shallow repository: commit counts there are
// wrong, so versions would not be unique. Fetch the full history and tags
// (git fetch --unshallow --tags) and try again.
var ErrShallow = errors.New("shallow repository: versions need the full history and tags")

// semverTag matches a SemVer 2.0.0 version without build metadata, with an
// optional leading "v" (the regular expression from semver.org).
var semverTag = regexp.MustCompile(`^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)` +
	`(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?$`)

// FromTag returns the version a tag stands for ("v1.4.0" -> "1.4.0") and
// whether the tag is a SemVer version at all.
func FromTag(tag string) (string, bool) {
	if !semverTag.MatchString(tag) {
		return "", false
	}
	return strings.TrimPrefix(tag, "v"), true
}

var (
	describeLong = regexp.MustCompile(`^(.+)-(0|[1-9][0-9]*)-g([0-9a-f]{4,64})$`)
	describeHash = regexp.MustCompile(`^[0-9a-f]{4,64}$`)
)

// FromDescribe turns the output of
//
//	git describe --tags --long --always
//
// into a version. describe is "<tag>-<N>-g<sha>" (N commits after a SemVer
// tag) or, when no tag is reachable, just the abbreviated "<sha>"; count is
// then the number of commits reachable from the commit (git rev-list
// --count) and is otherwise unused.
func FromDescribe(describe string, count int) (string, error) {
	describe = strings.TrimSpace(describe)
	if m := describeLong.FindStringSubmatch(describe); m != nil {
		tag, n, sha := m[1], m[2], m[3]
		v, ok := FromTag(tag)
		if !ok {
			return "", fmt.Errorf("describe %q: tag %q is not a semver version", describe, tag)
		}
		core, pre, isPre := strings.Cut(v, "-")
		if isPre {
			return fmt.Sprintf("%s-%s.dev.%s+g%s", core, pre, n, sha), nil
		}
		parts := strings.Split(core, ".")
		patch, err := strconv.ParseUint(parts[2], 10, 64)
		if err != nil || patch == ^uint64(0) {
			return "", fmt.Errorf("describe %q: patch version %s is too large", describe, parts[2])
		}
		return fmt.Sprintf("%s.%s.%d-dev.%s+g%s", parts[0], parts[1], patch+1, n, sha), nil
	}
	if describeHash.MatchString(describe) {
		if count < 1 {
			return "", fmt.Errorf("describe %q has no tag and the commit count is %d", describe, count)
		}
		return fmt.Sprintf("0.0.1-dev.%d+g%s", count, describe), nil
	}
	return "", fmt.Errorf("unrecognised git describe output %q", describe)
}

// Compute returns the version of commit in the git repository at gitDir
// (bare or with a work tree), using the git command.
//
// tag is the tag being built for a tag push, else empty; "refs/tags/" in
// front of it is allowed. A SemVer tag must point at commit and gives its
// version exactly; a tag that is not SemVer builds like any other commit.
// Otherwise the version comes from the highest SemVer tag reachable from
// commit and the number of commits since it, as described in the package
// comment.
func Compute(ctx context.Context, gitDir, commit, tag string) (string, error) {
	if commit == "" || strings.HasPrefix(commit, "-") {
		return "", fmt.Errorf("version: invalid commit %q", commit)
	}
	g := git{dir: gitDir}
	// A full SHA needs no resolving: git describe below fails for one that
	// is not in the repository. Each git process costs milliseconds on
	// the webhook-to-build path.
	sha := commit
	if !fullSHA.MatchString(commit) {
		var err error
		if sha, err = g.run(ctx, "rev-parse", "--verify", "--end-of-options", commit+"^{commit}"); err != nil {
			return "", fmt.Errorf("version: resolve commit %s: %w", commit, err)
		}
	}
	if name := strings.TrimPrefix(tag, "refs/tags/"); name != "" {
		if v, ok := FromTag(name); ok {
			tags, err := g.tags(ctx)
			if err != nil {
				return "", fmt.Errorf("version: list tags for commit %s: %w", commit, err)
			}
			target, found := tags[name]
			switch {
			case !found:
				return "", fmt.Errorf("version: tag %s for commit %s is not in the repository", name, commit)
			case target != sha:
				return "", fmt.Errorf("version: tag %s points at %s, not at commit %s", name, target, commit)
			}
			return v, nil
		}
	}

	if isShallow(gitDir) {
		return "", fmt.Errorf("version: commit %s: %w", commit, ErrShallow)
	}

	// The highest SemVer tag reachable from the commit (not git describe's
	// nearest one): a descendant reaches every tag its ancestors reach, so
	// its version is never lower than theirs, even after merging an older
	// maintenance tag.
	reachable, err := g.tags(ctx, "--merged="+sha)
	if err != nil {
		if strings.Contains(err.Error(), "must point to a commit") {
			return "", fmt.Errorf("version: commit %s is not in the repository (fetch it first)", commit)
		}
		return "", fmt.Errorf("version: list tags reachable from commit %s: %w", commit, err)
	}
	best := ""
	for name := range reachable {
		if _, ok := FromTag(name); ok && (best == "" || compare(name, best) > 0 || compare(name, best) == 0 && name < best) {
			best = name
		}
	}
	rng := sha
	if best != "" {
		rng = reachable[best] + ".." + sha
	}
	n, err := g.run(ctx, "rev-list", "--count", "--end-of-options", rng)
	if err != nil {
		return "", fmt.Errorf("version: count commits of %s: %w", commit, err)
	}
	count, err := strconv.Atoi(n)
	if err != nil {
		return "", fmt.Errorf("version: count commits of %s: unexpected output %q", commit, n)
	}
	desc := sha[:7]
	if best != "" {
		desc = fmt.Sprintf("%s-%d-g%s", best, count, sha[:7])
	}
	v, err := FromDescribe(desc, count)
	if err != nil {
		return "", fmt.Errorf("version: commit %s: %w", commit, err)
	}
	return v, nil
}

// git runs git commands in one repository.
type git struct{ dir string }

// run returns the trimmed standard output, or an error carrying git's
// standard error.
func (g git) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", g.dir}, args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "GIT_TERMINAL_PROMPT=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return "", fmt.Errorf("git %s: %w", args[0], err)
		}
		return "", fmt.Errorf("git %s: %w: %s", args[0], err, msg)
	}
	return strings.TrimSpace(stdout.String()), nil
}

// tags maps every tag name (those the filters keep, e.g. --merged=<sha>)
// to the commit it points at (annotated tags peeled). Tags of other objects
// (trees, blobs) are left out.
func (g git) tags(ctx context.Context, filters ...string) (map[string]string, error) {
	args := append([]string{"for-each-ref", "--format=%(refname:strip=2) %(objecttype) %(objectname) %(*objecttype) %(*objectname)"}, filters...)
	out, err := g.run(ctx, append(args, "refs/tags")...)
	if err != nil {
		return nil, err
	}
	tags := map[string]string{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[1] == "commit":
			tags[f[0]] = f[2]
		case len(f) == 5 && f[3] == "commit":
			tags[f[0]] = f[4]
		}
	}
	return tags, nil
}

var fullSHA = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// isShallow reports whether the repository at dir (bare, or a work tree) is
// a shallow clone: git keeps the list of its grafted commits in "shallow".
func isShallow(dir string) bool {
	for _, p := range []string{filepath.Join(dir, "shallow"), filepath.Join(dir, ".git", "shallow")} {
		if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
			return true
		}
	}
	return false
}
