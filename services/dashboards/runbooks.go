package dashboards

import (
	"context"
	"slices"
	"strings"
	"time"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// runbookRunView is a runbook run in an environment's history: runs
// against it, and data runs copying from it.
type runbookRunView struct {
	ID, Runbook, Kind, From, Environment, By, Options, Status, Reason string
	StartedAt, FinishedAt                                             time.Time
	// BuildID and JobID, when the run has a job: its log's address.
	BuildID, JobID string
}

// LogURL is the run's job log (the build page's raw log route), "" before
// the run has a job.
func (r runbookRunView) LogURL() string {
	if r.BuildID == "" || r.JobID == "" {
		return ""
	}
	return "/builds/" + r.BuildID + "/jobs/" + r.JobID + "/log.txt"
}

// dataCopyView is one environment.data_copied of an environment.
type dataCopyView struct {
	RunID, Runbook, From, To, By string
	At                           time.Time
}

// projectRunbook writes runbook.started/finished into dash_runbook_runs (a
// finished run is never taken back to running by a late started) and
// environment.data_copied into dash_data_copies.
func projectRunbook(ctx context.Context, tx execer, data any, at time.Time) error {
	switch d := data.(type) {
	case *eventsv1.RunbookStarted:
		return upsertRunbookRun(ctx, tx, d.GetRun(), nanos(d.GetRun().GetStartedAt(), at), 0)
	case *eventsv1.RunbookFinished:
		return upsertRunbookRun(ctx, tx, d.GetRun(), nanos(d.GetRun().GetStartedAt(), at), nanos(d.GetRun().GetFinishedAt(), at))
	case *eventsv1.DataCopied:
		_, err := tx.ExecContext(ctx, `INSERT INTO dash_data_copies (repository, environment, run_id, runbook, from_env, to_env, run_by, at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (repository, environment, run_id) DO NOTHING`,
			d.GetRepository(), d.GetEnvironment(), d.GetRunId(), d.GetRunbook(), d.GetFromEnvironment(), d.GetToEnvironment(), d.GetBy(), nanos(d.GetAt(), at))
		return err
	}
	return nil
}

func upsertRunbookRun(ctx context.Context, tx execer, r *eventsv1.RunbookRun, started, finished int64) error {
	var opts []string
	for k, v := range r.GetOptions() {
		opts = append(opts, k+"="+v)
	}
	slices.Sort(opts)
	_, err := tx.ExecContext(ctx, `INSERT INTO dash_runbook_runs (run_id, repository, runbook, environment, from_env, kind, run_by, options, status, reason, started_at, finished_at, build_id, job_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, started_at = excluded.started_at, finished_at = excluded.finished_at,
			build_id = excluded.build_id, job_id = excluded.job_id
		WHERE dash_runbook_runs.finished_at = 0`,
		r.GetRunId(), r.GetRepository(), r.GetRunbook(), r.GetEnvironment(), r.GetFromEnvironment(), r.GetKind(), r.GetBy(), strings.Join(opts, " "),
		r.GetStatus(), r.GetReason(), started, finished, r.GetBuildId(), r.GetJobId())
	return err
}

// envRunbooks reads the newest 50 runbook runs against env or copying from
// it, and its newest 20 data copies.
func (s *Service) envRunbooks(ctx context.Context, repo, env string) ([]runbookRunView, []dataCopyView, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT run_id, runbook, kind, from_env, environment, run_by, options, status, reason, started_at, finished_at, build_id, job_id
		FROM dash_runbook_runs WHERE repository = $1 AND (environment = $2 OR from_env = $2) ORDER BY started_at DESC, run_id DESC LIMIT 50`, repo, env)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var runs []runbookRunView
	for rows.Next() {
		var r runbookRunView
		var started, finished int64
		if err := rows.Scan(&r.ID, &r.Runbook, &r.Kind, &r.From, &r.Environment, &r.By, &r.Options, &r.Status, &r.Reason, &started, &finished, &r.BuildID, &r.JobID); err != nil {
			return nil, nil, err
		}
		r.StartedAt, r.FinishedAt = ts(started), ts(finished)
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	rows.Close()
	rows, err = s.db.QueryContext(ctx, `SELECT run_id, runbook, from_env, to_env, run_by, at FROM dash_data_copies
		WHERE repository = $1 AND environment = $2 ORDER BY at DESC, run_id DESC LIMIT 20`, repo, env)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var copies []dataCopyView
	for rows.Next() {
		var c dataCopyView
		var at int64
		if err := rows.Scan(&c.RunID, &c.Runbook, &c.From, &c.To, &c.By, &at); err != nil {
			return nil, nil, err
		}
		c.At = ts(at)
		copies = append(copies, c)
	}
	return runs, copies, rows.Err()
}
