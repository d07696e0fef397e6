package deploys

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

func TestErrorRateVerdict(t *testing.T) {
	atMost := Check{Kind: "errortrack.error_rate_ratio", Op: "<=", Threshold: 1.5}
	atLeast := Check{Kind: "errortrack.error_rate_ratio", Op: ">=", Threshold: 1}
	const window = 5 * time.Minute
	cur := func(errs int64, span time.Duration) releaseRate {
		return releaseRate{release: "2.0.0", environment: "production", errors: errs, traffic: errs, span: span}
	}
	prev := func(errs, traffic int64, span time.Duration) releaseRate {
		return releaseRate{release: "1.0.0", environment: "production", errors: errs, traffic: traffic, span: span}
	}
	for _, tc := range []struct {
		name      string
		c         Check
		cur, prev releaseRate
		final     bool
		status    eventsv1.CheckStatus
		value     float64
		reason    string
	}{
		{"no errors", atMost, cur(0, window), prev(10, 100, window), true, eventsv1.CheckStatus_CHECK_STATUS_SUCCESS, 0, "no errors from 2.0.0 in production during the 5m0s window"},
		{"no errors and no earlier release", atMost, cur(0, window), releaseRate{}, true, eventsv1.CheckStatus_CHECK_STATUS_SUCCESS, 0, "no errors"},
		{"no errors yet", atMost, cur(0, time.Minute), prev(10, 100, window), false, eventsv1.CheckStatus_CHECK_STATUS_PENDING, 0, "2.0.0: 0 error(s) in production in 1m0s so far; judged when the window ends"},
		{"same rate", atMost, cur(10, window), prev(10, 100, window), true, eventsv1.CheckStatus_CHECK_STATUS_SUCCESS, 1, "2.0.0: 10 error(s) in production in 5m0s (2/min) vs previous 1.0.0: 10 error(s) in 5m0s, 2/min: ratio 1 (<= 1.5 holds)"},
		{"three times the rate", atMost, cur(30, window), prev(10, 100, window), true, eventsv1.CheckStatus_CHECK_STATUS_FAILURE, 3, "ratio 3, want <= 1.5"},
		{"previous ran for a minute", atMost, cur(30, window), prev(10, 100, time.Minute), true, eventsv1.CheckStatus_CHECK_STATUS_SUCCESS, 0.6, "(6/min) vs previous 1.0.0: 10 error(s) in 1m0s, 10/min: ratio 0.6"},
		{"previous had traffic, no errors: one error holds", atMost, cur(1, window), prev(0, 50, window), true, eventsv1.CheckStatus_CHECK_STATUS_SUCCESS, 1, "0 error(s) in 5m0s, 0.2/min, none counted as 1: ratio 1"},
		{"previous had traffic, no errors: two fail", atMost, cur(2, window), prev(0, 50, window), true, eventsv1.CheckStatus_CHECK_STATUS_FAILURE, 2, "ratio 2, want <= 1.5"},
		{"previous had no traffic", atMost, cur(3, window), prev(0, 0, window), true, eventsv1.CheckStatus_CHECK_STATUS_INCONCLUSIVE, 0, "the previous release 1.0.0 sent errortrack nothing from production in the 5m0s before the deploy"},
		{"no earlier release", atMost, cur(3, window), releaseRate{}, true, eventsv1.CheckStatus_CHECK_STATUS_INCONCLUSIVE, 0, "production had no earlier release to compare with"},
		{"already past the threshold", atMost, cur(40, time.Minute), prev(10, 100, window), false, eventsv1.CheckStatus_CHECK_STATUS_FAILURE, 4, "2.0.0: 40 error(s) in production in 1m0s already make 8/min over the 5m0s window vs previous 1.0.0: 10 error(s) in 5m0s, 2/min: ratio at least 4, want <= 1.5"},
		{"not past it yet", atMost, cur(5, time.Minute), prev(10, 100, window), false, eventsv1.CheckStatus_CHECK_STATUS_PENDING, 0, "so far (ratio at least 0.5 vs previous 1.0.0"},
		{"a lower bound never fails >=", atLeast, cur(1, time.Minute), prev(10, 100, window), false, eventsv1.CheckStatus_CHECK_STATUS_PENDING, 0, "judged when the window ends"},
		{">= at the end", atLeast, cur(1, window), prev(10, 100, window), true, eventsv1.CheckStatus_CHECK_STATUS_FAILURE, 0.1, "ratio 0.1, want >= 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := errorRateVerdict(tc.c, tc.cur, tc.prev, window, tc.final)
			if r.status != tc.status || r.value != tc.value || !strings.Contains(r.reason, tc.reason) {
				t.Errorf("got %v %g %q\nwant %v %g with %q", r.status, r.value, r.reason, tc.status, tc.value, tc.reason)
			}
		})
	}
}

