package server

import (
	"crypto/subtle"
	"net/http"
)

// RequireBearer wraps h so that, when token is set, a request must carry
// "Authorization: Bearer <token>" (the same token gRPC calls use).
func RequireBearer(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r.Header.Get("Authorization"))
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shiploop"`)
			http.Error(w, "missing or invalid bearer token: send \"Authorization: Bearer <token>\"", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
