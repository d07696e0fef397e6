package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/vcsarg"
	"github.com/shiploop/shiploop/services/agent"
	"github.com/shiploop/shiploop/services/agent/backend"
	"github.com/shiploop/shiploop/services/builds"
)

// module is one service the binary can run: start wires it (routes, gRPC,
// listeners) and returns what runs until the context ends.
type module struct {
	start func(ctx context.Context, env *moduleEnv) (func(context.Context) error, error)
}

// modules by name. `shiploop up` starts knownServices in order.
var modules = map[string]module{
	"builds":     {start: startBuilds},
	"agent":      {start: startAgent},
	"metrics":    {start: startMetrics},
	"errortrack": {start: startErrortrack},
	"deploys":    {start: startDeploys},
	"gates":      {start: startGates},
	"testruns":   {start: startTestruns},
	"dashboards": {start: startDashboards},
	"cdevents":   {start: startCDEvents},
	"flags":      {start: startFlags},
	"dlq":        {start: startDLQ},
}

// knownServices are the services `shiploop serve` accepts, in start order.
var knownServices = []string{"builds", "testruns", "gates", "deploys", "errortrack", "metrics", "dashboards", "dlq", "cdevents", "flags", "agent"}

// moduleEnv is what modules share: the connection, the HTTP mux and the
// gRPC server of the process.
type moduleEnv struct {
	opts    runOptions
	log     *slog.Logger
	nc      *nats.Conn
	mux     *http.ServeMux
	grpc    *server.GRPC
	http    bool // some module registered HTTP routes
	rpc     bool // some module registered a gRPC service
	closers []func() error
	// addresses are extra listeners to print when ready (name -> address).
	addresses map[string]string
	// grpcAddr is the address the gRPC listener got (a string), once open.
	grpcAddr atomic.Value
}

// announce records an extra listener for the ready line and banner.
func (e *moduleEnv) announce(name, addr string) {
	if e.addresses == nil {
		e.addresses = map[string]string{}
	}
	e.addresses[name] = addr
}

// bus returns a Bus whose events carry source /shiploop/<service>.
func (e *moduleEnv) bus(ctx context.Context, service string) (*bus.Bus, error) {
	return bus.New(ctx, e.nc, bus.Options{Source: "/shiploop/" + service, Replicas: e.opts.replicas})
}

// db opens the service's own database (schema or SQLite file).
func (e *moduleEnv) db(ctx context.Context, service string) (*store.DB, error) {
	db, err := store.Open(ctx, store.Config{URL: e.opts.databaseURL, Service: service, DataDir: e.opts.dataDir})
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, db.Close)
	return db, nil
}

func (e *moduleEnv) closeAll() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		_ = e.closers[i]()
	}
	e.closers = nil
}

func startBuilds(ctx context.Context, env *moduleEnv) (func(context.Context) error, error) {
	db, err := env.db(ctx, "builds")
	if err != nil {
		return nil, err
	}
	b, err := env.bus(ctx, "builds")
	if err != nil {
		return nil, err
	}
	svc, err := builds.New(ctx, builds.Config{DB: db, Bus: b, Logger: env.log, DataDir: env.opts.dataDir, Auth: env.grpc.Auth, PublicURL: env.opts.publicURL,
		AllowedTransports: env.opts.allowedTransports})
	if err != nil {
		return nil, err
	}
	svc.Routes(env.mux)
	svc.RegisterGRPC(env.grpc)
	env.http, env.rpc = true, true
	return svc.Run, nil
}

func startAgent(ctx context.Context, env *moduleEnv) (func(context.Context) error, error) {
	b, err := env.bus(ctx, "agent")
	if err != nil {
		return nil, err
	}
	transports, err := vcsarg.ParseTransports(env.opts.allowedTransports)
	if err != nil {
		return nil, fmt.Errorf("--allowed-transports: %w", err)
	}
	be := backend.NewProcess(backend.ProcessConfig{WorkRoot: filepath.Join(env.opts.dataDir, "work"), AllowedTransports: transports})
	ag, err := agent.New(agent.Config{Bus: b, Backend: be, Concurrency: max(env.opts.agents, 1), Logger: env.log, LogDir: filepath.Join(env.opts.dataDir, "logs"), Lease: env.opts.lease,
		Labels: splitList(env.opts.agentLabels), Kinds: splitList(env.opts.agentKinds)})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return ag.Run, nil
}

// peerCreds are the credentials for calling another service's gRPC API
// (gates asks builds): plaintext, or with --tls-cert the same TLS, trusting
// the server's own certificate (and --tls-client-ca) and, for mutual TLS,
// presenting it as the client certificate (it then needs the clientAuth
// usage too).
func (e *moduleEnv) peerCreds() (credentials.TransportCredentials, error) {
	t := e.opts.tls
	if !t.Enabled() {
		return insecure.NewCredentials(), nil
	}
	cfg, err := server.TLSFiles{CA: t.Cert, Cert: t.Cert, Key: t.Key}.ClientConfig()
	if err != nil {
		return nil, err
	}
	if t.CA == "" {
		cfg.Certificates = nil // no mutual TLS: no client certificate needed
	} else if pem, err := os.ReadFile(t.CA); err == nil {
		cfg.RootCAs.AppendCertsFromPEM(pem)
	}
	return credentials.NewTLS(cfg), nil
}
