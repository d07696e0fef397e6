package main

import (
	"context"
	"net/http"

	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/services/flags"
)

// startFlags wires the feature-flag service: FlagService over gRPC, OFREP
// under /ofrep/v1/ (read scope when tokens are on), flag.* events.
func startFlags(ctx context.Context, env *moduleEnv) (func(context.Context) error, error) {
	db, err := env.db(ctx, "flags")
	if err != nil {
		return nil, err
	}
	b, err := env.bus(ctx, "flags")
	if err != nil {
		return nil, err
	}
	svc, err := flags.New(ctx, flags.Config{DB: db, Bus: b, Logger: env.log,
		ReadAuth: func(h http.Handler) http.Handler { return env.grpc.Auth.HTTP(server.ScopeRead, h) }})
	if err != nil {
		return nil, err
	}
	svc.Routes(env.mux)
	svc.RegisterGRPC(env.grpc)
	env.http, env.rpc = true, true
	return svc.Run, nil
}
