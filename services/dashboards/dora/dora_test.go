package dora

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/testfixture"
)

var day0 = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

func at(day int, hm string) time.Time {
	t, err := time.Parse("15:04", hm)
	if err != nil {
		panic(err)
	}
	return day0.AddDate(0, 0, day).Add(time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute)
}

// history is a scripted two weeks of one repository whose answers were
// worked out by hand (see the comments).
func history() Input {
	return Input{
		From: day0, To: day0.AddDate(0, 0, 14),
		Deploys: []Deploy{
			// Before the period: not counted.
			{ID: "d0", Repository: "acme/web", Release: "0.9.0", FinishedAt: at(-1, "10:00"), Succeeded: true, CommitTimes: []time.Time{at(-1, "09:00")}},
			// Lead times 2h and 1h.
			{ID: "d1", Repository: "acme/web", Release: "1.0.0", FinishedAt: at(0, "10:00"), Succeeded: true, CommitTimes: []time.Time{at(0, "08:00"), at(0, "09:00")}},
			// Lead 12h; an issue for 1.1.0 an hour later fails it; d3
			// restores it at 12:00 (before the issue's resolve at 13:00): 2h.
			{ID: "d2", Repository: "acme/web", Release: "1.1.0", FinishedAt: at(1, "10:00"), Succeeded: true, CommitTimes: []time.Time{at(0, "22:00")}},
			// Fix forward while d2 was failing: rework. Lead 30m.
			{ID: "d3", Repository: "acme/web", Release: "1.2.0", FinishedAt: at(1, "12:00"), Succeeded: true, CommitTimes: []time.Time{at(1, "11:30")}},
			// Rolled back 30m later: failed, restored in 30m. Lead 24h.
			{ID: "d4", Repository: "acme/web", Release: "1.3.0", FinishedAt: at(7, "10:00"), Succeeded: true, RolledBack: true, CommitTimes: []time.Time{at(6, "10:00")}},
			// The rollback: rework, no new commits, and no deploy (a
			// remediation is not a change).
			{ID: "d5", Repository: "acme/web", Release: "1.2.0", FinishedAt: at(7, "10:30"), Succeeded: true, Rollback: true},
			// A deploy that failed never ran in production: ignored.
			{ID: "d6", Repository: "acme/web", Release: "1.4.0", FinishedAt: at(8, "10:00"), Succeeded: false, CommitTimes: []time.Time{at(8, "09:00")}},
		},
		Issues: []Issue{
			{Repository: "acme/web", Release: "1.1.0", At: at(1, "11:00"), ResolvedAt: at(1, "13:00")},
			// Another repository's issue for the same release name: not ours.
			{Repository: "acme/api", Release: "1.0.0", At: at(0, "11:00")},
			// An issue for 1.0.0 two days later: outside the 24h window.
			{Repository: "acme/web", Release: "1.0.0", At: at(2, "11:00")},
		},
	}
}

