// From a build to its test jobs: the builds this service knows, their test
// plans, and the run that starts when a build succeeds.

package testruns

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

func (s *Service) handleBuildEvent(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	now := time.Now().UTC().UnixNano()
	switch d := ev.Data.(type) {
	case *eventsv1.BuildCreated:
		_, err := tx.ExecContext(ctx, `INSERT INTO tr_builds (build_id, repository, ref, commit_sha, version, chain_id, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (build_id) DO NOTHING`,
			d.BuildId, d.Repository, d.Ref, d.Commit, d.Version, ev.ChainID, now)
		return err
	case *eventsv1.BuildTestsPlanned:
		plan, err := proto.Marshal(d.Plan)
		if err != nil {
			return bus.Permanent(err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO tr_builds (build_id, repository, ref, commit_sha, version, chain_id, plan, base_commit, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (build_id) DO UPDATE SET plan = excluded.plan, base_commit = excluded.base_commit`,
			d.BuildId, d.Repository, d.Ref, d.Commit, d.Version, ev.ChainID, plan, d.BaseCommit, now)
		if err != nil {
			return err
		}
		// The plan can arrive after build.finished (a redelivery after a
		// crash): start the run now if the build already succeeded.
		var succeeded int
		if err := tx.QueryRowContext(ctx, `SELECT succeeded FROM tr_builds WHERE build_id = $1`, d.BuildId).Scan(&succeeded); err != nil {
			return err
		}
		if succeeded == 1 {
			return s.startPlannedRun(ctx, tx, d.BuildId)
		}
		return nil
	case *eventsv1.BuildFinished:
		if _, err := tx.ExecContext(ctx, `INSERT INTO tr_builds (build_id, repository, ref, commit_sha, version, chain_id, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (build_id) DO NOTHING`,
			d.BuildId, d.Repository, d.Ref, d.Commit, d.Version, ev.ChainID, now); err != nil {
			return err
		}
		if d.Status != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tr_builds SET succeeded = 1 WHERE build_id = $1`, d.BuildId); err != nil {
			return err
		}
		return s.startPlannedRun(ctx, tx, d.BuildId)
	}
	return nil
}

// buildRow is what the service knows about a build.
type buildRow struct {
	id, repository, ref, commit, version, chainID, baseCommit string
	plan                                                      *eventsv1.TestPlan
}

func loadBuild(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (*buildRow, error) {
	b := &buildRow{id: id}
	var plan []byte
	err := q.QueryRowContext(ctx, `SELECT repository, ref, commit_sha, version, chain_id, plan, base_commit FROM tr_builds WHERE build_id = $1`, id).
		Scan(&b.repository, &b.ref, &b.commit, &b.version, &b.chainID, &plan, &b.baseCommit)
	if err != nil {
		return nil, err
	}
	if len(plan) > 0 {
		b.plan = &eventsv1.TestPlan{}
		if err := proto.Unmarshal(plan, b.plan); err != nil {
			return nil, fmt.Errorf("build %s: stored test plan: %w", id, err)
		}
	}
	return b, nil
}

// startPlannedRun creates the run of a succeeded build with a test plan and
// queues its jobs; a build without a plan, or whose run exists, is left.
func (s *Service) startPlannedRun(ctx context.Context, tx *bus.Tx, buildID string) error {
	b, err := loadBuild(ctx, tx, buildID)
	if err != nil {
		return err
	}
	if b.plan == nil || len(b.plan.Steps) == 0 {
		return nil
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM test_runs WHERE build_id = $1`, buildID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	jobs := s.planJobs(b)
	runID, err := s.createRun(ctx, tx, b, len(jobs))
	if err != nil {
		return err
	}
	for _, job := range jobs {
		job.Test.RunId = runID
		if err := s.enqueueJob(ctx, tx, runID, job, 1); err != nil {
			return err
		}
	}
	return nil
}

// planJobs expands a plan into jobs: each matrix cell (or one without a
// matrix) times the shards.
func (s *Service) planJobs(b *buildRow) []*eventsv1.Job {
	p := b.plan
	cells := p.Matrix
	if len(cells) == 0 {
		cells = []*eventsv1.MatrixCell{{}}
	}
	shards := max(int(p.Shards), 1)
	timeout := p.Timeout
	if timeout == nil || timeout.AsDuration() <= 0 {
		timeout = durationpb.New(s.cfg.JobTimeout)
	}
	var jobs []*eventsv1.Job
	for _, cell := range cells {
		for shard := range shards {
			env := maps.Clone(p.Environment)
			if env == nil {
				env = map[string]string{}
			}
			maps.Copy(env, cell.Values)
			env["SHIPLOOP_SHARD_INDEX"] = strconv.Itoa(shard)
			env["SHIPLOOP_SHARD_TOTAL"] = strconv.Itoa(shards)
			// The steps name their secrets; no value is set here: the
			// agent asks builds for them when the job starts.
			jobs = append(jobs, &eventsv1.Job{
				JobId: bus.NewID(), BuildId: b.id, Kind: "test", Repository: b.repository,
				CloneUrl: p.CloneUrl, Vcs: p.Vcs, Ref: b.ref, Commit: b.commit, Version: b.version,
				Steps: p.Steps, Environment: env, Timeout: timeout, ChainId: b.chainID,
				QueuedAt: timestamppb.Now(), Matrix: cell.Values, Labels: p.Labels,
				Test: &eventsv1.TestSpec{Reports: p.Reports, Services: p.Services, ShardIndex: int32(shard), ShardTotal: int32(shards)},
			})
		}
	}
	return jobs
}

func (s *Service) createRun(ctx context.Context, tx *bus.Tx, b *buildRow, jobs int) (string, error) {
	id := bus.NewID()
	now := time.Now().UTC()
	retries := 0
	if b.plan != nil {
		retries = int(b.plan.Retries)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO test_runs (id, build_id, repository, ref, commit_sha, version, chain_id, status, jobs_total, retries, started_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		id, b.id, b.repository, b.ref, b.commit, b.version, b.chainID, int32(eventsv1.TestRunStatus_TEST_RUN_STATUS_RUNNING), jobs, retries, now.UnixNano()); err != nil {
		return "", err
	}
	return id, tx.Publish(bus.Event{Type: "testrun.started", Repository: b.repository, Subject: id, ChainID: b.chainID, Data: &eventsv1.TestRunStarted{
		RunId: id, BuildId: b.id, Repository: b.repository, Ref: b.ref, Commit: b.commit, Version: b.version,
		Jobs: int32(jobs), StartedAt: timestamppb.New(now),
	}})
}

func (s *Service) enqueueJob(ctx context.Context, tx *bus.Tx, runID string, job *eventsv1.Job, attempt int) error {
	spec, err := proto.Marshal(job)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO test_jobs (job_id, run_id, attempt, spec) VALUES ($1, $2, $3, $4)`, job.JobId, runID, attempt, spec); err != nil {
		return err
	}
	names := make([]string, len(job.Steps))
	for i, st := range job.Steps {
		names[i] = st.Name
	}
	if err := tx.Publish(bus.Event{Type: "job.queued", Repository: job.Repository, Subject: job.JobId, ChainID: job.ChainId, Data: &eventsv1.JobQueued{
		JobId: job.JobId, BuildId: job.BuildId, Kind: job.Kind, Repository: job.Repository, Steps: names, Matrix: job.Matrix,
	}}); err != nil {
		return err
	}
	return tx.EnqueueFor(job.Kind, job.Labels, bus.Event{Type: "job.requested", Repository: job.Repository, Subject: job.JobId, ChainID: job.ChainId, Data: job})
}

var errUnknownBuild = errors.New("unknown build")
