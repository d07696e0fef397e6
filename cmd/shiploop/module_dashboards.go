package main

import (
	"context"

	"github.com/shiploop/shiploop/services/dashboards"
)

// startDashboards wires the web UI ("/", /changes/, /environments, /errors,
// /dora, /events, /badges/), DashboardService, and the consumer that
// projects every event into the read models.
func startDashboards(ctx context.Context, env *moduleEnv) (func(context.Context) error, error) {
	db, err := env.db(ctx, "dashboards")
	if err != nil {
		return nil, err
	}
	b, err := env.bus(ctx, "dashboards")
	if err != nil {
		return nil, err
	}
	svc, err := dashboards.New(ctx, dashboards.Config{DB: db, Bus: b, Logger: env.log, Auth: env.grpc.Auth})
	if err != nil {
		return nil, err
	}
	svc.Routes(env.mux)
	svc.RegisterGRPC(env.grpc)
	env.http, env.rpc = true, true
	return svc.Run, nil
}
