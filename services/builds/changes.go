package builds

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

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/builds/pipeline"
	"github.com/shiploop/shiploop/services/builds/version"
)

// ConfigFile is the pipeline file read from every built commit.
const ConfigFile = ".shiploop.yml"

// preparedChange is what prepareChange learned outside the transaction.
type preparedChange struct {
	skip    bool
	commit  string
	version string
	trigger string
	steps   []pipeline.Step
	cfg     *pipeline.Config
	raw     []byte // the .shiploop.yml as read, carried in build.created
	// problem makes the build end in ERROR with this text (a bad
	// .shiploop.yml, a commit that cannot be fetched).
	problem string
	// vcs is "hg" for a Mercurial repository (hg.go); jobCloneURL, when
	// set, is where agents fetch the commit (a diff's staging area);
	// skipReason replaces "no step matches this change".
	vcs, jobCloneURL, skipReason string
}

func triggerOf(ch *eventsv1.Change) string {
	switch {
	case ch.Forge == "manual":
		return "manual"
	case ch.Forge == "cron": // schedules.go
		return "cron"
	case ch.Kind == eventsv1.ChangeKind_CHANGE_KIND_TAG:
		return "tag"
	case ch.Kind == eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_OPENED || ch.Kind == eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_UPDATED:
		return "pull_request"
	}
	return "push"
}

func buildable(k eventsv1.ChangeKind) bool {
	switch k {
	case eventsv1.ChangeKind_CHANGE_KIND_PUSH, eventsv1.ChangeKind_CHANGE_KIND_TAG,
		eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_OPENED, eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_UPDATED:
		return true
	}
	return false
}

// prepareChange fetches the commit into the mirror, reads and checks
// .shiploop.yml and computes the version; all slow, none of it in a
// database transaction.
func (s *Service) prepareChange(ctx context.Context, ev bus.Event) (any, error) {
	ch, ok := ev.Data.(*eventsv1.Change)
	if !ok {
		return nil, bus.Permanent(fmt.Errorf("change event %s carries %T", ev.ID, ev.Data))
	}
	p := &preparedChange{commit: ch.After, trigger: triggerOf(ch)}
	if !buildable(ch.Kind) {
		p.skip = true
		return p, nil
	}
	if done, err := s.prepareVCS(ctx, ch, p); err != nil {
		return nil, err
	} else if done {
		return p, nil
	}
	dir, err := s.mirrors.ensureRef(ctx, ch.Repository, ch.CloneUrl, ch.Ref, ch.After)
	if err != nil {
		p.problem = fmt.Sprintf("cannot fetch %s: %v", ch.Repository, err)
		return p, nil
	}
	if p.commit == "" && ch.Tag != "" {
		if p.commit, err = resolve(ctx, dir, "refs/tags/"+ch.Tag); err != nil {
			p.problem = fmt.Sprintf("tag %s: %v", ch.Tag, err)
			return p, nil
		}
	}
	if p.commit == "" {
		p.problem = "the change names no commit"
		return p, nil
	}
	data, err := s.mirrors.readFile(dir, p.commit, ConfigFile)
	if errors.Is(err, errNoFile) {
		p.problem = fmt.Sprintf("%s: not found in commit %s (add one to tell shiploop what to build)", ConfigFile, short(p.commit))
		return p, nil
	}
	if err != nil {
		return nil, err // the mirror misbehaves: retry
	}
	p.raw = data
	cfg, err := pipeline.Parse(ConfigFile, data)
	if err != nil {
		p.problem = err.Error()
		return p, nil
	}
	if p.version, err = version.Compute(ctx, dir, p.commit, ch.Tag); err != nil {
		p.problem = fmt.Sprintf("computing the version: %v", err)
		return p, nil
	}
	wctx := pipeline.Context{Event: p.trigger, Branch: ch.Branch, Tag: ch.Tag, ChangedPaths: changedPaths(ch), Cron: ch.Schedule}
	p.steps = cfg.Selected(wctx)
	p.cfg = cfg
	return p, nil
}

