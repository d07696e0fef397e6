package deploys

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// loop measures verifying deployments when they are due, sends ticket
// webhooks and prunes old error counts and early events, every Tick, until
// ctx ends. State
// lives in the database, so a restarted service picks up where the last
// one stopped.
func (s *Service) loop(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	var webhookAfter, pruneAfter time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := s.verifyDue(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("verification", "err", err)
		}
		if time.Now().After(pruneAfter) {
			// Error counts serve windows of minutes to hours; a month is
			// what EVENTS keeps too.
			if _, err := s.db.ExecContext(ctx, `DELETE FROM error_counts WHERE last_received < $1`, s.now().Add(-30*24*time.Hour).UnixNano()); err != nil && ctx.Err() == nil {
				s.log.Warn("pruning error counts", "err", err)
			}
			// An early event whose build.created has not come in a month
			// never will (EVENTS keeps a month): a build from before
			// deploys ran, or a build.created dead-lettered.
			if _, err := s.db.ExecContext(ctx, `DELETE FROM early_events WHERE at < $1`, s.now().Add(-30*24*time.Hour).UnixNano()); err != nil && ctx.Err() == nil {
				s.log.Warn("pruning early events", "err", err)
			}
			pruneAfter = time.Now().Add(time.Hour)
		}
		if s.cfg.TicketWebhook != "" && time.Now().After(webhookAfter) {
			if err := s.flushTickets(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("ticket webhook", "url", s.cfg.TicketWebhook, "err", err)
				webhookAfter = time.Now().Add(5 * time.Second)
			}
		}
	}
}

// interval between two measurements of a window.
func interval(window time.Duration) time.Duration {
	return min(max(window/5, 200*time.Millisecond), 15*time.Second)
}

// result is one measurement.
type result struct {
	status eventsv1.CheckStatus
	value  float64
	reason string
}

func (s *Service) verifyDue(ctx context.Context) error {
	due, err := loadDeployments(ctx, s.db, `status = $1 AND next_check_at <= $2`, int32(eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING), s.now().UnixNano())
	if err != nil {
		return err
	}
	for _, d := range due {
		if err := s.verifyOne(ctx, d); err != nil {
			s.log.Warn("verifying", "deploy", d.id, "err", err)
		}
	}
	return nil
}

func (s *Service) verifyOne(ctx context.Context, d *deployment) error {
	var b *buildInfo
	var cfg *Pipeline
	var env *Environment
	var vars map[string]string
	err := s.ob.InTx(ctx, func(tx *bus.Tx) error {
		var err error
		if b, err = loadBuildInfo(ctx, tx, `id = $1`, d.buildID); err != nil {
			return err
		}
		if cfg, err = b.parse(); err != nil {
			return err
		}
		if env, err = s.envDef(ctx, tx, d, cfg); err != nil || env == nil {
			return errors.Join(err, fmt.Errorf("no environment %s", d.environment))
		}
		vars = s.jobEnv(ctx, tx, d, b, cfg, env)
		return nil
	})
	if err != nil || env.Verify == nil {
		return err
	}
	v := env.Verify
	// now is the time of this measurement: it decides whether it is the
	// window's last, for the checks too (errortrack.error_rate_ratio judges
	// the whole window).
	now := s.now()
	results := make([]result, len(v.Checks))
	for i, c := range v.Checks {
		results[i] = s.measure(ctx, d, v, c, vars, now)
	}
	return s.ob.InTx(ctx, func(tx *bus.Tx) error {
		cur, err := loadDeployment(ctx, tx, `id = $1`, d.id)
		if err != nil || cur.status != eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING {
			return err // moved on meanwhile (rolled back by hand, say)
		}
		var failed []string
		inconclusive := []string{}
		for i, r := range results {
			if _, err := tx.ExecContext(ctx, `UPDATE checks SET status = $1, value = $2, reason = $3, measured_at = $4 WHERE deploy_id = $5 AND position = $6`,
				int32(r.status), r.value, r.reason, now.UnixNano(), d.id, i); err != nil {
				return err
			}
			switch r.status {
			case eventsv1.CheckStatus_CHECK_STATUS_FAILURE:
				failed = append(failed, v.Checks[i].Text+": "+r.reason)
			case eventsv1.CheckStatus_CHECK_STATUS_INCONCLUSIVE:
				inconclusive = append(inconclusive, v.Checks[i].Text+": "+r.reason)
			case eventsv1.CheckStatus_CHECK_STATUS_PENDING:
				if now.UnixNano() >= cur.verifyUntil {
					inconclusive = append(inconclusive, v.Checks[i].Text+": not judged by the window's end ("+r.reason+")")
				}
			}
		}
		switch {
		case len(failed) > 0:
			return s.verificationFailed(ctx, tx, cur, v, strings.Join(failed, "; "))
		case now.UnixNano() < cur.verifyUntil:
			_, err := tx.ExecContext(ctx, `UPDATE deployments SET next_check_at = $1 WHERE id = $2`, now.Add(interval(v.Window)).UnixNano(), d.id)
			return err
		case len(inconclusive) > 0:
			reason := "verification inconclusive: " + strings.Join(inconclusive, "; ") + " (approve to accept, or roll back)"
			if _, err := tx.ExecContext(ctx, `UPDATE deployments SET status = $1, reason = $2 WHERE id = $3`, int32(eventsv1.DeployStatus_DEPLOY_STATUS_PAUSED), reason, d.id); err != nil {
				return err
			}
			cur.status, cur.reason = eventsv1.DeployStatus_DEPLOY_STATUS_PAUSED, reason
			return s.publish(tx, "deploy.pending", cur, &eventsv1.DeployPending{Deploy: cur.ref(), Status: cur.status, Reason: reason})
		}
		return s.finish(ctx, tx, cur, eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED, fmt.Sprintf("verified: %d checks held for %s", len(v.Checks), v.Window))
	})
}

