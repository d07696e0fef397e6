package backend

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// ImageInspector is a backend that can say which image a name stands for
// on the engine its steps build images with: the image ID, "sha256:<hex>".
// A step's produces: {image: NAME} is reported this way after it succeeds
// (see ImageID). With no registry an image has no repository digest, so
// the image ID (the digest of its config) identifies it; `docker run`
// takes it as it is.
type ImageInspector interface {
	ImageID(ctx context.Context, ref string) (string, error)
}

// ImageID is ref's image ID on b's engine: b's own ImageInspector (the
// Docker backend asks its engine through the API), else the docker CLI on
// the agent's PATH (a process agent whose steps run docker build).
func ImageID(ctx context.Context, b Backend, ref string) (string, error) {
	if ii, ok := b.(ImageInspector); ok {
		return ii.ImageID(ctx, ref)
	}
	return cliImageID(ctx, ref)
}

func cliImageID(ctx context.Context, ref string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", "--", ref)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("docker image inspect %s: %v: %s", ref, err, strings.TrimSpace(stderr.String()))
	}
	return checkImageID(ref, strings.TrimSpace(string(out)))
}

// ImageID asks the engine for ref's image ID.
func (d *Docker) ImageID(ctx context.Context, ref string) (string, error) {
	img, err := d.cli.ImageInspect(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("inspecting image %s: %w", ref, err)
	}
	return checkImageID(ref, img.ID)
}

func checkImageID(ref, id string) (string, error) {
	hex, ok := strings.CutPrefix(id, "sha256:")
	if !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("image %s: unexpected image ID %q", ref, id)
	}
	return id, nil
}
