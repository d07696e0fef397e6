package builds

import (
	"testing"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/builds/pipeline"
)

// TestGateBuildOnNoData: the gate's and a condition's on_no_data reach
// gates in build.created's policy.
func TestGateBuildOnNoData(t *testing.T) {
	cfg, err := pipeline.Parse(".shiploop.yml", []byte(`steps:
  - name: build
    commands: [make]
gate:
  on_no_data: pass
  conditions:
    - {metric: tests_failed, operator: "==", threshold: 0, on_no_data: fail}
    - {metric: coverage, operator: ">=", threshold: 80}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := gateBuild(&eventsv1.Change{}, cfg).GetPolicy()
	if p.GetOnNoData() != "pass" || p.GetConditions()[0].GetOnNoData() != "fail" || p.GetConditions()[1].GetOnNoData() != "" {
		t.Errorf("policy %v", p)
	}
	if _, err := pipeline.Parse(".shiploop.yml", []byte("steps:\n  - name: b\n    commands: [make]\ngate:\n  on_no_data: skip\n  conditions:\n    - {metric: coverage, operator: \">=\", threshold: 80}\n")); err == nil {
		t.Error("on_no_data: skip accepted")
	}
}
