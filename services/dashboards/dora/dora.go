// Package dora computes the DORA metrics (deployment frequency, lead time
// for changes, change failure rate, time to restore, rework rate) over a
// small model of production deploys and error issues, and rates them with
// the threshold profiles of fourkeys and Apache DevLake (2021, 2023).
//
// Definitions (see docs/architecture.md, dashboards):
//   - a deploy counts when it reached production successfully; a rollback
//     does not (DORA: a change failure is a deployment that needed
//     remediation, and the remediation is no new change), so deployment
//     frequency and change failure rate leave rollbacks out, while they
//     still restore a failed deploy and count as rework;
//   - lead time is deploy finish minus the first time shiploop saw each of
//     its commits pushed, for the commits since the previous production
//     deploy of the repository; the median, values <= 0 ignored (fourkeys);
//   - a deploy failed when it was rolled back, or when an error issue was
//     opened or regressed for its release within FailureWindow after it;
//   - time to restore is, per failed deploy, from its finish to the first
//     of: the rollback that replaced it, the next successful deploy, or the
//     resolve of the issue it caused; the median (DORA 2023's failed
//     deployment recovery time);
//   - rework rate is the share of deploys and rollbacks that were
//     rollbacks, or deploys that went out while a failed deploy was not
//     restored yet (fix-forward).
package dora

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Deploy is one production deployment that finished.
type Deploy struct {
	ID         string
	Repository string
	Release    string
	FinishedAt time.Time
	// Succeeded: the deploy reached production (a rollback that succeeded
	// did too). Failed deploys never ran in production and do not count.
	Succeeded bool
	// Rollback: this deploy put an older release back.
	Rollback bool
	// RolledBack: this deploy was later rolled back (its status says so or
	// a rollback names it).
	RolledBack bool
	// CommitTimes are when each commit of the deploy was first pushed.
	CommitTimes []time.Time
}

// Issue is an error issue opened or regressed for a release.
type Issue struct {
	Repository string
	Release    string
	At         time.Time
	// ResolvedAt is zero while unresolved.
	ResolvedAt time.Time
}

// Input is the history to compute over.
type Input struct {
	Deploys []Deploy
	Issues  []Issue
	// From and To bound the period: deploys finished in [From, To).
	From, To time.Time
	// FailureWindow after a deploy in which an issue for its release fails
	// it (default 24h).
	FailureWindow time.Duration
}

// Result holds the metrics; a Has* false means no data.
type Result struct {
	// Deploys leaves rollbacks out; Rollbacks counts them.
	Deploys, FailedDeploys, ReworkDeploys, Rollbacks int
	// DeployDays is the number of distinct UTC days with a deploy.
	DeployDays    int
	DeploysPerDay float64
	// Medians of deploy days per week (7-day windows from From), per month
	// (30-day windows) and per six months (182-day windows).
	MedianDaysPerWeek, MedianDaysPerMonth, MedianDaysPerSixMonths float64
	// MedianWeeksWithDeploy is the median over weeks of 1 (a deploy) or 0.
	MedianWeeksWithDeploy float64
	// MedianDeploysPerMonth over 30-day windows.
	MedianDeploysPerMonth float64

	LeadTime, LeadTimeP90 time.Duration
	HasLeadTime           bool
	ChangeFailureRate     float64
	TimeToRestore         time.Duration
	HasTimeToRestore      bool
	ReworkRate            float64
}

