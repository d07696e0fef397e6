package deploys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/shiploop/shiploop/pkg/bus"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// handle is the one consumer's handler: it records what deploys needs to
// know and moves deployments on.
func (s *Service) handle(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	// A build's build.created, build.finished and gate.evaluated may come
	// in any order (see early) and, with replicas, at once: each takes the
	// build's lock first, so the later one sees what the earlier committed.
	if id := joinedBuild(ev.Data); id != "" {
		if err := tx.Lock("build/" + id); err != nil {
			return err
		}
	}
	switch d := ev.Data.(type) {
	case *eventsv1.Change:
		return s.onChange(ctx, tx, d)
	case *eventsv1.BuildCreated:
		chain := ev.ChainID
		if chain == "" {
			chain = ev.ID
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO builds (id, repository, number, ref, commit_sha, version, trigger, config, chain_id, created_at, vcs, clone_url)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING`,
			d.BuildId, d.Repository, d.Number, d.Ref, d.Commit, d.Version, d.Trigger, d.Config, chain, s.now().UnixNano(), d.Vcs, d.CloneUrl); err != nil {
			return err
		}
		return s.applyEarly(ctx, tx, d.BuildId)
	case *eventsv1.BuildFinished:
		return s.onBuildFinished(ctx, tx, d)
	case *eventsv1.GateEvaluated:
		return s.onGate(ctx, tx, d)
	case *eventsv1.JobStarted:
		return s.onJobStarted(ctx, tx, d)
	case *eventsv1.JobFinished:
		return s.onJobFinished(ctx, tx, d)
	case *eventsv1.RunbookRequested:
		return s.onRunbookRequested(ctx, tx, d)
	case *errortrackv1.IssueOpened:
		return s.signal(ctx, tx, ev, "opened", d.GetIssue(), d.GetRelease(), d.GetEnvironment(), d.GetSuspectCommits())
	case *errortrackv1.IssueRegressed:
		return s.signal(ctx, tx, ev, "regressed", d.GetIssue(), d.GetRelease(), d.GetEnvironment(), d.GetSuspectCommits())
	case *errortrackv1.ReleaseCounted:
		_, err := tx.ExecContext(ctx, `INSERT INTO error_counts (event_id, repository, release, environment, errors, traffic, first_received, last_received) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING`,
			ev.ID, ev.Repository, d.GetRelease(), d.GetEnvironment(), d.GetErrors(), d.GetErrors()+d.GetTransactions()+d.GetSessions(),
			d.GetFirstReceived().AsTime().UnixNano(), d.GetLastReceived().AsTime().UnixNano())
		return err
	}
	return nil
}

// joinedBuild is the build an event joins on (see handle), or "".
func joinedBuild(data any) string {
	switch d := data.(type) {
	case *eventsv1.BuildCreated:
		return d.BuildId
	case *eventsv1.BuildFinished:
		return d.BuildId
	case *eventsv1.GateEvaluated:
		return d.BuildId
	}
	return ""
}

func (s *Service) signal(ctx context.Context, tx *bus.Tx, ev bus.Event, kind string, is *errortrackv1.IssueRef, release, env string, suspects []*errortrackv1.SuspectCommit) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO signals (event_id, repository, release, environment, kind, issue_id, title, at, suspects) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id) DO NOTHING`,
		ev.ID, ev.Repository, release, env, kind, is.GetIssueId(), is.GetTitle(), s.now().UnixNano(), encodeSuspects(suspects))
	return err
}

// suspect is a suspect commit as signals keep it (suspects column).
type suspect struct {
	SHA     string `json:"sha"`
	Author  string `json:"author,omitempty"`
	Message string `json:"message,omitempty"`
}

// maxSuspects is how many suspect commits a signal keeps and a
// verification reason names.
const maxSuspects = 3

// encodeSuspects keeps the first maxSuspects suspect commits (errortrack
// sends them best match first) as JSON, the message's first line only;
// "" for none.
func encodeSuspects(cs []*errortrackv1.SuspectCommit) string {
	var out []suspect
	for _, c := range cs {
		if c.GetSha() == "" {
			continue
		}
		msg, _, _ := strings.Cut(strings.TrimSpace(c.GetMessage()), "\n")
		out = append(out, suspect{SHA: c.GetSha(), Author: c.GetAuthor(), Message: strings.TrimSpace(msg)})
		if len(out) == maxSuspects {
			break
		}
	}
	if len(out) == 0 {
		return ""
	}
	b, err := json.Marshal(out)
	if err != nil {
		return ""
	}
	return string(b)
}

// decodeSuspects reads a suspects column ("" or unreadable: none).
func decodeSuspects(s string) []suspect {
	if s == "" {
		return nil
	}
	var out []suspect
	_ = json.Unmarshal([]byte(s), &out)
	return out
}

// String is the commit as a reason names it: short sha, author's name,
// first line of the message.
func (c suspect) String() string {
	sha := c.SHA
	if len(sha) > 7 {
		sha = sha[:7]
	}
	out := sha
	if name, _, _ := strings.Cut(c.Author, " <"); strings.TrimSpace(name) != "" {
		out += " (" + strings.TrimSpace(name) + ")"
	}
	if c.Message != "" {
		out += " " + c.Message
	}
	return out
}

func (s *Service) onChange(ctx context.Context, tx *bus.Tx, ch *eventsv1.Change) error {
	if ch.Repository == "" {
		return nil
	}
	if ch.CloneUrl != "" {
		branch := ch.DefaultBranch
		if branch == "" {
			branch = "main"
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO repositories (name, clone_url, default_branch) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET clone_url = excluded.clone_url, default_branch = excluded.default_branch`,
			ch.Repository, ch.CloneUrl, branch); err != nil {
			return err
		}
	}
	for _, c := range ch.Commits {
		if c.Sha == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO commits (repository, sha, message) VALUES ($1, $2, $3) ON CONFLICT (repository, sha) DO NOTHING`,
			ch.Repository, c.Sha, c.Message); err != nil {
			return err
		}
	}
	switch ch.Kind {
	case eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_OPENED, eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_UPDATED:
		_, err := tx.ExecContext(ctx, `INSERT INTO pull_requests (repository, number, head_sha, title, open) VALUES ($1, $2, $3, $4, 1)
			ON CONFLICT (repository, number) DO UPDATE SET head_sha = excluded.head_sha, title = excluded.title, open = 1`,
			ch.Repository, ch.PullRequestNumber, ch.After, ch.PullRequestTitle)
		return err
	case eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_CLOSED, eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_MERGED:
		if _, err := tx.ExecContext(ctx, `UPDATE pull_requests SET open = 0 WHERE repository = $1 AND number = $2`, ch.Repository, ch.PullRequestNumber); err != nil {
			return err
		}
		return s.teardownPreview(ctx, tx, ch.Repository, ch.PullRequestNumber, ch.Sender)
	}
	return nil
}

// buildInfo is a build as deploys knows it.
type buildInfo struct {
	id, repository, ref, commit, version, trigger, artifacts, chainID, vcs, cloneURL string
	number                                                                           int64
	status                                                                           int32
	config                                                                           []byte
}

// jobCloneURL is where a job of b fetches it from: build.created's clone
// URL, or the repository's for builds recorded before it was kept.
func (b *buildInfo) jobCloneURL(ctx context.Context, tx *bus.Tx) (string, error) {
	if b.cloneURL != "" {
		return b.cloneURL, nil
	}
	var u string
	if err := tx.QueryRowContext(ctx, `SELECT clone_url FROM repositories WHERE name = $1`, b.repository).Scan(&u); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", err
	}
	return u, nil
}

