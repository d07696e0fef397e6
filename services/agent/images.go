package agent

import (
	"context"
	"fmt"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/agent/backend"
)

// collectImages reads the IDs of the images a step that succeeded produced
// (Step.produces_images) for JobFinished.images. An image the step did not
// leave behind fails the step: its build would otherwise deploy nothing.
func (r *jobRun) collectImages(ctx context.Context, ws *backend.Workspace, st *eventsv1.Step, res *eventsv1.StepResult) {
	for _, name := range st.GetProducesImages() {
		id, err := backend.ImageID(ctx, r.a.cfg.Backend, name)
		if err != nil {
			msg := ws.Mask(fmt.Sprintf("produces: image %s: %v", name, err))
			r.line(st.GetName(), "system", msg, timeNow())
			res.Status, res.Error = eventsv1.BuildStatus_BUILD_STATUS_FAILURE, msg
			return
		}
		if r.images == nil {
			r.images = map[string]string{}
		}
		r.images[name] = id
		r.line(st.GetName(), "system", fmt.Sprintf("produced image %s: %s", name, id), timeNow())
	}
}
