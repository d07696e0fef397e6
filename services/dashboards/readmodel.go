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

	"github.com/shiploop/shiploop/pkg/gatepolicy"
	"github.com/shiploop/shiploop/services/dashboards/dora"
)

// The read models' views, shared by the pages and the gRPC API.

type stageView struct{ Name, Status, Summary, Link string }

type branchView struct {
	Branch, ChainID, Commit, Message, Author, Version string
	PushedAt                                          time.Time
	Stages                                            []stageView
}

type repoView struct {
	Name     string
	Branches []branchView
}

type stepView struct {
	Name, Status, Error string
	ExitCode            int32
	DurationMS          int64
}

type jobView struct {
	ID, Kind, Status, Agent string
	Matrix                  map[string]string
	Steps                   []stepView
	Log                     []logLineView
	LastLine                uint64
	Live                    bool
}

type logLineView struct {
	Number       uint64
	Step, Stream string
	Text         string
}

type buildView struct {
	ID, Status, Version, FailedStep, Error string
	Number, DurationMS                     int64
	Jobs                                   []jobView
}

type testRunView struct {
	ID, BuildID, Status, Error     string
	Tests, Passed, Failed, Skipped int64
	Covered, Coverable             int64
	Failures                       []failedTestView
}

// failedTestView is one failing test as testrun.finished names it.
type failedTestView struct {
	Suite, Class, Name, Status, Message string
}

func (t testRunView) Coverage() (float64, bool) {
	if t.Coverable == 0 {
		return 0, false
	}
	return 100 * float64(t.Covered) / float64(t.Coverable), true
}

// CoverageText is the line coverage as the pages print it.
func (t testRunView) CoverageText() string {
	c, _ := t.Coverage()
	return gatepolicy.FormatPercent(c)
}

type gateView struct {
	Status, Summary string
	Conditions      []gateCondition
}

type deployView struct {
	ID, Repository, Environment, Release, Status, Kind, TriggeredBy, Reason string
	Approvers                                                               []string
	FinishedAt                                                              time.Time
	RolledBack                                                              bool
	Checks                                                                  []checkView
	// A rollback's: the release it rolled back and why (deploy.rolled_back).
	RolledBackFrom, RollbackCause string
}

// Why is a rollback's "rolled back from 1.1.0: <cause>", as deploy status
// and the deploys API say it; "" for other deploys.
func (d deployView) Why() string {
	if d.Kind != "rollback" {
		return ""
	}
	return rollbackWhy(d.RolledBackFrom, d.RollbackCause)
}

// rollbackWhy words a rollback's origin as deploys.RollbackCause does.
func rollbackWhy(from, cause string) string {
	switch {
	case from == "" && cause == "":
		return "rolled back"
	case from == "":
		return "rolled back: " + cause
	case cause == "":
		return "rolled back from " + from
	}
	return "rolled back from " + from + ": " + cause
}

// checkView is one verification check of a deploy.
type checkView struct {
	Check, Status, Reason string
}

type issueView struct {
	IssueID                                               int64
	Repository, Project, Title, Level, Release, Env, Kind string
	At, ResolvedAt                                        time.Time
}

type pipelineView struct {
	ChainID, Repository, Ref, Branch, Commit, Message, Author string
	PushedAt                                                  time.Time
	Builds                                                    []buildView
	TestRuns                                                  []testRunView
	Gate                                                      *gateView
	Deploys                                                   []deployView
	Issues                                                    []issueView
}

type envView struct {
	Repository, Name, Release, Status, LockedBy, LockReason string
	Since                                                   time.Time
	Approvers                                               []string
	Locked                                                  bool
	FrozenFrom, FrozenUntil                                 time.Time
	FreezeReason                                            string
	// Kind of the deploy that put Release there; for a rollback, ByRollback
	// and Cause ("rolled back from 1.1.0: verification failed: …").
	Kind, Cause, RolledBackFrom string
	ByRollback                  bool
	Monitors                    []monitorView // monitor.state_changed, newest per monitor
	Images                      []imageView   // the current release's build's images (images.go)
}

