// Package bustest gives tests a real event bus: an embedded nats-server with
// JetStream, its files under the test's temporary directory, and a
// [bus.Bus] on an in-process connection to it. Nothing is mocked.
package bustest

import (
	"context"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
)

// setupTimeout bounds creating the streams. JetStream's own default of 5s
// can run out on shared, busy cores.
const setupTimeout = 20 * time.Second

// Start starts an embedded nats-server and returns a Bus made with opts on a
// new connection to it (named after the test). When the test ends the
// connection closes first, then the server shuts down, so cleanups the
// caller registers later (stopping a service that uses the bus) run before
// both.
func Start(t testing.TB, opts bus.Options) *bus.Bus {
	t.Helper()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := emb.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	b, err := bus.New(ctx, nc, opts)
	if err != nil {
		t.Fatalf("bustest: creating the streams: %v", err)
	}
	return b
}
