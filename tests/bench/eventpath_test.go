package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
)

// eventCount is N for the event path benchmark (SHIPLOOP_BENCH_EVENTS overrides).
func eventCount() int {
	if n, err := strconv.Atoi(os.Getenv("SHIPLOOP_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 20000
}

const payloadSize = 512

// rounds is how often each event path variant runs.
const rounds = 3

// payload is a protobuf whose encoding is exactly payloadSize bytes, so the
// event path carries the same body as the raw publishes (plus its headers).
func payload() *wrapperspb.BytesValue {
	v := wrapperspb.Bytes(make([]byte, payloadSize-3)) // tag + 2-byte length
	if n := proto.Size(v); n != payloadSize {
		panic(fmt.Sprintf("payload is %d bytes, want %d", n, payloadSize))
	}
	return v
}

// BenchmarkEventPath compares, on one embedded nats-server, raw JetStream
// async publishing with shiploop's whole event path: Outbox.InTx on SQLite,
// the relay to JetStream, and a Consume handler with inbox and ack.
func BenchmarkEventPath(b *testing.B) {
	n := eventCount()
	cpu := startCPU()
	dir := b.TempDir()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		b.Fatal(err)
	}
	defer emb.Shutdown()
	nc, err := emb.Connect("bench")
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	// The raw peer's stream: like EVENTS (file storage, R1), its own subjects.
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "RAW", Subjects: []string{"bench.raw.>"}, Storage: jetstream.FileStorage, Replicas: 1,
	}); err != nil {
		b.Fatal(err)
	}

	// Every variant runs `rounds` times, interleaved (round 1 of each, then
	// round 2...), so that noise from the shared machine hits all of them
	// alike; the table shows each variant's median and range.
	samples := map[string][]float64{}
	notes := map[string][]string{}
	type variant struct {
		name string
		fn   func(b *testing.B, round int) (float64, string)
	}
	body := make([]byte, payloadSize)
	seq := 0
	next := func() string { seq++; return fmt.Sprintf("bench.raw.r%d", seq) }
	variants := []variant{
		{"raw-publish", func(b *testing.B, _ int) (float64, string) {
			return rawPublish(b, nc, next(), n, func(subject string, i int) *nats.Msg {
				return &nats.Msg{Subject: subject, Data: body}
			}), ""
		}},
		{"raw-publish-ce-headers", func(b *testing.B, _ int) (float64, string) {
			pl := payload()
			return rawPublish(b, nc, next(), n, func(subject string, i int) *nats.Msg {
				ev := bus.NewEvent("bench.tick", "bench/raw", "", pl)
				ev.Source = "/bench"
				m, err := bus.Encode(ctx, subject, ev)
				if err != nil {
					b.Fatal(err)
				}
				return m
			}), ""
		}},
		{"raw-publish-consume", func(b *testing.B, _ int) (float64, string) {
			return rawPublishConsume(b, js, nc, next(), n, body), ""
		}},
		{"consume-only", func(b *testing.B, round int) (float64, string) {
			return consumeOnly(b, nc, filepath.Join(dir, fmt.Sprintf("consume-%d", round)), n)
		}},
		{"event-path-1-per-tx", func(b *testing.B, round int) (float64, string) {
			return eventPath(b, nc, filepath.Join(dir, fmt.Sprintf("one-%d", round)), n, 1)
		}},
		{"event-path-100-per-tx", func(b *testing.B, round int) (float64, string) {
			return eventPath(b, nc, filepath.Join(dir, fmt.Sprintf("batch-%d", round)), n, 100)
		}},
	}
	for round := range rounds {
		for _, v := range variants {
			b.Run(v.name, func(b *testing.B) {
				var rate float64
				var note string
				for range b.N {
					rate, note = v.fn(b, round)
				}
				b.ReportMetric(rate, "msgs/s")
				if note != "" {
					b.Log(note)
				}
				samples[v.name] = append(samples[v.name], rate)
				notes[v.name] = append(notes[v.name], note)
			})
		}
	}
	rates := map[string]float64{}
	spread := map[string]string{}
	for k, v := range samples {
		slices.Sort(v)
		rates[k] = v[len(v)/2]
		spread[k] = num(v[0]) + "–" + num(v[len(v)-1])
	}

	raw := rates["raw-publish"]
	if raw == 0 || rates["raw-publish-consume"] == 0 || len(rates) < len(variants) || len(samples["raw-publish"]) < rounds {
		return // a filtered run (profiling): nothing to compare
	}
	// The goal is held against raw publish + a durable consumer of the
	// same messages (c): the event path publishes and consumes, so
	// publishing alone (a) is not its peer.
	peer := rates["raw-publish-consume"]
	for _, k := range []string{"event-path-1-per-tx", "event-path-100-per-tx"} {
		b.Logf("%s: %s msgs/s = %.1f%% of raw publish + durable consumer (%s msgs/s), %.1f%% of raw publish (%s msgs/s)",
			k, num(rates[k]), 100*rates[k]/peer, num(peer), 100*rates[k]/raw, num(raw))
	}
	pct := func(k string, of float64) string { return fmt.Sprintf("%.1f%%", 100*rates[k]/of) }
	row := func(label, k, goal string) string {
		return fmt.Sprintf("| %s | %s | %s | %s | %s | %s |\n", label, num(rates[k]), spread[k], pct(k, raw), pct(k, peer), goal)
	}
	goal := func(k string) string { return verdict(rates[k] >= peer/2) }
	var s strings.Builder
	fmt.Fprintf(&s, "N = %s messages of %d-byte payload per run; one embedded nats-server (in-process connections, file storage, R1); "+
		"each variant run %d times interleaved, median shown. %s.\n\n",
		num(float64(n)), payloadSize, rounds, measured(cpu, 0))
	s.WriteString("| path | msgs/s (median) | range | vs (a) | vs (c) | goal: event path ≥ 50% of (c) |\n|---|---:|---:|---:|---:|---|\n")
	s.WriteString(row("(a) raw JetStream `PublishAsync`, wait for all acks", "raw-publish", "reference"))
	s.WriteString(row("raw `PublishMsgAsync` of shiploop-shaped messages (CloudEvents headers, `Nats-Msg-Id` dedup)", "raw-publish-ce-headers", "reference"))
	s.WriteString(row("(c) raw `PublishAsync` + durable pull consumer with explicit ack, until all consumed", "raw-publish-consume", "peer"))
	s.WriteString(row("`Consume` alone: inbox + handler + ack per event, a transaction per pulled batch, the N events already in EVENTS", "consume-only", "reference"))
	s.WriteString(row("**(b) event path, 1 event per `Outbox.InTx`**", "event-path-1-per-tx", goal("event-path-1-per-tx")))
	s.WriteString(row("**(b) event path, 100 events per `Outbox.InTx`**", "event-path-100-per-tx", goal("event-path-100-per-tx")))
	s.WriteString("\nWhere the time goes, per run (the last event committed to the producer's outbox / seen by a core NATS subscriber as the relay published it / seen by the handler):\n\n")
	for _, k := range []string{"event-path-1-per-tx", "event-path-100-per-tx", "consume-only"} {
		for _, note := range notes[k] {
			if note != "" {
				fmt.Fprintf(&s, "- %s\n", note)
			}
		}
	}
	if err := writeSection("eventpath", s.String()); err != nil {
		b.Error(err)
	}
}

