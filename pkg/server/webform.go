package server

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// WebForm wraps h, a web UI form POST (an action button on a page), so
// that it needs scope need from the same credentials Web accepts, the
// session cookie included, which Web takes on GET and HEAD only. Because
// a browser sends the cookie with any request, WebForm first refuses
// cross-site requests (CSRF): the Origin header, or without it the
// Referer, must be present and name this server's Host; a request with
// neither is refused too (a browser always sends one of them on a form
// POST with Referrer-Policy same-origin, which SecurityHeaders sets). The
// cookie's SameSite=Strict is the second fence. The principal checked is
// in the request's context (PrincipalFrom). With auth off only the
// origin check applies and the principal is "anonymous" with admin scope.
func (a *Auth) WebForm(need Scope, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !StrictSameOrigin(r) {
			http.Error(w, "cross-site form post refused: use the buttons of this server's own pages", http.StatusForbidden)
			return
		}
		if !a.Enabled() {
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, Principal{Name: "anonymous", Scope: ScopeAdmin})))
			return
		}
		var (
			p   Principal
			err error
		)
		cookie, _ := r.Cookie(SessionCookie)
		if authz := r.Header.Get("Authorization"); authz == "" && cookie != nil && cookie.Value != "" {
			p, err = a.checkSession(r.Context(), cookie.Value, need)
		} else {
			p, err = a.Check(r.Context(), authz, need)
		}
		if err != nil {
			httpAuthError(w, err)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// StrictSameOrigin reports whether r comes from a page of this server: its
// Origin (or, when a browser sent none, its Referer) names r.Host.
// Unlike the login's check, a request carrying neither is refused.
func StrictSameOrigin(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return false
	}
	v := r.Header.Get("Origin")
	if v == "null" {
		return false
	}
	if v == "" {
		v = r.Header.Get("Referer")
	}
	if v == "" {
		return false
	}
	u, err := url.Parse(v)
	return err == nil && u.Host != "" && (u.Scheme == "http" || u.Scheme == "https") && strings.EqualFold(u.Host, r.Host)
}
