package deploys

import (
	"strings"
	"testing"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
)

const secretsConfig = `secrets: [SENTRY_TOKEN]
steps:
  - name: build
    commands: [make]
environments:
  - name: staging
    auto: true
    secrets: [DEPLOY_TOKEN]
    steps:
      - {name: migrate, commands: [echo migrate], secrets: [DB_PASSWORD, DEPLOY_TOKEN]}
      - {name: deploy, commands: [echo deploy]}
`

// TestDeployStepSecrets: a deploy step names the file's, its
// environment's and its own secrets; the job carries those names and no
// value (the agent gets values from builds).
func TestDeployStepSecrets(t *testing.T) {
	cfg, err := ParseConfig(".shiploop.yml", []byte(secretsConfig))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := cfg.Environment("staging")
	if env == nil || len(env.Steps) != 2 {
		t.Fatalf("staging = %+v", env)
	}
	if got := strings.Join(cfg.StepSecrets(env, env.Steps[0]), ","); got != "DB_PASSWORD,DEPLOY_TOKEN,SENTRY_TOKEN" {
		t.Errorf("migrate's secrets %s, want DB_PASSWORD,DEPLOY_TOKEN,SENTRY_TOKEN", got)
	}
	if got := strings.Join(cfg.StepSecrets(env, env.Steps[1]), ","); got != "DEPLOY_TOKEN,SENTRY_TOKEN" {
		t.Errorf("deploy's secrets %s, want DEPLOY_TOKEN,SENTRY_TOKEN", got)
	}

	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		h.build("acme/secret", "refs/heads/main", "1.0.0", secretsConfig, "push")
		j := h.nextJob()
		if len(j.Steps) != 2 {
			t.Fatalf("job steps %v", j.Steps)
		}
		if got := strings.Join(j.Steps[0].Secrets, ","); got != "DB_PASSWORD,DEPLOY_TOKEN,SENTRY_TOKEN" {
			t.Errorf("job step migrate names secrets %s", got)
		}
		if got := strings.Join(j.Steps[1].Secrets, ","); got != "DEPLOY_TOKEN,SENTRY_TOKEN" {
			t.Errorf("job step deploy names secrets %s", got)
		}
		if len(j.Secrets) != 0 {
			t.Errorf("the deploy job carries secret values: %v", j.Secrets)
		}
	})
}
