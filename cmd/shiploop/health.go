package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/shiploop/shiploop/pkg/bus"
)

// Health: liveness is cheap (the process answers: /livez, /healthz);
// readiness is per service and means connected to NATS with the
// service's streams and consumers, and to its database. A periodic check
// (healthChecker.run) decides it; /readyz reports it over HTTP and the
// gRPC health service per gRPC service name (and "" for the process).

// Check intervals: readyEvery while every service is ready, notReadyEvery
// while one is not (it comes back quickly); checkTimeout bounds one round.
var (
	readyEvery    = 5 * time.Second
	notReadyEvery = 500 * time.Millisecond
	checkTimeout  = 2 * time.Second
)

// readiness is what /readyz answers.
type readiness struct {
	Status    string                   `json:"status"` // "ready" or "not ready"
	CheckedAt time.Time                `json:"checked_at,omitzero"`
	NATS      componentHealth          `json:"nats"`
	Services  map[string]serviceHealth `json:"services"`
}

type componentHealth struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

type serviceHealth struct {
	Ready bool `json:"ready"`
	// Problems name what is wrong: "nats: ...", "database: ...",
	// "stream EVENTS: ...", "consumer builds-jobs: ...".
	Problems []string `json:"problems,omitempty"`
	// GRPC are the gRPC health service names that follow this readiness.
	GRPC []string `json:"grpc,omitempty"`
}

// healthChecker keeps the last readiness and sets the gRPC health service.
type healthChecker struct {
	env *moduleEnv
	mu  sync.RWMutex
	cur readiness
}

func newHealthChecker(env *moduleEnv) *healthChecker {
	h := &healthChecker{env: env}
	h.cur = readiness{Status: "not ready", Services: map[string]serviceHealth{}}
	for _, r := range env.running {
		h.cur.Services[r.spec.name] = serviceHealth{Problems: []string{"not checked yet"}, GRPC: grpcHealthNames(r)}
	}
	h.publish(h.cur)
	return h
}

// grpcHealthNames are the names the gRPC health service answers for a
// service: its gRPC services and its own name ("builds").
func grpcHealthNames(r *running) []string {
	return append(slices.Clone(r.grpcNames), r.spec.name)
}

func (h *healthChecker) snapshot() readiness {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cur
}

// run checks until ctx ends.
func (h *healthChecker) run(ctx context.Context) {
	for {
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		r := h.check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.mu.Lock()
		h.cur = r
		h.mu.Unlock()
		h.publish(r)
		wait := readyEvery
		if r.Status != "ready" {
			wait = notReadyEvery
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// publish sets the gRPC health service from r.
func (h *healthChecker) publish(r readiness) {
	hs := h.env.grpc.Health
	for name, s := range r.Services {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if s.Ready {
			st = healthpb.HealthCheckResponse_SERVING
		}
		for _, n := range s.GRPC {
			hs.SetServingStatus(n, st)
		}
		_ = name
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if r.Status == "ready" {
		st = healthpb.HealthCheckResponse_SERVING
	}
	hs.SetServingStatus("", st)
}

// check is one round: NATS, JetStream, then each service's streams,
// consumers and database.
func (h *healthChecker) check(ctx context.Context) readiness {
	env := h.env
	r := readiness{Status: "ready", CheckedAt: time.Now().UTC(), NATS: componentHealth{OK: true}, Services: map[string]serviceHealth{}}
	var js jetstream.JetStream
	if len(env.running) > 0 {
		js = env.running[0].bus.JetStream()
	}
	if st := env.nc.Status(); st != nats.CONNECTED {
		r.NATS = componentHealth{Error: "nats: not connected (" + strings.ToLower(st.String()) + ")"}
	} else if js != nil {
		if _, err := js.AccountInfo(ctx); err != nil {
			r.NATS = componentHealth{Error: "nats: JetStream does not answer: " + err.Error()}
		}
	}
	// Streams and consumers: each looked up once per round.
	streams := map[string]error{}
	stream := func(name string) error {
		if err, ok := streams[name]; ok {
			return err
		}
		_, err := js.Stream(ctx, name)
		streams[name] = err
		return err
	}
	for _, run := range env.running {
		s := serviceHealth{GRPC: grpcHealthNames(run)}
		if !r.NATS.OK {
			s.Problems = append(s.Problems, r.NATS.Error)
		} else {
			for _, name := range serviceStreams(run.spec) {
				if err := stream(name); err != nil {
					s.Problems = append(s.Problems, fmt.Sprintf("stream %s: %v", name, err))
				}
			}
			for _, c := range run.spec.consumers {
				st, name := consumerRef(c)
				if err := stream(st); err != nil {
					s.Problems = append(s.Problems, fmt.Sprintf("stream %s: %v", st, err))
					continue
				}
				if _, err := js.Consumer(ctx, st, name); err != nil {
					s.Problems = append(s.Problems, fmt.Sprintf("consumer %s on %s: %v", name, st, err))
				}
			}
		}
		if run.db != nil {
			if err := run.db.PingContext(ctx); err != nil {
				s.Problems = append(s.Problems, "database: "+err.Error())
			}
		}
		s.Ready = len(s.Problems) == 0
		if !s.Ready {
			r.Status = "not ready"
		}
		r.Services[run.spec.name] = s
	}
	return r
}

// serviceStreams are the streams a service needs: the agent takes jobs,
// dlq reads dead letters, the rest consume and publish events.
func serviceStreams(s serviceSpec) []string {
	switch s.name {
	case "agent":
		return []string{bus.StreamJobs}
	case "dlq":
		return []string{bus.StreamDLQ}
	}
	return []string{bus.StreamEvents}
}

// healthRoutes: GET /livez and /healthz (liveness: the process answers),
// GET /readyz (readiness of every service here, or of ?service=NAME).
func (h *healthChecker) routes(mux *http.ServeMux) {
	live := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	}
	mux.HandleFunc("GET /livez", live)
	mux.HandleFunc("GET /healthz", live)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		cur := h.snapshot()
		if name := r.URL.Query().Get("service"); name != "" {
			s, ok := cur.Services[name]
			if !ok {
				http.Error(w, fmt.Sprintf("service %q does not run in this process (it runs: %s)", name, strings.Join(h.env.opts.services, ", ")), http.StatusNotFound)
				return
			}
			cur.Services = map[string]serviceHealth{name: s}
			cur.Status = "ready"
			if !s.Ready {
				cur.Status = "not ready"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if cur.Status != "ready" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(cur)
	})
}
