package pipeline

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const file = ".shiploop.yml"

// fullYAML uses every field of the schema.
const fullYAML = `version: 1
env:
  GOFLAGS: -mod=readonly
  CGO_ENABLED: 0
secrets: [REGISTRY_TOKEN]
when:
  branch: [main, "release/*", "!release/old"]
matrix:
  GO: ["1.25", "1.26"]
  DB: [postgres, sqlite]
  include: [{GO: "1.27", DB: postgres}]
  exclude: [{GO: "1.25", DB: sqlite}]
steps:
  - name: lint
    commands: go vet ./...
  - name: build
    commands:
      - go build ./...
      - go build -o dist/app ./cmd/app
    depends_on: [lint]
    env: {GOOS: linux, RACE: true, LEVEL: 1.10}
    secrets: [NPM_TOKEN]
    when: {event: [push, tag, pull_request, manual], branch: [main, "release/*"], tag: ["v*"], paths: ["src/**", "!docs/**"]}
    failure: ignore
    timeout: 10m
    artifacts: ["dist/*.tar.gz"]
    cache: {key_files: [go.sum], paths: [~/.cache/go-build]}
  - name: package
    commands: [tar czf dist/app.tar.gz dist/app]
    depends_on: [build]
    timeout: 600
test:
  steps:
    - name: unit
      commands: [go test ./...]
  reports: {junit: ["reports/*.xml"], coverage: [cover.out]}
  services:
    - name: postgres
      command: postgres -D /tmp/pg
      env: {PGPORT: 5432}
      ready: {tcp: "127.0.0.1:5432"}
  shards: 2
environments:
  - name: staging
    auto: true
    on_interrupt: rerun
    on_failure: rollback
    steps:
      deploy:
        commands: ./deploy.sh staging
        detach: true
    variables: {URL: "https://staging.example.com"}
    secrets: [DEPLOY_KEY]
  - name: production
    approval: {required: 2}
    steps:
      - name: deploy
        commands: [./deploy.sh production]
    verify:
      window: 15m
      conditions:
        - {metric: errortrack.new_issues, operator: "==", threshold: 0}
        - {metric: "graphite(app.http.error_rate)", operator: "<", threshold: 0.01}
      on_failure: hold
gate:
  conditions:
    - {metric: coverage, operator: ">=", threshold: 80, scope: new_code}
    - {metric: issues, operator: "==", threshold: 0}
`

