package main

import (
	"context"
	"net"
	"os"
	"strings"

	"github.com/shiploop/shiploop/pkg/bus"
)

// advertise puts the addresses this process answers on in the service
// bucket, one entry per service it runs (the agent answers nothing), and
// keeps them fresh until ctx ends: another process finds a service it
// needs there (lookup) without an address set by hand.
func advertise(ctx context.Context, env *moduleEnv, grpcAddr, httpURL string) {
	b, err := env.bus(ctx, "discovery")
	if err != nil {
		env.log.Warn("not advertising this process's services", "err", err)
		return
	}
	host := env.opts.advertiseHost
	if host == "" {
		host, _ = os.Hostname()
	}
	instance := strings.NewReplacer(".", "_", ":", "_").Replace(host) + "-" + bus.NewID()[:8]
	var eps []bus.Endpoint
	for _, s := range env.opts.services {
		if s == "agent" {
			continue
		}
		eps = append(eps, bus.Endpoint{Service: s, Instance: instance, GRPC: reachable(grpcAddr, host), HTTP: reachableURL(httpURL, host)})
	}
	if len(eps) > 0 {
		b.Advertise(ctx, eps)
	}
}

// reachable turns a listener's address into one another machine can dial:
// an unspecified host (0.0.0.0, ::) becomes host.
func reachable(addr, host string) string {
	if addr == "" {
		return ""
	}
	h, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort(host, port)
	}
	return addr
}

func reachableURL(u, host string) string {
	scheme, addr, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	return scheme + "://" + reachable(addr, host)
}

// lookup finds a service's advertised endpoint.
func (e *moduleEnv) lookup(ctx context.Context, service string) (bus.Endpoint, error) {
	b, err := e.bus(ctx, "discovery")
	if err != nil {
		return bus.Endpoint{}, err
	}
	return b.Lookup(ctx, service)
}
