package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// schemaFile is the published JSON Schema, relative to this package.
const schemaFile = "../../../docs/shiploop.schema.json"

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	sch, err := c.Compile(schemaFile)
	if err != nil {
		t.Fatalf("compile %s: %v", schemaFile, err)
	}
	return sch
}

// yamlToJSON gives the JSON value a YAML file stands for, as an editor's
// YAML language server sees it.
func yamlToJSON(data []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	b, err := json.Marshal(normalize(v))
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = normalize(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[fmt.Sprint(k)] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = normalize(e)
		}
		return out
	case time.Time:
		return v.Format(time.RFC3339Nano)
	}
	return v
}

// agreementCases are small files on which parser and schema must agree.
var agreementCases = []struct {
	yaml  string
	valid bool
}{
	{"steps: {a: {commands: x}}", true},
	{"steps: [{name: a, commands: x}]", true},
	{"steps: [{commands: x}]", false},                           // list form needs a name
	{"steps: {a: {commands: ''}}", false},                       // blank command
	{"steps: {a: {commands: ['  ']}}", false},                   // blank command
	{"steps: {A: {commands: x}}", false},                        // name pattern
	{"steps: {a.b-c_1: {commands: x}}", true},                   // name pattern
	{"steps: {a: {commands: x, timeout: 90}}", true},            // seconds
	{"steps: {a: {commands: x, timeout: 0}}", false},            // not positive
	{"steps: {a: {commands: x, timeout: 1h30m}}", true},         // Go duration
	{"steps: {a: {commands: x, timeout: '90'}}", false},         // a string needs a unit
	{"steps: {a: {commands: x, failure: cancel}}", false},       // fail or ignore
	{"steps: {a: {commands: x, when: {branch: main}}}", true},   // a single pattern
	{"steps: {a: {commands: x, when: {event: deploy}}}", false}, // unknown event
	{"steps: {a: {commands: x, when: {paths: ['!']}}}", false},  // empty pattern
	{"steps: {a: {commands: x, env: {A: 1, B: true, C: x}}}", true},
	{"steps: {a: {commands: x, env: {A: null}}}", false},
	{"steps: {a: {commands: x, env: {A-B: x}}}", false},
	{"steps: {a: {commands: x, secrets: [A, A]}}", false},
	{"steps: {a: {commands: x, artifacts: ['/abs']}}", false},
	{"steps: {a: {commands: x, artifacts: ['a/../../b']}}", false},
	{"steps: {a: {commands: x, artifacts: ['a/..b/c']}}", true},
	{"steps: {a: {commands: x, cache: {key_files: [go.sum]}}}", false}, // paths required
	{"steps: {a: {commands: x, cache: {paths: []}}}", false},
	{"version: '1'\nsteps: {a: {commands: x}}", false},
	{"version: 1\nsteps: {a: {commands: x}}", true},
	{"matrix: {GO: []}\nsteps: {a: {commands: x}}", false},
	{"matrix: {GO: [1, 1]}\nsteps: {a: {commands: x}}", false},
	{"matrix: {exclude: [{A: 1}]}\nsteps: {a: {commands: x}}", false},
	{"matrix: {include: [{A: 1}]}\nsteps: {a: {commands: x}}", true},
	{"test: {steps: {a: {commands: x}}, shards: 65}\nsteps: {a: {commands: x}}", false},
	{"test: {steps: {a: {commands: x}}, services: [{name: db, command: x, ready: {tcp: ':5432'}}]}\nsteps: {a: {commands: x}}", true},
	{"test: {steps: {a: {commands: x}}, services: [{name: db, command: x, ready: {tcp: 'h:70000'}}]}\nsteps: {a: {commands: x}}", false},
	{"test: {steps: {a: {commands: x}}, services: [{name: db, command: x, ready: {tcp: '[::1]:5432'}}]}\nsteps: {a: {commands: x}}", true},
	{"test: {reports: {junit: [a.xml]}}\nsteps: {a: {commands: x}}", false}, // test needs steps
	{"environments: [{name: prod, steps: {d: {commands: x}}, approval: {required: 1}, auto: false}]\nsteps: {a: {commands: x}}", true},
	{"environments: [{name: prod, steps: {d: {commands: x}}, verify: {window: 5m, conditions: [{metric: errortrack.issues, operator: '<', threshold: 1}]}}]\nsteps: {a: {commands: x}}", true},
	{"environments: [{name: prod, steps: {d: {commands: x}}, verify: {window: 5m, conditions: []}}]\nsteps: {a: {commands: x}}", false},
	{"environments: [{name: prod, steps: {d: {commands: x}}, verify: {window: 5m, conditions: [{metric: errortrack.new_issues, operator: '==', threshold: 0, on_release_mismatch: ignore, require_evidence: true}]}}]\nsteps: {a: {commands: x}}", true},
	{"environments: [{name: prod, steps: {d: {commands: x}}, verify: {window: 5m, conditions: [{metric: errortrack.new_issues, operator: '==', threshold: 0, on_release_mismatch: maybe}]}}]\nsteps: {a: {commands: x}}", false},
	{"environments: [{name: prod, steps: {d: {commands: x}}, verify: {window: 5m, conditions: [{metric: errortrack.new_issues, operator: '==', threshold: 0, require_evidence: sometimes}]}}]\nsteps: {a: {commands: x}}", false},
	{"environments: [{name: prod, steps: {d: {commands: x}}, verify: {window: 5m, conditions: [{metric: errortrack.new_issues, operator: '==', threshold: 0, scope: new_code}]}}]\nsteps: {a: {commands: x}}", false},
	{"environments: [{name: prod, steps: {d: {commands: x}}, verify: {window: 5m, conditions: [{metric: errortrack.issues, operator: '<', threshold: 1}], on_failure: retry}}]\nsteps: {a: {commands: x}}", false},
	// Monitors, alerts, block_promotion_on.
	{"environments: [{name: prod, steps: {d: {commands: x}}, block_promotion_on: [up], monitors: [{name: up, http: {url: 'https://x/healthz', expect: 200}, every: 30s, fail_after: 2}, {name: err, check: 'errortrack.error_rate_ratio <= 2', every: 1m}, {name: lat, graphite: {target: a.b, max: 250, warn: 200}}, {name: disk, command: [./disk.sh], every: 5m}], alerts: [{webhook: 'https://hooks.slack.com/x', format: slack, renotify: 4h}, {webhook: 'https://h/x'}]}]\nsteps: {a: {commands: x}}", true},
	{"environments: [{name: prod, steps: {d: {commands: x}}, block_promotion_on: all, monitors: [{name: up, http: {url: 'https://x'}}]}]\nsteps: {a: {commands: x}}", true},
	{"environments: [{name: prod, steps: {d: {commands: x}}, monitors: [{name: up, every: 1m}]}]\nsteps: {a: {commands: x}}", false},
	{"environments: [{name: prod, steps: {d: {commands: x}}, monitors: [{name: up, http: {url: 'https://x'}, check: 'errortrack.issues < 1'}]}]\nsteps: {a: {commands: x}}", false},
	{"environments: [{name: prod, steps: {d: {commands: x}}, monitors: [{name: up, http: {url: 'https://x'}, fail_after: 0}]}]\nsteps: {a: {commands: x}}", false},
	{"environments: [{name: prod, steps: {d: {commands: x}}, monitors: [{name: g, graphite: {target: a.b}}]}]\nsteps: {a: {commands: x}}", false},
	{"environments: [{name: prod, steps: {d: {commands: x}}, alerts: [{webhook: 'https://x', format: teams}]}]\nsteps: {a: {commands: x}}", false},
	{"environments: [{name: prod, steps: {d: {commands: x}}, alerts: [{format: slack}]}]\nsteps: {a: {commands: x}}", false},
	{"gate: {conditions: [{metric: coverage, operator: '>=', threshold: 80.5, scope: overall}]}\nsteps: {a: {commands: x}}", true},
	{"gate: {conditions: [{metric: coverage, operator: '>=', threshold: 80, scope: all}]}\nsteps: {a: {commands: x}}", false},
	{"gate: {conditions: [{metric: coverage, operator: '>='}]}\nsteps: {a: {commands: x}}", false},
	{"gate: {conditions: [{metric: '', operator: '>=', threshold: 1}]}\nsteps: {a: {commands: x}}", false},
	{"gate: {conditions: [{metric: coverage, operator: '>=', threshold: 80}], expression: 'new_issues == 0', min_new_lines: 10, reports: {sarif: [lint.sarif], flake8: [flake8.txt]}}\nsteps: {a: {commands: x}}", true},
	{"gate: {conditions: [{metric: coverage, operator: '>=', threshold: 80}], reports: {pmd: [x.xml]}}\nsteps: {a: {commands: x}}", false},
	{"gate: {conditions: [{metric: coverage, operator: '>=', threshold: 80}], min_new_lines: -1}\nsteps: {a: {commands: x}}", false},
	{"gate: {conditions: [{metric: coverage, operator: '>=', threshold: 80, on_no_data: pass}], on_no_data: fail}\nsteps: {a: {commands: x}}", true},
	{"gate: {conditions: [{metric: coverage, operator: '>=', threshold: 80}], on_no_data: skip}\nsteps: {a: {commands: x}}", false},
	{"gate: {conditions: [{metric: coverage, operator: '>=', threshold: 80, on_no_data: maybe}]}\nsteps: {a: {commands: x}}", false},
	// Containers: image and pull (pipeline and step), cpus, memory; services with image.
	{"image: debian:bookworm\npull: never\nsteps: {a: {commands: x, image: shiploop-redis:local, pull: if-not-present, cpus: 1.5, memory: 512m}}", true},
	{"steps: {a: {commands: x, memory: 1073741824, cpus: 2}}", true},
	{"steps: {a: {commands: x, pull: sometimes}}", false},
	{"pull: sometimes\nsteps: {a: {commands: x}}", false},
	{"image: ''\nsteps: {a: {commands: x}}", false},
	{"steps: {a: {commands: x, memory: lots}}", false},
	{"steps: {a: {commands: x, cpus: -1}}", false},
	{"steps: {a: {commands: x}}\ntest: {steps: {t: {commands: x}}, services: [{name: redis, image: shiploop-redis:local, command: 'redis-server --protected-mode no', ready: {tcp: 'redis:6379'}}]}", true},
	{"steps: {a: {commands: x}}\ntest: {steps: {t: {commands: x}}, services: [{name: redis, image: r:local, pull: never, ready: {command: 'redis-cli ping'}}]}", true},
	{"steps: {a: {commands: x}}\ntest: {steps: {t: {commands: x}}, services: [{name: redis, ready: {tcp: 'redis:6379'}}]}", false},
	{"steps: {a: {commands: x}}\ntest: {steps: {t: {commands: x}}, services: [{name: redis, image: r, ready: {}}]}", false},
	{"steps: {a: {commands: x}}\nenvironments: [{name: prod, steps: [{name: d, commands: [x]}]}, {name: stg, steps: [{name: d, commands: [x]}]}]\nrunbooks: [{name: restart, environment: prod, options: [{name: service, type: enum, values: [web]}, {name: drain, type: bool, default: false}], steps: [{name: r, commands: [x]}]}, {name: refresh, kind: data, from: prod, to: stg, steps: [{name: c, commands: [x]}]}]", true},
	{"steps: {a: {commands: x}}\nrunbooks: [{name: r, colour: red, steps: [{name: s, commands: [x]}]}]", false},
	{"steps: {a: {commands: x}}\nrunbooks: [{name: r, kind: data, from: prod, steps: [{name: s, commands: [x]}]}]", false},
	{"steps: {a: {commands: x}}\nrunbooks: [{name: r, options: [{name: s, type: float}], steps: [{name: s, commands: [x]}]}]", false},
}

