package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestGate: a build whose step writes a SARIF report gets its gate judged
// from the .shiploop.yml policy: gate.evaluated is published, and
// `shiploop gate show` prints the conditions with value, threshold and
// verdict, and the new finding.
func TestGate(t *testing.T) {
	inst := startUp(t)
	sarif := `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"vet","rules":[{"id":"unusedvar","defaultConfiguration":{"level":"error"}}]}},"results":[{"ruleId":"unusedvar","message":{"text":"x declared and not used"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"main.go"},"region":{"startLine":7}}}]}]}]}`
	repo := newRepo(t, map[string]string{
		"vet.sarif": sarif,
		".shiploop.yml": `steps:
  - name: lint
    commands: [mkdir -p out, cp vet.sarif out/vet.sarif]
    artifacts: [out/vet.sarif]
gate:
  conditions:
    - {metric: issues_error, operator: "==", threshold: 0}
    - {metric: coverage, operator: ">=", threshold: 80, scope: new_code}
  expression: issues < 10
  reports:
    sarif: ["out/*.sarif"]
`})
	secret := inst.register(t, "acme/gate", repo)
	w := inst.watch(t, "acme/gate")
	inst.push(t, "acme/gate", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))
	evs := w.until("gate.evaluated", 60*time.Second)
	ge := payload(t, evs[len(evs)-1], &eventsv1.GateEvaluated{})
	if ge.GetStatus() != eventsv1.GateStatus_GATE_STATUS_FAILED || ge.GetPolicySource() != "file" || ge.GetIssues() != 1 {
		t.Fatalf("gate %v from %s, %d issues: %s", ge.GetStatus(), ge.GetPolicySource(), ge.GetIssues(), ge.GetSummary())
	}
	// The coverage condition has no data (no test run): it fails too, saying so.
	if ge.GetSummary() != "gate failed: 1 of 3 conditions met; issues error 1 (want == 0), coverage on new code: no data (no coverage report arrived); set on_no_data: pass to allow" {
		t.Errorf("summary %q", ge.GetSummary())
	}

	out, err := exec.Command(binary, "gate", "--server", inst.GRPCAddr, "show", "acme/gate#1").CombinedOutput()
	if err != nil {
		t.Fatalf("gate show: %v\n%s", err, out)
	}
	for _, want := range []string{
		"gate FAILED (revision 1, policy from file)",
		"CONDITION", "issues_error", "1        == 0", "failed",
		"coverage", "new_code", "no data  >= 80      no_data (no coverage report arrived)",
		"issues < 10", "true",
		"out/vet.sarif (sarif): 1 findings",
		"main.go:7:1  error  vet/unusedvar  x declared and not used",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("gate show lacks %q:\n%s", want, out)
		}
	}
	js, err := exec.Command(binary, "gate", "--server", inst.GRPCAddr, "--json", "show", ge.GetBuildId()).CombinedOutput()
	if err != nil {
		t.Fatalf("gate show --json: %v\n%s", err, js)
	}
	var doc struct {
		Result struct {
			Status     string `json:"status"`
			Conditions []struct {
				Metric, Verdict string
			} `json:"conditions"`
		} `json:"result"`
	}
	if err := json.Unmarshal(js, &doc); err != nil || doc.Result.Status != "GATE_STATUS_FAILED" || len(doc.Result.Conditions) != 3 {
		t.Errorf("--json: %v %s", err, js)
	}

	// An unknown metric is an error when the file is read, naming file and line.
	bad := filepath.Join(t.TempDir(), ".shiploop.yml")
	if err := os.WriteFile(bad, []byte("steps: {a: {commands: x}}\ngate:\n  conditions:\n    - {metric: coverge, operator: \">=\", threshold: 80}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lint, err := exec.Command(binary, "lint", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(lint), `:4:16: gate.conditions[0].metric: unknown metric "coverge" (did you mean "coverage"?)`) {
		t.Errorf("lint: %v\n%s", err, lint)
	}
}
