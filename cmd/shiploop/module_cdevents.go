package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/services/cdevents"
)

// cdeventsOptions configure the CDEvents bridge.
type cdeventsOptions struct {
	sinkURL string
	schemas string
}

func cdeventsFlags(c *command, o *cdeventsOptions) {
	c.flags.StringVar(&o.sinkURL, "cdevents-sink", "", "cdevents: URL that receives every exported CDEvent as a CloudEvents binary-mode POST (none when empty)")
	c.flags.StringVar(&o.schemas, "cdevents-schemas", "", "cdevents: directory of a cdevents/spec v0.5.1 checkout (schemas/, custom/); exported events are checked and POST /cdevents is enabled only with it")
}

// startCDEvents wires the CDEvents bridge: the export consumer (CDEVENTS
// stream on cdevents.>, optional HTTP sink) and POST /cdevents.
func startCDEvents(ctx context.Context, env *moduleEnv) (func(context.Context) error, error) {
	db, err := env.db(ctx, "cdevents")
	if err != nil {
		return nil, err
	}
	b, err := env.bus(ctx, "cdevents")
	if err != nil {
		return nil, err
	}
	var v *cdevents.Validator
	if dir := env.opts.cdevents.schemas; dir != "" {
		if v, err = cdevents.LoadSchemas(os.DirFS(dir)); err != nil {
			return nil, fmt.Errorf("--cdevents-schemas %s: %w", dir, err)
		}
	} else {
		env.log.Info("cdevents: no --cdevents-schemas: exporting without schema checks; POST /cdevents answers 503")
	}
	svc, err := cdevents.New(ctx, cdevents.Config{DB: db, Bus: b, Logger: env.log, Validator: v, SinkURL: env.opts.cdevents.sinkURL,
		Auth:     func(h http.Handler) http.Handler { return env.grpc.Auth.HTTP(server.ScopeWrite, h) },
		Replicas: env.opts.replicas})
	if err != nil {
		return nil, err
	}
	svc.Routes(env.mux)
	env.http = true
	return svc.Run, nil
}
