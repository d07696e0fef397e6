package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shiploop/shiploop/pkg/server"
)

const token = "s3cret-token"

// echoService is a tiny hand-written gRPC service: Echo returns its request
// ("panic" panics, "block" waits for release), Ticks streams until the
// client or the server ends the call ("panic" panics first).
const echoService = "shiploop.test.v1.EchoService"

type echoImpl struct {
	release chan struct{} // Echo("block") waits for it
	blocked chan struct{} // signalled when Echo("block") starts waiting
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				e := srv.(*echoImpl)
				switch v := req.(*wrapperspb.StringValue).GetValue(); v {
				case "panic":
					panic("echo handler panics")
				case "block":
					e.blocked <- struct{}{}
					<-e.release
				}
				return req, nil
			}
			if interceptor == nil {
				return h(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + echoService + "/Echo"}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Ticks",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := stream.RecvMsg(in); err != nil {
				return err
			}
			if in.GetValue() == "panic" {
				panic("ticks handler panics")
			}
			if err := stream.SendMsg(wrapperspb.String("tick")); err != nil {
				return err
			}
			<-stream.Context().Done()
			return stream.Context().Err()
		},
	}},
}

type grpcHarness struct {
	conn    *grpc.ClientConn
	impl    *echoImpl
	log     *syncBuffer
	cancel  context.CancelFunc
	served  chan error // Serve's result
	address string
}

// startGRPC serves a server.NewGRPC with the token and the echo service on
// a free port. Cleanup stops it if the test did not.
func startGRPC(t *testing.T) *grpcHarness {
	t.Helper()
	h := &grpcHarness{impl: &echoImpl{release: make(chan struct{}), blocked: make(chan struct{}, 1)}, log: &syncBuffer{}, served: make(chan error, 1)}
	srv := server.NewGRPC(server.GRPCConfig{Token: token, Logger: slog.New(slog.NewTextHandler(h.log, nil))})
	srv.RegisterService(&echoDesc, h.impl)
	lis, err := server.Listen("127.0.0.1:0", "--grpc-listen")
	if err != nil {
		t.Fatal(err)
	}
	h.address = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.served <- srv.Serve(ctx, lis) }()
	h.conn, err = grpc.NewClient(h.address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.conn.Close()
		cancel()
		select {
		case <-h.served:
		case <-time.After(10 * time.Second):
			t.Error("gRPC server still serving 10s after its context ended")
		}
	})
	return h
}

func (h *grpcHarness) echo(ctx context.Context, value string) (string, error) {
	out := new(wrapperspb.StringValue)
	err := h.conn.Invoke(ctx, "/"+echoService+"/Echo", wrapperspb.String(value), out)
	return out.GetValue(), err
}

func (h *grpcHarness) ticks(ctx context.Context, value string) (grpc.ClientStream, error) {
	st, err := h.conn.NewStream(ctx, &echoDesc.Streams[0], "/"+echoService+"/Ticks")
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(wrapperspb.String(value)); err != nil {
		return nil, err
	}
	return st, st.CloseSend()
}

func withToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func wantCode(t *testing.T, what string, err error, code codes.Code) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("%s: %v, want code %s", what, err, code)
	}
	return st
}

func TestGRPCToken(t *testing.T) {
	h := startGRPC(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("health and reflection need no token", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(h.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health check = %v, %v; want SERVING", resp.GetStatus(), err)
		}
		st, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("reflection without a token: %v", err)
		}
		var names []string
		for _, s := range r.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !strings.Contains(strings.Join(names, " "), echoService) {
			t.Errorf("reflection lists %v, want %s among them", names, echoService)
		}
		_ = st.CloseSend()
	})

	t.Run("no token", func(t *testing.T) {
		_, err := h.echo(ctx, "hi")
		st := wantCode(t, "Echo without a token", err, codes.Unauthenticated)
		for _, fix := range []string{"authorization: Bearer", "--token", "SHIPLOOP_TOKEN"} {
			if !strings.Contains(st.Message(), fix) {
				t.Errorf("message %q does not name the fix (%q)", st.Message(), fix)
			}
		}
		s, err := h.ticks(ctx, "hi")
		if err == nil {
			err = s.RecvMsg(new(wrapperspb.StringValue))
		}
		wantCode(t, "stream without a token", err, codes.Unauthenticated)
	})

	t.Run("wrong token", func(t *testing.T) {
		_, err := h.echo(withToken(ctx, "not-"+token), "hi")
		wantCode(t, "Echo with a wrong token", err, codes.Unauthenticated)
		_, err = h.echo(metadata.AppendToOutgoingContext(ctx, "authorization", token), "hi")
		wantCode(t, "Echo with the token but no Bearer scheme", err, codes.Unauthenticated)
		s, err := h.ticks(withToken(ctx, "not-"+token), "hi")
		if err == nil {
			err = s.RecvMsg(new(wrapperspb.StringValue))
		}
		wantCode(t, "stream with a wrong token", err, codes.Unauthenticated)
	})

	t.Run("right token", func(t *testing.T) {
		got, err := h.echo(withToken(ctx, token), "hi")
		if err != nil || got != "hi" {
			t.Fatalf("Echo = %q, %v; want hi", got, err)
		}
		sctx, scancel := context.WithCancel(withToken(ctx, token))
		defer scancel()
		s, err := h.ticks(sctx, "hi")
		if err != nil {
			t.Fatal(err)
		}
		tick := new(wrapperspb.StringValue)
		if err := s.RecvMsg(tick); err != nil || tick.GetValue() != "tick" {
			t.Fatalf("Ticks = %q, %v", tick.GetValue(), err)
		}
	})
}

