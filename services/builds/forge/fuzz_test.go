package forge

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

var fuzzForges = []string{GitHub, GitLab, Gitea, Forgejo, Bitbucket, Generic}

// FuzzParse checks that Parse never panics and always returns either a
// usable change or an ErrIgnored / *BadRequestError, and that Verify never
// accepts an unsigned delivery.
func FuzzParse(f *testing.F) {
	seeds := []struct {
		forge uint8
		event string
		file  string
	}{
		{0, "push", "github/woodpecker_push_branch.json"},
		{0, "pull_request", "github/woodpecker_pull_request_opened.json"},
		{0, "create", "github/octokit_create_tag.json"},
		{1, "Merge Request Hook", "gitlab/woodpecker_merge_request_update.json"},
		{1, "Tag Push Hook", "gitlab/woodpecker_tag_push.json"},
		{2, "push", "gitea/woodpecker_push_multi-commit.json"},
		{3, "pull_request", "forgejo/woodpecker_pull_request_synchronized.json"},
		{4, "repo:push", "bitbucket-cloud/woodpecker_repo_push.json"},
		{4, "pr:merged", "bitbucket-datacenter/woodpecker_pr_merged.json"},
		{4, "repo:refs_changed", "bitbucket-datacenter/woodpecker_repo_refs_changed.json"},
	}
	for _, s := range seeds {
		f.Add(s.forge, s.event, "application/json", readFixture(f, s.file))
	}
	f.Add(uint8(5), "", "", []byte(`{"repository":"a/b","ref":"refs/tags/v1","commit":"abc"}`))
	f.Add(uint8(0), "push", "application/x-www-form-urlencoded", []byte(`payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D`))
	f.Add(uint8(4), "repo:push", "", []byte(`{"repository":{"full_name":"a/b"},"push":{"changes":[{"new":null,"old":null}]}}`))
	f.Add(uint8(1), "", "", []byte(`{"object_kind":"push","ref":"refs/heads/x","after":"0"}`))

	f.Fuzz(func(t *testing.T, forgeIndex uint8, event, contentType string, body []byte) {
		forge := fuzzForges[int(forgeIndex)%len(fuzzForges)]
		h := http.Header{}
		for _, name := range []string{"X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event", "X-Forgejo-Event", "X-Event-Key"} {
			h.Set(name, event)
		}
		h.Set("Content-Type", contentType)

		changes, err := ParseAll(forge, h, body)
		if err != nil {
			var bad *BadRequestError
			if changes != nil || !errors.Is(err, ErrIgnored) && !errors.As(err, &bad) {
				t.Fatalf("ParseAll = %v, %v; want nil and ErrIgnored or *BadRequestError", changes, err)
			}
		} else {
			if len(changes) == 0 {
				t.Fatal("ParseAll returned no change and no error")
			}
			for _, c := range changes {
				if c.Kind == eventsv1.ChangeKind_CHANGE_KIND_UNSPECIFIED || c.Repository == "" || c.Forge != forge {
					t.Fatalf("incomplete change: %v", c)
				}
				if !strings.HasPrefix(c.Ref, "refs/heads/") && !strings.HasPrefix(c.Ref, "refs/tags/") {
					t.Fatalf("Ref %q is not a branch or tag ref", c.Ref)
				}
				if c.Branch == "" && c.Tag == "" {
					t.Fatalf("Ref %q gave neither Branch nor Tag", c.Ref)
				}
			}
		}
		if err := Verify(forge, h, body, testSecret); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Verify of an unsigned delivery = %v, want ErrUnauthorized", err)
		}
	})
}
