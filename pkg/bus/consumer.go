package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shiploop/shiploop/pkg/store"
)

// Handler handles one event inside a transaction. Its database writes and
// the events it publishes through tx commit together with the inbox record
// that marks the event as processed. Returning an error rolls all of it back
// and the event is redelivered later; wrap ErrMalformed (or return
// Permanent(err)) for an event that can never succeed.
type Handler func(ctx context.Context, tx *Tx, ev Event) error

// ConsumerConfig configures a durable consumer.
type ConsumerConfig struct {
	// Name is the durable name, "<service>-<purpose>", under 32 characters.
	Name string
	// Stream defaults to EVENTS.
	Stream string
	// Filters are subject filters, e.g. EventFilter("change", "").
	Filters []string
	// MaxDeliver bounds deliveries before the DLQ (default 5).
	MaxDeliver int
	// Backoff between redeliveries after a handler error (default 1s, 5s, 30s, 2m).
	Backoff []time.Duration
	// AckWait before the server redelivers an unacked message (default 30s);
	// long handlers are kept alive with InProgress heartbeats.
	AckWait time.Duration
	// Batch is how many messages one pull asks for, and the most handled in
	// one transaction (default 64; 1 when Prepare is set, so that messages
	// do not wait behind slow preparations).
	Batch int
	// Prepare, when set, runs before the transaction for slow work that
	// must not hold the database (fetching a repository); its result is
	// Tx.Prepared in the handler. Its errors are retried like the handler's.
	Prepare func(ctx context.Context, ev Event) (any, error)
	// Batched, when set, first handles a whole batch in one call and one
	// transaction, with the batch's inbox records: evs are its events not
	// processed before, in stream order. It is for consumers of many alike
	// events whose writes can share statements (one multi-row insert, one
	// update per row touched, instead of several statements per event).
	// When it fails the transaction rolls back and each event is handled
	// again on its own by the Handler, so one bad event holds up no other;
	// Batched must store exactly what the Handler would.
	Batched func(ctx context.Context, tx *Tx, evs []Event) error
	// Workers, when above 1 (and Batched is nil), handles up to that many
	// messages at once, each in a transaction of its own and acked on its
	// own, as long as they are of different keys: the messages of one key
	// (KeyHeader's value, the event's repository by default) are handled
	// one at a time, in the order they arrived. For consumers whose
	// Prepare is slow (fetching a repository): one repository's changes
	// no longer wait behind another's.
	Workers int
	// KeyHeader is the message header whose value orders messages under
	// Workers (default HeaderRepository); messages without it share the
	// key "".
	KeyHeader string
}

