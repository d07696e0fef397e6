package version

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireHg skips without Mercurial, except in CI where it must be there.
func requireHg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("hg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("hg (Mercurial) is not installed; CI installs it with apt-get install -y mercurial")
		}
		t.Skip("hg (Mercurial) is not installed: apt-get install mercurial to run the Mercurial tests")
	}
}

type hgRepo struct {
	t   *testing.T
	dir string
}

func (r hgRepo) hg(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("hg", append([]string{"--cwd", r.dir}, args...)...)
	cmd.Env = append(os.Environ(), "HGPLAIN=1", "HGUSER=t <t@t.invalid>", "HGRCPATH=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("hg %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r hgRepo) commit(name string) string {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, name), []byte(name), 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.hg("commit", "-A", "-q", "-m", "add "+name)
	return r.hg("log", "-r", ".", "-T", "{node}")
}

func TestComputeHg(t *testing.T) {
	requireHg(t)
	ctx := context.Background()
	r := hgRepo{t: t, dir: t.TempDir()}
	r.hg("init")
	first := r.commit("a")
	second := r.commit("b")
	v, err := ComputeHg(ctx, r.dir, second, "")
	if want := "0.0.1-dev.2+h" + second[:12]; err != nil || v != want {
		t.Errorf("no tag: %q, %v; want %q", v, err, want)
	}
	r.hg("tag", "-r", first, "v1.4.0")
	tagCommit := r.hg("log", "-r", ".", "-T", "{node}")
	third := r.commit("c")
	cases := []struct{ name, node, tag, want string }{
		{"tag build", first, "v1.4.0", "1.4.0"},
		{"tag build with refs/tags/", first, "refs/tags/v1.4.0", "1.4.0"},
		{"the tagged changeset pushed", first, "", "1.4.1-dev.0+h" + first[:12]},
		{"the commit hg tag made", tagCommit, "", "1.4.1-dev.2+h" + tagCommit[:12]},
		{"after the tag", third, "", "1.4.1-dev.3+h" + third[:12]},
		{"a tag that is not semver builds like a commit", third, "latest", "1.4.1-dev.3+h" + third[:12]},
	}
	for _, c := range cases {
		v, err := ComputeHg(ctx, r.dir, c.node, c.tag)
		if err != nil || v != c.want {
			t.Errorf("%s: %q, %v; want %q", c.name, v, err, c.want)
		}
	}
	// A prerelease and a non-SemVer tag on newer changesets; two SemVer tags
	// on one changeset: the highest wins.
	r.hg("tag", "-r", third, "2.0.0-rc.1")
	r.hg("tag", "-r", third, "2.0.0-beta.2")
	r.hg("tag", "-r", third, "v1.2.3.4")
	fourth := r.commit("d")
	if v, err := ComputeHg(ctx, r.dir, fourth, ""); err != nil || v != "2.0.0-rc.1.dev.4+h"+fourth[:12] {
		t.Errorf("after a prerelease: %q, %v", v, err)
	}
	if _, err := ComputeHg(ctx, r.dir, fourth, "v1.4.0"); err == nil || !strings.Contains(err.Error(), "names "+first) {
		t.Errorf("tag of another changeset: %v", err)
	}
	if _, err := ComputeHg(ctx, r.dir, fourth, "v9.9.9"); err == nil || !strings.Contains(err.Error(), "not in the repository") {
		t.Errorf("missing tag: %v", err)
	}
	if _, err := ComputeHg(ctx, r.dir, "-r", ""); err == nil {
		t.Error("option as changeset accepted")
	}
	if _, err := ComputeHg(ctx, r.dir, strings.Repeat("0", 39)+"1", ""); err == nil {
		t.Error("unknown changeset accepted")
	}
}

func TestFromTagDistance(t *testing.T) {
	for _, c := range []struct {
		tag      string
		n, count int
		want     string
	}{
		{"v1.2.3", 5, 0, "1.2.4-dev.5+hx"},
		{"1.0.0-alpha", 1, 0, "1.0.0-alpha.dev.1+hx"},
		{"", 0, 7, "0.0.1-dev.7+hx"},
	} {
		if v, err := FromTagDistance(c.tag, c.n, c.count, "hx"); err != nil || v != c.want {
			t.Errorf("%+v: %q, %v", c, v, err)
		}
	}
	for _, tag := range []string{"v1.2", "1.2.18446744073709551615"} {
		if _, err := FromTagDistance(tag, 1, 0, "hx"); err == nil {
			t.Errorf("%q accepted", tag)
		}
	}
	if _, err := FromTagDistance("", 0, 0, "hx"); err == nil {
		t.Error("no tag and no ancestors accepted")
	}
}
