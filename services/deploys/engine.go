package deploys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// deployment is one row of deployments.
type deployment struct {
	id, repository, environment, buildID, version, commit, kind, reason, by, jobID, previous, rollbackOf, cause, chainID string
	status                                                                                                               eventsv1.DeployStatus
	forced                                                                                                               bool
	approvalsNeeded                                                                                                      int
	createdAt, startedAt, finishedAt, deployedAt, verifyUntil, nextCheckAt                                               int64
}

const deployCols = `id, repository, environment, build_id, version, commit_sha, kind, status, reason, triggered_by, forced, job_id, previous_version, rollback_of, cause, approvals_needed, chain_id, created_at, started_at, finished_at, deployed_at, verify_until, next_check_at`

type scanner interface{ Scan(...any) error }

func scanDeployment(r scanner) (*deployment, error) {
	d := &deployment{}
	var status int32
	var forced int
	err := r.Scan(&d.id, &d.repository, &d.environment, &d.buildID, &d.version, &d.commit, &d.kind, &status, &d.reason, &d.by, &forced, &d.jobID,
		&d.previous, &d.rollbackOf, &d.cause, &d.approvalsNeeded, &d.chainID, &d.createdAt, &d.startedAt, &d.finishedAt, &d.deployedAt, &d.verifyUntil, &d.nextCheckAt)
	d.status, d.forced = eventsv1.DeployStatus(status), forced == 1
	return d, err
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func loadDeployment(ctx context.Context, q querier, where string, args ...any) (*deployment, error) {
	return scanDeployment(q.QueryRowContext(ctx, `SELECT `+deployCols+` FROM deployments WHERE `+where, args...))
}

func loadDeployments(ctx context.Context, q querier, where string, args ...any) ([]*deployment, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+deployCols+` FROM deployments WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*deployment
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (d *deployment) ref() *eventsv1.DeployRef {
	return &eventsv1.DeployRef{DeployId: d.id, Repository: d.repository, Environment: d.environment, Release: d.version,
		Commit: d.commit, BuildId: d.buildID, Kind: d.kind, TriggeredBy: d.by}
}

func (s *Service) publish(tx *bus.Tx, typ string, d *deployment, data proto.Message) error {
	return tx.Publish(bus.Event{Type: typ, Repository: d.repository, Subject: d.id, ChainID: d.chainID, Data: data})
}

// inWaiting are the states of a deployment that has not started.
var inWaiting = []eventsv1.DeployStatus{eventsv1.DeployStatus_DEPLOY_STATUS_AWAITING_APPROVAL, eventsv1.DeployStatus_DEPLOY_STATUS_QUEUED, eventsv1.DeployStatus_DEPLOY_STATUS_BLOCKED}

// LockedError says who holds an environment.
type LockedError struct {
	Repository, Environment, Holder, Reason string
	Since                                   time.Time
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("environment %s of %s is locked by %s since %s (%s)", e.Environment, e.Repository, e.Holder, e.Since.Format(time.RFC3339), e.Reason)
}

// FrozenError says which freeze window stops a deploy.
type FrozenError struct {
	ID     int64
	Until  time.Time
	Reason string
}

func (e *FrozenError) Error() string {
	return fmt.Sprintf("freeze window #%d until %s (%s)", e.ID, e.Until.Format(time.RFC3339), e.Reason)
}

// offer says how a deployment comes about.
type offer struct {
	kind       string // deploy, rollback, redeploy, preview, teardown
	by         string
	automatic  bool // no person asked: wait for locks, respect freezes
	force      bool // a person asked to pass a freeze window
	name       string
	cause      string
	rollbackOf string
	takeover   string // the deploy whose lock this one takes over
	// chainID, when set, is the chain the deployment's events carry in
	// place of its build's: a rollback belongs to the change rolled back.
	chainID string
	// previewPR is the pull request of a preview environment.
	previewPR int64
}

// currentVersion is the release an environment runs and the deployment that put it there.
func currentDeployment(ctx context.Context, q querier, repo, env string) (*deployment, error) {
	d, err := loadDeployment(ctx, q, `repository = $1 AND environment = $2 AND deployed_at > 0 AND kind <> 'teardown' AND status IN ($3, $4, $5) ORDER BY deployed_at DESC LIMIT 1`,
		repo, env, int32(eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING), int32(eventsv1.DeployStatus_DEPLOY_STATUS_PAUSED), int32(eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return d, err
}

// lastGood is the newest release that verified in env other than not.
func lastGood(ctx context.Context, q querier, repo, env, not string) (*deployment, error) {
	d, err := loadDeployment(ctx, q, `repository = $1 AND environment = $2 AND status = $3 AND version <> $4 AND kind <> 'teardown' ORDER BY deployed_at DESC LIMIT 1`,
		repo, env, int32(eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED), not)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return d, err
}

func (s *Service) frozen(ctx context.Context, q querier, repo, env string) (*FrozenError, error) {
	now := s.now().UnixNano()
	var f FrozenError
	var until int64
	err := q.QueryRowContext(ctx, `SELECT id, ends_at, reason FROM freezes WHERE repository = $1 AND (environment = $2 OR environment = '') AND starts_at <= $3 AND ends_at > $3 ORDER BY ends_at DESC LIMIT 1`,
		repo, env, now).Scan(&f.ID, &until, &f.Reason)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	f.Until = time.Unix(0, until).UTC()
	return &f, nil
}

// offer records a deployment of build b to env and starts it when it may:
// it waits for approvals, a freeze window (automatic only) or the lock
// (automatic only; a person gets a *LockedError).
func (s *Service) offer(ctx context.Context, tx *bus.Tx, b *buildInfo, cfg *Pipeline, env *Environment, o offer) (*deployment, error) {
	now := s.now()
	name := env.Name
	if o.name != "" {
		name = o.name
	}
	cur, err := currentDeployment(ctx, tx, b.repository, name)
	if err != nil {
		return nil, err
	}
	d := &deployment{
		id: bus.NewID(), repository: b.repository, environment: name, buildID: b.id, version: b.version, commit: b.commit,
		kind: o.kind, by: o.by, cause: o.cause, rollbackOf: o.rollbackOf, chainID: b.chainID, createdAt: now.UnixNano(),
		status: eventsv1.DeployStatus_DEPLOY_STATUS_QUEUED,
	}
	if o.chainID != "" {
		d.chainID = o.chainID
	}
	if cur != nil {
		d.previous = cur.version
	}
	if o.kind == "deploy" {
		d.approvalsNeeded = env.Approvals
	}
	// A newer offer replaces older ones still waiting here.
	waiting, err := loadDeployments(ctx, tx, `repository = $1 AND environment = $2 AND status IN ($3, $4, $5)`, b.repository, name,
		int32(inWaiting[0]), int32(inWaiting[1]), int32(inWaiting[2]))
	if err != nil {
		return nil, err
	}
	for _, w := range waiting {
		if err := s.finish(ctx, tx, w, eventsv1.DeployStatus_DEPLOY_STATUS_CANCELED, fmt.Sprintf("superseded by %s of %s", o.kind, b.version)); err != nil {
			return nil, err
		}
	}
	var fz *FrozenError
	if o.kind == "deploy" || o.kind == "redeploy" { // rollbacks restore service: freezes do not stop them
		if fz, err = s.frozen(ctx, tx, b.repository, name); err != nil {
			return nil, err
		}
	}
	switch {
	case d.approvalsNeeded > 0:
		d.status, d.reason = eventsv1.DeployStatus_DEPLOY_STATUS_AWAITING_APPROVAL, fmt.Sprintf("waiting for %d approval(s)", d.approvalsNeeded)
	case fz != nil && o.automatic:
		d.status, d.reason = eventsv1.DeployStatus_DEPLOY_STATUS_BLOCKED, "automatic deploy blocked by "+fz.Error()+"; promote with --force to deploy anyway"
	case fz != nil && !o.force:
		return nil, fz
	case fz != nil:
		d.forced = true
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO deployments (id, repository, environment, build_id, version, commit_sha, kind, status, reason, triggered_by, forced, previous_version, rollback_of, cause, approvals_needed, chain_id, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
		d.id, d.repository, d.environment, d.buildID, d.version, d.commit, d.kind, int32(d.status), d.reason, d.by, boolInt(d.forced), d.previous, d.rollbackOf, d.cause, d.approvalsNeeded, d.chainID, d.createdAt); err != nil {
		return nil, fmt.Errorf("recording deployment: %w", err)
	}
	if d.status != eventsv1.DeployStatus_DEPLOY_STATUS_QUEUED {
		return d, s.publish(tx, "deploy.pending", d, &eventsv1.DeployPending{Deploy: d.ref(), Status: d.status, Reason: d.reason, ApprovalsRequired: int32(d.approvalsNeeded)})
	}
	return d, s.start(ctx, tx, d, o.automatic, o.takeover)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type lockRow struct {
	holder, deployID, reason string
	since                    int64
}

func readLock(ctx context.Context, q querier, repo, env string) (*lockRow, error) {
	var l lockRow
	err := q.QueryRowContext(ctx, `SELECT holder, deploy_id, reason, since FROM locks WHERE repository = $1 AND environment = $2`, repo, env).Scan(&l.holder, &l.deployID, &l.reason, &l.since)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return &l, err
}

// acquire takes env's lock for d (or takes it over from the deploy
// takeover); otherwise it returns who holds it.
func (s *Service) acquire(ctx context.Context, tx *bus.Tx, d *deployment, takeover string) (*lockRow, error) {
	holder := fmt.Sprintf("deploy %s of %s", d.id, d.version)
	res, err := tx.ExecContext(ctx, `INSERT INTO locks (repository, environment, holder, deploy_id, reason, since) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (repository, environment) DO NOTHING`,
		d.repository, d.environment, holder, d.id, d.kind+" running", s.now().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("taking the lock of %s: %w", d.environment, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil, nil
	}
	l, err := readLock(ctx, tx, d.repository, d.environment)
	if err != nil || l == nil {
		return nil, err
	}
	if l.deployID == d.id {
		return nil, nil
	}
	if takeover != "" && l.deployID == takeover {
		_, err := tx.ExecContext(ctx, `UPDATE locks SET holder = $1, deploy_id = $2, reason = $3, since = $4 WHERE repository = $5 AND environment = $6`,
			holder, d.id, d.kind+" running", s.now().UnixNano(), d.repository, d.environment)
		return nil, err
	}
	return l, nil
}

// start hands d to agents once it holds the lock. When the lock is held,
// wait leaves it QUEUED; otherwise a *LockedError comes back.
func (s *Service) start(ctx context.Context, tx *bus.Tx, d *deployment, wait bool, takeover string) error {
	l, err := s.acquire(ctx, tx, d, takeover)
	if err != nil {
		return err
	}
	if l != nil {
		if !wait {
			return &LockedError{Repository: d.repository, Environment: d.environment, Holder: l.holder, Reason: l.reason, Since: time.Unix(0, l.since).UTC()}
		}
		reason := "waiting for the lock held by " + l.holder
		if _, err := tx.ExecContext(ctx, `UPDATE deployments SET status = $1, reason = $2 WHERE id = $3`, int32(eventsv1.DeployStatus_DEPLOY_STATUS_QUEUED), reason, d.id); err != nil {
			return err
		}
		d.status, d.reason = eventsv1.DeployStatus_DEPLOY_STATUS_QUEUED, reason
		return s.publish(tx, "deploy.pending", d, &eventsv1.DeployPending{Deploy: d.ref(), Status: d.status, Reason: reason})
	}
	b, cfg, env, err := s.definition(ctx, tx, d)
	if ce := (*ConfigError)(nil); errors.As(err, &ce) {
		return s.finish(ctx, tx, d, eventsv1.DeployStatus_DEPLOY_STATUS_FAILED, err.Error())
	}
	if err != nil {
		return err
	}
	if env == nil {
		return s.finish(ctx, tx, d, eventsv1.DeployStatus_DEPLOY_STATUS_FAILED, fmt.Sprintf("release %s's .shiploop.yml has no environment %s", d.version, d.environment))
	}
	steps := env.Steps
	if d.kind == "teardown" {
		steps = env.Teardown
	}
	cloneURL, err := b.jobCloneURL(ctx, tx)
	if err != nil {
		return err
	}
	now := s.now()
	job := &eventsv1.Job{
		JobId: bus.NewID(), BuildId: d.buildID, Kind: "deploy", Repository: d.repository, CloneUrl: cloneURL, Ref: b.ref, Commit: d.commit,
		Version: d.version, Environment: s.jobEnv(ctx, tx, d, b, cfg, env), Timeout: durationpb.New(s.cfg.JobTimeout), ChainId: d.chainID,
		QueuedAt: timestamppb.New(now), Secrets: map[string]string{}, Labels: cfg.JobLabels(env), Vcs: b.vcs,
	}
	for _, st := range steps {
		// Secret names only: the agent gets the values from builds at the
		// job's start, so neither this database nor the JOBS stream holds one.
		js := &eventsv1.Step{Name: st.Name, Commands: st.Commands, Environment: stepEnv(st.Env), FailureIgnore: st.FailureIgnore, Secrets: cfg.StepSecrets(env, st), Detach: st.Detach}
		for _, dep := range st.DependsOn {
			if !strings.HasPrefix(dep, "teardown") || d.kind == "teardown" {
				js.DependsOn = append(js.DependsOn, dep)
			}
		}
		if st.Timeout > 0 {
			js.Timeout = durationpb.New(st.Timeout)
		}
		js.Image, js.Pull = cfg.StepImage(st)
		js.Cpus, js.MemoryBytes = st.CPUs, st.Memory
		job.Steps = append(job.Steps, js)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE deployments SET status = $1, reason = '', job_id = $2, started_at = $3 WHERE id = $4`,
		int32(eventsv1.DeployStatus_DEPLOY_STATUS_RUNNING), job.JobId, now.UnixNano(), d.id); err != nil {
		return err
	}
	d.status, d.jobID, d.startedAt = eventsv1.DeployStatus_DEPLOY_STATUS_RUNNING, job.JobId, now.UnixNano()
	if err := tx.EnqueueFor("deploy", job.Labels, bus.Event{Type: "job.requested", Repository: d.repository, Subject: job.JobId, ChainID: d.chainID, Data: job}); err != nil {
		return err
	}
	if err := tx.Publish(bus.Event{Type: "job.queued", Repository: d.repository, Subject: job.JobId, ChainID: d.chainID, Data: &eventsv1.JobQueued{
		JobId: job.JobId, BuildId: d.buildID, Kind: "deploy", Repository: d.repository, Steps: stepNames(job.Steps),
	}}); err != nil {
		return err
	}
	return s.publish(tx, "deploy.started", d, &eventsv1.DeployStarted{Deploy: d.ref(), JobId: job.JobId, PreviousRelease: d.previous, Forced: d.forced, StartedAt: timestamppb.New(now)})
}