func loadBuildInfo(ctx context.Context, tx *bus.Tx, where string, args ...any) (*buildInfo, error) {
	b := &buildInfo{}
	err := tx.QueryRowContext(ctx, `SELECT id, repository, number, ref, commit_sha, version, trigger, config, status, artifacts, chain_id, vcs, clone_url FROM builds WHERE `+where, args...).
		Scan(&b.id, &b.repository, &b.number, &b.ref, &b.commit, &b.version, &b.trigger, &b.config, &b.status, &b.artifacts, &b.chainID, &b.vcs, &b.cloneURL)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (b *buildInfo) parse() (*Pipeline, error) {
	if len(b.config) == 0 {
		return &Pipeline{}, nil
	}
	return ParseConfig(".shiploop.yml", b.config)
}

func (s *Service) defaultBranch(ctx context.Context, tx *bus.Tx, repo string) (string, error) {
	var branch string
	err := tx.QueryRowContext(ctx, `SELECT default_branch FROM repositories WHERE name = $1`, repo).Scan(&branch)
	if errors.Is(err, sql.ErrNoRows) {
		return "main", nil
	}
	return branch, err
}

func (s *Service) onBuildFinished(ctx context.Context, tx *bus.Tx, d *eventsv1.BuildFinished) error {
	res, err := tx.ExecContext(ctx, `UPDATE builds SET status = $1, finished_at = $2 WHERE id = $3`, int32(d.Status), s.now().UnixNano(), d.BuildId)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		// build.created has not come yet (see early).
		return s.early(ctx, tx, d.BuildId, "build.finished", int32(d.Status))
	}
	if d.Status != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		return nil
	}
	b, err := loadBuildInfo(ctx, tx, `id = $1`, d.BuildId)
	if err != nil {
		return err
	}
	cfg, err := b.parse()
	if err != nil {
		s.log.Warn("build's .shiploop.yml has no usable environments", "build", b.id, "err", err)
		return nil
	}
	if b.trigger == "pull_request" {
		return s.deployPreview(ctx, tx, b, cfg)
	}
	if cfg.HasGate {
		return nil // gate.evaluated decides
	}
	return s.firstEnvironment(ctx, tx, b, cfg)
}