var fullConfig = &Config{
	Version: 1,
	Env:     map[string]string{"GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"},
	Secrets: []string{"REGISTRY_TOKEN"},
	When:    When{Branch: []string{"main", "release/*", "!release/old"}},
	Matrix: &Matrix{
		Axes: []MatrixAxis{
			{Name: "GO", Values: []string{"1.25", "1.26"}},
			{Name: "DB", Values: []string{"postgres", "sqlite"}},
		},
		Include: []map[string]string{{"GO": "1.27", "DB": "postgres"}},
		Exclude: []map[string]string{{"GO": "1.25", "DB": "sqlite"}},
	},
	Steps: []Step{
		{Name: "lint", Commands: []string{"go vet ./..."}, Failure: FailureFail},
		{
			Name:      "build",
			Commands:  []string{"go build ./...", "go build -o dist/app ./cmd/app"},
			DependsOn: []string{"lint"},
			Env:       map[string]string{"GOOS": "linux", "RACE": "true", "LEVEL": "1.10"},
			Secrets:   []string{"NPM_TOKEN"},
			When: When{
				Event:  []string{"push", "tag", "pull_request", "manual"},
				Branch: []string{"main", "release/*"},
				Tag:    []string{"v*"},
				Paths:  []string{"src/**", "!docs/**"},
			},
			Failure:   FailureIgnore,
			Timeout:   10 * time.Minute,
			Artifacts: []string{"dist/*.tar.gz"},
			Cache:     &Cache{KeyFiles: []string{"go.sum"}, Paths: []string{"~/.cache/go-build"}},
		},
		{
			Name:      "package",
			Commands:  []string{"tar czf dist/app.tar.gz dist/app"},
			DependsOn: []string{"build"},
			Failure:   FailureFail,
			Timeout:   600 * time.Second,
		},
	},
	Test: &Test{
		Steps:   []Step{{Name: "unit", Commands: []string{"go test ./..."}, Failure: FailureFail}},
		Reports: Reports{JUnit: []string{"reports/*.xml"}, Coverage: []string{"cover.out"}},
		Services: []Service{{
			Name:    "postgres",
			Command: "postgres -D /tmp/pg",
			Env:     map[string]string{"PGPORT": "5432"},
			Ready:   &Ready{TCP: "127.0.0.1:5432"},
		}},
		Shards: 2,
	},
	Environments: []Environment{
		{
			Name:              "staging",
			Auto:              true,
			RerunInterrupted:  true,
			RollbackOnFailure: true,
			Steps:             []Step{{Name: "deploy", Commands: []string{"./deploy.sh staging"}, Failure: FailureFail, Detach: true}},
			Variables:         map[string]string{"URL": "https://staging.example.com"},
			Secrets:           []string{"DEPLOY_KEY"},
		},
		{
			Name:     "production",
			Approval: &Approval{Required: 2},
			Steps:    []Step{{Name: "deploy", Commands: []string{"./deploy.sh production"}, Failure: FailureFail}},
			Verify: &Verify{
				Window: 15 * time.Minute,
				Conditions: []Condition{
					{Metric: "errortrack.new_issues", Operator: OpEqual, Threshold: 0},
					{Metric: "graphite(app.http.error_rate)", Operator: OpLess, Threshold: 0.01},
				},
				OnFailure: OnFailureHold,
			},
		},
	},
	Gate: &Gate{Conditions: []Condition{
		{Metric: "coverage", Operator: OpGreaterEqual, Threshold: 80, Scope: ScopeNewCode},
		{Metric: "issues", Operator: OpEqual, Threshold: 0, Scope: ScopeOverall},
	}},
}

// validCases are files Parse accepts, with the Config each one means.
var validCases = []struct {
	name string
	yaml string
	want *Config
}{
	{"full", fullYAML, fullConfig},
	{
		name: "minimal",
		yaml: "steps:\n  - name: build\n    commands: make\n",
		want: &Config{Version: 1, Steps: []Step{{Name: "build", Commands: []string{"make"}, Failure: FailureFail}}},
	},
	{
		name: "map form keeps file order",
		yaml: `steps:
  zeta:
    commands: [z]
  alpha:
    commands: [a]
    depends_on: [zeta]
    when: {branch: main, event: push}
`,
		want: &Config{Version: 1, Steps: []Step{
			{Name: "zeta", Commands: []string{"z"}, Failure: FailureFail},
			{Name: "alpha", Commands: []string{"a"}, DependsOn: []string{"zeta"}, Failure: FailureFail,
				When: When{Branch: []string{"main"}, Event: []string{"push"}}},
		}},
	},
	{
		name: "anchors, aliases and merge keys",
		yaml: `steps:
  - &base
    name: a
    commands: [x]
    timeout: 5m
    env: &env {A: "1"}
  - <<: *base
    name: b
    env: *env
`,
		want: &Config{Version: 1, Steps: []Step{
			{Name: "a", Commands: []string{"x"}, Timeout: 5 * time.Minute, Env: map[string]string{"A": "1"}, Failure: FailureFail},
			{Name: "b", Commands: []string{"x"}, Timeout: 5 * time.Minute, Env: map[string]string{"A": "1"}, Failure: FailureFail},
		}},
	},
	{
		name: "empty lists and a trailing document marker",
		yaml: "version: 1\nenv: {}\nsecrets: []\nenvironments: []\nsteps: {a: {commands: [x], depends_on: [], when: {paths: []}}}\n---\n",
		want: &Config{Version: 1, Env: map[string]string{}, Secrets: []string{}, Environments: []Environment{},
			Steps: []Step{{Name: "a", Commands: []string{"x"}, DependsOn: []string{}, When: When{Paths: []string{}}, Failure: FailureFail}}},
	},
	{
		name: "test retries",
		yaml: "steps: {a: {commands: x}}\ntest:\n  retries: 2\n  steps: {t: {commands: go test}}\n",
		want: &Config{Version: 1,
			Steps: []Step{{Name: "a", Commands: []string{"x"}, Failure: FailureFail}},
			Test:  &Test{Steps: []Step{{Name: "t", Commands: []string{"go test"}, Failure: FailureFail}}, Shards: 1, Retries: 2}},
	},
	{
		name: "concurrency group",
		yaml: "concurrency: {group: deploy-prod, limit: 2}\nsteps: {a: {commands: x}}\n",
		want: &Config{Version: 1, Concurrency: &Concurrency{Group: "deploy-prod", Limit: 2},
			Steps: []Step{{Name: "a", Commands: []string{"x"}, Failure: FailureFail}}},
	},
	{
		name: "concurrency limit defaults to 1",
		yaml: "concurrency: {group: releases}\nsteps: {a: {commands: x}}\n",
		want: &Config{Version: 1, Concurrency: &Concurrency{Group: "releases", Limit: 1},
			Steps: []Step{{Name: "a", Commands: []string{"x"}, Failure: FailureFail}}},
	},
	{
		name: "matrix of include only",
		yaml: "matrix:\n  include: [{OS: linux}, {OS: darwin}]\nsteps: {a: {commands: x}}\n",
		want: &Config{Version: 1,
			Matrix: &Matrix{Include: []map[string]string{{"OS": "linux"}, {"OS": "darwin"}}},
			Steps:  []Step{{Name: "a", Commands: []string{"x"}, Failure: FailureFail}}},
	},
}

