// Package testruns is shiploop's test-run service: once a build succeeds it
// queues the build's test jobs (matrix cells × shards) for agents, reads the
// reports they collect (JUnit XML of every dialect, go test -json,
// Cobertura, LCOV, Go coverprofiles, JaCoCo), keeps every test's history,
// finds flaky tests, applies quarantine, and publishes testrun.started and
// testrun.finished. It answers TestRunService over gRPC.
package testruns

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/services/testruns/report"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations are the testruns service's own tables.
func Migrations() []store.Migrations {
	sub, _ := fs.Sub(migrationsFS, "migrations")
	return []store.Migrations{bus.Migrations, {Component: "testruns", FS: sub}}
}

// ReportBucket is the Object Store bucket agents put report files in (the
// artifacts bucket, keyed "<job id>/<path>").
const ReportBucket = "artifacts"

// Config wires a testruns service.
type Config struct {
	DB     *store.DB
	Bus    *bus.Bus
	Logger *slog.Logger
	// JobTimeout applies to test jobs whose plan sets none (default 1h).
	JobTimeout time.Duration
	// MaxText caps each stored text of a test result (message, details) in
	// bytes (default 16 KiB).
	MaxText int
	// FlakyWindow is how far back FlakyTests looks by default (14 days).
	FlakyWindow time.Duration
	// Auth guards report downloads (read scope, as build artifacts); the
	// routes are registered only with it (see Routes).
	Auth *server.Auth
}

// Service is the testruns service.
type Service struct {
	db  *store.DB
	bus *bus.Bus
	ob  *bus.Outbox
	log *slog.Logger
	cfg Config
}

// New makes the service and applies its migrations.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Bus == nil {
		return nil, errors.New("testruns: DB and Bus are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = time.Hour
	}
	if cfg.MaxText <= 0 {
		cfg.MaxText = 16 << 10
	}
	if cfg.FlakyWindow <= 0 {
		cfg.FlakyWindow = 14 * 24 * time.Hour
	}
	if err := cfg.DB.Migrate(ctx, Migrations()...); err != nil {
		return nil, fmt.Errorf("testruns: %w", err)
	}
	log := cfg.Logger.With("service", "testruns")
	return &Service{db: cfg.DB, bus: cfg.Bus, log: log, cfg: cfg, ob: bus.NewOutbox(cfg.DB, cfg.Bus, log)}, nil
}

// Run runs the outbox relay and the service's consumers until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.ob.Run(ctx) })
	g.Go(func() error {
		return s.ob.Consume(ctx, bus.ConsumerConfig{
			Name:    "testruns-builds",
			Filters: []string{bus.EventFilter("build", "")},
		}, s.handleBuildEvent)
	})
	g.Go(func() error {
		return s.ob.Consume(ctx, bus.ConsumerConfig{
			Name:    "testruns-jobs",
			Filters: []string{bus.EventFilter("job", "")},
			Prepare: s.prepareJobEvent,
			// Reading a large report takes a while; heartbeats keep it.
			AckWait: time.Minute,
		}, s.handleJobEvent)
	})
	return g.Wait()
}

func (s *Service) reportStore(ctx context.Context) (jetstream.ObjectStore, error) {
	return s.bus.ObjectStore(ctx, ReportBucket, "build artifacts")
}

func (s *Service) parseOptions(file string) report.Options {
	return report.Options{File: file, MaxText: s.cfg.MaxText}
}
