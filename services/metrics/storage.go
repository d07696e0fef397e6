package metrics

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/services/metrics/carbon"
	"github.com/shiploop/shiploop/services/metrics/render"
)

// Storage holds the series index and the points. Writes land in memory
// (where reads see them at once, so a new series is findable immediately)
// and a flusher writes new series and changed chunks to the database every
// FlushInterval. When more than MaxUnflushed points wait for the flusher,
// Add blocks: TCP readers slow down instead of dropping; UDP uses TryAdd and
// counts what it drops.
type Storage struct {
	db      *store.DB
	log     *slog.Logger
	schemas []Schema
	kept    []*Schema // schemas series keep from before the configuration changed (Expire)
	now     func() time.Time

	mu     sync.RWMutex
	byName map[string]*series
	tree   *node
	tagIdx map[string]map[string][]*series // tag -> value -> series (a series appears once per tag)
	fresh  []*series                       // not yet in the database

	unflushed    atomic.Int64
	maxUnflushed int64
	flushMu      sync.Mutex
	flushed      chan struct{} // closed and replaced after each flush

	// Limits on the series Carbon traffic creates (AddCarbon); st.mu
	// guards creates.
	maxSeries int
	creates   createBucket

	// Counters, published as shiploop.metrics.* series. SeriesRefused and
	// RateLimited count points of new series dropped by the series cap and
	// by the new-series rate.
	Received, BadLines, Dropped, Created atomic.Int64
	SeriesRefused, RateLimited           atomic.Int64
}

type series struct {
	name   string
	schema *Schema
	id     atomic.Int64 // 0 until the database assigned one
	// loaded is false for a series found in the database at start: its
	// in-memory chunks must be merged with the stored ones.
	existing bool

	mu sync.Mutex
	// chunks are the series' chunks in memory, of every archive: usually
	// one per archive (a few while points cross a chunk boundary), so a
	// slice searched in order costs less than a map per archive.
	chunks []*chunk
}

// chunk is one stored chunk's slots in memory. It holds only the run of
// slots from the first to the last one written (off is the slot index of
// vals[0]; slots outside the run are empty) and grows as points arrive, so
// a series that got ten points holds ten slots, not the chunk's 360.
type chunk struct {
	start   int64
	arch    int32
	off     int32
	vals    []float64
	dirty   bool
	merge   bool // holds only new points over an unread stored chunk
	touched int64
}

// find returns the in-memory chunk of archive i starting at start, or nil.
// s.mu held.
func (s *series) find(i int, start int64) *chunk {
	for _, c := range s.chunks {
		if c.start == start && int(c.arch) == i {
			return c
		}
	}
	return nil
}

// get is slot j's value, NaN when empty.
func (c *chunk) get(j int) float64 {
	if k := j - int(c.off); k >= 0 && k < len(c.vals) {
		return c.vals[k]
	}
	return math.NaN()
}

// set writes slot j, growing the run of held slots to reach it.
func (c *chunk) set(j int, v float64) {
	switch {
	case len(c.vals) == 0:
		c.off, c.vals = int32(j), append(make([]float64, 0, 4), v)
		return
	case j < int(c.off):
		grown := nanSlice(int(c.off) - j + len(c.vals))
		copy(grown[int(c.off)-j:], c.vals)
		c.off, c.vals = int32(j), grown
	case j >= int(c.off)+len(c.vals):
		for len(c.vals) < j-int(c.off) {
			c.vals = append(c.vals, math.NaN())
		}
		c.vals = append(c.vals, v)
		return
	}
	c.vals[j-int(c.off)] = v
}

// span returns the held values of slots [from, from+n): a subslice of vals
// (no copy) and the slot index of its first value.
func (c *chunk) span(from, n int) ([]float64, int) {
	lo, hi := max(from, int(c.off)), min(from+n, int(c.off)+len(c.vals))
	if lo >= hi {
		return nil, from
	}
	return c.vals[lo-int(c.off) : hi-int(c.off)], lo
}

type node struct {
	children map[string]*node
	leaf     bool
}

// StorageConfig configures a Storage.
type StorageConfig struct {
	DB           *store.DB
	Logger       *slog.Logger
	Schemas      []Schema
	MaxUnflushed int64
	// MaxSeries and MaxNewSeriesPerMinute limit the series AddCarbon and
	// TryAddCarbon may create (0: no limit); Add, TryAdd and Incr are not
	// limited.
	MaxSeries, MaxNewSeriesPerMinute int
	Now                              func() time.Time
}

