package main

import (
	"context"

	"github.com/shiploop/shiploop/services/metrics"
)

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
	svc, err := metrics.New(ctx, metrics.Config{QueryTimeout: env.opts.graphiteQueryTimeout, DB: db, Bus: b, Logger: env.log, Listeners: lis, Schemas: schemas})
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