// measure takes one measurement of c at the time at.
func (s *Service) measure(ctx context.Context, d *deployment, v *Verify, c Check, vars map[string]string, at time.Time) result {
	expand := func(t string) string { return os.Expand(t, func(k string) string { return vars[k] }) }
	judge := func(value float64, what string) result {
		if c.Holds(value) {
			return result{status: eventsv1.CheckStatus_CHECK_STATUS_SUCCESS, value: value, reason: fmt.Sprintf("%s (%s %g holds)", what, c.Op, c.Threshold)}
		}
		return result{status: eventsv1.CheckStatus_CHECK_STATUS_FAILURE, value: value, reason: fmt.Sprintf("%s, want %s %g", what, c.Op, c.Threshold)}
	}
	inconclusive := func(format string, args ...any) result {
		return result{status: eventsv1.CheckStatus_CHECK_STATUS_INCONCLUSIVE, reason: fmt.Sprintf(format, args...)}
	}
	timeout := min(5*time.Second, max(interval(v.Window), time.Second))
	switch c.Kind {
	case "http_status", "http_latency_ms", "http_body_match":
		u := expand(c.Target)
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
		if err != nil {
			return inconclusive("bad probe URL %q: %v", u, err)
		}
		req.Header.Set("User-Agent", "shiploop-verify/1")
		start := time.Now()
		resp, err := s.http.Do(req)
		if err != nil {
			return inconclusive("GET %s: %v", u, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		took := time.Since(start)
		if err != nil {
			return inconclusive("GET %s: reading the body: %v", u, err)
		}
		switch c.Kind {
		case "http_status":
			return judge(float64(resp.StatusCode), fmt.Sprintf("GET %s answered %d", u, resp.StatusCode))
		case "http_latency_ms":
			ms := float64(took.Microseconds()) / 1000
			return judge(ms, fmt.Sprintf("GET %s took %.1f ms", u, ms))
		default:
			re, err := regexp.Compile(expand(c.Arg))
			if err != nil {
				return inconclusive("regular expression: %v", err)
			}
			if re.Match(body) {
				return judge(1, fmt.Sprintf("GET %s body matches %q", u, re))
			}
			return judge(0, fmt.Sprintf("GET %s body (%d bytes) does not match %q", u, len(body), re))
		}
	case "errortrack.new_issues", "errortrack.regressed_issues", "errortrack.issues":
		kinds := map[string][]string{"errortrack.new_issues": {"opened"}, "errortrack.regressed_issues": {"regressed"}, "errortrack.issues": {"opened", "regressed"}}[c.Kind]
		n, titles, suspects, err := s.issueCount(ctx, d, kinds)
		if err != nil {
			return inconclusive("reading errortrack signals: %v", err)
		}
		what := fmt.Sprintf("%d %s issue(s) in %s on %s", n, strings.Join(kinds, "/"), d.version, d.environment)
		if len(titles) > 0 {
			what += ": " + strings.Join(titles, ", ")
		}
		if len(suspects) > 0 {
			what += "; suspect commits: " + strings.Join(suspects, ", ")
		}
		ev, err := s.releaseEvidence(ctx, d, at)
		if err != nil {
			return inconclusive("reading errortrack counts: %v", err)
		}
		return evidenceVerdict(c, judge(float64(n), what), ev, v.Window, at.UnixNano() >= d.verifyUntil)
	case "errortrack.error_rate_ratio":
		cur, prev, err := s.errorRates(ctx, d, v.Window, at)
		if err != nil {
			return inconclusive("reading errortrack counts: %v", err)
		}
		ev, err := s.releaseEvidence(ctx, d, at)
		if err != nil {
			return inconclusive("reading errortrack counts: %v", err)
		}
		final := at.UnixNano() >= d.verifyUntil
		return evidenceVerdict(c, errorRateVerdict(c, cur, prev, v.Window, final), ev, v.Window, final)
	case "graphite":
		if s.cfg.GraphiteURL == "" {
			return inconclusive("no Graphite API configured (--graphite-url)")
		}
		target := expand(c.Target)
		val, err := s.graphite(ctx, target, v.Window, timeout)
		if err != nil {
			return inconclusive("%v", err)
		}
		return judge(val, fmt.Sprintf("%s = %g", target, val))
	}
	return inconclusive("unknown check %s", c.Kind)
}

// issueCount counts the signals of kinds for d's release and environment
// since it started, with their issues ("#id title") and the top suspect
// commits errortrack named for them (at most maxSuspects, the first
// issue's best first, each commit once).
func (s *Service) issueCount(ctx context.Context, d *deployment, kinds []string) (int, []string, []string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kind, issue_id, title, suspects FROM signals WHERE (repository = $1 OR repository = '') AND environment = $2 AND (release = $3 OR release LIKE $4) AND at >= $5 ORDER BY at`,
		d.repository, d.environment, d.version, "%@"+d.version, d.startedAt)
	if err != nil {
		return 0, nil, nil, err
	}
	defer rows.Close()
	n := 0
	var titles, suspects []string
	seen := map[string]bool{}
	for rows.Next() {
		var kind, title, sus string
		var id int64
		if err := rows.Scan(&kind, &id, &title, &sus); err != nil {
			return 0, nil, nil, err
		}
		for _, k := range kinds {
			if k == kind {
				n++
				titles = append(titles, fmt.Sprintf("#%d %s", id, title))
				for _, c := range decodeSuspects(sus) {
					if len(suspects) < maxSuspects && !seen[c.SHA] {
						seen[c.SHA] = true
						suspects = append(suspects, c.String())
					}
				}
			}
		}
	}
	return n, titles, suspects, rows.Err()
}

// evidence is what errortrack counted in a deploy's environment since the
// release was deployed: the release's own items and the errors under
// other releases (a release mismatch).
type evidence struct {
	release, environment string
	errors, traffic      int64            // the release's: traffic is errors, transactions and sessions
	others               map[string]int64 // error events under other releases, by release
	otherErrors          int64
}

// releaseEvidence reads the errortrack.release.counted counts of d's
// environment from when d's release was deployed up to at (within the
// window). Another release's count is a mismatch only when all of it was
// received after the deploy (first_received), so errors the old version
// sent just before do not count; the release's own counts are attributed
// by their last item, as errorRates does.
func (s *Service) releaseEvidence(ctx context.Context, d *deployment, at time.Time) (evidence, error) {
	ev := evidence{release: d.version, environment: d.environment, others: map[string]int64{}}
	end := min(at.UnixNano(), d.verifyUntil)
	rows, err := s.db.QueryContext(ctx, `SELECT release, SUM(errors), SUM(traffic), MIN(first_received) FROM error_counts WHERE (repository = $1 OR repository = '') AND environment = $2 AND last_received > $3 AND last_received <= $4 GROUP BY release ORDER BY release`,
		d.repository, d.environment, d.deployedAt, end)
	if err != nil {
		return ev, err
	}
	defer rows.Close()
	for rows.Next() {
		var release string
		var errs, traffic, first int64
		if err := rows.Scan(&release, &errs, &traffic, &first); err != nil {
			return ev, err
		}
		switch {
		case release == d.version || strings.HasSuffix(release, "@"+d.version):
			ev.errors += errs
			ev.traffic += traffic
		case errs > 0 && first > d.deployedAt:
			ev.others[release] += errs
			ev.otherErrors += errs
		}
	}
	return ev, rows.Err()
}

// mismatch describes errors under other releases, or "".
func (ev evidence) mismatch() string {
	if ev.otherErrors == 0 {
		return ""
	}
	names := make([]string, 0, len(ev.others))
	for r := range ev.others {
		names = append(names, r)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(ev.others[b], ev.others[a]), strings.Compare(a, b)) })
	per := make([]string, 0, len(names))
	for _, r := range names {
		name := r
		if name == "" {
			name = "(no release)"
		}
		per = append(per, fmt.Sprintf("%s: %d", name, ev.others[r]))
	}
	what := fmt.Sprintf("release mismatch: %d error event(s) in %s during the window under other releases (%s)", ev.otherErrors, ev.environment, strings.Join(per, ", "))
	if ev.traffic == 0 {
		return what + fmt.Sprintf(" and none under %s: the app does not report the deployed release — set SENTRY_RELEASE (or the SDK's release option) to %s", ev.release, ev.release)
	}
	return what + fmt.Sprintf(" besides %s's %d error(s): an older version still serving, or instances that do not report the deployed release (set SENTRY_RELEASE to %s)", ev.release, ev.errors, ev.release)
}

// evidenceVerdict decides an errortrack condition on evidence, given r,
// the condition's own judgement of the numbers:
//
//   - errors under other releases in the environment during the window (a
//     release mismatch) fail it, unless on_release_mismatch: ignore;
//   - a failure stands;
//   - a release that errortrack heard nothing from since the deploy (not an
//     error, transaction or session) has no evidence: pending until the
//     window ends, then inconclusive (the deploy pauses, not verified), or
//     a failure with require_evidence: true, or a pass that says so with
//     require_evidence: false;
//   - otherwise r, with the evidence it stands on.
func evidenceVerdict(c Check, r result, ev evidence, window time.Duration, final bool) result {
	mismatch := ev.mismatch()
	if mismatch != "" && c.OnReleaseMismatch != "ignore" {
		return result{status: eventsv1.CheckStatus_CHECK_STATUS_FAILURE, value: r.value, reason: mismatch + " (on_release_mismatch: ignore accepts this)"}
	}
	if mismatch != "" {
		mismatch = "; " + mismatch + " (ignored: on_release_mismatch: ignore)"
	}
	if r.status == eventsv1.CheckStatus_CHECK_STATUS_FAILURE {
		return result{status: r.status, value: r.value, reason: r.reason + mismatch}
	}
	if ev.traffic == 0 {
		none := fmt.Sprintf("no evidence: errortrack received no event, transaction or session from %s in %s", ev.release, ev.environment)
		switch {
		case !final:
			return result{status: eventsv1.CheckStatus_CHECK_STATUS_PENDING, reason: none + " so far (" + strings.TrimSuffix(r.reason, "; judged when the window ends") + ")" + mismatch + "; judged when the window ends"}
		case c.NoEvidence == "pass":
			return result{status: r.status, value: r.value, reason: fmt.Sprintf("%s during the %s window, accepted (require_evidence: false): %s%s", none, window, r.reason, mismatch)}
		case c.NoEvidence == "fail":
			return result{status: eventsv1.CheckStatus_CHECK_STATUS_FAILURE, reason: fmt.Sprintf("%s during the %s window (require_evidence: true): the release may not be running, or its app does not report it (SENTRY_RELEASE)%s", none, window, mismatch)}
		}
		return result{status: eventsv1.CheckStatus_CHECK_STATUS_INCONCLUSIVE, reason: fmt.Sprintf("%s during the %s window: 0 errors is no proof of health (send transactions or sessions, or set require_evidence)%s", none, window, mismatch)}
	}
	return result{status: r.status, value: r.value, reason: fmt.Sprintf("%s; evidence: %d error(s), %d transaction(s)/session(s) from %s%s", r.reason, ev.errors, ev.traffic-ev.errors, ev.release, mismatch)}
}

// releaseRate is what errortrack counted for one release in an
// environment over a span of time.
type releaseRate struct {
	release, environment string
	errors, traffic      int64 // traffic: errors, transactions and sessions
	span                 time.Duration
}

func (r releaseRate) perMinute() float64 { return float64(r.errors) / r.span.Minutes() }

// errorRates reads what errortrack counted for d's release since it was
// deployed (up to at, within the window) and for the previous release
// over the window's length before d started (or since it was deployed, if
// later). Counts are attributed by when errortrack received the last item
// of each errortrack.release.counted event, so their edges are as coarse
// as errortrack's count interval.
func (s *Service) errorRates(ctx context.Context, d *deployment, window time.Duration, at time.Time) (cur, prev releaseRate, err error) {
	end := min(at.UnixNano(), d.verifyUntil)
	cur = releaseRate{release: d.version, environment: d.environment, span: time.Duration(end - d.deployedAt)}
	if cur.errors, cur.traffic, err = s.errorCounts(ctx, d, d.version, d.deployedAt, end); err != nil || d.previous == "" {
		return cur, prev, err
	}
	from := d.startedAt - window.Nanoseconds()
	var since int64
	err = s.db.QueryRowContext(ctx, `SELECT deployed_at FROM deployments WHERE repository = $1 AND environment = $2 AND version = $3 AND deployed_at > 0 AND deployed_at <= $4 AND kind <> 'teardown' ORDER BY deployed_at DESC LIMIT 1`,
		d.repository, d.environment, d.previous, d.startedAt).Scan(&since)
	switch {
	case err == nil:
		from = max(from, since)
	case !errors.Is(err, sql.ErrNoRows):
		return cur, prev, err
	}
	prev = releaseRate{release: d.previous, environment: d.environment, span: time.Duration(d.startedAt - from)}
	prev.errors, prev.traffic, err = s.errorCounts(ctx, d, d.previous, from, d.startedAt)
	return cur, prev, err
}

// errorCounts sums the errors and traffic errortrack counted for release
// (or name@release) in d's environment, received in (from, to].
func (s *Service) errorCounts(ctx context.Context, d *deployment, release string, from, to int64) (errs, traffic int64, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(errors), 0), COALESCE(SUM(traffic), 0) FROM error_counts WHERE (repository = $1 OR repository = '') AND environment = $2 AND (release = $3 OR release LIKE $4) AND last_received > $5 AND last_received <= $6`,
		d.repository, d.environment, release, "%@"+release, from, to).Scan(&errs, &traffic)
	return errs, traffic, err
}

// errorRateVerdict judges errortrack.error_rate_ratio: the release's error
// events per minute over the whole window ÷ the previous release's rate.
// Before the window ends it fails only when the errors so far already put
// the whole window's ratio past the threshold (they can only grow), and is
// otherwise pending: a few errors in the first seconds are no rate. No
// errors at all holds (0) whatever came before; errors with no earlier
// release, or an earlier one that sent nothing (no traffic to compare with),
// are inconclusive. An earlier release that had traffic but no errors
// counts as one error, so the ratio stays finite.
func errorRateVerdict(c Check, cur, prev releaseRate, window time.Duration, final bool) result {
	pending := func(format string, args ...any) result {
		return result{status: eventsv1.CheckStatus_CHECK_STATUS_PENDING, reason: fmt.Sprintf(format, args...) + "; judged when the window ends"}
	}
	inconclusive := func(format string, args ...any) result {
		return result{status: eventsv1.CheckStatus_CHECK_STATUS_INCONCLUSIVE, reason: fmt.Sprintf(format, args...)}
	}
	so := fmt.Sprintf("%s: %d error(s) in %s in %s", cur.release, cur.errors, cur.environment, cur.span.Round(time.Second/10))
	if cur.errors == 0 {
		if !final {
			return pending("%s so far", so)
		}
		return result{status: judgeStatus(c, 0), reason: fmt.Sprintf("no errors from %s in %s during the %s window (%s %g)", cur.release, cur.environment, window, c.Op, c.Threshold)}
	}
	if prev.release == "" {
		if !final {
			return pending("%s so far; %s had no earlier release", so, cur.environment)
		}
		return inconclusive("%s, and %s had no earlier release to compare with", so, cur.environment)
	}
	if prev.traffic == 0 || prev.span <= 0 {
		if !final {
			return pending("%s so far; %s sent nothing before the deploy", so, prev.release)
		}
		return inconclusive("%s, but the previous release %s sent errortrack nothing from %s in the %s before the deploy: no rate to compare with",
			so, prev.release, prev.environment, prev.span.Round(time.Second))
	}
	counted := prev
	note := ""
	if counted.errors == 0 {
		counted.errors, note = 1, ", none counted as 1"
	}
	base := fmt.Sprintf("previous %s: %d error(s) in %s, %.3g/min%s", prev.release, prev.errors, prev.span.Round(time.Second/10), counted.perMinute(), note)
	// Over the whole window: the errors so far are its lower bound.
	whole := releaseRate{errors: cur.errors, span: window}
	ratio := whole.perMinute() / counted.perMinute()
	if final {
		what := fmt.Sprintf("%s (%.3g/min) vs %s: ratio %.3g", so, whole.perMinute(), base, ratio)
		return result{status: judgeStatus(c, ratio), value: ratio, reason: what + verdictSuffix(c, ratio)}
	}
	if (c.Op == "<" || c.Op == "<=") && !c.Holds(ratio) {
		return result{status: eventsv1.CheckStatus_CHECK_STATUS_FAILURE, value: ratio,
			reason: fmt.Sprintf("%s already make %.3g/min over the %s window vs %s: ratio at least %.3g, want %s %g", so, whole.perMinute(), window, base, ratio, c.Op, c.Threshold)}
	}
	return pending("%s so far (ratio at least %.3g vs %s)", so, ratio, base)
}

func judgeStatus(c Check, v float64) eventsv1.CheckStatus {
	if c.Holds(v) {
		return eventsv1.CheckStatus_CHECK_STATUS_SUCCESS
	}
	return eventsv1.CheckStatus_CHECK_STATUS_FAILURE
}

func verdictSuffix(c Check, v float64) string {
	if c.Holds(v) {
		return fmt.Sprintf(" (%s %g holds)", c.Op, c.Threshold)
	}
	return fmt.Sprintf(", want %s %g", c.Op, c.Threshold)
}

// graphite asks the render API for target over the window and returns the
// newest value (the largest across series).
func (s *Service) graphite(ctx context.Context, target string, window, timeout time.Duration) (float64, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	q := url.Values{"target": {target}, "from": {fmt.Sprintf("-%ds", max(int(window.Seconds()), 60))}, "until": {"now"}, "format": {"json"}}
	u := strings.TrimSuffix(s.cfg.GraphiteURL, "/") + "/render?" + q.Encode()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("graphite render %s: %w", target, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("graphite render %s: HTTP %d %s", target, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	var series []struct {
		Target     string        `json:"target"`
		Datapoints [][2]*float64 `json:"datapoints"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&series); err != nil {
		return 0, fmt.Errorf("graphite render %s: %w", target, err)
	}
	best, found := math.Inf(-1), false
	for _, se := range series {
		for i := len(se.Datapoints) - 1; i >= 0; i-- {
			if p := se.Datapoints[i][0]; p != nil {
				best, found = max(best, *p), true
				break
			}
		}
	}
	if !found {
		return 0, fmt.Errorf("graphite: no datapoints for %s in the last %s", target, window)
	}
	return best, nil
}

func loadChecks(ctx context.Context, q querier, id string) ([]*eventsv1.CheckResult, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, status, value, reason, measured_at FROM checks WHERE deploy_id = $1 ORDER BY position`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*eventsv1.CheckResult
	for rows.Next() {
		c := &eventsv1.CheckResult{}
		var status int32
		var at int64
		if err := rows.Scan(&c.Check, &status, &c.Value, &c.Reason, &at); err != nil {
			return nil, err
		}
		c.Status = eventsv1.CheckStatus(status)
		if at > 0 {
			c.MeasuredAt = timestamppb.New(time.Unix(0, at))
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
