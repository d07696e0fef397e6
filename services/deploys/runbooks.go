package deploys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/deploys/config"
)

// Runbook run states (runbook_runs.status).
const (
	runQueued    = "queued"
	runRunning   = "running"
	runSucceeded = "succeeded"
	runFailed    = "failed"
	runCanceled  = "canceled"
)

// runbookRun is one row of runbook_runs.
type runbookRun struct {
	id, repository, runbook, environment, kind, from, by, buildID, commit, jobID, status, reason string
	options                                                                                      map[string]string
	createdAt, startedAt, finishedAt                                                             int64
}

const runCols = `id, repository, runbook, environment, kind, from_env, run_by, options, build_id, commit_sha, job_id, status, reason, created_at, started_at, finished_at`

func scanRun(r scanner) (*runbookRun, error) {
	x := &runbookRun{}
	var opts string
	err := r.Scan(&x.id, &x.repository, &x.runbook, &x.environment, &x.kind, &x.from, &x.by, &opts, &x.buildID, &x.commit, &x.jobID, &x.status, &x.reason, &x.createdAt, &x.startedAt, &x.finishedAt)
	if err == nil {
		_ = json.Unmarshal([]byte(opts), &x.options)
	}
	return x, err
}

func loadRun(ctx context.Context, q querier, where string, args ...any) (*runbookRun, error) {
	return scanRun(q.QueryRowContext(ctx, `SELECT `+runCols+` FROM runbook_runs WHERE `+where, args...))
}

