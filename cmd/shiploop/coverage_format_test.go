package main

import (
	"testing"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestCoverageFormat: the CLI shows coverage as the dashboards and the gate
// do, with one decimal (49.96 → 50.0%).
func TestCoverageFormat(t *testing.T) {
	if got := coveragePct(&eventsv1.CoverageSummary{LinesCovered: 4996, LinesTotal: 10000}); got != "50.0%" {
		t.Errorf("coveragePct = %q, want 50.0%%", got)
	}
	if got := coverageLine(&eventsv1.CoverageSummary{LinesCovered: 673, LinesTotal: 1000, PatchCovered: 1, PatchTotal: 3}); got != "67.3% of lines (673/1000), patch 33.3% (1/3)" {
		t.Errorf("coverageLine = %q", got)
	}
}
