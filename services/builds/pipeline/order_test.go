package pipeline

import (
	"reflect"
	"testing"
)

func mustParse(t *testing.T, yaml string) *Config {
	t.Helper()
	cfg, err := Parse(file, []byte(yaml))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func stepNames(steps []Step) []string {
	out := []string{}
	for _, s := range steps {
		out = append(out, s.Name)
	}
	return out
}

func TestBuildSteps(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{
			name: "no dependencies keeps file order",
			yaml: "steps:\n  c: {commands: x}\n  a: {commands: x}\n  b: {commands: x}\n",
			want: []string{"c", "a", "b"},
		},
		{
			name: "a dependency written later comes first",
			yaml: "steps:\n  - {name: test, commands: x, depends_on: [build]}\n  - {name: build, commands: x}\n",
			want: []string{"build", "test"},
		},
		{
			name: "file order among ready steps",
			yaml: `steps:
  - {name: package, commands: x, depends_on: [build, docs]}
  - {name: lint, commands: x}
  - {name: build, commands: x, depends_on: [lint]}
  - {name: docs, commands: x}
  - {name: vet, commands: x}
`,
			want: []string{"lint", "build", "docs", "package", "vet"},
		},
		{
			name: "diamond",
			yaml: `steps:
  d: {commands: x, depends_on: [b, c]}
  c: {commands: x, depends_on: [a]}
  b: {commands: x, depends_on: [a]}
  a: {commands: x}
`,
			want: []string{"a", "c", "b", "d"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, tc.yaml)
			if got := stepNames(cfg.BuildSteps()); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("BuildSteps = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOrderSurvivesCycles(t *testing.T) {
	steps := []Step{
		{Name: "a", DependsOn: []string{"b"}},
		{Name: "b", DependsOn: []string{"a"}},
		{Name: "c"},
		{Name: "d", DependsOn: []string{"c", "missing"}},
	}
	if got, want := stepNames(Order(steps)), []string{"c", "d", "a", "b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Order = %v, want %v", got, want)
	}
}

func TestTestSteps(t *testing.T) {
	cfg := mustParse(t, "steps: {a: {commands: x}}\n")
	if cfg.TestSteps() != nil {
		t.Errorf("TestSteps without a test section = %v", cfg.TestSteps())
	}
	cfg = mustParse(t, "steps: {a: {commands: x}}\ntest:\n  steps:\n    - {name: e2e, commands: x, depends_on: [unit]}\n    - {name: unit, commands: x}\n")
	if got, want := stepNames(cfg.TestSteps()), []string{"unit", "e2e"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TestSteps = %v, want %v", got, want)
	}
	if cfg.Test.Shards != 1 {
		t.Errorf("default Shards = %d, want 1", cfg.Test.Shards)
	}
}

func TestSelectedRewiresSkippedDependencies(t *testing.T) {
	cfg := mustParse(t, `steps:
  - {name: lint, commands: x}
  - {name: gen, commands: x, depends_on: [lint], when: {event: manual}}
  - {name: build, commands: x, depends_on: [gen]}
  - {name: docs, commands: x, when: {paths: ["docs/**"]}}
  - {name: publish, commands: x, depends_on: [build, docs]}
`)
	got := cfg.Selected(Context{Event: "push", Branch: "main", ChangedPaths: []string{"main.go"}})
	deps := map[string][]string{}
	for _, s := range got {
		deps[s.Name] = s.DependsOn
	}
	want := map[string][]string{
		"lint":    nil,
		"build":   {"lint"}, // gen is skipped: build waits for what gen waited for
		"publish": {"build"},
	}
	if !reflect.DeepEqual(deps, want) {
		t.Errorf("Selected dependencies = %v, want %v", deps, want)
	}
	// The config itself is unchanged.
	if d := cfg.Steps[2].DependsOn; !reflect.DeepEqual(d, []string{"gen"}) {
		t.Errorf("config changed: build depends on %v", d)
	}
}

func TestMatrixCombinations(t *testing.T) {
	cfg := mustParse(t, fullYAML)
	want := []map[string]string{
		{"GO": "1.25", "DB": "postgres"},
		{"GO": "1.26", "DB": "postgres"},
		{"GO": "1.26", "DB": "sqlite"},
		{"GO": "1.27", "DB": "postgres"},
	}
	if got := cfg.MatrixCombinations(); !reflect.DeepEqual(got, want) {
		t.Errorf("MatrixCombinations = %v, want %v", got, want)
	}

	cfg = mustParse(t, "steps: {a: {commands: x}}\n")
	if got := cfg.MatrixCombinations(); !reflect.DeepEqual(got, []map[string]string{{}}) {
		t.Errorf("MatrixCombinations without a matrix = %v, want one empty combination", got)
	}

	// An include equal to a product combination is not run twice; a partial
	// exclude removes every combination it matches.
	cfg = mustParse(t, `matrix:
  OS: [linux, darwin]
  ARCH: [amd64, arm64]
  exclude: [{OS: darwin}]
  include: [{OS: linux, ARCH: amd64}, {OS: windows, ARCH: amd64}]
steps: {a: {commands: x}}
`)
	want = []map[string]string{
		{"OS": "linux", "ARCH": "amd64"},
		{"OS": "linux", "ARCH": "arm64"},
		{"OS": "windows", "ARCH": "amd64"},
	}
	if got := cfg.MatrixCombinations(); !reflect.DeepEqual(got, want) {
		t.Errorf("MatrixCombinations = %v, want %v", got, want)
	}
}

func TestOperatorHolds(t *testing.T) {
	for _, tc := range []struct {
		op   Operator
		v, t float64
		want bool
	}{
		{OpLess, 1, 2, true}, {OpLess, 2, 2, false},
		{OpLessEqual, 2, 2, true}, {OpGreater, 3, 2, true},
		{OpGreaterEqual, 80, 80, true}, {OpGreaterEqual, 79.9, 80, false},
		{OpEqual, 0, 0, true}, {OpNotEqual, 0, 0, false},
		{Operator("~"), 0, 0, false},
	} {
		if got := tc.op.Holds(tc.v, tc.t); got != tc.want {
			t.Errorf("%v %s %v = %v, want %v", tc.v, tc.op, tc.t, got, tc.want)
		}
	}
}

func TestStepEnvAndSecrets(t *testing.T) {
	cfg := mustParse(t, `env: {A: pipeline, B: pipeline, C: pipeline, D: pipeline}
secrets: [TOKEN]
matrix: {B: [matrix]}
steps:
  - {name: build, commands: x, env: {D: step}, secrets: [NPM]}
environments:
  - name: prod
    variables: {C: environment, D: environment}
    secrets: [DEPLOY_KEY]
    steps: {deploy: {commands: x, secrets: [TOKEN]}}
`)
	combo := cfg.MatrixCombinations()[0]
	got := cfg.StepEnv(cfg.Steps[0], combo, nil)
	want := map[string]string{"A": "pipeline", "B": "matrix", "C": "pipeline", "D": "step"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("build StepEnv = %v, want %v", got, want)
	}
	prod := &cfg.Environments[0]
	got = cfg.StepEnv(prod.Steps[0], nil, prod)
	want = map[string]string{"A": "pipeline", "B": "pipeline", "C": "environment", "D": "environment"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("deploy StepEnv = %v, want %v", got, want)
	}
	if got, want := cfg.StepSecrets(cfg.Steps[0], nil), []string{"NPM", "TOKEN"}; !reflect.DeepEqual(got, want) {
		t.Errorf("build StepSecrets = %v, want %v", got, want)
	}
	if got, want := cfg.StepSecrets(prod.Steps[0], prod), []string{"DEPLOY_KEY", "TOKEN"}; !reflect.DeepEqual(got, want) {
		t.Errorf("deploy StepSecrets = %v, want %v", got, want)
	}
}
