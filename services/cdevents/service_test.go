package cdevents

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

type sink struct {
	mu     sync.Mutex
	events []CDEvent
	raw    [][]byte
	header []http.Header
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ce CDEvent
	if err := json.Unmarshal(body, &ce); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	s.mu.Lock()
	s.events, s.raw, s.header = append(s.events, ce), append(s.raw, body), append(s.header, r.Header.Clone())
	s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (s *sink) find(typ, subject string) (CDEvent, []byte, http.Header, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.events {
		if e.Context.Type == typ && (subject == "" || e.Subject.ID == subject) {
			return e, s.raw[i], s.header[i], true
		}
	}
	return CDEvent{}, nil, nil, false
}

type harness struct {
	svc  *Service
	bus  *bus.Bus
	http *httptest.Server
	sink *sink
}

const testToken = "s3cret"

func newHarness(t *testing.T, db *store.DB) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := bustest.Start(t, bus.Options{Source: "/shiploop/cdevents"})
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	sk := &sink{}
	sinkSrv := httptest.NewServer(sk)
	svc, err := New(ctx, Config{DB: db, Bus: b, Validator: testValidator(t), SinkURL: sinkSrv.URL, Token: testToken,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	srv := httptest.NewServer(mux)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		srv.Close()
		sinkSrv.Close()
	})
	return &harness{svc: svc, bus: b, http: srv, sink: sk}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) post(t *testing.T, header http.Header, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.http.URL+"/cdevents", bytes.NewReader(body))
	req.Header = header
	if req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func conformance(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(specDir, "conformance", name))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func structured(t *testing.T, raw []byte) []byte {
	t.Helper()
	var ce struct {
		Context struct{ ID, Source, Type string }
	}
	if err := json.Unmarshal(raw, &ce); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": ce.Context.ID, "source": ce.Context.Source, "type": ce.Context.Type,
		"datacontenttype": "application/json", "data": json.RawMessage(raw)})
	return out
}

// watchEvents collects internal events from EVENTS.
func watchEvents(t *testing.T, h *harness) func(typ, source string) (bus.Event, bool) {
	var mu sync.Mutex
	var got []bus.Event
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		_ = h.bus.Watch(ctx, bus.WatchOptions{FromStart: true}, func(ev bus.Event) error {
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
			return nil
		})
	}()
	return func(typ, source string) (bus.Event, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range got {
			if e.Type == typ && (source == "" || e.Source == source) {
				return e, true
			}
		}
		return bus.Event{}, false
	}
}

