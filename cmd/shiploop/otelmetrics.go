package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	promBridge "go.opentelemetry.io/contrib/bridges/prometheus"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// startOTel exports the metrics of /metrics over OTLP as well, when the
// environment asks for it (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT set, OTEL_METRICS_EXPORTER not
// "none"): the Prometheus registry is bridged into an OTel MeterProvider
// whose PeriodicReader gathers it every OTEL_METRIC_EXPORT_INTERVAL
// milliseconds (default 60000). It returns a shutdown that pushes a last
// export, or nil when nothing is exported.
func (m *promMetrics) startOTel(ctx context.Context, getenv func(string) string, log *slog.Logger) (func(context.Context) error, error) {
	exp, err := metricExporterFromEnv(ctx, getenv)
	if err != nil || exp == nil {
		return nil, err
	}
	fail := func(err error) (func(context.Context) error, error) {
		_ = exp.Shutdown(ctx)
		return nil, err
	}
	var ropts []metric.PeriodicReaderOption
	if v := strings.TrimSpace(getenv("OTEL_METRIC_EXPORT_INTERVAL")); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return fail(fmt.Errorf("OTEL_METRIC_EXPORT_INTERVAL=%q: want milliseconds", v))
		}
		ropts = append(ropts, metric.WithInterval(time.Duration(ms)*time.Millisecond))
	}
	if v := strings.TrimSpace(getenv("OTEL_METRIC_EXPORT_TIMEOUT")); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return fail(fmt.Errorf("OTEL_METRIC_EXPORT_TIMEOUT=%q: want milliseconds", v))
		}
		ropts = append(ropts, metric.WithTimeout(time.Duration(ms)*time.Millisecond))
	}
	ropts = append(ropts, metric.WithProducer(promBridge.NewMetricProducer(promBridge.WithGatherer(m.reg))))
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "shiploop"
	}
	// resource.WithFromEnv reads OTEL_RESOURCE_ATTRIBUTES and
	// OTEL_SERVICE_NAME from the process environment.
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithHost(),
		resource.WithAttributes(semconv.ServiceName(name), semconv.ServiceVersion(version)))
	if err != nil {
		log.Warn("OTel metrics resource", "err", err)
	}
	mp := metric.NewMeterProvider(metric.WithReader(metric.NewPeriodicReader(exp, ropts...)), metric.WithResource(res))
	log.Info("exporting metrics over OTLP")
	return mp.Shutdown, nil
}

// metricExporterFromEnv picks the OTLP metric exporter as the
// OpenTelemetry spec describes: OTEL_METRICS_EXPORTER (otlp, or none or
// prometheus for /metrics alone),
// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT (used as-is) or
// OTEL_EXPORTER_OTLP_ENDPOINT (a base URL: /v1/metrics is added for HTTP),
// OTEL_EXPORTER_OTLP_METRICS_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL
// (http/protobuf, the default, or grpc). No endpoint: nil. The exporters
// read the other OTEL_EXPORTER_OTLP_* variables (headers, TLS, timeout,
// temporality) themselves.
func metricExporterFromEnv(ctx context.Context, getenv func(string) string) (metric.Exporter, error) {
	switch kind := strings.TrimSpace(getenv("OTEL_METRICS_EXPORTER")); kind {
	case "none", "prometheus":
		// prometheus: /metrics, which is always served, and nothing else.
		return nil, nil
	case "", "otlp":
	default:
		return nil, fmt.Errorf("OTEL_METRICS_EXPORTER=%q is not supported (use otlp, prometheus or none)", kind)
	}
	own := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
	base := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if own == "" && base == "" {
		return nil, nil
	}
	proto := getenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "", "http/protobuf":
		u := own
		if u == "" {
			u = strings.TrimSuffix(base, "/") + "/v1/metrics"
		}
		return otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(u))
	case "grpc":
		u := own
		if u == "" {
			u = base
		}
		return otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpointURL(u))
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q is not supported for metrics (use grpc or http/protobuf)", proto)
	}
}
