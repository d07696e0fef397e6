package main

import (
	"context"
	"net"
	"os"

	"github.com/shiploop/shiploop/services/errortrack"
)

func startErrortrack(ctx context.Context, env *moduleEnv) (func(context.Context) error, error) {
	db, err := env.db(ctx, "errortrack")
	if err != nil {
		return nil, err
	}
	b, err := env.bus(ctx, "errortrack")
	if err != nil {
		return nil, err
	}
	public := ingestURL(env.opts.httpListen)
	svc, err := errortrack.New(ctx, errortrack.Config{
		DB: db, Bus: b, Logger: env.log, Replicas: env.opts.replicas,
		PublicURL: func() string { return public },
	})
	if err != nil {
		return nil, err
	}
	svc.Routes(env.mux)
	svc.RegisterGRPC(env.grpc)
	env.http, env.rpc = true, true
	return svc.Run, nil
}

// ingestURL is where SDKs reach the HTTP listener, for the DSNs printed by
// `shiploop errors project create`: SHIPLOOP_PUBLIC_URL when set (behind a
// proxy), else the listen address when its port is fixed; "" when the port
// is picked at start (the CLI's --ingest-url then supplies it).
func ingestURL(listen string) string {
	if u := os.Getenv("SHIPLOOP_PUBLIC_URL"); u != "" {
		return u
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "0" || port == "" {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
