package e2e

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// TestMetricsOTLP: with OTEL_EXPORTER_OTLP_METRICS_ENDPOINT set, `shiploop
// up` pushes the metrics of /metrics over OTLP/HTTP (protobuf) every
// OTEL_METRIC_EXPORT_INTERVAL milliseconds, to a fake collector here.
func TestMetricsOTLP(t *testing.T) {
	var mu sync.Mutex
	names := map[string]bool{}
	var service string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/metrics" {
			t.Errorf("collector got %s %s", r.Method, r.URL.Path)
			http.NotFound(w, r)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req colmetricpb.ExportMetricsServiceRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			t.Errorf("collector: %s is not an ExportMetricsServiceRequest: %v", r.Header.Get("Content-Type"), err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rm := range req.GetResourceMetrics() {
			for _, a := range rm.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					names[m.GetName()] = true
				}
			}
		}
		mu.Unlock()
		out, _ := proto.Marshal(&colmetricpb.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	defer collector.Close()

	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", collector.URL+"/v1/metrics")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "500")
	t.Setenv("OTEL_SERVICE_NAME", "shiploop-otlp-test")
	startUp(t)

	want := []string{"shiploop_service_up", "shiploop_nats_connected", "shiploop_service_ready", "shiploop_agents", "go_goroutines"}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		var missing []string
		for _, n := range want {
			if !names[n] {
				missing = append(missing, n)
			}
		}
		var got []string
		for n := range names {
			got = append(got, n)
		}
		svc := service
		mu.Unlock()
		if len(missing) == 0 {
			if svc != "shiploop-otlp-test" {
				t.Errorf("resource service.name = %q, want OTEL_SERVICE_NAME's", svc)
			}
			return
		}
		if time.Now().After(deadline) {
			slices.Sort(got)
			t.Fatalf("the collector got no %s within 30s; it got: %s", strings.Join(missing, ", "), strings.Join(got, " "))
		}
	}
}
