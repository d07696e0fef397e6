package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// BenchmarkErrortrackIngest posts sentry-go-shaped error envelopes (the
// captured 1.9 KB chained error, each with its own event id) over HTTP to
// `shiploop up` from 32 clients, and measures the intake (each 200 means
// the envelope is durable on JetStream) and the end-to-end rate until every
// event is grouped and stored. Figures go to docs/benchmarks.md.
func BenchmarkErrortrackIngest(b *testing.B) {
	const n, clients = 5000, 32
	tmpl, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "testdata", "sentry", "captured", "sentry-go-0.50.0", "01_error_chained.envelope"))
	if err != nil {
		b.Skipf("shared Sentry fixtures: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	inst := startUp(b, "--http-listen", addr)
	cl := errortrackv1.NewErrorServiceClient(inst.conn)
	ctx := context.Background()
	pr, err := cl.CreateProject(ctx, &errortrackv1.CreateProjectRequest{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	key, pid := pr.GetKey().GetPublicKey(), pr.GetProject().GetId()
	url := fmt.Sprintf("%s/api/%d/envelope/", inst.HTTPURL, pid)
	body := bytes.ReplaceAll(tmpl, []byte("ebc4a82cdbc040f0a88539b6acca6edf"), []byte("%032x"))
	body = bytes.Replace(body, []byte("http://publickey123@127.0.0.1:18999/42"), fmt.Appendf(nil, "http://%s@%s/%d", key, addr, pid), 1)
	body = bytes.ReplaceAll(body, []byte("%"), []byte("%%"))
	body = bytes.ReplaceAll(body, []byte("%%032x"), []byte("%032x"))
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	client := &http.Client{Transport: tr}
	lat := make([]time.Duration, n)
	var failures sync.Map
	var wg sync.WaitGroup
	next := make(chan int)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(fmt.Appendf(nil, string(body), i+1, i+1)))
				req.Header.Set("X-Sentry-Auth", "Sentry sentry_version=7, sentry_client=sentry.go/0.50.0, sentry_key="+key)
				req.Header.Set("Content-Type", "application/x-sentry-envelope")
				t0 := time.Now()
				resp, err := client.Do(req)
				lat[i] = time.Since(t0)
				if err != nil {
					failures.Store(i, err.Error())
					continue
				}
				if resp.StatusCode != 200 {
					failures.Store(i, resp.Status)
				}
				resp.Body.Close()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	intake := time.Since(start)
	failed := 0
	failures.Range(func(k, v any) bool { failed++; b.Logf("request %v: %v", k, v); return failed < 5 })
	if failed > 0 {
		b.Fatalf("%d requests failed", failed)
	}
	// Until every event is grouped and stored.
	deadline := time.Now().Add(10 * time.Minute)
	var stored int64
	for stored < n {
		resp, err := cl.ListIssues(ctx, &errortrackv1.ListIssuesRequest{Project: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		stored = 0
		for _, is := range resp.GetIssues() {
			stored += is.GetTimesSeen()
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d events stored after 10 minutes", stored, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	total := time.Since(start)
	s := summarize(lat)
	intakeRate := float64(n) / intake.Seconds()
	endRate := float64(n) / total.Seconds()
	b.ReportMetric(intakeRate, "intake-events/s")
	b.ReportMetric(endRate, "stored-events/s")
	b.ReportMetric(float64(s.p99)/1e6, "p99-ms")
	var out strings.Builder
	fmt.Fprintf(&out, "%d sentry-go-shaped error envelopes (%d bytes each, one chained error with a stack), %d concurrent HTTP clients, `shiploop up` (embedded NATS, SQLite).\n\n", n, len(fmt.Appendf(nil, string(body), 1, 1)), clients)
	fmt.Fprintf(&out, "| measure | result | goal | verdict |\n|---|---|---|---|\n")
	fmt.Fprintf(&out, "| intake: 200 (durable on JetStream) | %s events/s | ≥ 5,000 events/s | %s |\n", num(intakeRate), verdict(intakeRate >= 5000))
	fmt.Fprintf(&out, "| intake latency p50 / p90 / p99 | %s / %s / %s | p99 ≤ 50 ms | %s |\n", ms(s.median), ms(s.p90), ms(s.p99), verdict(s.p99 <= 50*time.Millisecond))
	fmt.Fprintf(&out, "| end to end: parsed, grouped, stored | %s events/s | ≥ 5,000 events/s | %s |\n", num(endRate), verdict(endRate >= 5000))
	fmt.Fprintf(&out, "\nPeers: Bugsink claims about 30 events/s on 2 vCPU; Telebugs about 50/s end to end.\n")
	if err := writeSection("errortrack-ingest", out.String()); err != nil {
		b.Fatal(err)
	}
}