func stepNames(st []*eventsv1.Step) []string {
	out := make([]string, len(st))
	for i, s := range st {
		out[i] = s.Name
	}
	return out
}

// envDef is the environment d deploys to, as the release's config says.
// definition is what deployment d deploys: its build, the build's
// .shiploop.yml (a *ConfigError when it does not parse) and d's
// environment in it (nil when the file has none).
func (s *Service) definition(ctx context.Context, tx *bus.Tx, d *deployment) (*buildInfo, *Pipeline, *Environment, error) {
	b, err := loadBuildInfo(ctx, tx, `id = $1`, d.buildID)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("build %s of deployment %s: %w", d.buildID, d.id, err)
	}
	cfg, err := b.parse()
	if err != nil {
		return b, nil, nil, err
	}
	env, err := s.envDef(ctx, tx, d, cfg)
	return b, cfg, env, err
}

func (s *Service) envDef(ctx context.Context, q querier, d *deployment, cfg *Pipeline) (*Environment, error) {
	if d.kind == "preview" || d.kind == "teardown" {
		return cfg.Preview, nil
	}
	if e, _ := cfg.Environment(d.environment); e != nil {
		return e, nil
	}
	var n int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM previews WHERE repository = $1 AND name = $2`, d.repository, d.environment).Scan(&n); err != nil {
		return nil, err
	}
	if n > 0 {
		return cfg.Preview, nil
	}
	return nil, nil
}

// jobEnv is what a deploy step sees (the table in docs/architecture.md,
// deploys): SENTRY_RELEASE and SENTRY_ENVIRONMENT, which Sentry SDKs read
// on their own, then the file's env and the environment's variables (which
// may set SENTRY_* otherwise), then what shiploop knows about the release
// as SHIPLOOP_*, which nothing in the file overrides (see stepEnv).
func (s *Service) jobEnv(ctx context.Context, q querier, d *deployment, b *buildInfo, cfg *Pipeline, env *Environment) map[string]string {
	out := map[string]string{"SENTRY_RELEASE": d.version, "SENTRY_ENVIRONMENT": d.environment}
	maps.Copy(out, cfg.Env)
	if env != nil {
		maps.Copy(out, env.Variables)
	}
	var artifacts []string
	_ = json.Unmarshal([]byte(b.artifacts), &artifacts)
	maps.Copy(out, map[string]string{
		"SHIPLOOP_VERSION": d.version, "SHIPLOOP_RELEASE": d.version, "SHIPLOOP_ENVIRONMENT": d.environment,
		"SHIPLOOP_DEPLOY_ID": d.id, "SHIPLOOP_DEPLOY_KIND": d.kind, "SHIPLOOP_COMMIT": d.commit, "SHIPLOOP_BUILD_ID": b.id,
		"SHIPLOOP_BUILD_NUMBER": fmt.Sprint(b.number), "SHIPLOOP_REPOSITORY": d.repository, "SHIPLOOP_PREVIOUS_VERSION": d.previous,
		"SHIPLOOP_PREVIOUS_RELEASE": d.previous, "SHIPLOOP_ARTIFACTS": strings.Join(artifacts, " "),
	})
	for k := range out {
		if strings.HasPrefix(k, "SHIPLOOP_IMAGE") { // the build's images only (images.go)
			delete(out, k)
		}
	}
	if images, err := buildImages(ctx, q, b.id); err == nil {
		maps.Copy(out, ImageEnv(images))
	}
	delete(out, "SHIPLOOP_PULL_REQUEST") // the file's, outside a preview
	var pr int64
	if err := q.QueryRowContext(ctx, `SELECT pull_request FROM previews WHERE repository = $1 AND name = $2`, d.repository, d.environment).Scan(&pr); err == nil {
		out["SHIPLOOP_PULL_REQUEST"] = fmt.Sprint(pr)
	}
	return out
}

// stepEnv is a step's own env: the agent applies it after the job's, so
// SHIPLOOP_* names are dropped from it (the release, environment and deploy
// id are shiploop's to say); SENTRY_* and the rest stay.
func stepEnv(env map[string]string) map[string]string {
	var out map[string]string
	for k, v := range env {
		if strings.HasPrefix(k, "SHIPLOOP_") {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// finish moves d to an end state (or PAUSED), releases its lock and lets
// the next queued deployment of the environment start. A deployment that
// already moved on is left alone.
func (s *Service) finish(ctx context.Context, tx *bus.Tx, d *deployment, status eventsv1.DeployStatus, reason string) error {
	now := s.now()
	res, err := tx.ExecContext(ctx, `UPDATE deployments SET status = $1, reason = $2, finished_at = $3 WHERE id = $4 AND status = $5`,
		int32(status), reason, now.UnixNano(), d.id, int32(d.status))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	d.status, d.reason, d.finishedAt = status, reason, now.UnixNano()
	checks, err := loadChecks(ctx, tx, d.id)
	if err != nil {
		return err
	}
	var dur time.Duration
	if d.startedAt > 0 {
		dur = now.Sub(time.Unix(0, d.startedAt))
	}
	if err := s.publish(tx, "deploy.finished", d, &eventsv1.DeployFinished{Deploy: d.ref(), Status: status, Reason: reason, Checks: checks,
		Duration: durationpb.New(dur), FinishedAt: timestamppb.New(now)}); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM locks WHERE repository = $1 AND environment = $2 AND deploy_id = $3`, d.repository, d.environment, d.id); err != nil {
		return err
	}
	if status == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED {
		if err := s.afterSuccess(ctx, tx, d); err != nil {
			return err
		}
	}
	return s.dispatchQueued(ctx, tx, d.repository, d.environment)
}

