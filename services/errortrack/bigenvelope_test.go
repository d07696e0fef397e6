package errortrack

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// TestLargeEnvelopeThroughObjectStore: an envelope larger than a NATS
// message (1 MiB here) is accepted up to the envelope limit, travels
// through the Object Store, and its event and attachment are stored whole.
func TestLargeEnvelopeThroughObjectStore(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		p, k := h.project("shop", 0)
		h.svc.bigEnvelopes.maxMessage = 1 << 20 // the test's NATS allows 8 MiB
		if !h.svc.tooBigForMessage(3 << 19) {
			t.Fatal("1.5 MiB fits a message")
		}
		id := fmt.Sprintf("%032x", 7)
		att := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/32) // 1.5 MiB
		var raw bytes.Buffer
		fmt.Fprintf(&raw, "{\"event_id\":%q}\n{\"type\":\"event\"}\n{\"message\":\"big one\",\"level\":\"error\"}\n", id)
		fmt.Fprintf(&raw, "{\"type\":\"attachment\",\"length\":%d,\"filename\":\"dump.bin\"}\n", len(att))
		raw.Write(att)
		raw.WriteString("\n")
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		_, _ = zw.Write(raw.Bytes())
		_ = zw.Close()
		if r, b := h.post(fmt.Sprintf("/api/%d/envelope/?sentry_key=%s", p.GetId(), k.GetPublicKey()), "gzip", nil, gz.Bytes()); r.StatusCode != 200 {
			t.Fatalf("large envelope: %d %s", r.StatusCode, b)
		}
		var got *errortrackv1.GetEventResponse
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if r, err := h.api.GetEvent(ctx, &errortrackv1.GetEventRequest{EventId: id}); err == nil {
				got = r
				break
			}
		}
		if got == nil {
			t.Fatal("the large envelope's event was not stored within 20s")
		}
		if _, err := h.bus.JetStream().ObjectStore(ctx, bigEnvelopeBucket); err != nil {
			t.Errorf("the envelope did not go through the Object Store: %v", err)
		}
		if a := got.GetEvent().GetAttachments(); len(a) != 1 || a[0].GetSize() != int64(len(att)) || a[0].GetFilename() != "dump.bin" {
			t.Errorf("attachments = %v, want dump.bin of %d bytes", a, len(att))
		}
	})
}
