//go:build unix

package backend

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func requireHg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("hg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("hg (Mercurial) is not installed; CI installs it with apt-get install -y mercurial")
		}
		t.Skip("hg (Mercurial) is not installed: apt-get install mercurial to run the Mercurial tests")
	}
}

// TestPrepareHg checks out a Mercurial changeset that is not a head, and a
// draft changeset, and refuses what it cannot check out with the URL and
// changeset in the error.
func TestPrepareHg(t *testing.T) {
	requireHg(t)
	src := t.TempDir()
	hg := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("hg", append([]string{"--cwd", src}, args...)...)
		cmd.Env = append(os.Environ(), "HGPLAIN=1", "HGUSER=t <t@t.invalid>", "HGRCPATH=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("hg %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	hg("init")
	if err := os.WriteFile(filepath.Join(src, "v.txt"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hg("commit", "-A", "-q", "-m", "one")
	first := hg("log", "-r", ".", "-T", "{node}")
	if err := os.WriteFile(filepath.Join(src, "v.txt"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hg("commit", "-q", "-m", "two")

	p := NewProcess(ProcessConfig{WorkRoot: t.TempDir()})
	ctx := context.Background()
	ws, err := p.Prepare(ctx, JobSpec{ID: "j1", VCS: "hg", CloneURL: src, Commit: first})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Destroy(ws)
	var lines []string
	out, err := p.RunStep(ctx, ws, Step{Name: "show", Commands: []string{"cat v.txt", "hg id -i --debug"}}, func(l Line) { lines = append(lines, l.Text) })
	if err != nil || out.ExitCode != 0 {
		t.Fatalf("step: %+v %v %v", out, err, lines)
	}
	if len(lines) != 2 || lines[0] != "one" || lines[1] != first {
		t.Errorf("workspace shows %q, want the first changeset %s", lines, first)
	}

	missing := strings.Repeat("ab", 20)
	if _, err := p.Prepare(ctx, JobSpec{ID: "j2", VCS: "hg", CloneURL: src, Commit: missing}); err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), src) {
		t.Errorf("missing changeset: %v", err)
	}
	if _, err := p.Prepare(ctx, JobSpec{ID: "j3", VCS: "svn", CloneURL: src, Commit: first}); err == nil || !strings.Contains(err.Error(), `"svn"`) {
		t.Errorf("unknown VCS: %v", err)
	}
	entries, _ := os.ReadDir(p.workRoot)
	if len(entries) != 1 {
		t.Errorf("failed prepares left %d workspaces behind", len(entries)-1)
	}
}
