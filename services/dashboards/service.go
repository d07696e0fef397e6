// Package dashboards is shiploop's web UI: read models projected from the
// EVENTS stream into the service's own tables (rebuildable by replaying the
// stream), server-rendered pages updated live over server-sent events,
// shields-style badges, DORA metrics, and DashboardService over gRPC.
package dashboards

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	testrunsv1 "github.com/shiploop/shiploop/proto/shiploop/testruns/v1"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations are the dashboards' read-model tables plus the bus inbox.
func Migrations() []store.Migrations {
	sub, _ := fs.Sub(migrationsFS, "migrations")
	return []store.Migrations{bus.Migrations, {Component: "dashboards", FS: sub}}
}

// consumerName is the durable consumer of every event.
const consumerName = "dashboards-events"

// readTables are dropped (emptied) by a rebuild.
var readTables = []string{"dash_repos", "dash_changes", "dash_branches", "dash_commits", "dash_builds", "dash_jobs", "dash_steps",
	"dash_testruns", "dash_gates", "dash_deploys", "dash_environments", "dash_issues", "dash_files"}

// Config wires a dashboards service.
type Config struct {
	DB     *store.DB
	Bus    *bus.Bus
	Logger *slog.Logger
	// Poll is how often live pages learn about new events (default 250ms).
	Poll time.Duration
	// BadgeMaxAge is the badges' Cache-Control max-age (default 60s).
	BadgeMaxAge time.Duration
	// ProductionEnvironment names the environment DORA measures (default
	// "production").
	ProductionEnvironment string
	Now                   func() time.Time
	// Auth, when on (--token), guards every page and stream with read
	// scope (a bearer token or the /login session cookie, server.Auth.Web);
	// badges stay public. Nil or off: the UI is open.
	Auth *server.Auth
	// Errors, when set, is errortrack's API: /errors/{issue} shows an
	// issue's stack trace and events from it (error_issue.go).
	Errors errortrackv1.ErrorServiceClient
	// Deploys, when set, is DeployService: the environment page's
	// approve, promote, rollback and lock forms call it (envpage.go),
	// naming the session's token as the actor. Nil: no action forms.
	Deploys deploysv1.DeployServiceClient
	// Runbooks, when set with Deploys, is RunbookService: the environment
	// page offers a form per runbook against (or copying from or to) the
	// environment, with its options (ListRunbooks, RunRunbook on behalf of
	// the session's token name).
	Runbooks deploysv1.RunbookServiceClient
	// TestRuns, when set, is TestRunService: /builds/{id}/tests shows a
	// build's failures with output, each failing or flaky test's history
	// on the branch, and coverage per file (testspage.go).
	TestRuns testrunsv1.TestRunServiceClient
	// Builds, when set, is BuildService: the repository page lists the
	// repository's schedules (ListSchedules), with pause and resume forms
	// for write scope (SetSchedulePaused; schedules.go). Nil: no section.
	Builds buildsv1.BuildServiceClient
}

// Service is the dashboards service.
type Service struct {
	cfg Config
	db  *store.DB
	bus *bus.Bus
	ob  *bus.Outbox
	log *slog.Logger
	hub *hub
	// rebuild serialises rebuilds.
	rebuild sync.Mutex
	pages   *pages
	// logs keeps finished jobs' stored logs (they no longer change).
	logs logCache
}

// New makes the service and applies its migrations.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Bus == nil {
		return nil, errors.New("dashboards: DB and Bus are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.BadgeMaxAge <= 0 {
		cfg.BadgeMaxAge = time.Minute
	}
	if cfg.ProductionEnvironment == "" {
		cfg.ProductionEnvironment = "production"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.DB.Migrate(ctx, Migrations()...); err != nil {
		return nil, fmt.Errorf("dashboards: %w", err)
	}
	log := cfg.Logger.With("service", "dashboards")
	s := &Service{cfg: cfg, db: cfg.DB, bus: cfg.Bus, ob: bus.NewOutbox(cfg.DB, cfg.Bus, log), log: log, hub: newHub()}
	p, err := newPages(s)
	if err != nil {
		return nil, fmt.Errorf("dashboards: %w", err)
	}
	s.pages = p
	return s, nil
}

// Run consumes events and feeds live pages until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		// Every event, errortrack's three-token types included (which
		// EventFilter("", "") would miss).
		err := s.ob.Consume(ctx, bus.ConsumerConfig{Name: consumerName, Filters: []string{"shiploop.evt.>"}, Batch: 256},
			func(ctx context.Context, tx *bus.Tx, ev bus.Event) error { return project(ctx, tx, ev) })
		if ctx.Err() != nil {
			return nil
		}
		return err
	})
	g.Go(func() error { return s.watchVersion(ctx) })
	return g.Wait()
}

// version is the number of events projected so far; it changes after every
// committed event.
func (s *Service) version(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, `SELECT version FROM dash_meta WHERE id = 1`).Scan(&v)
	return v, err
}

// watchVersion tells live pages when the read models changed. Polling the
// committed version (rather than signalling from the handler) means a page
// never re-reads before the commit, on any replica.
func (s *Service) watchVersion(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	last := int64(-1)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if s.hub.count() == 0 {
			continue
		}
		v, err := s.version(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("reading read-model version", "err", err)
			}
			continue
		}
		if v != last {
			last = v
			s.hub.broadcast(v)
		}
	}
}

// Rebuild empties the read models and replays the EVENTS stream from its
// first message to the last one present when it started, with an ordered
// consumer. The durable consumer keeps running: events it handles during
// the replay are recorded in the inbox once, whoever comes first.
func (s *Service) Rebuild(ctx context.Context) (int64, error) {
	s.rebuild.Lock()
	defer s.rebuild.Unlock()
	st, err := s.bus.JetStream().Stream(ctx, bus.StreamEvents)
	if err != nil {
		return 0, fmt.Errorf("rebuild: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("rebuild: %w", err)
	}
	last := info.State.LastSeq
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		for _, t := range readTables {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+t); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM bus_inbox WHERE consumer = $1`, consumerName)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("rebuild: dropping read models: %w", err)
	}
	var n int64
	if last == 0 || info.State.Msgs == 0 {
		return 0, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, FilterSubjects: []string{"shiploop.evt.>"}})
	if err != nil {
		return 0, fmt.Errorf("rebuild: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return 0, fmt.Errorf("rebuild: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			return n, fmt.Errorf("rebuild: replaying: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return n, fmt.Errorf("rebuild: %w", err)
		}
		ev, derr := bus.Decode(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
		if derr == nil {
			err = s.ob.InTx(ctx, func(tx *bus.Tx) error {
				res, err := tx.ExecContext(ctx, `INSERT INTO bus_inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
					consumerName, ev.ID, time.Now().UnixNano())
				if err != nil {
					return err
				}
				if k, _ := res.RowsAffected(); k == 0 {
					return nil
				}
				return project(ctx, tx, ev)
			})
			switch {
			case errors.Is(err, errBadEvent):
				s.log.Warn("rebuild: skipping an event the read models cannot take", "event", ev.ID, "type", ev.Type, "err", err)
			case err != nil:
				return n, fmt.Errorf("rebuild: event %s (%s): %w", ev.ID, ev.Type, err)
			default:
				n++
			}
		}
		if md.Sequence.Stream >= last {
			return n, nil
		}
	}
}
