package vcsarg

import (
	"os/exec"
	"strings"
	"testing"
)

// TestRefAgreesWithGit holds Ref against git check-ref-format itself on
// names of every rule, full and one-level. Ref also refuses a leading '-'
// that git would read as an option.
func TestRefAgreesWithGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is required")
	}
	names := []string{
		"main", "refs/heads/main", "release/1.2", "refs/tags/v1.0.0", "feature/a-b_c", "refs/heads/-x",
		"a..b", "a/.b", ".a", "a.", "a.lock", "a/b.lock/c", "a//b", "/a", "a/", "a b", "a~1", "a^", "a:b",
		"a?", "a*", "a[", `a\b`, "a@{1}", "@", "a@b", "héllo", "a\x01", "a\x7f", "refs/heads/@", "x/@/y",
		"refs/heads/a.b", "v1.0.0-rc.1", "a/..", "..", ".", "",
	}
	for _, n := range names {
		if strings.HasPrefix(n, "-") {
			continue
		}
		gitOK := exec.Command("git", "check-ref-format", "--allow-onelevel", n).Run() == nil
		ours := Ref(n) == nil
		if gitOK != ours {
			t.Errorf("Ref(%q) ok=%v, git check-ref-format ok=%v (err %v)", n, ours, gitOK, Ref(n))
		}
	}
	for _, n := range []string{"-x", "--upload-pack=touch /tmp/x", "--end-of-options"} {
		if err := Ref(n); err == nil || !strings.Contains(err.Error(), "starts with '-'") {
			t.Errorf("Ref(%q) = %v, want a leading '-' refused", n, err)
		}
	}
}

func TestCommit(t *testing.T) {
	ok := []string{strings.Repeat("a", 40), strings.Repeat("0123456789abcdef", 4), strings.Repeat("A", 40)}
	for _, c := range ok {
		if err := Commit(c); err != nil {
			t.Errorf("Commit(%q) = %v", c, err)
		}
	}
	for c, want := range map[string]string{
		"--upload-pack=touch /tmp/pwned;git-upload-pack": "full id of 40 or 64",
		strings.Repeat("g", 40):                          "not hexadecimal",
		strings.Repeat("a", 41):                          "got 41 characters",
		"":                                               "got 0 characters",
	} {
		if err := Commit(c); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Commit(%q) = %v, want %q", c, err, want)
		}
	}
	if err := CommitOrPrefix("abcdef012345"); err != nil {
		t.Errorf("CommitOrPrefix(12 digits, as Bitbucket Cloud sends) = %v", err)
	}
	for _, c := range []string{"abc", "-abcdef0", "abcdefg"} {
		if CommitOrPrefix(c) == nil {
			t.Errorf("CommitOrPrefix(%q) accepted", c)
		}
	}
}

func TestTransport(t *testing.T) {
	for _, c := range []struct{ vcs, url, want string }{
		{"git", "https://git.example/a/b.git", HTTPS},
		{"git", "http://git.example/a/b.git", HTTP},
		{"git", "ssh://git@git.example:22/a/b.git", SSH},
		{"git", "git+ssh://git.example/a/b", SSH},
		{"git", "git@git.example:a/b.git", SSH},
		{"git", "git://git.example/a/b.git", Git},
		{"git", "/srv/git/a.git", File},
		{"git", "file:///srv/git/a.git", File},
		{"git", "./a", File},
		{"git", "a/b", File},
		{"hg", "https://hg.example/a", HTTPS},
		{"hg", "ssh://hg@hg.example/a", SSH},
		{"hg", "/srv/hg/a", File},
		{"hg", "file:/srv/hg/a", File},
	} {
		got, err := Transport(c.vcs, c.url)
		if err != nil || got != c.want {
			t.Errorf("Transport(%s, %q) = %q, %v; want %q", c.vcs, c.url, got, err, c.want)
		}
	}
	for _, c := range []struct{ vcs, url, want string }{
		{"git", "--upload-pack=touch /tmp/x;git-upload-pack", "starts with '-'"},
		{"git", "-u", "starts with '-'"},
		{"git", "ext::sh -c touch% /tmp/x", `remote helper "ext"`},
		{"git", "fd::3", `remote helper "fd"`},
		{"git", "ssh://-oProxyCommand=x/a", "starts with '-'"},
		{"git", "ssh://-u@host/a", "starts with '-'"},
		{"git", "-oProxyCommand=x:a", "starts with '-'"},
		{"git", "gopher://h/a", `unknown transport "gopher"`},
		{"git", "https:///a", "no host"},
		{"git", "file://otherhost/a", "a path on this machine"},
		{"git", "https://h/a\nb", "control character"},
		{"git", "", "empty"},
		{"hg", "--config=hooks.pre-pull=touch /tmp/x", "starts with '-'"},
		{"hg", "bundle:/tmp/x", `unknown transport "bundle"`},
		{"hg", "git://h/a", "no git://"},
		{"hg", "ssh://-oProxyCommand=x/a", "starts with '-'"},
	} {
		if _, err := Transport(c.vcs, c.url); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Transport(%s, %q) = %v, want an error with %q", c.vcs, c.url, err, c.want)
		}
	}
	if _, err := Transport("git", "https://user:s3cret@h/a\x00"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %v shows the password", err)
	}
}

func TestTransports(t *testing.T) {
	def := MustTransports(DefaultTransports)
	if err := def.CloneURL("git", "/srv/a.git"); err == nil || !strings.Contains(err.Error(), "add file to --allowed-transports") {
		t.Errorf("default transports and a local path: %v", err)
	}
	if err := def.CloneURL("git", "https://h/a"); err != nil {
		t.Error(err)
	}
	if got := def.GitAllowProtocol(); got != "https:ssh:git" {
		t.Errorf("GIT_ALLOW_PROTOCOL = %q", got)
	}
	for s, want := range map[string]string{"https,ext": `unknown transport "ext"`, " , ": "no transport allowed"} {
		if _, err := ParseTransports(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTransports(%q) = %v, want %q", s, err, want)
		}
	}
	withFile := MustTransports("https, FILE,https")
	if withFile.String() != "https,file" || withFile.CloneURL("git", "/srv/a.git") != nil {
		t.Errorf("ParseTransports(\"https, FILE,https\") = %v", withFile)
	}
}
