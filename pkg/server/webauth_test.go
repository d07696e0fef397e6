package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// webFixture is a mux with LoginRoutes and one page behind Web, an admin
// token, a read token "ro" and a revocable store.
type webFixture struct {
	auth    *Auth
	h       http.Handler
	mu      sync.Mutex
	revoked map[string]bool
}

func newWebFixture() *webFixture {
	f := &webFixture{revoked: map[string]bool{}}
	f.auth = &Auth{AdminToken: "admin-secret", Lookup: func(_ context.Context, hash string) (Principal, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if hash == HashToken("ro-secret") && !f.revoked["ro"] {
			return Principal{Name: "ro", Scope: ScopeRead}, nil
		}
		return Principal{}, ErrUnknownToken
	}}
	mux := http.NewServeMux()
	f.auth.LoginRoutes(mux)
	mux.Handle("GET /changes/{chain}", f.auth.Web(ScopeRead, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := PrincipalFrom(r.Context())
		_, _ = w.Write([]byte("page for " + p.Name))
	})))
	f.h = SecurityHeaders(mux)
	return f
}

func (f *webFixture) do(method, target string, hdr map[string]string, form url.Values) *httptest.ResponseRecorder {
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

// login posts token to /login and returns the response and its session cookie.
func (f *webFixture) login(t *testing.T, token, next string) (*httptest.ResponseRecorder, *http.Cookie) {
	t.Helper()
	rec := f.do("POST", "/login", map[string]string{"Origin": "http://example.com"}, url.Values{"token": {token}, "next": {next}})
	for _, c := range rec.Result().Cookies() {
		if c.Name == SessionCookie {
			return rec, c
		}
	}
	return rec, nil
}

func TestWebAuthPages(t *testing.T) {
	f := newWebFixture()
	browser := map[string]string{"Accept": "text/html,application/xhtml+xml"}

	// No token: a browser goes to the login page, an API client gets 401.
	rec := f.do("GET", "/changes/c1?x=1", browser, nil)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/login?next="+url.QueryEscape("/changes/c1?x=1") {
		t.Fatalf("browser without a token: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	rec = f.do("GET", "/changes/c1", map[string]string{"Accept": "text/event-stream"}, nil)
	if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("API client without a token: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	// Bearer tokens: admin and read scope pass; a wrong one does not.
	for tok, want := range map[string]int{"admin-secret": 200, "ro-secret": 200, "nope": 401} {
		rec := f.do("GET", "/changes/c1", map[string]string{"Authorization": "Bearer " + tok}, nil)
		if rec.Code != want {
			t.Errorf("bearer %q: %d, want %d", tok, rec.Code, want)
		}
	}

	// The login page and a bad login name the problem.
	rec = f.do("GET", "/login?next=/changes/c1", browser, nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `name="next" value="/changes/c1"`) {
		t.Fatalf("GET /login: %d %s", rec.Code, rec.Body)
	}
	rec, c := f.login(t, "wrong-token", "/changes/c1")
	if rec.Code != http.StatusUnauthorized || c != nil || !strings.Contains(rec.Body.String(), "invalid bearer token (unknown or revoked)") ||
		strings.Contains(rec.Body.String(), "wrong-token") {
		t.Fatalf("bad login: %d cookie %v\n%s", rec.Code, c, rec.Body)
	}
	rec, _ = f.login(t, "", "/")
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "no token given") {
		t.Fatalf("empty login: %d %s", rec.Code, rec.Body)
	}

	// A good login sets an HttpOnly, SameSite=Strict cookie that opens the
	// pages and holds no token.
	rec, c = f.login(t, "ro-secret", "/changes/c1")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/changes/c1" || c == nil {
		t.Fatalf("login: %d %q %v", rec.Code, rec.Header().Get("Location"), c)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure || strings.Contains(c.Value, "ro-secret") {
		t.Fatalf("cookie %+v", c)
	}
	withCookie := map[string]string{"Cookie": SessionCookie + "=" + c.Value, "Accept": "text/html"}
	if rec := f.do("GET", "/changes/c1", withCookie, nil); rec.Code != 200 || rec.Body.String() != "page for ro" {
		t.Fatalf("page with the cookie: %d %s", rec.Code, rec.Body)
	}
	// A tampered cookie is refused.
	bad := map[string]string{"Cookie": SessionCookie + "=" + HashToken("admin-secret") + c.Value[strings.Index(c.Value, "."):], "Accept": "application/json"}
	if rec := f.do("GET", "/changes/c1", bad, nil); rec.Code != http.StatusUnauthorized {
		t.Fatalf("tampered cookie: %d", rec.Code)
	}
	// Revoking the token ends its session.
	f.mu.Lock()
	f.revoked["ro"] = true
	f.mu.Unlock()
	rec = f.do("GET", "/changes/c1", withCookie, nil)
	if rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/login") {
		t.Fatalf("revoked token's cookie: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if rec := f.do("GET", "/changes/c1", map[string]string{"Cookie": SessionCookie + "=" + c.Value}, nil); rec.Code != http.StatusUnauthorized ||
		!strings.Contains(rec.Body.String(), "revoked") {
		t.Fatalf("revoked token's cookie, API client: %d %s", rec.Code, rec.Body)
	}
	if _, c := f.login(t, "ro-secret", "/"); c != nil {
		t.Fatal("a revoked token logged in")
	}

	// The admin token logs in too; logout clears the cookie.
	if _, c := f.login(t, "admin-secret", "/"); c == nil {
		t.Fatal("admin login set no cookie")
	}
	rec = f.do("POST", "/logout", nil, url.Values{})
	if rec.Code != http.StatusSeeOther || len(rec.Result().Cookies()) != 1 || rec.Result().Cookies()[0].MaxAge >= 0 {
		t.Fatalf("logout: %d %v", rec.Code, rec.Result().Cookies())
	}

	// Security headers on every response, the login page's included.
	for _, target := range []string{"/login", "/changes/c1"} {
		rec := f.do("GET", target, nil, nil)
		for k, want := range map[string]string{"Content-Security-Policy": "script-src 'self'", "X-Frame-Options": "DENY",
			"Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff"} {
			if !strings.Contains(rec.Header().Get(k), want) {
				t.Errorf("%s: %s = %q, want %q", target, k, rec.Header().Get(k), want)
			}
		}
	}
}

func TestWebLoginNextStaysLocal(t *testing.T) {
	f := newWebFixture()
	for next, want := range map[string]string{
		"/changes/c1?a=b":          "/changes/c1?a=b",
		"https://evil.example/":    "/",
		"//evil.example/x":         "/",
		"/\\evil.example":          "/",
		"javascript:alert(1)":      "/",
		"/ok\r\nSet-Cookie: x=y":   "/",
		"":                         "/",
		"http:/\\evil.example/abc": "/",
	} {
		rec, c := f.login(t, "admin-secret", next)
		if c == nil || rec.Header().Get("Location") != want {
			t.Errorf("next %q: Location %q, want %q", next, rec.Header().Get("Location"), want)
		}
		if got := SafeNext(next); got != want {
			t.Errorf("SafeNext(%q) = %q, want %q", next, got, want)
		}
	}
	// The login page does not carry an outside next either.
	rec := f.do("GET", "/login?next="+url.QueryEscape("https://evil.example/"), nil, nil)
	if strings.Contains(rec.Body.String(), "evil.example") {
		t.Fatalf("login page kept an outside next:\n%s", rec.Body)
	}
	// A form posted from another site is refused.
	rec = f.do("POST", "/login", map[string]string{"Origin": "https://evil.example"}, url.Values{"token": {"admin-secret"}})
	if rec.Code != http.StatusForbidden || len(rec.Result().Cookies()) != 0 {
		t.Fatalf("cross-site login: %d %v", rec.Code, rec.Result().Cookies())
	}
}

func TestWebAuthOff(t *testing.T) {
	var a *Auth
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	rec := httptest.NewRecorder()
	a.Web(ScopeRead, ok).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 204 {
		t.Fatalf("auth off: %d", rec.Code)
	}
	mux := http.NewServeMux()
	(&Auth{}).LoginRoutes(mux)
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/login", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("GET /login with auth off: %d", rec.Code)
	}
}
