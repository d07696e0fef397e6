package deploys

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const pathConfig = `env:
  APP: web
steps:
  - name: build
    commands: [make]
gate:
  conditions:
    - {metric: coverage, operator: ">=", threshold: 80}
environments:
  - name: acceptance
    auto: true
    on_interrupt: rerun
    variables: {URL: "http://127.0.0.1:1/health", GO: 1.10}
    steps:
      deploy:
        commands: echo deploying $SHIPLOOP_VERSION
    verify:
      window: 2s
      conditions:
        - {metric: "http_status(${URL})", operator: "==", threshold: 200}
        - {metric: "http_body_match(${URL}, ok|healthy)", operator: "==", threshold: 1}
        - {metric: "http_latency_ms(${URL})", operator: "<", threshold: 500}
        - {metric: errortrack.new_issues, operator: "<=", threshold: 0}
        - {metric: "graphite(sumSeries(app.${SHIPLOOP_ENVIRONMENT}.errors))", operator: "<", threshold: 5}
        - {metric: errortrack.error_rate_ratio, operator: "<=", threshold: 1.5}
  - name: production
    approval: {required: 2}
    steps:
      - {name: deploy, commands: [echo prod], timeout: 90}
  - name: preview
    auto: true
    steps:
      - {name: up, commands: [echo up]}
      - {name: teardown, commands: [echo down]}
`

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig(".shiploop.yml", []byte(pathConfig))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.HasGate || cfg.Env["APP"] != "web" {
		t.Errorf("gate %v env %v", cfg.HasGate, cfg.Env)
	}
	if got := envNames(cfg); got != "acceptance → production" {
		t.Fatalf("path %q", got)
	}
	acc := cfg.Environments[0]
	if !acc.Auto || !acc.RerunInterrupted || acc.Variables["GO"] != "1.10" || acc.Steps[0].Name != "deploy" || acc.Steps[0].Commands[0] != "echo deploying $SHIPLOOP_VERSION" {
		t.Errorf("acceptance %+v", acc)
	}
	if acc.Verify.Window != 2*time.Second || len(acc.Verify.Checks) != 6 || acc.Verify.OnFailure != "rollback" {
		t.Fatalf("verify %+v", acc.Verify)
	}
	c := acc.Verify.Checks[1]
	if c.Kind != "http_body_match" || c.Target != "${URL}" || c.Arg != "ok|healthy" || c.Op != "==" || c.Threshold != 1 {
		t.Errorf("check %+v", c)
	}
	if acc.Verify.Checks[4].Target != "sumSeries(app.${SHIPLOOP_ENVIRONMENT}.errors)" {
		t.Errorf("graphite target %q", acc.Verify.Checks[4].Target)
	}
	if c := acc.Verify.Checks[5]; c.Kind != "errortrack.error_rate_ratio" || c.Target != "" || c.Op != "<=" || c.Threshold != 1.5 || c.Text != "errortrack.error_rate_ratio <= 1.5" {
		t.Errorf("error rate check %+v", c)
	}
	prod := cfg.Environments[1]
	if prod.Approvals != 2 || prod.Auto || prod.RerunInterrupted || prod.Steps[0].Timeout != 90*time.Second {
		t.Errorf("production %+v", prod)
	}
	if cfg.Preview == nil || len(cfg.Preview.Steps) != 1 || len(cfg.Preview.Teardown) != 1 || cfg.Preview.Teardown[0].Name != "teardown" {
		t.Errorf("preview %+v", cfg.Preview)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, yml, want string }{
		{"unknown check", `environments:
  - name: a
    steps: [{name: d, commands: x}]
    verify: {window: 1m, conditions: [{metric: cpu, operator: "<", threshold: 1}]}`, `.shiploop.yml:4:48: environments[0].verify.conditions[0].metric: unknown check "cpu"`},
		{"bad url", `environments:
  - name: a
    steps: [{name: d, commands: x}]
    verify: {window: 1m, conditions: [{metric: "http_status(ftp://x)", operator: "==", threshold: 200}]}`, `environments[0].verify.conditions[0].metric: probe URL "ftp://x" must start with http://`},
		{"bad regexp", `environments:
  - name: a
    steps: [{name: d, commands: x}]
    verify: {window: 1m, conditions: [{metric: "http_body_match(http://x, a(b)", operator: "==", threshold: 1}]}`, `http_body_match: error parsing regexp`},
		{"no window", `environments:
  - name: a
    steps: [{name: d, commands: x}]
    verify: {conditions: []}`, `environments[0].verify.window: required`},
		{"no steps", `environments:
  - name: a`, `.shiploop.yml:2:5: environments[0].steps: at least one step is required`},
		{"dup", `environments:
  - {name: a, steps: [{name: d, commands: x}]}
  - {name: a, steps: [{name: d, commands: x}]}`, `environments[1].name: duplicate environment name "a"`},
		{"on_interrupt", `environments:
  - {name: a, steps: [{name: d, commands: x}], on_interrupt: retry}`, `.shiploop.yml:2:62: environments[0].on_interrupt: expected stop or rerun, got "retry"`},
		{"not yaml", "environments: [", `.shiploop.yml:1:1: (file):`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(".shiploop.yml", []byte(tc.yml))
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
