package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Scope is what a bearer token may do. Each scope includes the ones
// below it: admin > write > read.
type Scope int

// Scopes, weakest first.
const (
	ScopeNone Scope = iota
	ScopeRead
	ScopeWrite
	ScopeAdmin
)

func (s Scope) String() string {
	switch s {
	case ScopeRead:
		return "read"
	case ScopeWrite:
		return "write"
	case ScopeAdmin:
		return "admin"
	}
	return "none"
}

// ParseScope reads "read", "write" or "admin".
func ParseScope(v string) (Scope, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "read":
		return ScopeRead, nil
	case "write":
		return ScopeWrite, nil
	case "admin":
		return ScopeAdmin, nil
	}
	return ScopeNone, fmt.Errorf("scope %q: want read, write or admin", v)
}

// Principal is who a token belongs to.
type Principal struct {
	Name  string
	Scope Scope
}

// ErrUnknownToken is what a TokenLookup returns for a hash it does not hold.
var ErrUnknownToken = errors.New("unknown token")

// TokenLookup finds a stored token by HashToken of its secret: tokens are
// stored hashed, never in the clear. It returns ErrUnknownToken (wrapped or
// not) for a token that does not exist or was revoked.
type TokenLookup func(ctx context.Context, hash string) (Principal, error)

// HashToken is the stored form of a token secret (SHA-256, hex). Tokens
// are 256-bit random values, so a fast hash is enough.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Auth checks bearer tokens and their scopes. The operator token
// (--token) is an admin token; Lookup finds tokens made with
// `shiploop token create`. With no operator token, auth is off (a laptop
// install): every call is allowed.
type Auth struct {
	AdminToken string
	Lookup     TokenLookup
}

// Enabled reports whether calls must carry a token.
func (a *Auth) Enabled() bool { return a != nil && a.AdminToken != "" }

type principalKey struct{}

// PrincipalFrom returns the caller checked by Auth, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// errAuth is an authentication or authorization failure with its gRPC code.
type errAuth struct {
	code codes.Code
	msg  string
}

func (e *errAuth) Error() string { return e.msg }

// Check authenticates an Authorization value and checks it grants need.
// Errors carry codes.Unauthenticated (missing, malformed, unknown) or
// codes.PermissionDenied (known, scope too small); the message never
// echoes the secret.
func (a *Auth) Check(ctx context.Context, authorization string, need Scope) (Principal, error) {
	if !a.Enabled() {
		return Principal{Name: "anonymous", Scope: ScopeAdmin}, nil
	}
	if authorization == "" {
		return Principal{}, &errAuth{codes.Unauthenticated, "missing bearer token: send \"authorization: Bearer <token>\" (shiploop CLI: --token, SHIPLOOP_TOKEN or the config file)"}
	}
	tok, ok := bearer(authorization)
	if !ok || tok == "" {
		return Principal{}, &errAuth{codes.Unauthenticated, "malformed authorization: want \"Bearer <token>\""}
	}
	return a.checkHash(ctx, HashToken(tok), need)
}

// checkHash is Check for a token known by its HashToken (what a web
// session holds): the operator token or a stored one, with scope need.
func (a *Auth) checkHash(ctx context.Context, hash string, need Scope) (Principal, error) {
	var p Principal
	switch {
	case subtle.ConstantTimeCompare([]byte(hash), []byte(HashToken(a.AdminToken))) == 1:
		p = Principal{Name: "operator", Scope: ScopeAdmin}
	case a.Lookup != nil:
		var err error
		p, err = a.Lookup(ctx, hash)
		if errors.Is(err, ErrUnknownToken) {
			return Principal{}, &errAuth{codes.Unauthenticated, "invalid bearer token (unknown or revoked)"}
		}
		if err != nil {
			return Principal{}, &errAuth{codes.Unavailable, "checking the bearer token: " + err.Error()}
		}
	default:
		return Principal{}, &errAuth{codes.Unauthenticated, "invalid bearer token"}
	}
	if p.Scope < need {
		return Principal{}, &errAuth{codes.PermissionDenied, fmt.Sprintf("token %q has scope %s; this needs %s (create one with `shiploop token create --scope %s NAME`)", p.Name, p.Scope, need, need)}
	}
	return p, nil
}

func (a *Auth) checkGRPC(ctx context.Context, method string) (context.Context, error) {
	if exempt(method) || !a.Enabled() {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var v string
	if vals := md.Get("authorization"); len(vals) > 0 {
		v = vals[0]
	}
	p, err := a.Check(ctx, v, MethodScope(method))
	if err != nil {
		var ea *errAuth
		if errors.As(err, &ea) {
			return ctx, status.Error(ea.code, ea.msg)
		}
		return ctx, status.Error(codes.Unauthenticated, err.Error())
	}
	return context.WithValue(ctx, principalKey{}, p), nil
}

// HTTP wraps h so a request needs a bearer token with scope need: 401 for
// a missing or wrong token, 403 for too small a scope.
func (a *Auth) HTTP(need Scope, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Check(r.Context(), r.Header.Get("Authorization"), need)
		if err != nil {
			httpAuthError(w, err)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// httpStatus is the HTTP status of a Check error: 401, 403 for too small a
// scope, 503 when the token store did not answer.
func httpStatus(err error) int {
	var ea *errAuth
	if errors.As(err, &ea) {
		switch ea.code {
		case codes.PermissionDenied:
			return http.StatusForbidden
		case codes.Unavailable:
			return http.StatusServiceUnavailable
		}
	}
	return http.StatusUnauthorized
}

// httpAuthError answers a failed Check, with WWW-Authenticate on a 401.
func httpAuthError(w http.ResponseWriter, err error) {
	code := httpStatus(err)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="shiploop"`)
	}
	http.Error(w, err.Error(), code)
}

// readVerbs start the names of RPCs that only read; readMethods are the
// read-only RPCs named otherwise. Everything else needs write, so a new
// RPC is guarded (fails closed) until it is named or listed here.
var (
	readVerbs   = []string{"Get", "List", "Watch", "Stream", "Find", "Query", "Search", "Describe"}
	readMethods = map[string]bool{
		"Coverage": true, "Dora": true, "DownloadArtifact": true, "Environments": true, "FlakyTests": true,
		"Overview": true, "Pipeline": true, "TestHistory": true,
	}
	// adminServices manage access itself; adminMethods hand out secrets
	// (GetForgeSettings returns a repository's forge API token, for gates).
	adminServices = []string{".TokenService/"}
	adminMethods  = map[string]bool{"GetForgeSettings": true}
)

// MethodScope is the scope a gRPC method needs ("/pkg.Service/Method"):
// admin for token management and GetForgeSettings (it returns a secret), read for Get*/List*/Watch*/Stream*/Find*/
// Query*/Search*/Describe* and a few listed read-only RPCs, write for
// the rest.
func MethodScope(fullMethod string) Scope {
	for _, s := range adminServices {
		if strings.Contains(fullMethod, s) {
			return ScopeAdmin
		}
	}
	name := fullMethod[strings.LastIndex(fullMethod, "/")+1:]
	if adminMethods[name] {
		return ScopeAdmin
	}
	if readMethods[name] {
		return ScopeRead
	}
	for _, v := range readVerbs {
		if rest, ok := strings.CutPrefix(name, v); ok && (rest == "" || rest[0] >= 'A' && rest[0] <= 'Z') {
			return ScopeRead
		}
	}
	return ScopeWrite
}