func TestComputeScriptedHistory(t *testing.T) {
	r := Compute(history())
	check := func(name string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("deploys (the rollback left out)", r.Deploys, 4)
	check("rollbacks", r.Rollbacks, 1)
	check("failed deploys", r.FailedDeploys, 2)
	check("rework deploys", r.ReworkDeploys, 2)
	check("deploy days", r.DeployDays, 3)
	check("change failure rate (2 of 4)", r.ChangeFailureRate, 0.5)
	check("rework rate (2 of 4 deploys + 1 rollback)", r.ReworkRate, 0.4)
	check("lead time (median of 30m 1h 2h 12h 24h)", r.LeadTime, 2*time.Hour)
	check("lead time p90", r.LeadTimeP90, time.Duration(19.2*float64(time.Hour)))
	check("time to restore (median of 2h, 30m)", r.TimeToRestore, 75*time.Minute)
	check("median deploy days per week (2, 1)", r.MedianDaysPerWeek, 1.5)
	check("median weeks with a deploy", r.MedianWeeksWithDeploy, 1.0)
	if math.Abs(r.DeploysPerDay-4.0/14) > 1e-12 {
		t.Errorf("deploys per day = %v, want 4/14", r.DeploysPerDay)
	}
	want := map[string][4]string{
		"devlake_2023": {"high", "elite", "low", "high"},
		"devlake_2021": {"high", "high", "low", "high"},
		"fourkeys":     {"Weekly", "One day", "46-60%", "One day"},
	}
	for name, w := range want {
		p := Profiles[name]
		got := [4]string{p.DeploymentFrequency(r), p.LeadTime(r), p.ChangeFailureRate(r), p.TimeToRestore(r)}
		if got != w {
			t.Errorf("%s buckets %v, want %v", name, got, w)
		}
	}
}

// TestRollbackIsNoDeploy: one good release, one bad one and the rollback
// that remedied it are two deploys, one failed: a change failure rate of
// 1/2, not 1/3, and the rollback restores the bad one.
func TestRollbackIsNoDeploy(t *testing.T) {
	r := Compute(Input{From: day0, To: day0.AddDate(0, 0, 7), Deploys: []Deploy{
		{ID: "good", Repository: "acme/svc", Release: "1.0.0", FinishedAt: at(0, "10:00"), Succeeded: true, CommitTimes: []time.Time{at(0, "09:00")}},
		{ID: "bad", Repository: "acme/svc", Release: "1.1.0", FinishedAt: at(1, "10:00"), Succeeded: true, RolledBack: true, CommitTimes: []time.Time{at(1, "09:00")}},
		{ID: "rollback", Repository: "acme/svc", Release: "1.0.0", FinishedAt: at(1, "10:20"), Succeeded: true, Rollback: true},
	}})
	if r.Deploys != 2 || r.FailedDeploys != 1 || r.ChangeFailureRate != 0.5 || r.Rollbacks != 1 {
		t.Errorf("deploys %d, failed %d, change failure rate %v, rollbacks %d; want 2, 1, 0.5, 1", r.Deploys, r.FailedDeploys, r.ChangeFailureRate, r.Rollbacks)
	}
	if !r.HasTimeToRestore || r.TimeToRestore != 20*time.Minute {
		t.Errorf("time to restore %v (%v), want 20m by the rollback", r.TimeToRestore, r.HasTimeToRestore)
	}
	if math.Abs(r.DeploysPerDay-2.0/7) > 1e-12 || r.DeployDays != 2 {
		t.Errorf("deploys per day %v, deploy days %d; want 2/7, 2", r.DeploysPerDay, r.DeployDays)
	}
}

func TestComputeEmpty(t *testing.T) {
	r := Compute(Input{From: day0, To: day0.AddDate(0, 0, 7)})
	if r.Deploys != 0 || r.HasLeadTime || r.HasTimeToRestore || r.ChangeFailureRate != 0 {
		t.Fatalf("empty history: %+v", r)
	}
	for _, name := range ProfileNames {
		p := Profiles[name]
		if b := p.DeploymentFrequency(r) + p.LeadTime(r) + p.ChangeFailureRate(r) + p.TimeToRestore(r); b != "" {
			t.Errorf("%s rates no data as %q", name, b)
		}
	}
}

// TestProfilesMatchBenchmarks reads the thresholds of
// ../shared/testdata/dora/benchmarks.json and checks each profile puts a
// value just inside each bound in that bound's bucket, and one just outside
// in the next.
func TestProfilesMatchBenchmarks(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testdata(t), "dora", "benchmarks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var bench map[string]map[string]json.RawMessage
	if err := json.Unmarshal(data, &bench); err != nil {
		t.Fatal(err)
	}
	type metric struct {
		key  string
		rate func(Profile, float64) string
	}
	lead := func(p Profile, min float64) string {
		return p.LeadTime(Result{HasLeadTime: true, LeadTime: time.Duration(min * float64(time.Minute))})
	}
	restoreMin := func(p Profile, min float64) string {
		return p.TimeToRestore(Result{HasTimeToRestore: true, TimeToRestore: time.Duration(min * float64(time.Minute))})
	}
	restoreHours := func(p Profile, h float64) string { return restoreMin(p, h*60) }
	cfr := func(p Profile, v float64) string {
		return p.ChangeFailureRate(Result{Deploys: 1, ChangeFailureRate: v})
	}
	metrics := map[string][]metric{
		"fourkeys": {
			{"lead_time_for_changes_minutes_median", lead}, {"time_to_restore_hours_median", restoreHours}, {"change_failure_rate", cfr},
		},
		"devlake_2021": {
			{"lead_time_for_changes_minutes_median", lead}, {"time_to_restore_minutes_median", restoreMin}, {"change_failure_rate", cfr},
		},
		"devlake_2023": {
			{"lead_time_for_changes_minutes_median", lead}, {"failed_deployment_recovery_time_minutes_median", restoreMin}, {"change_failure_rate", cfr},
		},
	}
	checked := 0
	for profile, ms := range metrics {
		p := Profiles[profile]
		for _, m := range ms {
			raw, ok := bench[profile][m.key]
			if !ok {
				t.Fatalf("benchmarks.json has no %s.%s", profile, m.key)
			}
			// The JSON object's key order is the bucket order.
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			var names, rules []string
			dec.Token()
			for dec.More() {
				k, _ := dec.Token()
				var v string
				if err := dec.Decode(&v); err != nil {
					t.Fatal(err)
				}
				names, rules = append(names, k.(string)), append(rules, v)
			}
			for i, rule := range rules {
				op, num, ok := strings.Cut(rule, " ")
				if !ok || i == len(rules)-1 {
					continue // "otherwise" or the last bucket's mirror of the previous bound
				}
				bound, err := strconv.ParseFloat(num, 64)
				if err != nil {
					t.Fatalf("%s.%s: rule %q", profile, m.key, rule)
				}
				inside := bound - 1e-6
				if op == "<=" {
					inside = bound
				}
				if got := m.rate(p, inside); got != names[i] {
					t.Errorf("%s %s at %v: %q, want %q (%s)", profile, m.key, inside, got, names[i], rule)
				}
				if got := m.rate(p, bound+1e-6); got == names[i] {
					t.Errorf("%s %s at %v: still %q past %s", profile, m.key, bound+1e-6, got, rule)
				}
				checked++
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d bounds", checked)
	}
}

func TestPeriod(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 30 * 24 * time.Hour, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "3m": 90 * 24 * time.Hour, "1y": 365 * 24 * time.Hour, "36h": 36 * time.Hour} {
		if got, err := Period(in); err != nil || got != want {
			t.Errorf("Period(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"x", "0d", "-3d", "5q"} {
		if _, err := Period(bad); err == nil {
			t.Errorf("Period(%q) accepted", bad)
		}
	}
}

func FuzzPeriod(f *testing.F) {
	for _, s := range []string{"30d", "1y", "72h", "d", "9999999999999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := Period(s); err == nil && d <= 0 {
			t.Fatalf("Period(%q) = %v without error", s, d)
		}
	})
}

func testdata(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return filepath.Join(dir, "..", "shared", "testdata")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			testfixture.Missing(t, "no go.work above the test directory: ../shared/testdata is unavailable")
		}
		dir = parent
	}
}
