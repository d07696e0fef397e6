package dashboards

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// errBadEvent marks an event the read models can never take.
var errBadEvent = errors.New("bad event")

// execer is a transaction or a database.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// enumStatus turns BUILD_STATUS_SUCCESS into "success".
func enumStatus(e protoreflect.Enum) string {
	name := string(e.Descriptor().Values().ByNumber(e.Number()).Name())
	prefix := strings.TrimSuffix(string(e.Descriptor().Values().Get(0).Name()), "UNSPECIFIED")
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

func nanos(ts *timestamppb.Timestamp, fallback time.Time) int64 {
	if ts == nil || (ts.Seconds == 0 && ts.Nanos == 0) {
		return fallback.UnixNano()
	}
	return ts.AsTime().UnixNano()
}

// project writes one event into the read models. It is idempotent per
// event (the inbox) and tolerant of order: a later state never goes back.
func project(ctx context.Context, tx execer, ev bus.Event) error {
	if _, err := tx.ExecContext(ctx, `UPDATE dash_meta SET version = version + 1 WHERE id = 1`); err != nil {
		return err
	}
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	chain := ev.ChainID
	if chain == "" {
		chain = ev.ID
	}
	switch d := ev.Data.(type) {
	case *eventsv1.Change:
		return projectChange(ctx, tx, ev, chain, d, at)
	case *eventsv1.BuildCreated:
		_, err := tx.ExecContext(ctx, `INSERT INTO dash_builds (id, chain_id, repository, number, ref, commit_sha, version, status, created_at, branch, event)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $10) ON CONFLICT (id) DO NOTHING`,
			d.BuildId, chain, d.Repository, d.Number, d.Ref, d.Commit, d.Version, nanos(d.CreatedAt, at), refBranch(d.Ref), buildEvent(d.Trigger, d.Ref))
		return err
	case *eventsv1.BuildStarted:
		_, err := tx.ExecContext(ctx, `UPDATE dash_builds SET status = 'running' WHERE id = $1 AND status = 'queued'`, d.BuildId)
		return err
	case *eventsv1.BuildFinished:
		var dur int64
		if d.Duration != nil {
			dur = d.Duration.AsDuration().Milliseconds()
		}
		res, err := tx.ExecContext(ctx, `UPDATE dash_builds SET status = $1, failed_step = $2, error = $3, finished_at = $4, duration_ms = $5 WHERE id = $6`,
			enumStatus(d.Status), d.FailedStep, d.Error, nanos(d.FinishedAt, at), dur, d.BuildId)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 { // created before the EVENTS retention, or out of order
			_, err = tx.ExecContext(ctx, `INSERT INTO dash_builds (id, chain_id, repository, number, ref, commit_sha, version, status, failed_step, error, created_at, finished_at, duration_ms,
				branch, event)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14) ON CONFLICT (id) DO NOTHING`,
				d.BuildId, chain, d.Repository, d.Number, d.Ref, d.Commit, d.Version, enumStatus(d.Status), d.FailedStep, d.Error, nanos(d.FinishedAt, at), dur,
				refBranch(d.Ref), buildEvent("", d.Ref))
		}
		return err
	case *eventsv1.JobQueued:
		matrix, _ := json.Marshal(d.Matrix)
		steps, _ := json.Marshal(d.Steps)
		_, err := tx.ExecContext(ctx, `INSERT INTO dash_jobs (id, build_id, kind, status, matrix, steps, queued_at) VALUES ($1, $2, $3, 'queued', $4, $5, $6)
			ON CONFLICT (id) DO NOTHING`, d.JobId, d.BuildId, d.Kind, string(matrix), string(steps), at.UnixNano())
		return err
	case *eventsv1.JobStarted:
		if d.BuildId == "" {
			return nil // a command monitor's check: no build's job
		}
		if err := ensureJob(ctx, tx, d.JobId, d.BuildId, at); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE dash_jobs SET status = 'running', agent = $1 WHERE id = $2 AND status IN ('queued', 'running')`, d.Agent, d.JobId)
		return err
	case *eventsv1.JobStepFinished:
		if d.BuildId == "" {
			return nil // a command monitor's check: no build's job
		}
		if err := ensureJob(ctx, tx, d.JobId, d.BuildId, at); err != nil {
			return err
		}
		return upsertStep(ctx, tx, d.JobId, d.Step)
	case *eventsv1.JobFinished:
		if d.BuildId == "" {
			return nil // a command monitor's check: no build's job
		}
		if err := ensureJob(ctx, tx, d.JobId, d.BuildId, at); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE dash_jobs SET status = $1 WHERE id = $2`, enumStatus(d.Status), d.JobId); err != nil {
			return err
		}
		if d.Agent != "" {
			if _, err := tx.ExecContext(ctx, `UPDATE dash_jobs SET agent = $1 WHERE id = $2`, d.Agent, d.JobId); err != nil {
				return err
			}
		}
		for _, st := range d.Steps {
			if err := upsertStep(ctx, tx, d.JobId, st); err != nil {
				return err
			}
		}
		for _, a := range d.Artifacts {
			if err := upsertFile(ctx, tx, d.BuildId, d.JobId, "artifact", a.GetName(), a.GetSize(), a.GetStep()); err != nil {
				return err
			}
		}
		if err := recordImages(ctx, tx, d); err != nil {
			return err
		}
		for _, r := range d.Reports {
			if err := upsertFile(ctx, tx, d.BuildId, d.JobId, "report", r.GetName(), r.GetSize(), r.GetKind()); err != nil {
				return err
			}
		}
		return nil
	case *eventsv1.TestRunStarted:
		_, err := tx.ExecContext(ctx, `INSERT INTO dash_testruns (run_id, build_id, repository, status, at) VALUES ($1, $2, $3, 'running', $4)
			ON CONFLICT (run_id) DO NOTHING`, d.RunId, d.BuildId, d.Repository, nanos(d.StartedAt, at))
		return err
	case *eventsv1.TestRunFinished:
		c := d.GetCounts()
		cov := d.GetCoverage()
		failures := make([]failedTestView, 0, len(d.GetFailures()))
		for _, f := range d.GetFailures() {
			failures = append(failures, failedTestView{Suite: f.GetSuite(), Class: f.GetClassName(), Name: f.GetName(), Status: f.GetStatus(), Message: f.GetMessage()})
		}
		failuresJSON, _ := json.Marshal(failures)
		_, err := tx.ExecContext(ctx, `INSERT INTO dash_testruns (run_id, build_id, repository, status, tests, passed, failed, skipped, covered, coverable, error, failures, at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, tests = excluded.tests, passed = excluded.passed, failed = excluded.failed,
				skipped = excluded.skipped, covered = excluded.covered, coverable = excluded.coverable, error = excluded.error, failures = excluded.failures, at = excluded.at`,
			d.RunId, d.BuildId, d.Repository, enumStatus(d.Status), c.GetTests(), c.GetPassed(), c.GetFailed()+c.GetErrors(), c.GetSkipped(),
			cov.GetLinesCovered(), cov.GetLinesTotal(), d.Error, string(failuresJSON), nanos(d.FinishedAt, at))
		return err
	case *eventsv1.GateEvaluated:
		conds := make([]gateCondition, 0, len(d.Conditions))
		for _, c := range d.Conditions {
			metric := c.Metric
			if c.Expression != "" {
				metric = c.Expression
			}
			conds = append(conds, gateCondition{Metric: metric, Operator: c.Operator, Threshold: c.Threshold, Scope: c.Scope,
				Value: c.Value, HasValue: c.HasValue, Verdict: c.Verdict, Detail: c.Detail})
		}
		data, _ := json.Marshal(conds)
		_, err := tx.ExecContext(ctx, `INSERT INTO dash_gates (build_id, repository, revision, status, summary, conditions, at) VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (build_id) DO UPDATE SET revision = excluded.revision, status = excluded.status, summary = excluded.summary,
				conditions = excluded.conditions, at = excluded.at WHERE dash_gates.revision <= excluded.revision`,
			d.BuildId, d.Repository, d.Revision, enumStatus(d.Status), d.Summary, string(data), nanos(d.EvaluatedAt, at))
		return err
	case *eventsv1.DeployStarted:
		return upsertDeploy(ctx, tx, chain, d.Deploy, "running", "", nanos(d.StartedAt, at), 0)
	case *eventsv1.DeployPending:
		return upsertDeploy(ctx, tx, chain, d.Deploy, enumStatus(d.Status), d.Reason, 0, 0)
	case *eventsv1.DeployApproved:
		if err := upsertDeploy(ctx, tx, chain, d.Deploy, "", "", 0, 0); err != nil {
			return err
		}
		var approvers string
		if err := tx.QueryRowContext(ctx, `SELECT approvers FROM dash_deploys WHERE id = $1`, d.Deploy.GetDeployId()).Scan(&approvers); err != nil {
			return err
		}
		list := splitList(approvers)
		if d.Approver == "" || slices.Contains(list, d.Approver) {
			return nil
		}
		_, err := tx.ExecContext(ctx, `UPDATE dash_deploys SET approvers = $1 WHERE id = $2`, strings.Join(append(list, d.Approver), ", "), d.Deploy.GetDeployId())
		return err
	case *eventsv1.DeployFinished:
		status := enumStatus(d.Status)
		fin := nanos(d.FinishedAt, at)
		if err := upsertDeploy(ctx, tx, chain, d.Deploy, status, d.Reason, 0, fin); err != nil {
			return err
		}
		checks := make([]checkView, 0, len(d.Checks))
		for _, c := range d.Checks {
			checks = append(checks, checkView{Check: c.GetCheck(), Status: strings.ToLower(strings.TrimPrefix(c.GetStatus().String(), "CHECK_STATUS_")), Reason: c.GetReason()})
		}
		checksJSON, _ := json.Marshal(checks)
		if _, err := tx.ExecContext(ctx, `UPDATE dash_deploys SET checks = $1 WHERE id = $2`, string(checksJSON), d.Deploy.GetDeployId()); err != nil {
			return err
		}
		if d.Status == eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK {
			if _, err := tx.ExecContext(ctx, `UPDATE dash_deploys SET rolled_back = 1 WHERE id = $1`, d.Deploy.GetDeployId()); err != nil {
				return err
			}
		}
		if d.Status == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED {
			ref := d.Deploy
			_, err := tx.ExecContext(ctx, `INSERT INTO dash_environments (repository, name, deploy_id, release, status, since) VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (repository, name) DO UPDATE SET deploy_id = excluded.deploy_id, release = excluded.release, status = excluded.status, since = excluded.since
				WHERE dash_environments.since <= excluded.since`,
				ref.GetRepository(), ref.GetEnvironment(), ref.GetDeployId(), ref.GetRelease(), status, fin)
			return err
		}
		return nil
	case *eventsv1.DeployRolledBack:
		if err := upsertDeploy(ctx, tx, chain, d.Deploy, "", d.Cause, 0, 0); err != nil {
			return err
		}
		// Kept apart from reason, which deploy.finished overwrites.
		if _, err := tx.ExecContext(ctx, `UPDATE dash_deploys SET rolled_back_from = $1, rollback_cause = $2 WHERE id = $3`,
			d.FromRelease, d.Cause, d.Deploy.GetDeployId()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE dash_deploys SET rolled_back = 1 WHERE id = $1`, d.RolledBackDeployId)
		return err
	case *eventsv1.EnvironmentChanged:
		if ev.Type == "environment.frozen" {
			// An empty environment freezes every environment of the repository.
			q := `UPDATE dash_environments SET frozen_from = $1, frozen_until = $2, freeze_reason = $3 WHERE repository = $4`
			args := []any{nanos(d.StartsAt, at), nanos(d.EndsAt, at), d.Reason, d.Repository}
			if d.Environment != "" {
				if _, err := tx.ExecContext(ctx, `INSERT INTO dash_environments (repository, name) VALUES ($1, $2) ON CONFLICT (repository, name) DO NOTHING`,
					d.Repository, d.Environment); err != nil {
					return err
				}
				q += ` AND name = $5`
				args = append(args, d.Environment)
			}
			_, err := tx.ExecContext(ctx, q, args...)
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO dash_environments (repository, name) VALUES ($1, $2) ON CONFLICT (repository, name) DO NOTHING`,
			d.Repository, d.Environment); err != nil {
			return err
		}
		switch ev.Type {
		case "environment.locked":
			_, err := tx.ExecContext(ctx, `UPDATE dash_environments SET locked = 1, locked_by = $1, lock_reason = $2 WHERE repository = $3 AND name = $4`,
				d.By, d.Reason, d.Repository, d.Environment)
			return err
		case "environment.unlocked":
			_, err := tx.ExecContext(ctx, `UPDATE dash_environments SET locked = 0, locked_by = '', lock_reason = '' WHERE repository = $1 AND name = $2`,
				d.Repository, d.Environment)
			return err
		case "environment.deleted":
			_, err := tx.ExecContext(ctx, `DELETE FROM dash_environments WHERE repository = $1 AND name = $2`, d.Repository, d.Environment)
			return err
		}
		return nil
	case *eventsv1.RunbookStarted, *eventsv1.RunbookFinished, *eventsv1.DataCopied:
		return projectRunbook(ctx, tx, d, at) // runbooks.go
	case *eventsv1.MonitorStateChanged:
		// The environments page shows each monitor's newest state (monitors,
		// services/deploys/monitor.go); an older event never overwrites it.
		since := nanos(d.Since, at)
		_, err := tx.ExecContext(ctx, `INSERT INTO dash_monitors (repository, environment, name, state, since, detail) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (repository, environment, name) DO UPDATE SET state = excluded.state, since = excluded.since, detail = excluded.detail
			WHERE dash_monitors.since <= excluded.since`,
			d.Repository, d.Environment, d.Monitor, strings.TrimPrefix(d.To.String(), "MONITOR_STATE_"), since, d.Detail)
		return err
	case *errortrackv1.IssueOpened:
		return insertIssue(ctx, tx, ev.Repository, d.Issue, "opened", d.Release, d.Environment, at)
	case *errortrackv1.IssueRegressed:
		return insertIssue(ctx, tx, ev.Repository, d.Issue, "regressed", d.Release, d.Environment, at)
	case *errortrackv1.IssueResolved:
		_, err := tx.ExecContext(ctx, `UPDATE dash_issues SET resolved_at = $1 WHERE issue_id = $2 AND resolved_at = 0`, at.UnixNano(), d.Issue.GetIssueId())
		return err
	}
	return nil
}