func TestBridge(t *testing.T) {
	storetest.Engines(t, "cdevents", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := t.Context()
		producer, err := bus.New(ctx, h.bus.Conn(), bus.Options{Source: "/shiploop/test"})
		if err != nil {
			t.Fatal(err)
		}

		t.Run("export to the stream and the sink", func(t *testing.T) {
			ref := &eventsv1.DeployRef{DeployId: "d9", Repository: "acme/web", Environment: "production", Release: "2.0.0", Kind: "deploy"}
			for _, ev := range []bus.Event{
				{Type: "deploy.started", Repository: "acme/web", ChainID: "chain-1", Data: &eventsv1.DeployStarted{Deploy: ref, PreviousRelease: "1.9.0"}},
				{Type: "deploy.finished", Repository: "acme/web", ChainID: "chain-1", Data: &eventsv1.DeployFinished{Deploy: ref, Status: eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED}},
			} {
				if err := producer.Publish(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
			for _, ev := range exportCases() {
				ev.ID, ev.Source = bus.NewID(), ""
				if err := producer.Publish(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the gate verdict at the sink", func() bool { _, _, _, ok := h.sink.find(GateEvaluatedType, ""); return ok })
			ce, raw, hdr, ok := h.sink.find("dev.cdevents.service.upgraded.0.3.0", "acme/web")
			if !ok {
				for _, e := range h.sink.events {
					t.Log(e.Context.Type, e.Subject.ID, e.CustomData)
				}
				t.Fatal("deploy over 1.9.0 did not reach the sink as service.upgraded")
			}
			if err := testValidator(t).Validate(raw); err != nil {
				t.Fatal(err)
			}
			if hdr.Get("ce-type") != ce.Context.Type || hdr.Get("ce-id") != ce.Context.ID || hdr.Get("ce-specversion") != "1.0" || hdr.Get("ce-chainid") != "chain-1" {
				t.Fatalf("sink headers %v do not mirror the context %+v", hdr, ce.Context)
			}
			// The same events are on cdevents.> in JetStream.
			cons, err := h.bus.JetStream().OrderedConsumer(ctx, Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"cdevents.service.>"}})
			if err != nil {
				t.Fatal(err)
			}
			m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if err := testValidator(t).Validate(m.Data()); err != nil {
				t.Fatalf("%s: %v", m.Subject(), err)
			}
			if !strings.HasPrefix(m.Subject(), "cdevents.service.") || m.Headers().Get("Nats-Msg-Id") == "" {
				t.Fatalf("message on %s with headers %v", m.Subject(), m.Headers())
			}
			for _, ce := range h.sink.events {
				raw, _ := ce.Marshal()
				if err := testValidator(t).Validate(raw); err != nil {
					t.Errorf("sink got an invalid event: %v", err)
				}
			}
		})

		find := watchEvents(t, h)
		t.Run("external service.deployed becomes deploy.finished", func(t *testing.T) {
			code, body := h.post(t, http.Header{"Content-Type": {"application/cloudevents+json"}}, structured(t, conformance(t, "service_deployed.json")))
			if code != http.StatusAccepted {
				t.Fatalf("POST = %d %s", code, body)
			}
			var ev bus.Event
			waitFor(t, "deploy.finished", func() bool { var ok bool; ev, ok = find("deploy.finished", "/shiploop/cdevents"); return ok })
			d := ev.Data.(*eventsv1.DeployFinished)
			if d.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED || d.GetDeploy().GetEnvironment() != "test123" || d.GetDeploy().GetKind() != "external" || d.GetDeploy().GetRepository() != "mySubject123" {
				t.Fatalf("deploy.finished = %v", d)
			}
			// Sent twice: the retransmission is the same internal event (deduplicated).
			if code, body := h.post(t, http.Header{"Content-Type": {"application/cloudevents+json"}}, structured(t, conformance(t, "service_deployed.json"))); code != http.StatusAccepted {
				t.Fatalf("second POST = %d %s", code, body)
			}
		})

		t.Run("tekton pipelinerun.finished in binary mode", func(t *testing.T) {
			// Conformance examples share one context id; a distinct one, since
			// source+id identify an event (a repeat is a duplicate).
			raw := []byte(strings.Replace(string(conformance(t, "pipelinerun_finished.json")), `"271069a8-fc18-44f1-b38f-9d70a1695819"`, `"0fd2b5a3-6c1e-4f43-9a1e-5a0d8a4c2b11"`, 1))
			hdr := http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {"tekton-1"},
				"Ce-Source": {"/tekton"}, "Ce-Type": {"dev.cdevents.pipelinerun.finished.0.3.0"}}
			if code, body := h.post(t, hdr, raw); code != http.StatusAccepted {
				t.Fatalf("POST = %d %s", code, body)
			}
			var ev bus.Event
			waitFor(t, "external.pipelinerun_finished", func() bool { var ok bool; ev, ok = find("external.pipelinerun_finished", ""); return ok })
			x := ev.Data.(*eventsv1.ExternalEvent)
			if x.GetOutcome() != "failure" || x.GetName() != "myPipeline" || x.GetKind() != "pipelinerun.finished" || len(x.GetCdevent()) == 0 {
				t.Fatalf("external event = %v", x)
			}
		})

		t.Run("bad input", func(t *testing.T) {
			before := h.svc.Stats().Rejected
			bad := strings.Replace(string(conformance(t, "service_deployed.json")), `"environment"`, `"env"`, 1)
			code, body := h.post(t, http.Header{"Content-Type": {"application/cloudevents+json"}}, structured(t, []byte(bad)))
			if code != http.StatusBadRequest || !strings.Contains(body, "environment") {
				t.Fatalf("schema failure = %d %s, want 400 naming environment", code, body)
			}
			code, body = h.post(t, http.Header{"Content-Type": {"application/json"}}, conformance(t, "service_deployed.json"))
			if code != http.StatusBadRequest || !strings.Contains(body, "ce-specversion") {
				t.Fatalf("no CloudEvent = %d %s", code, body)
			}
			hdr := http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {"x"}, "Ce-Source": {"/x"}, "Ce-Type": {"dev.cdevents.build.started.0.3.0"}}
			if code, body = h.post(t, hdr, conformance(t, "pipelinerun_finished.json")); code != http.StatusBadRequest || !strings.Contains(body, "differs") {
				t.Fatalf("type mismatch = %d %s", code, body)
			}
			if got := h.svc.Stats().Rejected - before; got != 3 {
				t.Fatalf("rejected counter moved by %d, want 3", got)
			}
			code, _ = h.post(t, http.Header{"Authorization": {"Bearer wrong"}, "Content-Type": {"application/cloudevents+json"}}, structured(t, conformance(t, "service_deployed.json")))
			if code != http.StatusUnauthorized {
				t.Fatalf("wrong token = %d, want 401", code)
			}
		})

		t.Run("received events are not exported again", func(t *testing.T) {
			// A marker published after the inbound events: once it is exported,
			// everything before it has been handled.
			marker := bus.Event{Type: "build.started", Repository: "acme/web", Data: &eventsv1.BuildStarted{BuildId: "marker"}}
			if err := producer.Publish(ctx, marker); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the marker at the sink", func() bool { _, _, _, ok := h.sink.find("dev.cdevents.build.started.0.3.0", "marker"); return ok })
			if e, _, _, ok := h.sink.find("dev.cdevents.service.deployed.0.3.0", ""); ok && e.Context.Source == "/shiploop/cdevents" {
				t.Fatalf("an inbound event was echoed: %+v", e)
			}
			h.sink.mu.Lock()
			defer h.sink.mu.Unlock()
			for _, e := range h.sink.events {
				if e.Context.Source == "/shiploop/cdevents" || e.Context.Source == "/event/source/123" {
					t.Fatalf("an inbound event was echoed: %+v", e)
				}
			}
		})
	})
}
