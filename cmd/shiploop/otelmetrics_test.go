package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
)

func TestMetricExporterFromEnv(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    bool // an exporter
		wantErr bool
	}{
		{name: "nothing set", env: nil},
		{name: "traces exporter only", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}},
		{name: "base endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, want: true},
		{name: "metrics endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4318/v1/metrics"}, want: true},
		{name: "grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: true},
		{name: "none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_METRICS_EXPORTER": "none"}},
		{name: "prometheus", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_METRICS_EXPORTER": "prometheus"}},
		{name: "unknown exporter", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_METRICS_EXPORTER": "statsd"}, wantErr: true},
		{name: "unknown protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp, err := metricExporterFromEnv(ctx, func(k string) string { return tc.env[k] })
			if (err != nil) != tc.wantErr || (exp != nil) != tc.want {
				t.Fatalf("exporter %v, err %v; want exporter %v, error %v", exp, err, tc.want, tc.wantErr)
			}
			if exp != nil {
				_ = exp.Shutdown(ctx)
			}
		})
	}
}

func TestStartOTelInterval(t *testing.T) {
	m := &promMetrics{reg: nil}
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_METRIC_EXPORT_INTERVAL": "soon"}
	if _, err := m.startOTel(context.Background(), func(k string) string { return env[k] }, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		t.Fatal("OTEL_METRIC_EXPORT_INTERVAL=soon accepted")
	}
}
