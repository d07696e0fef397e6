package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// PoolConsumerConfig is the consumer the agents of a pool share for kind's
// jobs, as Serve creates it: lease is its AckWait, maxDeliver how often a
// job is tried.
func PoolConsumerConfig(kind, pool string, lease time.Duration, maxDeliver int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: poolConsumer(kind, pool), FilterSubject: PoolFilter(kind, pool),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: lease,
		MaxDeliver: maxDeliver, MaxAckPending: -1,
	}
}

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
	var kv jetstream.KeyValue
	err = UntilSettled(ctx, cfg.Logger, "opening the job pool bucket", func() (err error) {
		kv, err = b.Pools(ctx)
		return err
	})
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
	s := &poolServer{b: b, cfg: cfg, fn: fn, slots: make(chan struct{}, cfg.Slots), wake: make(chan struct{}, 1), started: map[string]bool{}}
	defer s.unsubscribe()
	var wg sync.WaitGroup
	// Pools whose consumer could not be made (a leader election, say) are
	// tried again every few seconds, or their jobs would wait for ever.
	failed := map[string][]string{} // kind.pool -> labels
	for _, k := range cfg.Kinds {
		if err := s.start(ctx, k, DefaultPool, nil); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !transient(err) {
				return err
			}
			cfg.Logger.Error("cannot serve job pool yet; trying again in 5 s", "kind", k, "labels", "", "err", err)
			failed[k+"."+DefaultPool] = nil
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.dispatch(ctx, &wg)
	}()
	var w jetstream.KeyWatcher
	err = UntilSettled(ctx, cfg.Logger, "watching the job pool bucket", func() (err error) {
		w, err = kv.WatchAll(ctx)
		return err
	})
	if err != nil {
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("bus: watching pools: %w", err)
	}
	defer func() { _ = w.Stop() }()
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
				if err := s.start(ctx, kind, pool, labels); err == nil {
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
		if err := s.start(ctx, kind, pool, want); err != nil && ctx.Err() == nil {
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

// poolServer hands the jobs of the pools an agent serves to its slots. One
// dispatcher takes a job only once a slot is reserved for it, one job per
// slot, with one pull of one message at a time; so an agent never holds a
// job it cannot start while another agent could (a job pulled from a second
// pool while the only slot ran a job of the first used to wait, heartbeated,
// behind it). Between looks it sleeps until a job is published on a pool's
// subject (a core NATS subscription, which sees every publish to the
// stream) or, for jobs coming back after a lease ran out or a give-back,
// until the next rescan.
type poolServer struct {
	b     *Bus
	cfg   ServeConfig
	fn    func(context.Context, *Job) error
	slots chan struct{}
	wake  chan struct{} // a job may have been published to a served pool

	mu      sync.Mutex
	pools   []*servedPool
	next    int // the pool looked at first next time: turns keep pools fair
	started map[string]bool
}

type servedPool struct {
	kind, pool   string
	labels       []string
	consMu       sync.Mutex
	cons         jetstream.Consumer // see consumer
	reopening    atomic.Bool        // a reopen runs
	reopenedAt   atomic.Int64       // when the last one started (unix nanoseconds)
	reopenFailed atomic.Bool
	beat         time.Duration // heartbeat interval from the pool's lease
	sub          *nats.Subscription
	// A pool is busy when a job was published to it since it was last
	// found empty, or the last job taken from it had others behind it.
	// Busy pools are looked at first, so that a burst in one pool costs
	// one pull per job, not one per pool. pubs counts publishes (the
	// subscription's callback); seen is pubs as read before the last pull
	// that found the pool empty, so a publish during that pull keeps it
	// busy. Only the dispatcher writes seen and more. lastPub is when the
	// latest publish was seen (unix nanoseconds).
	pubs, seen atomic.Uint64
	more       atomic.Bool
	lastPub    atomic.Int64
}

// rescan is how often an idle agent looks at its pools without being woken:
// redeliveries (a lease ran out, a job given back) publish nothing.
const rescan = time.Second

// settleWait bounds the pull an agent makes after a wake on the pools that
// were published to: a core subscriber can see a publish before the stream
// (in a cluster, its quorum) has stored it, and a pull that waits at the
// server gets the job the moment it is stored. One request per idle agent
// per job; the server hands the job to one of them and the others' pulls
// end empty at settleWait.
const settleWait = 150 * time.Millisecond

func (s *poolServer) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *poolServer) unsubscribe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pools {
		_ = p.sub.Unsubscribe()
	}
}

