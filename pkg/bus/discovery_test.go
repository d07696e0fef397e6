package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
)

// TestAdvertiseLookup: an advertised service is found, the newest of two
// instances wins, and one whose process stopped is gone.
func TestAdvertiseLookup(t *testing.T) {
	b := bustest.Start(t, bus.Options{Source: "/test"})
	ctx := context.Background()
	if _, err := b.Lookup(ctx, "builds"); !errors.Is(err, bus.ErrNoEndpoint) || !strings.Contains(err.Error(), "shiploop serve builds") {
		t.Fatalf("Lookup before any advertisement = %v", err)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		b.Advertise(actx, []bus.Endpoint{{Service: "builds", Instance: "a", GRPC: "10.0.0.1:9090"}, {Service: "gates", Instance: "a", GRPC: "10.0.0.1:9090"}})
		close(done)
	}()
	var ep bus.Endpoint
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ep, err = b.Lookup(ctx, "builds"); err == nil {
			break
		}
	}
	if err != nil || ep.GRPC != "10.0.0.1:9090" {
		t.Fatalf("Lookup(builds) = %+v, %v", ep, err)
	}
	if ep, err := b.Lookup(ctx, "build"); err == nil {
		t.Fatalf("Lookup(build) found %+v: a prefix of another service's name", ep)
	}
	stop()
	<-done
	if ep, err := b.Lookup(ctx, "builds"); !errors.Is(err, bus.ErrNoEndpoint) {
		t.Fatalf("Lookup after the process stopped = %+v, %v", ep, err)
	}
}
