package version

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFromDescribe(t *testing.T) {
	for _, tc := range []struct {
		describe string
		count    int
		want     string
		err      string
	}{
		{describe: "v1.4.0-3-gebcd98c", want: "1.4.1-dev.3+gebcd98c"},
		{describe: "1.4.0-3-gebcd98c", want: "1.4.1-dev.3+gebcd98c"},
		{describe: "v1.4.0-0-gebcd98c", want: "1.4.1-dev.0+gebcd98c"},
		{describe: "v0.9.19-120-g0123456789ab\n", want: "0.9.20-dev.120+g0123456789ab"},
		{describe: "v2.0.0-rc.1-3-gebcd98c", want: "2.0.0-rc.1.dev.3+gebcd98c"},
		{describe: "2.0.0-beta-1-gebcd98c", want: "2.0.0-beta.dev.1+gebcd98c"},
		{describe: "v1.0.0-x-y-z.1-7-gabcdef0", want: "1.0.0-x-y-z.1.dev.7+gabcdef0"},
		{describe: "ebcd98c", count: 12, want: "0.0.1-dev.12+gebcd98c"},
		{describe: "ebcd98c", count: 0, err: `describe "ebcd98c" has no tag and the commit count is 0`},
		{describe: "latest-3-gebcd98c", err: `describe "latest-3-gebcd98c": tag "latest" is not a semver version`},
		{describe: "v1.2-3-gebcd98c", err: `describe "v1.2-3-gebcd98c": tag "v1.2" is not a semver version`},
		{describe: "v1.2.3+build-3-gebcd98c", err: `describe "v1.2.3+build-3-gebcd98c": tag "v1.2.3+build" is not a semver version`},
		{describe: "v1.2.18446744073709551615-1-gebcd98c", err: `describe "v1.2.18446744073709551615-1-gebcd98c": patch version 18446744073709551615 is too large`},
		{describe: "v1.4.0-3-gebcd98c-dirty", err: `unrecognised git describe output "v1.4.0-3-gebcd98c-dirty"`},
		{describe: "", err: `unrecognised git describe output ""`},
		{describe: "v1.4.0", err: `unrecognised git describe output "v1.4.0"`},
	} {
		got, err := FromDescribe(tc.describe, tc.count)
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("FromDescribe(%q, %d) error = %v, want %q", tc.describe, tc.count, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("FromDescribe(%q, %d) = %q, %v, want %q", tc.describe, tc.count, got, err, tc.want)
		}
	}
}

func TestFromTag(t *testing.T) {
	for _, tc := range []struct {
		tag, want string
		ok        bool
	}{
		{"v1.4.0", "1.4.0", true},
		{"2.0.0-rc.1", "2.0.0-rc.1", true},
		{"v0.0.0", "0.0.0", true},
		{"v1.0.0-alpha.beta-1.0", "1.0.0-alpha.beta-1.0", true},
		{"latest", "", false},
		{"release-foo", "", false},
		{"v1.2", "", false},
		{"v1.2.3.4", "", false},
		{"v01.2.3", "", false},
		{"v1.2.3-01", "", false},
		{"v1.2.3+meta", "", false},
		{"vv1.2.3", "", false},
		{"V1.2.3", "", false},
	} {
		got, ok := FromTag(tc.tag)
		if got != tc.want || ok != tc.ok {
			t.Errorf("FromTag(%q) = %q, %v, want %q, %v", tc.tag, got, ok, tc.want, tc.ok)
		}
	}
}