func (c *ConsumerConfig) defaults() {
	if c.Stream == "" {
		c.Stream = StreamEvents
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if len(c.Backoff) == 0 {
		c.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Batch <= 0 {
		c.Batch = 64
		if c.Prepare != nil {
			c.Batch = 1
		}
	}
	if c.Batched != nil {
		c.Workers = 0
	}
	if c.KeyHeader == "" {
		c.KeyHeader = HeaderRepository
	}
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks an error that retrying cannot fix: the event goes to the
// DLQ at once.
func Permanent(err error) error { return permanent{err} }

func isPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p) || errors.Is(err, ErrMalformed)
}

// DLQ header names, on the copy stored in the DLQ stream.
const (
	HeaderDLQReason     = "Shiploop-Dlq-Reason"
	HeaderDLQConsumer   = "Shiploop-Dlq-Consumer"
	HeaderDLQDeliveries = "Shiploop-Dlq-Deliveries"
	HeaderDLQStreamSeq  = "Shiploop-Dlq-Stream-Seq"
	HeaderDLQSubject    = "Shiploop-Dlq-Subject"
)

// Consume runs a durable consumer until ctx ends: each message is decoded,
// handled in a transaction with an inbox record, and acked only after
// commit. Events already in the inbox are acked without calling h again.
func (o *Outbox) Consume(ctx context.Context, cfg ConsumerConfig, h Handler) error {
	cfg.defaults()
	cc := jetstream.ConsumerConfig{
		Durable:       cfg.Name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver + 1, // we Term at MaxDeliver; the server's limit catches a handler that never answers
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: 1000,
	}
	if len(cfg.Filters) == 1 {
		cc.FilterSubject = cfg.Filters[0]
	} else {
		cc.FilterSubjects = cfg.Filters
	}
	log := o.log.With("consumer", cfg.Name)
	for {
		var cons jetstream.Consumer
		err := UntilSettled(ctx, o.log, "creating consumer "+cfg.Name+" on "+cfg.Stream, func() (err error) {
			cons, err = o.bus.js.CreateOrUpdateConsumer(ctx, cfg.Stream, cc)
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting: a clean shutdown, like stopping later
			}
			return fmt.Errorf("bus: creating consumer %s on %s: %w", cfg.Name, cfg.Stream, err)
		}
		if err := o.pull(ctx, log, cfg, cons, h); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		// The consumer went away under us (deleted by someone, or lost
		// with a cluster's state): make it again. Its DeliverAll policy
		// brings the stream from the start; the inbox skips what was
		// handled.
		log.Warn("consumer deleted while in use; making it again")
	}
}

// pull handles cons's messages until ctx ends (nil) or the consumer is
// gone (nil, ctx still live).
func (o *Outbox) pull(ctx context.Context, log *slog.Logger, cfg ConsumerConfig, cons jetstream.Consumer, h Handler) error {
	if cfg.Workers > 1 {
		return o.pullKeyed(ctx, log, cfg, cons, h)
	}
	// A short pull expiry bounds how long a lost pull request can stall
	// delivery (nats.go notices the missing heartbeats within it).
	it, err := cons.Messages(jetstream.PullMaxMessages(cfg.Batch), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return fmt.Errorf("bus: consumer %s: %w", cfg.Name, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	batch := make([]jetstream.Msg, 0, cfg.Batch)
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) ||
				errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				return nil
			}
			log.Warn("consumer pull", "err", err)
			continue
		}
		// Whatever else has already arrived joins the same transaction.
		batch = append(batch[:0], m)
		for len(batch) < cfg.Batch {
			more, err := it.Next(jetstream.NextMaxWait(time.Millisecond))
			if err != nil {
				break
			}
			batch = append(batch, more)
		}
		o.handleBatch(ctx, log, cfg, batch, h)
	}
}

// pullKeyed is pull with cfg.Workers handlers at once, one message each:
// a goroutine per key with messages waiting takes them in arrival order,
// and a semaphore bounds how many handle one at a time. Every message is
// still handled in its own transaction with its inbox record and acked
// after commit (JetStream acks each message on its own, in any order), so
// exactly-once is as in pull. At most inflight messages are held at once
// (waiting or being handled); the iterator stops pulling beyond that.
func (o *Outbox) pullKeyed(ctx context.Context, log *slog.Logger, cfg ConsumerConfig, cons jetstream.Consumer, h Handler) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(cfg.Workers), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return fmt.Errorf("bus: consumer %s: %w", cfg.Name, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	var (
		mu       sync.Mutex
		waiting  = map[string][]jetstream.Msg{} // a key present: its goroutine runs
		workers  = make(chan struct{}, cfg.Workers)
		inflight = make(chan struct{}, 32*cfg.Workers)
		wg       sync.WaitGroup
	)
	defer wg.Wait()
	run := func(key string) {
		for {
			mu.Lock()
			q := waiting[key]
			if len(q) == 0 {
				delete(waiting, key)
				mu.Unlock()
				return
			}
			m := q[0]
			q[0] = nil
			waiting[key] = q[1:]
			mu.Unlock()
			if ctx.Err() != nil {
				_ = m.Nak() // stopping: redeliver at once, not after AckWait
			} else {
				workers <- struct{}{}
				o.handleBatch(ctx, log, cfg, []jetstream.Msg{m}, h)
				<-workers
			}
			<-inflight
		}
	}
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) ||
				errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				return nil
			}
			log.Warn("consumer pull", "err", err)
			continue
		}
		select {
		case inflight <- struct{}{}:
		case <-ctx.Done():
			_ = m.Nak()
			return nil
		}
		key := m.Headers().Get(cfg.KeyHeader)
		mu.Lock()
		q, running := waiting[key]
		waiting[key] = append(q, m)
		mu.Unlock()
		if !running {
			wg.Go(func() { run(key) })
		}
	}
}

// tracer looks the global provider up on each use rather than once at init:
// a tracer taken at init stays bound to the first provider ever installed,
// so spans went missing once the provider was replaced (a second
// telemetry.Setup in one process, tests).
func tracer() trace.Tracer { return otel.Tracer("github.com/shiploop/shiploop/pkg/bus") }

