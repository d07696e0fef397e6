package main

import (
	"context"

	"github.com/shiploop/shiploop/services/metrics"
)

// metricsOptions are the metrics service's flags beyond its listeners.
type metricsOptions struct {
	carbon metrics.CarbonLimits
}

// carbonLimitFlags are the limits on what Carbon clients can make the
// metrics service hold (up and serve); refusals are counted under
// shiploop.metrics.ingest.* and logged once a minute at most.
func carbonLimitFlags(c *command, o *metricsOptions) {
	c.flags.IntVar(&o.carbon.MaxSeries, "carbon-max-series", metrics.DefaultCarbonMaxSeries, "metrics: series Carbon traffic may make in all; past it points of a new series are dropped and counted (shiploop.metrics.ingest.series_refused), points of existing series are always kept. A series written to holds about 25 KB of memory (50,000: about 1.25 GB); negative turns it off")
	c.flags.IntVar(&o.carbon.MaxNewSeriesPerMinute, "carbon-max-new-series-per-minute", metrics.DefaultCarbonMaxNewSeriesPerMinute, "metrics: new series Carbon traffic may make per minute, in bursts of a minute's worth (carbon's MAX_CREATES_PER_MINUTE, 50 there; go-carbon's max-creates-per-second); past it points of new series are dropped and counted (shiploop.metrics.ingest.rate_limited); negative turns it off")
	c.flags.IntVar(&o.carbon.MaxLineLength, "carbon-max-line-length", metrics.DefaultCarbonMaxLineLength, "metrics: bytes of a Carbon plaintext line (TCP and UDP) before its newline; a longer line is dropped unbuffered and counted (shiploop.metrics.ingest.lines_too_long), and the connection goes on")
	c.flags.DurationVar(&o.carbon.IdleTimeout, "carbon-idle-timeout", metrics.DefaultCarbonIdleTimeout, "metrics: close a Carbon TCP connection (plaintext or pickle) that sends nothing for this long (counted: shiploop.metrics.ingest.connections_idle_closed); negative turns it off")
	c.flags.IntVar(&o.carbon.MaxConnections, "carbon-max-connections", metrics.DefaultCarbonMaxConnections, "metrics: Carbon TCP connections open at once, plaintext and pickle together; further ones are closed as they are accepted and counted (shiploop.metrics.ingest.connections_refused); negative turns it off")
}

// startMetrics wires the metrics service: Carbon listeners (announced on the
// ready line as "carbon", "carbon_udp" and "pickle"), the Graphite API under
// /graphite/, MetricsService, and the consumer of platform events.
func startMetrics(ctx context.Context, env *moduleEnv) (func(context.Context) error, error) {
	db, err := env.db(ctx, "metrics")
	if err != nil {
		return nil, err
	}
	b, err := env.bus(ctx, "metrics")
	if err != nil {
		return nil, err
	}
	schemas, err := metrics.LoadSchemas(env.opts.storageSchemas, env.opts.storageAggregation)
	if err != nil {
		return nil, err
	}
	lis, err := metrics.ListenCarbon(env.opts.carbonListen, env.opts.pickleListen)
	if err != nil {
		return nil, err
	}
	env.closers = append(env.closers, func() error { lis.Close(); return nil })
	svc, err := metrics.New(ctx, metrics.Config{QueryTimeout: env.opts.graphiteQueryTimeout, DB: db, Bus: b, Logger: env.log, Listeners: lis, Schemas: schemas, Carbon: env.opts.metrics.carbon})
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
	svc.Routes(env.mux)
	svc.RegisterGRPC(env.grpc)
	env.http, env.rpc = true, true
	return svc.Run, nil
}