// early keeps an event about a build whose build.created deploys has not
// seen: a redelivery after a crash can bring build.finished or
// gate.evaluated first, and acking them without a trace lost the deploy.
// applyEarly acts on them when build.created comes.
func (s *Service) early(ctx context.Context, tx *bus.Tx, buildID, typ string, status int32) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO early_events (build_id, type, status, at) VALUES ($1, $2, $3, $4) ON CONFLICT (build_id, type) DO NOTHING`,
		buildID, typ, status, s.now().UnixNano())
	return err
}

// applyEarly handles, in their causal order, the events about buildID that
// came before its build.created, and forgets them.
func (s *Service) applyEarly(ctx context.Context, tx *bus.Tx, buildID string) error {
	rows, err := tx.QueryContext(ctx, `SELECT type, status FROM early_events WHERE build_id = $1`, buildID)
	if err != nil {
		return err
	}
	got := map[string]int32{}
	for rows.Next() {
		var typ string
		var st int32
		if err := rows.Scan(&typ, &st); err != nil {
			rows.Close()
			return err
		}
		got[typ] = st
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	if len(got) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM early_events WHERE build_id = $1`, buildID); err != nil {
		return err
	}
	if st, ok := got["build.finished"]; ok {
		if err := s.onBuildFinished(ctx, tx, &eventsv1.BuildFinished{BuildId: buildID, Status: eventsv1.BuildStatus(st)}); err != nil {
			return err
		}
	}
	if st, ok := got["gate.evaluated"]; ok {
		return s.onGate(ctx, tx, &eventsv1.GateEvaluated{BuildId: buildID, Status: eventsv1.GateStatus(st)})
	}
	return nil
}

func (s *Service) onGate(ctx context.Context, tx *bus.Tx, g *eventsv1.GateEvaluated) error {
	if g.Status != eventsv1.GateStatus_GATE_STATUS_PASSED {
		return nil
	}
	b, err := loadBuildInfo(ctx, tx, `id = $1`, g.BuildId)
	if errors.Is(err, sql.ErrNoRows) {
		// build.created has not come yet (see early); dropping the gate
		// here lost the deploy (TestCrashSplitModeThroughDeploy).
		return s.early(ctx, tx, g.BuildId, "gate.evaluated", int32(g.Status))
	}
	if err != nil {
		return err
	}
	if b.trigger == "pull_request" {
		return nil // previews follow the build
	}
	cfg, err := b.parse()
	if err != nil {
		s.log.Warn("build's .shiploop.yml has no usable environments", "build", b.id, "err", err)
		return nil
	}
	return s.firstEnvironment(ctx, tx, b, cfg)
}

