package main

import (
	"context"

	"github.com/shiploop/shiploop/services/testruns"
)

// startTestruns wires the testruns service: TestRunService and the
// consumers of build and job events.
func startTestruns(ctx context.Context, env *moduleEnv) (func(context.Context) error, error) {
	db, err := env.db(ctx, "testruns")
	if err != nil {
		return nil, err
	}
	b, err := env.bus(ctx, "testruns")
	if err != nil {
		return nil, err
	}
	svc, err := testruns.New(ctx, testruns.Config{DB: db, Bus: b, Logger: env.log})
	if err != nil {
		return nil, err
	}
	svc.RegisterGRPC(env.grpc)
	env.rpc = true
	return svc.Run, nil
}
