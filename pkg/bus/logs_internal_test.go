package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// A log reader whose client set a far deadline is not held to it when the
// JetStream request it made gets no answer (the node that took it died):
// it gives up after apiTimeout.
func TestFollowLogDoesNotWaitForTheClientsDeadline(t *testing.T) {
	e, err := StartEmbedded(EmbeddedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// Takes every request and never answers, like a node that died with it.
	sink, err := nc.SubscribeSync("lost.API.>")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.NewWithAPIPrefix(nc, "lost.API")
	if err != nil {
		t.Fatal(err)
	}
	b := &Bus{nc: nc, js: js}
	apiTimeout = 300 * time.Millisecond
	t.Cleanup(func() { apiTimeout = 5 * time.Second })

	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- b.FollowLog(ctx, "job-1", 0, false, func(*eventsv1.LogLine) error { return nil })
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNoLog) {
			t.Fatalf("FollowLog: %v, want ErrNoLog", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("FollowLog still waiting after 20s: it waits for the client's deadline (1h)")
	}
	if _, err := sink.NextMsg(time.Second); err != nil {
		t.Fatalf("the request never went out: %v", err)
	}
}
