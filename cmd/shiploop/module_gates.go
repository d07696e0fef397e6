package main

import (
	"context"
	"fmt"
	"os"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	"github.com/shiploop/shiploop/services/gates"
)

// startGates wires the gates service. Commit statuses need the forge
// settings the builds service keeps: gates asks BuildService.GetForgeSettings
// at SHIPLOOP_BUILDS_ADDR, or this process's own gRPC listener (where
// builds runs in `up` and in `serve builds gates`).
func startGates(ctx context.Context, env *moduleEnv) (func(context.Context) error, error) {
	db, err := env.db(ctx, "gates")
	if err != nil {
		return nil, err
	}
	b, err := env.bus(ctx, "gates")
	if err != nil {
		return nil, err
	}
	forges := &buildsForges{token: env.opts.token, creds: env.peerCreds, addr: func() string {
		if a := os.Getenv("SHIPLOOP_BUILDS_ADDR"); a != "" {
			return a
		}
		a, _ := env.grpcAddr.Load().(string)
		return a
	}}
	env.closers = append(env.closers, forges.close)
	svc, err := gates.New(ctx, gates.Config{DB: db, Bus: b, Logger: env.log, Forges: forges, PublicURL: env.opts.publicURL})
	if err != nil {
		return nil, err
	}
	svc.RegisterGRPC(env.grpc)
	env.rpc = true
	return svc.Run, nil
}

// buildsForges asks the builds service for a repository's forge settings.
type buildsForges struct {
	token string
	creds func() (credentials.TransportCredentials, error)
	addr  func() string
	mu    sync.Mutex
	conn  *grpc.ClientConn
}

func (f *buildsForges) client() (buildsv1.BuildServiceClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		addr := f.addr()
		if addr == "" {
			return nil, fmt.Errorf("no builds service to ask for forge settings (set SHIPLOOP_BUILDS_ADDR to its gRPC address)")
		}
		creds, err := f.creds()
		if err != nil {
			return nil, err
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, err
		}
		f.conn = conn
	}
	return buildsv1.NewBuildServiceClient(f.conn), nil
}

func (f *buildsForges) ForgeSettings(ctx context.Context, repo string) (gates.Forge, error) {
	cl, err := f.client()
	if err != nil {
		return gates.Forge{}, err
	}
	if f.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+f.token)
	}
	resp, err := cl.GetForgeSettings(ctx, &buildsv1.GetForgeSettingsRequest{Repository: repo})
	if err != nil {
		return gates.Forge{}, fmt.Errorf("asking builds for %s's forge settings: %w", repo, err)
	}
	return gates.Forge{Kind: resp.GetForge(), APIURL: resp.GetApiUrl(), Repo: resp.GetForgeRepo(), Token: resp.GetToken()}, nil
}

func (f *buildsForges) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn != nil {
		return f.conn.Close()
	}
	return nil
}
