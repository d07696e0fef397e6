// Package forgestatus posts commit statuses to forges: GitHub, GitLab, Gitea
// and Forgejo (which serves Gitea's API). One Client per repository; every
// service that reports on a commit (builds: "shiploop/build", gates:
// "shiploop/gate") uses the same clients.
//
// Request shapes (../shared/docs/research/formats.md §5.3):
//
//   - GitHub: POST {api}/repos/{owner}/{repo}/statuses/{sha}, body
//     {state, target_url, description, context}, state one of
//     pending|success|failure|error, description at most 140 characters.
//   - GitLab: POST {api}/projects/{id or URL-encoded path}/statuses/{sha},
//     header PRIVATE-TOKEN, body {state, ref, name, target_url, description},
//     state one of pending|running|success|failed|canceled.
//   - Gitea/Forgejo: POST {api}/repos/{owner}/{repo}/statuses/{sha}, header
//     "Authorization: token T", body {state, target_url, description,
//     context}, state one of pending|success|error|failure|warning.
//
// Tokens only ever travel in request headers: they are not part of errors,
// and Config's LogValue redacts them.
package forgestatus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Forge kinds, as a repository's configuration names them.
const (
	GitHub  = "github"
	GitLab  = "gitlab"
	Gitea   = "gitea"
	Forgejo = "forgejo"
)

// State is a forge-neutral commit state; each client maps it onto its
// forge's vocabulary.
type State string

// States. Forges without a "running" state show Running as pending; forges
// without "canceled" show Canceled as their error or failure state.
const (
	Pending  State = "pending"
	Running  State = "running"
	Success  State = "success"
	Failure  State = "failure"
	Error    State = "error"
	Canceled State = "canceled"
)

func (s State) valid() bool {
	switch s {
	case Pending, Running, Success, Failure, Error, Canceled:
		return true
	}
	return false
}

// Status is one commit status to set.
type Status struct {
	// SHA is the full commit id (required).
	SHA string
	// Ref is the branch or tag, "refs/heads/main" or "main" (optional;
	// GitLab uses it to pick the pipeline when a commit is on several refs).
	Ref   string
	State State
	// Context tells this status apart from other systems' statuses on the
	// same commit, e.g. "shiploop/build" (required).
	Context     string
	Description string
	// TargetURL is the link the forge shows next to the status (optional).
	TargetURL string
}

// Client sets commit statuses on one repository of one forge.
type Client interface {
	SetStatus(ctx context.Context, st Status) error
}

// Config configures a client for one repository.
type Config struct {
	// APIURL is the API base: https://api.github.com (GitHub Enterprise:
	// https://HOST/api/v3), https://gitlab.com/api/v4, https://HOST/api/v1
	// for Gitea and Forgejo. Empty means the forge's public default where it
	// has one.
	APIURL string
	// Repo is "owner/repo" for GitHub, Gitea and Forgejo; for GitLab a
	// numeric project id or the project path "group/sub/project".
	Repo string
	// Token authenticates: a GitHub token with statuses:write (repo:status),
	// a GitLab token with the api scope, a Gitea/Forgejo token with
	// write:repository.
	Token string
	// HTTPClient sends the requests (default: 10s timeout).
	HTTPClient *http.Client
	// UserAgent defaults to "shiploop".
	UserAgent string
}

// LogValue keeps the token out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("api_url", c.APIURL), slog.String("repo", c.Repo), slog.String("token", redact(c.Token)))
}

// String keeps the token out of %v and %s.
func (c Config) String() string {
	return fmt.Sprintf("{api_url=%s repo=%s token=%s}", c.APIURL, c.Repo, redact(c.Token))
}

func redact(token string) string {
	if token == "" {
		return ""
	}
	return "[redacted]"
}

// DefaultTimeout bounds one status request when Config.HTTPClient is nil.
const DefaultTimeout = 10 * time.Second

var defaultHTTPClient = &http.Client{Timeout: DefaultTimeout}

// DefaultAPIURL is the public API base of a forge kind, "" when it has none
// (Gitea and Forgejo are self-hosted).
func DefaultAPIURL(kind string) string {
	switch kind {
	case GitHub:
		return "https://api.github.com"
	case GitLab:
		return "https://gitlab.com/api/v4"
	}
	return ""
}

// ErrInvalid marks a configuration or status that no retry can fix.
var ErrInvalid = errors.New("invalid")

func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// ConfigError is a Config a constructor refused; it is ErrInvalid.
type ConfigError struct {
	Forge string
	// Field is the Config field at fault: "kind", "api_url", "repo" or "token".
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return e.Forge + ": " + e.Msg }

// Is makes a ConfigError match ErrInvalid.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalid }

func configErr(forge, field, format string, a ...any) error {
	return &ConfigError{Forge: forge, Field: field, Msg: fmt.Sprintf(format, a...)}
}

// HTTPError is a forge's non-2xx answer.
type HTTPError struct {
	Forge      string
	Method     string
	URL        string
	StatusCode int
	// Body is the start of the response body (the forge's reason).
	Body string
	// RateLimited is set when the forge said to slow down (429, or GitHub's
	// 403 with X-RateLimit-Remaining: 0 or Retry-After).
	RateLimited bool
	// RetryAfter is the forge's Retry-After, when it sent one in seconds.
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("%s: %s %s: %d %s", e.Forge, e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Temporary reports whether trying again later can succeed: server errors,
// 408, 429 and rate limits. Other 4xx answers (bad token, unknown
// repository or commit, invalid field) will not change by retrying.
func (e *HTTPError) Temporary() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusRequestTimeout || e.RateLimited
}

// IsPermanent reports whether err is one that retrying cannot fix: an
// invalid configuration or status, or a forge's 4xx answer other than 408,
// 429 and rate limits. Network errors and timeouts are not permanent.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrInvalid) {
		return true
	}
	var he *HTTPError
	return errors.As(err, &he) && !he.Temporary()
}

