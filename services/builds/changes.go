package builds

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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
	env     map[string]string
	// problem makes the build end in ERROR with this text (a bad
	// .shiploop.yml, a commit that cannot be fetched).
	problem string
}

func triggerOf(ch *eventsv1.Change) string {
	switch {
	case ch.Forge == "manual":
		return "manual"
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
	dir, err := s.mirrors.ensure(ctx, ch.Repository, ch.CloneUrl, ch.After)
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
	data, err := readFile(ctx, dir, p.commit, ConfigFile)
	if errors.Is(err, errNoFile) {
		p.problem = fmt.Sprintf("%s: not found in commit %s (add one to tell shiploop what to build)", ConfigFile, short(p.commit))
		return p, nil
	}
	if err != nil {
		return nil, err // the mirror misbehaves: retry
	}
	cfg, err := pipeline.Parse(ConfigFile, data)
	if err != nil {
		p.problem = err.Error()
		return p, nil
	}
	if p.version, err = version.Compute(ctx, dir, p.commit, ch.Tag); err != nil {
		p.problem = fmt.Sprintf("computing the version: %v", err)
		return p, nil
	}
	wctx := pipeline.Context{Event: p.trigger, Branch: ch.Branch, Tag: ch.Tag, ChangedPaths: changedPaths(ch)}
	if cfg.When.Match(wctx) {
		for _, st := range cfg.BuildSteps() {
			if st.When.Match(wctx) {
				p.steps = append(p.steps, st)
			}
		}
	}
	p.env = cfg.Env
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
		b.status, b.errText, b.finishedAt = eventsv1.BuildStatus_BUILD_STATUS_SKIPPED, "no step matches this change", now.UnixNano()
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO builds (id, repository, number, ref, commit_sha, version, status, trigger, error, chain_id, change_id, created_at, finished_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		b.id, b.repository, b.number, b.ref, b.commit, b.version, int32(b.status), b.trigger, b.errText, b.chainID, b.changeID, b.createdAt, b.finishedAt); err != nil {
		return fmt.Errorf("recording build: %w", err)
	}
	if err := tx.Publish(bus.Event{Type: "build.created", Repository: b.repository, Subject: b.id, Data: &eventsv1.BuildCreated{
		BuildId: b.id, Number: b.number, Repository: b.repository, Ref: b.ref, Commit: b.commit,
		Version: b.version, Trigger: b.trigger, CreatedAt: timestamppb.New(now),
	}}); err != nil {
		return err
	}
	if b.status != eventsv1.BuildStatus_BUILD_STATUS_QUEUED {
		return tx.Publish(bus.Event{Type: "build.finished", Repository: b.repository, Subject: b.id, Data: &eventsv1.BuildFinished{
			BuildId: b.id, Number: b.number, Repository: b.repository, Ref: b.ref, Commit: b.commit, Version: b.version,
			Status: b.status, Error: b.errText, Duration: durationpb.New(0), FinishedAt: timestamppb.New(now),
		}})
	}

	job := &eventsv1.Job{
		JobId: bus.NewID(), BuildId: b.id, Kind: "build", Repository: b.repository, CloneUrl: ch.CloneUrl,
		Ref: b.ref, Commit: b.commit, Version: b.version, Environment: map[string]string{},
		Timeout: durationpb.New(s.cfg.JobTimeout), ChainId: b.chainID, QueuedAt: timestamppb.New(now),
	}
	for k, v := range p.env {
		job.Environment[k] = v
	}
	job.Environment["SHIPLOOP_VERSION"] = b.version
	job.Environment["SHIPLOOP_BUILD_NUMBER"] = fmt.Sprint(b.number)
	job.Environment["SHIPLOOP_REPOSITORY"] = b.repository
	names := make([]string, 0, len(p.steps))
	for i, st := range p.steps {
		js := &eventsv1.Step{
			Name: st.Name, Commands: st.Commands, Environment: st.Env,
			FailureIgnore: st.Failure == pipeline.FailureIgnore, DependsOn: st.DependsOn,
		}
		if st.Timeout > 0 {
			js.Timeout = durationpb.New(st.Timeout)
		}
		job.Steps = append(job.Steps, js)
		names = append(names, st.Name)
		if _, err := tx.ExecContext(ctx, `INSERT INTO build_steps (build_id, position, name, status) VALUES ($1, $2, $3, $4)`,
			b.id, i, st.Name, int32(eventsv1.BuildStatus_BUILD_STATUS_QUEUED)); err != nil {
			return fmt.Errorf("recording step %s: %w", st.Name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO jobs (id, build_id, kind, status) VALUES ($1, $2, $3, $4)`,
		job.JobId, b.id, job.Kind, int32(eventsv1.BuildStatus_BUILD_STATUS_QUEUED)); err != nil {
		return err
	}
	if err := tx.Enqueue(job.Kind, bus.Event{Type: "job.requested", Repository: b.repository, Subject: job.JobId, Data: job}); err != nil {
		return err
	}
	return tx.Publish(bus.Event{Type: "job.queued", Repository: b.repository, Subject: job.JobId, Data: &eventsv1.JobQueued{
		JobId: job.JobId, BuildId: b.id, Kind: job.Kind, Repository: b.repository, Steps: names,
	}})
}

type buildRow struct {
	id, repository, ref, commit, version, trigger, failedStep, errText, chainID, changeID string
	number                                                                                int64
	status                                                                                eventsv1.BuildStatus
	createdAt, startedAt, finishedAt                                                      int64
}

// handleJobEvent follows a build's job through the agent's events.
func (s *Service) handleJobEvent(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	switch d := ev.Data.(type) {
	case *eventsv1.JobStarted:
		if _, err := tx.ExecContext(ctx, `UPDATE jobs SET status = $1, agent = $2 WHERE id = $3`,
			int32(eventsv1.BuildStatus_BUILD_STATUS_RUNNING), d.Agent, d.JobId); err != nil {
			return err
		}
		started := d.StartedAt.AsTime()
		res, err := tx.ExecContext(ctx, `UPDATE builds SET status = $1, started_at = $2 WHERE id = $3 AND status = $4`,
			int32(eventsv1.BuildStatus_BUILD_STATUS_RUNNING), started.UnixNano(), d.BuildId, int32(eventsv1.BuildStatus_BUILD_STATUS_QUEUED))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		var version string
		if err := tx.QueryRowContext(ctx, `SELECT version FROM builds WHERE id = $1`, d.BuildId).Scan(&version); err != nil {
			return err
		}
		return tx.Publish(bus.Event{Type: "build.started", Repository: d.Repository, Subject: d.BuildId, Data: &eventsv1.BuildStarted{
			BuildId: d.BuildId, Repository: d.Repository, Version: version, Agent: d.Agent, StartedAt: d.StartedAt,
		}})
	case *eventsv1.JobStepFinished:
		return updateStep(ctx, tx, d.BuildId, d.Step)
	case *eventsv1.JobFinished:
		return s.finishJob(ctx, tx, d)
	}
	return nil
}

func updateStep(ctx context.Context, tx *bus.Tx, buildID string, st *eventsv1.StepResult) error {
	var started int64
	if st.StartedAt != nil {
		started = st.StartedAt.AsTime().UnixNano()
	}
	_, err := tx.ExecContext(ctx, `UPDATE build_steps SET status = $1, exit_code = $2, started_at = $3, duration_ns = $4, error = $5 WHERE build_id = $6 AND name = $7`,
		int32(st.Status), st.ExitCode, started, st.Duration.AsDuration().Nanoseconds(), st.Error, buildID, st.Name)
	return err
}

func (s *Service) finishJob(ctx context.Context, tx *bus.Tx, d *eventsv1.JobFinished) error {
	if _, err := tx.ExecContext(ctx, `UPDATE jobs SET status = $1, log_key = $2, agent = $3 WHERE id = $4`,
		int32(d.Status), d.LogKey, d.Agent, d.JobId); err != nil {
		return err
	}
	for _, st := range d.Steps {
		if err := updateStep(ctx, tx, d.BuildId, st); err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	res, err := tx.ExecContext(ctx, `UPDATE builds SET status = $1, failed_step = $2, error = $3, finished_at = $4 WHERE id = $5 AND finished_at = 0`,
		int32(d.Status), d.FailedStep, d.Error, now.UnixNano(), d.BuildId)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil // already finished (a redelivered job's second report)
	}
	b, err := loadBuild(ctx, tx, d.BuildId)
	if err != nil {
		return err
	}
	var dur time.Duration
	if b.StartedAt != nil {
		dur = now.Sub(b.StartedAt.AsTime())
	}
	return tx.Publish(bus.Event{Type: "build.finished", Repository: b.Repository, Subject: b.Id, Data: &eventsv1.BuildFinished{
		BuildId: b.Id, Number: b.Number, Repository: b.Repository, Ref: b.Ref, Commit: b.Commit, Version: b.Version,
		Status: d.Status, FailedStep: d.FailedStep, Error: d.Error, Duration: durationpb.New(dur), FinishedAt: timestamppb.New(now),
	}})
}

func branchOf(ref string) string { return strings.TrimPrefix(ref, "refs/heads/") }