// Compute computes the metrics of one history.
func Compute(in Input) Result {
	if in.FailureWindow <= 0 {
		in.FailureWindow = 24 * time.Hour
	}
	all := slices.Clone(in.Deploys)
	all = slices.DeleteFunc(all, func(d Deploy) bool { return !d.Succeeded })
	sort.SliceStable(all, func(i, j int) bool { return all[i].FinishedAt.Before(all[j].FinishedAt) })

	// Failure and restore of every deploy, over the whole history: a deploy
	// just before the period can be restored inside it.
	type state struct {
		failed     bool
		restoredAt time.Time
	}
	st := make([]state, len(all))
	for i, d := range all {
		if d.Rollback {
			continue // no change of its own to fail
		}
		failed := d.RolledBack
		var issueResolved time.Time
		for _, is := range in.Issues {
			if is.Repository == d.Repository && is.Release == d.Release && d.Release != "" &&
				!is.At.Before(d.FinishedAt) && is.At.Sub(d.FinishedAt) <= in.FailureWindow {
				failed = true
				if !is.ResolvedAt.IsZero() && (issueResolved.IsZero() || is.ResolvedAt.Before(issueResolved)) {
					issueResolved = is.ResolvedAt
				}
			}
		}
		if !failed {
			continue
		}
		st[i].failed = true
		restored := issueResolved
		for _, n := range all[i+1:] {
			if n.Repository == d.Repository {
				if restored.IsZero() || n.FinishedAt.Before(restored) {
					restored = n.FinishedAt
				}
				break
			}
		}
		st[i].restoredAt = restored
	}

	var r Result
	var leads []float64
	var restores []float64
	days := map[string]bool{}
	inPeriod := func(t time.Time) bool { return !t.Before(in.From) && t.Before(in.To) }
	for i, d := range all {
		if !inPeriod(d.FinishedAt) {
			continue
		}
		if d.Rollback {
			// Remediation, not a change: rework, not a deploy.
			r.Rollbacks++
			r.ReworkDeploys++
			continue
		}
		r.Deploys++
		days[d.FinishedAt.UTC().Format(time.DateOnly)] = true
		for _, c := range d.CommitTimes {
			if lt := d.FinishedAt.Sub(c); lt > 0 {
				leads = append(leads, float64(lt))
			}
		}
		if st[i].failed {
			r.FailedDeploys++
			if !st[i].restoredAt.IsZero() {
				restores = append(restores, float64(st[i].restoredAt.Sub(d.FinishedAt)))
			}
		}
		rework := false
		for j := range i {
			p := all[j]
			if st[j].failed && p.Repository == d.Repository && p.FinishedAt.Before(d.FinishedAt) &&
				(st[j].restoredAt.IsZero() || !d.FinishedAt.After(st[j].restoredAt)) {
				rework = true
			}
		}
		if rework {
			r.ReworkDeploys++
		}
	}
	r.DeployDays = len(days)
	if span := in.To.Sub(in.From); span > 0 {
		r.DeploysPerDay = float64(r.Deploys) / (float64(span) / float64(24*time.Hour))
	}
	if r.Deploys > 0 {
		r.ChangeFailureRate = float64(r.FailedDeploys) / float64(r.Deploys)
	}
	if n := r.Deploys + r.Rollbacks; n > 0 {
		r.ReworkRate = float64(r.ReworkDeploys) / float64(n)
	}
	if len(leads) > 0 {
		r.HasLeadTime = true
		r.LeadTime = time.Duration(Percentile(leads, 0.5))
		r.LeadTimeP90 = time.Duration(Percentile(leads, 0.9))
	}
	if len(restores) > 0 {
		r.HasTimeToRestore = true
		r.TimeToRestore = time.Duration(Percentile(restores, 0.5))
	}
	var inside []Deploy
	for _, d := range all {
		if inPeriod(d.FinishedAt) && !d.Rollback {
			inside = append(inside, d)
		}
	}
	week, month, six := windows(in.From, in.To, 7), windows(in.From, in.To, 30), windows(in.From, in.To, 182)
	r.MedianDaysPerWeek = Percentile(deployDays(inside, week), 0.5)
	r.MedianDaysPerMonth = Percentile(deployDays(inside, month), 0.5)
	r.MedianDaysPerSixMonths = Percentile(deployDays(inside, six), 0.5)
	weeks := deployDays(inside, week)
	for i, v := range weeks {
		weeks[i] = math.Min(v, 1)
	}
	r.MedianWeeksWithDeploy = Percentile(weeks, 0.5)
	r.MedianDeploysPerMonth = Percentile(deployCounts(inside, month), 0.5)
	return r
}

// windows cuts [from, to) into n-day windows from from; the last may be
// shorter. At least one window.
func windows(from, to time.Time, n int) [][2]time.Time {
	var out [][2]time.Time
	step := time.Duration(n) * 24 * time.Hour
	for t := from; t.Before(to); t = t.Add(step) {
		end := t.Add(step)
		if end.After(to) {
			end = to
		}
		out = append(out, [2]time.Time{t, end})
	}
	if len(out) == 0 {
		out = append(out, [2]time.Time{from, to})
	}
	return out
}

func deployDays(ds []Deploy, ws [][2]time.Time) []float64 {
	out := make([]float64, len(ws))
	for i, w := range ws {
		days := map[string]bool{}
		for _, d := range ds {
			if !d.FinishedAt.Before(w[0]) && d.FinishedAt.Before(w[1]) {
				days[d.FinishedAt.UTC().Format(time.DateOnly)] = true
			}
		}
		out[i] = float64(len(days))
	}
	return out
}

func deployCounts(ds []Deploy, ws [][2]time.Time) []float64 {
	out := make([]float64, len(ws))
	for i, w := range ws {
		for _, d := range ds {
			if !d.FinishedAt.Before(w[0]) && d.FinishedAt.Before(w[1]) {
				out[i]++
			}
		}
	}
	return out
}

// Percentile is PERCENTILE_CONT: linear interpolation between the closest
// ranks; 0 for no values.
func Percentile(vs []float64, p float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	pos := p * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// Period parses "30d", "12w", "6m" (30-day months), "1y" (365 days) or a Go
// duration ("72h").
func Period(s string) (time.Duration, error) {
	if s == "" {
		return 30 * 24 * time.Hour, nil
	}
	days := map[byte]int64{'d': 1, 'w': 7, 'm': 30, 'y': 365}
	if mult, ok := days[s[len(s)-1]]; ok {
		n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
		if err != nil || n <= 0 || n > 100*365/mult {
			return 0, fmt.Errorf("period %q: want a positive count (at most 100 years) and a unit, e.g. 30d, 12w, 6m, 1y", s)
		}
		return time.Duration(n*mult) * 24 * time.Hour, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("period %q: want a count and a unit, e.g. 30d, 12w, 6m, 1y, or a duration such as 72h", s)
}
