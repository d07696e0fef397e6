package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/vcsarg"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	testrunsv1 "github.com/shiploop/shiploop/proto/shiploop/testruns/v1"
	"github.com/shiploop/shiploop/services/agent"
	"github.com/shiploop/shiploop/services/agent/backend"
	"github.com/shiploop/shiploop/services/builds"
	"github.com/shiploop/shiploop/services/cdevents"
	"github.com/shiploop/shiploop/services/dashboards"
	"github.com/shiploop/shiploop/services/deploys"
	"github.com/shiploop/shiploop/services/dlq"
	"github.com/shiploop/shiploop/services/errortrack"
	"github.com/shiploop/shiploop/services/flags"
	"github.com/shiploop/shiploop/services/gates"
	"github.com/shiploop/shiploop/services/metrics"
	"github.com/shiploop/shiploop/services/testruns"
)

// service is what every service of the binary is to the process: it runs
// until the context ends. One that also has HTTP routes (Routes) or gRPC
// services (RegisterGRPC) gets them on the process's listeners; see
// routesService and grpcService.
type service interface {
	Run(ctx context.Context) error
}

type routesService interface {
	Routes(mux *http.ServeMux)
}

type grpcService interface {
	RegisterGRPC(r grpc.ServiceRegistrar)
}

// serviceSpec is one entry of services: all the process needs to know to
// run a service. The process does the rest the same way for every service
// (start): its database and bus, its routes and gRPC services, its
// advertised addresses (discovery.go), readiness (health.go) and metrics
// (prometheus.go). A new service is one entry.
type serviceSpec struct {
	name string
	// database: the service owns a database (a schema, or a SQLite file).
	database bool
	// consumers are the durable JetStream consumers the service creates
	// and must have to be ready, on the EVENTS stream unless named
	// "STREAM/name".
	consumers []string
	// new makes the service on its database (nil without one) and bus.
	new func(ctx context.Context, env *moduleEnv, db *store.DB, b *bus.Bus) (service, error)
}

// services are the services `shiploop serve` accepts, in the order `up`
// starts them.
var services = []serviceSpec{
	{name: "builds", database: true, new: newBuilds,
		consumers: []string{"builds-changes", "builds-jobs", "builds-statuses", "builds-harbormaster", bus.StreamDLQ + "/builds-lost-jobs"}},
	{name: "testruns", database: true, new: newTestruns, consumers: []string{"testruns-builds", "testruns-jobs"}},
	{name: "gates", database: true, new: newGates, consumers: []string{"gates-events", "gates-statuses"}},
	{name: "deploys", database: true, new: newDeploys, consumers: []string{"deploys-events"}},
	{name: "errortrack", database: true, new: newErrortrack, consumers: []string{errortrack.IngestStream + "/errortrack-ingest", "errortrack-deploys"}},
	{name: "metrics", database: true, new: newMetrics, consumers: []string{"metrics-events"}},
	{name: "dashboards", database: true, new: newDashboards, consumers: []string{"dashboards-events"}},
	{name: "dlq", new: newDLQ},
	{name: "cdevents", database: true, new: newCDEvents, consumers: []string{"cdevents-export"}},
	{name: "flags", database: true, new: newFlags},
	{name: "agent", new: newAgent},
}

// knownServices are the services' names, in start order.
var knownServices = func() []string {
	var names []string
	for _, s := range services {
		names = append(names, s.name)
	}
	return names
}()

func specOf(name string) (serviceSpec, bool) {
	i := slices.IndexFunc(services, func(s serviceSpec) bool { return s.name == name })
	if i < 0 {
		return serviceSpec{}, false
	}
	return services[i], true
}

// running is a started service: what health, metrics and discovery look at.
type running struct {
	spec serviceSpec
	svc  service
	db   *store.DB // nil without a database
	bus  *bus.Bus
	// grpcNames are the gRPC services it registered
	// ("shiploop.builds.v1.BuildService"); their health follows its
	// readiness.
	grpcNames []string
	http      bool // it has HTTP routes
}

