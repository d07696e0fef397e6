package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/store/storetest"
)

// syncBuffer is a log sink the service writes to from several goroutines.
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

type limitHarness struct {
	*harness
	logs *syncBuffer
}

// newLimitHarness runs a service on SQLite with the given Carbon limits,
// counters stored every 50 ms and at most one refusal warning per warnEvery.
func newLimitHarness(t *testing.T, lim CarbonLimits, now func() time.Time, warnEvery time.Duration) *limitHarness {
	t.Helper()
	db := storetest.OpenSQLite(t, "metrics")
	ctx, cancel := context.WithCancel(context.Background())
	lis, err := ListenCarbon("127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	svc, err := New(ctx, Config{DB: db, Listeners: lis, FlushInterval: 200 * time.Millisecond, StatsInterval: 50 * time.Millisecond,
		Carbon: lim, Now: now, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	svc.warnEvery = warnEvery
	mux := http.NewServeMux()
	svc.Routes(mux)
	srv := httptest.NewServer(mux)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	h := &limitHarness{harness: &harness{svc: svc, lis: lis, http: srv}, logs: logs}
	// The service's own series exist after its first stats tick.
	eventually(t, 2*time.Second, "self-metrics written", func() bool {
		r, _ := svc.st.Find("shiploop.metrics.ingest.connections_open", 0)
		return len(r) == 1
	})
	return h
}

// send writes plaintext lines on a new connection and closes it.
func (h *limitHarness) send(t *testing.T, lines string) {
	t.Helper()
	c, err := net.Dial("tcp", h.lis.TCP.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, lines); err != nil {
		t.Fatal(err)
	}
}

// latest is the last non-null value of a target rendered over the last
// five minutes (of the service's clock), or nil.
func (h *limitHarness) latest(t *testing.T, target string) *float64 {
	t.Helper()
	now := h.svc.st.now().Unix()
	q := url.Values{"target": {target}, "from": {fmt.Sprint(now - 300)}, "until": {fmt.Sprint(now + 10)}, "format": {"json"}}
	code, body := h.get(t, "/graphite/render?"+q.Encode())
	if code != 200 {
		t.Fatalf("render %s: %d %s", target, code, body)
	}
	var got []renderSeries
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("render %s: %v: %s", target, err, body)
	}
	if len(got) == 0 {
		return nil
	}
	var last *float64
	for _, dp := range got[0].Datapoints {
		if dp[0] != nil {
			last = dp[0]
		}
	}
	return last
}

// counterIs waits until the self-metric series holds want.
func (h *limitHarness) counterIs(t *testing.T, name string, want float64) {
	t.Helper()
	var last *float64
	defer func() {
		if t.Failed() {
			t.Logf("%s: last rendered value %v", name, last)
		}
	}()
	eventually(t, 3*time.Second, name+" = "+fmt.Sprint(want), func() bool {
		last = h.latest(t, name)
		return last != nil && *last == want
	})
}

func (h *limitHarness) values(t *testing.T, name string, from, until int64) []float64 {
	t.Helper()
	s, err := h.svc.st.Read(context.Background(), name, from, until)
	if err != nil {
		t.Fatal(err)
	}
	if s == nil {
		return nil
	}
	var out []float64
	for _, v := range s.Values {
		if v == v {
			out = append(out, v)
		}
	}
	return out
}

// A series cap of N: the N+1th new name is refused and counted, points of
// an existing series still land, and the count is a series Graphite
// renders; the refusal is logged once, naming the flag.
func TestCarbonSeriesCap(t *testing.T) {
	const max = 20
	h := newLimitHarness(t, CarbonLimits{MaxSeries: max, MaxNewSeriesPerMinute: -1}, nil, time.Hour)
	base := h.svc.st.SeriesCount() // the service's own series count too
	if base >= max-2 {
		t.Fatalf("the service made %d series of its own; raise the test's cap", base)
	}
	now := time.Now().Unix()
	ts := now - now%10 - 60
	var lines strings.Builder
	for i := 0; i < max-base; i++ {
		fmt.Fprintf(&lines, "cap.s%d 1 %d\n", i, ts)
	}
	h.send(t, lines.String())
	eventually(t, 2*time.Second, "the cap reached", func() bool { return h.svc.st.SeriesCount() == max })

	// One new name over the cap, then a point of an existing series.
	h.send(t, fmt.Sprintf("cap.over 1 %d\ncap.s0 2 %d\n", ts, ts+10))
	eventually(t, 2*time.Second, "cap.s0's second point", func() bool {
		return len(h.values(t, "cap.s0", ts-10, ts+10)) == 2
	})
	if got := h.svc.st.SeriesRefused.Load(); got != 1 {
		t.Errorf("SeriesRefused = %d, want 1", got)
	}
	if s, _ := h.svc.st.Read(context.Background(), "cap.over", ts-10, ts+10); s != nil {
		t.Errorf("cap.over was created over the cap")
	}
	h.counterIs(t, "shiploop.metrics.ingest.series_refused", 1)
	// The service's own series are never refused: they keep being written.
	if v := h.latest(t, "shiploop.metrics.index.series"); v == nil || *v != max {
		t.Errorf("shiploop.metrics.index.series = %v, want %d", v, max)
	}
	eventually(t, 2*time.Second, "a warning naming the flag", func() bool {
		return strings.Contains(h.logs.String(), "--carbon-max-series (now 20)")
	})
	// Once: the next warning waits for warnEvery (an hour here).
	h.send(t, fmt.Sprintf("cap.over2 1 %d\n", ts))
	eventually(t, 2*time.Second, "second refusal", func() bool { return h.svc.st.SeriesRefused.Load() == 2 })
	time.Sleep(200 * time.Millisecond)
	if n := strings.Count(h.logs.String(), "input refused by limits"); n != 1 {
		t.Errorf("%d refusal warnings within warnEvery, want 1:\n%s", n, h.logs.String())
	}
}