func changedPaths(ch *eventsv1.Change) []string {
	var out []string
	for _, c := range ch.Commits {
		out = append(out, c.Added...)
		out = append(out, c.Modified...)
		out = append(out, c.Removed...)
	}
	return out
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// handleChange records the build and queues its job.
func (s *Service) handleChange(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	ch := ev.Data.(*eventsv1.Change)
	p := tx.Prepared.(*preparedChange)
	if p.skip {
		return nil
	}
	now := time.Now().UTC()
	if p.problem == "" {
		if err := storeSchedules(ctx, tx, ch, p.cfg, now); err != nil { // schedules.go
			return err
		}
	}
	var number int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE repository = $1`, ch.Repository).Scan(&number); err != nil {
		return err
	}
	b := buildRow{
		id: bus.NewID(), repository: ch.Repository, number: number, ref: ch.Ref, commit: p.commit,
		version: p.version, trigger: p.trigger, chainID: ev.ChainID, changeID: ev.ID, createdAt: now.UnixNano(),
		status: eventsv1.BuildStatus_BUILD_STATUS_QUEUED,
	}
	if b.chainID == "" {
		b.chainID = ev.ID
	}
	switch {
	case p.problem != "":
		b.status, b.errText, b.finishedAt = eventsv1.BuildStatus_BUILD_STATUS_ERROR, p.problem, now.UnixNano()
	case len(p.steps) == 0:
		b.status, b.errText, b.finishedAt = eventsv1.BuildStatus_BUILD_STATUS_SKIPPED, orText(p.skipReason, "no step matches this change"), now.UnixNano()
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO builds (id, repository, number, ref, commit_sha, version, status, trigger, error, chain_id, change_id, created_at, finished_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		b.id, b.repository, b.number, b.ref, b.commit, b.version, int32(b.status), b.trigger, b.errText, b.chainID, b.changeID, b.createdAt, b.finishedAt); err != nil {
		return fmt.Errorf("recording build: %w", err)
	}
	if err := tx.Publish(bus.Event{Type: "build.created", Repository: b.repository, Subject: b.id, Data: &eventsv1.BuildCreated{
		BuildId: b.id, Number: b.number, Repository: b.repository, Ref: b.ref, Commit: b.commit,
		Version: b.version, Trigger: b.trigger, CreatedAt: timestamppb.New(now), Config: p.raw, Gate: gateBuild(ch, p.cfg), Vcs: p.vcs,
		CloneUrl: orText(p.jobCloneURL, ch.CloneUrl),
	}}); err != nil {
		return err
	}
	if ev := testsPlanned(b, ch, p); ev != nil { // testplan.go
		if err := tx.Publish(*ev); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE builds SET has_tests = 1 WHERE id = $1`, b.id); err != nil {
			return err
		}
	}
	if b.status == eventsv1.BuildStatus_BUILD_STATUS_QUEUED {
		// Secrets are checked before anything is queued: a missing one
		// fails the build with the place in the file that names it. Jobs
		// carry the names only: the agent asks for the values when the job
		// starts (secrets.go), so JetStream never stores one.
		_, problem, err := loadSecrets(ctx, tx, b.repository, p.cfg)
		if err != nil {
			return err
		}
		if problem != "" {
			b.status, b.errText, b.finishedAt = eventsv1.BuildStatus_BUILD_STATUS_ERROR, problem, now.UnixNano()
			if _, err := tx.ExecContext(ctx, `UPDATE builds SET status = $1, error = $2, finished_at = $3 WHERE id = $4`,
				int32(b.status), b.errText, b.finishedAt, b.id); err != nil {
				return err
			}
		} else if err := s.queueJobs(ctx, tx, b, ch, p, now); err != nil {
			return err
		}
	}
	if b.status != eventsv1.BuildStatus_BUILD_STATUS_QUEUED {
		return tx.Publish(bus.Event{Type: "build.finished", Repository: b.repository, Subject: b.id, Data: &eventsv1.BuildFinished{
			BuildId: b.id, Number: b.number, Repository: b.repository, Ref: b.ref, Commit: b.commit, Version: b.version,
			Status: b.status, Error: b.errText, Duration: durationpb.New(0), FinishedAt: timestamppb.New(now),
		}})
	}
	return s.supersede(ctx, tx, b, now)
}

// loadSecrets reads the repository's secrets that the config names; a
// missing one is a problem naming the field that asks for it.
func loadSecrets(ctx context.Context, tx *bus.Tx, repo string, cfg *pipeline.Config) (map[string]string, string, error) {
	refs := cfg.SecretRefs()
	out := map[string]string{}
	for _, ref := range refs {
		if _, ok := out[ref.Name]; ok {
			continue
		}
		var v string
		err := tx.QueryRowContext(ctx, `SELECT value FROM secrets WHERE repository = $1 AND name = $2`, repo, ref.Name).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, cfg.FieldError(ref.Field, fmt.Sprintf("secret %s is not set for %s (shiploop secret set %s %s)", ref.Name, repo, repo, ref.Name)).Error(), nil
		}
		if err != nil {
			return nil, "", err
		}
		out[ref.Name] = v
	}
	return out, "", nil
}

