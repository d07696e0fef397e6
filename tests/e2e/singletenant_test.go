package e2e

import (
	"testing"
	"time"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestUpStepsReadTheDataDir shows the limit docs/security.md and the
// README state: under `shiploop up` the built-in agent's steps run as the
// server's user, so a step can read the data directory, the builds
// database (every repository's secrets) included. `up` is single-tenant;
// if this test starts failing, the steps were isolated and the docs
// should say so.
func TestUpStepsReadTheDataDir(t *testing.T) {
	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": `steps:
  - name: snoop
    commands:
      - test -r "$SHIPLOOP_WORKSPACE/../../../builds.db"
      - echo "a step can read the builds database"
`})
	secret := inst.register(t, "acme/snoop", repo)
	w := inst.watch(t, "acme/snoop")
	inst.push(t, "acme/snoop", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))
	evs := w.until("build.finished", 60*time.Second)
	bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
	if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("the step could not read the data directory (%v: %s): steps are isolated now; update docs/security.md and the README", bf.GetStatus(), bf.GetError())
	}
}