func loadRuns(ctx context.Context, q querier, where string, args ...any) ([]*runbookRun, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+runCols+` FROM runbook_runs WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*runbookRun
	for rows.Next() {
		x, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

func nanoTS(ns int64) *timestamppb.Timestamp {
	if ns == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, ns))
}

func (x *runbookRun) proto() *eventsv1.RunbookRun {
	return &eventsv1.RunbookRun{RunId: x.id, Repository: x.repository, Runbook: x.runbook, Environment: x.environment, Kind: x.kind,
		FromEnvironment: x.from, By: x.by, Options: x.options, JobId: x.jobID, Status: x.status, Reason: x.reason,
		CreatedAt: nanoTS(x.createdAt), StartedAt: nanoTS(x.startedAt), FinishedAt: nanoTS(x.finishedAt), BuildId: x.buildID, Commit: x.commit}
}

// RunbookError is a request a runbook refuses: unknown runbook or
// environment, a bad option (InvalidArgument over gRPC).
type RunbookError struct{ Msg string }

func (e *RunbookError) Error() string { return e.Msg }

// runbookBuild is the build whose .shiploop.yml defines a repository's
// runbooks: its newest default-branch build with a file.
func runbookBuild(ctx context.Context, tx *bus.Tx, repo string) (*buildInfo, error) {
	var branch string
	if err := tx.QueryRowContext(ctx, `SELECT default_branch FROM repositories WHERE name = $1`, repo).Scan(&branch); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	b, err := loadBuildInfo(ctx, tx, `repository = $1 AND config IS NOT NULL ORDER BY CASE WHEN ref = $2 THEN 0 ELSE 1 END, created_at DESC LIMIT 1`, repo, "refs/heads/"+branch)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, &RunbookError{Msg: fmt.Sprintf("no build of %s seen yet: runbooks come from the default branch's .shiploop.yml", repo)}
	}
	return b, err
}

// RunRunbook records a run of runbook name of repo by who and starts it,
// or queues it behind its environment's lock. envOverride, when set,
// replaces a task runbook's environment.
func (s *Service) RunRunbook(ctx context.Context, repo, name, envOverride string, given map[string]string, who string) (*runbookRun, error) {
	var out *runbookRun
	err := s.ob.InTx(ctx, func(tx *bus.Tx) error {
		var err error
		out, err = s.runRunbookTx(ctx, tx, repo, name, envOverride, given, who)
		return err
	})
	return out, err
}

// runRunbookTx is RunRunbook in the caller's transaction.
func (s *Service) runRunbookTx(ctx context.Context, tx *bus.Tx, repo, name, envOverride string, given map[string]string, who string) (*runbookRun, error) {
	var out *runbookRun
	err := func() error {
		b, err := runbookBuild(ctx, tx, repo)
		if err != nil {
			return err
		}
		cfg, err := b.parse()
		if err != nil {
			return &RunbookError{Msg: fmt.Sprintf("the .shiploop.yml of %s (build %s) does not parse: %v", repo, b.version, err)}
		}
		rb := cfg.Runbook(name)
		if rb == nil {
			var names []string
			for _, r := range cfg.Runbooks {
				names = append(names, r.Name)
			}
			return &RunbookError{Msg: fmt.Sprintf("no runbook %q in the .shiploop.yml of %s (runbooks: %s)", name, repo, strings.Join(names, ", "))}
		}
		opts, err := rb.Validate(given)
		if err != nil {
			return &RunbookError{Msg: err.Error()}
		}
		envName := rb.Environment
		if envOverride != "" && envOverride != envName {
			if rb.Kind == "data" {
				return &RunbookError{Msg: fmt.Sprintf("runbook %s copies data to %s: its environment cannot be changed", rb.Name, rb.To)}
			}
			if e, _ := cfg.Environment(envOverride); e == nil {
				return &RunbookError{Msg: fmt.Sprintf("no environment %q in the .shiploop.yml of %s", envOverride, repo)}
			}
			envName = envOverride
		}
		x := &runbookRun{id: bus.NewID(), repository: repo, runbook: rb.Name, environment: envName, kind: rb.Kind, from: rb.From, by: who,
			options: opts, buildID: b.id, commit: b.commit, status: runQueued, createdAt: s.now().UnixNano()}
		if err := insertRun(ctx, tx, x); err != nil {
			return err
		}
		out = x
		return s.startRun(ctx, tx, x)
	}()
	return out, err
}

// insertRun records x, queued, in the audit trail.
func insertRun(ctx context.Context, tx *bus.Tx, x *runbookRun) error {
	optJSON, err := json.Marshal(x.options)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO runbook_runs (id, repository, runbook, environment, kind, from_env, run_by, options, build_id, commit_sha, status, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		x.id, x.repository, x.runbook, x.environment, x.kind, x.from, x.by, string(optJSON), x.buildID, x.commit, x.status, x.createdAt); err != nil {
		return fmt.Errorf("recording runbook run: %w", err)
	}
	return nil
}

// onRunbookRequested runs the runbook a schedule's slot asks for, as
// "schedule <name>". A run the runbook refuses (gone from the file, an
// option no longer valid, no build yet) is recorded as failed with the
// reason, so the audit and the pages show the slot that did not run.
func (s *Service) onRunbookRequested(ctx context.Context, tx *bus.Tx, d *eventsv1.RunbookRequested) error {
	who := "schedule " + d.GetSchedule()
	// A RunbookError comes before runRunbookTx writes anything.
	_, err := s.runRunbookTx(ctx, tx, d.GetRepository(), d.GetRunbook(), d.GetEnvironment(), d.GetOptions(), who)
	var re *RunbookError
	if !errors.As(err, &re) {
		return err
	}
	x := &runbookRun{id: bus.NewID(), repository: d.GetRepository(), runbook: d.GetRunbook(), environment: d.GetEnvironment(), kind: "task",
		by: who, options: d.GetOptions(), status: runQueued, createdAt: s.now().UnixNano()}
	if err := insertRun(ctx, tx, x); err != nil {
		return err
	}
	s.log.Warn("scheduled runbook refused", "repository", x.repository, "runbook", x.runbook, "schedule", d.GetSchedule(), "reason", re.Msg)
	return s.finishRun(ctx, tx, x, runFailed, "not run: "+re.Msg)
}

// startRun takes x's environment lock (if it has an environment) and hands
// its job to agents; with the lock held by a deploy, a person or another
// run, x stays queued and starts when the lock is released (dispatchQueued).
func (s *Service) startRun(ctx context.Context, tx *bus.Tx, x *runbookRun) error {
	if x.environment != "" {
		holder := fmt.Sprintf("runbook %s run %s by %s", x.runbook, x.id, x.by)
		res, err := tx.ExecContext(ctx, `INSERT INTO locks (repository, environment, holder, deploy_id, reason, since) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (repository, environment) DO NOTHING`,
			x.repository, x.environment, holder, x.id, "runbook "+x.runbook+" running", s.now().UnixNano())
		if err != nil {
			return fmt.Errorf("taking the lock of %s: %w", x.environment, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			l, err := readLock(ctx, tx, x.repository, x.environment)
			if err != nil {
				return err
			}
			if l != nil && l.deployID != x.id {
				x.reason = "waiting for the lock held by " + l.holder
				_, err := tx.ExecContext(ctx, `UPDATE runbook_runs SET reason = $1 WHERE id = $2`, x.reason, x.id)
				return err
			}
		}
	}
	b, err := loadBuildInfo(ctx, tx, `id = $1`, x.buildID)
	if err != nil {
		return err
	}
	cfg, err := b.parse()
	var rb *config.Runbook
	if err == nil {
		rb = cfg.Runbook(x.runbook)
	}
	if rb == nil {
		return s.finishRun(ctx, tx, x, runFailed, fmt.Sprintf("runbook %s is gone from build %s's .shiploop.yml", x.runbook, b.version))
	}
	cloneURL, err := b.jobCloneURL(ctx, tx)
	if err != nil {
		return err
	}
	env, _ := cfg.Environment(x.environment)
	var from *Environment
	if x.kind == "data" {
		from, _ = cfg.Environment(x.from)
	}
	labels := rb.Labels
	if labels == nil && env != nil {
		labels = cfg.JobLabels(env)
	} else if labels == nil {
		labels = cfg.Labels
	}
	now := s.now()
	job := &eventsv1.Job{
		JobId: bus.NewID(), BuildId: x.buildID, Kind: "deploy", Repository: x.repository, CloneUrl: cloneURL, Ref: b.ref, Commit: x.commit,
		Version: b.version, Environment: runEnv(x, b, cfg, rb, env, from), Timeout: durationpb.New(s.cfg.JobTimeout), ChainId: b.chainID,
		QueuedAt: timestamppb.New(now), Secrets: map[string]string{}, Labels: labels, Vcs: b.vcs,
	}
	for _, st := range rb.Steps {
		// Secret names only (values come from builds at the job's start):
		// the file's, the environment's (both for a data job), the
		// runbook's and the step's.
		secrets := slices.Clone(cfg.Secrets)
		for _, e := range []*Environment{from, env} {
			if e != nil {
				secrets = append(secrets, e.Secrets...)
			}
		}
		secrets = append(append(secrets, rb.Secrets...), st.Secrets...)
		slices.Sort(secrets)
		js := &eventsv1.Step{Name: st.Name, Commands: st.Commands, Environment: runStepEnv(st.Env), FailureIgnore: st.FailureIgnore,
			Secrets: slices.Compact(secrets), Detach: st.Detach, DependsOn: st.DependsOn, Cpus: st.CPUs, MemoryBytes: st.Memory}
		js.Image, js.Pull = cfg.StepImage(st)
		if st.Timeout > 0 {
			js.Timeout = durationpb.New(st.Timeout)
		}
		job.Steps = append(job.Steps, js)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE runbook_runs SET status = $1, reason = '', job_id = $2, started_at = $3 WHERE id = $4`,
		runRunning, job.JobId, now.UnixNano(), x.id); err != nil {
		return err
	}
	x.status, x.reason, x.jobID, x.startedAt = runRunning, "", job.JobId, now.UnixNano()
	// A deploy job (kind deploy): agents that serve deploys run runbooks,
	// with the same log path (shiploop.log.<job>, Object Store logs).
	if err := tx.EnqueueFor("deploy", job.Labels, bus.Event{Type: "job.requested", Repository: x.repository, Subject: job.JobId, ChainID: b.chainID, Data: job}); err != nil {
		return err
	}
	if err := tx.Publish(bus.Event{Type: "job.queued", Repository: x.repository, Subject: job.JobId, ChainID: b.chainID, Data: &eventsv1.JobQueued{
		JobId: job.JobId, BuildId: x.buildID, Kind: "deploy", Repository: x.repository, Steps: stepNames(job.Steps),
	}}); err != nil {
		return err
	}
	return tx.Publish(bus.Event{Type: "runbook.started", Repository: x.repository, Subject: x.id, Data: &eventsv1.RunbookStarted{Run: x.proto()}})
}

