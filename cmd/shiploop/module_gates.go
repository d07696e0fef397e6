package main

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	"github.com/shiploop/shiploop/services/gates"
)

// startGates wires the gates service. Commit statuses need the forge
// settings the builds service keeps: gates asks BuildService.GetForgeSettings
// at --builds-addr, or this process's own gRPC listener where builds runs
// here too (`up`, `serve builds gates`), or the builds instance advertised
// in NATS (discovery.go).
func startGates(ctx context.Context, env *moduleEnv) (func(context.Context) error, error) {
	db, err := env.db(ctx, "gates")
	if err != nil {
		return nil, err
	}
	b, err := env.bus(ctx, "gates")
	if err != nil {
		return nil, err
	}
	forges := &buildsForges{token: env.opts.token, creds: env.peerCreds, addr: func(ctx context.Context) (string, error) {
		if env.opts.buildsAddr != "" {
			return env.opts.buildsAddr, nil
		}
		if slices.Contains(env.opts.services, "builds") {
			a, _ := env.grpcAddr.Load().(string)
			return a, nil
		}
		ep, err := env.lookup(ctx, "builds")
		if err != nil {
			return "", fmt.Errorf("finding the builds service (or set --builds-addr): %w", err)
		}
		return ep.GRPC, nil
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
	addr  func(context.Context) (string, error)
	mu    sync.Mutex
	conn  *grpc.ClientConn
}

func (f *buildsForges) client(ctx context.Context) (buildsv1.BuildServiceClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		addr, err := f.addr(ctx)
		if err != nil {
			return nil, err
		}
		if addr == "" {
			return nil, fmt.Errorf("no builds service to ask for forge settings (set --builds-addr to its gRPC address)")
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
	cl, err := f.client(ctx)
	if err != nil {
		return gates.Forge{}, err
	}
	if f.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+f.token)
	}
	resp, err := cl.GetForgeSettings(ctx, &buildsv1.GetForgeSettingsRequest{Repository: repo})
	if err != nil {
		if c := status.Code(err); c == codes.Unavailable || c == codes.Unimplemented {
			f.close() // builds moved or this was no builds: look again next time
		}
		return gates.Forge{}, fmt.Errorf("asking builds for %s's forge settings: %w", repo, err)
	}
	return gates.Forge{Kind: resp.GetForge(), APIURL: resp.GetApiUrl(), Repo: resp.GetForgeRepo(), Token: resp.GetToken()}, nil
}

func (f *buildsForges) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn != nil {
		err := f.conn.Close()
		f.conn = nil
		return err
	}
	return nil
}
