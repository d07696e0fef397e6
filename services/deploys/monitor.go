package deploys

// Monitors: the checks of environments[].monitors, kept running against
// each environment for as long as the release whose file declares them is
// deployed there. State (OK, WARNING, CRITICAL, UNKNOWN) lives in the
// monitors table; a replica takes a monitor's lease (owner, lease_until)
// before checking it, so several replicas on one database check each
// monitor once per period. A state change is a monitor.state_changed
// event (outbox) and one alert per webhook (monitor_alerts), sent once,
// or recorded as silenced.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/deploys/config"
)

type monitorState = eventsv1.MonitorState

const (
	stateOK       = eventsv1.MonitorState_MONITOR_STATE_OK
	stateWarning  = eventsv1.MonitorState_MONITOR_STATE_WARNING
	stateCritical = eventsv1.MonitorState_MONITOR_STATE_CRITICAL
	stateUnknown  = eventsv1.MonitorState_MONITOR_STATE_UNKNOWN
)

// stateName is OK, WARNING, CRITICAL or UNKNOWN.
func stateName(s monitorState) string {
	return strings.TrimPrefix(s.String(), "MONITOR_STATE_")
}

// monitorLease is how long a replica may take over a monitor's check
// before another may take it.
const monitorLease = 30 * time.Second

// monitorLoop syncs the monitors with what is deployed, checks those due
// and sends pending alerts, every Tick, until ctx ends.
func (s *Service) monitorLoop(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	var syncAfter time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if time.Now().After(syncAfter) {
			if err := s.syncMonitors(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("monitors: sync", "err", err)
			}
			syncAfter = time.Now().Add(max(20*s.cfg.Tick, time.Second))
		}
		if err := s.checkMonitors(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("monitors", "err", err)
		}
		if err := s.sendAlerts(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("monitor alerts", "err", err)
		}
	}
}

