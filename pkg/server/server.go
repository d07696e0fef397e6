// Package server is shiploop's one way to serve HTTP and gRPC: tracing,
// panic recovery, bearer-token auth, health and reflection, and graceful
// shutdown when the context ends.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// GRPCConfig configures a gRPC server.
type GRPCConfig struct {
	// Token, when set, is required as "authorization: Bearer <token>" on
	// every call except health checks and reflection.
	Token string
	// Tokens looks up tokens made with `shiploop token create` (stored
	// hashed); each call then needs the scope MethodScope names.
	Tokens TokenLookup
	Logger *slog.Logger
	// TLS, when set, serves gRPC over TLS (mutual TLS when it requires
	// client certificates).
	TLS *tls.Config
	// Options are added to the server's (interceptors for metrics; they
	// run after recovery and auth).
	Options []grpc.ServerOption
}

// GRPC is a gRPC server with health and reflection registered.
type GRPC struct {
	*grpc.Server
	Health *health.Server
	// Auth is the server's token check, for HTTP routes to share
	// (Auth.HTTP(ScopeWrite, h) on mutating routes).
	Auth *Auth
}

// NewGRPC makes a gRPC server. Register services on it, then Serve.
func NewGRPC(cfg GRPCConfig) *GRPC {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	auth := &Auth{AdminToken: cfg.Token, Lookup: cfg.Tokens}
	opts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler()),
		grpc.ChainUnaryInterceptor(recoverUnary(log), authUnary(auth)),
		grpc.ChainStreamInterceptor(recoverStream(log), authStream(auth)),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	opts = append(opts, cfg.Options...)
	s := grpc.NewServer(opts...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	return &GRPC{Server: s, Health: hs, Auth: auth}
}

// Serve serves on lis until ctx ends, then stops gracefully (in-flight
// unary calls finish; streams are cancelled after a grace period).
func (g *GRPC) Serve(ctx context.Context, lis net.Listener) error {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		g.Health.Shutdown()
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			g.Stop()
		}
	}()
	err := g.Server.Serve(lis)
	<-stopped
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

func exempt(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") || strings.HasPrefix(method, "/grpc.reflection.")
}

func authUnary(a *Auth) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := a.checkGRPC(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// authedStream carries the checked caller in the stream's context.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s authedStream) Context() context.Context { return s.ctx }

func authStream(a *Auth) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := a.checkGRPC(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, authedStream{ss, ctx})
	}
}

func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in gRPC handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
			}
		}()
		return h(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in gRPC stream", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
			}
		}()
		return h(srv, ss)
	}
}

// ServeHTTP serves h on lis until ctx ends, then shuts down gracefully.
// Requests are traced and panics become 500s. A span is named by the
// request's method until Routed renames it by the route pattern matched:
// never by the raw path, whose values (ids, repositories) are unbounded.
func ServeHTTP(ctx context.Context, lis net.Listener, h http.Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	srv := &http.Server{
		Handler:           otelhttp.NewHandler(recoverHTTP(h, log), "http", otelhttp.WithSpanNameFormatter(spanName)),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
	}()
	err := srv.Serve(lis)
	<-stopped
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// spanName names a request's span: by its route pattern once the mux
// matched one (otelhttp asks again after the handler), else its method.
func spanName(_ string, r *http.Request) string {
	if r.Pattern != "" {
		return RouteName(r.Method, r.Pattern)
	}
	return r.Method
}

// Routed wraps a ServeMux (or any handler that sets r.Pattern, as the Go
// 1.22 ServeMux does on the request it is given) so the request's span is
// named by the pattern matched, "POST /hooks/{forge}", once it is served,
// also when middleware between ServeHTTP and the mux copied the request.
// Patterns without a method get the request's: "GET /graphite/".
func Routed(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		if r.Pattern == "" {
			return
		}
		span := trace.SpanFromContext(r.Context())
		if !span.IsRecording() {
			return
		}
		span.SetName(RouteName(r.Method, r.Pattern))
		span.SetAttributes(semconv.HTTPRoute(r.Pattern))
	})
}

// RouteName is a span name for a request matched by a ServeMux pattern:
// the pattern, with the request's method in front when it names none.
func RouteName(method, pattern string) string {
	if m, _, ok := strings.Cut(pattern, " "); ok && m != "" && !strings.Contains(m, "/") {
		return pattern
	}
	return method + " " + pattern
}

func recoverHTTP(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if rec := recover(); rec != nil {
				if rec == http.ErrAbortHandler {
					panic(rec)
				}
				log.Error("panic in HTTP handler", "path", r.URL.Path, "panic", rec, "stack", string(debug.Stack()))
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// Listen opens a TCP listener with an error that names the flag to change.
func Listen(addr, flag string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w (choose another address with %s)", addr, err, flag)
	}
	return lis, nil
}

// bearer takes the token out of an Authorization value; the scheme is
// case-insensitive (RFC 9110 §11.1).
func bearer(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}