// firstEnvironment offers a good build of the default branch to the first
// environment of its promotion path.
func (s *Service) firstEnvironment(ctx context.Context, tx *bus.Tx, b *buildInfo, cfg *Pipeline) error {
	if len(cfg.Environments) == 0 || !cfg.Environments[0].Auto && cfg.Environments[0].Approvals == 0 {
		return nil // promoted by hand
	}
	branch, err := s.defaultBranch(ctx, tx, b.repository)
	if err != nil {
		return err
	}
	if b.ref != "refs/heads/"+branch {
		return nil
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM deployments WHERE build_id = $1 AND environment = $2 AND kind = 'deploy'`, b.id, cfg.Environments[0].Name).Scan(&n); err != nil || n > 0 {
		return err // a gate evaluated twice does not deploy twice
	}
	_, err = s.offer(ctx, tx, b, cfg, &cfg.Environments[0], offer{kind: "deploy", by: "auto", automatic: true})
	return err
}

func (s *Service) onJobStarted(ctx context.Context, tx *bus.Tx, j *eventsv1.JobStarted) error {
	d, err := loadDeployment(ctx, tx, `job_id = $1`, j.JobId)
	if errors.Is(err, sql.ErrNoRows) {
		return s.onRunJobStarted(ctx, tx, j) // a runbook's job, or not a deploy job
	}
	if err != nil {
		return err
	}
	if d.status != eventsv1.DeployStatus_DEPLOY_STATUS_RUNNING {
		// The job already ran: this is a second delivery of it (a job
		// message published again after the bus's duplicate window, say).
		// Its steps must not deploy again.
		return tx.CancelJob(j.JobId, fmt.Sprintf("deploy %s of %s to %s already ran (%s): a second delivery of its job is not run",
			d.id, d.version, d.environment, strings.ToLower(statusName(d.status))))
	}
	if j.Attempt > 1 {
		// The agent that ran it stopped mid-way. Steps that are not
		// idempotent could apply twice, so unless the environment says
		// on_interrupt: rerun, this attempt stops and a person decides.
		// A file that no longer parses, or a build not known, stops it.
		_, _, env, err := s.definition(ctx, tx, d)
		if ce := (*ConfigError)(nil); err != nil && !errors.As(err, &ce) && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if env != nil && env.RerunInterrupted {
			reason := fmt.Sprintf("running again on agent %s (attempt %d): the first agent stopped mid-deploy (on_interrupt: rerun)", j.Agent, j.Attempt)
			s.log.Info("deploy interrupted: running its steps again", "deploy", d.id, "environment", d.environment, "release", d.version, "agent", j.Agent, "attempt", j.Attempt)
			_, err := tx.ExecContext(ctx, `UPDATE deployments SET reason = $1 WHERE id = $2`, reason, d.id)
			return err
		}
		if err := tx.CancelJob(j.JobId, "deploy interrupted: not re-run automatically"); err != nil {
			return err
		}
		return s.finish(ctx, tx, d, eventsv1.DeployStatus_DEPLOY_STATUS_INTERRUPTED,
			fmt.Sprintf("agent %s got the job again (attempt %d): the first agent stopped mid-deploy; check the environment and redeploy (on_interrupt: rerun in .shiploop.yml runs idempotent steps again on their own)", j.Agent, j.Attempt))
	}
	return nil
}

func (s *Service) onJobFinished(ctx context.Context, tx *bus.Tx, j *eventsv1.JobFinished) error {
	if err := recordImages(ctx, tx, j); err != nil {
		return err
	}
	if len(j.Artifacts) > 0 {
		var names []string
		for _, a := range j.Artifacts {
			names = append(names, a.Name)
		}
		data, _ := json.Marshal(names)
		if _, err := tx.ExecContext(ctx, `UPDATE builds SET artifacts = $1 WHERE id = $2 AND artifacts = ''`, string(data), j.BuildId); err != nil {
			return err
		}
	}
	d, err := loadDeployment(ctx, tx, `job_id = $1`, j.JobId)
	if errors.Is(err, sql.ErrNoRows) {
		return s.onRunJobFinished(ctx, tx, j) // a runbook's job, or not a deploy job
	}
	if err != nil || d.status != eventsv1.DeployStatus_DEPLOY_STATUS_RUNNING {
		return err
	}
	if j.Status != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		return s.stepFailed(ctx, tx, d, jobFailure(j))
	}
	return s.deployed(ctx, tx, d)
}

// jobFailure says in one phrase why a deploy job failed: "step deploy
// failed: exit code 3" from the failed step's result. The agent's job
// error already reads "step deploy failed", so it is not repeated.
func jobFailure(j *eventsv1.JobFinished) string {
	errText := strings.TrimSpace(j.Error)
	if j.FailedStep == "" {
		if errText != "" {
			return errText
		}
		return "deploy job ended " + strings.ToLower(strings.TrimPrefix(j.Status.String(), "BUILD_STATUS_"))
	}
	head := fmt.Sprintf("step %s failed", j.FailedStep)
	var detail string
	for _, st := range j.Steps {
		if st.GetName() != j.FailedStep {
			continue
		}
		detail = strings.TrimSpace(st.GetError())
		if detail == "" && st.GetExitCode() > 0 {
			detail = fmt.Sprintf("exit code %d", st.GetExitCode())
		}
	}
	if detail == "" && errText != head {
		detail = strings.TrimSpace(strings.TrimPrefix(errText, head+":"))
	}
	if detail == "" {
		return head
	}
	return head + ": " + detail
}
