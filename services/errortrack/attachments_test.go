package errortrack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// TestLargeAttachmentInObjectStore: a 2 MiB attachment sent in an envelope
// is kept in the errortrack-attachments bucket with only its object's name
// and size in the database, and the web API streams it back byte for byte;
// a small one of the same event stays inline.
func TestLargeAttachmentInObjectStore(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newWebHarness(t, db)
		ctx := context.Background()
		h.svc.cfg.MaxEnvelopeBytes = 4 << 20
		h.svc.cfg.MaxBodyBytes = 4 << 20
		p, k := h.project("shop", 0)
		id := fmt.Sprintf("%032x", 11)
		var big bytes.Buffer
		for i := 0; big.Len() < 2<<20; i++ {
			fmt.Fprintf(&big, "%07d\n", i*7919%9999991)
		}
		large := big.Bytes()[:2<<20]
		small := []byte("small attachment\x00\x01\x02")
		var raw bytes.Buffer
		fmt.Fprintf(&raw, "{\"event_id\":%q}\n{\"type\":\"event\"}\n{\"message\":\"with attachments\",\"level\":\"error\"}\n", id)
		fmt.Fprintf(&raw, "{\"type\":\"attachment\",\"length\":%d,\"filename\":\"core.dump\",\"content_type\":\"application/x-core\"}\n", len(large))
		raw.Write(large)
		raw.WriteString("\n")
		fmt.Fprintf(&raw, "{\"type\":\"attachment\",\"length\":%d,\"filename\":\"note.txt\"}\n", len(small))
		raw.Write(small)
		raw.WriteString("\n")
		if r, b := h.post(fmt.Sprintf("/api/%d/envelope/?sentry_key=%s", p.GetId(), k.GetPublicKey()), "", nil, raw.Bytes()); r.StatusCode != 200 {
			t.Fatalf("envelope: %d %s", r.StatusCode, b)
		}
		var got *errortrackv1.GetEventResponse
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if r, err := h.api.GetEvent(ctx, &errortrackv1.GetEventRequest{EventId: id}); err == nil {
				got = r
				break
			}
		}
		if got == nil {
			t.Fatal("the event was not stored within 20s")
		}
		if a := got.GetEvent().GetAttachments(); len(a) != 2 || a[0].GetSize() != int64(len(large)) || a[1].GetSize() != int64(len(small)) {
			t.Errorf("attachments = %v, want core.dump of %d bytes and note.txt of %d", a, len(large), len(small))
		}

		// The rows: the large one names an object and has no blob.
		if n := h.count(`SELECT LENGTH(data) FROM attachments WHERE project_id = $1 AND event_id = $2 AND position = 1`, p.GetId(), id); n != 0 {
			t.Errorf("the 2 MiB attachment's row holds %d bytes", n)
		}
		if n := h.count(`SELECT COUNT(*) FROM attachments WHERE project_id = $1 AND event_id = $2 AND position = 1 AND object <> ''`, p.GetId(), id); n != 1 {
			t.Error("the 2 MiB attachment's row names no object")
		}
		if n := h.count(`SELECT LENGTH(data) FROM attachments WHERE project_id = $1 AND event_id = $2 AND position = 2 AND object = ''`, p.GetId(), id); n != int64(len(small)) {
			t.Errorf("the small attachment's row holds %d bytes, want %d inline", n, len(small))
		}
		obs, err := h.bus.JetStream().ObjectStore(ctx, attachmentBucket)
		if err != nil {
			t.Fatalf("no %s bucket: %v", attachmentBucket, err)
		}
		var object string
		if err := db.QueryRowContext(ctx, `SELECT object FROM attachments WHERE project_id = $1 AND event_id = $2 AND position = 1`, p.GetId(), id).Scan(&object); err != nil {
			t.Fatal(err)
		}
		if info, err := obs.GetInfo(ctx, object); err != nil || info.Size != uint64(len(large)) {
			t.Errorf("object %s: %v %v", object, info, err)
		}

		// Read back through the web API, byte-identical.
		download := func(pos int) ([]byte, http.Header) {
			t.Helper()
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/0/projects/shiploop/shop/events/%s/attachments/%d/?download=1", h.srv.URL, id, pos), nil)
			req.Header.Set("Authorization", "Bearer "+webRead)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				t.Fatalf("download %d: %d %s", pos, resp.StatusCode, b)
			}
			return b, resp.Header
		}
		if b, hdr := download(1); !bytes.Equal(b, large) || hdr.Get("Content-Type") != "application/x-core" {
			t.Errorf("downloaded %d bytes (%s), want the %d sent", len(b), hdr.Get("Content-Type"), len(large))
		}
		if b, _ := download(2); !bytes.Equal(b, small) {
			t.Errorf("downloaded %q, want %q", b, small)
		}
		list := h.apiOK("GET", "/api/0/projects/shiploop/shop/events/"+id+"/attachments/", 200, nil).([]any)
		if len(list) != 2 || list[0].(map[string]any)["name"] != "core.dump" || list[0].(map[string]any)["size"] != float64(len(large)) {
			t.Errorf("attachments listed: %v", list)
		}
	})
}
