package main

import (
	"net/http"
	"slices"
	"strings"

	"github.com/shiploop/shiploop/pkg/server"
)

// Routes that change state but authenticate their own senders, who cannot
// send a bearer token: forge webhooks (HMAC signatures, Harbormaster
// tokens) and Sentry intake (DSN keys). POST /cdevents checks write scope
// itself.
var ownAuthPrefixes = []string{"/hooks/", "/api/", "/cdevents"}

// The web UI's login and logout: POST /login checks the token it is given
// (Auth.Check), and logout only clears the session cookie.
var ownAuthPaths = []string{"/login", "/logout"}

// The web UI's action forms, which browsers post with the session cookie,
// not a bearer: Auth.WebForm checks write scope (cookie or bearer) and
// refuses cross-origin posts (dashboards' environment page).
var webFormPrefixes = []string{"/environments/"}

// Reads that clients send as POST: Graphite queries (Grafana posts render
// forms) and OFREP evaluation (read scope, checked by the flags service).
var readPOSTs = []string{
	"/graphite/render", "/graphite/metrics/find", "/graphite/metrics/expand", "/graphite/metrics/index.json",
	"/graphite/tags/findSeries", "/graphite/tags/autoComplete/tags", "/graphite/tags/autoComplete/values",
	"/ofrep/",
}

// guardMutations requires a write-scope bearer token on every request that
// may change state (POST, PUT, PATCH, DELETE) unless the route is listed
// above, so a new mutating route is guarded until it is listed. With auth
// off (no --token) it passes everything.
func guardMutations(auth *server.Auth, h http.Handler) http.Handler {
	if !auth.Enabled() {
		return h
	}
	write := auth.HTTP(server.ScopeWrite, h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			h.ServeHTTP(w, r)
			return
		}
		p := r.URL.Path
		if slices.Contains(ownAuthPaths, p) {
			h.ServeHTTP(w, r)
			return
		}
		for _, pre := range ownAuthPrefixes {
			if strings.HasPrefix(p, pre) {
				h.ServeHTTP(w, r)
				return
			}
		}
		for _, pre := range webFormPrefixes {
			if strings.HasPrefix(p, pre) {
				h.ServeHTTP(w, r)
				return
			}
		}
		for _, rp := range readPOSTs {
			if p == rp || p == rp+"/" || (strings.HasSuffix(rp, "/") && strings.HasPrefix(p, rp)) {
				h.ServeHTTP(w, r)
				return
			}
		}
		write.ServeHTTP(w, r)
	})
}