// start makes a service, gives it its database and bus, and registers its
// routes and gRPC services; the returned running's svc.Run is what runs.
func (e *moduleEnv) start(ctx context.Context, spec serviceSpec) (*running, error) {
	r := &running{spec: spec}
	if spec.database {
		db, err := e.db(ctx, spec.name)
		if err != nil {
			return nil, err
		}
		r.db = db
	}
	b, err := e.bus(ctx, spec.name)
	if err != nil {
		return nil, err
	}
	r.bus = b
	if r.svc, err = spec.new(ctx, e, r.db, b); err != nil {
		return nil, err
	}
	if s, ok := r.svc.(routesService); ok {
		s.Routes(e.mux)
		r.http, e.http = true, true
	}
	if s, ok := r.svc.(grpcService); ok {
		s.RegisterGRPC(recordingRegistrar{e.grpc, &r.grpcNames})
		e.rpc = true
	}
	e.running = append(e.running, r)
	return r, nil
}

// consumerRef splits a serviceSpec consumer, "STREAM/name" or "name" (on
// EVENTS).
func consumerRef(c string) (stream, name string) {
	if st, n, ok := strings.Cut(c, "/"); ok {
		return st, n
	}
	return bus.StreamEvents, c
}

// recordingRegistrar registers gRPC services and notes their names.
type recordingRegistrar struct {
	grpc.ServiceRegistrar
	names *[]string
}

func (r recordingRegistrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	r.ServiceRegistrar.RegisterService(desc, impl)
	*r.names = append(*r.names, desc.ServiceName)
}