// rawPublish publishes n messages with PublishMsgAsync and waits for every
// ack; it returns msgs/s.
func rawPublish(b *testing.B, nc *nats.Conn, subject string, n int, msg func(string, int) *nats.Msg) float64 {
	b.Helper()
	var failed atomic.Int64
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := range n {
		if _, err := js.PublishMsgAsync(msg(subject, i)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatalf("raw publish: %d acks still pending after a minute", js.PublishAsyncPending())
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("raw publish: %d of %d publishes failed", f, n)
	}
	return float64(n) / elapsed.Seconds()
}

// rawPublishConsume publishes n messages asynchronously while a durable pull
// consumer (explicit ack) drains them; it returns msgs/s from the first
// publish until the consumer has seen all n.
func rawPublishConsume(b *testing.B, js jetstream.JetStream, nc *nats.Conn, subject string, n int, body []byte) float64 {
	b.Helper()
	ctx := context.Background()
	name := strings.ReplaceAll(subject, ".", "-")
	cons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{
		Durable: name, FilterSubject: subject, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000,
	})
	if err != nil {
		b.Fatal(err)
	}
	var seen atomic.Int64
	done := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if seen.Add(1) == int64(n) {
			close(done)
		}
	}, jetstream.PullMaxMessages(64))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	pub, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for range n {
		if _, err := pub.PublishAsync(subject, body); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("raw consume: saw %d of %d", seen.Load(), n)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	return float64(n) / elapsed.Seconds()
}