func (s *poolServer) start(ctx context.Context, kind, pool string, labels []string) error {
	s.mu.Lock()
	if s.started[kind+"."+pool] {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	cons, err := s.openPool(ctx, kind, pool, labels)
	if err != nil {
		return err
	}
	lease := cons.CachedInfo().Config.AckWait
	if lease != s.cfg.AckWait {
		s.cfg.Logger.Info("job pool keeps the lease it was created with", "kind", kind, "labels", strings.Join(labels, ","), "lease", lease, "asked", s.cfg.AckWait)
	}
	sp := &servedPool{kind: kind, pool: pool, labels: labels, cons: cons, beat: jobHeartbeat(lease)}
	sp.more.Store(true) // jobs may be waiting
	sp.sub, err = s.b.nc.Subscribe(PoolFilter(kind, pool), func(*nats.Msg) {
		sp.lastPub.Store(time.Now().UnixNano())
		sp.pubs.Add(1)
		s.signal()
	})
	if err != nil {
		return fmt.Errorf("bus: watching %s jobs with labels [%s]: %w", kind, strings.Join(labels, ", "), err)
	}
	s.mu.Lock()
	s.started[kind+"."+pool] = true
	s.pools = append(s.pools, sp)
	s.mu.Unlock()
	s.signal() // jobs may be waiting in the new pool
	return nil
}

// openPool creates the pool's consumer, or opens it when another agent
// has. Create, never update: agents share the consumer, and one started
// with another --lease must not change the AckWait the others' running
// jobs are heartbeated against. An existing consumer's AckWait is the lease
// for this pool.
func (s *poolServer) openPool(ctx context.Context, kind, pool string, labels []string) (jetstream.Consumer, error) {
	cc := PoolConsumerConfig(kind, pool, s.cfg.AckWait, s.cfg.MaxDeliver)
	cc.Description = fmt.Sprintf("%s jobs for agents with labels [%s]", kind, strings.Join(labels, ", "))
	cons, err := s.b.js.CreateConsumer(ctx, StreamJobs, cc)
	if errors.Is(err, jetstream.ErrConsumerExists) {
		cons, err = s.b.js.Consumer(ctx, StreamJobs, poolConsumer(kind, pool))
	}
	if err != nil {
		return nil, fmt.Errorf("bus: creating job consumer for %s jobs with labels [%s]: %w", kind, strings.Join(labels, ", "), err)
	}
	return cons, nil
}

// consumer is the pool's consumer as last opened.
func (p *servedPool) consumer() jetstream.Consumer {
	p.consMu.Lock()
	defer p.consMu.Unlock()
	return p.cons
}

// reopen makes the pool's consumer again after a pull found it gone
// (deleted by an operator, or lost with a cluster's state). The jobs wait
// in the JOBS work queue meanwhile; the new consumer delivers them. It
// runs in the background, one at a time per pool and at most once a
// second: a pull also finds no responder while a cluster elects a leader,
// and the dispatcher must not wait on JetStream's answer to the create
// meanwhile.
func (s *poolServer) reopen(ctx context.Context, p *servedPool, cause error) {
	if last := p.reopenedAt.Load(); time.Since(time.Unix(0, last)) < time.Second || !p.reopening.CompareAndSwap(false, true) {
		return
	}
	p.reopenedAt.Store(time.Now().UnixNano())
	go func() {
		defer p.reopening.Store(false)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		cons, err := s.openPool(rctx, p.kind, p.pool, p.labels)
		if err != nil {
			if ctx.Err() == nil && !p.reopenFailed.Swap(true) { // once per outage
				s.cfg.Logger.Warn("job pool unreachable; trying again at each look", "kind", p.kind, "labels", strings.Join(p.labels, ","), "cause", cause, "err", err)
			}
			return
		}
		p.consMu.Lock()
		p.cons = cons
		p.consMu.Unlock()
		p.more.Store(true) // its jobs are still queued
		if p.reopenFailed.Swap(false) || !errors.Is(cause, nats.ErrNoResponders) {
			s.cfg.Logger.Info("job pool consumer opened again", "kind", p.kind, "labels", strings.Join(p.labels, ","), "cause", cause)
		}
		s.signal() // look at it now
	}()
}

// gone reports whether a pull failed because its consumer may no longer
// exist: a pull to a deleted consumer finds no responder (as it does while
// JetStream is away; reopening then fails, quietly, until it is back).
func gone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, nats.ErrNoResponders)
}

