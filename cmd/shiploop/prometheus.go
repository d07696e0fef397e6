package main

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/felixge/httpsnoop"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// promMetrics is what a process serves on /metrics (Prometheus text
// format): request latencies, build and deploy durations, and at each
// scrape what the services running here have waiting (consumer lag, outbox
// depth, DLQ, job queues) and whether they are ready. The names are listed
// in docs/architecture.md ("Metrics").
type promMetrics struct {
	reg      *prometheus.Registry
	bus      *busCollector
	http     *prometheus.HistogramVec
	grpc     *prometheus.HistogramVec
	builds   *prometheus.HistogramVec
	deploys  *prometheus.HistogramVec
	observed *prometheus.CounterVec
}

// durationBuckets cover seconds to an hour: builds and deploys.
var durationBuckets = []float64{1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600}

func newPromMetrics(env *moduleEnv) *promMetrics {
	m := &promMetrics{reg: prometheus.NewRegistry(), bus: &busCollector{env: env}}
	m.http = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "shiploop_http_request_duration_seconds", Help: "HTTP requests by route pattern (\"POST /hooks/{forge}\"; \"unmatched\" for none), method and status code.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "method", "code"})
	m.grpc = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "shiploop_grpc_request_duration_seconds", Help: "gRPC calls by service, method and status code (streams: until they end).",
		Buckets: prometheus.DefBuckets,
	}, []string{"grpc_service", "grpc_method", "code"})
	m.builds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "shiploop_build_duration_seconds", Help: "Durations of finished builds (build.finished), by status; observed by one builds process per event.",
		Buckets: durationBuckets,
	}, []string{"status"})
	m.deploys = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "shiploop_deploy_duration_seconds", Help: "Durations of finished deployments (deploy.finished), by status; observed by one deploys process per event.",
		Buckets: durationBuckets,
	}, []string{"status"})
	m.observed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shiploop_events_observed_total", Help: "Events the metrics observer read (build.finished, deploy.finished), by type.",
	}, []string{"type"})
	m.reg.MustRegister(m.http, m.grpc, m.builds, m.deploys, m.observed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.bus)
	return m
}

// setHealth lets the metrics report readiness (shiploop_service_ready).
func (m *promMetrics) setHealth(h *healthChecker) { m.bus.health.Store(h) }

// handler serves /metrics.
func (m *promMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
}

// instrument times requests to the mux by the pattern it matched. It wraps
// the mux itself, so r.Pattern is set on the request it sees.
func (m *promMetrics) instrument(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snoop := httpsnoop.CaptureMetrics(mux, w, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.http.WithLabelValues(route, r.Method, strconv.Itoa(snoop.Code)).Observe(snoop.Duration.Seconds())
	})
}

// grpcOptions time every gRPC call.
func (m *promMetrics) grpcOptions() []grpc.ServerOption {
	observe := func(full string, start time.Time, err error) {
		svc, method := splitMethod(full)
		m.grpc.WithLabelValues(svc, method, status.Code(err).String()).Observe(time.Since(start).Seconds())
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			start := time.Now()
			resp, err := h(ctx, req)
			observe(info.FullMethod, start, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			start := time.Now()
			err := h(srv, ss)
			observe(info.FullMethod, start, err)
			return err
		}),
	}
}

// splitMethod turns "/shiploop.builds.v1.BuildService/GetBuild" into its
// service and method.
func splitMethod(full string) (string, string) {
	svc, method, ok := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	if !ok {
		return "unknown", full
	}
	return svc, method
}

// observeEvents records build and deploy durations from build.finished
// and deploy.finished, in the processes that run builds and deploys. A
// queue subscription per service: of several replicas one observes each
// event, so sum() over the processes counts each once.
func (m *promMetrics) observeEvents(ctx context.Context, env *moduleEnv) {
	sub := func(service, typ string, fn func(bus.Event)) {
		if !env.runs(service) {
			return
		}
		s, err := env.nc.QueueSubscribe(bus.EventFilter(typ, ""), "shiploop-prometheus-"+service, func(msg *nats.Msg) {
			ev, err := bus.Decode(msg)
			if err != nil {
				return
			}
			m.observed.WithLabelValues(typ).Inc()
			fn(ev)
		})
		if err != nil {
			env.log.Warn("not observing events for metrics", "type", typ, "err", err)
			return
		}
		go func() { <-ctx.Done(); _ = s.Unsubscribe() }()
	}
	sub("builds", "build.finished", func(ev bus.Event) {
		if f, ok := ev.Data.(*eventsv1.BuildFinished); ok && f.GetDuration() != nil {
			m.builds.WithLabelValues(strings.ToLower(strings.TrimPrefix(f.GetStatus().String(), "BUILD_STATUS_"))).Observe(f.GetDuration().AsDuration().Seconds())
		}
	})
	sub("deploys", "deploy.finished", func(ev bus.Event) {
		if f, ok := ev.Data.(*eventsv1.DeployFinished); ok && f.GetDuration() != nil {
			m.deploys.WithLabelValues(strings.ToLower(strings.TrimPrefix(f.GetStatus().String(), "DEPLOY_STATUS_"))).Observe(f.GetDuration().AsDuration().Seconds())
		}
	})
}