// eventPath writes n events through a producer service's outbox (perTx per
// transaction) while its relay publishes them and a consumer service, with
// its own SQLite database, handles them with Consume. It returns msgs/s from
// the first write until the handler has seen all n, and a breakdown note.
func eventPath(b *testing.B, nc *nats.Conn, dir string, n, perTx int) (float64, string) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stalls := &warnCounter{}
	quiet := slog.New(stalls)
	open := func(service string) *store.DB {
		db, err := store.Open(ctx, store.Config{Service: service, DataDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if err := db.Migrate(ctx, bus.Migrations); err != nil {
			b.Fatal(err)
		}
		return db
	}
	pdb, cdb := open("producer"), open("consumer")
	defer pdb.Close()
	defer cdb.Close()
	pbus, err := bus.New(ctx, nc, bus.Options{Source: "/bench/producer"})
	if err != nil {
		b.Fatal(err)
	}
	cbus, err := bus.New(ctx, nc, bus.Options{Source: "/bench/consumer"})
	if err != nil {
		b.Fatal(err)
	}
	producer := bus.NewOutbox(pdb, pbus, quiet)
	consumer := bus.NewOutbox(cdb, cbus, quiet)

	repo := fmt.Sprintf("bench/per-tx-%d-%d", perTx, time.Now().UnixNano())
	name := fmt.Sprintf("bench-%d-%d", perTx, time.Now().UnixNano()%1e6)
	var seen atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = consumer.Consume(ctx, bus.ConsumerConfig{Name: name, Filters: []string{bus.EventFilter("bench.tick", repo)}},
			func(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
				if seen.Add(1) == int64(n) {
					close(done)
				}
				return nil
			})
	})
	wg.Go(func() { _ = producer.Run(ctx) })
	// Wait until the durable consumer exists, so its creation is not timed.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := cbus.JetStream().Consumer(ctx, bus.StreamEvents, name); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("consumer %s not created", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A core subscription sees each message as the relay publishes it, which
	// splits the path into "written and relayed" and "consumed".
	var relayed atomic.Int64
	relayedAll := make(chan time.Time, 1)
	sub, err := nc.Subscribe(bus.EventSubject("bench.tick", repo), func(*nats.Msg) {
		if relayed.Add(1) == int64(n) {
			relayedAll <- time.Now()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		b.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	pl := payload()

	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i += perTx {
		err := producer.InTx(ctx, func(tx *bus.Tx) error {
			for j := i; j < min(i+perTx, n); j++ {
				if err := tx.Publish(bus.NewEvent("bench.tick", repo, "", pl)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	written := time.Since(start)
	stall := time.NewTicker(5 * time.Second)
	defer stall.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-stall.C:
			ci, err := cbus.JetStream().Consumer(ctx, bus.StreamEvents, name)
			if err == nil {
				info, _ := ci.Info(ctx)
				b.Logf("still waiting at %s: handler saw %d, relay published %d; consumer delivered %d, ack pending %d, redelivered %d, pending %d, waiting pulls %d",
					time.Since(start).Round(time.Millisecond), seen.Load(), relayed.Load(), info.Delivered.Consumer, info.NumAckPending, info.NumRedelivered, info.NumPending, info.NumWaiting)
			}
		case <-time.After(3 * time.Minute):
			b.Fatalf("event path: handler saw %d of %d events", seen.Load(), n)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	wg.Wait()
	rate := float64(n) / elapsed.Seconds()
	relayedAt := "?"
	select {
	case t := <-relayedAll:
		relayedAt = t.Sub(start).Round(time.Millisecond).String()
	case <-time.After(5 * time.Second):
	}
	note := fmt.Sprintf("%d per tx: %s / %s / %s (%s msgs/s)",
		perTx, written.Round(time.Millisecond), relayedAt, elapsed.Round(time.Millisecond), num(rate))
	if w := stalls.warnings(); len(w) > 0 {
		note += "; the bus logged: " + strings.Join(w, "; ")
	}
	return rate, note
}

// consumeOnly publishes n shiploop events straight into EVENTS, then times a
// Consume handler (inbox insert, handler, commit, ack per event) draining
// them: the consuming side's ceiling on its own.
func consumeOnly(b *testing.B, nc *nats.Conn, dir string, n int) (float64, string) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, store.Config{Service: "consumer", DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, bus.Migrations); err != nil {
		b.Fatal(err)
	}
	cbus, err := bus.New(ctx, nc, bus.Options{Source: "/bench/consumer"})
	if err != nil {
		b.Fatal(err)
	}
	repo := fmt.Sprintf("bench/consume-%d", time.Now().UnixNano())
	stalls := &warnCounter{}
	pl := payload()
	rawPublish(b, nc, bus.EventSubject("bench.tick", repo), n, func(subject string, i int) *nats.Msg {
		ev := bus.NewEvent("bench.tick", repo, "", pl)
		ev.Source = "/bench"
		m, err := bus.Encode(ctx, subject, ev)
		if err != nil {
			b.Fatal(err)
		}
		return m
	})
	var seen atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	b.ResetTimer()
	b.StartTimer()
	start := time.Now()
	wg.Go(func() {
		_ = bus.NewOutbox(db, cbus, slog.New(stalls)).Consume(ctx,
			bus.ConsumerConfig{Name: fmt.Sprintf("bench-consume-%d", time.Now().UnixNano()%1e6), Filters: []string{bus.EventFilter("bench.tick", repo)}},
			func(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
				if seen.Add(1) == int64(n) {
					close(done)
				}
				return nil
			})
	})
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		b.Fatalf("consume only: handler saw %d of %d events", seen.Load(), n)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	wg.Wait()
	note := ""
	if w := stalls.warnings(); len(w) > 0 {
		note = "consume only: the bus logged: " + strings.Join(w, "; ")
	}
	return float64(n) / elapsed.Seconds(), note
}

// warnCounter is a slog handler that keeps the bus's warnings (a consumer
// pull that failed, a relay retry) so a run can say why it was slow.
type warnCounter struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			msg += ": " + a.Value.String()
		}
		return true
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, fmt.Sprintf("%s %q", time.Now().UTC().Format("15:04:05.000"), msg))
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }
func (w *warnCounter) warnings() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}
