// Package builds is shiploop's build service: it takes VCS webhooks, turns
// each change into a build with a unique version, queues the build's job for
// agents, follows the job's events, and answers BuildService over gRPC.
package builds

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/vcsarg"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations are the builds service's own tables.
func Migrations() []store.Migrations {
	sub, _ := fs.Sub(migrationsFS, "migrations")
	return []store.Migrations{bus.Migrations, {Component: "builds", FS: sub}}
}

// Config wires a builds service.
type Config struct {
	DB     *store.DB
	Bus    *bus.Bus
	Logger *slog.Logger
	// DataDir holds repository mirrors.
	DataDir string
	// MaxBodyBytes caps webhook bodies (default 25 MiB, GitHub's own cap).
	MaxBodyBytes int64
	// JobTimeout applies to build jobs whose steps set none (default 1h).
	JobTimeout time.Duration
	// Auth, when on (--token), guards the HTTP artifact downloads with read
	// scope, as gRPC's DownloadArtifact (a bearer token or the web UI's
	// login cookie, server.Auth.Web). Nil or off: they are open.
	Auth *server.Auth
	// PublicURL is the base URL of the shiploop web UI: commit statuses
	// link to PublicURL/builds/<id>, or to nothing when it is empty.
	PublicURL string
	// StatusBackoff are the delays between attempts to post a commit status
	// to a forge that failed or did not answer (default 1s, 5s, 30s, 2m, 5m,
	// 10m, 10m: about half an hour); there is one attempt more than delays.
	StatusBackoff []time.Duration
	// AllowedTransports are the transports a clone URL may use, comma
	// separated (vcsarg.AllTransports; default vcsarg.DefaultTransports:
	// https, ssh, git). Local paths and file:// need "file".
	AllowedTransports string
}

// Service is the builds service.
type Service struct {
	db      *store.DB
	bus     *bus.Bus
	ob      *bus.Outbox
	log     *slog.Logger
	mirrors *mirrors
	cfg     Config
	// statuses posts commit statuses to forges.
	statuses *statusPoster
}

// New makes the service and applies its migrations.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Bus == nil {
		return nil, errors.New("builds: DB and Bus are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 25 << 20
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = time.Hour
	}
	if cfg.PublicURL != "" {
		if u, err := url.Parse(cfg.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("builds: public URL %q: want http(s)://host[/path]", cfg.PublicURL)
		}
	}
	if cfg.AllowedTransports == "" {
		cfg.AllowedTransports = vcsarg.DefaultTransports
	}
	transports, err := vcsarg.ParseTransports(cfg.AllowedTransports)
	if err != nil {
		return nil, fmt.Errorf("builds: allowed transports: %w", err)
	}
	if err := cfg.DB.Migrate(ctx, Migrations()...); err != nil {
		return nil, fmt.Errorf("builds: %w", err)
	}
	// Cancels reach agents through this bucket; it must exist before the
	// outbox relays one.
	if err := bus.UntilSettled(ctx, cfg.Logger, "opening the cancel bucket", func() error {
		_, err := cfg.Bus.Cancels(ctx)
		return err
	}); err != nil {
		return nil, fmt.Errorf("builds: %w", err)
	}
	log := cfg.Logger.With("service", "builds")
	return &Service{
		db: cfg.DB, bus: cfg.Bus, log: log, cfg: cfg,
		ob:       bus.NewOutbox(cfg.DB, cfg.Bus, log),
		mirrors:  newMirrors(filepath.Join(cfg.DataDir, "mirrors"), transports),
		statuses: newStatusPoster(),
	}, nil
}

// changeWorkers is how many changes, of different repositories, the
// builds-changes consumer handles at once: most of a change's time is git
// waiting on the network or the disk.
const changeWorkers = 8

// Run runs the outbox relay and the service's consumers until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.ob.Run(ctx) })
	g.Go(func() error {
		return s.ob.Consume(ctx, bus.ConsumerConfig{
			Name:    "builds-changes",
			Filters: []string{bus.EventFilter("change", "")},
			Prepare: s.prepareChange,
			// Fetching a large repository can take a while.
			AckWait: time.Minute,
			// Repositories' changes are prepared (fetched, read) and
			// recorded side by side; one repository's in order.
			Workers: changeWorkers,
		}, s.handleChange)
	})
	g.Go(func() error {
		return s.ob.Consume(ctx, bus.ConsumerConfig{
			Name:    "builds-jobs",
			Filters: []string{bus.EventFilter("job", "")},
		}, s.handleJobEvent)
	})
	g.Go(func() error { return s.consumeStatuses(ctx) })
	g.Go(func() error { return s.consumeHarbormaster(ctx) })
	g.Go(func() error { return s.serveSecrets(ctx) }) // secrets.go
	g.Go(func() error { return s.runScheduler(ctx) }) // schedules.go
	g.Go(func() error {
		return s.ob.Bus().LostJobs(ctx, bus.LostJobsConfig{Name: "builds-lost-jobs"}, s.failLostJob)
	})
	return g.Wait()
}

// failLostJob ends a job no agent will run again (JetStream delivered it
// MaxDeliver times and no agent finished it) with a job.finished of status
// error, as an agent would have. Builds, test runs and deploys act on it as
// on any failed job, so its pipeline completes instead of waiting for ever.
// The job is canceled too, for an agent still running it that lost its
// lease (a partition, a long pause) rather than its life. The event's id
// derives from the job's, so a second advisory publishes nothing new; a
// job that did finish after all keeps its result (every consumer ignores a
// second job.finished).
func (s *Service) failLostJob(ctx context.Context, ev bus.Event, deliveries uint64) error {
	job, ok := ev.Data.(*eventsv1.Job)
	if !ok {
		return nil
	}
	s.log.Warn("job lost: delivered to agents until JetStream gave up, never finished; failing it", "job", job.JobId, "kind", job.Kind, "repository", job.Repository, "deliveries", deliveries)
	reason := fmt.Sprintf("agent lost: the job was delivered %d times and no agent finished it (each agent that took it stopped or lost its lease before the end: killed, out of memory, host gone); it is not tried again (`shiploop dlq ls` lists it)", deliveries)
	return s.ob.InTx(ctx, func(tx *bus.Tx) error {
		if err := tx.CancelJob(job.JobId, reason); err != nil {
			return err
		}
		return tx.Publish(bus.Event{ID: ev.ID + ".lost", Type: "job.finished", Repository: job.Repository, Subject: job.JobId, ChainID: job.ChainId,
			Data: &eventsv1.JobFinished{JobId: job.JobId, BuildId: job.BuildId, Repository: job.Repository, Status: eventsv1.BuildStatus_BUILD_STATUS_ERROR, Error: reason}})
	})
}