// runs reports whether the process runs a service.
func (e *moduleEnv) runs(name string) bool {
	for _, r := range e.running {
		if r.spec.name == name {
			return true
		}
	}
	return false
}

// busCollector reads, at each scrape, what waits in NATS and the
// services' databases. Stream-wide values (DLQ, job queues) are the same
// from every process: aggregate them with max, not sum.
type busCollector struct {
	env    *moduleEnv
	health atomic.Pointer[healthChecker]
}

var (
	descPending = prometheus.NewDesc("shiploop_consumer_pending_messages",
		"Messages a durable consumer has not yet been delivered (JetStream num_pending): its lag.", []string{"service", "stream", "consumer"}, nil)
	descAckPending = prometheus.NewDesc("shiploop_consumer_ack_pending_messages",
		"Messages delivered to a durable consumer and not yet acknowledged.", []string{"service", "stream", "consumer"}, nil)
	descRedelivered = prometheus.NewDesc("shiploop_consumer_redelivered_messages",
		"Messages of a durable consumer delivered more than once and not yet acknowledged.", []string{"service", "stream", "consumer"}, nil)
	descOutbox = prometheus.NewDesc("shiploop_outbox_depth",
		"Rows in a service's bus_outbox not yet relayed to JetStream.", []string{"service"}, nil)
	descDLQ = prometheus.NewDesc("shiploop_dlq_messages",
		"Messages in the DLQ stream (dead letters and max-deliveries advisories).", nil, nil)
	descJobs = prometheus.NewDesc("shiploop_job_queue_depth",
		"Jobs waiting in a pool (num_pending of its JOBS consumer), by job kind and pool.", []string{"kind", "pool"}, nil)
	descJobsRunning = prometheus.NewDesc("shiploop_job_running",
		"Jobs of a pool taken by an agent and not yet finished (num_ack_pending).", []string{"kind", "pool"}, nil)
	descJobsWaiting = prometheus.NewDesc("shiploop_job_pool_waiting_pulls",
		"Pull requests agents have waiting on a pool: idle agent slots.", []string{"kind", "pool"}, nil)
	descJobsStream = prometheus.NewDesc("shiploop_jobs_stream_messages",
		"Messages in the JOBS stream (queued and running jobs, every pool).", nil, nil)
	descAgents = prometheus.NewDesc("shiploop_agents",
		"Agents running in this process (shiploop agent, or up's built-in agent).", nil, nil)
	descAgentSlots = prometheus.NewDesc("shiploop_agent_slots",
		"Jobs the agents of this process run at once (--concurrency).", nil, nil)
	descReady = prometheus.NewDesc("shiploop_service_ready",
		"1 when the service is ready (NATS, its streams and consumers, its database), else 0; see /readyz.", []string{"service"}, nil)
	descNATS = prometheus.NewDesc("shiploop_nats_connected",
		"1 while the process's NATS connection is connected.", nil, nil)
	descUp = prometheus.NewDesc("shiploop_service_up",
		"1 for each service this process runs.", []string{"service"}, nil)
	descHandled = prometheus.NewDesc("shiploop_consumer_handled_total",
		"Events a durable consumer acknowledged in this process since it started (handled, or found handled by another replica): with replicas, each one's share of the work.", []string{"consumer"}, nil)
	descScrapeErrors = prometheus.NewDesc("shiploop_metrics_scrape_errors",
		"Reads that failed in this scrape (NATS or a database did not answer), by what was read.", []string{"source"}, nil)
)

