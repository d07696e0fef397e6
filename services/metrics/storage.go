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
	tagIdx map[string]map[string]map[*series]struct{}
	fresh  []*series // not yet in the database

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

	mu   sync.Mutex
	arch []map[int64]*chunk
}

type chunk struct {
	vals    []float64
	dirty   bool
	merge   bool // holds only new points over an unread stored chunk
	touched int64
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
		tree: &node{}, tagIdx: map[string]map[string]map[*series]struct{}{}, maxUnflushed: cfg.MaxUnflushed, flushed: make(chan struct{}),
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
			s.schema, s.arch = sc, make([]map[int64]*chunk, len(sc.Archives))
			for i := range s.arch {
				s.arch[i] = map[int64]*chunk{}
			}
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
	s := &series{name: name, schema: sc, arch: make([]map[int64]*chunk, len(sc.Archives))}
	for i := range s.arch {
		s.arch[i] = map[int64]*chunk{}
	}
	return s
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
			m = map[string]map[*series]struct{}{}
			st.tagIdx[k] = m
		}
		set := m[v]
		if set == nil {
			set = map[*series]struct{}{}
			m[v] = set
		}
		set[s] = struct{}{}
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
		c := s.arch[i-1][cstart]
		if c == nil {
			return
		}
		from := (slot - cstart) / fine.Step
		n := arch[i].Step / fine.Step
		agg := rollup(c.vals[from:from+n], s.schema.Aggregation, s.schema.XFilesFactor)
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
	c := s.arch[i][cstart]
	if c == nil {
		c = &chunk{vals: nanSlice(int(span / a.Step)), merge: s.existing}
		s.arch[i][cstart] = c
	}
	c.vals[(slot-cstart)/a.Step] = v
	c.dirty = true
	c.touched = now
}

func rollup(vals []float64, method string, xff float64) float64 {
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
	if n == 0 || float64(n)/float64(len(vals)) < xff {
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

func encodeChunk(vals []float64) []byte {
	b := make([]byte, 8*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
	return b
}

func decodeChunk(b []byte, n int) []float64 {
	vals := nanSlice(n)
	for i := 0; i < n && 8*i+8 <= len(b); i++ {
		vals[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
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
	vals   []float64
	merge  bool
	source *chunk
}

// Flush writes new series and changed chunks to the database.
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
	var dirty []dirtyChunk
	evictBefore := now.Unix() - 600
	for _, s := range all {
		if s.id.Load() == 0 {
			continue
		}
		s.mu.Lock()
		for i, m := range s.arch {
			for start, c := range m {
				if c.dirty {
					dirty = append(dirty, dirtyChunk{s: s, arch: i, start: start, vals: append([]float64(nil), c.vals...), merge: c.merge, source: c})
					c.dirty = false
				} else if !c.merge && c.touched < evictBefore {
					delete(m, start)
				}
			}
		}
		s.mu.Unlock()
	}
	for len(dirty) > 0 {
		batch := dirty[:min(len(dirty), 2000)]
		dirty = dirty[len(batch):]
		err := st.db.InTx(ctx, func(tx *sql.Tx) error {
			for _, d := range batch {
				vals := d.vals
				if d.merge {
					var old []byte
					err := tx.QueryRowContext(ctx, `SELECT data FROM chunks WHERE series_id = $1 AND archive = $2 AND chunk_start = $3`, d.s.id.Load(), d.arch, d.start).Scan(&old)
					if err != nil && !errors.Is(err, sql.ErrNoRows) {
						return err
					}
					if old != nil {
						merged := decodeChunk(old, len(vals))
						for i, v := range vals {
							if !math.IsNaN(v) {
								merged[i] = v
							}
						}
						vals = merged
					}
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO chunks (series_id, archive, chunk_start, data) VALUES ($1, $2, $3, $4) ON CONFLICT (series_id, archive, chunk_start) DO UPDATE SET data = excluded.data`,
					d.s.id.Load(), d.arch, d.start, encodeChunk(vals)); err != nil {
					return fmt.Errorf("writing points of %s: %w", d.s.name, err)
				}
				d.vals = vals
			}
			return nil
		})
		if err != nil {
			for _, d := range append(batch, dirty...) {
				d.s.mu.Lock()
				d.source.dirty = true
				d.s.mu.Unlock()
			}
			return fail(err)
		}
		// A merged chunk now holds the stored points too.
		for _, d := range batch {
			if d.merge {
				d.s.mu.Lock()
				for i, v := range d.vals {
					if math.IsNaN(d.source.vals[i]) {
						d.source.vals[i] = v
					}
				}
				d.source.merge = false
				d.s.mu.Unlock()
			}
		}
	}
	close(st.flushed)
	st.flushed = make(chan struct{})
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
		c := s.arch[ai][cs]
		if c == nil || c.merge {
			need = true
		}
		if c != nil {
			overlay(vals, start, a.Step, cs, c.vals)
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
	if c := s.arch[0][slot-mod(slot, span)]; c != nil {
		if v := c.vals[(slot-(slot-mod(slot, span)))/a.Step]; !math.IsNaN(v) {
			cur = v
		}
	}
	st.write(s, ts, cur+delta, now)
	st.unflushed.Add(1)
}
