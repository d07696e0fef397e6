// Package gates is shiploop's quality-gate service: it learns each build's
// gate policy from build.created, reads static-analysis reports from the
// build's artifacts (job.finished), takes test counts and coverage from
// testrun.finished, judges the gate, publishes gate.evaluated, posts the
// commit status shiploop/gate, and answers GateService over gRPC.
package gates

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations are the gates service's own tables, plus the bus's.
func Migrations() []store.Migrations {
	sub, _ := fs.Sub(migrationsFS, "migrations")
	return []store.Migrations{bus.Migrations, {Component: "gates", FS: sub}}
}

// StatusContext names the gate among a commit's statuses.
const StatusContext = "shiploop/gate"

// Forge is a repository's commit-status settings (kind "" for none).
type Forge struct {
	Kind, APIURL, Repo, Token string
}

// ForgeSource tells where to post a repository's commit statuses. The
// builds service owns these settings; cmd/shiploop asks it over gRPC
// (BuildService.GetForgeSettings).
type ForgeSource interface {
	ForgeSettings(ctx context.Context, repository string) (Forge, error)
}

// Config wires a gates service.
type Config struct {
	DB     *store.DB
	Bus    *bus.Bus
	Logger *slog.Logger
	// Forges, when set, lets the service post commit statuses.
	Forges ForgeSource
	// PublicURL is the web UI's base: statuses link to PublicURL/builds/<id>.
	PublicURL string
	// StatusBackoff are the delays between attempts to post a status
	// (default 1s, 5s, 30s, 2m, 5m, 10m, 10m).
	StatusBackoff []time.Duration
}

// Service is the gates service.
type Service struct {
	cfg Config
	db  *store.DB
	bus *bus.Bus
	ob  *bus.Outbox
	log *slog.Logger
	hc  *http.Client
}

// New makes the service and applies its migrations.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Bus == nil {
		return nil, errors.New("gates: DB and Bus are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PublicURL != "" {
		if u, err := url.Parse(cfg.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("gates: public URL %q: want http(s)://host[/path]", cfg.PublicURL)
		}
	}
	if len(cfg.StatusBackoff) == 0 {
		cfg.StatusBackoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	}
	if err := cfg.DB.Migrate(ctx, Migrations()...); err != nil {
		return nil, fmt.Errorf("gates: %w", err)
	}
	log := cfg.Logger.With("service", "gates")
	return &Service{cfg: cfg, db: cfg.DB, bus: cfg.Bus, ob: bus.NewOutbox(cfg.DB, cfg.Bus, log), log: log,
		hc: &http.Client{Timeout: 10 * time.Second}}, nil
}

// Run runs the outbox relay and the consumers until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.ob.Run(ctx) })
	g.Go(func() error {
		return s.ob.Consume(ctx, bus.ConsumerConfig{
			Name: "gates-events",
			Filters: []string{
				bus.EventFilter("build.created", ""), bus.EventFilter("build.finished", ""),
				bus.EventFilter("job.finished", ""), bus.EventFilter("testrun.finished", ""),
			},
			// Reading reports from the Object Store happens here, outside
			// the transaction.
			Prepare: s.prepareEvent,
			AckWait: time.Minute,
		}, s.handleEvent)
	})
	if s.cfg.Forges != nil {
		g.Go(func() error {
			return s.ob.Consume(ctx, bus.ConsumerConfig{
				Name:       "gates-statuses",
				Filters:    []string{bus.EventFilter("gate.evaluated", "")},
				Prepare:    s.postStatus,
				MaxDeliver: len(s.cfg.StatusBackoff) + 1,
				Backoff:    s.cfg.StatusBackoff,
			}, s.recordStatus)
		})
	}
	return g.Wait()
}
