package builds

// Scheduled pipelines: the default branch's .shiploop.yml declares
// schedules (pipeline.Schedule); handleChange stores them, and the
// scheduler fires each one's slots as changes of forge "cron", which build
// the branch head with the event cron.
//
// A slot fires once: firing inserts (repository, schedule, slot) into
// schedule_runs in the same transaction as the change's outbox row, with ON
// CONFLICT DO NOTHING, and only the transaction whose insert took effect
// publishes. Replicas on one database and a restart at the slot (even after
// SIGKILL: the row and the change commit together or not at all) therefore
// fire it once.
//
// Missed slots (the service was down, or the database unreachable): the
// latest slot after the last one fired is fired once, however late, and the
// earlier ones are dropped; never a backlog. This is Kubernetes CronJob's
// behaviour with concurrencyPolicy Allow and no startingDeadlineSeconds,
// but for at most one slot. Slots before a schedule was added, its cron or
// time zone changed, or it was resumed never fire.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/builds/pipeline"
)

// scheduleTick is how often the scheduler looks for due slots.
const scheduleTick = 10 * time.Second

// storeSchedules replaces the repository's schedules with those of cfg when
// the change is a push (or manual or scheduled build) of the repository's
// default branch whose .shiploop.yml parsed. Other branches' files do not
// declare schedules.
func storeSchedules(ctx context.Context, tx *bus.Tx, ch *eventsv1.Change, cfg *pipeline.Config, now time.Time) error {
	if cfg == nil || ch.Kind != eventsv1.ChangeKind_CHANGE_KIND_PUSH || ch.Branch == "" {
		return nil
	}
	var def string
	if err := tx.QueryRowContext(ctx, `SELECT default_branch FROM repositories WHERE name = $1`, ch.Repository).Scan(&def); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	}
	if ch.Branch != def {
		return nil
	}
	keep := make([]any, 0, len(cfg.Schedules)+1)
	keep = append(keep, ch.Repository)
	marks := make([]string, 0, len(cfg.Schedules))
	for _, sc := range cfg.Schedules {
		opts := ""
		if len(sc.Options) > 0 {
			b, err := json.Marshal(sc.Options)
			if err != nil {
				return err
			}
			opts = string(b)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schedules (repository, name, cron, timezone, branch, since, updated_at, runbook, environment, options)
			VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9)
			ON CONFLICT (repository, name) DO UPDATE SET
				since = CASE WHEN schedules.cron <> excluded.cron OR schedules.timezone <> excluded.timezone THEN excluded.since ELSE schedules.since END,
				cron = excluded.cron, timezone = excluded.timezone, branch = excluded.branch, updated_at = excluded.updated_at,
				runbook = excluded.runbook, environment = excluded.environment, options = excluded.options`,
			ch.Repository, sc.Name, sc.Cron.String(), sc.Timezone, sc.Branch, now.UnixNano(), sc.Runbook, sc.Environment, opts); err != nil {
			return fmt.Errorf("storing schedule %s: %w", sc.Name, err)
		}
		keep = append(keep, sc.Name)
		marks = append(marks, fmt.Sprintf("$%d", len(keep)))
	}
	q := `DELETE FROM schedules WHERE repository = $1`
	if len(marks) > 0 {
		q += ` AND name NOT IN (` + strings.Join(marks, ", ") + `)`
	}
	_, err := tx.ExecContext(ctx, q, keep...)
	return err
}

type scheduleRow struct {
	repository, name, cron, timezone, branch, lastEventID string
	paused                                                bool
	since, lastSlot                                       int64
	// runbook schedules (runbook != ""): what runbook.requested carries.
	runbook, environment string
	options              map[string]string
}

// after is the time after which the schedule's slots have not fired.
func (r scheduleRow) after() time.Time {
	return time.Unix(0, max(r.since, r.lastSlot))
}

func (r scheduleRow) spec() (*pipeline.Cron, *time.Location, error) {
	c, err := pipeline.ParseCron(r.cron)
	if err != nil {
		return nil, nil, err
	}
	loc, err := time.LoadLocation(r.timezone)
	if err != nil {
		return nil, nil, err
	}
	return c, loc, nil
}

const scheduleColumns = `repository, name, cron, timezone, branch, paused, since, last_slot, last_event_id, runbook, environment, options`

func scanSchedule(sc interface{ Scan(...any) error }) (scheduleRow, error) {
	var r scheduleRow
	var paused int
	var opts string
	err := sc.Scan(&r.repository, &r.name, &r.cron, &r.timezone, &r.branch, &paused, &r.since, &r.lastSlot, &r.lastEventID, &r.runbook, &r.environment, &opts)
	r.paused = paused != 0
	if err == nil && opts != "" {
		if jerr := json.Unmarshal([]byte(opts), &r.options); jerr != nil {
			return r, fmt.Errorf("schedule %s of %s: options: %w", r.name, r.repository, jerr)
		}
	}
	return r, err
}

func (s *Service) loadSchedules(ctx context.Context, repo string, activeOnly bool) ([]scheduleRow, error) {
	q := `SELECT ` + scheduleColumns + ` FROM schedules WHERE ($1 = '' OR repository = $1)`
	if activeOnly {
		q += ` AND paused = 0`
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY repository, name`, repo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []scheduleRow
	for rows.Next() {
		r, err := scanSchedule(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// runScheduler fires due slots every scheduleTick until ctx ends; at once
// on start, so a slot missed while down fires without waiting.
func (s *Service) runScheduler(ctx context.Context) error {
	t := time.NewTicker(scheduleTick)
	defer t.Stop()
	for {
		if _, err := s.fireDue(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("scheduler: firing due schedules", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// fireDue fires, for each schedule not paused, its latest slot at or before
// now that has not fired, and returns how many slots this call fired (a
// slot another replica fired first does not count).
func (s *Service) fireDue(ctx context.Context, now time.Time) (int, error) {
	scheds, err := s.loadSchedules(ctx, "", true)
	if err != nil {
		return 0, err
	}
	fired := 0
	var errs []error
	for _, r := range scheds {
		c, loc, err := r.spec()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s schedule %s: %w", r.repository, r.name, err))
			continue
		}
		slot := c.Latest(r.after().In(loc), now.In(loc))
		if slot.IsZero() {
			continue
		}
		ok, err := s.fireSlot(ctx, r, slot, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s schedule %s at %s: %w", r.repository, r.name, slot.UTC().Format(time.RFC3339), err))
			continue
		}
		if ok {
			fired++
		}
	}
	return fired, errors.Join(errs...)
}

// fireSlot publishes the change of one slot (or, for a runbook schedule,
// its runbook.requested), unless it fired already (here or on another
// replica) or the schedule was paused or removed meanwhile.
func (s *Service) fireSlot(ctx context.Context, r scheduleRow, slot, now time.Time) (bool, error) {
	var ev bus.Event
	var commit string
	if r.runbook != "" {
		// deploys runs it from the default branch's newest file; nothing
		// to fetch here.
		ev = bus.NewEvent("runbook.requested", r.repository, r.name, &eventsv1.RunbookRequested{
			Repository: r.repository, Runbook: r.runbook, Environment: r.environment, Options: r.options,
			Schedule: r.name, Slot: timestamppb.New(slot),
		})
	} else {
		repo, err := s.repository(ctx, r.repository)
		if err != nil {
			return false, fmt.Errorf("reading repository: %w", err)
		}
		branch := r.branch
		if branch == "" {
			branch = repo.defaultBranch
		}
		// Slow (a fetch), so outside the transaction; a replica that loses
		// the race below wasted a fetch, nothing more.
		ch, err := s.scheduledChange(ctx, repo, branch)
		if err != nil {
			return false, err
		}
		ch.Schedule = r.name
		ev = bus.NewEvent(changeType(ch.Kind), ch.Repository, ch.After, ch)
		commit = ch.After
	}
	ev.ChainID = ev.ID
	fired := false
	err := s.ob.InTx(ctx, func(tx *bus.Tx) error {
		fired = false
		var paused int
		var since int64
		err := tx.QueryRowContext(ctx, `SELECT paused, since FROM schedules WHERE repository = $1 AND name = $2`, r.repository, r.name).Scan(&paused, &since)
		if errors.Is(err, sql.ErrNoRows) || err == nil && (paused != 0 || since >= slot.UnixNano()) {
			return nil // removed, paused or changed since it was read
		}
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO schedule_runs (repository, schedule, slot, event_id, fired_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (repository, schedule, slot) DO NOTHING`, r.repository, r.name, slot.UnixNano(), ev.ID, now.UnixNano())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // fired already
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schedules SET last_slot = $1, last_event_id = $2 WHERE repository = $3 AND name = $4 AND last_slot < $1`,
			slot.UnixNano(), ev.ID, r.repository, r.name); err != nil {
			return err
		}
		fired = true
		return tx.Publish(ev)
	})
	if err == nil && fired {
		s.log.Info("schedule fired", "repository", r.repository, "schedule", r.name, "slot", slot.UTC().Format(time.RFC3339),
			"commit", commit, "runbook", r.runbook, "event", ev.ID)
	}
	return fired, err
}

// scheduledChange is the change that builds branch's head: TriggerBuild's,
// with forge "cron".
func (s *Service) scheduledChange(ctx context.Context, repo repoRow, branch string) (*eventsv1.Change, error) {
	ch := &eventsv1.Change{
		Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "cron", Repository: repo.name,
		CloneUrl: repo.cloneURL, DefaultBranch: repo.defaultBranch, Ref: "refs/heads/" + branch, Branch: branch,
	}
	vs, err := s.vcsSettings(ctx, repo.name)
	if err != nil {
		return nil, err
	}
	if vs.vcs == VCSHg {
		dir, err := s.mirrors.ensureHg(ctx, repo.name, repo.cloneURL, "")
		if err != nil {
			return nil, fmt.Errorf("pulling: %w", err)
		}
		if ch.After, err = hgNode(ctx, dir, branch); err != nil {
			return nil, fmt.Errorf("branch %s: %w", branch, err)
		}
		return ch, nil
	}
	dir, err := s.mirrors.ensureRef(ctx, repo.name, repo.cloneURL, ch.Ref, "")
	if err != nil {
		return nil, fmt.Errorf("fetching: %w", err)
	}
	if ch.After, err = resolve(ctx, dir, ch.Ref); err != nil {
		return nil, fmt.Errorf("branch %s: %w", branch, err)
	}
	return ch, nil
}

func (r scheduleRow) proto(now time.Time) *buildsv1.Schedule {
	p := &buildsv1.Schedule{
		Repository: r.repository, Name: r.name, Cron: r.cron, Timezone: r.timezone, Branch: r.branch,
		Paused: r.paused, LastEventId: r.lastEventID, Runbook: r.runbook, Environment: r.environment, Options: r.options,
	}
	if r.lastSlot > 0 {
		p.LastRun = timestamppb.New(time.Unix(0, r.lastSlot))
	}
	if c, loc, err := r.spec(); err == nil && !r.paused {
		if next := c.Next(now.In(loc)); !next.IsZero() {
			p.NextRun = timestamppb.New(next)
		}
	}
	return p
}

func (g *grpcServer) ListSchedules(ctx context.Context, req *buildsv1.ListSchedulesRequest) (*buildsv1.ListSchedulesResponse, error) {
	rows, err := g.s.loadSchedules(ctx, req.GetRepository(), false)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading schedules: %v", err)
	}
	now := time.Now()
	resp := &buildsv1.ListSchedulesResponse{Schedules: []*buildsv1.Schedule{}}
	for _, r := range rows {
		resp.Schedules = append(resp.Schedules, r.proto(now))
	}
	return resp, nil
}

func (g *grpcServer) SetSchedulePaused(ctx context.Context, req *buildsv1.SetSchedulePausedRequest) (*buildsv1.SetSchedulePausedResponse, error) {
	if req.GetRepository() == "" {
		return nil, invalid("repository", "required")
	}
	if req.GetName() == "" {
		return nil, invalid("name", "required")
	}
	now := time.Now()
	var row scheduleRow
	err := g.s.db.InTx(ctx, func(tx *sql.Tx) error {
		// Resuming moves since to now: the slots missed while paused do
		// not fire.
		res, err := tx.ExecContext(ctx, `UPDATE schedules SET paused = $1, since = CASE WHEN $1 = 0 AND paused <> 0 THEN $2 ELSE since END
			WHERE repository = $3 AND name = $4`, boolInt(req.GetPaused()), now.UnixNano(), req.GetRepository(), req.GetName())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return sql.ErrNoRows
		}
		row, err = scanSchedule(tx.QueryRowContext(ctx, `SELECT `+scheduleColumns+` FROM schedules WHERE repository = $1 AND name = $2`, req.GetRepository(), req.GetName()))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, status.Errorf(codes.NotFound, "schedule %q of %s not found (the default branch's .shiploop.yml declares schedules; shiploop schedules ls %s)", req.GetName(), req.GetRepository(), req.GetRepository())
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "updating schedule: %v", err)
	}
	return &buildsv1.SetSchedulePausedResponse{Schedule: row.proto(now)}, nil
}
