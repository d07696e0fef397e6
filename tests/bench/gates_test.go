package bench

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/gatepolicy"
	"github.com/shiploop/shiploop/services/gates/policy"
	"github.com/shiploop/shiploop/services/gates/report"
)

// sarifReport makes a SARIF log of n results over n/50 files; shift moves
// every line (as an edit above would) and fresh replaces that many results
// with new ones.
func sarifReport(n, shift, fresh int) []byte {
	type res = map[string]any
	results := make([]res, n)
	for i := range n {
		msg := fmt.Sprintf("variable v%d is unused", i)
		if i < fresh {
			msg = fmt.Sprintf("new problem %d", i)
		}
		results[i] = res{"ruleId": fmt.Sprintf("R%d", i%40), "message": map[string]string{"text": msg},
			"locations": []any{map[string]any{"physicalLocation": map[string]any{
				"artifactLocation": map[string]string{"uri": fmt.Sprintf("pkg/f%d.go", i/50)},
				"region":           map[string]int{"startLine": i%50*3 + 1 + shift, "startColumn": 2}}}}}
	}
	b, _ := json.Marshal(map[string]any{"version": "2.1.0", "runs": []any{map[string]any{
		"tool": map[string]any{"driver": map[string]any{"name": "bench"}}, "results": results}}})
	return b
}

// BenchmarkGate100k: a SARIF report with 100,000 findings judged against a
// base analysis of 100,000 (stored as packed fingerprints, as the service
// keeps them): parse, fingerprint, new-vs-base, default policy. Goal ≤ 1 s.
func BenchmarkGate100k(b *testing.B) {
	const n = 100_000
	baseFs, err := report.Parse("sarif", "base.sarif", sarifReport(n, 0, 0))
	if err != nil {
		b.Fatal(err)
	}
	stored := report.EncodeFingerprints(baseFs)
	head := sarifReport(n, 7, 25) // every line moved, 25 new findings
	pol := &policy.Policy{}
	for _, c := range gatepolicy.Default() {
		pol.Conditions = append(pol.Conditions, policy.Condition{Condition: c})
	}
	if err := policy.Compile(pol, "", 0); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	var newIssues int
	for b.Loop() {
		start := time.Now()
		fs, err := report.Parse("sarif", "head.sarif", head)
		if err != nil {
			b.Fatal(err)
		}
		packed, err := report.DecodeFingerprints(stored)
		if err != nil {
			b.Fatal(err)
		}
		base := make(report.Base, len(packed))
		for _, p := range packed {
			base[p.Fingerprint] = struct{}{}
		}
		newIssues = 0
		for i := range fs {
			if base.IsNew(&fs[i]) {
				newIssues++
			}
		}
		m := policy.Measures{Overall: map[string]float64{"issues": float64(len(fs)), "tests_failed": 0}, NewCode: map[string]float64{"issues": float64(newIssues)}}
		ev := pol.Evaluate(m, 100)
		if ev.Status != policy.Failed {
			b.Fatalf("status %s", ev.Status)
		}
		took = append(took, time.Since(start))
	}
	if newIssues != 25 {
		b.Fatalf("%d new issues, want 25 (fingerprints must survive moved lines)", newIssues)
	}
	best, worst := took[0], took[0]
	for _, d := range took {
		best, worst = min(best, d), max(worst, d)
	}
	verdict := "met"
	if best > time.Second {
		verdict = "missed"
	}
	body := fmt.Sprintf("SARIF report of %d findings (%.1f MiB, every line moved, 25 new) against a base analysis of %d stored fingerprints, default policy; in process, %d runs.\n\n"+
		"| measure | result | goal | verdict |\n|---|---|---|---|\n"+
		"| parse + fingerprint + new-vs-base + evaluate, best / worst | %s / %s | ≤ 1 s | %s |\n"+
		"| new findings found | %d of 25 | all | %s |\n",
		n, float64(len(head))/(1<<20), n, len(took), best.Round(time.Millisecond), worst.Round(time.Millisecond), verdict, newIssues, map[bool]string{true: "met", false: "missed"}[newIssues == 25])
	if err := writeSection("gates-100k", strings.TrimSpace(body)); err != nil {
		b.Fatal(err)
	}
}