// NewStorage loads the series index from the database.
func NewStorage(ctx context.Context, cfg StorageConfig) (*Storage, error) {
	if cfg.Schemas == nil {
		cfg.Schemas = DefaultSchemas()
	}
	if cfg.MaxUnflushed <= 0 {
		cfg.MaxUnflushed = 4 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	st := &Storage{db: cfg.DB, log: cfg.Logger, schemas: cfg.Schemas, now: cfg.Now, byName: map[string]*series{},
		tree: &node{}, tagIdx: map[string]map[string][]*series{}, maxUnflushed: cfg.MaxUnflushed, flushed: make(chan struct{}),
		maxSeries: cfg.MaxSeries, creates: createBucket{perMinute: cfg.MaxNewSeriesPerMinute}}
	rows, err := cfg.DB.QueryContext(ctx, `SELECT id, name, retentions FROM series`)
	if err != nil {
		return nil, fmt.Errorf("loading the series index: %w", err)
	}
	defer rows.Close()
	kept := map[string]*Schema{} // retentions -> schema, for series whose schema changed
	var changed int
	for rows.Next() {
		var id int64
		var name, ret string
		if err := rows.Scan(&id, &name, &ret); err != nil {
			return nil, fmt.Errorf("loading the series index: %w", err)
		}
		s := st.newSeries(name)
		if ret != "" && ret != formatRetentions(s.schema.Archives) {
			// The series keeps the archives its chunks were written with.
			sc := kept[s.schema.Name+" "+ret]
			if sc == nil {
				arch, err := ParseRetentions(ret)
				if err != nil {
					return nil, fmt.Errorf("series %s: stored retentions %q: %w", name, ret, err)
				}
				c := *s.schema
				c.Archives = arch
				sc = &c
				kept[s.schema.Name+" "+ret] = sc
				st.kept = append(st.kept, sc)
			}
			s.schema = sc
			changed++
		}
		s.id.Store(id)
		s.existing = true
		st.index(s)
	}
	if changed > 0 {
		cfg.Logger.Warn("series keep the retentions they were created with; the storage schemas now say otherwise for them (as with whisper files, resizing is not done)", "series", changed)
	}
	return st, rows.Err()
}

// formatRetentions is how a series' archives are stored: step:retention in
// seconds, finest first ("10:86400,60:2592000").
func formatRetentions(arch []Archive) string {
	parts := make([]string, len(arch))
	for i, a := range arch {
		parts[i] = fmt.Sprintf("%d:%d", a.Step, a.Retention)
	}
	return strings.Join(parts, ",")
}

func (st *Storage) newSeries(name string) *series {
	sc := schemaFor(st.schemas, name)
	return &series{name: name, schema: sc}
}

// index adds s to the name map, the path tree and the tag index. st.mu held.
func (st *Storage) index(s *series) {
	st.byName[s.name] = s
	path, tags := carbon.SplitTagged(s.name)
	if tags == nil {
		n := st.tree
		parts := strings.Split(path, ".")
		for i, p := range parts {
			c := n.children[p]
			if c == nil {
				c = &node{}
				if n.children == nil {
					n.children = map[string]*node{}
				}
				n.children[p] = c
			}
			if i == len(parts)-1 {
				c.leaf = true
			}
			n = c
		}
	}
	add := func(k, v string) {
		m := st.tagIdx[k]
		if m == nil {
			m = map[string][]*series{}
			st.tagIdx[k] = m
		}
		// A series is indexed once (a name repeats no tag), so the list
		// needs no set; most hold one series.
		m[v] = append(m[v], s)
	}
	add("name", path)
	for _, t := range tags {
		add(t.Key, t.Value)
	}
}

// lookup finds or makes the series of name. When limited (Carbon traffic)
// it makes no series past the series cap or the new-series rate: it counts
// the refusal and returns nil.
func (st *Storage) lookup(name string, limited bool) *series {
	st.mu.RLock()
	s := st.byName[name]
	n := len(st.byName)
	st.mu.RUnlock()
	if s != nil {
		return s
	}
	if limited && st.maxSeries > 0 && n >= st.maxSeries {
		st.SeriesRefused.Add(1)
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if s = st.byName[name]; s != nil {
		return s
	}
	if limited {
		if st.maxSeries > 0 && len(st.byName) >= st.maxSeries {
			st.SeriesRefused.Add(1)
			return nil
		}
		if !st.creates.take(st.now()) {
			st.RateLimited.Add(1)
			return nil
		}
	}
	s = st.newSeries(name)
	st.index(s)
	st.fresh = append(st.fresh, s)
	st.Created.Add(1)
	return s
}

// Add stores points, waiting while too many points are unflushed.
func (st *Storage) Add(ctx context.Context, pts []carbon.Point) error {
	return st.addWait(ctx, pts, false)
}

// AddCarbon is Add for points from Carbon clients: a point whose series does
// not exist is dropped and counted (SeriesRefused, RateLimited) when making
// its series would pass MaxSeries or MaxNewSeriesPerMinute. Points of
// existing series are always stored.
func (st *Storage) AddCarbon(ctx context.Context, pts []carbon.Point) error {
	return st.addWait(ctx, pts, true)
}

func (st *Storage) addWait(ctx context.Context, pts []carbon.Point, limited bool) error {
	for st.unflushed.Load() > st.maxUnflushed {
		st.flushMu.Lock()
		ch := st.flushed
		st.flushMu.Unlock()
		if st.unflushed.Load() <= st.maxUnflushed {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	st.add(pts, limited)
	return nil
}

// TryAdd stores points unless too many are unflushed; then it drops them and
// counts the drop.
func (st *Storage) TryAdd(pts []carbon.Point) bool {
	return st.tryAdd(pts, false)
}

// TryAddCarbon is TryAdd with AddCarbon's limits on new series.
func (st *Storage) TryAddCarbon(pts []carbon.Point) bool {
	return st.tryAdd(pts, true)
}

func (st *Storage) tryAdd(pts []carbon.Point, limited bool) bool {
	if st.unflushed.Load() > st.maxUnflushed {
		st.Dropped.Add(int64(len(pts)))
		return false
	}
	st.add(pts, limited)
	return true
}

func (st *Storage) add(pts []carbon.Point, limited bool) {
	now := st.now().Unix()
	var stored int64
	for _, p := range pts {
		s := st.lookup(p.Name, limited)
		if s == nil {
			continue
		}
		s.mu.Lock()
		st.write(s, p.Timestamp, p.Value, now)
		s.mu.Unlock()
		stored++
	}
	st.Received.Add(stored)
	st.unflushed.Add(stored)
}

// SeriesCount is how many series exist (in memory and in the database).
func (st *Storage) SeriesCount() int {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return len(st.byName)
}

// write puts one point into the finest archive that covers it and rolls it
// up into the coarser ones. s.mu held.
func (st *Storage) write(s *series, ts int64, v float64, now int64) {
	arch := s.schema.Archives
	first := -1
	for i, a := range arch {
		if ts > now-a.Retention && ts <= now+a.Step*360 {
			first = i
			break
		}
	}
	if first < 0 {
		return // outside every retention: dropped as carbon does
	}
	st.setSlot(s, first, ts, v, now)
	for i := first + 1; i < len(arch); i++ {
		slot := ts - mod(ts, arch[i].Step)
		fine := arch[i-1]
		span := fine.Step * chunkSlots(arch, i-1)
		cstart := slot - mod(slot, span)
		c := s.find(i-1, cstart)
		if c == nil {
			return
		}
		from := (slot - cstart) / fine.Step
		n := arch[i].Step / fine.Step
		held, _ := c.span(int(from), int(n))
		agg := rollup(held, int(n), s.schema.Aggregation, s.schema.XFilesFactor)
		if math.IsNaN(agg) {
			return
		}
		st.setSlot(s, i, slot, agg, now)
	}
}

func (st *Storage) setSlot(s *series, i int, ts int64, v float64, now int64) {
	a := s.schema.Archives[i]
	span := a.Step * chunkSlots(s.schema.Archives, i)
	slot := ts - mod(ts, a.Step)
	cstart := slot - mod(slot, span)
	c := s.find(i, cstart)
	if c == nil {
		c = &chunk{start: cstart, arch: int32(i), merge: s.existing}
		s.chunks = append(s.chunks, c)
	}
	c.set(int((slot-cstart)/a.Step), v)
	c.dirty = true
	c.touched = now
}

// rollup aggregates the values of a coarser slot: vals are the non-empty
// candidates among its slots of the finer archive (slots not in vals are
// empty).
func rollup(vals []float64, slots int, method string, xff float64) float64 {
	var n int
	var sum, mn, mx, last float64
	for _, v := range vals {
		if math.IsNaN(v) {
			continue
		}
		if n == 0 {
			mn, mx = v, v
		}
		n++
		sum += v
		mn, mx, last = math.Min(mn, v), math.Max(mx, v), v
	}
	if n == 0 || float64(n)/float64(slots) < xff {
		return math.NaN()
	}
	switch method {
	case "sum":
		return sum
	case "min":
		return mn
	case "max":
		return mx
	case "last":
		return last
	}
	return sum / float64(n)
}

func nanSlice(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = math.NaN()
	}
	return v
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// encodeChunk stores the slots of a chunk from slot off on (the slots
// before off and after vals are empty) as little-endian float64s, without
// the empty slots at either end. When the first stored slot is not slot 0,
// a 4-byte little-endian slot index comes first, so the length is 4 more
// than a multiple of 8; chunks written before this had no header and all
// their slots from 0 (the empty ones at the end were read back as empty
// as they are now). A series with ten points at 10 s stores 80 bytes in
// its finest chunk instead of 2,880.
func encodeChunk(off int, vals []float64) []byte {
	for len(vals) > 0 && math.IsNaN(vals[len(vals)-1]) {
		vals = vals[:len(vals)-1]
	}
	for len(vals) > 0 && math.IsNaN(vals[0]) {
		vals, off = vals[1:], off+1
	}
	var b []byte
	if off > 0 && len(vals) > 0 {
		b = make([]byte, 4, 4+8*len(vals))
		binary.LittleEndian.PutUint32(b, uint32(off))
	} else {
		b = make([]byte, 0, 8*len(vals))
	}
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

func decodeChunk(b []byte, n int) []float64 {
	vals := nanSlice(n)
	off := 0
	if len(b)%8 == 4 {
		off = int(binary.LittleEndian.Uint32(b))
		b = b[4:]
	}
	for i := 0; off+i < n && 8*i+8 <= len(b); i++ {
		vals[off+i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return vals
}

// Run flushes every interval until ctx ends, then once more.
func (st *Storage) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return st.Flush(fctx)
		case <-t.C:
			if err := st.Flush(ctx); err != nil && ctx.Err() == nil {
				st.log.Warn("metrics flush failed; retrying", "err", err)
			}
		}
	}
}

type dirtyChunk struct {
	s      *series
	arch   int
	start  int64
	off    int       // slot index of vals[0]
	vals   []float64 // a copy of the chunk's held slots
	merge  bool
	source *chunk
}

// flushBatch is how many chunks one flush transaction writes.
const flushBatch = 2000

// Flush writes new series and changed chunks to the database. It copies
// and writes changed chunks a batch at a time as it goes through the
// series, so what it holds beside the chunks is one batch, not a copy of
// every changed chunk. Chunks not written to for ten minutes leave memory
// (the database has them).
func (st *Storage) Flush(ctx context.Context) error {
	st.flushMu.Lock()
	defer st.flushMu.Unlock()
	pending := st.unflushed.Swap(0)
	st.mu.Lock()
	fresh := st.fresh
	st.fresh = nil
	all := make([]*series, 0, len(st.byName))
	for _, s := range st.byName {
		all = append(all, s)
	}
	st.mu.Unlock()
	fail := func(err error) error {
		st.mu.Lock()
		st.fresh = append(fresh, st.fresh...)
		st.mu.Unlock()
		st.unflushed.Add(pending)
		return err
	}
	now := st.now().UTC()
	if len(fresh) > 0 {
		err := st.db.InTx(ctx, func(tx *sql.Tx) error {
			for _, s := range fresh {
				var id int64
				if err := tx.QueryRowContext(ctx, `INSERT INTO series (name, created_at, retentions) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id`, s.name, now.UnixNano(), formatRetentions(s.schema.Archives)).Scan(&id); err != nil {
					return fmt.Errorf("recording series %s: %w", s.name, err)
				}
				s.id.Store(id)
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
	}
	evictBefore := now.Unix() - 600
	batch := make([]dirtyChunk, 0, flushBatch)
	for k, s := range all {
		if s.id.Load() != 0 {
			s.mu.Lock()
			kept := s.chunks[:0]
			for _, c := range s.chunks {
				if c.dirty {
					batch = append(batch, dirtyChunk{s: s, arch: int(c.arch), start: c.start, off: int(c.off), vals: slices.Clone(c.vals), merge: c.merge, source: c})
					c.dirty = false
				} else if !c.merge && c.touched < evictBefore {
					continue
				}
				kept = append(kept, c)
			}
			clear(s.chunks[len(kept):])
			s.chunks = kept
			if len(kept) == 0 {
				s.chunks = nil
			}
			s.mu.Unlock()
		}
		if len(batch) >= flushBatch || (k == len(all)-1 && len(batch) > 0) {
			if err := st.writeChunks(ctx, batch); err != nil {
				for _, d := range batch {
					d.s.mu.Lock()
					d.source.dirty = true
					d.s.mu.Unlock()
				}
				return fail(err)
			}
			clear(batch)
			batch = batch[:0]
		}
	}
	close(st.flushed)
	st.flushed = make(chan struct{})
	return nil
}

// writeChunks writes one batch of changed chunks in a transaction. A chunk
// over an unread stored one (merge) is merged with it, and the in-memory
// chunk then holds the stored points too.
func (st *Storage) writeChunks(ctx context.Context, batch []dirtyChunk) error {
	err := st.db.InTx(ctx, func(tx *sql.Tx) error {
		for k := range batch {
			d := &batch[k]
			off, vals := d.off, d.vals
			if d.merge {
				var old []byte
				err := tx.QueryRowContext(ctx, `SELECT data FROM chunks WHERE series_id = $1 AND archive = $2 AND chunk_start = $3`, d.s.id.Load(), d.arch, d.start).Scan(&old)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				if old != nil {
					merged := decodeChunk(old, int(chunkSlots(d.s.schema.Archives, d.arch)))
					for i, v := range vals {
						if !math.IsNaN(v) && off+i < len(merged) {
							merged[off+i] = v
						}
					}
					off, vals = 0, merged
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO chunks (series_id, archive, chunk_start, data) VALUES ($1, $2, $3, $4) ON CONFLICT (series_id, archive, chunk_start) DO UPDATE SET data = excluded.data`,
				d.s.id.Load(), d.arch, d.start, encodeChunk(off, vals)); err != nil {
				return fmt.Errorf("writing points of %s: %w", d.s.name, err)
			}
			d.off, d.vals = off, vals
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range batch {
		if d.merge {
			d.s.mu.Lock()
			for i, v := range d.vals {
				if !math.IsNaN(v) && math.IsNaN(d.source.get(d.off+i)) {
					d.source.set(d.off+i, v)
				}
			}
			d.source.merge = false
			d.s.mu.Unlock()
		}
	}
	return nil
}

// Expire deletes chunks past their archive's retention.
func (st *Storage) Expire(ctx context.Context) error {
	maxRet := map[int]int64{}
	all := slices.Clone(st.schemas)
	for _, sc := range st.kept {
		all = append(all, *sc)
	}
	for _, sc := range all {
		for i, a := range sc.Archives {
			maxRet[i] = max(maxRet[i], a.Retention+a.Step*chunkSlots(sc.Archives, i))
		}
	}
	now := st.now().Unix()
	for i, r := range maxRet {
		if _, err := st.db.ExecContext(ctx, `DELETE FROM chunks WHERE archive = $1 AND chunk_start < $2`, i, now-r); err != nil {
			return fmt.Errorf("expiring archive %d: %w", i, err)
		}
	}
	return nil
}

// Read returns the series' points over (from, until] from the archive that
// covers from, as whisper does: the first slot is the one after from.
func (st *Storage) Read(ctx context.Context, name string, from, until int64) (*render.Series, error) {
	return st.ReadAt(ctx, name, from, until, st.now().Unix())
}

// ReadAt is Read with the archive chosen as of now: a query passes its own
// clock so that all its series come from the same archive. Otherwise a
// query over 10,000 series that takes more than a second, with from at an
// archive's retention (Grafana's "last 24 hours" on 10s:1d), reads its
// first series at 10 s and its last ones at 1 min.
func (st *Storage) ReadAt(ctx context.Context, name string, from, until, now int64) (*render.Series, error) {
	st.mu.RLock()
	s := st.byName[name]
	st.mu.RUnlock()
	if s == nil {
		return nil, nil
	}
	arch := s.schema.Archives
	ai := len(arch) - 1
	for i, a := range arch {
		if now-from <= a.Retention {
			ai = i
			break
		}
	}
	a := arch[ai]
	start := from - mod(from, a.Step) + a.Step
	end := until - mod(until, a.Step) + a.Step
	if end <= start {
		end = start
	}
	n := int((end - start) / a.Step)
	vals := nanSlice(n)
	span := a.Step * chunkSlots(arch, ai)
	// In-memory chunks first; note which spans need the database.
	var need bool
	s.mu.Lock()
	for cs := start - mod(start, span); cs < end; cs += span {
		c := s.find(ai, cs)
		if c == nil || c.merge {
			need = true
		}
		if c != nil {
			overlay(vals, start, a.Step, cs+int64(c.off)*a.Step, c.vals)
		}
	}
	s.mu.Unlock()
	if need && s.id.Load() != 0 {
		rows, err := st.db.QueryContext(ctx, `SELECT chunk_start, data FROM chunks WHERE series_id = $1 AND archive = $2 AND chunk_start >= $3 AND chunk_start < $4`,
			s.id.Load(), ai, start-mod(start, span), end)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		defer rows.Close()
		for rows.Next() {
			var cs int64
			var data []byte
			if err := rows.Scan(&cs, &data); err != nil {
				return nil, fmt.Errorf("reading %s: %w", name, err)
			}
			stored := decodeChunk(data, int(span/a.Step))
			// memory wins: only fill slots still empty
			for i, v := range stored {
				t := cs + int64(i)*a.Step
				if t < start || t >= end || math.IsNaN(v) {
					continue
				}
				j := (t - start) / a.Step
				if math.IsNaN(vals[j]) {
					vals[j] = v
				}
			}
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	// As graphite-web's TimeSeries: consolidated for maxDataPoints by
	// average with xFilesFactor 0 (the request's) unless consolidateBy says
	// otherwise. storage-aggregation.conf governs the rollups between
	// archives only.
	return render.NewSeries(name, start, a.Step, vals), nil
}

func overlay(dst []float64, start, step, cs int64, src []float64) {
	for i, v := range src {
		if math.IsNaN(v) {
			continue
		}
		t := cs + int64(i)*step
		if t < start {
			continue
		}
		j := (t - start) / step
		if j >= int64(len(dst)) {
			break
		}
		dst[j] = v
	}
}

// Find returns the children of the path tree matching a glob query
// ("servers.*.cpu"): each with its full path and whether it is a leaf and/or
// has children.
type FindResult struct {
	Path   string
	Name   string
	Leaf   bool
	Branch bool
}

// Find matches a plain (untagged) glob query against the path tree.
func (st *Storage) Find(query string, limit int) ([]FindResult, error) {
	parts := strings.Split(query, ".")
	matchers := make([]*globMatcher, len(parts))
	for i, p := range parts {
		m, err := compileGlob(p)
		if err != nil {
			return nil, err
		}
		matchers[i] = m
	}
	st.mu.RLock()
	defer st.mu.RUnlock()
	var out []FindResult
	var walk func(n *node, depth int, prefix string) error
	walk = func(n *node, depth int, prefix string) error {
		m := matchers[depth]
		var names []string
		if lit, ok := m.literal(); ok {
			if n.children[lit] != nil {
				names = []string{lit}
			}
		} else {
			for k := range n.children {
				if m.match(k) {
					names = append(names, k)
				}
			}
			sort.Strings(names)
		}
		for _, k := range names {
			c := n.children[k]
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			if depth == len(matchers)-1 {
				out = append(out, FindResult{Path: p, Name: k, Leaf: c.leaf, Branch: len(c.children) > 0})
				if limit > 0 && len(out) > limit {
					return &render.LimitError{Msg: fmt.Sprintf("the query matches more than %d series (limit %d): narrow the path expression", limit, limit)}
				}
				continue
			}
			if err := walk(c, depth+1, p); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(st.tree, 0, ""); err != nil {
		return nil, err
	}
	return out, nil
}

// Names returns every series name (plain and tagged), sorted.
func (st *Storage) Names() []string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	out := make([]string, 0, len(st.byName))
	for n := range st.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Incr adds delta to the finest-archive slot of ts (a counter that several
// events in one slot add up in), then rolls it up.
func (st *Storage) Incr(name string, ts int64, delta float64) {
	now := st.now().Unix()
	s := st.lookup(name, false)
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.schema.Archives[0]
	span := a.Step * chunkSlots(s.schema.Archives, 0)
	slot := ts - mod(ts, a.Step)
	cur := 0.0
	if c := s.find(0, slot-mod(slot, span)); c != nil {
		if v := c.get(int(mod(slot, span) / a.Step)); !math.IsNaN(v) {
			cur = v
		}
	}
	st.write(s, ts, cur+delta, now)
	st.unflushed.Add(1)
}
