//go:build unix

package backend

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

// TestImageID: the Docker backend and the docker CLI (what a process agent
// uses) read the same image ID for a local image; a missing image is an
// error naming it.
func TestImageID(t *testing.T) {
	d := newDockerTestBackend(t, "imageid-test")
	ctx := context.Background()
	id, err := ImageID(ctx, d, testImage)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "sha256:") || len(id) != 71 {
		t.Fatalf("image ID %q", id)
	}
	if _, err := exec.LookPath("docker"); err == nil {
		cli, err := ImageID(ctx, &Process{}, testImage)
		if err != nil || cli != id {
			t.Errorf("docker CLI says %q (%v), the engine %q", cli, err, id)
		}
	}
	if _, err := ImageID(ctx, d, "shiploop-no-such-image:never"); err == nil || !strings.Contains(err.Error(), "shiploop-no-such-image") {
		t.Errorf("missing image: %v", err)
	}
}
