package main

import (
	"context"

	"github.com/shiploop/shiploop/services/dlq"
)

// startDLQ wires DLQService (`shiploop dlq ls|show|replay`). It owns no
// database and runs nothing in the background: the DLQ stream is its state.
func startDLQ(ctx context.Context, env *moduleEnv) (func(context.Context) error, error) {
	b, err := env.bus(ctx, "dlq")
	if err != nil {
		return nil, err
	}
	svc, err := dlq.New(dlq.Config{JetStream: b.JetStream(), Logger: env.log})
	if err != nil {
		return nil, err
	}
	svc.RegisterGRPC(env.grpc)
	env.rpc = true
	return func(ctx context.Context) error { <-ctx.Done(); return nil }, nil
}