func projectChange(ctx context.Context, tx execer, ev bus.Event, chain string, d *eventsv1.Change, at time.Time) error {
	commit := d.After
	var message, author string
	if n := len(d.Commits); n > 0 {
		head := d.Commits[n-1]
		for _, c := range d.Commits {
			if c.Sha == d.After {
				head = c
			}
		}
		message, author = head.Message, head.AuthorName
		if commit == "" {
			commit = head.Sha
		}
	}
	if author == "" {
		author = d.Sender
	}
	if i := strings.IndexByte(message, '\n'); i >= 0 {
		message = message[:i]
	}
	branch := d.Branch
	if branch == "" && d.Tag != "" {
		branch = "tag " + d.Tag
	}
	if d.PullRequestNumber > 0 {
		branch = fmt.Sprintf("PR #%d", d.PullRequestNumber)
		if message == "" {
			message = d.PullRequestTitle
		}
	}
	if d.DefaultBranch != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO dash_repos (name, default_branch) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET default_branch = excluded.default_branch`, d.Repository, d.DefaultBranch); err != nil {
			return err
		}
	}
	kind := strings.ToLower(strings.TrimPrefix(d.Kind.String(), "CHANGE_KIND_"))
	if _, err := tx.ExecContext(ctx, `INSERT INTO dash_changes (chain_id, repository, kind, ref, branch, commit_sha, message, author, pushed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (chain_id) DO NOTHING`,
		chain, d.Repository, kind, d.Ref, branch, commit, message, author, at.UnixNano()); err != nil {
		return err
	}
	for _, c := range d.Commits {
		if _, err := tx.ExecContext(ctx, `INSERT INTO dash_commits (repository, sha, pushed_at) VALUES ($1, $2, $3) ON CONFLICT (repository, sha) DO NOTHING`,
			d.Repository, c.Sha, at.UnixNano()); err != nil {
			return err
		}
	}
	if commit != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO dash_commits (repository, sha, pushed_at) VALUES ($1, $2, $3) ON CONFLICT (repository, sha) DO NOTHING`,
			d.Repository, commit, at.UnixNano()); err != nil {
			return err
		}
	}
	switch d.Kind {
	case eventsv1.ChangeKind_CHANGE_KIND_BRANCH_DELETED, eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_CLOSED, eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_MERGED:
		_, err := tx.ExecContext(ctx, `DELETE FROM dash_branches WHERE repository = $1 AND branch = $2`, d.Repository, branch)
		return err
	case eventsv1.ChangeKind_CHANGE_KIND_TAG_DELETED:
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO dash_branches (repository, branch, chain_id, pushed_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (repository, branch) DO UPDATE SET chain_id = excluded.chain_id, pushed_at = excluded.pushed_at
		WHERE dash_branches.pushed_at <= excluded.pushed_at`, d.Repository, branch, chain, at.UnixNano())
	return err
}

// refBranch is how the pages name a build's ref: the branch, "tag v1",
// "PR #12", else the ref itself.
func refBranch(ref string) string {
	switch {
	case strings.HasPrefix(ref, "refs/heads/"):
		return strings.TrimPrefix(ref, "refs/heads/")
	case strings.HasPrefix(ref, "refs/tags/"):
		return "tag " + strings.TrimPrefix(ref, "refs/tags/")
	case strings.HasPrefix(ref, "refs/pull/"):
		n, _, _ := strings.Cut(strings.TrimPrefix(ref, "refs/pull/"), "/")
		return "PR #" + n
	case strings.HasPrefix(ref, "refs/merge-requests/"):
		n, _, _ := strings.Cut(strings.TrimPrefix(ref, "refs/merge-requests/"), "/")
		return "PR #" + n
	}
	return ref
}

// buildEvent is what started a build: the trigger build.created names
// (push, tag, pull_request, manual), else what its ref says.
func buildEvent(trigger, ref string) string {
	if trigger != "" {
		return trigger
	}
	switch {
	case strings.HasPrefix(ref, "refs/tags/"):
		return "tag"
	case strings.HasPrefix(ref, "refs/pull/"), strings.HasPrefix(ref, "refs/merge-requests/"):
		return "pull_request"
	}
	return "push"
}

func upsertFile(ctx context.Context, tx execer, buildID, jobID, kind, name string, size int64, detail string) error {
	if name == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO dash_files (build_id, job_id, kind, name, size, detail) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (build_id, job_id, kind, name) DO UPDATE SET size = excluded.size, detail = excluded.detail`, buildID, jobID, kind, name, size, detail)
	return err
}

