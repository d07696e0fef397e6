package config

import (
	"strings"
	"testing"
)

// FuzzParse: any .shiploop.yml never panics the reader; what it accepts has
// named environments, each found again by its name.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`environments:
  - name: staging
    auto: true
    labels: [linux]
    variables: {URL: "http://127.0.0.1:1/health"}
    steps:
      deploy: {commands: "echo $SHIPLOOP_VERSION", secrets: [TOKEN]}
    verify:
      window: 2s
      conditions:
        - {metric: "http_status(${URL})", operator: "==", threshold: 200}
        - {metric: "errortrack.error_rate_ratio", operator: "<", threshold: 2}
  - name: production
    approval: true
    steps: {deploy: {commands: [make deploy]}}
  - name: preview
    steps: {deploy: {commands: up}, teardown: {commands: down}}
`))
	f.Add([]byte("environments: &a [*a]"))
	f.Add([]byte("environments:\n  - <<: {name: x}\n    steps: {a: {commands: y}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(".shiploop.yml", data)
		if err != nil {
			return
		}
		if cfg == nil {
			t.Fatal("nil config without an error")
		}
		for i := range cfg.Environments {
			name := cfg.Environments[i].Name
			if _, j := cfg.Environment(name); name == "" || j < 0 {
				t.Fatalf("environment %d %q accepted but not found by its name", i, name)
			}
		}
	})
}

func TestParseDetach(t *testing.T) {
	cfg, err := Parse(".shiploop.yml", []byte("environments: [{name: s, steps: {a: {commands: x, detach: true}, b: {commands: y}}}]"))
	if err != nil {
		t.Fatal(err)
	}
	if st := cfg.Environments[0].Steps; !st[0].Detach || st[1].Detach {
		t.Errorf("steps %+v, want a detached and b not", st)
	}
	if _, err := Parse(".shiploop.yml", []byte("environments: [{name: s, steps: {a: {commands: x, detach: sometimes}}}]")); err == nil {
		t.Error("detach: sometimes accepted")
	}
	// A container agent removes the step's container when it ends: detach
	// with the step's own image cannot do what it says.
	_, err = Parse(".shiploop.yml", []byte("environments: [{name: s, steps: {a: {commands: x, image: alpine, detach: true}}}]"))
	if err == nil || !strings.Contains(err.Error(), "detach has no effect in a container") || !strings.Contains(err.Error(), "docker run -d") {
		t.Errorf("detach with image: %v, want refused with the reason", err)
	}
}
