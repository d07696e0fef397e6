package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// SessionCookie is the web UI's login cookie. It holds no token: it holds
// the token's HashToken, an expiry and an HMAC of both keyed from the
// operator token, so every request checks the token again (a revoked
// token's session stops working) and a stolen cookie opens only the web
// UI's reads, never the gRPC API.
const SessionCookie = "shiploop_session"

// SessionTTL is how long a web login lasts.
const SessionTTL = 7 * 24 * time.Hour

// ContentSecurityPolicy is the policy SecurityHeaders sends: scripts and
// everything else only from the server itself (no inline script), inline
// styles allowed (the pages' <style>), no framing.
const ContentSecurityPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// SecurityHeaders sets the browser protections on every response: CSP,
// X-Frame-Options DENY, Referrer-Policy same-origin and nosniff.
func SecurityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", ContentSecurityPolicy)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// Web wraps h, a page or stream of the web UI, so that with auth on a
// request needs scope need, checked by Check as every gRPC call and
// HTTP route: an "Authorization: Bearer" token or, on GET and HEAD, the
// session cookie POST /login sets. A browser asking for a page
// (Accept: text/html) without one is sent (303) to /login?next=<path>;
// other clients get 401 with WWW-Authenticate: Bearer (403 for too small a
// scope). With auth off it returns h.
func (a *Auth) Web(need Scope, h http.Handler) http.Handler {
	if !a.Enabled() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		var (
			p   Principal
			err error
		)
		cookie, _ := r.Cookie(SessionCookie)
		switch authz := r.Header.Get("Authorization"); {
		case authz == "" && read && cookie != nil && cookie.Value != "":
			p, err = a.checkSession(r.Context(), cookie.Value, need)
		default:
			p, err = a.Check(r.Context(), authz, need)
		}
		if err != nil {
			if httpStatus(err) == http.StatusUnauthorized && read && strings.Contains(r.Header.Get("Accept"), "text/html") {
				if cookie != nil {
					clearSession(w, r)
				}
				http.Redirect(w, r, LoginPath(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			httpAuthError(w, err)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// LoginPath is the login page that returns to next afterwards.
func LoginPath(next string) string {
	return "/login?next=" + url.QueryEscape(SafeNext(next))
}

// SafeNext is next if it is a path on this server ("/changes/x?y"), else
// "/": the login page never sends a browser to another site.
func SafeNext(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return "/"
	}
	for _, c := range next {
		if c < 0x20 || c == 0x7f {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	return next
}

// LoginRoutes mounts the web UI's login on mux when auth is on: GET /login
// (the form), POST /login (checks the token with read scope, sets the
// session cookie, returns to next) and POST /logout. Both POSTs
// authenticate themselves: they must not be behind a bearer-token guard.
func (a *Auth) LoginRoutes(mux *http.ServeMux) {
	if !a.Enabled() {
		return
	}
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		renderLogin(w, http.StatusOK, loginPage{Next: SafeNext(r.URL.Query().Get("next"))})
	})
	mux.HandleFunc("POST /login", a.login)
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if !sameOrigin(r) {
			http.Error(w, "cross-site logout refused", http.StatusForbidden)
			return
		}
		clearSession(w, r)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
}

func (a *Auth) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site login refused: log in from this server's own /login page", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		renderLogin(w, http.StatusBadRequest, loginPage{Next: "/", Error: "reading the form: " + err.Error()})
		return
	}
	next := SafeNext(r.PostFormValue("next"))
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if t, ok := bearer(tok); ok {
		tok = t
	}
	if tok == "" {
		renderLogin(w, http.StatusUnauthorized, loginPage{Next: next, Error: "no token given: paste the --token of `shiploop up` or a token from `shiploop token create --scope read NAME`"})
		return
	}
	if _, err := a.Check(r.Context(), "Bearer "+tok, ScopeRead); err != nil {
		renderLogin(w, httpStatus(err), loginPage{Next: next, Error: "login refused: " + err.Error()})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: a.newSession(HashToken(tok), time.Now()), Path: "/",
		MaxAge: int(SessionTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// sameOrigin refuses form posts from other sites (an Origin naming another
// host, or "null"); requests without Origin (curl, old browsers) pass.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return r.Header.Get("Sec-Fetch-Site") != "cross-site"
	}
	u, err := url.Parse(o)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

func clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// sessionMAC signs a session payload with a key derived from the operator
// token: changing --token ends every session.
func (a *Auth) sessionMAC(payload string) string {
	k := hmac.New(sha256.New, []byte(a.AdminToken))
	k.Write([]byte("shiploop web session v1"))
	m := hmac.New(sha256.New, k.Sum(nil))
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession is a cookie value for the token whose HashToken is hash.
func (a *Auth) newSession(hash string, now time.Time) string {
	payload := hash + "." + strconv.FormatInt(now.Add(SessionTTL).Unix(), 10)
	return payload + "." + a.sessionMAC(payload)
}

// checkSession checks a session cookie's signature and expiry, then its
// token as Check does (unknown or revoked: refused; scope).
func (a *Auth) checkSession(ctx context.Context, v string, need Scope) (Principal, error) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 || !hmac.Equal([]byte(parts[2]), []byte(a.sessionMAC(parts[0]+"."+parts[1]))) {
		return Principal{}, &errAuth{codes.Unauthenticated, "invalid session: log in again at /login"}
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || time.Now().Unix() > exp {
		return Principal{}, &errAuth{codes.Unauthenticated, "session expired: log in again at /login"}
	}
	return a.checkHash(ctx, parts[0], need)
}

type loginPage struct {
	Next, Error string
}

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · shiploop</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#f7f7f8}
header{background:#1d2433;color:#fff;padding:.6em 1.2em;font-weight:700}
main{padding:1em 1.2em;max-width:40em}
input[type=password]{width:100%;padding:.4em;font:inherit;box-sizing:border-box}
.error{background:#fdecea;border:1px solid #c0392b;color:#8a1f11;padding:.6em}
button{margin-top:.8em;padding:.4em 1.2em;font:inherit}
.muted{color:#777}
</style></head>
<body><header>shiploop</header>
<main>
<h1>Log in</h1>
{{if .Error}}<p class="error" id="login-error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="next" value="{{.Next}}">
<input type="text" name="username" value="shiploop" autocomplete="username" hidden>
<label for="token">Token</label>
<input type="password" id="token" name="token" autocomplete="current-password" autofocus required>
<button type="submit">Log in</button>
</form>
<p class="muted">This server was started with <code>--token</code>: the web UI needs that token or an API token with read scope or more
(<code>shiploop token create --scope read NAME</code>). The browser keeps a signed session in an HttpOnly cookie, not the token; it ends when the token is revoked.</p>
</main></body></html>
`))

func renderLogin(w http.ResponseWriter, code int, d loginPage) {
	var b strings.Builder
	if err := loginTmpl.Execute(&b, d); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="shiploop"`)
	}
	w.WriteHeader(code)
	_, _ = w.Write([]byte(b.String()))
}
