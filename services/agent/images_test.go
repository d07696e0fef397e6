package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestProducedImages: on a process agent, a step's produces_images are
// read with the docker CLI after it succeeds and reported in
// job.finished images; an image the step did not leave fails the step
// (and so the job). A fake docker on PATH stands in for the engine.
func TestProducedImages(t *testing.T) {
	id := "sha256:" + strings.Repeat("ab", 32)
	bin := t.TempDir()
	fake := "#!/bin/sh\nfor a; do ref=$a; done\nif [ \"$ref\" = app ]; then echo " + id + "; exit 0; fi\necho \"Error: No such image: $ref\" >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	r := newRig(t)
	dir, sha := repo(t)
	job := &eventsv1.Job{JobId: bus.NewID(), BuildId: "b-img", Kind: "build", Repository: "acme/img", CloneUrl: dir, Commit: sha,
		Timeout: durationpb.New(time.Minute), Steps: []*eventsv1.Step{
			{Name: "image", Commands: []string{"true"}, ProducesImages: []string{"app"}},
		}}
	_, fin := r.run(job)
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS || fin.GetImages()["app"] != id || len(fin.GetImages()) != 1 {
		t.Fatalf("job %v images %v, want success with app=%s", fin.GetStatus(), fin.GetImages(), id)
	}

	job = &eventsv1.Job{JobId: bus.NewID(), BuildId: "b-img2", Kind: "build", Repository: "acme/img", CloneUrl: dir, Commit: sha,
		Timeout: durationpb.New(time.Minute), Steps: []*eventsv1.Step{
			{Name: "image", Commands: []string{"true"}, ProducesImages: []string{"missing"}},
			{Name: "after", Commands: []string{"true"}},
		}}
	_, fin = r.run(job)
	st := fin.GetSteps()[0]
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_FAILURE || fin.GetFailedStep() != "image" || !strings.Contains(st.GetError(), "No such image: missing") || len(fin.GetImages()) != 0 {
		t.Fatalf("job %v failed_step %q step %v images %v: want the step failed for the missing image", fin.GetStatus(), fin.GetFailedStep(), st, fin.GetImages())
	}
	if fin.GetSteps()[1].GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SKIPPED {
		t.Errorf("the step after ran: %v", fin.GetSteps()[1])
	}
}
