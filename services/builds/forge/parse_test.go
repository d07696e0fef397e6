package forge

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

func headers(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// wantBadRequest asserts err is a *BadRequestError whose message contains
// every part.
func wantBadRequest(t *testing.T, c *eventsv1.Change, err error, parts ...string) {
	t.Helper()
	var bad *BadRequestError
	if !errors.As(err, &bad) || c != nil {
		t.Fatalf("got %v, %v; want nil, *BadRequestError", c, err)
	}
	for _, p := range parts {
		if !strings.Contains(bad.Msg, p) {
			t.Errorf("error %q does not contain %q", bad.Msg, p)
		}
	}
}

func TestParseMalformedJSON(t *testing.T) {
	h := headers("X-GitHub-Event", "push", "Content-Type", "application/json")
	c, err := Parse(GitHub, h, []byte(`{"ref": "refs/heads/main",}`))
	wantBadRequest(t, c, err, "parsing github push payload: invalid character '}'", "at offset 27")
}

func TestParseMalformedInput(t *testing.T) {
	tests := []struct {
		name   string
		forge  string
		header http.Header
		body   string
		parts  []string
	}{
		{"github missing event header", GitHub, headers(), `{}`,
			[]string{"missing X-GitHub-Event header"}},
		{"github push without repository", GitHub, headers("X-GitHub-Event", "push"),
			`{"ref":"refs/heads/main","after":"abc"}`,
			[]string{"github push payload: missing repository.full_name"}},
		{"github push without ref", GitHub, headers("X-GitHub-Event", "push"),
			`{"after":"abc","repository":{"full_name":"a/b"}}`,
			[]string{"github push payload: missing ref"}},
		{"github top-level array", GitHub, headers("X-GitHub-Event", "push"), `[1,2]`,
			[]string{"parsing github push payload", "want an object"}},
		{"github wrong field type", GitHub, headers("X-GitHub-Event", "pull_request"),
			`{"action":"opened","number":"seven"}`,
			[]string{"parsing github pull_request payload", "number is a JSON string, want int64"}},
		{"github pull request without head sha", GitHub, headers("X-GitHub-Event", "pull_request"),
			`{"action":"opened","number":7,"pull_request":{"head":{"ref":"x"}},"repository":{"full_name":"a/b"}}`,
			[]string{"missing pull_request.head.sha"}},
		{"github trailing garbage", GitHub, headers("X-GitHub-Event", "push"), `{} x`,
			[]string{"invalid character 'x' after top-level value"}},
		{"github ping that is not JSON", GitHub, headers("X-GitHub-Event", "ping"), `zen`,
			[]string{"parsing github ping payload"}},
		{"gitlab no header and no object_kind", GitLab, headers(), `{"ref":"refs/heads/main"}`,
			[]string{"missing X-Gitlab-Event header and object_kind"}},
		{"gitlab merge request without action", GitLab, headers("X-Gitlab-Event", "Merge Request Hook"),
			`{"object_attributes":{"iid":1}}`,
			[]string{"missing object_attributes.action"}},
		{"gitea missing event header", Gitea, headers("X-GitHub-Event", "push"), `{}`,
			[]string{"missing X-Gitea-Event header"}},
		{"forgejo missing event header", Forgejo, headers(), `{}`,
			[]string{"missing X-Forgejo-Event header"}},
		{"bitbucket missing event key", Bitbucket, headers(), `{}`,
			[]string{"missing X-Event-Key header"}},
		{"bitbucket push without repository", Bitbucket, headers("X-Event-Key", "repo:push"), `{"push":{}}`,
			[]string{"bitbucket repo:push payload: missing repository.full_name"}},
		{"generic bad JSON", Generic, headers(), `{"repository":`,
			[]string{"parsing generic payload", "unexpected EOF"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.forge, tt.header, []byte(tt.body))
			wantBadRequest(t, c, err, tt.parts...)
		})
	}
}