// monitorView is a monitor of an environment as its last state change says.
type monitorView struct {
	Name, State, Detail string
	Since               time.Time
}

// Class is the status badge class of the monitor's state.
func (m monitorView) Class() string {
	switch m.State {
	case "OK":
		return "success"
	case "CRITICAL":
		return "failure"
	case "WARNING":
		return "pending"
	}
	return "skipped"
}

// Frozen reports whether a freeze window is on now.
func (e envView) Frozen() bool {
	now := time.Now()
	return !e.FrozenUntil.IsZero() && now.Before(e.FrozenUntil) && !now.Before(e.FrozenFrom)
}

// FreezeAhead reports a freeze window that has not started yet.
func (e envView) FreezeAhead() bool {
	return !e.FrozenFrom.IsZero() && time.Now().Before(e.FrozenFrom)
}

var errNotFound = errors.New("not found")

func ts(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func placeholders(n, from int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", from+i)
	}
	return b.String()
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// overview reads every repository's branches with the stages of their
// latest change; a handful of queries whatever the number of builds.
func (s *Service) overview(ctx context.Context, repo string) ([]repoView, error) {
	q := `SELECT b.repository, b.branch, b.chain_id, c.commit_sha, c.message, c.author, c.pushed_at
		FROM dash_branches b JOIN dash_changes c ON c.chain_id = b.chain_id`
	var args []any
	if repo != "" {
		q += ` WHERE b.repository = $1`
		args = append(args, repo)
	}
	q += ` ORDER BY b.repository, b.pushed_at DESC`
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var repos []repoView
	var chains []string
	byChain := map[string]*branchView{}
	type pos struct{ r, b int }
	var order []pos
	for rows.Next() {
		var r string
		var bv branchView
		var pushed int64
		if err := rows.Scan(&r, &bv.Branch, &bv.ChainID, &bv.Commit, &bv.Message, &bv.Author, &pushed); err != nil {
			rows.Close()
			return nil, err
		}
		bv.PushedAt = ts(pushed)
		if len(repos) == 0 || repos[len(repos)-1].Name != r {
			repos = append(repos, repoView{Name: r})
		}
		last := &repos[len(repos)-1]
		last.Branches = append(last.Branches, bv)
		order = append(order, pos{len(repos) - 1, len(last.Branches) - 1})
		chains = append(chains, bv.ChainID)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, p := range order {
		bv := &repos[p.r].Branches[p.b]
		byChain[bv.ChainID] = bv
	}
	type stageSet struct{ build, tests, gate, deploy stageView }
	stages := map[string]*stageSet{}
	for _, c := range chains {
		stages[c] = &stageSet{
			build: stageView{Name: "build"}, tests: stageView{Name: "tests"}, gate: stageView{Name: "gate"}, deploy: stageView{Name: "deploy"},
		}
	}
	buildChain := map[string]string{}
	for chunk := range slices.Chunk(chains, 500) {
		rows, err := s.db.QueryContext(ctx, `SELECT id, chain_id, number, status, version, duration_ms FROM dash_builds
			WHERE chain_id IN (`+placeholders(len(chunk), 1)+`) ORDER BY created_at`, anys(chunk)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id, chain, status, version string
			var number, dur int64
			if err := rows.Scan(&id, &chain, &number, &status, &version, &dur); err != nil {
				rows.Close()
				return nil, err
			}
			st := stages[chain]
			st.build = stageView{Name: "build", Status: status, Summary: buildSummary(number, status, dur), Link: "/changes/" + chain}
			byChain[chain].Version = version
			buildChain[id] = chain
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		rows, err = s.db.QueryContext(ctx, `SELECT chain_id, environment, release, status FROM dash_deploys
			WHERE chain_id IN (`+placeholders(len(chunk), 1)+`) ORDER BY started_at, finished_at`, anys(chunk)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var chain, env, release, status string
			if err := rows.Scan(&chain, &env, &release, &status); err != nil {
				rows.Close()
				return nil, err
			}
			stages[chain].deploy = stageView{Name: "deploy", Status: deployStage(status), Summary: env + " " + release + " " + status, Link: "/changes/" + chain}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	ids := make([]string, 0, len(buildChain))
	for id := range buildChain {
		ids = append(ids, id)
	}
	for chunk := range slices.Chunk(ids, 500) {
		rows, err := s.db.QueryContext(ctx, `SELECT build_id, status, passed, failed, skipped FROM dash_testruns
			WHERE build_id IN (`+placeholders(len(chunk), 1)+`) ORDER BY at`, anys(chunk)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id, status string
			var passed, failed, skipped int64
			if err := rows.Scan(&id, &status, &passed, &failed, &skipped); err != nil {
				rows.Close()
				return nil, err
			}
			chain := buildChain[id]
			stages[chain].tests = stageView{Name: "tests", Status: testStage(status), Summary: fmt.Sprintf("%d passed, %d failed", passed, failed), Link: "/changes/" + chain}
		}
		rows.Close()
		rows, err = s.db.QueryContext(ctx, `SELECT build_id, status, summary FROM dash_gates WHERE build_id IN (`+placeholders(len(chunk), 1)+`)`, anys(chunk)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id, status, summary string
			if err := rows.Scan(&id, &status, &summary); err != nil {
				rows.Close()
				return nil, err
			}
			chain := buildChain[id]
			stages[chain].gate = stageView{Name: "gate", Status: gateStage(status), Summary: summary, Link: "/changes/" + chain}
		}
		rows.Close()
	}
	for chain, bv := range byChain {
		st := stages[chain]
		bv.Stages = []stageView{st.build, st.tests, st.gate, st.deploy}
	}
	return repos, nil
}

func buildSummary(number int64, status string, durMS int64) string {
	if durMS > 0 {
		return fmt.Sprintf("#%d %s in %s", number, status, (time.Duration(durMS) * time.Millisecond).Round(100*time.Millisecond))
	}
	return fmt.Sprintf("#%d %s", number, status)
}

// The stage colors speak one vocabulary: success, failure, running …
func testStage(s string) string {
	switch s {
	case "passed":
		return "success"
	case "failed":
		return "failure"
	}
	return s
}

func gateStage(s string) string { return testStage(s) }

func deployStage(s string) string {
	switch s {
	case "succeeded":
		return "success"
	case "failed", "rolled_back", "interrupted":
		return "failure"
	case "running", "verifying":
		return "running"
	case "canceled":
		return "canceled"
	}
	return "queued"
}

// pipeline reads one change with everything that followed it.
func (s *Service) pipeline(ctx context.Context, chain string) (*pipelineView, error) {
	p := &pipelineView{ChainID: chain}
	var pushed int64
	err := s.db.QueryRowContext(ctx, `SELECT repository, ref, branch, commit_sha, message, author, pushed_at FROM dash_changes WHERE chain_id = $1`, chain).
		Scan(&p.Repository, &p.Ref, &p.Branch, &p.Commit, &p.Message, &p.Author, &pushed)
	if errors.Is(err, sql.ErrNoRows) {
		// A build triggered by hand has no change event: its chain is its own.
		err = s.db.QueryRowContext(ctx, `SELECT repository, ref, commit_sha, created_at FROM dash_builds WHERE chain_id = $1 ORDER BY created_at LIMIT 1`, chain).
			Scan(&p.Repository, &p.Ref, &p.Commit, &pushed)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("change %q: %w", chain, errNotFound)
	}
	if err != nil {
		return nil, err
	}
	p.PushedAt = ts(pushed)
	rows, err := s.db.QueryContext(ctx, `SELECT id, number, status, version, failed_step, error, duration_ms FROM dash_builds WHERE chain_id = $1 ORDER BY created_at`, chain)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var b buildView
		if err := rows.Scan(&b.ID, &b.Number, &b.Status, &b.Version, &b.FailedStep, &b.Error, &b.DurationMS); err != nil {
			rows.Close()
			return nil, err
		}
		p.Builds = append(p.Builds, b)
	}
	rows.Close()
	for i := range p.Builds {
		b := &p.Builds[i]
		if b.Jobs, err = s.jobs(ctx, b.ID); err != nil {
			return nil, err
		}
		rows, err := s.db.QueryContext(ctx, `SELECT run_id, status, tests, passed, failed, skipped, covered, coverable, error, failures FROM dash_testruns WHERE build_id = $1 ORDER BY at`, b.ID)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			t := testRunView{BuildID: b.ID}
			var failures string
			if err := rows.Scan(&t.ID, &t.Status, &t.Tests, &t.Passed, &t.Failed, &t.Skipped, &t.Covered, &t.Coverable, &t.Error, &failures); err != nil {
				rows.Close()
				return nil, err
			}
			_ = json.Unmarshal([]byte(failures), &t.Failures)
			p.TestRuns = append(p.TestRuns, t)
		}
		rows.Close()
		var g gateView
		var conds string
		err = s.db.QueryRowContext(ctx, `SELECT status, summary, conditions FROM dash_gates WHERE build_id = $1`, b.ID).Scan(&g.Status, &g.Summary, &conds)
		if err == nil {
			_ = json.Unmarshal([]byte(conds), &g.Conditions)
			p.Gate = &g
		} else if !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
	}
	if p.Deploys, err = s.deploys(ctx, `WHERE chain_id = $1 ORDER BY started_at, finished_at`, chain); err != nil {
		return nil, err
	}
	releases := map[string]bool{}
	for _, b := range p.Builds {
		if b.Version != "" {
			releases[b.Version] = true
		}
	}
	if len(releases) > 0 {
		rels := make([]string, 0, len(releases))
		for r := range releases {
			rels = append(rels, r)
		}
		p.Issues, err = s.issues(ctx, `WHERE repository = $1 AND release IN (`+placeholders(len(rels), 2)+`) ORDER BY at DESC`, append([]any{p.Repository}, anys(rels)...)...)
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (s *Service) jobs(ctx context.Context, buildID string) ([]jobView, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, kind, status, agent, matrix, steps FROM dash_jobs WHERE build_id = $1 ORDER BY queued_at, id`, buildID)
	if err != nil {
		return nil, err
	}
	var jobs []jobView
	var planned [][]string
	for rows.Next() {
		var j jobView
		var matrix, steps string
		if err := rows.Scan(&j.ID, &j.Kind, &j.Status, &j.Agent, &matrix, &steps); err != nil {
			rows.Close()
			return nil, err
		}
		_ = json.Unmarshal([]byte(matrix), &j.Matrix)
		var names []string
		_ = json.Unmarshal([]byte(steps), &names)
		planned = append(planned, names)
		jobs = append(jobs, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range jobs {
		j := &jobs[i]
		j.Live = j.Status == "queued" || j.Status == "running"
		rows, err := s.db.QueryContext(ctx, `SELECT name, status, exit_code, duration_ms, error FROM dash_steps WHERE job_id = $1`, j.ID)
		if err != nil {
			return nil, err
		}
		done := map[string]stepView{}
		for rows.Next() {
			var st stepView
			if err := rows.Scan(&st.Name, &st.Status, &st.ExitCode, &st.DurationMS, &st.Error); err != nil {
				rows.Close()
				return nil, err
			}
			done[st.Name] = st
		}
		rows.Close()
		// Planned order first, with the steps not finished yet as pending.
		for _, name := range planned[i] {
			st, ok := done[name]
			if !ok {
				st = stepView{Name: name, Status: "pending"}
			}
			delete(done, name)
			j.Steps = append(j.Steps, st)
		}
		for _, st := range done {
			j.Steps = append(j.Steps, st)
		}
	}
	return jobs, nil
}

func (s *Service) deploys(ctx context.Context, where string, args ...any) ([]deployView, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, repository, environment, release, status, kind, triggered_by, reason, approvers, finished_at, rolled_back, checks,
		rolled_back_from, rollback_cause FROM dash_deploys `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []deployView
	for rows.Next() {
		var d deployView
		var approvers string
		var fin int64
		var rb int
		var checks string
		if err := rows.Scan(&d.ID, &d.Repository, &d.Environment, &d.Release, &d.Status, &d.Kind, &d.TriggeredBy, &d.Reason, &approvers, &fin, &rb, &checks,
			&d.RolledBackFrom, &d.RollbackCause); err != nil {
			return nil, err
		}
		_ = json.Unmarshal([]byte(checks), &d.Checks)
		d.Approvers, d.FinishedAt, d.RolledBack = splitList(approvers), ts(fin), rb != 0
		out = append(out, d)
	}
	return out, rows.Err()
}

func (s *Service) issues(ctx context.Context, where string, args ...any) ([]issueView, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT issue_id, repository, project, title, level, release, environment, status, at, resolved_at FROM dash_issues `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []issueView
	for rows.Next() {
		var is issueView
		var at, res int64
		if err := rows.Scan(&is.IssueID, &is.Repository, &is.Project, &is.Title, &is.Level, &is.Release, &is.Env, &is.Kind, &at, &res); err != nil {
			return nil, err
		}
		is.At, is.ResolvedAt = ts(at), ts(res)
		out = append(out, is)
	}
	return out, rows.Err()
}

func (s *Service) environments(ctx context.Context, repo string) ([]envView, error) {
	q := `SELECT e.repository, e.name, e.release, e.status, e.since, e.locked, e.locked_by, e.lock_reason, COALESCE(d.approvers, ''),
		e.frozen_from, e.frozen_until, e.freeze_reason, COALESCE(d.kind, ''), COALESCE(d.rolled_back_from, ''), COALESCE(d.rollback_cause, '')
		FROM dash_environments e LEFT JOIN dash_deploys d ON d.id = e.deploy_id`
	var args []any
	if repo != "" {
		q += ` WHERE e.repository = $1`
		args = append(args, repo)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY e.repository, e.name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []envView
	for rows.Next() {
		var e envView
		var since int64
		var locked int
		var approvers string
		var frozenFrom, frozenUntil int64
		var cause string
		if err := rows.Scan(&e.Repository, &e.Name, &e.Release, &e.Status, &since, &locked, &e.LockedBy, &e.LockReason, &approvers,
			&frozenFrom, &frozenUntil, &e.FreezeReason, &e.Kind, &e.RolledBackFrom, &cause); err != nil {
			return nil, err
		}
		if e.Kind == "rollback" {
			e.ByRollback, e.Cause = true, rollbackWhy(e.RolledBackFrom, cause)
		}
		e.Since, e.Locked, e.Approvers = ts(since), locked != 0, splitList(approvers)
		if frozenUntil > 0 {
			e.FrozenFrom, e.FrozenUntil = ts(frozenFrom), ts(frozenUntil)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	if err := s.envImages(ctx, out); err != nil {
		return nil, err
	}
	return out, s.envMonitors(ctx, out)
}

// envMonitors attaches the monitors of each environment.
func (s *Service) envMonitors(ctx context.Context, envs []envView) error {
	if len(envs) == 0 {
		return nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT repository, environment, name, state, since, detail FROM dash_monitors ORDER BY name`)
	if err != nil {
		return err
	}
	defer rows.Close()
	at := map[[2]string]int{}
	for i, e := range envs {
		at[[2]string{e.Repository, e.Name}] = i
	}
	for rows.Next() {
		var repo, env string
		var m monitorView
		var since int64
		if err := rows.Scan(&repo, &env, &m.Name, &m.State, &since, &m.Detail); err != nil {
			return err
		}
		if i, ok := at[[2]string{repo, env}]; ok {
			m.Since = ts(since)
			envs[i].Monitors = append(envs[i].Monitors, m)
		}
	}
	return rows.Err()
}

func (s *Service) repositories(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT repository FROM dash_changes UNION SELECT DISTINCT repository FROM dash_builds
		UNION SELECT DISTINCT repository FROM dash_deploys ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// doraInput loads the DORA model of the production environment: every
// finished deploy of the repository (all when ""), the first push time of
// the commits each brought since the previous one, and the error issues.
func (s *Service) doraInput(ctx context.Context, repo string, from, to time.Time) (dora.Input, error) {
	in := dora.Input{From: from, To: to}
	env := s.cfg.ProductionEnvironment
	where := `WHERE environment = $1 AND finished_at > 0`
	args := []any{env}
	if repo != "" {
		where += ` AND repository = $2`
		args = append(args, repo)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, repository, release, commit_sha, kind, status, rolled_back, finished_at FROM dash_deploys `+where+` ORDER BY finished_at`, args...)
	if err != nil {
		return in, err
	}
	type row struct {
		d      dora.Deploy
		commit string
	}
	var ds []row
	for rows.Next() {
		var r row
		var kind, status string
		var rb int
		var fin int64
		if err := rows.Scan(&r.d.ID, &r.d.Repository, &r.d.Release, &r.commit, &kind, &status, &rb, &fin); err != nil {
			rows.Close()
			return in, err
		}
		r.d.FinishedAt = ts(fin)
		r.d.Succeeded = status == "succeeded" || status == "rolled_back"
		r.d.Rollback = kind == "rollback"
		r.d.RolledBack = rb != 0 || status == "rolled_back"
		ds = append(ds, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return in, err
	}
	// The commits of a deploy: pushed after the previous successful deploy's
	// commit was, up to its own commit's push (a linear history's range).
	prevPush := map[string]int64{}
	for _, r := range ds {
		if r.d.Rollback || !r.d.Succeeded || r.commit == "" {
			in.Deploys = append(in.Deploys, r.d)
			continue
		}
		var own int64
		err := s.db.QueryRowContext(ctx, `SELECT pushed_at FROM dash_commits WHERE repository = $1 AND sha = $2`, r.d.Repository, r.commit).Scan(&own)
		if err == nil {
			crow, err := s.db.QueryContext(ctx, `SELECT pushed_at FROM dash_commits WHERE repository = $1 AND pushed_at > $2 AND pushed_at <= $3`,
				r.d.Repository, prevPush[r.d.Repository], own)
			if err != nil {
				return in, err
			}
			for crow.Next() {
				var p int64
				if err := crow.Scan(&p); err != nil {
					crow.Close()
					return in, err
				}
				r.d.CommitTimes = append(r.d.CommitTimes, ts(p))
			}
			crow.Close()
			prevPush[r.d.Repository] = own
		} else if !errors.Is(err, sql.ErrNoRows) {
			return in, err
		}
		in.Deploys = append(in.Deploys, r.d)
	}
	iw := `WHERE status IN ('opened', 'regressed') AND environment = $1`
	if repo != "" {
		iw += ` AND repository = $2`
	}
	issues, err := s.issues(ctx, iw, args...)
	if err != nil {
		return in, err
	}
	for _, is := range issues {
		in.Issues = append(in.Issues, dora.Issue{Repository: is.Repository, Release: is.Release, At: is.At, ResolvedAt: is.ResolvedAt})
	}
	return in, nil
}
