// Package deploys is shiploop's deploy service: it takes a version that
// passed its gate (or its build, without a gate) through the environments
// of the repository's .shiploop.yml in order — deploy jobs on agents,
// locks, approvals, freeze windows, verification with automatic rollback,
// preview environments per pull request, ticket keys — and answers
// DeployService over gRPC.
package deploys

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations are the deploys service's own tables.
func Migrations() []store.Migrations {
	sub, _ := fs.Sub(migrationsFS, "migrations")
	return []store.Migrations{bus.Migrations, {Component: "deploys", FS: sub}}
}

// DefaultTicketPattern matches keys like ABC-123.
const DefaultTicketPattern = `\b[A-Z][A-Z0-9]+-[0-9]+\b`

// Config wires a deploys service.
type Config struct {
	DB     *store.DB
	Bus    *bus.Bus
	Logger *slog.Logger
	// JobTimeout applies to deploy jobs whose steps set none (default 1h).
	JobTimeout time.Duration
	// GraphiteURL is the base of a Graphite render API (".../render" is
	// appended) for graphite(...) checks; HTTPClient reaches it and the
	// HTTP probes (default a client with no global timeout).
	GraphiteURL string
	HTTPClient  *http.Client
	// TicketPattern finds ticket keys in commit messages (default ABC-123 style).
	TicketPattern string
	// TicketWebhook, when set, receives a JSON POST per shipped ticket.
	TicketWebhook string
	// Tick is how often verification and webhooks are looked at (default 100ms).
	Tick time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Service is the deploys service.
type Service struct {
	db      *store.DB
	bus     *bus.Bus
	ob      *bus.Outbox
	log     *slog.Logger
	cfg     Config
	tickets *regexp.Regexp
	http    *http.Client
	// instance names this replica in the leases of monitors (monitor.go).
	instance string
}

// New makes the service and applies its migrations.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Bus == nil {
		return nil, errors.New("deploys: DB and Bus are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = time.Hour
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TicketPattern == "" {
		cfg.TicketPattern = DefaultTicketPattern
	}
	re, err := regexp.Compile(cfg.TicketPattern)
	if err != nil {
		return nil, fmt.Errorf("deploys: ticket pattern %q: %w", cfg.TicketPattern, err)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	if err := cfg.DB.Migrate(ctx, Migrations()...); err != nil {
		return nil, fmt.Errorf("deploys: %w", err)
	}
	// Deploy jobs interrupted mid-way are stopped through this bucket.
	if _, err := cfg.Bus.Cancels(ctx); err != nil {
		return nil, fmt.Errorf("deploys: %w", err)
	}
	log := cfg.Logger.With("service", "deploys")
	return &Service{db: cfg.DB, bus: cfg.Bus, log: log, cfg: cfg, tickets: re, http: hc,
		ob: bus.NewOutbox(cfg.DB, cfg.Bus, log), instance: bus.NewID()}, nil
}

// Run runs the outbox relay, the event consumer, the verifier and the
// monitors (monitor.go) until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.ob.Run(ctx) })
	g.Go(func() error {
		// One consumer, so events are handled in stream order: a build's
		// artifacts (job.finished) before its build.finished, a change
		// before its build.
		return s.ob.Consume(ctx, bus.ConsumerConfig{
			Name: "deploys-events",
			Filters: []string{
				bus.EventFilter("change", ""), bus.EventFilter("build", ""), bus.EventFilter("gate", ""),
				bus.EventFilter("job", ""), bus.EventFilter("runbook.requested", ""), "shiploop.evt.errortrack.issue.>", "shiploop.evt.errortrack.release.>",
			},
		}, s.handle)
	})
	g.Go(func() error { return s.loop(ctx) })
	g.Go(func() error { return s.monitorLoop(ctx) })
	return g.Wait()
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }
