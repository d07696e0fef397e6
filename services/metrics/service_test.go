package metrics

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/metrics/carbon"
)

type harness struct {
	svc  *Service
	lis  *Listeners
	http *httptest.Server
	bus  *bus.Bus
}

func newHarness(t *testing.T, db *store.DB) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := bustest.Start(t, bus.Options{Source: "/test"})
	lis, err := ListenCarbon("127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(ctx, Config{DB: db, Bus: b, Listeners: lis, FlushInterval: 200 * time.Millisecond, MaxSeries: 1000})
	if err != nil {
		t.Fatal(err)
	}
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
	return &harness{svc: svc, lis: lis, http: srv, bus: b}
}

func (h *harness) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(h.http.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not true after %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

type renderSeries struct {
	Target     string            `json:"target"`
	Tags       map[string]string `json:"tags"`
	Datapoints [][2]*float64     `json:"datapoints"`
}

func TestIngestAndQuery(t *testing.T) {
	storetest.Engines(t, "metrics", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		now := time.Now().Unix()
		ts := now - now%10 - 60

		// TCP: a bad line in the middle is counted and the connection goes on.
		c, err := net.Dial("tcp", h.lis.TCP.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "servers.web01.cpu.user 1 %d\nthis is not a line\nservers.web01.cpu.user 2 %d\n", ts, ts+10)
		took := eventually(t, time.Second, "servers.web01.cpu.user findable", func() bool {
			_, body := h.get(t, "/graphite/metrics/find?query=servers.web01.*")
			return strings.Contains(body, `"id":"servers.web01.cpu"`)
		})
		t.Logf("new series findable after %s", took)
		eventually(t, time.Second, "bad line counted", func() bool { return h.svc.st.BadLines.Load() == 1 })
		fmt.Fprintf(c, "servers.web02.cpu.user 5 %d\n", ts)

		// UDP and pickle (bytes made by Debian's python3 pickle, protocol 2).
		u, err := net.Dial("udp", h.lis.UDP.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(u, "servers.db01.cpu.user 7 %d\n", ts)
		u.Close()
		raw, _ := os.ReadFile("carbon/testdata/pickles.json")
		var byProto map[string]string
		_ = json.Unmarshal(raw, &byProto)
		payload, _ := hex.DecodeString(byProto["2"])
		pc, err := net.Dial("tcp", h.lis.Pickle.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
		_, _ = pc.Write(append(hdr[:], payload...))
		pc.Close()
		eventually(t, 2*time.Second, "all series indexed", func() bool {
			_, body := h.get(t, "/graphite/metrics/expand?query=servers.*.cpu.user&query=a.b.c")
			return strings.Contains(body, "servers.db01.cpu.user") && strings.Contains(body, "servers.web02.cpu.user") && strings.Contains(body, "a.b.c")
		})

		// Render over both storage and memory: wait for a flush first.
		if err := h.svc.st.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		q := url.Values{"target": {"sumSeries(servers.*.cpu.user)", `aliasSub(servers.web01.cpu.user, "(^.*$)", "\1 A")`}, "from": {fmt.Sprint(ts - 10)}, "until": {fmt.Sprint(ts + 20)}, "format": {"json"}}
		resp, err := http.PostForm(h.http.URL+"/graphite/render", q)
		if err != nil {
			t.Fatal(err)
		}
		var got []renderSeries
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(got) != 2 || got[0].Target != "sumSeries(servers.*.cpu.user)" || got[1].Target != "servers.web01.cpu.user A" || got[1].Tags["name"] != "servers.web01.cpu.user" {
			t.Fatalf("render: %+v", got)
		}
		if v := got[0].Datapoints[0][0]; v == nil || *v != 13 {
			t.Errorf("sum at %d: %v, want 1+5+7", ts, got[0].Datapoints[0])
		}

		// Errors: position, unknown function, limit.
		code, body := h.get(t, "/graphite/render?target=sumSeries(a.b")
		if code != 400 || !strings.Contains(body, "position 13") {
			t.Errorf("malformed target: %d %s", code, body)
		}
		code, body = h.get(t, "/graphite/render?target=noSuchFunction(a.b)")
		if code != 400 || !strings.Contains(body, "noSuchFunction") {
			t.Errorf("unknown function: %d %s", code, body)
		}
		if code, body := h.get(t, "/graphite/version/"); code != 200 || body != Version+"\n" { // graphite-web ends it with a newline
			t.Errorf("version: %d %q", code, body)
		}
	})
}

func TestLimitsRefuseWideQueries(t *testing.T) {
	db := storetest.OpenSQLite(t, "metrics")
	h := newHarness(t, db)
	now := time.Now().Unix()
	var pts strings.Builder
	for i := 0; i < 1100; i++ {
		fmt.Fprintf(&pts, "wide.s%d 1 %d\n", i, now)
	}
	c, err := net.Dial("tcp", h.lis.TCP.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, pts.String())
	c.Close()
	eventually(t, 2*time.Second, "1100 series", func() bool { return h.svc.st.Created.Load() >= 1100 })
	code, body := h.get(t, "/graphite/render?target=sumSeries(wide.*)")
	if code != 400 || !strings.Contains(body, "limit 1000") {
		t.Errorf("wide query: %d %s", code, body)
	}
}

func TestBuildEventsBecomeSeries(t *testing.T) {
	storetest.Engines(t, "metrics", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		created := time.Now().Add(-time.Minute).UTC()
		started := created.Add(15 * time.Second)
		finished := started.Add(30 * time.Second)
		ctx := context.Background()
		for _, ev := range []bus.Event{
			bus.NewEvent("build.created", "acme/web", "b1", &eventsv1.BuildCreated{BuildId: "b1", Repository: "acme/web", CreatedAt: timestamppb.New(created)}),
			bus.NewEvent("build.started", "acme/web", "b1", &eventsv1.BuildStarted{BuildId: "b1", Repository: "acme/web", StartedAt: timestamppb.New(started)}),
			bus.NewEvent("build.finished", "acme/web", "b1", &eventsv1.BuildFinished{BuildId: "b1", Repository: "acme/web", Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, Duration: durationpb.New(30 * time.Second), FinishedAt: timestamppb.New(finished)}),
		} {
			if err := h.bus.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		want := map[string]float64{"shiploop.builds.acme_web.queue_time": 15, "shiploop.builds.acme_web.duration": 30, "shiploop.builds.acme_web.success.count": 1}
		for name, v := range want {
			eventually(t, 10*time.Second, name, func() bool {
				s, err := h.svc.st.Read(ctx, name, finished.Unix()-120, time.Now().Unix())
				if err != nil || s == nil {
					return false
				}
				for _, x := range s.Values {
					if x == v {
						return true
					}
				}
				return false
			})
		}
	})
}

// A query reads all its series from the same archive even when the clock
// ticks while it reads them: from exactly one day back (Grafana's "last 24
// hours" on the default 10s:1d,1m:30d schema) every series comes at 10 s.
func TestQueryReadsEverySeriesFromOneArchive(t *testing.T) {
	db := storetest.OpenSQLite(t, "metrics")
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	// Every look at the clock finds it a second later.
	svc, err := New(context.Background(), Config{DB: db, Now: func() time.Time { return time.Unix(clock.Add(1), 0) }})
	if err != nil {
		t.Fatal(err)
	}
	now := clock.Load()
	var pts []carbon.Point
	for i := 0; i < 5; i++ {
		pts = append(pts, carbon.Point{Name: fmt.Sprintf("day.s%d", i), Value: 1, Timestamp: now - now%10 - 60})
	}
	if err := svc.Storage().Add(context.Background(), pts); err != nil {
		t.Fatal(err)
	}
	now = clock.Load() + 1 // what Query will see
	got, err := svc.Query(context.Background(), []string{"day.*"}, now-86400, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("got %d series, want 5", len(got))
	}
	for _, s := range got {
		if s.Step != 10 || len(s.Values) != 8640 {
			t.Errorf("%s: step %d with %d points, want the 10 s archive (8640 points)", s.Name, s.Step, len(s.Values))
		}
	}
}