// runEnv is what a runbook step sees, later wins: the file's env; the
// environment's variables (a data job: the from environment's as FROM_<NAME>
// and the to environment's as TO_<NAME>); then SHIPLOOP_* and the options
// as OPTION_<NAME>, which nothing in the file overrides.
func runEnv(x *runbookRun, b *buildInfo, cfg *Pipeline, rb *config.Runbook, env, from *Environment) map[string]string {
	out := map[string]string{}
	maps.Copy(out, cfg.Env)
	switch {
	case x.kind == "data":
		if from != nil {
			for k, v := range from.Variables {
				out["FROM_"+k] = v
			}
		}
		if env != nil {
			for k, v := range env.Variables {
				out["TO_"+k] = v
			}
		}
	case env != nil:
		maps.Copy(out, env.Variables)
	}
	for k := range out {
		if strings.HasPrefix(k, "OPTION_") || strings.HasPrefix(k, "SHIPLOOP_") {
			delete(out, k)
		}
	}
	maps.Copy(out, map[string]string{
		"SHIPLOOP_RUNBOOK": x.runbook, "SHIPLOOP_RUNBOOK_RUN_ID": x.id, "SHIPLOOP_RUNBOOK_KIND": x.kind, "SHIPLOOP_RUNBOOK_BY": x.by,
		"SHIPLOOP_ENVIRONMENT": x.environment, "SHIPLOOP_REPOSITORY": x.repository, "SHIPLOOP_COMMIT": x.commit,
		"SHIPLOOP_BUILD_ID": b.id, "SHIPLOOP_VERSION": b.version, "SHIPLOOP_RELEASE": b.version,
	})
	if x.kind == "data" {
		out["SHIPLOOP_FROM_ENVIRONMENT"], out["SHIPLOOP_TO_ENVIRONMENT"] = x.from, x.environment
	}
	for _, o := range rb.Options {
		if v, ok := x.options[o.Name]; ok {
			out[o.EnvName()] = v
		}
	}
	return out
}