// dispatchQueued starts the oldest deployment or runbook run (runbooks.go)
// waiting for env's lock.
func (s *Service) dispatchQueued(ctx context.Context, tx *bus.Tx, repo, env string) error {
	if l, err := readLock(ctx, tx, repo, env); err != nil || l != nil {
		return err
	}
	d, err := loadDeployment(ctx, tx, `repository = $1 AND environment = $2 AND status = $3 ORDER BY created_at LIMIT 1`, repo, env, int32(eventsv1.DeployStatus_DEPLOY_STATUS_QUEUED))
	if errors.Is(err, sql.ErrNoRows) {
		_, err := s.dispatchQueuedRun(ctx, tx, repo, env, 0)
		return err
	}
	if err != nil {
		return err
	}
	if started, err := s.dispatchQueuedRun(ctx, tx, repo, env, d.createdAt); err != nil || started {
		return err
	}
	return s.start(ctx, tx, d, true, "")
}

// deployed runs when d's job succeeded: verification, or success.
func (s *Service) deployed(ctx context.Context, tx *bus.Tx, d *deployment) error {
	now := s.now()
	if _, err := tx.ExecContext(ctx, `UPDATE deployments SET deployed_at = $1 WHERE id = $2`, now.UnixNano(), d.id); err != nil {
		return err
	}
	d.deployedAt = now.UnixNano()
	if d.kind == "teardown" {
		if err := s.finish(ctx, tx, d, eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED, "torn down"); err != nil {
			return err
		}
		return s.deletePreview(ctx, tx, d.repository, d.environment, d.by, "torn down by "+d.id)
	}
	var v *Verify
	if d.kind != "rollback" {
		b, err := loadBuildInfo(ctx, tx, `id = $1`, d.buildID)
		if err != nil {
			return err
		}
		if cfg, err := b.parse(); err == nil {
			if env, err := s.envDef(ctx, tx, d, cfg); err == nil && env != nil {
				v = env.Verify
			}
		}
	}
	if v == nil || len(v.Checks) == 0 {
		return s.finish(ctx, tx, d, eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED, "deployed")
	}
	for i, c := range v.Checks {
		if _, err := tx.ExecContext(ctx, `INSERT INTO checks (deploy_id, position, name, status) VALUES ($1, $2, $3, $4) ON CONFLICT (deploy_id, position) DO NOTHING`,
			d.id, i, c.Text, int32(eventsv1.CheckStatus_CHECK_STATUS_PENDING)); err != nil {
			return err
		}
	}
	reason := fmt.Sprintf("verifying for %s (%d checks)", v.Window, len(v.Checks))
	if _, err := tx.ExecContext(ctx, `UPDATE deployments SET status = $1, reason = $2, verify_until = $3, next_check_at = $4 WHERE id = $5`,
		int32(eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING), reason, now.Add(v.Window).UnixNano(), now.UnixNano(), d.id); err != nil {
		return err
	}
	d.status = eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING
	return s.publish(tx, "deploy.pending", d, &eventsv1.DeployPending{Deploy: d.ref(), Status: d.status, Reason: reason})
}