// TestErrorRateCheck: the error rate check reads the
// errortrack.release.counted events of the environment: a release whose
// errors already outrun the previous release's rate is rolled back before
// its window ends; one with fewer errors per minute verifies; one whose
// previous release sent nothing pauses as inconclusive. Counts of other
// environments do not count.
func TestErrorRateCheck(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		repo := "acme/rate"
		cfg := `environments:
  - name: acceptance
    auto: true
    steps: [{name: deploy, commands: [echo deploy]}]
    verify:
      window: 2s
      conditions:
        - {metric: errortrack.error_rate_ratio, operator: "<=", threshold: 1.5}
`
		counted := func(release, env string, errs, transactions int64) {
			now := timestamppb.Now()
			h.publish("errortrack.release.counted", repo, &errortrackv1.ReleaseCounted{ProjectId: 1, Project: "rate", Release: release, Environment: env,
				Errors: errs, Transactions: transactions, FirstReceived: now, LastReceived: now})
		}
		deploy := func(version string) {
			h.build(repo, "refs/heads/main", version, cfg, "push")
			h.run(h.nextJob(), true)
			h.waitFor(repo, "acceptance", version+" verifying", is(version, eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING))
		}
		check := func(d *deploysv1.Deployment) *eventsv1.CheckResult {
			t.Helper()
			if len(d.GetChecks()) != 1 {
				t.Fatalf("%s checks %v", d.GetRelease(), d.GetChecks())
			}
			return d.GetChecks()[0]
		}

		// The first release: transactions but no errors, nothing to compare
		// with: it holds on evidence.
		deploy("1.0.0")
		counted("web@1.0.0", "acceptance", 0, 5)
		first := h.waitFor(repo, "acceptance", "1.0.0 verified", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		if c := check(first); c.GetStatus() != eventsv1.CheckStatus_CHECK_STATUS_SUCCESS || !strings.Contains(c.GetReason(), "no errors from 1.0.0") {
			t.Errorf("1.0.0 check %v", c)
		}
		counted("web@1.0.0", "acceptance", 20, 200)
		counted("web@1.0.0", "production", 1000000, 0) // another environment
		time.Sleep(500 * time.Millisecond)             // 1.0.0 runs a while with its errors

		// 1.1.0 sends far more errors per minute: rolled back at once.
		deploy("1.1.0")
		counted("web@1.1.0", "acceptance", 5000, 0)
		bad := h.waitFor(repo, "acceptance", "1.1.0 rolled back", is("1.1.0", eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK))
		if !strings.Contains(bad.GetReason(), "errortrack.error_rate_ratio <= 1.5: 1.1.0: 5000 error(s) in acceptance") || !strings.Contains(bad.GetReason(), "previous 1.0.0: 20 error(s)") {
			t.Errorf("rolled back because %q", bad.GetReason())
		}
		if took := bad.GetFinishedAt().AsTime().Sub(bad.GetStartedAt().AsTime()); took >= 2*time.Second {
			t.Errorf("rolled back %s after the start, want before the 2s window ended", took)
		}
		h.run(h.nextJob(), true)
		h.waitFor(repo, "acceptance", "rollback to 1.0.0", func(d *deploysv1.Deployment) bool {
			return d.GetKind() == "rollback" && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
		})
		counted("1.0.0", "acceptance", 1000, 0) // a bare version matches too
		time.Sleep(500 * time.Millisecond)

		// 1.2.0 sends one error in its window: far below 1.0.0's rate.
		deploy("1.2.0")
		counted("web@1.2.0", "acceptance", 1, 10)
		counted("web@1.2.0", "production", 1000000, 0)
		good := h.waitFor(repo, "acceptance", "1.2.0 verified", is("1.2.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		if c := check(good); c.GetStatus() != eventsv1.CheckStatus_CHECK_STATUS_SUCCESS || c.GetValue() <= 0 || c.GetValue() >= 0.01 ||
			!strings.Contains(c.GetReason(), "1.2.0: 1 error(s) in acceptance in 2s") || !strings.Contains(c.GetReason(), "previous 1.0.0: 1000 error(s)") {
			t.Errorf("1.2.0 check %v", c)
		}
		time.Sleep(time.Second) // 1.2.0's count falls out of the next window's comparison span

		// 1.3.0 has errors, 1.2.0 sent nothing in the 2s before it: inconclusive.
		deploy("1.3.0")
		counted("web@1.3.0", "acceptance", 3, 0)
		paused := h.waitFor(repo, "acceptance", "1.3.0 paused", is("1.3.0", eventsv1.DeployStatus_DEPLOY_STATUS_PAUSED))
		if !strings.Contains(paused.GetReason(), "the previous release 1.2.0 sent errortrack nothing from acceptance") {
			t.Errorf("paused because %q", paused.GetReason())
		}
		if c := check(paused); c.GetStatus() != eventsv1.CheckStatus_CHECK_STATUS_INCONCLUSIVE {
			t.Errorf("1.3.0 check %v", c)
		}
		// Accepting it is an approval: deploy.approved names who, for the
		// dashboards' "approved by".
		w := h.watchDeploys(repo)
		if _, err := h.api.Approve(t.Context(), &deploysv1.ApproveRequest{DeployId: paused.GetId(), Approver: "ivy", Comment: "quiet enough"}); err != nil {
			t.Fatal(err)
		}
		h.waitFor(repo, "acceptance", "1.3.0 accepted", is("1.3.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		w.wait(t, "deploy.approved by ivy", func(ev bus.Event) bool {
			a, ok := ev.Data.(*eventsv1.DeployApproved)
			return ok && ev.Type == "deploy.approved" && a.GetApprover() == "ivy" && a.GetDeploy().GetDeployId() == paused.GetId()
		})
	})
}

// TestVerificationEvidence: errortrack conditions decide on evidence. A
// release whose app reports its errors under another release ("dev") in
// the environment fails with a release mismatch (unless
// on_release_mismatch: ignore); a release errortrack heard nothing from is
// inconclusive (no evidence: the deploy pauses, not verified), fails with
// require_evidence: true and passes, saying so, with require_evidence:
// false; a release whose own transactions arrived without errors verifies.
func TestVerificationEvidence(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		config := func(extra string) string {
			return `environments:
  - name: production
    auto: true
    steps: [{name: deploy, commands: [echo deploy]}]
    verify:
      window: 1s
      on_failure: hold
      conditions:
        - {metric: errortrack.new_issues, operator: "==", threshold: 0` + extra + `}
        - {metric: errortrack.error_rate_ratio, operator: "<=", threshold: 1.5` + extra + `}
`
		}
		counted := func(repo, release string, errs, transactions int64) {
			now := timestamppb.Now()
			h.publish("errortrack.release.counted", repo, &errortrackv1.ReleaseCounted{ProjectId: 1, Project: "app", Release: release, Environment: "production",
				Errors: errs, Transactions: transactions, FirstReceived: now, LastReceived: now})
		}
		deploy := func(repo, version, extra string) {
			h.build(repo, "refs/heads/main", version, config(extra), "push")
			h.run(h.nextJob(), true)
			h.waitFor(repo, "production", version+" verifying", is(version, eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING))
		}
		checks := func(d *deploysv1.Deployment, status eventsv1.CheckStatus, reason string) {
			t.Helper()
			if len(d.GetChecks()) != 2 {
				t.Fatalf("%s checks %v", d.GetRelease(), d.GetChecks())
			}
			for _, c := range d.GetChecks() {
				if c.GetStatus() != status || !strings.Contains(c.GetReason(), reason) {
					t.Errorf("%s check %s: %v %q, want %v with %q", d.GetRelease(), c.GetCheck(), c.GetStatus(), c.GetReason(), status, reason)
				}
			}
		}

		// 50 ZeroDivisionErrors under "dev", none under the deployed release.
		deploy("acme/dev", "0.0.1-dev.3", "")
		counted("acme/dev", "dev", 50, 0)
		counted("acme/other", "dev", 1000, 0) // another repository's app
		bad := h.waitFor("acme/dev", "production", "0.0.1-dev.3 failed", is("0.0.1-dev.3", eventsv1.DeployStatus_DEPLOY_STATUS_FAILED))
		mismatch := "release mismatch: 50 error event(s) in production during the window under other releases (dev: 50) and none under 0.0.1-dev.3: the app does not report the deployed release — set SENTRY_RELEASE"
		if !strings.Contains(bad.GetReason(), "errortrack.new_issues == 0: "+mismatch) || !strings.Contains(bad.GetReason(), "errortrack.error_rate_ratio <= 1.5: "+mismatch) {
			t.Errorf("failed because %q", bad.GetReason())
		}

		// on_release_mismatch: ignore reports it; with nothing of its own the
		// release still has no evidence.
		deploy("acme/ignore", "2.0.0", ", on_release_mismatch: ignore")
		counted("acme/ignore", "dev", 5, 0)
		paused := h.waitFor("acme/ignore", "production", "2.0.0 paused", is("2.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_PAUSED))
		checks(paused, eventsv1.CheckStatus_CHECK_STATUS_INCONCLUSIVE, "no evidence: errortrack received no event, transaction or session from 2.0.0 in production during the 1s window")
		checks(paused, eventsv1.CheckStatus_CHECK_STATUS_INCONCLUSIVE, "(dev: 5) and none under 2.0.0")
		checks(paused, eventsv1.CheckStatus_CHECK_STATUS_INCONCLUSIVE, "(ignored: on_release_mismatch: ignore)")

		// Nothing at all: inconclusive, the deploy pauses and is not verified.
		deploy("acme/silent", "1.0.0", "")
		paused = h.waitFor("acme/silent", "production", "1.0.0 paused", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_PAUSED))
		if !strings.Contains(paused.GetReason(), "verification inconclusive: errortrack.new_issues == 0: no evidence") {
			t.Errorf("paused because %q", paused.GetReason())
		}
		checks(paused, eventsv1.CheckStatus_CHECK_STATUS_INCONCLUSIVE, "no evidence: errortrack received no event, transaction or session from 1.0.0 in production during the 1s window: 0 errors is no proof of health")

		// require_evidence: true fails it; false lets it pass, saying so.
		deploy("acme/strict", "1.0.0", ", require_evidence: true")
		failed := h.waitFor("acme/strict", "production", "1.0.0 failed", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_FAILED))
		checks(failed, eventsv1.CheckStatus_CHECK_STATUS_FAILURE, "no evidence: errortrack received no event, transaction or session from 1.0.0 in production during the 1s window (require_evidence: true)")
		deploy("acme/lenient", "1.0.0", ", require_evidence: false")
		ok := h.waitFor("acme/lenient", "production", "1.0.0 verified", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		checks(ok, eventsv1.CheckStatus_CHECK_STATUS_SUCCESS, "no evidence: errortrack received no event, transaction or session from 1.0.0 in production during the 1s window, accepted (require_evidence: false)")

		// The release's own transactions, no errors: verified on evidence.
		deploy("acme/good", "1.0.0", "")
		counted("acme/good", "web@1.0.0", 0, 30)
		good := h.waitFor("acme/good", "production", "1.0.0 verified", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		checks(good, eventsv1.CheckStatus_CHECK_STATUS_SUCCESS, "evidence: 0 error(s), 30 transaction(s)/session(s) from 1.0.0")
	})
}

// TestVerificationNamesSuspectCommits: a verification failing on a new
// issue whose errortrack.issue.opened named suspect commits says which
// (short sha, author, first line; at most 3, best first) in the failed
// deploy's reason and in deploy.rolled_back's cause.
func TestVerificationNamesSuspectCommits(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		repo := "acme/suspects"
		w := h.watchDeploys(repo)
		cfg := `environments:
  - name: production
    auto: true
    steps: [{name: deploy, commands: [echo deploy]}]
    verify:
      window: 300ms
      on_failure: rollback
      conditions:
        - {metric: errortrack.new_issues, operator: "==", threshold: 0, require_evidence: false}
`
		h.build(repo, "refs/heads/main", "1.0.0", cfg, "push")
		h.run(h.nextJob(), true)
		h.waitFor(repo, "production", "1.0.0 verified", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))

		h.build(repo, "refs/heads/main", "1.1.0", cfg, "push")
		j := h.nextJob()
		var suspects []*errortrackv1.SuspectCommit
		for i, c := range []struct{ sha, author, msg string }{
			{"4f1c2b9e0d1a2b3c4d5e6f708192a3b4c5d6e7f8", "Ada Lovelace <ada@example.com>", "Divide by the item count\n\nThe average was off."},
			{"9a8b7c6d5e4f30211203a4b5c6d7e8f901234567", "Grace Hopper <grace@example.com>", "Cache totals"},
			{"1111111222222233333334444444555555566666", "Linus <l@example.com>", "Rename helpers"},
			{"abcdefabcdefabcdefabcdefabcdefabcdefabcd", "Ken <k@example.com>", "A fourth one"},
		} {
			suspects = append(suspects, &errortrackv1.SuspectCommit{Sha: c.sha, Author: c.author, Message: c.msg, Score: int32(10 - i), Release: "web@1.1.0"})
		}
		h.publish("errortrack.issue.opened", repo, &errortrackv1.IssueOpened{Issue: &errortrackv1.IssueRef{IssueId: 1, Title: "ZeroDivisionError: division by zero"},
			Release: "web@1.1.0", Environment: "production", SuspectCommits: suspects})
		h.run(j, true)
		bad := h.waitFor(repo, "production", "1.1.0 rolled back", is("1.1.0", eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK))
		const want = "errortrack.new_issues == 0: 1 opened issue(s) in 1.1.0 on production: #1 ZeroDivisionError: division by zero; suspect commits: " +
			"4f1c2b9 (Ada Lovelace) Divide by the item count, 9a8b7c6 (Grace Hopper) Cache totals, 1111111 (Linus) Rename helpers"
		if !strings.Contains(bad.GetReason(), want) {
			t.Errorf("reason %q, want it to contain %q", bad.GetReason(), want)
		}
		if strings.Contains(bad.GetReason(), "abcdefa") {
			t.Errorf("reason %q names a fourth suspect", bad.GetReason())
		}
		rolled := w.wait(t, "deploy.rolled_back", func(ev bus.Event) bool { return ev.Type == "deploy.rolled_back" })
		if d := rolled.Data.(*eventsv1.DeployRolledBack); !strings.Contains(d.GetCause(), want) {
			t.Errorf("deploy.rolled_back cause %q, want it to contain %q", d.GetCause(), want)
		}
	})
}