// TestOrdering checks the claims of the package comment with SemVer
// precedence.
func TestOrdering(t *testing.T) {
	ordered := []string{
		"0.0.1-dev.2+gaaaaaaa",
		"0.0.1-dev.10+gaaaaaaa",
		"1.4.0",
		"1.4.1-dev.0+gaaaaaaa",
		"1.4.1-dev.3+gaaaaaaa",
		"1.4.1-dev.12+gaaaaaaa",
		"1.4.1",
		"2.0.0-rc.1",
		"2.0.0-rc.1.dev.2+gaaaaaaa",
		"2.0.0-rc.1.dev.11+gaaaaaaa",
		"2.0.0-rc.2",
		"2.0.0",
		"10.0.0",
	}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := compare(ordered[i], ordered[j]); got != want {
				t.Errorf("compare(%s, %s) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	// The SemVer spec's own example order.
	spec := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"}
	if !slices.IsSortedFunc(spec, compare) {
		t.Errorf("SemVer spec example is not in order by compare")
	}
}

// repo is a git repository built commit by commit in a test, with fixed
// author, committer and dates so that commit hashes are the same on every
// run.
type repo struct {
	t   *testing.T
	dir string
	n   int // commits so far
}

func newRepo(t *testing.T) *repo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	t.Setenv("GIT_CONFIG_GLOBAL", "/dev/null")
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("GIT_AUTHOR_NAME", "Test Author")
	t.Setenv("GIT_AUTHOR_EMAIL", "author@example.com")
	t.Setenv("GIT_COMMITTER_NAME", "Test Committer")
	t.Setenv("GIT_COMMITTER_EMAIL", "committer@example.com")
	r := &repo{t: t, dir: filepath.Join(t.TempDir(), "repo")}
	r.git("init", "--quiet", "--object-format=sha1", "--initial-branch=main", r.dir)
	return r
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	if args[0] != "init" && args[0] != "clone" {
		cmd.Dir = r.dir
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit adds an empty commit with a date derived from its number and
// returns its full hash.
func (r *repo) commit() string {
	r.t.Helper()
	r.n++
	date := fmt.Sprintf("2026-01-01T00:%02d:00Z", r.n)
	r.t.Setenv("GIT_AUTHOR_DATE", date)
	r.t.Setenv("GIT_COMMITTER_DATE", date)
	r.git("commit", "--quiet", "--allow-empty", "-m", fmt.Sprintf("commit %d", r.n))
	return r.git("rev-parse", "HEAD")
}

func (r *repo) annotatedTag(name, commit string) {
	r.t.Helper()
	r.git("tag", "-a", "-m", "release "+name, name, commit)
}

func (r *repo) lightweightTag(name, commit string) {
	r.t.Helper()
	r.git("tag", name, commit)
}

func compute(t *testing.T, dir, commit, tag string) string {
	t.Helper()
	v, err := Compute(context.Background(), dir, commit, tag)
	if err != nil {
		t.Fatalf("Compute(%s, %q): %v", commit[:7], tag, err)
	}
	return v
}

func TestCompute(t *testing.T) {
	r := newRepo(t)
	// Fixed names and dates make the hashes the same on every run:
	// c1 2e4cfb2, c2 a4e31b9, c3 7dd7d1e, c4 3711f62, c5 ce16452,
	// c6 98d477f, c7 025a637, c8 16c5355, c9 a8e5b0e.
	c := []string{""} // c[i] is commit i
	for range 3 {
		c = append(c, r.commit())
	}
	check := func(dir, commit, tag, want string) {
		t.Helper()
		if got := compute(t, dir, commit, tag); got != want {
			t.Errorf("Compute(%s, %q) = %s, want %s", commit, tag, got, want)
		}
	}

	// No tags at all: count every commit.
	check(r.dir, c[3], "", "0.0.1-dev.3+g7dd7d1e")
	check(r.dir, c[1], "", "0.0.1-dev.1+g2e4cfb2")

	// Tags that are not SemVer are ignored, including ones a describe glob
	// would take.
	r.lightweightTag("latest", c[2])
	r.annotatedTag("release-foo", c[2])
	r.lightweightTag("v1.2.3.4", c[3])
	r.lightweightTag("1.2", c[3])
	r.lightweightTag("v01.2.3", c[3])
	check(r.dir, c[3], "", "0.0.1-dev.3+g7dd7d1e")
	// A tag build of a non-SemVer tag gets a development version.
	check(r.dir, c[2], "latest", "0.0.1-dev.2+ga4e31b9")

	// An annotated release tag: the tag build gets the version, the branch
	// build of the same commit a different, later one.
	r.annotatedTag("v1.4.0", c[3])
	check(r.dir, c[3], "v1.4.0", "1.4.0")
	check(r.dir, c[3], "refs/tags/v1.4.0", "1.4.0")
	check(r.dir, c[3], "", "1.4.1-dev.0+g7dd7d1e")

	for range 3 {
		c = append(c, r.commit())
	}
	check(r.dir, c[6], "", "1.4.1-dev.3+g98d477f")
	check(r.dir, "main", "", "1.4.1-dev.3+g98d477f")
	check(r.dir, c[4], "", "1.4.1-dev.1+g3711f62")

	// A lightweight prerelease tag without "v".
	r.lightweightTag("2.0.0-rc.1", c[6])
	check(r.dir, c[6], "2.0.0-rc.1", "2.0.0-rc.1")
	check(r.dir, c[6], "", "2.0.0-rc.1.dev.0+g98d477f")
	for range 2 {
		c = append(c, r.commit())
	}
	check(r.dir, c[8], "", "2.0.0-rc.1.dev.2+g16c5355")

	// Two tags on one commit: the higher version counts, whichever git
	// describe would pick (the annotated rc here).
	r.lightweightTag("v2.0.0", c[8])
	r.annotatedTag("v2.0.0-rc.2", c[8])
	c = append(c, r.commit())
	check(r.dir, c[9], "", "2.0.1-dev.1+ga8e5b0e")
	check(r.dir, c[8], "v2.0.0-rc.2", "2.0.0-rc.2")
	check(r.dir, c[8], "v2.0.0", "2.0.0")

	// The same answers from a bare clone.
	bare := filepath.Join(t.TempDir(), "bare.git")
	r.git("clone", "--quiet", "--bare", r.dir, bare)
	check(bare, c[9], "", "2.0.1-dev.1+ga8e5b0e")
	check(bare, c[6], "", "2.0.0-rc.1.dev.0+g98d477f")
	check(bare, c[5], "", "1.4.1-dev.2+gce16452")
	check(bare, c[3], "v1.4.0", "1.4.0")
	check(bare, c[1], "", "0.0.1-dev.1+g2e4cfb2")
}

func TestComputeErrors(t *testing.T) {
	r := newRepo(t)
	c1, c2 := r.commit(), r.commit()
	r.annotatedTag("v1.0.0", c1)
	ctx := context.Background()

	for _, tc := range []struct {
		name, dir, commit, tag string
		want                   []string // substrings of the error
	}{
		{"unknown commit", r.dir, "0123456789abcdef0123456789abcdef01234567", "",
			[]string{"commit 0123456789abcdef0123456789abcdef01234567 is not in the repository"}},
		{"option as commit", r.dir, "--all", "", []string{`invalid commit "--all"`}},
		{"tag on another commit", r.dir, c2, "v1.0.0",
			[]string{"tag v1.0.0 points at " + c1 + ", not at commit " + c2}},
		{"missing tag", r.dir, c2, "v9.9.9", []string{"tag v9.9.9 for commit " + c2 + " is not in the repository"}},
		{"not a repository", t.TempDir(), c1, "", []string{c1, "fatal: not a git repository"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compute(ctx, tc.dir, tc.commit, tc.tag)
			if err == nil {
				t.Fatal("Compute succeeded")
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestComputeShallow(t *testing.T) {
	r := newRepo(t)
	r.commit()
	r.annotatedTag("v1.0.0", r.commit())
	c3 := r.commit()
	shallow := filepath.Join(t.TempDir(), "shallow")
	r.git("clone", "--quiet", "--depth=1", "file://"+r.dir, shallow)
	_, err := Compute(context.Background(), shallow, c3, "")
	if !errors.Is(err, ErrShallow) {
		t.Errorf("Compute on a shallow clone: %v, want ErrShallow", err)
	}
}

func TestComputeCancelled(t *testing.T) {
	r := newRepo(t)
	c1 := r.commit()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Compute(ctx, r.dir, c1, ""); err == nil {
		t.Error("Compute with a cancelled context succeeded")
	}
}

// TestMonotonicAlongHistory: every commit's version is above its parents',
// through a feature branch, a merge, and a merged maintenance tag that is
// nearer than the main line's higher release.
func TestMonotonicAlongHistory(t *testing.T) {
	r := newRepo(t)
	c1 := r.commit()
	r.annotatedTag("v1.0.0", c1)
	c2 := r.commit()
	r.git("branch", "maint", c2)
	c3 := r.commit()
	r.annotatedTag("v2.0.0", c3)
	c4 := r.commit()
	r.git("checkout", "--quiet", "maint")
	m1, m2, m3 := r.commit(), r.commit(), r.commit()
	r.lightweightTag("v1.0.1", m3)
	r.git("checkout", "--quiet", "main")
	c5 := r.commit()
	r.git("merge", "--quiet", "--no-ff", "-m", "merge maint", "maint")
	merge := r.git("rev-parse", "HEAD")
	c6 := r.commit()

	parents := map[string][]string{c2: {c1}, c3: {c2}, c4: {c3}, m1: {c2}, m2: {m1}, m3: {m2}, c5: {c4}, merge: {c5, m3}, c6: {merge}}
	for child, ps := range parents {
		vc := compute(t, r.dir, child, "")
		for _, p := range ps {
			if vp := compute(t, r.dir, p, ""); compare(vc, vp) <= 0 {
				t.Errorf("version of %s (%s) is not above its parent %s's (%s)", child[:7], vc, p[:7], vp)
			}
		}
	}
	// git describe would take v1.0.1 for the merge: 4 commits away, v2.0.0 is 6.
	if d := r.git("describe", "--tags", merge); !strings.HasPrefix(d, "v1.0.1-") {
		t.Fatalf("git describe gives %s: the case no longer tests what it should", d)
	}
	if got, want := compute(t, r.dir, merge, ""), "2.0.1-dev.6+g"+merge[:7]; got != want {
		t.Errorf("merge of the maintenance branch: %s, want %s (from v2.0.0, the highest reachable)", got, want)
	}
}
