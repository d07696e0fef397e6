// Package metrics is shiploop's metrics service: it takes Carbon traffic
// (plaintext on TCP and UDP, pickle on TCP) from any existing client, stores
// series with retention and rollups, answers Grafana's Graphite data source
// under /graphite/, turns the platform's own events into series under
// "shiploop." and answers MetricsService over gRPC.
package metrics

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/services/metrics/carbon"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations are the metrics service's own tables, plus the bus inbox its
// event consumer needs.
func Migrations() []store.Migrations {
	sub, _ := fs.Sub(migrationsFS, "migrations")
	return []store.Migrations{bus.Migrations, {Component: "metrics", FS: sub}}
}

// Config wires a metrics service.
type Config struct {
	DB     *store.DB
	Bus    *bus.Bus // optional: without it, no built-in CD metrics
	Logger *slog.Logger
	// Listeners are the Carbon sockets (see ListenCarbon); nil for none.
	Listeners *Listeners
	Schemas   []Schema
	// FlushInterval is how often points reach the database (default 1s).
	FlushInterval time.Duration
	// MaxUnflushed points before TCP readers are slowed (default 4Mi).
	MaxUnflushed int64
	// MaxSeries, MaxPoints, MaxBuckets, MaxDepth, MaxCalls and
	// MaxDataPoints bound the cost of one Graphite query before it reads
	// anything, and QueryTimeout its time: query_limits.go says what each
	// counts and the defaults (zero takes the default).
	MaxSeries, MaxPoints              int
	MaxBuckets                        int64
	MaxDepth, MaxCalls, MaxDataPoints int
	QueryTimeout                      time.Duration
	// StatsInterval is how often ingest counters are stored as series
	// (default 10s).
	StatsInterval time.Duration
	// Carbon limits what Carbon clients can make the service hold (zero
	// fields take the defaults; see CarbonLimits).
	Carbon CarbonLimits
	Now    func() time.Time
}

// Service is the metrics service.
type Service struct {
	cfg Config
	db  *store.DB
	bus *bus.Bus
	log *slog.Logger
	st  *Storage
	in  *ingest
	// The last warning about refused Carbon input: when, and the counts
	// then; at most one every warnEvery (a minute).
	lastWarn  time.Time
	warned    refusals
	warnEvery time.Duration
}

// New makes the service, applies its migrations and loads the index.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil {
		return nil, errors.New("metrics: DB is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	cfg.queryDefaults()
	if cfg.StatsInterval <= 0 {
		cfg.StatsInterval = 10 * time.Second
	}
	if err := cfg.DB.Migrate(ctx, Migrations()...); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	cfg.Carbon = cfg.Carbon.withDefaults()
	log := cfg.Logger.With("service", "metrics")
	st, err := NewStorage(ctx, StorageConfig{DB: cfg.DB, Logger: log, Schemas: cfg.Schemas, MaxUnflushed: cfg.MaxUnflushed, Now: cfg.Now,
		MaxSeries: cfg.Carbon.MaxSeries, MaxNewSeriesPerMinute: cfg.Carbon.MaxNewSeriesPerMinute})
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &Service{cfg: cfg, db: cfg.DB, bus: cfg.Bus, log: log, st: st, in: &ingest{st: st, log: log, limits: cfg.Carbon}, warnEvery: time.Minute}, nil
}

// Storage is the service's series store.
func (s *Service) Storage() *Storage { return s.st }

// Run ingests, flushes, expires and consumes events until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.st.Run(ctx, s.cfg.FlushInterval) })
	if s.cfg.Listeners != nil {
		g.Go(func() error { return s.in.serve(ctx, s.cfg.Listeners) })
	}
	g.Go(func() error { return s.housekeeping(ctx) })
	if s.bus != nil {
		ob := bus.NewOutbox(s.db, s.bus, s.log)
		g.Go(func() error { return ob.Run(ctx) })
		g.Go(func() error {
			return ob.Consume(ctx, bus.ConsumerConfig{Name: "metrics-events", Filters: []string{bus.EventFilter("", "")}}, s.handleEvent)
		})
	}
	return g.Wait()
}

// housekeeping stores ingest counters as series (unlimited: Carbon's limits
// never refuse them), warns about refused Carbon input and expires old
// chunks.
func (s *Service) housekeeping(ctx context.Context) error {
	t := time.NewTicker(s.cfg.StatsInterval)
	defer t.Stop()
	lastExpire := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := s.st.now().Unix()
		pts := []carbon.Point{
			{Name: "shiploop.metrics.ingest.received", Value: float64(s.st.Received.Load()), Timestamp: now},
			{Name: "shiploop.metrics.ingest.bad_lines", Value: float64(s.st.BadLines.Load()), Timestamp: now},
			{Name: "shiploop.metrics.ingest.udp_dropped", Value: float64(s.st.Dropped.Load()), Timestamp: now},
			{Name: "shiploop.metrics.index.created", Value: float64(s.st.Created.Load()), Timestamp: now},
			{Name: "shiploop.metrics.index.series", Value: float64(s.st.SeriesCount()), Timestamp: now},
			{Name: "shiploop.metrics.ingest.series_refused", Value: float64(s.st.SeriesRefused.Load()), Timestamp: now},
			{Name: "shiploop.metrics.ingest.rate_limited", Value: float64(s.st.RateLimited.Load()), Timestamp: now},
			{Name: "shiploop.metrics.ingest.lines_too_long", Value: float64(s.in.LinesTooLong.Load()), Timestamp: now},
			{Name: "shiploop.metrics.ingest.connections_refused", Value: float64(s.in.ConnsRefused.Load()), Timestamp: now},
			{Name: "shiploop.metrics.ingest.connections_idle_closed", Value: float64(s.in.IdleClosed.Load()), Timestamp: now},
			{Name: "shiploop.metrics.ingest.connections_open", Value: float64(s.in.active.Load()), Timestamp: now},
		}
		s.st.TryAdd(pts)
		s.warnRefusals(time.Now())
		if time.Since(lastExpire) > time.Hour {
			lastExpire = time.Now()
			if err := s.st.Expire(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("expiring old points", "err", err)
			}
		}
	}
}