// stripped returns c without its unexported bookkeeping, for comparison.
func stripped(c *Config) *Config {
	cp := *c
	cp.file, cp.pos, cp.stepPaths = "", nil, nil
	return &cp
}

func TestParseValid(t *testing.T) {
	for _, tc := range validCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(file, []byte(tc.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if g := stripped(got); !reflect.DeepEqual(g, tc.want) {
				t.Errorf("Parse mismatch\n got: %+v\nwant: %+v", g, tc.want)
				diffFields(t, g, tc.want)
			}
		})
	}
}

// diffFields names the top-level fields that differ, to make a failure readable.
func diffFields(t *testing.T, got, want *Config) {
	t.Helper()
	gv, wv := reflect.ValueOf(*got), reflect.ValueOf(*want)
	for i := range gv.NumField() {
		if !gv.Type().Field(i).IsExported() {
			continue
		}
		if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
			t.Errorf("field %s:\n got: %#v\nwant: %#v", gv.Type().Field(i).Name, gv.Field(i).Interface(), wv.Field(i).Interface())
		}
	}
}

// schemaVerdict says what the JSON Schema makes of an invalid file.
type schemaVerdict int

const (
	schemaRejects schemaVerdict = iota // the schema finds the problem too
	parserOnly                         // only the parser can: references, duplicates, matrix values
	notJSON                            // the YAML has no JSON form to validate (syntax, duplicate keys)
)

