package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/labels"
)

// Job pools route jobs to agents by label. A job that asks for labels (the
// .shiploop.yml `labels:`) goes to the pool of exactly that label set:
// subject shiploop.job.<kind>.<pool>.<repository>, where pool is "any" for
// a job without labels and "p" + 12 hex digits of the set's hash otherwise.
// Each (kind, pool) has one durable work-queue consumer that every agent able
// to run it pulls from, so the consumers' filters never overlap (a work-queue
// stream refuses overlapping consumers) and a job still goes to exactly one
// agent. An agent serves a pool when it has every label of the pool's set.
//
// Producers register a pool in the PoolBucket KV bucket (through the
// outbox, in the transaction that queues the job); agents watch the bucket
// and start pulling from new pools they can serve. Jobs of a pool no agent
// can serve wait in the stream until one starts.

// JobKinds are the kinds of job the platform queues.
var JobKinds = []string{"build", "test", "deploy"}

// DefaultPool is the pool of jobs that ask for no label.
const DefaultPool = labels.DefaultPool

// PoolBucket is the KV bucket of known pools: key <kind>.<pool>, value the
// pool's labels, one per line.
const PoolBucket = "job_pools"

// CheckLabel reports what is wrong with a label, or nil: labels.Check.
func CheckLabel(l string) error { return labels.Check(l) }

// Pool returns the pool token of a label set and the set in canonical form:
// labels.Pool.
func Pool(set []string) (string, []string, error) { return labels.Pool(set) }

// PoolSubject is the subject of a job of a kind in a pool.
func PoolSubject(kind, pool, repo string) string {
	return jobPrefix + kind + "." + pool + "." + RepoToken(repo)
}

// PoolFilter selects every job of a kind in a pool.
func PoolFilter(kind, pool string) string { return jobPrefix + kind + "." + pool + ".*" }

// poolConsumer is the durable name of a pool's consumer.
func poolConsumer(kind, pool string) string { return "jobs-" + kind + "-" + pool }

// EnqueueFor adds a job for agents having every one of labels; see Pool.
func (tx *Tx) EnqueueFor(kind string, labels []string, ev Event) error {
	pool, set, err := Pool(labels)
	if err != nil {
		return fmt.Errorf("job labels: %w", err)
	}
	if pool != DefaultPool {
		// Registering the pool is idempotent; the message id lets JetStream
		// drop repeats within its duplicate window.
		_, err := tx.ExecContext(tx.ctx,
			`INSERT INTO bus_outbox (subject, msg_id, headers, data, created_at) VALUES ($1, $2, $3, $4, $5)`,
			"$KV."+PoolBucket+"."+kind+"."+pool, "pool."+kind+"."+pool, `{"Nats-Msg-Id":["pool.`+kind+`.`+pool+`"]}`,
			[]byte(strings.Join(set, "\n")), time.Now().UnixNano())
		if err != nil {
			return fmt.Errorf("outbox: registering pool %s: %w", strings.Join(set, ","), err)
		}
		tx.queued++
	}
	return tx.add(PoolSubject(kind, pool, ev.Repository), ev)
}

// Pools opens (creating if needed) the pool bucket.
func (b *Bus) Pools(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := b.js.KeyValue(ctx, PoolBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: PoolBucket, Description: "job pools: label sets jobs asked for",
			Storage: jetstream.FileStorage, Replicas: b.opts.Replicas,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("bus: pool bucket: %w", err)
	}
	return kv, nil
}

// ServeConfig configures Serve.
type ServeConfig struct {
	// Kinds of job taken (default JobKinds).
	Kinds []string
	// Labels the agent has: it serves every pool whose labels it all has.
	Labels []string
	// Slots is how many jobs run at once (default 1).
	Slots int
	// AckWait before a silent agent's job goes to another (default 30s).
	AckWait time.Duration
	// MaxDeliver bounds how often a job is tried (default 5).
	MaxDeliver int
	Logger     *slog.Logger
}

