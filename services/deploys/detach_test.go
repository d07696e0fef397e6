package deploys

import (
	"testing"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
)

const detachConfig = `steps:
  - name: build
    commands: [make]
environments:
  - name: staging
    auto: true
    steps:
      - {name: install, commands: [cp -r dist /srv/app]}
      - {name: start, commands: ["nohup /srv/app/server > /srv/app/log 2>&1 &"], detach: true}
`

// TestDeployStepDetach: detach: true on a deploy step reaches the agent in
// the job's step, and only on that step.
func TestDeployStepDetach(t *testing.T) {
	cfg, err := ParseConfig(".shiploop.yml", []byte(detachConfig))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := cfg.Environment("staging")
	if env == nil || len(env.Steps) != 2 || env.Steps[0].Detach || !env.Steps[1].Detach {
		t.Fatalf("staging = %+v", env)
	}
	if _, err := ParseConfig(".shiploop.yml", []byte("environments: [{name: s, steps: {a: {commands: x, detach: maybe}}}]")); err == nil {
		t.Error("detach: maybe accepted")
	}
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		h.build("acme/detach", "refs/heads/main", "1.0.0", detachConfig, "push")
		j := h.nextJob()
		if len(j.Steps) != 2 || j.Steps[0].GetDetach() || !j.Steps[1].GetDetach() {
			t.Fatalf("job steps %v, want only start detached", j.Steps)
		}
	})
}