// delivery is one message of a batch on its way through the handler.
type delivery struct {
	m        jetstream.Msg
	md       *jetstream.MsgMetadata
	ev       Event
	ctx      context.Context
	span     trace.Span
	prepared any
	err      error
}

// handleBatch handles the messages one pull brought in one transaction:
// each event runs inside its own savepoint, so a failing handler rolls back
// only its own writes and outbox events; the others commit together and
// are acked after the commit. One transaction per batch instead of per
// event is what lets a consumer keep up with JetStream.
func (o *Outbox) handleBatch(ctx context.Context, log *slog.Logger, cfg ConsumerConfig, batch []jetstream.Msg, h Handler) {
	ds := make([]*delivery, 0, len(batch))
	for _, m := range batch {
		md, err := m.Metadata()
		if err != nil {
			log.Error("message without metadata", "subject", m.Subject(), "err", err)
			_ = m.Term()
			continue
		}
		ev, err := Decode(natsMsg(m))
		if err != nil {
			o.deadLetter(ctx, log, cfg, m, md, err)
			continue
		}
		ev.Sequence = md.Sequence.Stream
		dctx, span := tracer().Start(ContextFrom(ctx, ev), "consume "+ev.Type, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.system", "nats"),
				attribute.String("messaging.consumer.group.name", cfg.Name),
				attribute.String("messaging.message.id", ev.ID),
				attribute.String("cloudevents.event_type", FullType(ev.Type)),
			))
		ds = append(ds, &delivery{m: m, md: md, ev: ev, ctx: dctx, span: span})
	}
	if len(ds) == 0 {
		return
	}
	// Keep the messages alive while slow handlers run: one goroutine for
	// the batch, not one per message.
	hbCtx, hbStop := context.WithCancel(ctx)
	go heartbeatBatch(hbCtx, ds, cfg.AckWait/3)
	live := ds[:0:0]
	for _, d := range ds {
		if cfg.Prepare != nil {
			d.prepared, d.err = cfg.Prepare(d.ctx, d.ev)
		}
		if d.err == nil {
			live = append(live, d)
		}
	}
	if cfg.Batched != nil && len(live) > 0 {
		err := o.inTx(ctx, nil, func(tx *Tx) error { return o.inboxThenBatch(ctx, tx, cfg, live) })
		if err == nil {
			live = nil
		} else {
			log.Warn("batch handler failed; handling the events one by one", "events", len(live), "err", err)
		}
	}
	switch len(live) {
	case 0:
	case 1:
		d := live[0]
		d.err = o.inTx(d.ctx, &d.ev, func(tx *Tx) error {
			tx.Prepared = d.prepared
			return o.inboxThen(d.ctx, tx, cfg.Name, d.ev, h)
		})
	default:
		if err := o.handleTogether(ctx, cfg, live, h); err != nil {
			for _, d := range live {
				if d.err == nil {
					d.err = err
				}
			}
		}
	}
	hbStop()
	for _, d := range ds {
		o.settle(d.ctx, log, cfg, d.m, d.md, d.ev, d.err, d.span)
		d.span.End()
	}
}

// handleTogether handles a batch in one transaction: one inbox insert for
// the whole batch, then, for each event not processed before, in order,
// its handler inside a savepoint. A failing handler rolls back to its
// savepoint and its inbox record is deleted, so only that event is
// redelivered; the others commit together. Each handler runs once per
// delivery (again only when the whole transaction meets a conflict).
func (o *Outbox) handleTogether(ctx context.Context, cfg ConsumerConfig, live []*delivery, h Handler) error {
	o.warm(ctx, inboxInsertMany(len(live)), sqlInboxDelete)
	return o.inTx(ctx, nil, func(tx *Tx) error {
		for _, d := range live {
			d.err = nil
		}
		fresh, err := o.inboxInsert(ctx, tx, cfg.Name, live)
		if err != nil {
			return err
		}
		for _, d := range live {
			if !fresh[d.ev.ID] {
				continue // processed before: ack again, do nothing
			}
			delete(fresh, d.ev.ID) // the same event twice in a batch is handled once
			if _, err := o.exec(ctx, tx.Tx, sqlSavepoint); err != nil {
				return err
			}
			tx.ctx, tx.cause, tx.Prepared = d.ctx, &d.ev, d.prepared
			if herr := h(d.ctx, tx, d.ev); herr != nil {
				if store.IsConflict(herr) {
					return herr // lost a race: run the whole batch again
				}
				if _, err := o.exec(ctx, tx.Tx, sqlRollbackTo); err != nil {
					return err
				}
				// Its inbox record came with the batch's, before the savepoint.
				if _, err := o.exec(ctx, tx.Tx, sqlInboxDelete, cfg.Name, d.ev.ID); err != nil {
					return err
				}
				d.err = herr
			}
			if _, err := o.exec(ctx, tx.Tx, sqlRelease); err != nil {
				return err
			}
		}
		return nil
	})
}