// dispatch reserves a slot, takes one job for it and runs the job, until
// ctx ends.
func (s *poolServer) dispatch(ctx context.Context, wg *sync.WaitGroup) {
	for {
		select {
		case <-ctx.Done():
			return
		case s.slots <- struct{}{}:
		}
		job, m, beat, ok := s.take(ctx)
		if !ok {
			<-s.slots
			return
		}
		jctx := ContextFrom(ctx, job.Event)
		hbCtx, hbStop := context.WithCancel(jctx)
		go heartbeat(hbCtx, m, beat)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.slots }()
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

// take returns the next job of any served pool, waiting for one; ok is
// false when ctx ended first. It looks at every pool, busy ones first, with
// no-wait pulls at once (a slot has just been reserved) and at each rescan;
// after a wake it pulls from the busy pools, waiting up to settleWait at the
// server. A wake is taken only before a waiting look: one that comes before
// or during a no-wait look (which can miss a job published but not yet
// stored) leads to a waiting look next.
func (s *poolServer) take(ctx context.Context) (*Job, jetstream.Msg, time.Duration, bool) {
	rescanT := time.NewTimer(rescan)
	defer rescanT.Stop()
	woken := false
	for {
		if woken {
			// Drain the wake first, so a publish during the look wakes again.
			select {
			case <-s.wake:
			default:
			}
			if job, m, beat, ok := s.lookWaiting(ctx); ok {
				return job, m, beat, true
			}
		} else if job, m, beat, ok := s.look(ctx); ok {
			return job, m, beat, true
		}
		select {
		case <-ctx.Done():
			return nil, nil, 0, false
		case <-s.wake:
			woken = true
		case <-rescanT.C:
			rescanT.Reset(rescan)
			woken = false
		}
	}
}

func (p *servedPool) busy() bool { return p.more.Load() || p.pubs.Load() != p.seen.Load() }

// pulled records what a pull that waited at the server found: more, and,
// when it took nothing or the last job, that the pool was empty as of pubs
// read before it. A no-wait pull proves nothing about publishes of the last
// settleWait (their jobs may not be stored yet); look clears older ones, so
// that a pool whose jobs other agents took while this one was full does not
// get a waiting pull ahead of the pool that woke it.
func (p *servedPool) pulled(pubs uint64, more bool) {
	p.more.Store(more)
	if !more {
		p.seen.Store(pubs)
	}
}

// look asks every pool in turn for one job without waiting, busy pools
// first, and returns the first job it gets.
func (s *poolServer) look(ctx context.Context) (*Job, jetstream.Msg, time.Duration, bool) {
	pools, first := s.turn()
	var order, rest []int
	for i := range pools {
		if k := (first + i) % len(pools); pools[k].busy() {
			order = append(order, k)
		} else {
			rest = append(rest, k)
		}
	}
	for _, k := range append(order, rest...) {
		if ctx.Err() != nil {
			return nil, nil, 0, false
		}
		p := pools[k]
		pubs, last := p.pubs.Load(), p.lastPub.Load()
		job, m, more, ok, err := nextNoWait(p.consumer())
		if gone(err) {
			s.reopen(ctx, p, err)
			continue
		}
		p.more.Store(more)
		if !more && time.Since(time.Unix(0, last)) > settleWait {
			// Publishes older than a waiting pull's wait are stored by
			// now (or taken by others): the pool is not busy for them.
			// Younger ones stay counted, see pulled.
			p.seen.Store(pubs)
		}
		if ok {
			s.taken(k)
			return job, m, p.beat, true
		}
	}
	return nil, nil, 0, false
}

// lookWaiting pulls one job from the busy pools in turn, each pull waiting
// at the server for its share of settleWait, and returns the first job it
// gets.
func (s *poolServer) lookWaiting(ctx context.Context) (*Job, jetstream.Msg, time.Duration, bool) {
	pools, first := s.turn()
	var busy []int
	for i := range pools {
		if k := (first + i) % len(pools); pools[k].busy() {
			busy = append(busy, k)
		}
	}
	if len(busy) == 0 {
		return nil, nil, 0, false
	}
	wait := max(settleWait/time.Duration(len(busy)), 20*time.Millisecond)
	for _, k := range busy {
		if ctx.Err() != nil {
			return nil, nil, 0, false
		}
		p := pools[k]
		pubs := p.pubs.Load()
		job, m, more, ok, err := nextWaiting(p.consumer(), wait)
		if gone(err) {
			s.reopen(ctx, p, err)
			continue
		}
		p.pulled(pubs, more)
		if ok {
			s.taken(k)
			return job, m, p.beat, true
		}
	}
	return nil, nil, 0, false
}

// turn returns the served pools and the one to look at first.
func (s *poolServer) turn() ([]*servedPool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pools), s.next
}

