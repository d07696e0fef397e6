// Package errortrack is shiploop's Sentry-compatible error tracker: real
// Sentry SDKs send to /api/{project_id}/envelope/ (and the legacy /store/)
// unchanged; each accepted envelope is made durable on the ERRORS_INGEST
// stream before the SDK gets its 200, then a consumer parses, groups and
// stores it, turning new and returning errors into issue events. It answers
// ErrorService over gRPC.
package errortrack

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
	"github.com/shiploop/shiploop/services/errortrack/envelope"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations are the errortrack service's own tables.
func Migrations() []store.Migrations {
	sub, _ := fs.Sub(migrationsFS, "migrations")
	return []store.Migrations{bus.Migrations, {Component: "errortrack", FS: sub}}
}

// The raw-ingest stream: Sentry envelopes, never on EVENTS.
const (
	IngestStream  = "ERRORS_INGEST"
	ingestPrefix  = "shiploop.ingest.errors."
	ingestDurable = "errortrack-ingest"
)

// IngestSubject is the subject of a project's raw envelopes.
func IngestSubject(projectID int64) string { return fmt.Sprintf("%s%d", ingestPrefix, projectID) }

// Config wires an errortrack service.
type Config struct {
	DB     *store.DB
	Bus    *bus.Bus
	Logger *slog.Logger
	// PublicURL is where SDKs reach this server's HTTP listener, e.g.
	// "http://127.0.0.1:8080"; DSNs are built from it. Empty: DSNs are left
	// out and the CLI builds them from --ingest-url.
	PublicURL func() string
	// MaxBodyBytes caps a request body on the wire (default 100 MiB).
	MaxBodyBytes int64
	// MaxEnvelopeBytes caps an envelope once decompressed (default 100 MiB,
	// Relay's max_envelope_size). An envelope larger than a NATS message
	// travels through the Object Store bucket errortrack-envelopes.
	MaxEnvelopeBytes int64
	// Limits bound the items of an envelope.
	Limits envelope.Limits
	// IngestMaxBytes bounds the ERRORS_INGEST stream (default 1 GiB): when
	// the consumer falls that far behind, intake answers 429.
	IngestMaxBytes int64
	// Replicas of the ingest stream (default 1).
	Replicas int
	// KeyCacheTTL bounds how long another replica may accept a revoked key
	// (default 5s; a revoke in this process takes effect at once).
	KeyCacheTTL time.Duration
	// CountInterval is how often what each release sent is published as
	// errortrack.release.counted (default 10s).
	CountInterval time.Duration
	// Auth checks the web API's bearer tokens (/api/0/...: read scope for
	// GET, write for the rest). Nil, or without an operator token: auth off.
	Auth *server.Auth
	// Organization is the slug of the web API's one organization (default
	// $SHIPLOOP_SENTRY_ORG, else "shiploop").
	Organization string
	// ArtifactMaxBytes bounds each Object Store bucket of uploaded source
	// map chunks and assembled bundles (default 1 GiB).
	ArtifactMaxBytes int64
}

// Service is the errortrack service.
type Service struct {
	db      *store.DB
	bus     *bus.Bus
	ob      *bus.Outbox
	log     *slog.Logger
	cfg     Config
	keys    *keyCache
	limiter *limiter
	// artifacts are the source map buckets, opened on first use.
	artifacts artifactStores
	// bigEnvelopes is the bucket of envelopes too large for a message.
	bigEnvelopes bigEnvelopeStore
	// sourceMaps caches parsed source maps for symbolication.
	sourceMaps sourceMapCache
}

// New makes the service, applies its migrations and creates its stream.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Bus == nil {
		return nil, errors.New("errortrack: DB and Bus are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PublicURL == nil {
		cfg.PublicURL = func() string { return "" }
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 100 << 20
	}
	if cfg.MaxEnvelopeBytes <= 0 {
		cfg.MaxEnvelopeBytes = 100 << 20
	}
	if cfg.IngestMaxBytes <= 0 {
		cfg.IngestMaxBytes = 1 << 30
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.KeyCacheTTL <= 0 {
		cfg.KeyCacheTTL = 5 * time.Second
	}
	if cfg.CountInterval <= 0 {
		cfg.CountInterval = 10 * time.Second
	}
	if err := cfg.DB.Migrate(ctx, Migrations()...); err != nil {
		return nil, fmt.Errorf("errortrack: %w", err)
	}
	err := bus.UntilSettled(ctx, cfg.Logger, "creating stream "+IngestStream, func() error {
		_, err := cfg.Bus.JetStream().CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: IngestStream, Subjects: []string{ingestPrefix + ">"},
			// Work queue: an envelope leaves the stream once stored; the byte
			// bound is the backlog intake tolerates before answering 429.
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
			MaxBytes: cfg.IngestMaxBytes, Discard: jetstream.DiscardNew,
			Replicas: cfg.Replicas, Duplicates: 10 * time.Minute,
			Description: "raw Sentry envelopes accepted by errortrack, waiting to be grouped and stored",
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("errortrack: creating stream %s: %w", IngestStream, err)
	}
	log := cfg.Logger.With("service", "errortrack")
	s := &Service{
		db: cfg.DB, bus: cfg.Bus, log: log, cfg: cfg,
		ob:      bus.NewOutbox(cfg.DB, cfg.Bus, log),
		limiter: newLimiter(),
	}
	s.keys = newKeyCache(cfg.KeyCacheTTL, s.loadKey, s.loadProject)
	return s, nil
}

// Run runs the outbox relay, the ingest and deploy consumers and the
// release-count publisher until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.ob.Run(ctx) })
	g.Go(func() error {
		return s.ob.Consume(ctx, bus.ConsumerConfig{
			Name:    ingestDurable,
			Stream:  IngestStream,
			Filters: []string{ingestPrefix + ">"},
			Batch:   256,
			Batched: s.handleEnvelopes,
		}, s.handleEnvelope)
	})
	g.Go(func() error {
		return s.ob.Consume(ctx, bus.ConsumerConfig{
			Name:    deploysDurable,
			Filters: []string{bus.EventFilter("deploy.started", "")},
		}, s.handleDeploy)
	})
	g.Go(func() error {
		return s.ob.Consume(ctx, bus.ConsumerConfig{
			Name:    changesDurable,
			Filters: []string{bus.EventFilter("change.pushed", "")},
		}, s.handleChange)
	})
	g.Go(func() error { return s.publishCounts(ctx) })
	return g.Wait()
}