// invalidCases are files Parse rejects, with the exact error.
var invalidCases = []struct {
	name   string
	yaml   string
	want   string
	schema schemaVerdict
}{
	{
		name:   "tab in indentation",
		yaml:   "steps:\n  - name: a\n\tcommands: [x]\n",
		want:   ".shiploop.yml:3:1: tab character in indentation; indent YAML with spaces",
		schema: notJSON,
	},
	{
		name: "commands of the wrong type",
		yaml: "steps:\n  - name: a\n    commands: {go: build}\n  - name: b\n    commands: 42\n",
		want: ".shiploop.yml:3:15: steps[0].commands: expected a string or a list of strings, got a mapping\n" +
			".shiploop.yml:5:15: steps[1].commands: expected a string or a list of strings, got an integer",
	},
	{
		name: "unknown field with a hint",
		yaml: "steps:\n  - name: a\n    comands: [x]\n",
		want: `.shiploop.yml:3:5: steps[0].comands: unknown field (did you mean "commands"?)`,
	},
	{
		name: "unknown field without a close name",
		yaml: "steps:\n  - name: a\n    commands: [x]\n    runs_on: golang\n",
		want: ".shiploop.yml:4:5: steps[0].runs_on: unknown field (known fields: artifacts, cache, commands, cpus, depends_on, detach, env, failure, image, memory, name, produces, pull, secrets, timeout, when)",
	},
	{
		name:   "dependency cycle names both steps",
		yaml:   "steps:\n  - name: a\n    commands: [x]\n    depends_on: [b]\n  - name: b\n    commands: [x]\n    depends_on: [a]\n",
		want:   ".shiploop.yml:7:18: steps[1].depends_on[0]: dependency cycle: a -> b -> a",
		schema: parserOnly,
	},
	{
		name:   "longer cycle in map form",
		yaml:   "steps:\n  a: {commands: x, depends_on: [c]}\n  b: {commands: x, depends_on: [a]}\n  c: {commands: x, depends_on: [b]}\n",
		want:   ".shiploop.yml:3:33: steps.b.depends_on[0]: dependency cycle: a -> c -> b -> a",
		schema: parserOnly,
	},
	{
		name: "self dependency and a repeated name",
		yaml: "steps:\n  - name: a\n    commands: [x]\n    depends_on: [a, a]\n",
		want: ".shiploop.yml:4:18: steps[0].depends_on[0]: step \"a\" depends on itself\n" +
			".shiploop.yml:4:21: steps[0].depends_on[1]: \"a\" is listed twice",
	},
	{
		name:   "unknown depends_on",
		yaml:   "steps:\n  - name: lint\n    commands: [x]\n  - name: build\n    commands: [x]\n    depends_on: [lnt]\n",
		want:   `.shiploop.yml:6:18: steps[1].depends_on[0]: unknown step "lnt" (did you mean "lint"?)`,
		schema: parserOnly,
	},
	{
		name:   "test steps cannot depend on build steps",
		yaml:   "steps: {build: {commands: x}}\ntest:\n  steps: {unit: {commands: x, depends_on: [build]}}\n",
		want:   `.shiploop.yml:3:44: test.steps.unit.depends_on[0]: unknown step "build"`,
		schema: parserOnly,
	},
	{
		name:   "duplicate step name",
		yaml:   "steps:\n  - name: a\n    commands: [x]\n  - name: a\n    commands: [y]\n",
		want:   `.shiploop.yml:4:11: steps[1].name: duplicate step name "a" (first at line 2)`,
		schema: parserOnly,
	},
	{
		name:   "duplicate key",
		yaml:   "steps:\n  a: {commands: [x]}\n  a: {commands: [y]}\n",
		want:   ".shiploop.yml:3:3: steps.a: duplicate key (first at line 2)",
		schema: notJSON,
	},
	{
		name: "bad timeouts",
		yaml: "steps:\n  - name: a\n    commands: [x]\n    timeout: 10x\n  - name: b\n    commands: [x]\n    timeout: -5\n  - name: c\n    commands: [x]\n    timeout: 1.5\n",
		want: `.shiploop.yml:4:14: steps[0].timeout: invalid duration "10x": use a duration like "10m" or "1h30m", or a whole number of seconds` + "\n" +
			".shiploop.yml:7:14: steps[1].timeout: duration must be positive, got -5\n" +
			`.shiploop.yml:10:14: steps[2].timeout: expected a duration, got a number: use a duration like "10m" or "1h30m", or a whole number of seconds`,
	},
	{
		name: "concurrency without a group, limit 0",
		yaml: "concurrency: {limit: 0}\nsteps: {a: {commands: x}}\n",
		want: ".shiploop.yml:1:14: concurrency.group: missing required field\n" +
			".shiploop.yml:1:22: concurrency.limit: must be between 1 and 1000, got 0",
	},
	{
		name:   "matrix exclude of an unknown variable",
		yaml:   "matrix:\n  GO: [\"1.25\", \"1.26\"]\n  DB: [postgres]\n  exclude: [{GOO: \"1.25\"}]\nsteps: {a: {commands: x}}\n",
		want:   `.shiploop.yml:4:14: matrix.exclude[0].GOO: unknown matrix variable (did you mean "GO"?)`,
		schema: parserOnly,
	},
	{
		name: "matrix exclude of an unknown value, include of an unknown variable",
		yaml: "matrix:\n  GO: [\"1.25\", \"1.26\"]\n  exclude: [{GO: \"1.24\"}]\n  include: [{DB: x}]\nsteps: {a: {commands: x}}\n",
		want: `.shiploop.yml:3:18: matrix.exclude[0].GO: value "1.24" is not one of GO's values` + "\n" +
			".shiploop.yml:4:14: matrix.include[0].DB: unknown matrix variable (known: GO)",
		schema: parserOnly,
	},
	{
		name:   "matrix include must set every variable",
		yaml:   "matrix:\n  GO: [\"1.25\"]\n  DB: [pg]\n  include: [{GO: \"1.26\"}]\nsteps: {a: {commands: x}}\n",
		want:   ".shiploop.yml:4:13: matrix.include[0]: must set every matrix variable; DB is missing",
		schema: parserOnly,
	},
	{
		name:   "matrix excludes everything",
		yaml:   "matrix:\n  GO: [\"1.25\"]\n  exclude: [{GO: \"1.25\"}]\nsteps: {a: {commands: x}}\n",
		want:   ".shiploop.yml:2:3: matrix: matrix excludes every combination",
		schema: parserOnly,
	},
	{
		name:   "matrix too large",
		yaml:   "matrix:\n  A: [1,2,3,4,5,6,7]\n  B: [1,2,3,4,5,6,7]\n  C: [1,2,3,4,5,6,7]\nsteps: {a: {commands: x}}\n",
		want:   ".shiploop.yml:2:3: matrix: matrix has more than 256 combinations",
		schema: parserOnly,
	},
	{
		name: "matrix without variables",
		yaml: "matrix: {}\nsteps: {a: {commands: x}}\n",
		want: ".shiploop.yml:1:9: matrix: matrix has no variables",
	},
	{
		name: "empty steps",
		yaml: "steps: []\n",
		want: ".shiploop.yml:1:8: steps: must have at least one step",
	},
	{
		name: "empty steps mapping",
		yaml: "steps: {}\n",
		want: ".shiploop.yml:1:8: steps: must have at least one step",
	},
	{
		name: "missing steps",
		yaml: "env: {A: 1}\n",
		want: ".shiploop.yml:1:1: steps: missing required field",
	},
	{
		name:   "empty file",
		yaml:   "# nothing yet\n",
		want:   ".shiploop.yml:1:1: file is empty; it needs at least steps",
		schema: notJSON,
	},
	{
		name: "not a mapping",
		yaml: "- build\n",
		want: ".shiploop.yml:1:1: the file must be a mapping of fields (version, steps, ...), not a list",
	},
	{
		name: "unsupported version",
		yaml: "version: 2\nsteps: {a: {commands: x}}\n",
		want: `.shiploop.yml:1:10: version: unsupported version "2": only 1 is known`,
	},
	{
		name:   "second document",
		yaml:   "steps: {a: {commands: x}}\n---\nsteps: {b: {commands: x}}\n",
		want:   ".shiploop.yml:2:1: a second YAML document; the file holds exactly one",
		schema: notJSON,
	},
	{
		name:   "syntax error without a column",
		yaml:   "steps: [a, b\n",
		want:   ".shiploop.yml:1: did not find expected ',' or ']'",
		schema: notJSON,
	},
	{
		name: "detach on a build step",
		yaml: "steps: {a: {commands: x, detach: true}}\ntest:\n  steps: [{name: t, commands: x, detach: false}]\n",
		want: ".shiploop.yml:1:34: steps.a.detach: detach is only for deploy steps (environments[].steps): a build or test step must not leave processes running on the agent",
	},
	{
		name:   "detach on a deploy step with its own image",
		yaml:   "steps: {a: {commands: x}}\nenvironments:\n  - name: prod\n    steps: {up: {commands: x, image: alpine, detach: true}}\n",
		want:   ".shiploop.yml:4:54: environments[0].steps.up.detach: " + DetachInImage,
		schema: parserOnly,
	},
	{
		name: "name in map form",
		yaml: "steps: {a: {commands: x, name: a}}\n",
		want: `.shiploop.yml:1:32: steps.a.name: not allowed when steps is a mapping: the key "a" is the name`,
	},
	{
		name: "command that YAML reads as a mapping",
		yaml: "steps:\n  - name: a\n    commands:\n      - echo result: ok\n",
		want: `.shiploop.yml:4:9: steps[0].commands[0]: expected a string, got a mapping (quote a command that contains ": ")`,
	},
	{
		name: "several problems in one step, in file order",
		yaml: `steps:
  - name: Build
    commands: [x]
    failure: maybe
  - name: b
    commands: []
    artifacts: [/etc/passwd, ../x, ok/*.txt]
    env: {1A: x, B: , C: [1]}
    secrets: [A, A, "b-c"]
    when: {event: psh, branch: ["!"]}
`,
		want: `.shiploop.yml:2:11: steps[0].name: invalid name "Build": use lowercase letters, digits, "_", "." and "-", starting with a letter or digit
.shiploop.yml:4:14: steps[0].failure: unknown failure policy "maybe" (one of fail, ignore)
.shiploop.yml:6:15: steps[1].commands: must have at least one command
.shiploop.yml:7:17: steps[1].artifacts[0]: "/etc/passwd" must be relative to the workspace
.shiploop.yml:7:30: steps[1].artifacts[1]: "../x" must not leave the workspace (..)
.shiploop.yml:8:11: steps[1].env.1A: invalid variable name "1A": use letters, digits and _, not starting with a digit
.shiploop.yml:8:21: steps[1].env.B: expected a string, number or boolean, got nothing (null)
.shiploop.yml:8:26: steps[1].env.C: expected a string, number or boolean, got a list
.shiploop.yml:9:18: steps[1].secrets[1]: "A" is listed twice (first at line 9)
.shiploop.yml:9:21: steps[1].secrets[2]: invalid name "b-c": use letters, digits and _, not starting with a digit
.shiploop.yml:10:19: steps[1].when.event: unknown event "psh" (did you mean "push"?)
.shiploop.yml:10:33: steps[1].when.branch[0]: pattern "!" is empty`,
	},
	{
		name: "test section",
		yaml: `steps: {a: {commands: x}}
test:
  steps: {a: {commands: x}}
  services:
    - {name: pg, command: postgres, ready: {tcp: "localhost"}}
    - {name: pg, command: ""}
  shards: 0
`,
		want: `.shiploop.yml:5:50: test.services[0].ready.tcp: invalid address "localhost": use host:port
.shiploop.yml:6:7: test.services[1].name: duplicate service name "pg" (first at line 5)
.shiploop.yml:6:27: test.services[1].command: must not be empty
.shiploop.yml:7:11: test.shards: must be between 1 and 64, got 0`,
	},
	{
		name: "labels",
		yaml: `labels: ["gpu", "a b", ""]
steps: {a: {commands: x}}
test:
  steps: {a: {commands: x}}
  labels: {os: linux}
environments:
  - {name: prod, steps: {d: {commands: x}}, labels: [ok, "tab\there"]}
`,
		want: `.shiploop.yml:1:17: labels[1]: label "a b" contains a space or control character
.shiploop.yml:1:24: labels[2]: must not be empty
.shiploop.yml:5:11: test.labels: expected a string or a list of strings, got a mapping
.shiploop.yml:7:58: environments[0].labels[1]: label "tab\there" contains a space or control character`,
	},
	{
		name: "environments and gate",
		yaml: `steps: {a: {commands: x}}
environments:
  - name: prod
    approval: {required: 0, who: [x]}
    verify: {conditions: [{metric: x, operator: "<", threshold: 1, scope: overall}]}
  - name: prod
    steps: {a: {commands: x}}
    auto: yes
    on_interrupt: retry
gate:
  conditions:
    - {metric: coverage, operator: "=>", threshold: high}
`,
		want: `.shiploop.yml:3:5: environments[0].steps: missing required field
.shiploop.yml:4:26: environments[0].approval.required: must be between 1 and 100, got 0
.shiploop.yml:4:29: environments[0].approval.who: unknown field (known fields: required)
.shiploop.yml:5:13: environments[0].verify.window: missing required field
.shiploop.yml:5:36: environments[0].verify.conditions[0].metric: unknown check "x": use http_status(URL), http_latency_ms(URL), http_body_match(URL, REGEXP), graphite(TARGET) or errortrack.new_issues|regressed_issues|issues|error_rate_ratio
.shiploop.yml:5:68: environments[0].verify.conditions[0].scope: unknown field (known fields: metric, on_release_mismatch, operator, require_evidence, threshold)
.shiploop.yml:6:5: environments[1].name: duplicate environment name "prod" (first at line 3)
.shiploop.yml:8:11: environments[1].auto: expected true or false, got the string "yes"
.shiploop.yml:9:19: environments[1].on_interrupt: unknown on_interrupt "retry" (one of stop, rerun)
.shiploop.yml:12:36: gate.conditions[0].operator: unknown operator "=>" (did you mean ">"?)
.shiploop.yml:12:53: gate.conditions[0].threshold: expected a number, got a string`,
	},
	{
		name: "unknown gate metric",
		yaml: "steps: {a: {commands: x}}\ngate:\n  conditions:\n    - {metric: coverge, operator: \">=\", threshold: 80}\n    - {metric: tests_failed, operator: \"==\", threshold: 0, scope: new_code}\n  reports: {pmd: [x.xml]}\n",
		want: `.shiploop.yml:4:16: gate.conditions[0].metric: unknown metric "coverge" (did you mean "coverage"?)
.shiploop.yml:5:16: gate.conditions[1].metric: metric "tests_failed" has no new_code scope
.shiploop.yml:6:13: gate.reports.pmd: unknown field (known fields: checkstyle, flake8, golangci_lint, metrics, sarif)`,
	},
	{
		name: "empty gate and a bad merge",
		yaml: "gate: {conditions: []}\nsteps:\n  - <<: [1]\n    name: a\n    commands: x\n",
		want: ".shiploop.yml:1:20: gate.conditions: must have at least one condition\n" +
			".shiploop.yml:3:10: steps[0]: << merges a mapping or a list of mappings, not an integer",
		schema: notJSON,
	},
	{
		name: "merge bomb",
		yaml: `steps:
  a: {commands: x}
  b: &b1 {commands: x}
  c: &b2 {<<: [*b1, *b1, *b1, *b1, *b1, *b1, *b1, *b1, *b1, *b1]}
  d: &b3 {<<: [*b2, *b2, *b2, *b2, *b2, *b2, *b2, *b2, *b2, *b2]}
  e: &b4 {<<: [*b3, *b3, *b3, *b3, *b3, *b3, *b3, *b3, *b3, *b3]}
  f: &b5 {<<: [*b4, *b4, *b4, *b4, *b4, *b4, *b4, *b4, *b4, *b4]}
  g: &b6 {<<: [*b5, *b5, *b5, *b5, *b5, *b5, *b5, *b5, *b5, *b5]}
  h: &b7 {<<: [*b6, *b6, *b6, *b6, *b6, *b6, *b6, *b6, *b6, *b6]}
`,
		want:   ".shiploop.yml: too many YAML nodes (more than 100000, counting alias expansions)",
		schema: notJSON,
	},
	{
		name:   "recursive merge",
		yaml:   "steps:\n  a: &a {commands: x, <<: *a}\n",
		want:   ".shiploop.yml: too many YAML nodes (more than 100000, counting alias expansions)",
		schema: notJSON,
	},
	{
		name: "typo and an unknown step together",
		yaml: "steps:\n  - name: a\n    commands: [x]\n  - name: b\n    commands: [x]\n    depends_on: [a]\n  - name: c\n    comands: [x]\n    depends_on: [bb]\n",
		want: `.shiploop.yml:8:5: steps[2].comands: unknown field (did you mean "commands"?)` + "\n" +
			`.shiploop.yml:9:18: steps[2].depends_on[0]: unknown step "bb" (did you mean "b"?)`,
	},
}