// moduleEnv is what services share: the connection, the HTTP mux and the
// gRPC server of the process.
type moduleEnv struct {
	opts    runOptions
	log     *slog.Logger
	nc      *nats.Conn
	mux     *http.ServeMux
	grpc    *server.GRPC
	http    bool // some service registered HTTP routes
	rpc     bool // some service registered a gRPC service
	closers []func() error
	// running are the started services, in start order.
	running []*running
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

// The services' constructors: each turns the process's options into its
// service's Config.

// newBuilds: webhooks (POST /hooks/{forge}), BuildService, and the
// consumers of changes and job events.
func newBuilds(ctx context.Context, env *moduleEnv, db *store.DB, b *bus.Bus) (service, error) {
	return builds.New(ctx, builds.Config{DB: db, Bus: b, Logger: env.log, DataDir: env.opts.dataDir, Auth: env.grpc.Auth, PublicURL: env.opts.publicURL,
		AllowedTransports: env.opts.allowedTransports})
}

// newTestruns: TestRunService, the consumers of build and job events, and
// report downloads (GET /builds/{id}/reports/..., read scope as artifacts).
func newTestruns(ctx context.Context, env *moduleEnv, db *store.DB, b *bus.Bus) (service, error) {
	return testruns.New(ctx, testruns.Config{DB: db, Bus: b, Logger: env.log, Auth: env.grpc.Auth})
}

// newGates: GateService. Commit statuses need the forge settings the
// builds service keeps: gates asks BuildService.GetForgeSettings at
// --builds-addr, or this process's own gRPC listener where builds runs here
// too (`up`, `serve builds gates`), or the builds instance advertised in
// NATS (discovery.go).
func newGates(ctx context.Context, env *moduleEnv, db *store.DB, b *bus.Bus) (service, error) {
	forges := &buildsForges{token: env.opts.token, creds: env.peerCreds, addr: func(ctx context.Context) (string, error) {
		if env.opts.buildsAddr != "" {
			return env.opts.buildsAddr, nil
		}
		if slices.Contains(env.opts.services, "builds") {
			a, _ := env.grpcAddr.Load().(string)
			return a, nil
		}
		ep, err := env.lookup(ctx, "builds")
		if err != nil {
			return "", fmt.Errorf("finding the builds service (or set --builds-addr): %w", err)
		}
		return ep.GRPC, nil
	}}
	env.closers = append(env.closers, forges.close)
	return gates.New(ctx, gates.Config{DB: db, Bus: b, Logger: env.log, Forges: forges, PublicURL: env.opts.publicURL})
}

// newDeploys: DeployService and its consumer, verifier and ticket webhook.
// Without --graphite-url, graphite() checks ask this process's metrics
// service in-process when it runs here, or else the metrics instance
// advertised in NATS (discovery.go).
func newDeploys(ctx context.Context, env *moduleEnv, db *store.DB, b *bus.Bus) (service, error) {
	cfg := deploys.Config{DB: db, Bus: b, Logger: env.log, GraphiteURL: env.opts.deploys.graphiteURL,
		TicketPattern: env.opts.deploys.ticketPattern, TicketWebhook: env.opts.deploys.ticketWebhook}
	if cfg.GraphiteURL == "" {
		cfg.GraphiteURL = "http://in-process/graphite"
		local := slices.Contains(env.opts.services, "metrics")
		cfg.HTTPClient = &http.Client{Transport: inProcess{mux: env.mux, fallback: http.DefaultTransport, local: local,
			lookup: func(ctx context.Context) (string, error) {
				ep, err := env.lookup(ctx, "metrics")
				return ep.HTTP, err
			}}}
	}
	return deploys.New(ctx, cfg)
}

// newErrortrack: Sentry intake (/api/{project}/...), Sentry web API
// (/api/0/..., webapi.go), ErrorService.
func newErrortrack(ctx context.Context, env *moduleEnv, db *store.DB, b *bus.Bus) (service, error) {
	public := ingestURL(env.opts.httpListen)
	return errortrack.New(ctx, errortrack.Config{
		DB: db, Bus: b, Logger: env.log, Replicas: env.opts.replicas,
		PublicURL: func() string { return public },
		// The Sentry web API (/api/0/...) takes shiploop API tokens.
		Auth: env.grpc.Auth,
	})
}

// newMetrics: Carbon listeners (announced on the ready line as "carbon",
// "carbon_udp" and "pickle"), the Graphite API under /graphite/,
// MetricsService, and the consumer of platform events.
func newMetrics(ctx context.Context, env *moduleEnv, db *store.DB, b *bus.Bus) (service, error) {
	schemas, err := metrics.LoadSchemas(env.opts.storageSchemas, env.opts.storageAggregation)
	if err != nil {
		return nil, err
	}
	lis, err := metrics.ListenCarbon(env.opts.carbonListen, env.opts.pickleListen)
	if err != nil {
		return nil, err
	}
	env.closers = append(env.closers, func() error { lis.Close(); return nil })
	svc, err := metrics.New(ctx, metrics.Config{QueryTimeout: env.opts.graphiteQueryTimeout, MaxSeries: env.opts.metrics.queryMaxSeries, DB: db, Bus: b, Logger: env.log, Listeners: lis, Schemas: schemas, Carbon: env.opts.metrics.carbon})
	if err != nil {
		return nil, err
	}
	if lis.TCP != nil {
		env.announce("carbon", lis.TCP.Addr().String())
		env.announce("carbon_udp", lis.UDP.LocalAddr().String())
	}
	if lis.Pickle != nil {
		env.announce("pickle", lis.Pickle.Addr().String())
	}
	return svc, nil
}

// newDashboards: the web UI ("/", /changes/, /environments, /errors, /dora,
// /events, /badges/), DashboardService, and the consumer that projects
// every event into the read models.
func newDashboards(ctx context.Context, env *moduleEnv, db *store.DB, b *bus.Bus) (service, error) {
	// The issue page reads events from errortrack, here or advertised.
	return dashboards.New(ctx, dashboards.Config{DB: db, Bus: b, Logger: env.log, Auth: env.grpc.Auth,
		Errors: errortrackv1.NewErrorServiceClient(env.peer("errortrack")),
		// The environment page's forms: DeployService, here or advertised,
		// called with the server's token; the actor is the session's token.
		Deploys: deploysv1.NewDeployServiceClient(env.peer("deploys")),
		// Its runbook forms: RunbookService (in deploys), likewise.
		Runbooks: deploysv1.NewRunbookServiceClient(env.peer("deploys")),
		// /builds/{id}/tests: TestRunService, here or advertised.
		TestRuns: testrunsv1.NewTestRunServiceClient(env.peer("testruns")),
		// The repository page's schedules and their pause/resume forms:
		// BuildService, here or advertised.
		Builds: buildsv1.NewBuildServiceClient(env.peer("builds"))})
}

// newDLQ: DLQService (`shiploop dlq ls|show|replay`). It owns no database
// and runs nothing in the background: the DLQ stream is its state.
func newDLQ(ctx context.Context, env *moduleEnv, _ *store.DB, b *bus.Bus) (service, error) {
	svc, err := dlq.New(dlq.Config{JetStream: b.JetStream(), Logger: env.log})
	if err != nil {
		return nil, err
	}
	return idle{svc}, nil
}

// idle runs nothing until the context ends; the gRPC service it carries
// still registers.
type idle struct{ *dlq.Service }

func (idle) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// newCDEvents: the export consumer (CDEVENTS stream on cdevents.>,
// optional HTTP sink) and POST /cdevents.
func newCDEvents(ctx context.Context, env *moduleEnv, db *store.DB, b *bus.Bus) (service, error) {
	var v *cdevents.Validator
	if dir := env.opts.cdevents.schemas; dir != "" {
		var err error
		if v, err = cdevents.LoadSchemas(os.DirFS(dir)); err != nil {
			return nil, fmt.Errorf("--cdevents-schemas %s: %w", dir, err)
		}
	} else {
		env.log.Info("cdevents: no --cdevents-schemas: exporting without schema checks; POST /cdevents answers 503")
	}
	return cdevents.New(ctx, cdevents.Config{DB: db, Bus: b, Logger: env.log, Validator: v, SinkURL: env.opts.cdevents.sinkURL,
		Auth:     func(h http.Handler) http.Handler { return env.grpc.Auth.HTTP(server.ScopeWrite, h) },
		Replicas: env.opts.replicas})
}

// newFlags: FlagService over gRPC, OFREP under /ofrep/v1/ (read scope when
// tokens are on), flag.* events.
func newFlags(ctx context.Context, env *moduleEnv, db *store.DB, b *bus.Bus) (service, error) {
	return flags.New(ctx, flags.Config{DB: db, Bus: b, Logger: env.log,
		ReadAuth: func(h http.Handler) http.Handler { return env.grpc.Auth.HTTP(server.ScopeRead, h) }})
}

// newAgent: runs jobs from the job pools it can serve.
func newAgent(ctx context.Context, env *moduleEnv, _ *store.DB, b *bus.Bus) (service, error) {
	transports, err := vcsarg.ParseTransports(env.opts.allowedTransports)
	if err != nil {
		return nil, fmt.Errorf("--allowed-transports: %w", err)
	}
	pc := backend.ProcessConfig{WorkRoot: filepath.Join(env.opts.dataDir, "work"), AllowedTransports: transports}
	var be backend.Backend = backend.NewProcess(pc)
	if env.opts.agentBackend == "docker" {
		if be, err = newDockerBackend(ctx, env, pc); err != nil {
			return nil, err
		}
	}
	ag, err := agent.New(agent.Config{Bus: b, Backend: be, Concurrency: max(env.opts.agents, 1), Logger: env.log, LogDir: filepath.Join(env.opts.dataDir, "logs"), Lease: env.opts.lease,
		Labels: splitList(env.opts.agentLabels), Kinds: splitList(env.opts.agentKinds)})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return ag, nil
}
