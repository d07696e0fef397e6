package server

import (
	"context"
	"net"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestRoutedSpanNames: spans are named by the ServeMux pattern matched,
// never by the raw path; an unmatched request's span by its method.
func TestRoutedSpanNames(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	defer otel.SetTracerProvider(prev)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks/{forge}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/graphite/", func(w http.ResponseWriter, r *http.Request) {})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Middleware that copies the request (as StripDSNPrefix does) hides
	// the pattern from otelhttp; Routed still names the span.
	copying := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { Routed(mux).ServeHTTP(w, r.WithContext(r.Context())) })
	go func() { done <- ServeHTTP(ctx, lis, copying, nil) }()
	base := "http://" + lis.Addr().String()
	for _, r := range []struct{ method, path string }{{"POST", "/hooks/github"}, {"GET", "/graphite/render"}, {"GET", "/nothing/here"}} {
		req, _ := http.NewRequest(r.method, base+r.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	cancel()
	<-done
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	want := []string{"POST /hooks/{forge}", "GET /graphite/", "GET"}
	if len(names) != len(want) {
		t.Fatalf("spans %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Errorf("span %d named %q, want %q", i, names[i], want[i])
		}
	}
}