func TestParseInvalid(t *testing.T) {
	for _, tc := range invalidCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(file, []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse accepted the file: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with its error")
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("error is %T, want *ValidationError", err)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error mismatch\n got: %s\nwant: %s", got, tc.want)
			}
			for _, fe := range verr.Errors {
				if fe.File != file {
					t.Errorf("FieldError.File = %q", fe.File)
				}
			}
		})
	}
}

func TestFieldErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		err  FieldError
		want string
	}{
		{FieldError{File: "f.yml", Line: 7, Column: 5, Field: "steps[1].depends_on[0]", Msg: `unknown step "lnt"`}, `f.yml:7:5: steps[1].depends_on[0]: unknown step "lnt"`},
		{FieldError{File: "f.yml", Line: 7, Msg: "bad"}, "f.yml:7: bad"},
		{FieldError{File: "f.yml", Msg: "bad"}, "f.yml: bad"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestErrorsAsFieldError(t *testing.T) {
	_, err := Parse(file, []byte("steps:\n  - name: a\n    comands: [x]\n"))
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("errors.As(%v, *FieldError) = false", err)
	}
	if fe.Line != 3 || fe.Column != 5 || fe.Field != "steps[0].comands" {
		t.Errorf("FieldError = %+v", fe)
	}
}

func TestTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("steps:\n")
	for range 60 {
		b.WriteString("  - {name: a, commands: x, bad: 1}\n")
	}
	_, err := Parse(file, []byte(b.String()))
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v", err)
	}
	if len(verr.Errors) != maxErrors+1 {
		t.Fatalf("got %d errors, want %d", len(verr.Errors), maxErrors+1)
	}
	if last := verr.Errors[maxErrors].Error(); !strings.HasSuffix(last, "more problems not shown") {
		t.Errorf("last error = %q", last)
	}
}