func TestParseEmptyBody(t *testing.T) {
	for _, forge := range []string{GitHub, GitLab, Gitea, Forgejo, Bitbucket, Generic} {
		for _, body := range []string{"", "  \n"} {
			h := headers("X-GitHub-Event", "push", "X-Gitlab-Event", "Push Hook", "X-Gitea-Event", "push",
				"X-Forgejo-Event", "push", "X-Event-Key", "repo:push", "Content-Type", "application/json")
			c, err := Parse(forge, h, []byte(body))
			wantBadRequest(t, c, err, forge+" delivery: empty body")
		}
	}
}

func TestParseUnknownForge(t *testing.T) {
	_, err := Parse("sourcehut", headers(), []byte(`{}`))
	if !errors.Is(err, ErrUnknownForge) {
		t.Fatalf("Parse = %v, want ErrUnknownForge", err)
	}
	if DeliveryID("sourcehut", headers("X-GitHub-Delivery", "x")) != "" {
		t.Error("DeliveryID of an unknown forge is not empty")
	}
}

func TestParseContentType(t *testing.T) {
	body := readFixture(t, "github/woodpecker_push_branch.json")
	form := []byte(url.Values{"payload": {string(body)}}.Encode())

	t.Run("form-encoded payload field", func(t *testing.T) {
		h := headers("X-GitHub-Event", "push", "Content-Type", "application/x-www-form-urlencoded")
		c, err := Parse(GitHub, h, form)
		if err != nil {
			t.Fatal(err)
		}
		if c.Kind != push || c.Repository != "woodpecker-ci/woodpecker" || !strings.HasPrefix(c.After, "366701fd") {
			t.Errorf("form-encoded push parsed as %v %s %s", c.Kind, c.Repository, c.After)
		}
		// GitHub signs the bytes it sends, i.e. the form.
		h.Set("X-Hub-Signature-256", "sha256="+hmacHex(testSecret, form))
		if err := Verify(GitHub, h, form, testSecret); err != nil {
			t.Errorf("Verify form body: %v", err)
		}
	})
	t.Run("form without payload", func(t *testing.T) {
		h := headers("X-GitHub-Event", "push", "Content-Type", "application/x-www-form-urlencoded")
		c, err := Parse(GitHub, h, []byte("other=1"))
		wantBadRequest(t, c, err, "form body has no payload field")
	})
	t.Run("form type with a JSON body, as curl -d sends", func(t *testing.T) {
		h := headers("Content-Type", "application/x-www-form-urlencoded")
		c, err := Parse(Generic, h, []byte(`{"repository":"a/b","ref":"refs/heads/main","commit":"abc"}`))
		if err != nil || c.Repository != "a/b" {
			t.Fatalf("Parse = %v, %v", c, err)
		}
	})
	t.Run("json with charset", func(t *testing.T) {
		h := headers("X-GitHub-Event", "push", "Content-Type", "application/json; charset=utf-8")
		if _, err := Parse(GitHub, h, body); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("no content type", func(t *testing.T) {
		if _, err := Parse(GitHub, headers("X-GitHub-Event", "push"), body); err != nil {
			t.Fatal(err)
		}
	})
	for _, ct := range []string{"text/xml", "multipart/form-data; boundary=x", "text/plain"} {
		t.Run("unsupported "+ct, func(t *testing.T) {
			h := headers("X-GitHub-Event", "push", "Content-Type", ct)
			c, err := Parse(GitHub, h, body)
			wantBadRequest(t, c, err, "unsupported Content-Type")
		})
	}
	t.Run("malformed content type", func(t *testing.T) {
		h := headers("X-GitHub-Event", "push", "Content-Type", "application/json; =")
		c, err := Parse(GitHub, h, body)
		wantBadRequest(t, c, err, "malformed Content-Type")
	})
}

func TestParseIgnored(t *testing.T) {
	tests := []struct {
		name   string
		forge  string
		header http.Header
		body   string
		reason string
	}{
		{"github labeled", GitHub, headers("X-GitHub-Event", "pull_request"),
			`{"action":"labeled","number":1}`, `pull_request action "labeled"`},
		{"github issue comment", GitHub, headers("X-GitHub-Event", "issue_comment"),
			`{"action":"created"}`, `"issue_comment" event`},
		{"github create branch", GitHub, headers("X-GitHub-Event", "create"),
			`{"ref":"feature","ref_type":"branch","repository":{"full_name":"a/b"}}`, "push event covers it"},
		{"github push to a note ref", GitHub, headers("X-GitHub-Event", "push"),
			`{"ref":"refs/notes/commits","after":"abc","repository":{"full_name":"a/b"}}`, "neither a branch nor a tag"},
		{"gitlab note hook", GitLab, headers("X-Gitlab-Event", "Note Hook"), `{"object_kind":"note"}`, `"Note Hook"`},
		{"gitlab approved", GitLab, headers("X-Gitlab-Event", "Merge Request Hook"),
			`{"object_attributes":{"action":"approved"}}`, `action "approved"`},
		{"gitea label", Gitea, headers("X-Gitea-Event", "pull_request"),
			`{"action":"label_updated","number":1}`, `action "label_updated"`},
		{"gitea issue comment", Gitea, headers("X-Gitea-Event", "issue_comment"), `{}`, `"issue_comment" event`},
		{"bitbucket comment", Bitbucket, headers("X-Event-Key", "pullrequest:comment_created"), `{}`, "comment_created"},
		{"bitbucket data center ping", Bitbucket, headers("X-Event-Key", "diagnostics:ping"), `{"test":true}`, "diagnostics:ping"},
		{"generic ping", Generic, headers(), `{"event":"ping"}`, "generic ping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.forge, tt.header, []byte(tt.body))
			if !errors.Is(err, ErrIgnored) || c != nil {
				t.Fatalf("Parse = %v, %v; want nil, ErrIgnored", c, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not say %q", err, tt.reason)
			}
		})
	}
}

func TestParseGitHubDeletedBranchPush(t *testing.T) {
	body := `{"ref":"refs/heads/old","before":"1111111111111111111111111111111111111111",
		"after":"0000000000000000000000000000000000000000","deleted":true,"commits":[],
		"repository":{"full_name":"a/b"},"sender":{"login":"me"}}`
	c, err := Parse(GitHub, headers("X-GitHub-Event", "push"), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != branchDeleted || c.Branch != "old" || c.Sender != "me" {
		t.Errorf("got %v branch %q sender %q", c.Kind, c.Branch, c.Sender)
	}
}

func TestParseGitHubDeleteBranchEvent(t *testing.T) {
	body := `{"ref":"old","ref_type":"branch","repository":{"full_name":"a/b"}}`
	c, err := Parse(GitHub, headers("X-GitHub-Event", "delete"), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != branchDeleted || c.Ref != "refs/heads/old" || c.Branch != "old" {
		t.Errorf("got %v %q %q", c.Kind, c.Ref, c.Branch)
	}
}

// The same tag arrives as a push and as a create event; a caller dedupes on
// repository and tag, which must agree.
func TestParseGitHubTagTwice(t *testing.T) {
	viaPush, err := Parse(GitHub, headers("X-GitHub-Event", "push"),
		[]byte(`{"ref":"refs/tags/v1","before":"0000000000000000000000000000000000000000","after":"abc","created":true,"repository":{"full_name":"a/b"}}`))
	if err != nil {
		t.Fatal(err)
	}
	viaCreate, err := Parse(GitHub, headers("X-GitHub-Event", "create"),
		[]byte(`{"ref":"v1","ref_type":"tag","repository":{"full_name":"a/b"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*eventsv1.Change{viaPush, viaCreate} {
		if c.Kind != tag || c.Repository != "a/b" || c.Tag != "v1" || c.Ref != "refs/tags/v1" {
			t.Errorf("got %v %s %s %s", c.Kind, c.Repository, c.Tag, c.Ref)
		}
	}
	if viaCreate.After != "" {
		t.Errorf("create event After = %q, want empty (GitHub sends no sha)", viaCreate.After)
	}
}

func TestParseGiteaTagPush(t *testing.T) {
	body := `{"ref":"refs/tags/v2","before":"0000000000000000000000000000000000000000","after":"abc",
		"repository":{"full_name":"a/b"}}`
	c, err := Parse(Gitea, headers("X-Gitea-Event", "push"), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != tag || c.Tag != "v2" || c.After != "abc" {
		t.Errorf("got %v %q %q", c.Kind, c.Tag, c.After)
	}
}

func TestParseGitLabEventFallback(t *testing.T) {
	body := readFixture(t, "gitlab/woodpecker_push.json")
	// Some GitLab versions' "Test" button sent "Push Event"; system hooks
	// send "System Hook"; both are routed on object_kind.
	for _, event := range []string{"", "Push Event", "System Hook"} {
		c, err := Parse(GitLab, headers("X-Gitlab-Event", event), body)
		if err != nil {
			t.Fatalf("X-Gitlab-Event %q: %v", event, err)
		}
		if c.Kind != push || c.Repository != "test/woodpecker" {
			t.Errorf("X-Gitlab-Event %q: got %v %s", event, c.Kind, c.Repository)
		}
	}
}

func TestParseGitLabDeletedBranch(t *testing.T) {
	body := `{"object_kind":"push","ref":"refs/heads/gone","before":"abc",
		"after":"0000000000000000000000000000000000000000","project":{"path_with_namespace":"g/p"}}`
	c, err := Parse(GitLab, headers("X-Gitlab-Event", "Push Hook"), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != branchDeleted || c.Branch != "gone" || c.CompareUrl != "" {
		t.Errorf("got %v %q compare %q", c.Kind, c.Branch, c.CompareUrl)
	}
}

// A Bitbucket push can change several refs; each becomes a change with its
// own delivery id.
func TestParseAllBitbucketSeveralRefs(t *testing.T) {
	body := `{"actor":{"nickname":"me"},"repository":{"full_name":"w/r"},"push":{"changes":[
		{"old":{"name":"main","type":"branch","target":{"hash":"aaa"}},
		 "new":{"name":"main","type":"branch","target":{"hash":"bbb"}},
		 "commits":[{"hash":"bbb","author":{"raw":"B <b@x>"}},{"hash":"a2","author":{"raw":"A"}}]},
		{"old":{"name":"gone","type":"branch","target":{"hash":"ccc"}},"new":null},
		{"old":null,"new":{"name":"v1","type":"tag","target":{"hash":"ddd"}}},
		{"old":{"name":"v0","type":"tag","target":{"hash":"eee"}},"new":null},
		{"old":null,"new":{"name":"hg","type":"named_branch","target":{"hash":"fff"}}}
	]}}`
	h := headers("X-Event-Key", "repo:push", "X-Request-UUID", "req-1")
	changes, err := ParseAll(Bitbucket, h, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	wantKinds := []eventsv1.ChangeKind{push, branchDeleted, tag, tagDeleted}
	if len(changes) != len(wantKinds) {
		t.Fatalf("got %d changes, want %d", len(changes), len(wantKinds))
	}
	for i, c := range changes {
		if c.Kind != wantKinds[i] {
			t.Errorf("change %d: kind %v, want %v", i, c.Kind, wantKinds[i])
		}
		if want := "req-1/" + string(rune('0'+i)); c.DeliveryId != want {
			t.Errorf("change %d: DeliveryId %q, want %q", i, c.DeliveryId, want)
		}
	}
	if c := changes[0]; len(c.Commits) != 2 || c.Commits[0].Sha != "a2" || c.Commits[1].AuthorEmail != "b@x" || c.Commits[1].AuthorName != "B" {
		t.Errorf("commits not reversed to oldest first or author not split: %v", c.Commits)
	}
	if c := changes[1]; c.Before != "ccc" || !isZeroSHA(c.After) || c.Branch != "gone" {
		t.Errorf("deleted branch: %v", c)
	}
	if c := changes[2]; !isZeroSHA(c.Before) || c.After != "ddd" || c.Tag != "v1" {
		t.Errorf("new tag: %v", c)
	}
	first, err := Parse(Bitbucket, h, []byte(body))
	if err != nil || first.Ref != "refs/heads/main" {
		t.Errorf("Parse = %v, %v; want the first change", first, err)
	}
}

func TestParseBitbucketDataCenterDelete(t *testing.T) {
	body := `{"actor":{"name":"me"},"repository":{"slug":"r","project":{"key":"P"}},"changes":[
		{"ref":{"id":"refs/tags/v1","type":"TAG"},"fromHash":"abc","toHash":"0000000000000000000000000000000000000000","type":"DELETE"}]}`
	c, err := Parse(Bitbucket, headers("X-Event-Key", "repo:refs_changed", "X-Request-Id", "r1"), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != tagDeleted || c.Repository != "P/r" || c.Tag != "v1" || c.DeliveryId != "r1" {
		t.Errorf("got %v %s %s %s", c.Kind, c.Repository, c.Tag, c.DeliveryId)
	}
}

func TestParseGeneric(t *testing.T) {
	ok := []struct {
		body string
		kind eventsv1.ChangeKind
	}{
		{`{"repository":"a/b","ref":"refs/heads/main","commit":"abc","before":"000","clone_url":"https://x/a/b.git","sender":"bot"}`, push},
		{`{"event":"push","repository":"a/b","ref":"refs/tags/v1","commit":"abc"}`, tag},
		{`{"event":"delete","repository":"a/b","ref":"refs/heads/x"}`, branchDeleted},
		{`{"event":"delete","repository":"a/b","ref":"refs/tags/v1"}`, tagDeleted},
	}
	for _, tt := range ok {
		c, err := Parse(Generic, headers("X-Shiploop-Delivery", "d1"), []byte(tt.body))
		if err != nil {
			t.Errorf("%s: %v", tt.body, err)
			continue
		}
		if c.Kind != tt.kind || c.Repository != "a/b" || c.DeliveryId != "d1" || c.Forge != Generic {
			t.Errorf("%s: got %v %s %s", tt.body, c.Kind, c.Repository, c.DeliveryId)
		}
	}
	bad := []struct{ body, part string }{
		{`{"repository":"a/b","ref":"refs/heads/main","commit":"abc","comit":"x"}`, `unknown field "comit"`},
		{`{"repository":"a/b","ref":"main","commit":"abc"}`, `ref "main" is not a full`},
		{`{"repository":"a/b","ref":"refs/heads/main"}`, "missing commit"},
		{`{"ref":"refs/heads/main","commit":"abc"}`, "missing repository"},
		{`{"event":"merge","repository":"a/b","ref":"refs/heads/main","commit":"abc"}`, `unknown event "merge"`},
		{`{"repository":"a/b","ref":"refs/heads/main","commit":"abc"} {}`, "unexpected data after the JSON object"},
	}
	for _, tt := range bad {
		c, err := Parse(Generic, headers(), []byte(tt.body))
		wantBadRequest(t, c, err, tt.part)
	}
}

func TestParseBitbucketPullRequestUpdated(t *testing.T) {
	body := readFixture(t, "bitbucket-cloud/woodpecker_pullrequest_fulfilled.json")
	c, err := Parse(Bitbucket, headers("X-Event-Key", "pullrequest:updated"), body)
	if err != nil || c.Kind != prUpdated || c.PullRequestNumber != 1 {
		t.Errorf("Cloud pullrequest:updated = %v, %v", c, err)
	}
	body = []byte(strings.Replace(string(readFixture(t, "bitbucket-datacenter/woodpecker_pr_opened.json")),
		`"eventKey": "pr:opened"`, `"eventKey": "pr:from_ref_updated", "previousFromHash": "0123abcd"`, 1))
	c, err = Parse(Bitbucket, headers("X-Event-Key", "pr:from_ref_updated"), body)
	if err != nil || c.Kind != prUpdated || c.Before != "0123abcd" || c.PullRequestNumber != 125 {
		t.Errorf("Data Center pr:from_ref_updated = %v, %v", c, err)
	}
}
