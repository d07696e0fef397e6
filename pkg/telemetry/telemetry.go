// Package telemetry sets up shiploop's traces, error reporting and logs from
// the standard environment: OpenTelemetry from OTEL_* variables (nothing is
// exported, and almost no work is done, when they are unset), sentry-go from
// SENTRY_DSN, and log/slog.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/getsentry/sentry-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// Config says how the process reports on itself.
type Config struct {
	// ServiceName for traces ("shiploop" or "shiploop-builds").
	ServiceName string
	Version     string
	// LogFormat is "text" (default) or "json"; LogLevel "debug", "info", "warn", "error".
	LogFormat string
	LogLevel  string
	LogOutput io.Writer
	// Getenv reads the environment (os.Getenv when nil), for tests.
	Getenv func(string) string
}

// Telemetry holds what Setup started; Shutdown flushes it.
type Telemetry struct {
	Logger   *slog.Logger
	tp       *sdktrace.TracerProvider
	sentryOn bool
}

// Setup configures the global tracer provider and propagator, Sentry and a
// logger. The W3C trace-context propagator is always installed so that
// incoming traceparent headers are passed on even when nothing is exported.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	t := &Telemetry{Logger: NewLogger(cfg.LogOutput, cfg.LogFormat, cfg.LogLevel)}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))

	exp, err := exporterFromEnv(ctx, getenv)
	if err != nil {
		return nil, err
	}
	if exp != nil {
		name := getenv("OTEL_SERVICE_NAME")
		if name == "" {
			name = cfg.ServiceName
		}
		res, _ := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
			semconv.ServiceName(name), semconv.ServiceVersion(cfg.Version)))
		t.tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		otel.SetTracerProvider(t.tp)
	}

	if dsn := getenv("SENTRY_DSN"); dsn != "" {
		err := sentry.Init(sentry.ClientOptions{
			Dsn:         dsn,
			Release:     cfg.Version,
			Environment: getenv("SENTRY_ENVIRONMENT"),
			ServerName:  cfg.ServiceName,
		})
		if err != nil {
			return nil, fmt.Errorf("SENTRY_DSN: %w", err)
		}
		t.sentryOn = true
	}
	return t, nil
}

// exporterFromEnv picks an OTLP exporter the way the OpenTelemetry spec
// describes: OTEL_TRACES_EXPORTER (otlp|none), OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL
// (grpc|http/protobuf). No endpoint and no explicit exporter: nil.
func exporterFromEnv(ctx context.Context, getenv func(string) string) (*otlptrace.Exporter, error) {
	kind := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		endpoint = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	switch kind {
	case "none":
		return nil, nil
	case "", "otlp":
		if kind == "" && endpoint == "" {
			return nil, nil
		}
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q is not supported (use otlp or none)", kind)
	}
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	// The exporters read the other OTEL_EXPORTER_OTLP_* variables (headers,
	// TLS, timeout) from the process environment themselves; the endpoint is
	// passed on so that it too comes from getenv.
	switch proto {
	case "", "http/protobuf":
		var opts []otlptracehttp.Option
		if u := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")); u != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(u)) // used as-is
		} else if u := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); u != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(u, "/")+"/v1/traces")) // a base URL
		}
		return otlptracehttp.New(ctx, opts...)
	case "grpc":
		var opts []otlptracegrpc.Option
		if u := strings.TrimSpace(endpoint); u != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(u))
		}
		return otlptracegrpc.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q is not supported (use grpc or http/protobuf)", proto)
	}
}

// Tracing reports whether spans are exported.
func (t *Telemetry) Tracing() bool { return t.tp != nil }

// Shutdown flushes spans and Sentry events.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.tp != nil {
		errs = append(errs, t.tp.Shutdown(ctx))
	}
	if t.sentryOn {
		sentry.Flush(2 * time.Second)
	}
	return errors.Join(errs...)
}

// Recover reports a panic to Sentry (when on) and re-panics; deferred at the
// top of goroutines that must not die silently.
func (t *Telemetry) Recover() {
	if r := recover(); r != nil {
		if t.sentryOn {
			sentry.CurrentHub().Recover(r)
			sentry.Flush(2 * time.Second)
		}
		panic(r)
	}
}

// CaptureError sends err to Sentry when on.
func (t *Telemetry) CaptureError(err error) {
	if t.sentryOn && err != nil {
		sentry.CaptureException(err)
	}
}

// NewLogger makes a slog logger. format is "text" or "json".
func NewLogger(w io.Writer, format, level string) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
