package telemetry_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getsentry/sentry-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/shiploop/shiploop/pkg/telemetry"
)

// env is an environment for Config.Getenv: only the given variables are set.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// request is what a fake collector received.
type request struct {
	Method, Path, ContentType string
	Body                      []byte
}

// collector is an httptest server that records every request.
type collector struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []request
	got  chan struct{} // one send per request
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{got: make(chan struct{}, 100)}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		c.mu.Lock()
		c.reqs = append(c.reqs, request{r.Method, r.URL.Path, r.Header.Get("Content-Type"), b})
		c.mu.Unlock()
		c.got <- struct{}{}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *collector) requests() []request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]request(nil), c.reqs...)
}

// keepTracerProvider puts a no-op global tracer provider back after a test
// that made Setup install one.
func keepTracerProvider(t *testing.T) {
	prev := otel.GetTracerProvider()
	t.Cleanup(func() {
		if otel.GetTracerProvider() != prev {
			otel.SetTracerProvider(noop.NewTracerProvider())
		}
	})
}

func TestSetupWithoutVariablesExportsNothing(t *testing.T) {
	keepTracerProvider(t)
	var logs bytes.Buffer
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "shiploop-test", LogOutput: &logs, Getenv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Tracing() {
		t.Error("Tracing() = true with no OTEL_* variables")
	}
	_, span := otel.Tracer("test").Start(context.Background(), "nothing")
	if span.IsRecording() {
		t.Error("spans are recorded with no OTEL_* variables")
	}
	span.End()
	// The W3C propagator is installed anyway, so trace context passes through.
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(trace.ContextWithRemoteSpanContext(context.Background(), sc), carrier)
	if want := "00-01000000000000000000000000000000-0200000000000000-01"; carrier["traceparent"] != want {
		t.Errorf("traceparent %q, want %q", carrier["traceparent"], want)
	}
	tel.CaptureError(errors.New("goes nowhere")) // Sentry is off: a no-op
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	tel.Logger.Info("hello", "k", "v")
	if !strings.Contains(logs.String(), "msg=hello k=v") {
		t.Errorf("log output %q, want a text line", logs.String())
	}
}

func TestSetupOTLPHTTP(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		vars       func(url string) map[string]string
	}{
		{"OTEL_EXPORTER_OTLP_ENDPOINT is a base URL", "/v1/traces", func(u string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": u}
		}},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as-is", "/custom/traces", func(u string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": u + "/custom/traces", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_SERVICE_NAME": "from-env"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keepTracerProvider(t)
			c := newCollector(t)
			vars := tc.vars(c.URL)
			tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "shiploop-test", Version: "1.2.3", LogOutput: io.Discard, Getenv: env(vars)})
			if err != nil {
				t.Fatal(err)
			}
			if !tel.Tracing() {
				t.Fatal("Tracing() = false with an OTLP endpoint set")
			}
			_, span := otel.Tracer("test").Start(context.Background(), "unit-span")
			span.End()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tel.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			reqs := c.requests()
			if len(reqs) != 1 {
				t.Fatalf("collector got %d requests, want 1: %+v", len(reqs), reqs)
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != tc.path || r.ContentType != "application/x-protobuf" {
				t.Errorf("request %s %s (%s), want POST %s application/x-protobuf", r.Method, r.Path, r.ContentType, tc.path)
			}
			var export collectorpb.ExportTraceServiceRequest
			if err := proto.Unmarshal(r.Body, &export); err != nil {
				t.Fatalf("body is not an OTLP protobuf export: %v", err)
			}
			var names []string
			service := ""
			for _, rs := range export.GetResourceSpans() {
				for _, a := range rs.GetResource().GetAttributes() {
					if a.GetKey() == "service.name" {
						service = a.GetValue().GetStringValue()
					}
				}
				for _, ss := range rs.GetScopeSpans() {
					for _, s := range ss.GetSpans() {
						names = append(names, s.GetName())
					}
				}
			}
			if len(names) != 1 || names[0] != "unit-span" {
				t.Errorf("exported spans %v, want [unit-span]", names)
			}
			want := vars["OTEL_SERVICE_NAME"]
			if want == "" {
				want = "shiploop-test"
			}
			if service != want {
				t.Errorf("service.name %q, want %q", service, want)
			}
		})
	}
}

func TestSetupOTELNone(t *testing.T) {
	keepTracerProvider(t)
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{LogOutput: io.Discard, Getenv: env(map[string]string{
		"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
	})})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Tracing() {
		t.Error("Tracing() = true with OTEL_TRACES_EXPORTER=none")
	}
}

func TestSetupRejectsUnsupportedOTEL(t *testing.T) {
	for _, tc := range []struct {
		vars     map[string]string
		variable string
	}{
		{map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
	} {
		_, err := telemetry.Setup(context.Background(), telemetry.Config{LogOutput: io.Discard, Getenv: env(tc.vars)})
		if err == nil || !strings.Contains(err.Error(), tc.variable) {
			t.Errorf("Setup with %v = %v, want an error naming %s", tc.vars, err, tc.variable)
		}
	}
}

func TestSentry(t *testing.T) {
	c := newCollector(t)
	t.Cleanup(func() { sentry.CurrentHub().BindClient(nil) })
	dsn := "http://key@" + strings.TrimPrefix(c.URL, "http://") + "/1"
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "shiploop-test", Version: "1.2.3", LogOutput: io.Discard, Getenv: env(map[string]string{"SENTRY_DSN": dsn})})
	if err != nil {
		t.Fatal(err)
	}
	tel.CaptureError(errors.New("split brain on build 42"))
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	envelope := waitEnvelope(t, c, "split brain on build 42")
	if !strings.Contains(envelope, `"release":"1.2.3"`) || !strings.Contains(envelope, `"server_name":"shiploop-test"`) {
		t.Errorf("envelope lacks the release and server name:\n%s", envelope)
	}

	// Recover reports a panic, then panics again.
	func() {
		defer func() {
			if r := recover(); r != "disk on fire" {
				t.Errorf("Recover re-panicked with %v, want the original value", r)
			}
		}()
		defer tel.Recover()
		panic("disk on fire")
	}()
	waitEnvelope(t, c, "disk on fire")
}

func TestSentryBadDSN(t *testing.T) {
	_, err := telemetry.Setup(context.Background(), telemetry.Config{LogOutput: io.Discard, Getenv: env(map[string]string{"SENTRY_DSN": "not a dsn"})})
	if err == nil || !strings.Contains(err.Error(), "SENTRY_DSN") {
		t.Errorf("Setup with a bad SENTRY_DSN = %v, want an error naming SENTRY_DSN", err)
	}
}

// waitEnvelope waits for an envelope POSTed to /api/1/envelope/ that
// contains text and returns it.
func waitEnvelope(t *testing.T, c *collector, text string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for _, r := range c.requests() {
			if r.Method == http.MethodPost && r.Path == "/api/1/envelope/" && bytes.Contains(r.Body, []byte(text)) {
				return string(r.Body)
			}
		}
		select {
		case <-c.got:
		case <-deadline:
			var seen []string
			for _, r := range c.requests() {
				seen = append(seen, r.Method+" "+r.Path+": "+string(r.Body))
			}
			t.Fatalf("no envelope to /api/1/envelope/ containing %q; got:\n%s", text, strings.Join(seen, "\n"))
		}
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, "json", "warn")
	log.Info("dropped")
	log.Warn("kept", "n", 1)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("json logger wrote %q: %v", buf.String(), err)
	}
	if line["msg"] != "kept" || line["level"] != "WARN" || line["n"] != float64(1) {
		t.Errorf("json log line %v", line)
	}
}
