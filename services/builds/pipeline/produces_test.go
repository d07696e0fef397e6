package pipeline

import (
	"slices"
	"testing"
)

// TestParseProduces: produces: {image: ...} on build steps only, with
// image names docker build -t takes; parser and schema agree (test steps
// are the parser's alone: the schema shares their step shape with build
// steps).
func TestParseProduces(t *testing.T) {
	cfg, err := Parse(file, []byte("steps:\n  image: {commands: [docker build -t app .], produces: {image: app}}\n  two: {commands: x, produces: {image: [acme/api:ci, worker]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Steps[0].Produces; !slices.Equal(got, []string{"app"}) {
		t.Errorf("produces %v", got)
	}
	if got := cfg.Steps[1].Produces; !slices.Equal(got, []string{"acme/api:ci", "worker"}) {
		t.Errorf("produces %v", got)
	}
	sch := compileSchema(t)
	for _, tc := range []struct {
		yaml       string
		valid      bool
		parserOnly bool
	}{
		{"steps: {a: {commands: x, produces: {image: app}}}", true, false},
		{"steps: [{name: a, commands: x, produces: {image: [app, b/c:1.0]}}]", true, false},
		{"steps: {a: {commands: x, produces: {image: App}}}", false, false},
		{"steps: {a: {commands: x, produces: {image: []}}}", false, false},
		{"steps: {a: {commands: x, produces: {}}}", false, false},
		{"steps: {a: {commands: x, produces: {file: x}}}", false, false},
		{"steps: {a: {commands: x, produces: app}}", false, false},
		{"environments: [{name: s, steps: {a: {commands: x, produces: {image: app}}}}]", false, false},
		{"steps: {b: {commands: y}}\ntest: {steps: {a: {commands: x, produces: {image: app}}}}", false, true},
	} {
		_, perr := Parse(file, []byte(tc.yaml))
		if (perr == nil) != tc.valid {
			t.Errorf("parser valid = %v, want %v: %v\n%s", perr == nil, tc.valid, perr, tc.yaml)
		}
		inst, err := yamlToJSON([]byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		serr := sch.Validate(inst)
		if want := tc.valid || tc.parserOnly; (serr == nil) != want {
			t.Errorf("schema valid = %v, want %v: %v\n%s", serr == nil, want, serr, tc.yaml)
		}
	}
}