// syncMonitors makes the monitors table what the releases deployed in each
// environment declare: new monitors start UNKNOWN, gone ones go inactive.
func (s *Service) syncMonitors(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT repository, environment FROM deployments WHERE deployed_at > 0 AND kind <> 'teardown' AND kind <> 'preview'`)
	if err != nil {
		return err
	}
	type key struct{ repo, env string }
	var envs []key
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.repo, &k.env); err != nil {
			rows.Close()
			return err
		}
		envs = append(envs, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, k := range envs {
		err := s.ob.InTx(ctx, func(tx *bus.Tx) error {
			d, err := currentDeployment(ctx, tx, k.repo, k.env)
			if err != nil || d == nil {
				return err
			}
			b, err := loadBuildInfo(ctx, tx, `id = $1`, d.buildID)
			if err != nil {
				return err
			}
			var mons []config.Monitor
			var env *Environment
			if cfg, err := b.parse(); err == nil {
				env, _ = cfg.Environment(k.env)
			}
			if env != nil {
				mons = env.Monitors
			}
			// Nothing to write when the rows are this deploy's already.
			var n, others int
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(CASE WHEN deploy_id = $3 THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN deploy_id <> $3 THEN 1 ELSE 0 END), 0)
				FROM monitors WHERE repository = $1 AND environment = $2 AND active = 1`, k.repo, k.env, d.id).Scan(&n, &others); err != nil {
				return err
			}
			if n == len(mons) && others == 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, `UPDATE monitors SET active = 0 WHERE repository = $1 AND environment = $2`, k.repo, k.env); err != nil {
				return err
			}
			for _, m := range mons {
				blocks := 0
				if env.BlocksPromotion(m.Name) {
					blocks = 1
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO monitors (repository, environment, name, release, build_id, deploy_id, check_text, blocks_promotion, active, state)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9)
					ON CONFLICT (repository, environment, name) DO UPDATE SET release = excluded.release, build_id = excluded.build_id, deploy_id = excluded.deploy_id,
						check_text = excluded.check_text, blocks_promotion = excluded.blocks_promotion, active = 1`,
					k.repo, k.env, m.Name, d.version, b.id, d.id, m.Check.Text, blocks, int32(stateUnknown)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s/%s: %w", k.repo, k.env, err)
		}
	}
	return nil
}

// monitorRow is one row of monitors.
type monitorRow struct {
	repo, env, name, release, buildID, deployID, detail, owner string
	state                                                      monitorState
	since, checkedAt, notifiedAt, leaseUntil                   int64
	failures                                                   int
	blocks                                                     bool
}

const monitorCols = `repository, environment, name, release, build_id, deploy_id, detail, owner, state, since, checked_at, notified_at, lease_until, failures, blocks_promotion`

func scanMonitor(r scanner) (*monitorRow, error) {
	m := &monitorRow{}
	var state int32
	var blocks int
	err := r.Scan(&m.repo, &m.env, &m.name, &m.release, &m.buildID, &m.deployID, &m.detail, &m.owner, &state, &m.since, &m.checkedAt, &m.notifiedAt, &m.leaseUntil, &m.failures, &blocks)
	m.state, m.blocks = monitorState(state), blocks == 1
	return m, err
}

func loadMonitors(ctx context.Context, q querier, where string, args ...any) ([]*monitorRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+monitorCols+` FROM monitors WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*monitorRow
	for rows.Next() {
		m, err := scanMonitor(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// checkMonitors checks every active monitor that is due and whose lease
// this replica gets.
func (s *Service) checkMonitors(ctx context.Context) error {
	now := s.now().UnixNano()
	due, err := loadMonitors(ctx, s.db, `active = 1 AND next_at <= $1 AND (lease_until < $1 OR owner = $2) ORDER BY next_at`, now, s.instance)
	if err != nil {
		return err
	}
	for _, m := range due {
		res, err := s.db.ExecContext(ctx, `UPDATE monitors SET owner = $1, lease_until = $2 WHERE repository = $3 AND environment = $4 AND name = $5 AND active = 1 AND next_at <= $6 AND (lease_until < $6 OR owner = $1)`,
			s.instance, now+monitorLease.Nanoseconds(), m.repo, m.env, m.name, now)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			continue // another replica has it
		}
		if err := s.checkMonitor(ctx, m); err != nil && ctx.Err() == nil {
			s.log.Warn("monitor", "repository", m.repo, "environment", m.env, "monitor", m.name, "err", err)
			// Try again after a while rather than at once.
			_, _ = s.db.ExecContext(ctx, `UPDATE monitors SET next_at = $1, lease_until = 0 WHERE repository = $2 AND environment = $3 AND name = $4 AND owner = $5`,
				s.now().Add(10*time.Second).UnixNano(), m.repo, m.env, m.name, s.instance)
		}
	}
	return nil
}

// outcome is one check of a monitor.
type outcome struct {
	state  monitorState // OK, WARNING, CRITICAL or UNKNOWN
	detail string
}

// checkMonitor runs one check of m (its lease taken) and records it.
func (s *Service) checkMonitor(ctx context.Context, m *monitorRow) error {
	var d *deployment
	var b *buildInfo
	var cfg *Pipeline
	var env *Environment
	var vars map[string]string
	err := s.ob.InTx(ctx, func(tx *bus.Tx) error {
		var err error
		if d, err = loadDeployment(ctx, tx, `id = $1`, m.deployID); err != nil {
			return err
		}
		if b, err = loadBuildInfo(ctx, tx, `id = $1`, m.buildID); err != nil {
			return err
		}
		if cfg, err = b.parse(); err != nil {
			return err
		}
		env, _ = cfg.Environment(m.env)
		if env == nil {
			return fmt.Errorf("release %s has no environment %s", m.release, m.env)
		}
		vars = s.jobEnv(ctx, tx, d, b, cfg, env)
		return nil
	})
	if err != nil {
		return err
	}
	var mon *config.Monitor
	for i := range env.Monitors {
		if env.Monitors[i].Name == m.name {
			mon = &env.Monitors[i]
		}
	}
	if mon == nil {
		return fmt.Errorf("release %s declares no monitor %s in %s", m.release, m.name, m.env)
	}
	if mon.Check.Kind == "command" {
		return s.startCommandCheck(ctx, m, d, b, cfg, env, mon, vars)
	}
	at := s.now()
	o := s.runMonitor(ctx, d, mon, vars, at)
	return s.ob.InTx(ctx, func(tx *bus.Tx) error {
		cur, err := loadMonitors(ctx, tx, `repository = $1 AND environment = $2 AND name = $3`, m.repo, m.env, m.name)
		if err != nil || len(cur) == 0 || cur[0].owner != s.instance {
			return err // another replica took it meanwhile (our lease ran out)
		}
		return s.recordOutcome(ctx, tx, env, mon, cur[0], o, at)
	})
}

// commandTimeout is how long a command monitor's job may run on its agent:
// its period, from commandMinTimeout (30 s) to 10 min.
func commandTimeout(every time.Duration) time.Duration {
	return min(max(every, commandMinTimeout), 10*time.Minute)
}

// commandMinTimeout and commandGrace: a command check's job may wait for an
// agent commandGrace on top of its timeout before the check is given up as
// UNKNOWN (variables for the tests).
var (
	commandMinTimeout = 30 * time.Second
	commandGrace      = time.Minute
)

// startCommandCheck hands a command monitor's check to an agent: a
// deploy-kind job (agents that serve the environment's deploys) with the
// release's checkout, the environment's variables and secrets, and one step
// running the commands (testinfra-style tests, a script). job.finished
// records the outcome (onMonitorJobFinished); the monitor is not due again
// until the job's timeout and commandGrace have passed, and a job still
// out then is canceled and the check recorded UNKNOWN: no agent ran it.
func (s *Service) startCommandCheck(ctx context.Context, m *monitorRow, d *deployment, b *buildInfo, cfg *Pipeline, env *Environment, mon *config.Monitor, vars map[string]string) error {
	at := s.now()
	timeout := commandTimeout(mon.Every)
	return s.ob.InTx(ctx, func(tx *bus.Tx) error {
		cur, err := loadMonitors(ctx, tx, `repository = $1 AND environment = $2 AND name = $3`, m.repo, m.env, m.name)
		if err != nil || len(cur) == 0 || cur[0].owner != s.instance {
			return err
		}
		c := cur[0]
		var pending string
		if err := tx.QueryRowContext(ctx, `SELECT job_id FROM monitors WHERE repository = $1 AND environment = $2 AND name = $3`, c.repo, c.env, c.name).Scan(&pending); err != nil {
			return err
		}
		if pending != "" {
			if err := tx.CancelJob(pending, fmt.Sprintf("monitor %s: its check did not finish within %s", c.name, timeout+commandGrace)); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE monitors SET job_id = '' WHERE repository = $1 AND environment = $2 AND name = $3`, c.repo, c.env, c.name); err != nil {
				return err
			}
			labels := cfg.JobLabels(env)
			pool := "deploy"
			if len(labels) > 0 {
				pool += " with labels " + strings.Join(labels, ",")
			}
			return s.recordOutcome(ctx, tx, env, mon, c, outcome{stateUnknown, fmt.Sprintf("command: no agent finished the check within %s (is an agent serving %s jobs up?)",
				timeout+commandGrace, pool)}, at)
		}
		cloneURL, err := b.jobCloneURL(ctx, tx)
		if err != nil {
			return err
		}
		job := &eventsv1.Job{
			JobId: bus.NewID(), Kind: "deploy", Repository: c.repo, CloneUrl: cloneURL, Ref: b.ref, Commit: d.commit, Version: d.version,
			Environment: vars, Timeout: durationpb.New(timeout), QueuedAt: timestamppb.New(at), Secrets: map[string]string{},
			Labels: cfg.JobLabels(env), Vcs: b.vcs,
			Steps: []*eventsv1.Step{{Name: "monitor-" + c.name, Commands: mon.Command, Secrets: cfg.StepSecrets(env, config.Step{}), Timeout: durationpb.New(timeout)}},
		}
		job.Steps[0].Image, job.Steps[0].Pull = cfg.StepImage(config.Step{})
		if _, err := tx.ExecContext(ctx, `UPDATE monitors SET job_id = $1, next_at = $2, lease_until = 0 WHERE repository = $3 AND environment = $4 AND name = $5`,
			job.JobId, at.Add(timeout+commandGrace).UnixNano(), c.repo, c.env, c.name); err != nil {
			return err
		}
		return tx.EnqueueFor("deploy", job.Labels, bus.Event{Type: "job.requested", Repository: c.repo, Subject: job.JobId, Data: job})
	})
}

// onMonitorJobFinished records a command monitor's check from its job's
// end: success is OK; a failed step CRITICAL, with the step's exit code and
// the last lines of its output; a job that errored or was canceled (the
// agent's trouble, not the service's) UNKNOWN. It reports whether the job
// was a monitor's.
func (s *Service) onMonitorJobFinished(ctx context.Context, tx *bus.Tx, j *eventsv1.JobFinished) (bool, error) {
	cur, err := loadMonitors(ctx, tx, `job_id = $1`, j.JobId)
	if err != nil || len(cur) == 0 {
		return false, err
	}
	c := cur[0]
	at := s.now()
	if _, err := tx.ExecContext(ctx, `UPDATE monitors SET job_id = '' WHERE repository = $1 AND environment = $2 AND name = $3 AND job_id = $4`, c.repo, c.env, c.name, j.JobId); err != nil {
		return true, err
	}
	b, err := loadBuildInfo(ctx, tx, `id = $1`, c.buildID)
	if err != nil {
		return true, err
	}
	cfg, err := b.parse()
	if err != nil {
		return true, err
	}
	env, _ := cfg.Environment(c.env)
	var mon *config.Monitor
	if env != nil {
		for i := range env.Monitors {
			if env.Monitors[i].Name == c.name {
				mon = &env.Monitors[i]
			}
		}
	}
	if mon == nil {
		return true, nil // the release changed meanwhile: nothing to record
	}
	var o outcome
	switch j.Status {
	case eventsv1.BuildStatus_BUILD_STATUS_SUCCESS:
		o = outcome{stateOK, "command: passed" + durationText(j)}
	case eventsv1.BuildStatus_BUILD_STATUS_FAILURE:
		o = outcome{stateCritical, "command: " + jobFailure(j) + s.logTail(ctx, j.JobId, 12)}
	default:
		o = outcome{stateUnknown, "command: the check's job ended " + strings.ToLower(strings.TrimPrefix(j.Status.String(), "BUILD_STATUS_")) + errSuffix(j.Error)}
	}
	return true, s.recordOutcome(ctx, tx, env, mon, c, o, at)
}

func durationText(j *eventsv1.JobFinished) string {
	if j.GetDuration() == nil {
		return ""
	}
	return " in " + j.GetDuration().AsDuration().Round(time.Millisecond).String()
}

func errSuffix(e string) string {
	if e = strings.TrimSpace(e); e == "" {
		return ""
	}
	return ": " + e
}

// logTail is the last n lines of output of a finished job's stored log, as
// ": a | b | c", or "" when it cannot be read within 2 s.
func (s *Service) logTail(ctx context.Context, jobID string, n int) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	lines, err := s.cfg.Bus.StoredLog(ctx, jobID)
	if err != nil {
		return ""
	}
	var out []string
	for _, l := range lines {
		if st := l.GetStream(); st == "stdout" || st == "stderr" {
			if t := strings.TrimSpace(l.GetText()); t != "" {
				out = append(out, t)
			}
		}
	}
	if len(out) == 0 {
		return ""
	}
	out = out[max(0, len(out)-n):]
	text := strings.Join(out, " | ")
	if len(text) > 1000 {
		text = "…" + text[len(text)-1000:]
	}
	return ": " + text
}

// recordOutcome records one check of monitor c: its state after fail_after,
// the state change event and alerts, and when it is next due.
func (s *Service) recordOutcome(ctx context.Context, tx *bus.Tx, env *Environment, mon *config.Monitor, c *monitorRow, o outcome, at time.Time) error {
	failures, next := 0, c.state
	if o.state == stateOK {
		next = stateOK
	} else {
		failures = c.failures + 1
		if failures >= mon.FailAfter {
			next = o.state
		}
	}
	since := c.since
	changed := next != c.state
	if changed || since == 0 {
		since = at.UnixNano()
	}
	if c.since == 0 && next == stateUnknown {
		since = 0 // still never decided (a command monitor, say)
	}
	notified := c.notifiedAt
	if changed {
		ev := &eventsv1.MonitorStateChanged{Repository: c.repo, Environment: c.env, Monitor: c.name, From: c.state, To: next,
			Detail: o.detail, Since: timestamppb.New(time.Unix(0, since)), Release: c.release}
		if err := tx.Publish(bus.Event{Type: "monitor.state_changed", Repository: c.repo, Subject: c.env + "/" + c.name, Data: ev}); err != nil {
			return err
		}
		// The first decision about a new monitor (UNKNOWN, never
		// checked, to OK) is news to no one.
		if !(c.since == 0 && next == stateOK) {
			if err := s.queueAlerts(ctx, tx, env, c, c.state, next, o.detail, since, at, nil); err != nil {
				return err
			}
			notified = at.UnixNano()
		}
	} else if next == stateCritical {
		// Still CRITICAL: webhooks with renotify hear it again.
		var again []config.Alert
		for _, a := range env.Alerts {
			if a.Renotify > 0 && at.UnixNano()-c.notifiedAt >= a.Renotify.Nanoseconds() {
				again = append(again, a)
			}
		}
		if len(again) > 0 {
			if err := s.queueAlerts(ctx, tx, env, c, c.state, next, o.detail, since, at, again); err != nil {
				return err
			}
			notified = at.UnixNano()
		}
	}
	_, err := tx.ExecContext(ctx, `UPDATE monitors SET state = $1, since = $2, detail = $3, failures = $4, checked_at = $5, notified_at = $6, next_at = $7, lease_until = 0
		WHERE repository = $8 AND environment = $9 AND name = $10`,
		int32(next), since, o.detail, failures, at.UnixNano(), notified, at.Add(mon.Every).UnixNano(), c.repo, c.env, c.name)
	return err
}

// runMonitor takes one measurement with the verification checks (see
// measure). An HTTP probe that gets no answer is CRITICAL: the service is
// down; other checks that cannot decide are UNKNOWN. errortrack checks
// look at the last max(every, 5m).
func (s *Service) runMonitor(ctx context.Context, d *deployment, m *config.Monitor, vars map[string]string, at time.Time) outcome {
	c := m.Check
	window := max(m.Every, 5*time.Minute)
	if c.Kind == "graphite" {
		window = max(m.Every, time.Minute)
	}
	dd := *d
	dd.verifyUntil = at.UnixNano()
	dd.deployedAt = max(d.deployedAt, at.Add(-window).UnixNano())
	if c.Kind != "errortrack.error_rate_ratio" {
		dd.startedAt = max(d.startedAt, at.Add(-window).UnixNano())
	}
	// measure's timeout comes from the window: at most 5s.
	r := s.measure(ctx, &dd, &Verify{Window: min(window, m.Every)}, c, vars, at)
	switch r.status {
	case eventsv1.CheckStatus_CHECK_STATUS_SUCCESS:
		if m.Warn != nil && !m.Warn.Holds(r.value) {
			return outcome{stateWarning, fmt.Sprintf("%s: %g, warn %s %g", c.Text, r.value, m.Warn.Op, m.Warn.Threshold)}
		}
		return outcome{stateOK, r.reason}
	case eventsv1.CheckStatus_CHECK_STATUS_FAILURE:
		return outcome{stateCritical, r.reason}
	}
	if strings.HasPrefix(c.Kind, "http_") {
		return outcome{stateCritical, r.reason}
	}
	return outcome{stateUnknown, r.reason}
}

// activeSilence is the silence in force on monitor of env at at, or 0.
func activeSilence(ctx context.Context, q querier, repo, env, monitor string, at int64) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM monitor_silences WHERE repository = $1 AND environment = $2 AND (monitor = $3 OR monitor = '') AND removed_at = 0 AND ends_at > $4 ORDER BY ends_at DESC LIMIT 1`,
		repo, env, monitor, at).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}

// alertPayload is the generic webhook's JSON.
type alertPayload struct {
	Repository  string    `json:"repository"`
	Environment string    `json:"environment"`
	Monitor     string    `json:"monitor"`
	State       string    `json:"state"`
	From        string    `json:"from"`
	Since       time.Time `json:"since"`
	Detail      string    `json:"detail"`
	Release     string    `json:"release"`
	Resolved    bool      `json:"resolved"`
	Reminder    bool      `json:"reminder,omitempty"`
}

// queueAlerts records one alert per webhook of env (only) for a change of
// c from → to: pending, or silenced under a silence.
func (s *Service) queueAlerts(ctx context.Context, tx *bus.Tx, env *Environment, c *monitorRow, from, to monitorState, detail string, since int64, at time.Time, only []config.Alert) error {
	alerts := env.Alerts
	if only != nil {
		alerts = only
	}
	if len(alerts) == 0 {
		return nil
	}
	silence, err := activeSilence(ctx, tx, c.repo, c.env, c.name, at.UnixNano())
	if err != nil {
		return err
	}
	p := alertPayload{Repository: c.repo, Environment: c.env, Monitor: c.name, State: stateName(to), From: stateName(from),
		Since: time.Unix(0, since).UTC(), Detail: detail, Release: c.release, Resolved: to == stateOK, Reminder: from == to}
	for _, a := range alerts {
		var body []byte
		if a.Format == "slack" {
			body, err = json.Marshal(map[string]string{"text": slackText(p)})
		} else {
			body, err = json.Marshal(p)
		}
		if err != nil {
			return err
		}
		status := "pending"
		if silence != 0 {
			status = "silenced"
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO monitor_alerts (repository, environment, monitor, from_state, to_state, webhook, format, payload, status, silence_id, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			c.repo, c.env, c.name, int32(from), int32(to), a.Webhook, a.Format, string(body), status, silence, at.UnixNano()); err != nil {
			return err
		}
	}
	return nil
}

func slackText(p alertPayload) string {
	icon := map[string]string{"OK": ":large_green_circle:", "WARNING": ":warning:", "CRITICAL": ":red_circle:", "UNKNOWN": ":grey_question:"}[p.State]
	what := fmt.Sprintf("%s is %s (was %s)", p.Monitor, p.State, p.From)
	switch {
	case p.Resolved:
		what = fmt.Sprintf("RESOLVED: %s is OK again (was %s)", p.Monitor, p.From)
	case p.Reminder:
		what = fmt.Sprintf("%s is still %s", p.Monitor, p.State)
	}
	return fmt.Sprintf("%s [%s %s] %s since %s: %s (release %s)", icon, p.Repository, p.Environment, what, p.Since.Format(time.RFC3339), p.Detail, p.Release)
}

// sendAlerts posts pending alerts. Each is claimed by moving its next_at
// first, so one replica sends it; a failed post is tried again with
// backoff, 5 times in all.
func (s *Service) sendAlerts(ctx context.Context) error {
	now := s.now()
	rows, err := s.db.QueryContext(ctx, `SELECT id, webhook, payload, attempts FROM monitor_alerts WHERE status = 'pending' AND next_at <= $1 ORDER BY id LIMIT 50`, now.UnixNano())
	if err != nil {
		return err
	}
	type pending struct {
		id               int64
		webhook, payload string
		attempts         int
	}
	var ps []pending
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.id, &p.webhook, &p.payload, &p.attempts); err != nil {
			rows.Close()
			return err
		}
		ps = append(ps, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, p := range ps {
		backoff := time.Duration(1<<min(p.attempts, 6)) * 5 * time.Second
		res, err := s.db.ExecContext(ctx, `UPDATE monitor_alerts SET attempts = attempts + 1, next_at = $1 WHERE id = $2 AND status = 'pending' AND next_at <= $3`,
			now.Add(backoff).UnixNano(), p.id, now.UnixNano())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			continue
		}
		if err := s.postAlert(ctx, p.webhook, []byte(p.payload)); err != nil {
			status := "pending"
			if p.attempts+1 >= 5 {
				status = "failed"
			}
			s.log.Warn("monitor alert", "webhook", config.RedactURL(p.webhook), "attempt", p.attempts+1, "err", err)
			if _, err := s.db.ExecContext(ctx, `UPDATE monitor_alerts SET status = $1, error = $2 WHERE id = $3`, status, err.Error(), p.id); err != nil {
				return err
			}
			continue
		}
		if _, err := s.db.ExecContext(ctx, `UPDATE monitor_alerts SET status = 'sent', sent_at = $1, error = '' WHERE id = $2`, s.now().UnixNano(), p.id); err != nil {
			return err
		}
	}
	return nil
}

// postAlert posts body to a webhook. Its errors never hold the URL, which
// may hold a token.
func (s *Service) postAlert(ctx context.Context, webhook string, body []byte) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, webhook, bytes.NewReader(body))
	if err != nil {
		return errors.New("invalid webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "shiploop-monitor/1")
	resp, err := s.http.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap() // *url.Error carries the URL; its cause does not
		}
		return fmt.Errorf("POST %s: %v", config.RedactURL(webhook), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: HTTP %d", config.RedactURL(webhook), resp.StatusCode)
	}
	return nil
}

// promotionBlocked refuses promotion out of env (to the next environment)
// while a monitor of env named by its block_promotion_on is CRITICAL.
func promotionBlocked(ctx context.Context, q querier, repo, env, next string) error {
	ms, err := loadMonitors(ctx, q, `repository = $1 AND environment = $2 AND active = 1 AND blocks_promotion = 1 AND state = $3 ORDER BY name`, repo, env, int32(stateCritical))
	if err != nil || len(ms) == 0 {
		return err
	}
	var what []string
	for _, m := range ms {
		what = append(what, fmt.Sprintf("%s since %s (%s)", m.name, time.Unix(0, m.since).UTC().Format(time.RFC3339), m.detail))
	}
	return status.Errorf(codes.FailedPrecondition, "promotion to %s refused: monitor(s) of %s are CRITICAL (block_promotion_on): %s; see shiploop monitor ls", next, env, strings.Join(what, "; "))
}
