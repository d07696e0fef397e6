package dashboards

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store/storetest"
)

// authUI serves the UI as `shiploop up --token admin` mounts it: the
// dashboards' routes, the login routes and the security headers, with a
// read-scope API token "ro-token" that can be revoked.
func authUI(t *testing.T) (*httptest.Server, *atomic.Bool) {
	t.Helper()
	revoked := new(atomic.Bool)
	auth := &server.Auth{AdminToken: "admin-token", Lookup: func(_ context.Context, hash string) (server.Principal, error) {
		if hash == server.HashToken("ro-token") && !revoked.Load() {
			return server.Principal{Name: "grafana", Scope: server.ScopeRead}, nil
		}
		return server.Principal{}, server.ErrUnknownToken
	}}
	svc, err := New(t.Context(), Config{DB: storetest.OpenSQLite(t, "dashboards"), Bus: bustest.Start(t, bus.Options{Source: "/test"}), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	auth.LoginRoutes(mux)
	srv := httptest.NewServer(server.SecurityHeaders(mux))
	t.Cleanup(srv.Close)
	return srv, revoked
}

// fetch GETs path with headers, without following redirects; streams are
// cut once their headers are in.
func fetch(t *testing.T, srv *httptest.Server, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestPagesNeedReadToken: with --token every page and stream of the UI
// needs read scope (bearer or the login cookie); badges stay public.
func TestPagesNeedReadToken(t *testing.T) {
	srv, revoked := authUI(t)
	pages := []string{"/", "/changes/c1", "/environments", "/errors", "/dora", "/builds/b1", "/repos", "/repos/acme/web", "/builds", "/builds/b1/jobs/j1/log.txt"}
	missing := map[string]bool{"/builds/b1": true, "/changes/c1": true, "/repos/acme/web": true, "/builds/b1/jobs/j1/log.txt": true}
	streams := []string{"/events", "/changes/c1/jobs/j1/log"}
	browser := map[string]string{"Accept": "text/html,application/xhtml+xml"}
	bearer := func(tok string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "Accept": "text/html"}
	}

	for _, p := range pages {
		resp, _ := fetch(t, srv, p, browser)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next="+url.QueryEscape(p) {
			t.Errorf("browser without a token, %s: %d %q, want 303 to the login page", p, resp.StatusCode, resp.Header.Get("Location"))
		}
		for _, tok := range []string{"admin-token", "ro-token"} {
			resp, body := fetch(t, srv, p, bearer(tok))
			// No change c1, build b1 nor repository exists: past the check, 404.
			if want := map[bool]int{true: 404, false: 200}[missing[p]]; resp.StatusCode != want {
				t.Errorf("%s with %s: %d, want %d: %s", p, tok, resp.StatusCode, want, body)
			}
		}
	}
	for _, p := range append(pages, streams...) {
		resp, body := fetch(t, srv, p, map[string]string{"Accept": "text/event-stream"})
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("API client without a token, %s: %d %q %s", p, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
		if resp, _ := fetch(t, srv, p, map[string]string{"Authorization": "Bearer not-a-token"}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with an unknown token: %d, want 401", p, resp.StatusCode)
		}
	}
	for _, p := range streams {
		if resp, _ := fetch(t, srv, p, bearer("ro-token")); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Errorf("%s with a read token: %d %q", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	// Public: badges (a status only) and the pages' script.
	for _, p := range []string{"/badges/demo/web/build.svg", "/static/live.js"} {
		if resp, _ := fetch(t, srv, p, nil); resp.StatusCode != 200 {
			t.Errorf("%s without a token: %d, want 200", p, resp.StatusCode)
		}
	}

	// Security headers, no inline script, a logout button.
	resp, body := fetch(t, srv, "/", bearer("admin-token"))
	for k, want := range map[string]string{"Content-Security-Policy": "script-src 'self'", "X-Frame-Options": "DENY",
		"Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff"} {
		if !strings.Contains(resp.Header.Get(k), want) {
			t.Errorf("%s = %q, want %q", k, resp.Header.Get(k), want)
		}
	}
	if strings.Contains(body, "<script>") || !strings.Contains(body, `<script src="/static/live.js">`) || !strings.Contains(body, `action="/logout"`) {
		t.Errorf("overview page:\n%s", body)
	}

	// A revoked token is refused.
	revoked.Store(true)
	if resp, _ := fetch(t, srv, "/", bearer("ro-token")); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("revoked token: %d, want 303 to the login page", resp.StatusCode)
	}
	if resp, _ := fetch(t, srv, "/events", map[string]string{"Authorization": "Bearer ro-token"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoked token on /events: %d, want 401", resp.StatusCode)
	}
}

// TestLoginCookieOpensPages logs in through the form as a browser does,
// follows the redirect to next, then sees the session end with its token.
func TestLoginCookieOpensPages(t *testing.T) {
	srv, revoked := authUI(t)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	post := func(tok, next string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader(url.Values{"token": {tok}, "next": {next}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", srv.URL)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	get := func(path string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Accept", "text/html")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	// Not logged in: the page sends the browser to the login form.
	resp, body := get("/environments")
	if resp.Request.URL.Path != "/login" || !strings.Contains(body, `name="token"`) || !strings.Contains(body, `value="/environments"`) {
		t.Fatalf("not logged in: ended at %s:\n%s", resp.Request.URL, body)
	}
	// A bad token: a 401 page naming the problem, and no cookie.
	resp, body = post("wrong", "/environments")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "login refused: invalid bearer token (unknown or revoked)") {
		t.Fatalf("bad login: %d\n%s", resp.StatusCode, body)
	}
	u, _ := url.Parse(srv.URL)
	if len(jar.Cookies(u)) != 0 {
		t.Fatalf("bad login set %v", jar.Cookies(u))
	}
	// An absolute next is not followed.
	resp, _ = post("ro-token", "https://evil.example/")
	if resp.StatusCode != 200 || resp.Request.URL.Host != u.Host || resp.Request.URL.Path != "/" {
		t.Fatalf("login with an outside next ended at %s (%d)", resp.Request.URL, resp.StatusCode)
	}
	// A good login returns to next, and the cookie opens the pages.
	resp, body = post("ro-token", "/environments")
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/environments" || !strings.Contains(body, "<h1>Environments</h1>") {
		t.Fatalf("login: %d at %s:\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	if resp, _ := get("/dora"); resp.StatusCode != 200 || resp.Request.URL.Path != "/dora" {
		t.Fatalf("/dora with the cookie: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	// Revoking the token ends the session.
	revoked.Store(true)
	if resp, _ := get("/dora"); resp.Request.URL.Path != "/login" {
		t.Fatalf("revoked token's cookie: ended at %s (%d)", resp.Request.URL, resp.StatusCode)
	}
}