// runStepEnv is a runbook step's own env without SHIPLOOP_* and OPTION_*
// names: the options are what the person gave.
func runStepEnv(env map[string]string) map[string]string {
	out := stepEnv(env)
	for k := range out {
		if strings.HasPrefix(k, "OPTION_") {
			delete(out, k)
		}
	}
	return out
}

// finishRun ends x (once), releases its lock, publishes runbook.finished
// (and environment.data_copied on both environments for a data run that
// succeeded) and lets what waits for the environment start.
func (s *Service) finishRun(ctx context.Context, tx *bus.Tx, x *runbookRun, status, reason string) error {
	now := s.now()
	res, err := tx.ExecContext(ctx, `UPDATE runbook_runs SET status = $1, reason = $2, finished_at = $3 WHERE id = $4 AND status = $5`,
		status, reason, now.UnixNano(), x.id, x.status)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	x.status, x.reason, x.finishedAt = status, reason, now.UnixNano()
	var dur time.Duration
	if x.startedAt > 0 {
		dur = now.Sub(time.Unix(0, x.startedAt))
	}
	if err := tx.Publish(bus.Event{Type: "runbook.finished", Repository: x.repository, Subject: x.id,
		Data: &eventsv1.RunbookFinished{Run: x.proto(), Duration: durationpb.New(dur)}}); err != nil {
		return err
	}
	if x.kind == "data" && status == runSucceeded {
		for _, e := range []string{x.from, x.environment} {
			if err := tx.Publish(bus.Event{Type: "environment.data_copied", Repository: x.repository, Subject: e, Data: &eventsv1.DataCopied{
				Repository: x.repository, Environment: e, FromEnvironment: x.from, ToEnvironment: x.environment, Runbook: x.runbook, RunId: x.id, By: x.by, At: timestamppb.New(now),
			}}); err != nil {
				return err
			}
		}
	}
	if x.environment == "" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM locks WHERE repository = $1 AND environment = $2 AND deploy_id = $3`, x.repository, x.environment, x.id); err != nil {
		return err
	}
	return s.dispatchQueued(ctx, tx, x.repository, x.environment)
}

// dispatchQueuedRun starts the oldest run waiting for env's free lock that
// was queued before before (0: any); it reports whether it started one.
func (s *Service) dispatchQueuedRun(ctx context.Context, tx *bus.Tx, repo, env string, before int64) (bool, error) {
	if before == 0 {
		before = 1<<63 - 1
	}
	x, err := loadRun(ctx, tx, `repository = $1 AND environment = $2 AND status = $3 AND created_at < $4 ORDER BY created_at LIMIT 1`, repo, env, runQueued, before)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, s.startRun(ctx, tx, x)
}

// onRunJobStarted is job.started for a runbook's job: a second delivery
// of a job that already ran, or a second attempt (its agent stopped
// mid-way), is canceled: runbook steps are not re-run on their own.
func (s *Service) onRunJobStarted(ctx context.Context, tx *bus.Tx, j *eventsv1.JobStarted) error {
	x, err := loadRun(ctx, tx, `job_id = $1`, j.JobId)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if x.status != runRunning {
		return tx.CancelJob(j.JobId, fmt.Sprintf("runbook %s run %s already ran (%s): a second delivery of its job is not run", x.runbook, x.id, x.status))
	}
	if j.Attempt > 1 {
		if err := tx.CancelJob(j.JobId, "runbook interrupted: not re-run automatically"); err != nil {
			return err
		}
		return s.finishRun(ctx, tx, x, runFailed, fmt.Sprintf("interrupted: agent %s got the job again (attempt %d): check and run it again", j.Agent, j.Attempt))
	}
	return nil
}

// onRunJobFinished ends a runbook run with its job's result.
func (s *Service) onRunJobFinished(ctx context.Context, tx *bus.Tx, j *eventsv1.JobFinished) error {
	x, err := loadRun(ctx, tx, `job_id = $1`, j.JobId)
	if errors.Is(err, sql.ErrNoRows) {
		_, err := s.onMonitorJobFinished(ctx, tx, j) // a command monitor's, or not a deploy job
		return err
	}
	if err != nil || x.status != runRunning {
		return err
	}
	if j.Status != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		return s.finishRun(ctx, tx, x, runFailed, jobFailure(j))
	}
	return s.finishRun(ctx, tx, x, runSucceeded, "")
}