func TestPositionsAfterParse(t *testing.T) {
	cfg, err := Parse(file, []byte(fullYAML))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File() != file {
		t.Errorf("File() = %q", cfg.File())
	}
	if p, ok := cfg.Position("steps[1].secrets[0]"); !ok || p != (Position{Line: 22, Column: 15}) {
		t.Errorf("Position(steps[1].secrets[0]) = %v, %v", p, ok)
	}
	var refs []string
	for _, r := range cfg.SecretRefs() {
		refs = append(refs, r.Name+"@"+r.Field)
	}
	wantRefs := []string{
		"REGISTRY_TOKEN@secrets[0]",
		"NPM_TOKEN@steps[1].secrets[0]",
		"DEPLOY_KEY@environments[0].secrets[0]",
	}
	if !reflect.DeepEqual(refs, wantRefs) {
		t.Errorf("SecretRefs = %v, want %v", refs, wantRefs)
	}
	fe := cfg.FieldError("steps[1].secrets[0]", `secret "NPM_TOKEN" is not defined for this repository`)
	if want := `.shiploop.yml:22:15: steps[1].secrets[0]: secret "NPM_TOKEN" is not defined for this repository`; fe.Error() != want {
		t.Errorf("FieldError = %q, want %q", fe.Error(), want)
	}
}

