package bus_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// decodeStored decodes a message read back from a stream.
func decodeStored(t testing.TB, m *jetstream.RawStreamMsg) bus.Event {
	t.Helper()
	ev, err := bus.Decode(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return ev
}

func TestPublishWritesCloudEventsHeaders(t *testing.T) {
	t.Parallel()
	b, _ := startBus(t)
	data := &eventsv1.BuildFinished{BuildId: "b-42", Repository: "Acme/Web", Number: 42, Version: "1.2.3"}
	ev := bus.Event{ // ID, Source and Time left for Publish to fill
		Type: "build.finished", Repository: "Acme/Web", Subject: "b-42", ChainID: "chain-1", Data: data,
	}
	before := time.Now()
	if err := b.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	after := time.Now()

	msgs := streamMsgs(t, b, bus.StreamEvents, ">")
	if len(msgs) != 1 {
		t.Fatalf("EVENTS holds %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if want := "shiploop.evt.build.finished.acme_web"; m.Subject != want {
		t.Errorf("subject = %q, want %q", m.Subject, want)
	}

	h := m.Header
	id := h.Get("ce-id")
	exact := []struct {
		header, want string
	}{
		{"ce-specversion", "1.0"},
		{"ce-type", "dev.shiploop.build.finished.v1"},
		{"ce-source", testSource},
		{"ce-subject", "b-42"},
		{"ce-datacontenttype", "application/protobuf"},
		{"ce-dataschema", "shiploop.events.v1.BuildFinished"},
		{"ce-chainid", "chain-1"},
		{"ce-repository", "Acme/Web"},
		{"Nats-Msg-Id", id},
	}
	for _, tt := range exact {
		// Index the map directly: NATS header names are case-sensitive and
		// a canonicalised "Ce-Id" would not be a CloudEvents attribute.
		if got := h[tt.header]; !slices.Equal(got, []string{tt.want}) {
			t.Errorf("header %s = %q, want [%q]", tt.header, got, tt.want)
		}
	}
	for name := range h {
		if strings.HasPrefix(strings.ToLower(name), "ce-") && name != strings.ToLower(name) {
			t.Errorf("header %q is not lowercase", name)
		}
	}

	u, err := uuid.Parse(id)
	if err != nil {
		t.Fatalf("ce-id %q is not a UUID: %v", id, err)
	}
	if u.Version() != 7 || id[14] != '7' {
		t.Errorf("ce-id %q is UUID version %d, want 7", id, u.Version())
	}

	ceTime, err := time.Parse(time.RFC3339, h.Get("ce-time"))
	if err != nil {
		t.Fatalf("ce-time %q is not RFC 3339: %v", h.Get("ce-time"), err)
	}
	if ceTime.Before(before.Add(-time.Second)) || ceTime.After(after.Add(time.Second)) {
		t.Errorf("ce-time %v is not the publish time (between %v and %v)", ceTime, before, after)
	}

	got := decodeStored(t, m)
	if got.ID != id || got.Type != "build.finished" || got.Source != testSource || got.Subject != "b-42" ||
		got.Repository != "Acme/Web" || got.ChainID != "chain-1" || !got.Time.Equal(ceTime) {
		t.Errorf("decoded attributes %+v do not match what was published", got)
	}
	if got.NatsSubject != m.Subject {
		t.Errorf("decoded NatsSubject = %q, want %q", got.NatsSubject, m.Subject)
	}
	if !proto.Equal(got.Data, data) {
		t.Errorf("decoded payload = %v, want %v", got.Data, data)
	}
}

func TestPublishDeduplicatesByEventID(t *testing.T) {
	t.Parallel()
	b, _ := startBus(t)
	ev := buildFinished("acme/web", "b1")
	other := buildFinished("acme/web", "b2")
	for _, e := range []bus.Event{ev, ev, other, ev} { // a producer retrying its publish
		if err := b.Publish(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := idsOf(streamMsgs(t, b, bus.StreamEvents, ">")), []string{ev.ID, other.ID}; !slices.Equal(got, want) {
		t.Errorf("EVENTS holds %q, want each event once: %q", got, want)
	}
}

// TestPublishPercentEncoding: attribute values that are not printable ASCII
// travel percent-encoded and decode back to the original.
func TestPublishPercentEncoding(t *testing.T) {
	t.Parallel()
	b, _ := startBus(t)
	tests := []struct {
		name, repo, subject, token string
	}{
		{"non-ASCII", "Ünïcödé/Wëb", "bâtiment-1", "_n_c_d__w_b"},
		{"percent", "acme/100%-done", "50% off", "acme_100_-done"},
		{"CJK", "組織/倉庫", "構築", "_____"},
		{"control characters", "acme/web", "line\nbreak\ttab", "acme_web"},
		{"surrounding spaces", "acme/web", "  padded  ", "acme_web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := bus.NewEvent("build.started", tt.repo, tt.subject, &eventsv1.BuildStarted{BuildId: "x", Repository: tt.repo})
			ev.Source = "/shiploop/bâtisseur"
			if err := b.Publish(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
			var m *jetstream.RawStreamMsg
			for _, c := range streamMsgs(t, b, bus.StreamEvents, ">") {
				if c.Header.Get(bus.HeaderID) == ev.ID {
					m = c
				}
			}
			if m == nil {
				t.Fatal("event not stored")
			}
			if want := "shiploop.evt.build.started." + tt.token; m.Subject != want {
				t.Errorf("subject = %q, want %q", m.Subject, want)
			}
			for _, name := range []string{bus.HeaderRepository, bus.HeaderSubject, bus.HeaderSource} {
				v := m.Header.Get(name)
				for i := 0; i < len(v); i++ {
					if v[i] < 0x20 || v[i] > 0x7e {
						t.Errorf("header %s = %q has byte %#x outside printable ASCII", name, v, v[i])
						break
					}
				}
			}
			got := decodeStored(t, m)
			if got.Repository != tt.repo || got.Subject != tt.subject || got.Source != ev.Source {
				t.Errorf("decoded repository %q, subject %q, source %q; want %q, %q, %q",
					got.Repository, got.Subject, got.Source, tt.repo, tt.subject, ev.Source)
			}
		})
	}
}

// TestPublishOverTCP: the same publish and consume work when the embedded
// server listens on TCP and the client dials its URL, as in split mode.
func TestPublishOverTCP(t *testing.T) {
	t.Parallel()
	emb := startServer(t, bus.EmbeddedConfig{Listen: "127.0.0.1:0"})
	url := emb.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") {
		t.Fatalf("ClientURL() = %q, want nats://127.0.0.1:<port>", url)
	}
	nc, err := bus.Connect(url, "tcp-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if nc.ConnectedUrl() == "" {
		t.Fatal("not connected")
	}
	b := newBus(t, nc, bus.Options{})
	o := bus.NewOutbox(sqliteDB(t), b, quietLog())
	got := make(chan bus.Event, 1)
	runBG(t, "Consume", func(ctx context.Context) error {
		return o.Consume(ctx, bus.ConsumerConfig{Name: "tcp-test", Filters: []string{bus.EventFilter("build.finished", "")}},
			func(_ context.Context, _ *bus.Tx, ev bus.Event) error {
				got <- ev
				return nil
			})
	})
	ev := buildFinished("acme/web", "b-tcp")
	if err := b.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-got:
		if g.ID != ev.ID || !proto.Equal(g.Data, ev.Data) {
			t.Errorf("consumed %s %v, want %s %v", g.ID, g.Data, ev.ID, ev.Data)
		}
	case <-time.After(waitTimeout):
		t.Fatal("event not consumed over TCP")
	}

	inProcess := startServer(t, bus.EmbeddedConfig{})
	if u := inProcess.ClientURL(); u != "" {
		t.Errorf("ClientURL() without Listen = %q, want empty", u)
	}
}