// The new-series rate is a token bucket of a minute's worth: 5 a minute
// lets 5 new names in at once, then one every 12 s; points of existing
// series are not limited.
func TestCarbonNewSeriesRate(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	h := newLimitHarness(t, CarbonLimits{MaxNewSeriesPerMinute: 5}, clock, 0)
	now := time.Now().Unix()
	ts := now - now%10 - 60
	var lines strings.Builder
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&lines, "rate.s%d 1 %d\n", i, ts)
	}
	fmt.Fprintf(&lines, "rate.s0 2 %d\n", ts+10)
	h.send(t, lines.String())
	eventually(t, 2*time.Second, "rate.s0's second point", func() bool {
		return len(h.values(t, "rate.s0", ts-10, ts+10)) == 2
	})
	if got := h.svc.st.RateLimited.Load(); got != 3 {
		t.Errorf("RateLimited = %d, want 3", got)
	}
	for i := 0; i < 8; i++ {
		s, _ := h.svc.st.Read(context.Background(), fmt.Sprintf("rate.s%d", i), ts-10, ts+10)
		if (s != nil) != (i < 5) {
			t.Errorf("rate.s%d exists: %v, want %v", i, s != nil, i < 5)
		}
	}
	h.counterIs(t, "shiploop.metrics.ingest.rate_limited", 3)

	// 12 s later one more token: of two new names, one gets in.
	offset.Store(int64(12*time.Second + 100*time.Millisecond))
	h.send(t, fmt.Sprintf("rate.t0 1 %d\nrate.t1 1 %d\n", ts, ts))
	eventually(t, 2*time.Second, "the second batch counted", func() bool { return h.svc.st.RateLimited.Load() == 4 })
	if s, _ := h.svc.st.Read(context.Background(), "rate.t0", ts-10, ts+10); s == nil {
		t.Errorf("rate.t0 not created after the bucket refilled")
	}
	h.counterIs(t, "shiploop.metrics.ingest.rate_limited", 4)
	eventually(t, 2*time.Second, "a warning naming the flag", func() bool {
		return strings.Contains(h.logs.String(), "--carbon-max-new-series-per-minute (now 5)")
	})
}