func TestFileTooLarge(t *testing.T) {
	data := []byte("steps: {a: {commands: x}}\n" + strings.Repeat("#", maxFileSize))
	_, err := Parse(file, data)
	if err == nil || err.Error() != ".shiploop.yml: file is larger than 1048576 bytes" {
		t.Errorf("err = %v", err)
	}
}

// FuzzParse checks that no input makes Parse panic, and that it returns
// either a config or a *ValidationError whose problems all name the file.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fullYAML))
	for _, tc := range validCases {
		f.Add([]byte(tc.yaml))
	}
	for _, tc := range invalidCases {
		f.Add([]byte(tc.yaml))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(file, data)
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without an error")
			}
			cfg.BuildSteps()
			cfg.TestSteps()
			cfg.MatrixCombinations()
			cfg.SecretRefs()
			cfg.Selected(Context{Event: "push", Branch: "main", ChangedPaths: []string{"a/b.go"}})
			return
		}
		var verr *ValidationError
		if !errors.As(err, &verr) || len(verr.Errors) == 0 {
			t.Fatalf("error %T %v is not a non-empty *ValidationError", err, err)
		}
		for _, fe := range verr.Errors {
			if fe.File != file || fe.Msg == "" {
				t.Fatalf("bad FieldError %+v", fe)
			}
		}
	})
}