func (o *Outbox) inboxThen(ctx context.Context, tx *Tx, consumer string, ev Event, h Handler) error {
	res, err := o.exec(ctx, tx.Tx, sqlInboxInsert, consumer, ev.ID, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return nil // already processed: ack again, do nothing
	}
	return h(ctx, tx, ev)
}

// inboxThenBatch writes the inbox records of a batch, a statement per 256
// events, and hands the events not processed before to cfg.Batched.
func (o *Outbox) inboxThenBatch(ctx context.Context, tx *Tx, cfg ConsumerConfig, ds []*delivery) error {
	fresh, err := o.inboxInsert(ctx, tx, cfg.Name, ds)
	if err != nil {
		return err
	}
	evs := make([]Event, 0, len(fresh))
	for _, d := range ds {
		if fresh[d.ev.ID] {
			delete(fresh, d.ev.ID) // the same event twice in a batch is handled once
			evs = append(evs, d.ev)
		}
	}
	if len(evs) == 0 {
		return nil // all processed before: ack again, do nothing
	}
	return cfg.Batched(ctx, tx, evs)
}

var inboxInsertSQL sync.Map // size → statement text

// inboxInsertMany is the statement inserting size inbox records (at most
// 256), returning the event ids it inserted.
func inboxInsertMany(size int) string {
	size = 1 << bits.Len(uint(min(size, 256)-1))
	if q, ok := inboxInsertSQL.Load(size); ok {
		return q.(string)
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO bus_inbox (consumer, event_id, processed_at) VALUES `)
	for i := range size {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "($%d, $%d, $%d)", 3*i+1, 3*i+2, 3*i+3)
	}
	q.WriteString(` ON CONFLICT DO NOTHING RETURNING event_id`)
	inboxInsertSQL.Store(size, q.String())
	return q.String()
}

// inboxInsert writes the inbox records of a batch, a statement per 256
// events, and returns the ids of the events not processed before.
func (o *Outbox) inboxInsert(ctx context.Context, tx *Tx, consumer string, ds []*delivery) (map[string]bool, error) {
	fresh := make(map[string]bool, len(ds))
	now := time.Now().UnixNano()
	for start := 0; start < len(ds); start += 256 {
		chunk := ds[start:min(start+256, len(ds))]
		// The last record repeated up to a power of two of them (the
		// repeats are not inserted) keeps the distinct statement texts,
		// each prepared once, to a few.
		if n := len(chunk); n&(n-1) != 0 {
			chunk = append(chunk[:n:n], slices.Repeat(chunk[n-1:], 1<<bits.Len(uint(n))-n)...)
		}
		args := make([]any, 0, 3*len(chunk))
		for _, d := range chunk {
			args = append(args, consumer, d.ev.ID, now)
		}
		rows, err := o.query(ctx, tx.Tx, inboxInsertMany(len(chunk)), args...)
		if err != nil {
			return nil, fmt.Errorf("inbox: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("inbox: %w", err)
			}
			fresh[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("inbox: %w", err)
		}
	}
	return fresh, nil
}

func (o *Outbox) settle(ctx context.Context, log *slog.Logger, cfg ConsumerConfig, m jetstream.Msg, md *jetstream.MsgMetadata, ev Event, err error, span trace.Span) {
	if err == nil {
		if err := m.Ack(); err != nil {
			log.Warn("ack", "event", ev.ID, "err", err)
			return
		}
		countHandled(cfg.Name)
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	if isPermanent(err) || int(md.NumDelivered) >= cfg.MaxDeliver {
		o.deadLetter(ctx, log, cfg, m, md, err)
		return
	}
	delay := cfg.Backoff[min(int(md.NumDelivered)-1, len(cfg.Backoff)-1)]
	log.Warn("handler failed; will retry", "event", ev.ID, "type", ev.Type, "delivery", md.NumDelivered, "retry_in", delay, "err", err)
	_ = m.NakWithDelay(delay)
}

func heartbeat(ctx context.Context, m jetstream.Msg, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = m.InProgress()
		}
	}
}

// heartbeatBatch tells the server that a batch's messages are in progress
// every so often until ctx ends.
func heartbeatBatch(ctx context.Context, ds []*delivery, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, d := range ds {
				_ = d.m.InProgress()
			}
		}
	}
}

// deadLetter stores a copy of m in the DLQ stream with the reason, then
// terminates it so it is never delivered again.
func (o *Outbox) deadLetter(ctx context.Context, log *slog.Logger, cfg ConsumerConfig, m jetstream.Msg, md *jetstream.MsgMetadata, reason error) {
	dl := nats.NewMsg(dlqPrefix + cfg.Name)
	dl.Data = m.Data()
	for k, v := range m.Headers() {
		dl.Header[k] = v
	}
	id := m.Headers().Get(HeaderID)
	if id == "" {
		id = strconv.FormatUint(md.Sequence.Stream, 10)
	}
	// The original's stream sequence keeps a replayed event (republished
	// under a new sequence) from being taken for a duplicate of its first
	// dead letter if it fails again.
	dl.Header.Set(nats.MsgIdHdr, "dlq."+cfg.Name+"."+id+"."+strconv.FormatUint(md.Sequence.Stream, 10))
	dl.Header.Set(HeaderDLQReason, reason.Error())
	dl.Header.Set(HeaderDLQConsumer, cfg.Name)
	dl.Header.Set(HeaderDLQDeliveries, strconv.FormatUint(md.NumDelivered, 10))
	dl.Header.Set(HeaderDLQStreamSeq, strconv.FormatUint(md.Sequence.Stream, 10))
	dl.Header.Set(HeaderDLQSubject, m.Subject())
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := o.bus.js.PublishMsg(pctx, dl); err != nil {
		// Without a DLQ copy, leave the message to be redelivered rather than lose it.
		log.Error("dead-lettering failed; leaving message for redelivery", "subject", m.Subject(), "err", err)
		_ = m.NakWithDelay(cfg.Backoff[len(cfg.Backoff)-1])
		return
	}
	log.Error("event dead-lettered", "subject", m.Subject(), "event", id, "deliveries", md.NumDelivered, "reason", reason)
	_ = m.TermWithReason(truncate(reason.Error(), 200))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// UntilSettled runs fn, a JetStream API call, until it succeeds, fails for
// good or ctx ends. A busy or electing cluster answers late or not at all
// (nats.go gives up after 5 s) or says it is unavailable (a 5xx API error);
// a service starting then must wait for it, not exit. An API error in the
// 4xx range is the request's own fault and is returned at once. Each retry
// is logged with what is being done and the error.
//
// Nobody answering the JetStream API at all is retried for noJetStreamFor
// only: an election ends within seconds, while a server started without
// JetStream never answers, and the error then says so.
func UntilSettled(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	delay := 500 * time.Millisecond
	var silentSince time.Time
	for {
		err := fn()
		if err == nil || ctx.Err() != nil || !transient(err) {
			return err
		}
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			if silentSince.IsZero() {
				silentSince = time.Now()
			} else if time.Since(silentSince) > noJetStreamFor {
				return fmt.Errorf("%w: no JetStream answered for %s; is the NATS server running with JetStream enabled (nats-server -js, or jetstream {} in its config)?", err, noJetStreamFor)
			}
		} else {
			silentSince = time.Time{}
		}
		log.Warn("JetStream is not answering; trying again", "doing", what, "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// apiTimeout bounds one JetStream API request made under a context that
// may carry a far deadline (a job's, a client's). nats.go applies its own
// 5 s only to a context without one, and waits for the deadline otherwise:
// when the node that took the request dies, that is how long it waits.
var apiTimeout = 5 * time.Second

// noJetStreamFor is how long UntilSettled waits for any JetStream answer.
var noJetStreamFor = 30 * time.Second

// transient reports whether a JetStream API call's error may pass on its
// own: a timeout, no responder, a lost connection, or a 5xx API error.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}