// afterSuccess records the tickets a deploy shipped and offers the release
// to the next environment of the path.
func (s *Service) afterSuccess(ctx context.Context, tx *bus.Tx, d *deployment) error {
	if d.kind != "deploy" && d.kind != "redeploy" {
		return nil
	}
	if err := s.recordTickets(ctx, tx, d); err != nil {
		return err
	}
	if d.kind != "deploy" {
		return nil
	}
	b, err := loadBuildInfo(ctx, tx, `id = $1`, d.buildID)
	if err != nil {
		return err
	}
	cfg, err := b.parse()
	if err != nil {
		return nil
	}
	_, i := cfg.Environment(d.environment)
	if i < 0 || i+1 >= len(cfg.Environments) {
		return nil
	}
	next := &cfg.Environments[i+1]
	if !next.Auto && next.Approvals == 0 {
		return nil // promoted by hand
	}
	_, err = s.offer(ctx, tx, b, cfg, next, offer{kind: "deploy", by: "auto", automatic: true})
	return err
}

// verificationFailed rolls d back to the last good release (or holds it,
// as configured).
func (s *Service) verificationFailed(ctx context.Context, tx *bus.Tx, d *deployment, v *Verify, cause string) error {
	if v != nil && v.OnFailure == "hold" {
		return s.finish(ctx, tx, d, eventsv1.DeployStatus_DEPLOY_STATUS_FAILED, "verification failed: "+cause+" (on_failure: hold)")
	}
	return s.rollback(ctx, tx, d, "", "auto", "verification failed: "+cause)
}