// queueJobs records and enqueues one job per matrix combination.
func (s *Service) queueJobs(ctx context.Context, tx *bus.Tx, b buildRow, ch *eventsv1.Change, p *preparedChange, now time.Time) error {
	for pos, combo := range p.cfg.MatrixCombinations() {
		job := &eventsv1.Job{
			JobId: bus.NewID(), BuildId: b.id, Kind: "build", Repository: b.repository, CloneUrl: orText(p.jobCloneURL, ch.CloneUrl), Vcs: p.vcs,
			Ref: b.ref, Commit: b.commit, Version: b.version, Environment: map[string]string{},
			Timeout: durationpb.New(s.cfg.JobTimeout), ChainId: b.chainID, QueuedAt: timestamppb.New(now),
			Matrix: combo, Secrets: map[string]string{}, Labels: p.cfg.Labels,
		}
		maps.Copy(job.Environment, combo)
		job.Environment["SHIPLOOP_VERSION"] = b.version
		job.Environment["SHIPLOOP_BUILD_NUMBER"] = fmt.Sprint(b.number)
		job.Environment["SHIPLOOP_REPOSITORY"] = b.repository
		names := make([]string, 0, len(p.steps))
		for i, st := range p.steps {
			js := &eventsv1.Step{
				Name: st.Name, Commands: st.Commands, Environment: p.cfg.StepEnv(st, combo, nil),
				FailureIgnore: st.Failure == pipeline.FailureIgnore, DependsOn: st.DependsOn,
				Secrets: p.cfg.StepSecrets(st, nil), Artifacts: st.Artifacts, Cache: stepCache(st.Cache),
				Cpus: st.CPUs, MemoryBytes: st.Memory, ProducesImages: st.Produces,
			}
			js.Image, js.Pull = p.cfg.StepImage(st)
			if st.Timeout > 0 {
				js.Timeout = durationpb.New(st.Timeout)
			}
			job.Steps = append(job.Steps, js)
			names = append(names, st.Name)
			if _, err := tx.ExecContext(ctx, `INSERT INTO build_steps (build_id, job_id, position, name, status) VALUES ($1, $2, $3, $4, $5)`,
				b.id, job.JobId, i, st.Name, int32(eventsv1.BuildStatus_BUILD_STATUS_QUEUED)); err != nil {
				return fmt.Errorf("recording step %s: %w", st.Name, err)
			}
		}
		matrix, _ := json.Marshal(combo)
		if err := s.addJob(ctx, tx, job, pos, string(matrix), p.cfg.Concurrency, now); err != nil {
			return err
		}
		if err := tx.Publish(bus.Event{Type: "job.queued", Repository: b.repository, Subject: job.JobId, Data: &eventsv1.JobQueued{
			JobId: job.JobId, BuildId: b.id, Kind: job.Kind, Repository: b.repository, Steps: names, Matrix: combo,
		}}); err != nil {
			return err
		}
	}
	return nil
}

