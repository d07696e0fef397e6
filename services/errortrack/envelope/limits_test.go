package envelope

import (
	"strings"
	"testing"
)

// TestAttachmentsSizeLimit: attachments are bounded one by one and all
// together (Relay's max_attachment_size and max_attachments_size), and the
// defaults are Relay's 100 MiB.
func TestAttachmentsSizeLimit(t *testing.T) {
	if DefaultLimits.Attachment != 100<<20 || DefaultLimits.AttachmentsSize != 100<<20 || DefaultLimits.Event != 1<<20 {
		t.Errorf("defaults = %+v, want Relay's", DefaultLimits)
	}
	env := "{\"event_id\":\"0123456789abcdef0123456789abcdef\"}\n" +
		"{\"type\":\"attachment\",\"length\":6}\naaaaaa\n" +
		"{\"type\":\"attachment\",\"length\":6}\nbbbbbb\n"
	if _, err := Parse([]byte(env), Limits{AttachmentsSize: 12}); err != nil {
		t.Fatalf("12 bytes of attachments under a 12 byte limit: %v", err)
	}
	_, err := Parse([]byte(env), Limits{AttachmentsSize: 11})
	if !IsTooLarge(err) || !strings.Contains(err.Error(), "together") {
		t.Fatalf("12 bytes of attachments under an 11 byte limit: %v", err)
	}
}
