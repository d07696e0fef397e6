// Package flags is shiploop's feature-flag service: flags per environment
// with targeting rules and percentage rollouts, managed over gRPC
// (FlagService) and the CLI, every change published as a flag.changed
// event, and evaluated over the OpenFeature Remote Evaluation Protocol
// (OFREP: POST /ofrep/v1/evaluate/flags[/{key}]), so any OpenFeature SDK
// with its OFREP provider reads them unchanged.
package flags

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	flagsv1 "github.com/shiploop/shiploop/proto/shiploop/flags/v1"
	"github.com/shiploop/shiploop/services/flags/eval"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations are the flags table plus the bus outbox/inbox.
func Migrations() []store.Migrations {
	sub, _ := fs.Sub(migrationsFS, "migrations")
	return []store.Migrations{bus.Migrations, {Component: "flags", FS: sub}}
}

// ErrNotFound is a flag that does not exist in that environment.
var ErrNotFound = errors.New("flag not found")

// Config wires the service.
type Config struct {
	DB     *store.DB
	Bus    *bus.Bus
	Logger *slog.Logger
	// ReadAuth, when set, wraps the OFREP routes (a read scope).
	ReadAuth func(http.Handler) http.Handler
	Now      func() time.Time
}

// Service is the flags service.
type Service struct {
	cfg Config
	db  *store.DB
	ob  *bus.Outbox
	log *slog.Logger
}

// New applies migrations and makes the service.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Bus == nil {
		return nil, errors.New("flags: DB and Bus are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.DB.Migrate(ctx, Migrations()...); err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	log := cfg.Logger.With("service", "flags")
	return &Service{cfg: cfg, db: cfg.DB, ob: bus.NewOutbox(cfg.DB, cfg.Bus, log), log: log}, nil
}

// Run relays the outbox until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	err := s.ob.Run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

var pj = protojson.MarshalOptions{UseProtoNames: true}

// Set creates or replaces a flag and publishes flag.changed in the same
// transaction.
func (s *Service) Set(ctx context.Context, f *flagsv1.Flag, by string) (*flagsv1.Flag, error) {
	f = proto.Clone(f).(*flagsv1.Flag)
	if err := eval.Validate(f); err != nil {
		return nil, err
	}
	now := s.cfg.Now().UTC()
	f.UpdatedAt, f.UpdatedBy = timestamppb.New(now), by
	err := s.ob.InTx(ctx, func(tx *bus.Tx) error {
		var v int64
		err := tx.QueryRowContext(ctx, `SELECT version FROM flags WHERE key = $1 AND environment = $2`, f.Key, f.Environment).Scan(&v)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		f.Version = v + 1
		def, err := pj.Marshal(f)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO flags (key, environment, definition, version, updated_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (key, environment) DO UPDATE SET definition = excluded.definition, version = excluded.version, updated_at = excluded.updated_at`,
			f.Key, f.Environment, string(def), f.Version, now.UnixNano()); err != nil {
			return err
		}
		return tx.Publish(bus.Event{Type: "flag.changed", Subject: f.Key + "@" + f.Environment, Data: &eventsv1.FlagChanged{
			Key: f.Key, Environment: f.Environment, Enabled: f.Enabled, DefaultVariant: f.DefaultVariant, Version: f.Version, By: by,
			Rules: int32(len(f.Rules)), RolloutPercent: f.GetRollout().GetPercent()}})
	})
	if err != nil {
		return nil, fmt.Errorf("flags: setting %s in %s: %w", f.Key, f.Environment, err)
	}
	return f, nil
}

// Delete removes a flag and publishes flag.deleted.
func (s *Service) Delete(ctx context.Context, key, env, by string) error {
	return s.ob.InTx(ctx, func(tx *bus.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM flags WHERE key = $1 AND environment = $2`, key, env)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return tx.Publish(bus.Event{Type: "flag.deleted", Subject: key + "@" + env, Data: &eventsv1.FlagChanged{Key: key, Environment: env, By: by, Deleted: true}})
	})
}

func decode(def string) (*flagsv1.Flag, error) {
	f := &flagsv1.Flag{}
	if err := protojson.Unmarshal([]byte(def), f); err != nil {
		return nil, fmt.Errorf("flags: stored definition: %w", err)
	}
	return f, nil
}

// Get returns one flag.
func (s *Service) Get(ctx context.Context, key, env string) (*flagsv1.Flag, error) {
	var def string
	err := s.db.QueryRowContext(ctx, `SELECT definition FROM flags WHERE key = $1 AND environment = $2`, key, env).Scan(&def)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return decode(def)
}

// List returns the flags of an environment ("" for all), by key.
func (s *Service) List(ctx context.Context, env string) ([]*flagsv1.Flag, error) {
	q, args := `SELECT definition FROM flags ORDER BY environment, key`, []any{}
	if env != "" {
		q, args = `SELECT definition FROM flags WHERE environment = $1 ORDER BY key`, []any{env}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*flagsv1.Flag
	for rows.Next() {
		var def string
		if err := rows.Scan(&def); err != nil {
			return nil, err
		}
		f, err := decode(def)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}