func ensureJob(ctx context.Context, tx execer, jobID, buildID string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO dash_jobs (id, build_id, kind, status, queued_at) VALUES ($1, $2, 'build', 'queued', $3)
		ON CONFLICT (id) DO NOTHING`, jobID, buildID, at.UnixNano())
	return err
}

func upsertStep(ctx context.Context, tx execer, jobID string, st *eventsv1.StepResult) error {
	if st == nil {
		return nil
	}
	var dur int64
	if st.Duration != nil {
		dur = st.Duration.AsDuration().Milliseconds()
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO dash_steps (job_id, name, status, exit_code, duration_ms, error) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (job_id, name) DO UPDATE SET status = excluded.status, exit_code = excluded.exit_code, duration_ms = excluded.duration_ms, error = excluded.error`,
		jobID, st.Name, enumStatus(st.Status), st.ExitCode, dur, st.Error)
	return err
}

func upsertDeploy(ctx context.Context, tx execer, chain string, ref *eventsv1.DeployRef, status, reason string, started, finished int64) error {
	if ref.GetDeployId() == "" {
		return bus.Permanent(fmt.Errorf("%w: deploy event without deploy.deploy_id", errBadEvent))
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO dash_deploys (id, chain_id, repository, environment, release, commit_sha, build_id, kind, triggered_by, status)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending') ON CONFLICT (id) DO NOTHING`,
		ref.GetDeployId(), chain, ref.GetRepository(), ref.GetEnvironment(), ref.GetRelease(), ref.GetCommit(), ref.GetBuildId(), ref.GetKind(), ref.GetTriggeredBy()); err != nil {
		return err
	}
	// A finished deploy keeps its end state whatever arrives late.
	if status != "" {
		q := `UPDATE dash_deploys SET status = $1 WHERE id = $2 AND finished_at = 0`
		if finished > 0 {
			q = `UPDATE dash_deploys SET status = $1 WHERE id = $2`
		}
		if _, err := tx.ExecContext(ctx, q, status, ref.GetDeployId()); err != nil {
			return err
		}
	}
	if reason != "" {
		if _, err := tx.ExecContext(ctx, `UPDATE dash_deploys SET reason = $1 WHERE id = $2`, reason, ref.GetDeployId()); err != nil {
			return err
		}
	}
	if started > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE dash_deploys SET started_at = $1 WHERE id = $2`, started, ref.GetDeployId()); err != nil {
			return err
		}
	}
	if finished > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE dash_deploys SET finished_at = $1 WHERE id = $2`, finished, ref.GetDeployId()); err != nil {
			return err
		}
	}
	return nil
}

func insertIssue(ctx context.Context, tx execer, repo string, is *errortrackv1.IssueRef, status, release, env string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO dash_issues (issue_id, status, repository, project, title, level, release, environment, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (issue_id, status, release, environment) DO NOTHING`,
		is.GetIssueId(), status, repo, is.GetProject(), is.GetTitle(), is.GetLevel(), release, env, at.UnixNano())
	return err
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ", ")
}

type gateCondition struct {
	Metric    string  `json:"metric"`
	Operator  string  `json:"operator"`
	Threshold float64 `json:"threshold"`
	Scope     string  `json:"scope,omitempty"`
	Value     float64 `json:"value"`
	HasValue  bool    `json:"has_value"`
	Verdict   string  `json:"verdict"`
	Detail    string  `json:"detail,omitempty"`
}