// Constructor makes a client from a configuration, checking it.
type Constructor func(Config) (Client, error)

// Registry maps forge kinds to constructors.
type Registry map[string]Constructor

// NewRegistry returns a registry of the built-in forges: github, gitlab,
// gitea and forgejo.
func NewRegistry() Registry {
	return Registry{GitHub: NewGitHub, GitLab: NewGitLab, Gitea: NewGitea, Forgejo: NewForgejo}
}

// Register adds or replaces a forge kind.
func (r Registry) Register(kind string, c Constructor) { r[kind] = c }

// Kinds lists the registered kinds, sorted.
func (r Registry) Kinds() []string {
	out := make([]string, 0, len(r))
	for k := range r {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// New makes the client of a forge kind.
func (r Registry) New(kind string, cfg Config) (Client, error) {
	c, ok := r[kind]
	if !ok {
		return nil, configErr(kind, "kind", "unknown forge %q (want one of %s)", kind, strings.Join(r.Kinds(), ", "))
	}
	return c(cfg)
}

// Kinds lists the built-in forge kinds.
func Kinds() []string { return NewRegistry().Kinds() }

// New makes a client of a built-in forge kind.
func New(kind string, cfg Config) (Client, error) { return NewRegistry().New(kind, cfg) }

// base is what every client shares: the checked configuration and the
// request plumbing.
type base struct {
	forge string
	api   string // no trailing slash
	repo  string
	token string
	hc    *http.Client
	ua    string
}

func newBase(forge string, cfg Config, needOwnerRepo bool) (base, error) {
	b := base{forge: forge, repo: strings.Trim(strings.TrimSpace(cfg.Repo), "/"), token: strings.TrimSpace(cfg.Token), hc: cfg.HTTPClient, ua: cfg.UserAgent}
	api := strings.TrimSpace(cfg.APIURL)
	if api == "" {
		api = DefaultAPIURL(forge)
	}
	if api == "" {
		return b, configErr(forge, "api_url", "the API URL is required (e.g. https://%s.example.com/api/v1)", forge)
	}
	u, err := url.Parse(api)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return b, configErr(forge, "api_url", "API URL %q: want http(s)://host[/path]", api)
	}
	if u.User != nil {
		return b, configErr(forge, "api_url", "the API URL must not carry credentials; set the token instead")
	}
	b.api = strings.TrimRight(api, "/")
	if b.repo == "" {
		return b, configErr(forge, "repo", "the repository is required")
	}
	if needOwnerRepo {
		owner, name, ok := strings.Cut(b.repo, "/")
		if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
			return b, configErr(forge, "repo", "repository %q: want owner/repo", b.repo)
		}
	}
	if b.token == "" {
		return b, configErr(forge, "token", "a token is required to set commit statuses")
	}
	if strings.ContainsAny(b.token, "\r\n") {
		return b, configErr(forge, "token", "the token contains a line break")
	}
	if b.hc == nil {
		b.hc = defaultHTTPClient
	}
	if b.ua == "" {
		b.ua = "shiploop"
	}
	return b, nil
}

func (b base) check(st Status) error {
	if !isSHA(st.SHA) {
		return invalidf("%s: commit %q is not a hex commit id", b.forge, st.SHA)
	}
	if !st.State.valid() {
		return invalidf("%s: unknown state %q", b.forge, st.State)
	}
	if st.Context == "" {
		return invalidf("%s: the status context is required", b.forge)
	}
	return nil
}

func isSHA(s string) bool {
	if len(s) < 7 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// ownerRepoPath is "/repos/{owner}/{repo}" with each part escaped.
func (b base) ownerRepoPath() string {
	owner, name, _ := strings.Cut(b.repo, "/")
	return "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name)
}

// maxErrorBody bounds how much of a forge's error answer is kept.
const maxErrorBody = 512

func (b base) post(ctx context.Context, path string, header http.Header, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	u := b.api + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(data))
	if err != nil {
		return invalidf("%s: %v", b.forge, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", b.ua)
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		// *url.Error names the URL, never the headers: no token in here.
		return fmt.Errorf("%s: %w", b.forge, err)
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	he := &HTTPError{Forge: b.forge, Method: req.Method, URL: u, StatusCode: resp.StatusCode,
		Body: strings.TrimSpace(strings.ToValidUTF8(string(head), "?"))}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
		he.RetryAfter = time.Duration(secs) * time.Second
	}
	// GitHub answers a spent rate limit with 403 (primary: remaining 0;
	// secondary: Retry-After).
	if resp.StatusCode == http.StatusTooManyRequests ||
		resp.StatusCode == http.StatusForbidden && (resp.Header.Get("X-RateLimit-Remaining") == "0" || resp.Header.Get("Retry-After") != "") {
		he.RateLimited = true
	}
	return he
}

// clip shortens s to at most n characters (runes), marking the cut.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
