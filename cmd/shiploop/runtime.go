package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/telemetry"
	"github.com/shiploop/shiploop/services/errortrack"
)

// runOptions are the wiring choices shared by `up`, `serve` and `agent`.
type runOptions struct {
	services    []string
	dataDir     string
	natsURL     string // "" = embedded
	natsListen  string // embedded only
	natsCreds   string
	databaseURL string // "" = SQLite files in dataDir
	// Carbon (metrics): plaintext on TCP and UDP, pickle on TCP.
	carbonListen string
	// carbon's storage-schemas.conf / storage-aggregation.conf; defaults when empty
	storageSchemas, storageAggregation string
	graphiteQueryTimeout               time.Duration // bounds one Graphite query (metrics.Config.QueryTimeout)
	pickleListen                       string
	httpListen                         string
	grpcListen                         string
	token                              string
	publicURL                          string // web UI base for commit status links
	allowedTransports                  string // clone URL transports (vcsarg)
	advertiseHost                      string // host other processes dial for this one's services
	buildsAddr                         string // gates: builds' gRPC address; discovered when empty
	deploys                            deploysOptions
	cdevents                           cdeventsOptions
	metrics                            metricsOptions
	agents                             int
	lease                              time.Duration
	agentLabels                        string // comma-separated labels of the built-in or standalone agent
	agentKinds                         string // comma-separated job kinds it takes; all when empty
	agentBackend                       string // how the agent runs steps: process or docker
	// tls serves HTTP and gRPC over TLS; tls.CA makes it mutual TLS.
	tls       server.TLSFiles
	replicas  int
	logFormat string
	logLevel  string
	json      bool
	banner    bool
}

// readyInfo is what `up --json` prints once everything is serving.
type readyInfo struct {
	Event    string   `json:"event"`
	HTTPURL  string   `json:"http_url,omitempty"`
	GRPCAddr string   `json:"grpc_addr,omitempty"`
	NATSURL  string   `json:"nats_url,omitempty"`
	DataDir  string   `json:"data_dir"`
	Services []string `json:"services"`
	ReadyMS  int64    `json:"ready_ms"`
	// Addresses are the extra listeners services opened (e.g. "carbon": "127.0.0.1:2003").
	Addresses map[string]string `json:"addresses,omitempty"`
}

func validateServices(names []string) error {
	for _, n := range names {
		switch {
		case slices.Contains(knownServices, n):
		default:
			return fmt.Errorf("unknown service %q (available: %s)", n, strings.Join(knownServices, ", "))
		}
	}
	return nil
}

