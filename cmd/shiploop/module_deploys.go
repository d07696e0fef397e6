package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"

	"github.com/shiploop/shiploop/services/deploys"
)

// deploysOptions are the deploys service's flags (see serverFlags).
type deploysOptions struct {
	graphiteURL   string
	ticketPattern string
	ticketWebhook string
}

// startDeploys wires the deploys service: DeployService and its consumer,
// verifier and ticket webhook. Without --graphite-url, graphite() checks ask
// this process's metrics service in-process when it runs here, or else the
// metrics instance advertised in NATS (discovery.go).
func startDeploys(ctx context.Context, env *moduleEnv) (func(context.Context) error, error) {
	db, err := env.db(ctx, "deploys")
	if err != nil {
		return nil, err
	}
	b, err := env.bus(ctx, "deploys")
	if err != nil {
		return nil, err
	}
	cfg := deploys.Config{DB: db, Bus: b, Logger: env.log, GraphiteURL: env.opts.deploys.graphiteURL,
		TicketPattern: env.opts.deploys.ticketPattern, TicketWebhook: env.opts.deploys.ticketWebhook}
	if cfg.GraphiteURL == "" {
		// This process's metrics service, or the one advertised in NATS.
		cfg.GraphiteURL = "http://in-process/graphite"
		local := slices.Contains(env.opts.services, "metrics")
		cfg.HTTPClient = &http.Client{Transport: inProcess{mux: env.mux, fallback: http.DefaultTransport, local: local,
			lookup: func(ctx context.Context) (string, error) {
				ep, err := env.lookup(ctx, "metrics")
				return ep.HTTP, err
			}}}
	}
	svc, err := deploys.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	svc.RegisterGRPC(env.grpc)
	env.rpc = true
	return svc.Run, nil
}

// inProcess answers requests for host "in-process" with the process's own
// HTTP mux (the metrics service's Graphite API) and sends the rest (HTTP
// probes) over the network.
type inProcess struct {
	mux      http.Handler
	fallback http.RoundTripper
	// local: metrics runs in this process; otherwise lookup finds the
	// base URL (http://host:port) of a metrics instance advertised in NATS.
	local  bool
	lookup func(context.Context) (string, error)
}

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != "in-process" {
		return t.fallback.RoundTrip(r)
	}
	if !t.local {
		base, err := t.lookup(r.Context())
		if err != nil {
			return nil, fmt.Errorf("finding the metrics service for graphite() checks (or set --graphite-url): %w", err)
		}
		u, err := url.Parse(base)
		if err != nil {
			return nil, fmt.Errorf("metrics advertises %q: %w", base, err)
		}
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host, r.Host = u.Scheme, u.Host, u.Host
		return t.fallback.RoundTrip(r)
	}
	rec := httptest.NewRecorder()
	t.mux.ServeHTTP(rec, r)
	return rec.Result(), nil
}
