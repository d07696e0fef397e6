package tokens_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/tokens"
	tokensv1 "github.com/shiploop/shiploop/proto/shiploop/tokens/v1"
)

const operator = "operator-secret"

// probe is a service with one read RPC (GetThing) and one write RPC
// (DoThing), both answering Empty.
var probe = grpc.ServiceDesc{
	ServiceName: "test.Probe",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "GetThing", Handler: emptyHandler("/test.Probe/GetThing")},
		{MethodName: "DoThing", Handler: emptyHandler("/test.Probe/DoThing")},
	},
}

func emptyHandler(full string) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		in := new(emptypb.Empty)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, req any) (any, error) { return &emptypb.Empty{}, nil }
		if ic == nil {
			return h(ctx, in)
		}
		return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: full}, h)
	}
}

type env struct {
	conn  *grpc.ClientConn
	store *tokens.Store
	auth  *server.Auth
}

func setup(t *testing.T) *env {
	t.Helper()
	b := bustest.Start(t, bus.Options{Source: "/test"})
	st, err := tokens.Open(t.Context(), b.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	g := server.NewGRPC(server.GRPCConfig{Token: operator, Tokens: st.Lookup, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tokensv1.RegisterTokenServiceServer(g, &tokens.GRPC{Store: st})
	g.RegisterService(&probe, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); <-done })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{conn: conn, store: st, auth: g.Auth}
}

func as(token string) context.Context {
	ctx := context.Background()
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func call(e *env, token, method string) codes.Code {
	err := e.conn.Invoke(as(token), "/test.Probe/"+method, &emptypb.Empty{}, &emptypb.Empty{})
	return status.Code(err)
}

func TestScopes(t *testing.T) {
	e := setup(t)
	admin := tokensv1.NewTokenServiceClient(e.conn)
	secrets := map[string]string{}
	for _, sc := range []string{"read", "write", "admin"} {
		resp, err := admin.CreateToken(as(operator), &tokensv1.CreateTokenRequest{Name: "ci-" + sc, Scope: sc})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(resp.GetSecret(), "slp_") || resp.GetToken().GetScope() != sc {
			t.Fatalf("CreateToken = %v", resp)
		}
		secrets[sc] = resp.GetSecret()
	}
	cases := []struct {
		token, method string
		want          codes.Code
	}{
		{"", "GetThing", codes.Unauthenticated},
		{"wrong", "GetThing", codes.Unauthenticated},
		{secrets["read"], "GetThing", codes.OK},
		{secrets["read"], "DoThing", codes.PermissionDenied},
		{secrets["write"], "DoThing", codes.OK},
		{secrets["admin"], "DoThing", codes.OK},
		{operator, "DoThing", codes.OK},
	}
	for _, c := range cases {
		if got := call(e, c.token, c.method); got != c.want {
			t.Errorf("%s with token %.8q: %v, want %v", c.method, c.token, got, c.want)
		}
	}
	// Token management needs admin.
	if _, err := admin.ListTokens(as(secrets["write"]), &tokensv1.ListTokensRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("ListTokens with write: %v, want PermissionDenied", err)
	}
	list, err := admin.ListTokens(as(secrets["admin"]), &tokensv1.ListTokensRequest{})
	if err != nil || len(list.GetTokens()) != 3 {
		t.Fatalf("ListTokens = %v, %v", list, err)
	}
	// Secrets are stored hashed: no record holds the secret.
	recs, _ := e.store.List(t.Context())
	for _, r := range recs {
		if r.Hash == secrets[r.Scope] || strings.Contains(r.Hash, secrets[r.Scope][4:]) {
			t.Fatalf("record %+v holds the secret", r)
		}
	}
	if _, err := admin.CreateToken(as(operator), &tokensv1.CreateTokenRequest{Name: "ci-read", Scope: "read"}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, err := admin.CreateToken(as(operator), &tokensv1.CreateTokenRequest{Name: "x", Scope: "root"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad scope: %v", err)
	}
	// Revoked: the token stops working at once.
	if _, err := admin.RevokeToken(as(operator), &tokensv1.RevokeTokenRequest{Name: "ci-write"}); err != nil {
		t.Fatal(err)
	}
	if got := call(e, secrets["write"], "DoThing"); got != codes.Unauthenticated {
		t.Fatalf("revoked token: %v, want Unauthenticated", got)
	}
	if _, err := admin.RevokeToken(as(operator), &tokensv1.RevokeTokenRequest{Name: "ci-write"}); status.Code(err) != codes.NotFound {
		t.Fatalf("revoking twice: %v", err)
	}

	// The same check on HTTP routes: 401 / 403 / pass.
	h := e.auth.HTTP(server.ScopeWrite, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for tok, want := range map[string]int{"": 401, "nope": 401, secrets["read"]: 403, secrets["admin"]: 204, operator: 204} {
		req := httptest.NewRequest(http.MethodPost, "/x", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("HTTP with %.8q: %d, want %d (%s)", tok, rec.Code, want, rec.Body)
		}
	}
}

func TestMethodScope(t *testing.T) {
	for m, want := range map[string]server.Scope{
		"/shiploop.builds.v1.BuildService/GetBuild":     server.ScopeRead,
		"/shiploop.builds.v1.BuildService/WatchEvents":  server.ScopeRead,
		"/shiploop.builds.v1.BuildService/TriggerBuild": server.ScopeWrite,
		"/shiploop.deploys.v1.DeployService/Promote":    server.ScopeWrite,
		"/shiploop.dashboards.v1.DashboardService/Dora": server.ScopeRead,
		"/shiploop.tokens.v1.TokenService/ListTokens":   server.ScopeAdmin,
		"/x.Y/Listen": server.ScopeWrite, // "List" must be a whole word
		"/shiploop.metrics.v1.MetricsService/Query":      server.ScopeRead,
		"/shiploop.errortrack.v1.ErrorService/RotateKey": server.ScopeWrite,
	} {
		if got := server.MethodScope(m); got != want {
			t.Errorf("MethodScope(%s) = %v, want %v", m, got, want)
		}
	}
}
