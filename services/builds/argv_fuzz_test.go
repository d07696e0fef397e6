package builds

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/shiploop/shiploop/pkg/vcsarg"
	"github.com/shiploop/shiploop/services/builds/forge"
)

var argvForges = []string{forge.GitHub, forge.GitLab, forge.Gitea, forge.Forgejo, forge.Bitbucket, forge.Generic}

// optionFree checks that in argv no value that came from outside can be
// read as an option: before end (git's --end-of-options, hg's --) every
// argument is either one of ours (in fixed) or the value of a flag that
// takes one (in valued, e.g. hg's -r), and such a value never starts with
// '-'. After end anything goes: git and hg read it as a positional argument.
func optionFree(argv []string, end string, fixed, valued []string) string {
	i := slices.Index(argv, end)
	if i < 0 {
		return "no " + end + " in " + strings.Join(argv, " ")
	}
	for j := 0; j < i; j++ {
		a := argv[j]
		switch {
		case slices.Contains(valued, a):
			if j+1 >= i || strings.HasPrefix(argv[j+1], "-") {
				return "the value of " + a + " is missing or starts with '-'"
			}
			j++
		case !slices.Contains(fixed, a):
			return "argument " + a + " before " + end + " is not one of ours"
		}
	}
	return ""
}

// FuzzWebhookArgv: a webhook payload, through the forge parsers and the
// checks the hook handler makes, into the git and hg command lines builds
// runs with it. Whatever the payload, a value it carries never stands where
// git or hg would read an option, and a value the checks let through is
// no option either.
func FuzzWebhookArgv(f *testing.F) {
	sha := strings.Repeat("ab", 20)
	f.Add(uint8(5), false, "", []byte(`{"repository":"a/b","ref":"refs/heads/main","commit":"`+sha+`"}`))
	f.Add(uint8(5), false, "", []byte(`{"repository":"a/b","ref":"refs/heads/main","commit":"--upload-pack=touch /tmp/pwned;git-upload-pack"}`))
	f.Add(uint8(5), true, "", []byte(`{"repository":"a/b","ref":"refs/heads/default","commit":"--config=hooks.pre-pull=touch /tmp/pwned"}`))
	f.Add(uint8(5), false, "", []byte(`{"repository":"a/b","ref":"refs/heads/-x","commit":"`+sha+`","clone_url":"ext::sh -c touch% /tmp/pwned"}`))
	f.Add(uint8(0), false, "push", []byte(`{"ref":"refs/heads/main","before":"`+sha+`","after":"--upload-pack=x","repository":{"full_name":"a/b","clone_url":"--upload-pack=y"}}`))
	f.Add(uint8(1), false, "Push Hook", []byte(`{"object_kind":"push","ref":"refs/heads/x","after":"`+sha+`","checkout_sha":"`+sha+`","project":{"path_with_namespace":"a/b","git_http_url":"-x"}}`))
	f.Add(uint8(4), false, "repo:push", []byte(`{"repository":{"full_name":"a/b"},"push":{"changes":[{"new":{"type":"branch","name":"-m","target":{"hash":"-abc"}},"old":null}]}}`))

	f.Fuzz(func(t *testing.T, forgeIndex uint8, isHg bool, event string, body []byte) {
		name := argvForges[int(forgeIndex)%len(argvForges)]
		h := http.Header{"Content-Type": {"application/json"}}
		for _, k := range []string{"X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event", "X-Forgejo-Event", "X-Event-Key"} {
			h.Set(k, event)
		}
		changes, err := forge.ParseAll(name, h, body)
		if err != nil {
			return
		}
		vcs := VCSGit
		if isHg {
			vcs = VCSHg
		}
		all := vcsarg.MustTransports(strings.Join(vcsarg.AllTransports, ","))
		for _, ch := range changes {
			if err := checkChangeArgs(vcs, ch); err != nil {
				continue
			}
			// A payload's clone URL is never cloned (the registered one
			// is), but it must not pass as one when it is an option.
			if all.CloneURL(vcs, ch.CloneUrl) == nil && strings.HasPrefix(ch.CloneUrl, "-") {
				t.Fatalf("clone URL %q passed the check", ch.CloneUrl)
			}
			for _, v := range []string{ch.After, ch.Before, ch.Ref, ch.Branch, ch.Tag, ch.BaseRef, ch.BaseSha} {
				if strings.HasPrefix(v, "-") {
					t.Fatalf("%q starts with '-' and passed checkChangeArgs", v)
				}
			}
			url := ch.CloneUrl
			if all.CloneURL(vcs, url) != nil {
				url = "https://git.example/a/b.git"
			}
			commit := ch.After
			if commit == "" {
				continue
			}
			if vcs == VCSGit {
				argvs := [][]string{fetchAllArgs(url), fetchCommitArgs(url, commit)}
				if ch.Ref != "" {
					argvs = append(argvs, fetchRefArgs(url, ch.Ref))
				}
				for _, argv := range argvs {
					if why := optionFree(argv, "--end-of-options", []string{"fetch", "--quiet", "--prune", "--force"}, nil); why != "" {
						t.Fatal(why)
					}
				}
			} else {
				for _, argv := range [][]string{hgPullArgs(url, ""), hgPullArgs(url, commit)} {
					if why := optionFree(argv, "--", []string{"pull", "--quiet"}, []string{"-r"}); why != "" {
						t.Fatal(why)
					}
				}
			}
			// The cat-file process reads one question a line: nothing the
			// payload names may start a second one.
			if err := checkObjectName(commit, ":"+ConfigFile); err == nil && strings.ContainsAny(commit, "\n\r\x00 ") {
				t.Fatalf("commit %q passed checkObjectName", commit)
			}
		}
	})
}
