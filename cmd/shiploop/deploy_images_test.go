package main

import (
	"bytes"
	"strings"
	"testing"

	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
)

// TestPrintEnvImages: deploy status lists each environment's current
// images after its table, and nothing when no release has any.
func TestPrintEnvImages(t *testing.T) {
	var b bytes.Buffer
	if err := printEnvImages(&b, []*deploysv1.Environment{{Name: "staging"}}); err != nil || b.Len() != 0 {
		t.Fatalf("no images: %q %v", b.String(), err)
	}
	id := "sha256:" + strings.Repeat("ab", 32)
	if err := printEnvImages(&b, []*deploysv1.Environment{{Name: "staging", CurrentImages: map[string]string{"app": id}}, {Name: "production"}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "IMAGE") || !strings.Contains(b.String(), "staging") || !strings.Contains(b.String(), "app") || !strings.Contains(b.String(), id) {
		t.Errorf("printed:\n%s", b.String())
	}
	b.Reset()
	describeImages(&b, map[string]string{"app": id})
	if got := b.String(); got != "  image      app "+id+"\n" {
		t.Errorf("describeImages = %q", got)
	}
}