func (c *busCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPending, descAckPending, descRedelivered, descOutbox, descDLQ, descJobs, descJobsRunning,
		descJobsWaiting, descJobsStream, descAgents, descAgentSlots, descReady, descNATS, descUp, descHandled, descScrapeErrors} {
		ch <- d
	}
}

func (c *busCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	env := c.env
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	errs := map[string]float64{}
	connected := env.nc.Status() == nats.CONNECTED
	gauge(descNATS, b2f(connected))
	agents := 0
	for _, r := range env.running {
		gauge(descUp, 1, r.spec.name)
		if r.spec.name == "agent" {
			agents++
		}
	}
	gauge(descAgents, float64(agents))
	for consumer, n := range bus.HandledCounts() {
		ch <- prometheus.MustNewConstMetric(descHandled, prometheus.CounterValue, float64(n), consumer)
	}
	if agents > 0 {
		gauge(descAgentSlots, float64(max(env.opts.agents, 1)))
	}
	if h := c.health.Load(); h != nil {
		for name, s := range h.snapshot().Services {
			gauge(descReady, b2f(s.Ready), name)
		}
	}
	// Outbox depth: each service's own database.
	for _, r := range env.running {
		if r.db == nil {
			continue
		}
		var n int64
		if err := r.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM bus_outbox`).Scan(&n); err != nil {
			errs["outbox_"+r.spec.name]++
			continue
		}
		gauge(descOutbox, float64(n), r.spec.name)
	}
	if !connected || len(env.running) == 0 {
		c.scrapeErrors(ch, errs)
		return
	}
	js := env.running[0].bus.JetStream()
	// Consumer lag of the services running here, by their names'
	// "<service>-" prefix.
	streams := []string{bus.StreamEvents, bus.StreamDLQ}
	for _, r := range env.running {
		for _, c := range r.spec.consumers {
			if st, _ := consumerRef(c); !slices.Contains(streams, st) {
				streams = append(streams, st)
			}
		}
	}
	for _, stream := range streams {
		err := eachConsumer(ctx, js, stream, func(ci *jetstream.ConsumerInfo) {
			svc := c.owner(ci.Name)
			if svc == "" {
				return
			}
			gauge(descPending, float64(ci.NumPending), svc, stream, ci.Name)
			gauge(descAckPending, float64(ci.NumAckPending), svc, stream, ci.Name)
			gauge(descRedelivered, float64(ci.NumRedelivered), svc, stream, ci.Name)
		})
		if err != nil {
			errs["consumers_"+stream]++
		}
	}
	// Job queues: each pool's consumer, jobs-<kind>-<pool>.
	err := eachConsumer(ctx, js, bus.StreamJobs, func(ci *jetstream.ConsumerInfo) {
		kind, pool, ok := poolOf(ci.Name)
		if !ok {
			return
		}
		gauge(descJobs, float64(ci.NumPending), kind, pool)
		gauge(descJobsRunning, float64(ci.NumAckPending), kind, pool)
		gauge(descJobsWaiting, float64(ci.NumWaiting), kind, pool)
	})
	if err != nil {
		errs["consumers_"+bus.StreamJobs]++
	}
	for stream, d := range map[string]*prometheus.Desc{bus.StreamDLQ: descDLQ, bus.StreamJobs: descJobsStream} {
		s, err := js.Stream(ctx, stream)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(ctx)
		}
		if err != nil {
			errs["stream_"+stream]++
			continue
		}
		gauge(d, float64(info.State.Msgs))
	}
	c.scrapeErrors(ch, errs)
}

func (c *busCollector) scrapeErrors(ch chan<- prometheus.Metric, errs map[string]float64) {
	for src, n := range errs {
		ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.GaugeValue, n, src)
	}
}

// owner is the service running here whose consumer name is, or "".
func (c *busCollector) owner(consumer string) string {
	for _, r := range c.env.running {
		if strings.HasPrefix(consumer, r.spec.name+"-") {
			return r.spec.name
		}
	}
	return ""
}

// poolOf reads kind and pool from a pool consumer's name (bus: "jobs-" +
// kind + "-" + pool).
func poolOf(name string) (kind, pool string, ok bool) {
	rest, ok := strings.CutPrefix(name, "jobs-")
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, "-")
}

func eachConsumer(ctx context.Context, js jetstream.JetStream, stream string, fn func(*jetstream.ConsumerInfo)) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		fn(ci)
	}
	if err := l.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return err
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
