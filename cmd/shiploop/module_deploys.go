package main

import (
	"context"
	"net/http"
	"net/http/httptest"
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
// this process's metrics service (when it runs here) in-process.
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
	if cfg.GraphiteURL == "" && slices.Contains(env.opts.services, "metrics") {
		cfg.GraphiteURL = "http://in-process/graphite"
		cfg.HTTPClient = &http.Client{Transport: inProcess{mux: env.mux, fallback: http.DefaultTransport}}
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
}

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != "in-process" {
		return t.fallback.RoundTrip(r)
	}
	rec := httptest.NewRecorder()
	t.mux.ServeHTTP(rec, r)
	return rec.Result(), nil
}
