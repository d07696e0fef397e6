package main

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// peerConn is a gRPC connection to another service of the suite, made on
// first use: this process's own listener when the service runs here, else
// the instance advertised in NATS (discovery.go). A call that finds the
// service gone (Unavailable, Unimplemented) drops the connection, so the
// next one looks it up again. Calls carry the server's token.
type peerConn struct {
	env     *moduleEnv
	service string
	mu      sync.Mutex
	conn    *grpc.ClientConn
}

var _ grpc.ClientConnInterface = (*peerConn)(nil)

func (e *moduleEnv) peer(service string) *peerConn {
	p := &peerConn{env: e, service: service}
	e.closers = append(e.closers, p.close)
	return p
}

func (p *peerConn) get(ctx context.Context) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		return p.conn, nil
	}
	addr := ""
	if slices.Contains(p.env.opts.services, p.service) {
		addr, _ = p.env.grpcAddr.Load().(string)
	}
	if addr == "" {
		ep, err := p.env.lookup(ctx, p.service)
		if err != nil {
			return nil, fmt.Errorf("finding the %s service: %w", p.service, err)
		}
		addr = ep.GRPC
	}
	creds, err := p.env.peerCreds()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	p.conn = conn
	return conn, nil
}

func (p *peerConn) authed(ctx context.Context) context.Context {
	if p.env.opts.token != "" {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+p.env.opts.token)
	}
	return ctx
}

func (p *peerConn) forget(err error) {
	if c := status.Code(err); c == codes.Unavailable || c == codes.Unimplemented {
		_ = p.close()
	}
}

func (p *peerConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	conn, err := p.get(ctx)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	err = conn.Invoke(p.authed(ctx), method, args, reply, opts...)
	p.forget(err)
	return err
}

func (p *peerConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	conn, err := p.get(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	s, err := conn.NewStream(p.authed(ctx), desc, method, opts...)
	p.forget(err)
	return s, err
}

func (p *peerConn) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		err := p.conn.Close()
		p.conn = nil
		return err
	}
	return nil
}
