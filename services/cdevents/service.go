// Package cdevents is shiploop's CDEvents bridge: it exports the platform's
// events as CDEvents v0.5.1 JSON on "cdevents.>" subjects (a CDEVENTS stream)
// and, optionally, to an HTTP sink; and it accepts CDEvents from other tools
// on POST /cdevents (CloudEvents structured or binary mode), validated
// against the spec's JSON Schemas, as internal events.
package cdevents

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations are the bridge's table plus the bus inbox.
func Migrations() []store.Migrations {
	sub, _ := fs.Sub(migrationsFS, "migrations")
	return []store.Migrations{bus.Migrations, {Component: "cdevents", FS: sub}}
}

// Stream is the JetStream stream that keeps exported CDEvents.
const (
	Stream        = "CDEVENTS"
	SubjectPrefix = "cdevents."
	consumerName  = "cdevents-export"
	maxBody       = 1 << 20
)

// Config wires the bridge.
type Config struct {
	DB     *store.DB
	Bus    *bus.Bus
	Logger *slog.Logger
	// Validator checks exported and received CDEvents. Without it the
	// bridge exports unchecked and refuses inbound events (503): accepting
	// unvalidated input is not an option.
	Validator *Validator
	// SinkURL, when set, receives every exported CDEvent as a binary-mode
	// CloudEvent POST; failures are retried like any handler error.
	SinkURL    string
	HTTPClient *http.Client
	// Token guards POST /cdevents (bearer), as every mutating route.
	Token string
	// Auth, when set, replaces Token: it wraps the POST handler.
	Auth     func(http.Handler) http.Handler
	Replicas int
}

// Stats are the bridge's counters.
type Stats struct {
	Exported int64 `json:"exported"`
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
}

// Service is the CDEvents bridge.
type Service struct {
	cfg                          Config
	previous                     sync.Map // deploy id -> release it replaced, for deploys seen in this process
	log                          *slog.Logger
	exported, accepted, rejected atomic.Int64
}

// New applies the migrations and makes the bridge.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Bus == nil {
		return nil, errors.New("cdevents: DB and Bus are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if err := cfg.DB.Migrate(ctx, Migrations()...); err != nil {
		return nil, fmt.Errorf("cdevents: %w", err)
	}
	replicas := max(cfg.Replicas, 1)
	if err := bus.UntilSettled(ctx, cfg.Logger, "creating stream "+Stream, func() error {
		_, err := cfg.Bus.JetStream().CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: Stream, Subjects: []string{SubjectPrefix + ">"}, Retention: jetstream.LimitsPolicy,
			MaxAge: 30 * 24 * time.Hour, Duplicates: 10 * time.Minute, Replicas: replicas, Storage: jetstream.FileStorage,
		})
		return err
	}); err != nil {
		return nil, fmt.Errorf("cdevents: creating stream %s: %w", Stream, err)
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("service", "cdevents")}, nil
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	return Stats{Exported: s.exported.Load(), Accepted: s.accepted.Load(), Rejected: s.rejected.Load()}
}

// Routes registers POST /cdevents (receive) and GET /cdevents (counters).
func (s *Service) Routes(mux *http.ServeMux) {
	auth := s.cfg.Auth
	if auth == nil {
		auth = func(h http.Handler) http.Handler { return server.RequireBearer(s.cfg.Token, h) }
	}
	mux.Handle("POST /cdevents", auth(http.HandlerFunc(s.receive)))
	mux.HandleFunc("GET /cdevents", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stats())
	})
}

// Run exports events until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	ob := bus.NewOutbox(s.cfg.DB, s.cfg.Bus, s.log)
	err := ob.Consume(ctx, bus.ConsumerConfig{
		Name: consumerName, Filters: []string{"shiploop.evt.>"}, Batch: 128,
		Prepare: s.export,
	}, s.record)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// record keeps what later mappings need (the release a deploy replaced).
func (s *Service) record(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	if d, ok := ev.Data.(*eventsv1.DeployStarted); ok && d.GetDeploy().GetDeployId() != "" {
		_, err := tx.ExecContext(ctx, `INSERT INTO cde_deploys (deploy_id, previous_release) VALUES ($1, $2)
			ON CONFLICT (deploy_id) DO UPDATE SET previous_release = excluded.previous_release`, d.GetDeploy().GetDeployId(), d.GetPreviousRelease())
		return err
	}
	return nil
}