// rollback deploys an earlier good release to d's environment in place of
// d (which is VERIFYING or PAUSED, or the current good one), taking over
// its lock. release "" means the last good one before d's.
func (s *Service) rollback(ctx context.Context, tx *bus.Tx, d *deployment, release, by, cause string) error {
	return s.rollbackEnding(ctx, tx, d, release, by, cause, eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK, cause)
}

// stepFailed ends d, whose job failed, FAILED with reason; with
// on_failure: rollback in its environment the last good release is
// deployed again in its place.
func (s *Service) stepFailed(ctx context.Context, tx *bus.Tx, d *deployment, reason string) error {
	if d.kind == "deploy" || d.kind == "redeploy" {
		_, _, env, err := s.definition(ctx, tx, d)
		if ce := (*ConfigError)(nil); err != nil && !errors.As(err, &ce) && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if env != nil && env.RollbackOnFailure {
			return s.rollbackEnding(ctx, tx, d, "", "auto", fmt.Sprintf("deploy of %s failed: %s (on_failure: rollback)", d.version, reason),
				eventsv1.DeployStatus_DEPLOY_STATUS_FAILED, reason)
		}
	}
	return s.finish(ctx, tx, d, eventsv1.DeployStatus_DEPLOY_STATUS_FAILED, reason)
}

