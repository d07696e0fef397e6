package dlq_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	dlqv1 "github.com/shiploop/shiploop/proto/shiploop/dlq/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/dlq"
)

const waitTimeout = 20 * time.Second

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client serves DLQService on a loopback listener behind the product's gRPC
// server (token auth included) and returns a client with the token.
func client(t *testing.T, svc *dlq.Service, token string) (dlqv1.DLQServiceClient, func(context.Context) context.Context) {
	t.Helper()
	g := server.NewGRPC(server.GRPCConfig{Token: token, Logger: quiet()})
	svc.RegisterGRPC(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); <-done })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	withToken := func(ctx context.Context) context.Context {
		return metadataCtx(ctx, token)
	}
	return dlqv1.NewDLQServiceClient(conn), withToken
}

func change(repo, after string) bus.Event {
	ev := bus.NewEvent("change.pushed", repo, "refs/heads/main", &eventsv1.Change{Forge: "github", Repository: repo, Ref: "refs/heads/main", After: after})
	ev.ChainID = ev.ID
	return ev
}

// TestPoisonMessageDeadLettersAndReplays is the user's story: a handler that
// cannot handle one event (a bug) retries it a bounded number of times, the
// event lands in the DLQ with the reason while the events behind it keep
// flowing, `dlq ls/show` show it, and once the bug is fixed `dlq replay`
// makes it flow: handled exactly once, gone from the DLQ.
func TestPoisonMessageDeadLettersAndReplays(t *testing.T) {
	storetest.Engines(t, "dlqtest", []store.Migrations{bus.Migrations}, func(t *testing.T, db *store.DB) {
		b := bustest.Start(t, bus.Options{Source: "/shiploop/dlqtest"})
		o := bus.NewOutbox(db, b, quiet())
		const maxDeliver = 3
		var fixed atomic.Bool
		var mu sync.Mutex
		handled := map[string]int{} // event id -> successful handlings
		attempts := map[string]int{}
		poison := change("acme/app", "poison")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- o.Consume(ctx, bus.ConsumerConfig{Name: "test-poison", Filters: []string{bus.EventFilter("change", "")}, MaxDeliver: maxDeliver, Backoff: []time.Duration{20 * time.Millisecond}},
				func(_ context.Context, _ *bus.Tx, ev bus.Event) error {
					mu.Lock()
					defer mu.Unlock()
					attempts[ev.ID]++
					if ev.ID == poison.ID && !fixed.Load() {
						return errors.New("template references missing field .Commit")
					}
					handled[ev.ID]++
					return nil
				})
		}()
		t.Cleanup(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Error("consumer did not stop")
			}
		})

		if err := b.Publish(t.Context(), poison); err != nil {
			t.Fatal(err)
		}
		var good []bus.Event
		for i := range 20 {
			ev := change("acme/app", strings.Repeat("g", i+1))
			good = append(good, ev)
			if err := b.Publish(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
		}
		// Never stalls: every event behind the poison one is handled.
		waitFor(t, "the 20 good events", func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range good {
				if handled[ev.ID] != 1 {
					return false
				}
			}
			return true
		})

		svc, err := dlq.New(dlq.Config{JetStream: b.JetStream(), Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		cl, auth := client(t, svc, "s3cret")
		var list []*dlqv1.DeadLetter
		waitFor(t, "the poison event in the DLQ", func() bool {
			resp, err := cl.ListDeadLetters(auth(t.Context()), &dlqv1.ListDeadLettersRequest{})
			if err != nil {
				t.Fatalf("ListDeadLetters: %v", err)
			}
			list = resp.GetDeadLetters()
			return len(list) > 0
		})
		if len(list) != 1 {
			t.Fatalf("DLQ holds %d letters, want 1: %v", len(list), list)
		}
		d := list[0]
		if d.GetKind() != dlq.KindDeadLetter || d.GetConsumer() != "test-poison" || d.GetEventId() != poison.ID ||
			d.GetEventType() != bus.FullType("change.pushed") || d.GetDeliveries() != maxDeliver || d.GetStream() != bus.StreamEvents ||
			!strings.Contains(d.GetReason(), "template references missing field .Commit") || d.GetSubject() != bus.EventSubject("change.pushed", "acme/app") {
			t.Errorf("dead letter = %v", d)
		}
		mu.Lock()
		if attempts[poison.ID] != maxDeliver {
			t.Errorf("poison event attempted %d times, want %d (bounded retries)", attempts[poison.ID], maxDeliver)
		}
		mu.Unlock()

		// show: the original payload and headers.
		got, err := cl.GetDeadLetter(auth(t.Context()), &dlqv1.GetDeadLetterRequest{Seq: d.GetSeq()})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetDeadLetter().GetHeaders()[bus.HeaderID] != poison.ID || len(got.GetDeadLetter().GetData()) == 0 {
			t.Errorf("show: headers %v, %d bytes of data", got.GetDeadLetter().GetHeaders(), len(got.GetDeadLetter().GetData()))
		}
		if _, err := cl.GetDeadLetter(auth(t.Context()), &dlqv1.GetDeadLetterRequest{Seq: 9999}); status.Code(err) != codes.NotFound {
			t.Errorf("show of an unknown seq: %v, want NotFound", err)
		}
		// Every call needs the token.
		if _, err := cl.ReplayDeadLetter(t.Context(), &dlqv1.ReplayDeadLetterRequest{Seq: d.GetSeq()}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("replay without a token: %v, want Unauthenticated", err)
		}

		// Fixed: replay makes it flow once, and it leaves the DLQ.
		fixed.Store(true)
		rr, err := cl.ReplayDeadLetter(auth(t.Context()), &dlqv1.ReplayDeadLetterRequest{Seq: d.GetSeq()})
		if err != nil {
			t.Fatal(err)
		}
		if rr.GetSubject() != d.GetSubject() || rr.GetStreamSeq() == d.GetStreamSeq() {
			t.Errorf("replay = %v, want the original subject %s under a new sequence", rr, d.GetSubject())
		}
		waitFor(t, "the replayed event handled", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return handled[poison.ID] == 1
		})
		resp, err := cl.ListDeadLetters(auth(t.Context()), &dlqv1.ListDeadLettersRequest{})
		if err != nil || len(resp.GetDeadLetters()) != 0 {
			t.Errorf("after replay the DLQ holds %v (%v), want nothing", resp.GetDeadLetters(), err)
		}
		// A second replay of the same seq is NotFound, not a second run.
		if _, err := cl.ReplayDeadLetter(auth(t.Context()), &dlqv1.ReplayDeadLetterRequest{Seq: d.GetSeq()}); status.Code(err) != codes.NotFound {
			t.Errorf("second replay: %v, want NotFound", err)
		}
		// Nothing was handled twice.
		mu.Lock()
		defer mu.Unlock()
		for id, n := range handled {
			if n != 1 {
				t.Errorf("event %s handled %d times", id, n)
			}
		}
	})
}