// A line over the limit is dropped without ending the connection: the valid
// lines before and after it on the same connection are stored. Both a line
// that fits the read buffer and one far over it; and over UDP.
func TestCarbonLongLineDropped(t *testing.T) {
	h := newLimitHarness(t, CarbonLimits{MaxLineLength: 100}, nil, 0)
	now := time.Now().Unix()
	ts := now - now%10 - 60
	c, err := net.Dial("tcp", h.lis.TCP.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	long := fmt.Sprintf("long.%s 1 %d\n", strings.Repeat("x", 500), ts)
	huge := fmt.Sprintf("long.%s 1 %d\n", strings.Repeat("y", 1<<20), ts)
	exact := fmt.Sprintf("long.%s 1 %d\n", strings.Repeat("z", 100-len(fmt.Sprintf("long. 1 %d", ts))), ts)
	fmt.Fprintf(c, "long.before 1 %d\n%slong.middle 1 %d\n%s%slong.after 1 %d\n", ts, long, ts, huge, exact, ts)
	eventually(t, 3*time.Second, "long.after stored", func() bool { return len(h.values(t, "long.after", ts-10, ts)) == 1 })
	for _, n := range []string{"long.before", "long.middle", strings.Fields(exact)[0]} {
		if len(h.values(t, n, ts-10, ts)) != 1 {
			t.Errorf("%.40s not stored", n)
		}
	}
	if got := h.svc.in.LinesTooLong.Load(); got != 2 {
		t.Errorf("LinesTooLong = %d, want 2", got)
	}
	if got := h.svc.st.BadLines.Load(); got != 0 {
		t.Errorf("BadLines = %d, want 0", got)
	}
	// The connection still works.
	fmt.Fprintf(c, "long.later 1 %d\n", ts)
	eventually(t, 2*time.Second, "long.later stored", func() bool { return len(h.values(t, "long.later", ts-10, ts)) == 1 })

	u, err := net.Dial("udp", h.lis.UDP.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	fmt.Fprintf(u, "%slong.udp 1 %d\n", long, ts)
	eventually(t, 2*time.Second, "long.udp stored", func() bool { return len(h.values(t, "long.udp", ts-10, ts)) == 1 })
	if got := h.svc.in.LinesTooLong.Load(); got != 3 {
		t.Errorf("LinesTooLong = %d after UDP, want 3", got)
	}
	h.counterIs(t, "shiploop.metrics.ingest.lines_too_long", 3)
	eventually(t, 2*time.Second, "a warning naming the flag", func() bool {
		return strings.Contains(h.logs.String(), "--carbon-max-line-length (now 100)")
	})
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF || (err != nil && !strings.Contains(err.Error(), "timeout"))
}

// Connections (plaintext and pickle) that send nothing for the idle timeout
// are closed and counted; one that keeps sending stays open.
func TestCarbonIdleTimeout(t *testing.T) {
	h := newLimitHarness(t, CarbonLimits{IdleTimeout: 300 * time.Millisecond}, nil, 0)
	plain, err := net.Dial("tcp", h.lis.TCP.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pickle, err := net.Dial("tcp", h.lis.Pickle.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer pickle.Close()
	// Half a pickle header, then silence.
	_, _ = pickle.Write([]byte{0, 0})
	busy, err := net.Dial("tcp", h.lis.TCP.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(busy, "idle.busy %d -1\n", i); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	start := time.Now()
	if !closedWithin(plain, 3*time.Second) {
		t.Fatal("idle plaintext connection still open after 3s")
	}
	if !closedWithin(pickle, 3*time.Second) {
		t.Fatal("idle pickle connection still open after 3s")
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("closed after %s, before the 300ms timeout", took)
	}
	time.Sleep(500 * time.Millisecond)
	if closedWithin(busy, 50*time.Millisecond) {
		t.Error("a connection that keeps sending was closed")
	}
	if got := h.svc.in.IdleClosed.Load(); got != 2 {
		t.Errorf("IdleClosed = %d, want 2", got)
	}
	h.counterIs(t, "shiploop.metrics.ingest.connections_idle_closed", 2)
}

// Over the connection cap (plaintext and pickle together), a connection is
// closed as it is accepted and counted; a slot freed takes a new one.
func TestCarbonMaxConnections(t *testing.T) {
	h := newLimitHarness(t, CarbonLimits{MaxConnections: 2}, nil, 0)
	a, err := net.Dial("tcp", h.lis.TCP.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.Dial("tcp", h.lis.Pickle.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	eventually(t, 2*time.Second, "two connections open", func() bool { return h.svc.in.active.Load() == 2 })
	extra, err := net.Dial("tcp", h.lis.TCP.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if !closedWithin(extra, 2*time.Second) {
		t.Fatal("a third connection over a cap of 2 was not closed")
	}
	if got := h.svc.in.ConnsRefused.Load(); got != 1 {
		t.Errorf("ConnsRefused = %d, want 1", got)
	}
	// The two first still work.
	now := time.Now().Unix()
	fmt.Fprintf(a, "conns.a 1 %d\n", now)
	eventually(t, 2*time.Second, "conns.a stored", func() bool { return len(h.values(t, "conns.a", now-20, now+10)) == 1 })
	if closedWithin(b, 50*time.Millisecond) {
		t.Error("the pickle connection within the cap was closed")
	}
	h.counterIs(t, "shiploop.metrics.ingest.connections_refused", 1)
	eventually(t, 2*time.Second, "a warning naming the flag", func() bool {
		return strings.Contains(h.logs.String(), "--carbon-max-connections (now 2)")
	})

	// Freed: a new connection is taken.
	a.Close()
	eventually(t, 2*time.Second, "one connection open", func() bool { return h.svc.in.active.Load() == 1 })
	c, err := net.Dial("tcp", h.lis.Pickle.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if closedWithin(c, 200*time.Millisecond) {
		t.Error("a connection within the cap after one closed was refused")
	}
}
