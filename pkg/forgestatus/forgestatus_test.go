package forgestatus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

// request is what a fake forge saw.
type request struct {
	Method string
	URI    string // escaped path and query, as sent
	Header http.Header
	Body   map[string]any
}

// fakeForge records requests and answers each with the next code of codes
// (201 once they run out).
type fakeForge struct {
	*httptest.Server
	mu     sync.Mutex
	seen   []request
	codes  []int
	header http.Header // sent with error answers
}

func newFake(t *testing.T, codes ...int) *fakeForge {
	t.Helper()
	f := &fakeForge{codes: codes, header: http.Header{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		req := request{Method: r.Method, URI: r.RequestURI, Header: r.Header.Clone()}
		if err := json.Unmarshal(raw, &req.Body); err != nil {
			t.Errorf("body is not a JSON object: %q", raw)
		}
		f.mu.Lock()
		f.seen = append(f.seen, req)
		code := http.StatusCreated
		if len(f.codes) > 0 {
			code, f.codes = f.codes[0], f.codes[1:]
		}
		f.mu.Unlock()
		if code >= 300 {
			for k, v := range f.header {
				w.Header()[k] = v
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"message":"answer %d"}`, code)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeForge) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.seen...)
}

func (f *fakeForge) last(t *testing.T) request {
	t.Helper()
	r := f.requests()
	if len(r) == 0 {
		t.Fatal("the fake forge saw no request")
	}
	return r[len(r)-1]
}

func mustNew(t *testing.T, kind string, cfg Config) Client {
	t.Helper()
	c, err := New(kind, cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", kind, err)
	}
	return c
}

func status(s State) Status {
	return Status{SHA: sha, Ref: "refs/heads/main", State: s, Context: "shiploop/build",
		Description: "shiploop #12 failed at step test", TargetURL: "https://ci.example.com/builds/b1"}
}

// wantBody checks a JSON body field by field (missing fields must be absent).
func wantBody(t *testing.T, got map[string]any, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("body[%q] = %v (present %v), want %q", k, g, ok, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected body field %q = %v", k, got[k])
		}
	}
}

// TestGitHubRequestShape: POST /repos/{owner}/{repo}/statuses/{sha}, a
// bearer token, the GitHub media type, {state, target_url, description,
// context} with GitHub's four states.
func TestGitHubRequestShape(t *testing.T) {
	f := newFake(t)
	c := mustNew(t, GitHub, Config{APIURL: f.URL + "/", Repo: "acme/web", Token: "ghp_secret"})
	for _, tc := range []struct {
		in   State
		want string
	}{{Pending, "pending"}, {Running, "pending"}, {Success, "success"}, {Failure, "failure"}, {Error, "error"}, {Canceled, "error"}} {
		if err := c.SetStatus(t.Context(), status(tc.in)); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		r := f.last(t)
		if r.Method != http.MethodPost || r.URI != "/repos/acme/web/statuses/"+sha {
			t.Errorf("%s: %s %s", tc.in, r.Method, r.URI)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer ghp_secret" {
			t.Errorf("Authorization = %q", got)
		}
		if got := r.Header.Get("Accept"); got != "application/vnd.github+json" {
			t.Errorf("Accept = %q", got)
		}
		if got := r.Header.Get("X-GitHub-Api-Version"); got == "" {
			t.Error("no X-GitHub-Api-Version")
		}
		if got := r.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q", got)
		}
		wantBody(t, r.Body, map[string]string{"state": tc.want, "target_url": "https://ci.example.com/builds/b1",
			"description": "shiploop #12 failed at step test", "context": "shiploop/build"})
	}
}

// TestGitHubDefaults: api.github.com by default; no target URL means no
// field; descriptions are cut to GitHub's 140 characters.
func TestGitHubDefaults(t *testing.T) {
	c, err := NewGitHub(Config{Repo: "acme/web", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.(*githubClient).api; got != "https://api.github.com" {
		t.Errorf("default API = %q", got)
	}
	f := newFake(t)
	c = mustNew(t, GitHub, Config{APIURL: f.URL, Repo: "acme/web", Token: "t"})
	st := status(Failure)
	st.TargetURL = ""
	st.Description = strings.Repeat("é", 300)
	if err := c.SetStatus(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	body := f.last(t).Body
	if _, ok := body["target_url"]; ok {
		t.Errorf("target_url sent though empty: %v", body)
	}
	if d := body["description"].(string); len([]rune(d)) != 140 || !strings.HasSuffix(d, "…") {
		t.Errorf("description has %d characters: %q", len([]rune(d)), d)
	}
}

// TestGitLabRequestShape: POST /projects/:id/statuses/:sha with the
// project path URL-encoded, PRIVATE-TOKEN, {state, ref, name, target_url,
// description} with GitLab's five states.
func TestGitLabRequestShape(t *testing.T) {
	f := newFake(t)
	c := mustNew(t, GitLab, Config{APIURL: f.URL + "/api/v4", Repo: "acme/sub/web", Token: "glpat-secret"})
	for _, tc := range []struct {
		in   State
		want string
	}{{Pending, "pending"}, {Running, "running"}, {Success, "success"}, {Failure, "failed"}, {Error, "failed"}, {Canceled, "canceled"}} {
		if err := c.SetStatus(t.Context(), status(tc.in)); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		r := f.last(t)
		if r.Method != http.MethodPost || r.URI != "/api/v4/projects/acme%2Fsub%2Fweb/statuses/"+sha {
			t.Errorf("%s: %s %s", tc.in, r.Method, r.URI)
		}
		if got := r.Header.Get("PRIVATE-TOKEN"); got != "glpat-secret" {
			t.Errorf("PRIVATE-TOKEN = %q", got)
		}
		if got := r.Header.Get("Authorization"); got != "" {
			t.Errorf("Authorization = %q, want none", got)
		}
		wantBody(t, r.Body, map[string]string{"state": tc.want, "ref": "main", "name": "shiploop/build",
			"target_url": "https://ci.example.com/builds/b1", "description": "shiploop #12 failed at step test"})
	}
}

// TestGitLabProjectAndRef: a numeric project id goes as is; tags lose
// refs/tags/, other refs (merge request heads) are left out.
func TestGitLabProjectAndRef(t *testing.T) {
	f := newFake(t)
	c := mustNew(t, GitLab, Config{APIURL: f.URL, Repo: "4711", Token: "t"})
	st := status(Success)
	st.Ref = "refs/tags/v1.2.0"
	if err := c.SetStatus(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	if r := f.last(t); r.URI != "/projects/4711/statuses/"+sha || r.Body["ref"] != "v1.2.0" {
		t.Errorf("%s %v", r.URI, r.Body)
	}
	st.Ref = "refs/merge-requests/3/head"
	if err := c.SetStatus(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.last(t).Body["ref"]; ok {
		t.Errorf("ref sent for a merge request head: %v", f.last(t).Body)
	}
	if c, err := NewGitLab(Config{Repo: "a/b", Token: "t"}); err != nil || c.(*gitlabClient).api != "https://gitlab.com/api/v4" {
		t.Errorf("default API: %v %v", c, err)
	}
}

// TestGiteaRequestShape: POST /repos/{owner}/{repo}/statuses/{sha},
// "Authorization: token T", {state, target_url, description, context}
// with Gitea's states; Forgejo sends the same.
func TestGiteaRequestShape(t *testing.T) {
	for _, kind := range []string{Gitea, Forgejo} {
		t.Run(kind, func(t *testing.T) {
			f := newFake(t)
			c := mustNew(t, kind, Config{APIURL: f.URL + "/api/v1", Repo: "acme/web", Token: "gt-secret"})
			for _, tc := range []struct {
				in   State
				want string
			}{{Pending, "pending"}, {Running, "pending"}, {Success, "success"}, {Failure, "failure"}, {Error, "error"}, {Canceled, "failure"}} {
				if err := c.SetStatus(t.Context(), status(tc.in)); err != nil {
					t.Fatalf("%s: %v", tc.in, err)
				}
				r := f.last(t)
				if r.Method != http.MethodPost || r.URI != "/api/v1/repos/acme/web/statuses/"+sha {
					t.Errorf("%s: %s %s", tc.in, r.Method, r.URI)
				}
				if got := r.Header.Get("Authorization"); got != "token gt-secret" {
					t.Errorf("Authorization = %q", got)
				}
				wantBody(t, r.Body, map[string]string{"state": tc.want, "target_url": "https://ci.example.com/builds/b1",
					"description": "shiploop #12 failed at step test", "context": "shiploop/build"})
			}
			if _, err := New(kind, Config{Repo: "acme/web", Token: "t"}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "API URL is required") {
				t.Errorf("no API URL: %v", err)
			}
		})
	}
}

// TestErrorsClassify: 5xx, 408, 429 and rate-limited 403s are temporary;
// other 4xx are permanent; the token never shows in an error.
func TestErrorsClassify(t *testing.T) {
	for _, tc := range []struct {
		code      int
		header    map[string]string
		permanent bool
	}{
		{500, nil, false}, {502, nil, false}, {503, nil, false}, {408, nil, false}, {429, nil, false},
		{403, map[string]string{"X-RateLimit-Remaining": "0"}, false},
		{403, map[string]string{"Retry-After": "60"}, false},
		{400, nil, true}, {401, nil, true}, {403, nil, true}, {404, nil, true}, {422, nil, true},
	} {
		for _, kind := range Kinds() {
			f := newFake(t, tc.code)
			for k, v := range tc.header {
				f.header.Set(k, v)
			}
			c := mustNew(t, kind, Config{APIURL: f.URL, Repo: "acme/web", Token: "sekrit-token"})
			err := c.SetStatus(t.Context(), status(Success))
			var he *HTTPError
			if !errors.As(err, &he) || he.StatusCode != tc.code {
				t.Fatalf("%s %d: err = %v", kind, tc.code, err)
			}
			if IsPermanent(err) != tc.permanent {
				t.Errorf("%s %d %v: permanent = %v, want %v", kind, tc.code, tc.header, IsPermanent(err), tc.permanent)
			}
			if strings.Contains(err.Error(), "sekrit") || !strings.Contains(err.Error(), fmt.Sprintf("answer %d", tc.code)) {
				t.Errorf("%s %d: error %q (want the forge's reason, never the token)", kind, tc.code, err)
			}
			if tc.header["Retry-After"] == "60" && he.RetryAfter != time.Minute {
				t.Errorf("RetryAfter = %v", he.RetryAfter)
			}
		}
	}
}

// TestNetworkErrorsAreTemporary: a forge that does not answer in time, or
// at all, is retried later.
func TestNetworkErrorsAreTemporary(t *testing.T) {
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer slow.Close()
	defer close(block)
	c := mustNew(t, GitHub, Config{APIURL: slow.URL, Repo: "a/b", Token: "sekrit", HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}})
	err := c.SetStatus(t.Context(), status(Pending))
	if err == nil || IsPermanent(err) || strings.Contains(err.Error(), "sekrit") {
		t.Errorf("timeout: %v (permanent %v)", err, IsPermanent(err))
	}
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	c = mustNew(t, GitLab, Config{APIURL: down.URL, Repo: "a/b", Token: "sekrit"})
	if err := c.SetStatus(t.Context(), status(Pending)); err == nil || IsPermanent(err) {
		t.Errorf("connection refused: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.SetStatus(ctx, status(Pending)); err == nil || IsPermanent(err) {
		t.Errorf("canceled: %v", err)
	}
}

// TestInvalid: configurations and statuses no retry can fix.
func TestInvalid(t *testing.T) {
	for _, tc := range []struct {
		kind  string
		cfg   Config
		field string
		want  string
	}{
		{"bitbucket", Config{Repo: "a/b", Token: "t"}, "kind", `unknown forge "bitbucket"`},
		{GitHub, Config{Repo: "a/b"}, "token", "token is required"},
		{GitHub, Config{Repo: "", Token: "t"}, "repo", "repository is required"},
		{GitHub, Config{Repo: "justname", Token: "t"}, "repo", "want owner/repo"},
		{Gitea, Config{APIURL: "https://g.example/api/v1", Repo: "a/b/c", Token: "t"}, "repo", "want owner/repo"},
		{Gitea, Config{Repo: "a/b", Token: "t"}, "api_url", "API URL is required"},
		{GitHub, Config{APIURL: "ftp://x", Repo: "a/b", Token: "t"}, "api_url", "want http(s)"},
		{GitHub, Config{APIURL: "https://u:p@x", Repo: "a/b", Token: "t"}, "api_url", "credentials"},
		{GitLab, Config{Repo: "a/b", Token: "t\nX-Evil: 1"}, "token", "line break"},
	} {
		_, err := New(tc.kind, tc.cfg)
		var ce *ConfigError
		if !errors.Is(err, ErrInvalid) || !IsPermanent(err) || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s %v: %v (field %v), want %s: %q", tc.kind, tc.cfg, err, ce, tc.field, tc.want)
		}
	}
	f := newFake(t)
	c := mustNew(t, GitHub, Config{APIURL: f.URL, Repo: "a/b", Token: "t"})
	for _, st := range []Status{
		{SHA: "main", State: Success, Context: "c"},
		{SHA: sha, State: "green", Context: "c"},
		{SHA: sha, State: Success},
	} {
		if err := c.SetStatus(t.Context(), st); !IsPermanent(err) {
			t.Errorf("%+v: %v", st, err)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("invalid statuses reached the forge %d times", n)
	}
}

// TestRegistry: the built-in kinds, and a registry another forge joins.
func TestRegistry(t *testing.T) {
	if got := strings.Join(Kinds(), ","); got != "forgejo,gitea,github,gitlab" {
		t.Errorf("Kinds = %s", got)
	}
	r := NewRegistry()
	called := false
	r.Register("fake", func(cfg Config) (Client, error) { called = true; return nil, nil })
	if _, err := r.New("fake", Config{}); err != nil || !called {
		t.Errorf("registered constructor: %v %v", called, err)
	}
	if _, ok := NewRegistry()["fake"]; ok {
		t.Error("Register changed every registry")
	}
	if DefaultAPIURL(Gitea) != "" || DefaultAPIURL(GitHub) != "https://api.github.com" {
		t.Error("DefaultAPIURL")
	}
}

// TestConfigNeverPrintsToken: logs and %v show that a token is set, not it.
func TestConfigNeverPrintsToken(t *testing.T) {
	cfg := Config{APIURL: "https://api.github.com", Repo: "a/b", Token: "ghp_topsecret"}
	var sb strings.Builder
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("cfg", "forge", cfg)
	out := sb.String() + fmt.Sprintf("%v %+v %s", cfg, cfg, cfg)
	if strings.Contains(out, "topsecret") || !strings.Contains(out, "[redacted]") {
		t.Errorf("printed: %s", out)
	}
}