// TestMaxDeliveriesAdvisory: a consumer that never answers (no ack, no nak)
// exhausts JetStream's MaxDeliver; the server's advisory lands in the DLQ,
// `dlq ls` resolves it to the original event, and replay republishes it.
func TestMaxDeliveriesAdvisory(t *testing.T) {
	b := bustest.Start(t, bus.Options{Source: "/shiploop/dlqtest"})
	js := b.JetStream()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Durable: "test-silent", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 100 * time.Millisecond, MaxDeliver: 2,
		FilterSubject: bus.EventFilter("change", ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	ev := change("acme/app", "silent")
	if err := b.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {}) // never acks
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	svc, err := dlq.New(dlq.Config{JetStream: js})
	if err != nil {
		t.Fatal(err)
	}
	var ls []*dlq.Letter
	waitFor(t, "the max-deliveries advisory", func() bool {
		ls, err = svc.List(ctx, "test-silent", 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(ls) == 1
	})
	l := ls[0]
	if l.Kind != dlq.KindMaxDeliveries || l.EventId != ev.ID || l.Stream != bus.StreamEvents || l.Deliveries != 2 || l.Subject != bus.EventSubject("change.pushed", "acme/app") {
		t.Errorf("advisory resolved to %v", l.DeadLetter)
	}
	if ls, _ := svc.List(ctx, "someone-else", 0); len(ls) != 0 {
		t.Errorf("consumer filter: %d letters for another consumer", len(ls))
	}
	cc.Stop()
	rr, err := svc.Replay(ctx, l.Seq)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, bus.StreamEvents)
	m, err := st.GetMsg(ctx, rr.GetStreamSeq())
	if err != nil || m.Header.Get(bus.HeaderID) != ev.ID || m.Subject != l.Subject {
		t.Errorf("republished message: %v, %v", m, err)
	}
	if ls, _ := svc.List(ctx, "", 0); len(ls) != 0 {
		t.Errorf("DLQ after replay: %d letters", len(ls))
	}
}
