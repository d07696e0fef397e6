package deploys

import (
	"testing"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestDeployJobEnvironment: a deploy job carries the release, environment,
// deploy id and previous release as SHIPLOOP_*, and SENTRY_RELEASE and
// SENTRY_ENVIRONMENT for Sentry SDKs; the file's env and a step's env do not
// override SHIPLOOP_*, while a step may set SENTRY_*.
func TestDeployJobEnvironment(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		repo := "acme/envs"
		cfg := `env: {SHIPLOOP_RELEASE: dev, APP: web}
environments:
  - name: staging
    auto: true
    variables: {SHIPLOOP_ENVIRONMENT: nope}
    steps:
      - {name: deploy, commands: [echo], env: {SHIPLOOP_DEPLOY_ID: mine, SENTRY_ENVIRONMENT: stage, OWN: x}}
`
		h.build(repo, "refs/heads/main", "1.0.0", cfg, "push")
		j := h.nextJob()
		d := h.waitFor(repo, "staging", "running", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_RUNNING))
		want := map[string]string{
			"SHIPLOOP_RELEASE": "1.0.0", "SHIPLOOP_VERSION": "1.0.0", "SHIPLOOP_ENVIRONMENT": "staging", "SHIPLOOP_DEPLOY_ID": d.GetId(),
			"SHIPLOOP_PREVIOUS_RELEASE": "", "SHIPLOOP_DEPLOY_KIND": "deploy", "SENTRY_RELEASE": "1.0.0", "SENTRY_ENVIRONMENT": "staging", "APP": "web",
		}
		for k, v := range want {
			if got, ok := j.Environment[k]; !ok || got != v {
				t.Errorf("first deploy: %s = %q (set %v), want %q", k, got, ok, v)
			}
		}
		st := j.Steps[0].Environment
		if _, ok := st["SHIPLOOP_DEPLOY_ID"]; ok || st["SENTRY_ENVIRONMENT"] != "stage" || st["OWN"] != "x" {
			t.Errorf("step env %v: SHIPLOOP_* must be dropped, SENTRY_* and the rest kept", st)
		}
		h.run(j, true)
		h.waitFor(repo, "staging", "1.0.0 deployed", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))

		h.build(repo, "refs/heads/main", "1.1.0", cfg, "push")
		j = h.nextJob()
		if j.Environment["SHIPLOOP_PREVIOUS_RELEASE"] != "1.0.0" || j.Environment["SHIPLOOP_RELEASE"] != "1.1.0" || j.Environment["SENTRY_RELEASE"] != "1.1.0" {
			t.Errorf("second deploy env %v", j.Environment)
		}
		h.run(j, true)
		h.waitFor(repo, "staging", "1.1.0 deployed", is("1.1.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
	})
}