// taken records that pool k gave a job: the next look starts after it, so
// turns keep pools fair.
func (s *poolServer) taken(k int) {
	s.mu.Lock()
	s.next = (k + 1) % max(len(s.pools), 1)
	s.mu.Unlock()
}

// nextNoWait takes a job the pool has now, if any; the server answers at
// once either way (nats.go gives up after a second if the answer is lost).
// more says whether the pool had other jobs behind the one taken.
func nextNoWait(cons jetstream.Consumer) (job *Job, m jetstream.Msg, more, ok bool, err error) {
	batch, err := cons.FetchNoWait(1)
	if err != nil {
		return nil, nil, false, false, err
	}
	return firstJob(batch)
}

// firstJob reads the one message a pull brought, if any.
func firstJob(batch jetstream.MessageBatch) (job *Job, m jetstream.Msg, more, ok bool, err error) {
	for m := range batch.Messages() {
		if md, err := m.Metadata(); err == nil {
			more = md.NumPending > 0
		}
		if job, ok := decodeJob(m); ok {
			return job, m, more, true, nil
		}
	}
	return nil, nil, more, false, batch.Error()
}

// nextWaiting takes a job from the pool, waiting up to wait at the server
// for one to be stored (nats.go waits a second more for the server's
// answer); more says whether the pool had others behind it.
func nextWaiting(cons jetstream.Consumer, wait time.Duration) (job *Job, m jetstream.Msg, more, ok bool, err error) {
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, nil, false, false, err
	}
	return firstJob(batch)
}

// next pulls one job, waiting at most wait; ok is false when none came.
func next(ctx context.Context, cons jetstream.Consumer, wait time.Duration) (*Job, jetstream.Msg, bool) {
	m, err := pullOne(ctx, cons, wait)
	if err != nil {
		return nil, nil, false
	}
	job, ok := decodeJob(m)
	return job, m, ok
}

// pullOne pulls one message, waiting at most wait. After an error other
// than "nothing came" (a broken connection) it waits a little before
// returning it, so that a caller's loop does not spin.
func pullOne(ctx context.Context, cons jetstream.Consumer, wait time.Duration) (jetstream.Msg, error) {
	pullCtx, cancel := context.WithTimeout(ctx, wait)
	m, err := cons.Next(jetstream.FetchContext(pullCtx))
	cancel()
	if err != nil && ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoHeartbeat) {
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	return m, err
}

// decodeJob reads a job message; one that cannot be read is terminated
// with the reason (it could never run).
func decodeJob(m jetstream.Msg) (*Job, bool) {
	md, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return nil, false
	}
	ev, err := Decode(natsMsg(m))
	if err != nil {
		_ = m.TermWithReason(truncate(err.Error(), 200))
		return nil, false
	}
	ev.Sequence = md.Sequence.Stream
	return &Job{Event: ev, Attempt: md.NumDelivered, msg: m}, true
}