// addJob records a job and hands it to agents, unless its concurrency group
// is full: then it waits, its spec kept, for dispatchWaiting.
func (s *Service) addJob(ctx context.Context, tx *bus.Tx, job *eventsv1.Job, pos int, matrix string, cc *pipeline.Concurrency, now time.Time) error {
	group, dispatch := "", true
	var spec []byte
	if cc != nil {
		group = cc.Group
		active, limit, err := lockGroup(ctx, tx, group, cc.Limit)
		if err != nil {
			return err
		}
		if dispatch = active < limit; !dispatch {
			if spec, err = proto.Marshal(job); err != nil {
				return err
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO jobs (id, build_id, position, kind, matrix, status, group_name, dispatched, spec, queued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		job.JobId, job.BuildId, pos, job.Kind, matrix, int32(eventsv1.BuildStatus_BUILD_STATUS_QUEUED), group, boolInt(dispatch), spec, now.UnixNano()); err != nil {
		return err
	}
	if !dispatch {
		return nil
	}
	return tx.EnqueueFor(job.Kind, job.Labels, bus.Event{Type: "job.requested", Repository: job.Repository, Subject: job.JobId, ChainID: job.ChainId, Data: job})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// lockGroup takes the group's row lock (PostgreSQL; SQLite has one writer
// anyway), records the limit the newest config gives when limit > 0, and
// counts the group's jobs out with agents.
func lockGroup(ctx context.Context, tx *bus.Tx, group string, limit int) (active, lim int, err error) {
	if limit > 0 {
		_, err = tx.ExecContext(ctx, `INSERT INTO concurrency_groups (name, job_limit) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET job_limit = excluded.job_limit`, group, limit)
	} else {
		_, err = tx.ExecContext(ctx, `UPDATE concurrency_groups SET job_limit = job_limit WHERE name = $1`, group)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("locking concurrency group %s: %w", group, err)
	}
	if err = tx.QueryRowContext(ctx, `SELECT job_limit FROM concurrency_groups WHERE name = $1`, group).Scan(&lim); err != nil {
		return 0, 0, err
	}
	err = tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs WHERE group_name = $1 AND dispatched = 1 AND status IN ($2, $3)`,
		group, int32(eventsv1.BuildStatus_BUILD_STATUS_QUEUED), int32(eventsv1.BuildStatus_BUILD_STATUS_RUNNING)).Scan(&active)
	return active, lim, err
}

// dispatchWaiting hands a group's waiting jobs to agents, oldest first, as
// far as the group's limit allows.
func (s *Service) dispatchWaiting(ctx context.Context, tx *bus.Tx, group string) error {
	if group == "" {
		return nil
	}
	active, limit, err := lockGroup(ctx, tx, group, 0)
	if err != nil || active >= limit {
		return err
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, spec FROM jobs WHERE group_name = $1 AND dispatched = 0 AND status = $2 ORDER BY queued_at, position LIMIT $3`,
		group, int32(eventsv1.BuildStatus_BUILD_STATUS_QUEUED), limit-active)
	if err != nil {
		return err
	}
	var jobs []*eventsv1.Job
	for rows.Next() {
		var id string
		var spec []byte
		if err := rows.Scan(&id, &spec); err != nil {
			rows.Close()
			return err
		}
		job := &eventsv1.Job{}
		if err := proto.Unmarshal(spec, job); err != nil {
			rows.Close()
			return fmt.Errorf("waiting job %s: %w", id, err)
		}
		jobs = append(jobs, job)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, job := range jobs {
		if _, err := tx.ExecContext(ctx, `UPDATE jobs SET dispatched = 1, spec = NULL WHERE id = $1`, job.JobId); err != nil {
			return err
		}
		if err := tx.EnqueueFor(job.Kind, job.Labels, bus.Event{Type: "job.requested", Repository: job.Repository, Subject: job.JobId, ChainID: job.ChainId, Data: job}); err != nil {
			return err
		}
	}
	return nil
}

// supersede cancels the older unfinished builds of the same branch or pull
// request: a newer push makes them moot.
func (s *Service) supersede(ctx context.Context, tx *bus.Tx, b buildRow, now time.Time) error {
	if b.trigger != "push" && b.trigger != "pull_request" {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT id FROM builds WHERE repository = $1 AND ref = $2 AND id <> $3 AND finished_at = 0 AND number < $4`,
		b.repository, b.ref, b.id, b.number)
	if err != nil {
		return err
	}
	var older []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		older = append(older, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, id := range older {
		if err := s.cancelBuild(ctx, tx, id, fmt.Sprintf("superseded by build #%d", b.number), now); err != nil {
			return err
		}
	}
	return nil
}

// cancelBuild ends an unfinished build as canceled and tells agents to stop
// its jobs. It reports whether the build was still unfinished.
func (s *Service) cancelBuild(ctx context.Context, tx *bus.Tx, id, reason string, now time.Time) error {
	res, err := tx.ExecContext(ctx, `UPDATE builds SET status = $1, error = $2, finished_at = $3 WHERE id = $4 AND finished_at = 0`,
		int32(eventsv1.BuildStatus_BUILD_STATUS_CANCELED), reason, now.UnixNano(), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errAlreadyFinished
	}
	jobs, err := tx.QueryContext(ctx, `SELECT id, group_name FROM jobs WHERE build_id = $1 AND status IN ($2, $3)`,
		id, int32(eventsv1.BuildStatus_BUILD_STATUS_QUEUED), int32(eventsv1.BuildStatus_BUILD_STATUS_RUNNING))
	if err != nil {
		return err
	}
	var ids []string
	groups := map[string]bool{}
	for jobs.Next() {
		var j, g string
		if err := jobs.Scan(&j, &g); err != nil {
			jobs.Close()
			return err
		}
		ids = append(ids, j)
		groups[g] = true
	}
	jobs.Close()
	if err := jobs.Err(); err != nil {
		return err
	}
	for _, j := range ids {
		if _, err := tx.ExecContext(ctx, `UPDATE jobs SET status = $1, error = $2 WHERE id = $3`, int32(eventsv1.BuildStatus_BUILD_STATUS_CANCELED), reason, j); err != nil {
			return err
		}
		if err := tx.CancelJob(j, reason); err != nil {
			return err
		}
	}
	for g := range groups {
		if err := s.dispatchWaiting(ctx, tx, g); err != nil {
			return err
		}
	}
	b, err := loadBuild(ctx, tx, id)
	if err != nil {
		return err
	}
	var dur time.Duration
	if b.StartedAt != nil {
		dur = now.Sub(b.StartedAt.AsTime())
	}
	return tx.Publish(bus.Event{Type: "build.finished", Repository: b.Repository, Subject: b.Id, ChainID: b.ChainId, Data: &eventsv1.BuildFinished{
		BuildId: b.Id, Number: b.Number, Repository: b.Repository, Ref: b.Ref, Commit: b.Commit, Version: b.Version,
		Status: eventsv1.BuildStatus_BUILD_STATUS_CANCELED, Error: reason, Duration: durationpb.New(dur), FinishedAt: timestamppb.New(now),
	}})
}

var errAlreadyFinished = errors.New("build already finished")

type buildRow struct {
	id, repository, ref, commit, version, trigger, failedStep, errText, chainID, changeID string
	number                                                                                int64
	status                                                                                eventsv1.BuildStatus
	createdAt, startedAt, finishedAt                                                      int64
}

// handleJobEvent follows a build's jobs through the agents' events.
func (s *Service) handleJobEvent(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	switch d := ev.Data.(type) {
	case *eventsv1.JobStarted:
		if _, err := tx.ExecContext(ctx, `UPDATE jobs SET status = $1, agent = $2 WHERE id = $3 AND status = $4`,
			int32(eventsv1.BuildStatus_BUILD_STATUS_RUNNING), d.Agent, d.JobId, int32(eventsv1.BuildStatus_BUILD_STATUS_QUEUED)); err != nil {
			return err
		}
		started := d.StartedAt.AsTime()
		res, err := tx.ExecContext(ctx, `UPDATE builds SET status = $1, started_at = $2 WHERE id = $3 AND status = $4`,
			int32(eventsv1.BuildStatus_BUILD_STATUS_RUNNING), started.UnixNano(), d.BuildId, int32(eventsv1.BuildStatus_BUILD_STATUS_QUEUED))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // another job of the build started first, or it was canceled
		}
		var version string
		if err := tx.QueryRowContext(ctx, `SELECT version FROM builds WHERE id = $1`, d.BuildId).Scan(&version); err != nil {
			return err
		}
		return tx.Publish(bus.Event{Type: "build.started", Repository: d.Repository, Subject: d.BuildId, Data: &eventsv1.BuildStarted{
			BuildId: d.BuildId, Repository: d.Repository, Version: version, Agent: d.Agent, StartedAt: d.StartedAt,
		}})
	case *eventsv1.JobStepFinished:
		return updateStep(ctx, tx, d.JobId, d.Step)
	case *eventsv1.JobFinished:
		return s.finishJob(ctx, tx, d)
	}
	return nil
}

func updateStep(ctx context.Context, tx *bus.Tx, jobID string, st *eventsv1.StepResult) error {
	var started int64
	if st.StartedAt != nil {
		started = st.StartedAt.AsTime().UnixNano()
	}
	_, err := tx.ExecContext(ctx, `UPDATE build_steps SET status = $1, exit_code = $2, started_at = $3, duration_ns = $4, error = $5 WHERE job_id = $6 AND name = $7`,
		int32(st.Status), st.ExitCode, started, st.Duration.AsDuration().Nanoseconds(), st.Error, jobID, st.Name)
	return err
}

// finishJob records a job's end and, when it was the build's last, ends the
// build: failure if any job failed, error if any errored, else success.
func (s *Service) finishJob(ctx context.Context, tx *bus.Tx, d *eventsv1.JobFinished) error {
	if d.BuildId == "" {
		return nil // not a build's job: a command monitor's check (deploys)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE jobs SET status = $1, log_key = $2, agent = $3, failed_step = $4, error = $5 WHERE id = $6 AND status IN ($7, $8)`,
		int32(d.Status), d.LogKey, d.Agent, d.FailedStep, d.Error, d.JobId,
		int32(eventsv1.BuildStatus_BUILD_STATUS_QUEUED), int32(eventsv1.BuildStatus_BUILD_STATUS_RUNNING)); err != nil {
		return err
	}
	// A later report without a log (builds' own for a lost job) keeps the link.
	if _, err := tx.ExecContext(ctx, `UPDATE jobs SET log_key = $1 WHERE id = $2 AND $1 <> ''`, d.LogKey, d.JobId); err != nil {
		return err
	}
	var group string
	if err := tx.QueryRowContext(ctx, `SELECT group_name FROM jobs WHERE id = $1`, d.JobId).Scan(&group); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if err := s.dispatchWaiting(ctx, tx, group); err != nil {
		return err
	}
	for _, st := range d.Steps {
		if err := updateStep(ctx, tx, d.JobId, st); err != nil {
			return err
		}
	}
	for _, a := range d.Artifacts {
		if _, err := tx.ExecContext(ctx, `INSERT INTO artifacts (build_id, job_id, name, step, size, sha256, object_key) VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (job_id, name) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, object_key = excluded.object_key, step = excluded.step`,
			d.BuildId, d.JobId, a.Name, a.Step, a.Size, a.Sha256, a.Key); err != nil {
			return fmt.Errorf("recording artifact %s: %w", a.Name, err)
		}
	}
	if err := recordImages(ctx, tx, d); err != nil {
		return err
	}
	b, err := loadBuild(ctx, tx, d.BuildId)
	if err != nil {
		return err
	}
	if b.FinishedAt != nil {
		return nil // canceled, or a redelivered job's second report
	}
	status, failed, errText := eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, "", ""
	for _, j := range b.Jobs {
		switch j.Status {
		case eventsv1.BuildStatus_BUILD_STATUS_QUEUED, eventsv1.BuildStatus_BUILD_STATUS_RUNNING:
			return nil // not the last job
		case eventsv1.BuildStatus_BUILD_STATUS_FAILURE, eventsv1.BuildStatus_BUILD_STATUS_ERROR, eventsv1.BuildStatus_BUILD_STATUS_CANCELED:
			if status == eventsv1.BuildStatus_BUILD_STATUS_SUCCESS || j.Status == eventsv1.BuildStatus_BUILD_STATUS_FAILURE && status != eventsv1.BuildStatus_BUILD_STATUS_FAILURE {
				status, failed, errText = j.Status, j.FailedStep, j.Error
				if len(b.Jobs) > 1 && j.Error != "" {
					errText = fmt.Sprintf("%s (%s)", j.Error, matrixLabel(j.Matrix))
				}
			}
		}
	}
	now := time.Now().UTC()
	if _, err := tx.ExecContext(ctx, `UPDATE builds SET status = $1, failed_step = $2, error = $3, finished_at = $4 WHERE id = $5 AND finished_at = 0`,
		int32(status), failed, errText, now.UnixNano(), d.BuildId); err != nil {
		return err
	}
	var dur time.Duration
	if b.StartedAt != nil {
		dur = now.Sub(b.StartedAt.AsTime())
	}
	return tx.Publish(bus.Event{Type: "build.finished", Repository: b.Repository, Subject: b.Id, ChainID: b.ChainId, Data: &eventsv1.BuildFinished{
		BuildId: b.Id, Number: b.Number, Repository: b.Repository, Ref: b.Ref, Commit: b.Commit, Version: b.Version,
		Status: status, FailedStep: failed, Error: errText, Duration: durationpb.New(dur), FinishedAt: timestamppb.New(now),
	}})
}

// matrixLabel is "DB=pg, GO=1.26" for a combination.
func matrixLabel(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ", ")
}

func branchOf(ref string) string { return strings.TrimPrefix(ref, "refs/heads/") }

// stepCache carries a step's cache settings into its job.
func stepCache(c *pipeline.Cache) *eventsv1.StepCache {
	if c == nil {
		return nil
	}
	return &eventsv1.StepCache{KeyFiles: c.KeyFiles, Paths: c.Paths}
}