// export publishes the CDEvents of one internal event, outside the
// database transaction (a slow sink must not hold SQLite's writer).
func (s *Service) export(ctx context.Context, ev bus.Event) (any, error) {
	if ev.Source == s.cfg.Bus.Source() {
		return nil, nil // our own translation of an inbound CDEvent: never echo it back out
	}
	if d, ok := ev.Data.(*eventsv1.DeployStarted); ok {
		// Prepare runs for a whole batch before its transaction: a
		// deploy.finished in the same batch must see this already.
		s.previous.Store(d.GetDeploy().GetDeployId(), d.GetPreviousRelease())
	}
	lookup := func(id string) (string, bool) {
		if v, ok := s.previous.Load(id); ok {
			return v.(string), true
		}
		var prev string
		err := s.cfg.DB.QueryRowContext(ctx, `SELECT previous_release FROM cde_deploys WHERE deploy_id = $1`, id).Scan(&prev)
		return prev, err == nil
	}
	out := Export(ev, lookup)
	if d, ok := ev.Data.(*eventsv1.DeployFinished); ok {
		defer s.previous.Delete(d.GetDeploy().GetDeployId())
	}
	for _, ce := range out {
		raw, err := ce.Marshal()
		if err != nil {
			return nil, bus.Permanent(fmt.Errorf("cdevents: encoding %s: %w", ce.Context.Type, err))
		}
		if s.cfg.Validator != nil {
			if err := s.cfg.Validator.Validate(raw); err != nil {
				return nil, bus.Permanent(fmt.Errorf("cdevents: exporting %s (event %s): %w", ev.Type, ev.ID, err))
			}
		}
		if err := s.publish(ctx, ce, raw); err != nil {
			return nil, err
		}
		if s.cfg.SinkURL != "" {
			if err := s.post(ctx, ce, raw); err != nil {
				return nil, err
			}
		}
		s.exported.Add(1)
	}
	return nil, nil
}

// ceHeaders are the CloudEvents binary-mode attributes of an exported
// CDEvent (the CDEvents binding: id, source, type, subject and time mirror
// the context).
func ceHeaders(ce CDEvent) map[string]string {
	h := map[string]string{
		"ce-specversion": "1.0", "ce-id": ce.Context.ID, "ce-source": ce.Context.Source, "ce-type": ce.Context.Type,
		"ce-subject": ce.Subject.ID, "ce-time": ce.Context.Timestamp, "ce-datacontenttype": "application/json",
	}
	if ce.Context.ChainID != "" {
		h["ce-chainid"] = ce.Context.ChainID
	}
	return h
}

func (s *Service) publish(ctx context.Context, ce CDEvent, raw []byte) error {
	m := nats.NewMsg(ce.NATSSubject())
	for k, v := range ceHeaders(ce) {
		m.Header[k] = []string{pctEncode(v)}
	}
	m.Header[jetstream.MsgIDHeader] = []string{ce.Context.ID}
	m.Data = raw
	return s.cfg.Bus.PublishMsg(ctx, m)
}

func (s *Service) post(ctx context.Context, ce CDEvent, raw []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.SinkURL, bytes.NewReader(raw))
	if err != nil {
		return bus.Permanent(fmt.Errorf("cdevents: sink %q: %w", s.cfg.SinkURL, err))
	}
	for k, v := range ceHeaders(ce) {
		req.Header.Set(k, pctEncode(v))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("cdevents: posting %s to sink: %w", ce.Context.Type, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("cdevents: sink answered %s to %s", resp.Status, ce.Context.Type)
	}
	return nil
}

// pctEncode percent-encodes a header value as the CloudEvents bindings
// require (space, '"', '%' and anything outside printable ASCII).
func pctEncode(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= 0x20 || c > 0x7e || c == '%' || c == '"' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// receive takes one CDEvent from another tool.
func (s *Service) receive(w http.ResponseWriter, r *http.Request) {
	reject := func(code int, err error) {
		s.rejected.Add(1)
		s.log.Warn("cdevent rejected", "remote", r.RemoteAddr, "err", err)
		writeJSON(w, code, map[string]string{"error": err.Error()})
	}
	if s.cfg.Validator == nil {
		reject(http.StatusServiceUnavailable, errors.New("cdevents: no schemas loaded, start the server with --cdevents-schemas DIR (the cdevents/spec v0.5.1 checkout)"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		reject(http.StatusBadRequest, fmt.Errorf("reading body: %w", err))
		return
	}
	if len(body) > maxBody {
		reject(http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", maxBody))
		return
	}
	env, data, err := ParseHTTP(r.Header, body)
	if err != nil {
		reject(http.StatusBadRequest, err)
		return
	}
	if err := s.cfg.Validator.Validate(data); err != nil {
		reject(http.StatusBadRequest, err)
		return
	}
	var head struct {
		Context struct {
			Type string `json:"type"`
		} `json:"context"`
	}
	_ = json.Unmarshal(data, &head) // valid JSON: the schema check passed
	if env.Type != head.Context.Type {
		reject(http.StatusBadRequest, fmt.Errorf("CloudEvent type %q differs from the CDEvent's context.type %q (the CDEvents binding sets them equal)", env.Type, head.Context.Type))
		return
	}
	ev, err := Inbound(data)
	if err != nil {
		reject(http.StatusBadRequest, err)
		return
	}
	if err := s.cfg.Bus.Publish(r.Context(), ev); err != nil {
		s.log.Error("publishing received cdevent", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "could not publish the event, retry: " + err.Error()})
		return
	}
	s.accepted.Add(1)
	writeJSON(w, http.StatusAccepted, map[string]string{"id": ev.ID, "type": ev.Type})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