// run starts the chosen services and blocks until ctx ends.
func run(ctx context.Context, o runOptions, stdout io.Writer) error {
	start := time.Now()
	if err := validateServices(o.services); err != nil {
		return err
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "shiploop", Version: version, LogFormat: o.logFormat, LogLevel: o.logLevel})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	defer tel.Recover()
	log := tel.Logger
	startPprof(log)
	if o.dataDir == "" {
		o.dataDir = ".shiploop"
	}
	if abs, err := filepath.Abs(o.dataDir); err == nil {
		o.dataDir = abs
	}
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w (choose another with --data-dir)", err)
	}

	// The bus: embedded server or a URL.
	var nc *nats.Conn
	natsURL := o.natsURL
	if o.natsURL == "" {
		emb, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: filepath.Join(o.dataDir, "nats"), Listen: o.natsListen})
		if err != nil {
			return err
		}
		defer emb.Shutdown()
		natsURL = emb.ClientURL()
		if nc, err = emb.Connect("shiploop"); err != nil {
			return err
		}
	} else {
		var opts []nats.Option
		if o.natsCreds != "" {
			opts = append(opts, nats.UserCredentials(o.natsCreds))
		}
		if nc, err = bus.Connect(o.natsURL, "shiploop", opts...); err != nil {
			return err
		}
	}
	defer nc.Close()
	// Streams first, once, before any service consumes.
	if _, err := bus.New(ctx, nc, bus.Options{Source: "/shiploop", Replicas: o.replicas}); err != nil {
		return err
	}
	tokenStore, err := openTokens(ctx, nc, o.replicas)
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	var serverTLS *tls.Config
	if o.tls.Enabled() {
		if serverTLS, err = o.tls.ServerConfig(); err != nil {
			return err
		}
	}
	env := &moduleEnv{opts: o, log: log, nc: nc, mux: http.NewServeMux()}
	prom := newPromMetrics(env)
	// The same metrics over OTLP when OTEL_* asks for them (otelmetrics.go).
	otelStop, err := prom.startOTel(ctx, os.Getenv, log)
	if err != nil {
		return err
	}
	if otelStop != nil {
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_ = otelStop(sctx)
		}()
	}
	env.grpc = server.NewGRPC(server.GRPCConfig{Token: o.token, Tokens: tokenStore.Lookup, Logger: log, TLS: serverTLS, Options: prom.grpcOptions()})
	registerTokens(env.grpc, tokenStore)
	// Every service the same way (services.go): database, bus, routes,
	// gRPC services; then readiness, metrics and discovery for all.
	for _, name := range o.services {
		spec, _ := specOf(name)
		r, err := env.start(ctx, spec)
		if err != nil {
			env.closeAll()
			return fmt.Errorf("starting %s: %w", name, err)
		}
		g.Go(func() error { return r.svc.Run(gctx) })
	}
	defer env.closeAll()
	mux, grpcSrv := env.mux, env.grpc
	// HTTP serves health and /metrics for every process that has an
	// address for it (a standalone agent only with --http-listen).
	serveHTTP, serveGRPC := env.http || o.httpListen != "", env.rpc
	health := newHealthChecker(env)
	prom.setHealth(health)
	g.Go(func() error { health.run(gctx); return nil })
	prom.observeEvents(gctx, env)

	info := readyInfo{Event: "ready", DataDir: o.dataDir, Services: o.services, NATSURL: natsURL, Addresses: env.addresses}
	if serveHTTP {
		health.routes(mux)
		mux.Handle("GET /metrics", prom.handler())
		// The web UI's login (with --token): pages and artifact downloads
		// take its session cookie.
		grpcSrv.Auth.LoginRoutes(mux)
		lis, err := server.Listen(o.httpListen, "--http-listen")
		if err != nil {
			return err
		}
		info.HTTPURL = "http://" + lis.Addr().String()
		if serverTLS != nil {
			lis = tls.NewListener(lis, serverTLS)
			info.HTTPURL = "https://" + strings.TrimPrefix(info.HTTPURL, "http://")
		}
		g.Go(func() error {
			return server.ServeHTTP(gctx, lis, server.SecurityHeaders(errortrack.StripDSNPrefix(guardMutations(grpcSrv.Auth, server.Routed(prom.instrument(mux))))), log)
		})
	}
	if serveGRPC {
		lis, err := server.Listen(o.grpcListen, "--grpc-listen")
		if err != nil {
			return err
		}
		info.GRPCAddr = lis.Addr().String()
		env.grpcAddr.Store(info.GRPCAddr)
		g.Go(func() error { return grpcSrv.Serve(gctx, lis) })
	}
	// Other processes find this one's services through NATS (a gates
	// process asks builds for forge settings); off the ready path.
	g.Go(func() error { advertise(gctx, env, info.GRPCAddr, info.HTTPURL); return nil })
	info.ReadyMS = time.Since(start).Milliseconds()
	printReady(stdout, o, info)
	log.Info("shiploop ready", "services", strings.Join(o.services, ","), "ready_ms", info.ReadyMS)

	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func printReady(w io.Writer, o runOptions, info readyInfo) {
	if o.json {
		_ = json.NewEncoder(w).Encode(info)
		return
	}
	if !o.banner {
		return
	}
	fmt.Fprintf(w, "shiploop %s is up in %dms (%s)\n", version, info.ReadyMS, strings.Join(info.Services, ", "))
	if info.HTTPURL != "" {
		has := func(name string) bool { return slices.Contains(info.Services, name) }
		if has("dashboards") {
			fmt.Fprintf(w, "  web UI     %s/  (badges under /badges/)\n", info.HTTPURL)
		}
		if has("builds") {
			fmt.Fprintf(w, "  webhooks   %s/hooks/{github,gitlab,gitea,forgejo,bitbucket,generic,harbormaster}\n", info.HTTPURL)
		}
		if has("errortrack") {
			fmt.Fprintf(w, "  sentry     %s/api/{project}/envelope/  (shiploop errors project create NAME prints a DSN)\n", info.HTTPURL)
		}
		if has("metrics") {
			fmt.Fprintf(w, "  graphite   %s/graphite/  (a Grafana Graphite data source)\n", info.HTTPURL)
		}
		fmt.Fprintf(w, "  health     %s/readyz  (liveness: /livez; per service: /readyz?service=NAME)\n", info.HTTPURL)
		fmt.Fprintf(w, "  metrics    %s/metrics  (Prometheus)\n", info.HTTPURL)
	}
	if info.GRPCAddr != "" {
		fmt.Fprintf(w, "  gRPC       %s  (every service; health per service and reflection on)\n", info.GRPCAddr)
	}
	switch {
	case o.natsURL != "":
		fmt.Fprintf(w, "  NATS       %s\n", o.natsURL)
	case info.NATSURL != "":
		fmt.Fprintf(w, "  NATS       %s  (try: nats sub 'shiploop.>')\n", info.NATSURL)
	default:
		fmt.Fprintf(w, "  NATS       embedded, in-process (add --nats-listen 127.0.0.1:4222 to expose it)\n")
	}
	for _, k := range slices.Sorted(maps.Keys(info.Addresses)) {
		fmt.Fprintf(w, "  %-10s %s\n", k, info.Addresses[k])
	}
	fmt.Fprintf(w, "  data       %s\n", info.DataDir)
	fmt.Fprintf(w, "Watch events with `shiploop watch`; try `shiploop demo` in another terminal. Ctrl-C stops.\n")
}

// freeAddr is used only by tests and the demo.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer l.Close()
	return l.Addr().String()
}

var _ = slog.Default
