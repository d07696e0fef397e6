package builds

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/shiploop/shiploop/pkg/vcsarg"
	"github.com/shiploop/shiploop/services/builds/version"
)

// TestEnsureRefKeepsVersionsRight: a push fetches only its own ref, yet
// the version of its commit counts a tag made upstream since the mirror's
// last full fetch (git's tag auto-following), a tag push brings its tag,
// and the cat-file process sees commits fetched after it started.
func TestEnsureRefKeepsVersionsRight(t *testing.T) {
	ctx := context.Background()
	src, first := gitRepo(t, map[string]string{".shiploop.yml": "steps: []\n"})
	run := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t.invalid")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	branch := run("symbolic-ref", "HEAD")
	m := newMirrors(t.TempDir(), vcsarg.MustTransports("file"))
	dir, err := m.ensureRef(ctx, "acme/web", src, branch, first)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := m.readFile(dir, first, ".shiploop.yml"); err != nil || string(data) != "steps: []\n" {
		t.Fatalf("readFile = %q, %v", data, err)
	}
	// Upstream: v1.2.0 on the first commit (no webhook for it), then a
	// commit on the branch and one on another branch.
	run("tag", "-a", "-m", "release", "v1.2.0", first)
	run("commit", "--allow-empty", "-q", "-m", "second")
	second := run("rev-parse", "HEAD")
	run("checkout", "-q", "-b", "other")
	run("commit", "--allow-empty", "-q", "-m", "elsewhere")
	elsewhere := run("rev-parse", "HEAD")

	if ok, err := m.hasCommit(dir, second); err != nil || ok {
		t.Fatalf("hasCommit(second) before the push = %v, %v", ok, err)
	}
	if _, err := m.ensureRef(ctx, "acme/web", src, branch, second); err != nil {
		t.Fatal(err)
	}
	if ok, err := m.hasCommit(dir, second); err != nil || !ok {
		t.Fatalf("hasCommit(second) after the push = %v, %v", ok, err)
	}
	if ok, _ := m.hasCommit(dir, elsewhere); ok {
		t.Error("a push of one branch fetched another")
	}
	if v, err := version.Compute(ctx, dir, second, ""); err != nil || v != "1.2.1-dev.1+g"+second[:7] {
		t.Errorf("version of the pushed commit = %q, %v; want 1.2.1-dev.1+g%s (the tag made since the last full fetch counts)", v, err, second[:7])
	}
	// A tag push of a commit the mirror has not seen.
	run("tag", "v1.3.0", elsewhere)
	if _, err := m.ensureRef(ctx, "acme/web", src, "refs/tags/v1.3.0", elsewhere); err != nil {
		t.Fatal(err)
	}
	if v, err := version.Compute(ctx, dir, elsewhere, "v1.3.0"); err != nil || v != "1.3.0" {
		t.Errorf("version of the tag push = %q, %v; want 1.3.0", v, err)
	}
}
