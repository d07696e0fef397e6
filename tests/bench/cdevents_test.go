package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// BenchmarkCDEvents measures the CDEvents bridge of `shiploop up` with the
// v0.5.1 schemas loaded: export (internal build.started events published on
// the embedded NATS → validated CDEvents POSTed to an HTTP sink) and intake
// (service.deployed CDEvents POSTed in CloudEvents structured mode, each
// validated against its schema and published as deploy.finished).
func BenchmarkCDEvents(b *testing.B) {
	const n, clients = 2000, 16
	schemas, _ := filepath.Abs("../../../shared/testdata/cdevents")
	var received atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.HasPrefix(r.Header.Get("ce-type"), "dev.cdevents.build.started.") {
			received.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer sink.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	natsAddr := l.Addr().String()
	l.Close()
	inst := startUp(b, "--cdevents-schemas", schemas, "--cdevents-sink", sink.URL, "--nats-listen", natsAddr,
		"--carbon-listen", "", "--pickle-listen", "")

	// Export.
	nc, err := bus.Connect("nats://"+natsAddr, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	pub, err := bus.New(ctx, nc, bus.Options{Source: "/bench"})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for i := range n {
		if err := pub.Publish(ctx, bus.Event{Type: "build.started", Repository: "bench/cde", Subject: fmt.Sprint(i),
			Data: &eventsv1.BuildStarted{BuildId: fmt.Sprintf("b%d", i), Repository: "bench/cde"}}); err != nil {
			b.Fatal(err)
		}
	}
	published := time.Since(start)
	deadline := time.Now().Add(5 * time.Minute)
	for received.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("sink got %d of %d CDEvents\nstderr:\n%s", received.Load(), n, inst.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	exported := time.Since(start)

	// Intake.
	raw, err := os.ReadFile(filepath.Join(schemas, "conformance", "service_deployed.json"))
	if err != nil {
		b.Fatal(err)
	}
	bodies := make([][]byte, n)
	for i := range bodies {
		ce := strings.Replace(string(raw), "271069a8-fc18-44f1-b38f-9d70a1695819", uuid.NewString(), 1)
		bodies[i], _ = json.Marshal(map[string]any{"specversion": "1.0", "id": fmt.Sprint(i), "source": "/bench",
			"type": "dev.cdevents.service.deployed.0.3.0", "data": json.RawMessage(ce)})
	}
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	start = time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				resp, err := http.Post(inst.HTTPURL+"/cdevents", "application/cloudevents+json", bytes.NewReader(bodies[i]))
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					failed.Add(1)
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	intake := time.Since(start)
	if failed.Load() > 0 {
		b.Fatalf("%d of %d POST /cdevents failed", failed.Load(), n)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) string {
		return fmt.Sprintf("%.1f ms", float64(lat[int(p*float64(n-1))].Microseconds())/1000)
	}
	rate := func(d time.Duration) string { return fmt.Sprintf("%s events/s", commas(int64(float64(n)/d.Seconds()))) }
	body := fmt.Sprintf(`%d internal events out, %d CDEvents in (%d concurrent clients); `+"`shiploop up`"+` (embedded NATS, SQLite) with the v0.5.1 schemas loaded.

| measure | result |
|---|---|
| export: published → validated CDEvent POSTed to the sink | %s (%s to publish, %s until the sink had all) |
| intake: POST /cdevents → 202 (schema-checked, on JetStream) | %s |
| intake latency p50 / p90 / p99 | %s / %s / %s |
`, n, n, clients, rate(exported), published.Round(time.Millisecond), exported.Round(time.Millisecond), rate(intake), q(0.5), q(0.9), q(0.99))
	b.ReportMetric(float64(n)/exported.Seconds(), "exported/s")
	b.ReportMetric(float64(n)/intake.Seconds(), "accepted/s")
	if err := writeSection("cdevents", body); err != nil {
		b.Fatal(err)
	}
}

// commas formats 12345 as "12,345".
func commas(v int64) string {
	s := fmt.Sprint(v)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