// TestSchemaAgreesWithParser validates every example document with both the
// Go parser and the published JSON Schema.
func TestSchemaAgreesWithParser(t *testing.T) {
	sch := compileSchema(t)
	check := func(t *testing.T, doc string, wantValid bool) {
		t.Helper()
		inst, err := yamlToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("YAML to JSON: %v", err)
		}
		if err := sch.Validate(inst); (err == nil) != wantValid {
			t.Errorf("schema valid = %v, want %v: %v\n%s", err == nil, wantValid, err, doc)
		}
	}
	for _, tc := range validCases {
		t.Run("valid/"+tc.name, func(t *testing.T) { check(t, tc.yaml, true) })
	}
	for _, tc := range invalidCases {
		switch tc.schema {
		case schemaRejects:
			t.Run("invalid/"+tc.name, func(t *testing.T) { check(t, tc.yaml, false) })
		case parserOnly:
			// The schema cannot see references, so it accepts the file;
			// this documents exactly which checks are the parser's alone.
			t.Run("parser-only/"+tc.name, func(t *testing.T) { check(t, tc.yaml, true) })
		}
	}
	for i, tc := range agreementCases {
		t.Run(fmt.Sprintf("agree/%d", i), func(t *testing.T) {
			_, err := Parse(file, []byte(tc.yaml))
			if (err == nil) != tc.valid {
				t.Errorf("parser valid = %v, want %v: %v\n%s", err == nil, tc.valid, err, tc.yaml)
			}
			check(t, tc.yaml, tc.valid)
		})
	}
}