func TestGRPCPanicIsInternalAndServerKeepsServing(t *testing.T) {
	h := startGRPC(t)
	ctx, cancel := context.WithTimeout(withToken(context.Background(), token), 10*time.Second)
	defer cancel()

	_, err := h.echo(ctx, "panic")
	st := wantCode(t, "panicking Echo", err, codes.Internal)
	if strings.Contains(st.Message(), "echo handler panics") {
		t.Errorf("the panic value leaks to the client: %q", st.Message())
	}
	s, err := h.ticks(ctx, "panic")
	if err == nil {
		err = s.RecvMsg(new(wrapperspb.StringValue))
	}
	wantCode(t, "panicking stream", err, codes.Internal)

	if got, err := h.echo(ctx, "still here"); err != nil || got != "still here" {
		t.Fatalf("Echo after the panics = %q, %v", got, err)
	}
	log := h.log.String()
	for _, want := range []string{"panic in gRPC handler", "echo handler panics", "panic in gRPC stream", "ticks handler panics", "/" + echoService + "/Echo"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestGRPCServeStopsOnCancel(t *testing.T) {
	h := startGRPC(t)
	ctx := withToken(context.Background(), token)

	// An in-flight unary call finishes; an open stream is cut after the
	// grace period; Serve returns nil.
	unary := make(chan error, 1)
	go func() {
		got, err := h.echo(ctx, "block")
		if err == nil && got != "block" {
			err = errors.New("Echo answered " + got)
		}
		unary <- err
	}()
	s, err := h.ticks(ctx, "hold")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(new(wrapperspb.StringValue)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.impl.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("Echo(block) did not reach the handler")
	}

	start := time.Now()
	h.cancel()
	close(h.impl.release)
	if err := <-unary; err != nil {
		t.Errorf("the in-flight call failed on shutdown: %v", err)
	}
	select {
	case err := <-h.served:
		if err != nil {
			t.Errorf("Serve = %v, want nil after the context ended", err)
		}
		t.Logf("Serve returned %v after cancel", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10s after its context ended (with a stream open)")
	}
	if err := s.RecvMsg(new(wrapperspb.StringValue)); err == nil {
		t.Error("the open stream got another message after the server stopped")
	}
	h.served <- nil // for the cleanup
}

func TestListenNamesTheFlag(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = server.Listen(taken.Addr().String(), "--grpc-listen")
	if err == nil || !strings.Contains(err.Error(), "--grpc-listen") || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("Listen on a taken address = %v, want an error naming the address and --grpc-listen", err)
	}
}

func TestServeHTTP(t *testing.T) {
	log := &syncBuffer{}
	release, blocked := make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic("http handler panics") })
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(blocked)
		<-release
		_, _ = io.WriteString(w, "slow ok")
	})
	lis, err := server.Listen("127.0.0.1:0", "--http-listen")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- server.ServeHTTP(ctx, lis, mux, slog.New(slog.NewTextHandler(log, nil))) }()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	get := func(path string) (int, string, error) {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}

	if code, body, err := get("/ok"); err != nil || code != 200 || body != "ok" {
		t.Fatalf("GET /ok = %d %q %v", code, body, err)
	}
	code, body, err := get("/panic")
	if err != nil || code != http.StatusInternalServerError {
		t.Fatalf("GET /panic = %d %q %v, want 500", code, body, err)
	}
	if strings.Contains(body, "http handler panics") {
		t.Errorf("the panic value leaks to the client: %q", body)
	}
	if !strings.Contains(log.String(), "panic in HTTP handler") || !strings.Contains(log.String(), "http handler panics") {
		t.Errorf("the panic was not logged:\n%s", log)
	}
	// http.ErrAbortHandler aborts the response, as net/http documents.
	if code, _, err := get("/abort"); err == nil {
		t.Errorf("GET /abort = %d, want the connection aborted", code)
	}
	if code, body, err := get("/ok"); err != nil || code != 200 || body != "ok" {
		t.Fatalf("GET /ok after the panics = %d %q %v", code, body, err)
	}

	// Shutdown on cancel lets the request in flight finish, then returns nil.
	slow := make(chan string, 1)
	go func() {
		code, body, err := get("/slow")
		if err != nil {
			body = err.Error()
		}
		slow <- http.StatusText(code) + " " + body
	}()
	select {
	case <-blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("GET /slow did not reach the handler")
	}
	cancel()
	close(release)
	if got := <-slow; got != "OK slow ok" {
		t.Errorf("the request in flight during shutdown got %q", got)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeHTTP = %v, want nil after the context ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeHTTP still running 10s after its context ended")
	}
	if _, _, err := get("/ok"); err == nil {
		t.Error("the server still answers after shutdown")
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