// Serve takes jobs from every pool the agent can serve, at most Slots at
// once, and runs fn for each as Take does (heartbeats while it runs; acked
// when fn returns nil, given back after a second otherwise). It returns when
// ctx ends and the running jobs have returned.
func (b *Bus) Serve(ctx context.Context, cfg ServeConfig, fn func(ctx context.Context, job *Job) error) error {
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = JobKinds
	}
	if cfg.Slots <= 0 {
		cfg.Slots = 1
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = 5
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	_, have, err := Pool(cfg.Labels)
	if err != nil {
		return fmt.Errorf("agent labels: %w", err)
	}
	kv, err := b.Pools(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	// Before pools, every agent shared one consumer "agents" over all of
	// JOBS; it would overlap every pool's consumer.
	if c, err := b.js.Consumer(ctx, StreamJobs, "agents"); err == nil && c.CachedInfo().Config.FilterSubject == jobPrefix+">" {
		_ = b.js.DeleteConsumer(ctx, StreamJobs, "agents")
	}
	s := &poolServer{b: b, cfg: cfg, fn: fn, slots: make(chan struct{}, cfg.Slots), freed: make(chan struct{}), started: map[string]bool{}}
	var wg sync.WaitGroup
	for _, k := range cfg.Kinds {
		if err := s.start(ctx, &wg, k, DefaultPool, nil); err != nil {
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("bus: watching pools: %w", err)
	}
	defer func() { _ = w.Stop() }()
	// Pools whose consumer could not be made (a leader election, say) are
	// tried again every few seconds, or their jobs would wait for ever.
	failed := map[string][]string{} // kind.pool -> labels
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	for ctx.Err() == nil {
		var e jetstream.KeyValueEntry
		ok := true
		select {
		case <-ctx.Done():
		case <-retry.C:
			for key, labels := range failed {
				kind, pool, _ := strings.Cut(key, ".")
				if err := s.start(ctx, &wg, kind, pool, labels); err == nil {
					delete(failed, key)
				}
			}
			continue
		case e, ok = <-w.Updates():
		}
		if !ok {
			// The watch ended under us: start another (it replays every
			// pool; those already served are skipped).
			_ = w.Stop()
			select {
			case <-ctx.Done():
				continue
			case <-time.After(time.Second):
			}
			if nw, err := kv.WatchAll(ctx); err == nil {
				w = nw
			}
			continue
		}
		if e == nil || e.Operation() != jetstream.KeyValuePut {
			continue
		}
		kind, pool, ok := strings.Cut(e.Key(), ".")
		if !ok || !slices.Contains(cfg.Kinds, kind) {
			continue
		}
		want := strings.Split(string(e.Value()), "\n")
		if !subset(want, have) {
			continue
		}
		if err := s.start(ctx, &wg, kind, pool, want); err != nil && ctx.Err() == nil {
			cfg.Logger.Error("cannot serve job pool yet; trying again in 5 s", "kind", kind, "labels", strings.Join(want, ","), "err", err)
			failed[e.Key()] = want
		}
	}
	wg.Wait()
	return nil
}

func subset(want, have []string) bool {
	for _, l := range want {
		if !slices.Contains(have, l) {
			return false
		}
	}
	return true
}

type poolServer struct {
	b     *Bus
	cfg   ServeConfig
	fn    func(context.Context, *Job) error
	slots chan struct{}

	mu      sync.Mutex
	freed   chan struct{} // closed when a slot frees
	started map[string]bool
}

// waitFree blocks until a slot is free; false when ctx ended first.
func (s *poolServer) waitFree(ctx context.Context) bool {
	for {
		s.mu.Lock()
		if len(s.slots) < cap(s.slots) {
			s.mu.Unlock()
			return true
		}
		freed := s.freed
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-freed:
		}
	}
}

// release frees a slot and wakes the pullers waiting for one.
func (s *poolServer) release() {
	<-s.slots
	s.mu.Lock()
	close(s.freed)
	s.freed = make(chan struct{})
	s.mu.Unlock()
}

func (s *poolServer) start(ctx context.Context, wg *sync.WaitGroup, kind, pool string, labels []string) error {
	s.mu.Lock()
	if s.started[kind+"."+pool] {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	// Create, never update: agents share the consumer, and one started
	// with another --lease must not change the AckWait the others'
	// running jobs are heartbeated against. An existing consumer's AckWait
	// is the lease for this pool.
	cons, err := s.b.js.CreateConsumer(ctx, StreamJobs, jetstream.ConsumerConfig{
		Durable: poolConsumer(kind, pool), FilterSubject: PoolFilter(kind, pool),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: s.cfg.AckWait,
		MaxDeliver: s.cfg.MaxDeliver, MaxAckPending: -1,
		Description: fmt.Sprintf("%s jobs for agents with labels [%s]", kind, strings.Join(labels, ", ")),
	})
	if errors.Is(err, jetstream.ErrConsumerExists) {
		cons, err = s.b.js.Consumer(ctx, StreamJobs, poolConsumer(kind, pool))
	}
	if err != nil {
		return fmt.Errorf("bus: creating job consumer for %s jobs with labels [%s]: %w", kind, strings.Join(labels, ", "), err)
	}
	lease := cons.CachedInfo().Config.AckWait
	if lease != s.cfg.AckWait {
		s.cfg.Logger.Info("job pool keeps the lease it was created with", "kind", kind, "labels", strings.Join(labels, ","), "lease", lease, "asked", s.cfg.AckWait)
	}
	s.mu.Lock()
	s.started[kind+"."+pool] = true
	s.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.pull(ctx, wg, cons, jobHeartbeat(lease))
	}()
	return nil
}

// pull asks for a job of its pool whenever the agent has a free slot; a
// wait does not hold a slot, so an idle pool never keeps a busy one waiting.
// When pulls of several pools answer at once for one free slot, the extra
// jobs wait here for a slot, heartbeated so that no other agent gets them
// meanwhile (a job is never run twice, and never given back to use up one
// of its few deliveries).
func (s *poolServer) pull(ctx context.Context, wg *sync.WaitGroup, cons jetstream.Consumer, beat time.Duration) {
	for ctx.Err() == nil {
		if !s.waitFree(ctx) {
			return
		}
		job, m, ok := next(ctx, cons, 5*time.Second)
		if !ok {
			continue
		}
		jctx := ContextFrom(ctx, job.Event)
		hbCtx, hbStop := context.WithCancel(jctx)
		go heartbeat(hbCtx, m, beat)
		select {
		case <-ctx.Done():
			hbStop()
			_ = m.NakWithDelay(time.Second) // shutting down: another agent takes it
			return
		case s.slots <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.release()
			err := s.fn(jctx, job)
			hbStop()
			if err != nil {
				_ = m.NakWithDelay(time.Second)
			} else {
				_ = m.Ack()
			}
		}()
	}
}

// next pulls one job, waiting at most wait; ok is false when none came.
func next(ctx context.Context, cons jetstream.Consumer, wait time.Duration) (*Job, jetstream.Msg, bool) {
	pullCtx, cancel := context.WithTimeout(ctx, wait)
	m, err := cons.Next(jetstream.FetchContext(pullCtx))
	cancel()
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) &&
			!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoHeartbeat) {
			// A broken connection: wait a little instead of spinning.
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
		return nil, nil, false
	}
	md, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return nil, nil, false
	}
	ev, err := Decode(natsMsg(m))
	if err != nil {
		_ = m.TermWithReason(truncate(err.Error(), 200))
		return nil, nil, false
	}
	ev.Sequence = md.Sequence.Stream
	return &Job{Event: ev, Attempt: md.NumDelivered, msg: m}, m, true
}