// rollbackEnding is rollback; an active d (RUNNING, VERIFYING, PAUSED)
// ends as status with reason. The rollback's events carry d's chain: it
// is part of the story of the change that d deployed.
func (s *Service) rollbackEnding(ctx context.Context, tx *bus.Tx, d *deployment, release, by, cause string, status eventsv1.DeployStatus, reason string) error {
	var target *deployment
	var err error
	if release == "" {
		target, err = lastGood(ctx, tx, d.repository, d.environment, d.version)
	} else {
		target, err = loadDeployment(ctx, tx, `repository = $1 AND environment = $2 AND version = $3 AND status = $4 ORDER BY deployed_at DESC LIMIT 1`,
			d.repository, d.environment, release, int32(eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		if errors.Is(err, sql.ErrNoRows) {
			return &notGoodError{release: release, env: d.environment}
		}
	}
	if err != nil {
		return err
	}
	active := d.status == eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING || d.status == eventsv1.DeployStatus_DEPLOY_STATUS_PAUSED ||
		d.status == eventsv1.DeployStatus_DEPLOY_STATUS_RUNNING
	if target == nil {
		if active {
			return s.finish(ctx, tx, d, eventsv1.DeployStatus_DEPLOY_STATUS_FAILED, reason+"; no earlier good release to roll back to")
		}
		return &notGoodError{env: d.environment}
	}
	b, err := loadBuildInfo(ctx, tx, `id = $1`, target.buildID)
	if err != nil {
		return err
	}
	cfg, err := b.parse()
	if err != nil {
		return err
	}
	env, err := s.envDef(ctx, tx, target, cfg)
	if err != nil {
		return err
	}
	if env == nil {
		return fmt.Errorf("release %s's .shiploop.yml has no environment %s", target.version, d.environment)
	}
	o := offer{kind: "rollback", by: by, cause: cause, rollbackOf: d.id, name: d.environment, chainID: d.chainID}
	if active {
		o.takeover = d.id
	}
	rb, err := s.offer(ctx, tx, b, cfg, env, o)
	if err != nil {
		return err
	}
	if err := s.publish(tx, "deploy.rolled_back", rb, &eventsv1.DeployRolledBack{Deploy: rb.ref(), FromRelease: d.version, ToRelease: target.version, Cause: cause, RolledBackDeployId: d.id}); err != nil {
		return err
	}
	if active {
		return s.finish(ctx, tx, d, status, reason)
	}
	return nil
}

type notGoodError struct{ release, env string }

func (e *notGoodError) Error() string {
	if e.release == "" {
		return fmt.Sprintf("no earlier good release in %s to roll back to", e.env)
	}
	return fmt.Sprintf("release %s never verified in %s: roll back to a release that did (shiploop deploy status)", e.release, e.env)
}

// deployPreview deploys a pull request's build to its preview environment.
func (s *Service) deployPreview(ctx context.Context, tx *bus.Tx, b *buildInfo, cfg *Pipeline) error {
	if cfg.Preview == nil {
		return nil
	}
	var pr int64
	err := tx.QueryRowContext(ctx, `SELECT number FROM pull_requests WHERE repository = $1 AND head_sha = $2 AND open = 1 ORDER BY number DESC LIMIT 1`, b.repository, b.commit).Scan(&pr)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	name := fmt.Sprintf("pr-%d", pr)
	var deleted int64 = -1
	if err := tx.QueryRowContext(ctx, `SELECT deleted_at FROM previews WHERE repository = $1 AND name = $2`, b.repository, name).Scan(&deleted); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if deleted != 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO previews (repository, name, pull_request, created_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (repository, name) DO UPDATE SET deleted_at = 0, created_at = excluded.created_at`, b.repository, name, pr, s.now().UnixNano()); err != nil {
			return err
		}
		if err := tx.Publish(bus.Event{Type: "environment.created", Repository: b.repository, Subject: name, ChainID: b.chainID,
			Data: &eventsv1.EnvironmentChanged{Repository: b.repository, Environment: name, PullRequest: pr, By: "auto", Reason: fmt.Sprintf("preview of pull request #%d", pr)}}); err != nil {
			return err
		}
	}
	_, err = s.offer(ctx, tx, b, cfg, cfg.Preview, offer{kind: "preview", by: "auto", automatic: true, name: name, previewPR: pr})
	return err
}

// teardownPreview removes a closed pull request's preview environment,
// running its teardown steps first when it has any.
func (s *Service) teardownPreview(ctx context.Context, tx *bus.Tx, repo string, pr int64, by string) error {
	var name string
	err := tx.QueryRowContext(ctx, `SELECT name FROM previews WHERE repository = $1 AND pull_request = $2 AND deleted_at = 0`, repo, pr).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if by == "" {
		by = "auto"
	}
	cur, err := currentDeployment(ctx, tx, repo, name)
	if err != nil {
		return err
	}
	if cur == nil {
		// Nothing ever reached it (a deploy may still run: it is canceled
		// by the teardown's offer below only when waiting).
		cur, err = loadDeployment(ctx, tx, `repository = $1 AND environment = $2 ORDER BY created_at DESC LIMIT 1`, repo, name)
		if errors.Is(err, sql.ErrNoRows) {
			return s.deletePreview(ctx, tx, repo, name, by, "pull request closed")
		}
		if err != nil {
			return err
		}
	}
	b, err := loadBuildInfo(ctx, tx, `id = $1`, cur.buildID)
	if err != nil {
		return err
	}
	cfg, err := b.parse()
	if err != nil || cfg.Preview == nil || len(cfg.Preview.Teardown) == 0 {
		return s.deletePreview(ctx, tx, repo, name, by, "pull request closed")
	}
	_, err = s.offer(ctx, tx, b, cfg, cfg.Preview, offer{kind: "teardown", by: by, automatic: true, name: name})
	return err
}

func (s *Service) deletePreview(ctx context.Context, tx *bus.Tx, repo, name, by, reason string) error {
	var pr int64
	if err := tx.QueryRowContext(ctx, `SELECT pull_request FROM previews WHERE repository = $1 AND name = $2`, repo, name).Scan(&pr); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE previews SET deleted_at = $1 WHERE repository = $2 AND name = $3`, s.now().UnixNano(), repo, name); err != nil {
		return err
	}
	return tx.Publish(bus.Event{Type: "environment.deleted", Repository: repo, Subject: name,
		Data: &eventsv1.EnvironmentChanged{Repository: repo, Environment: name, PullRequest: pr, By: by, Reason: reason}})
}
