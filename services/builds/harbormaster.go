package builds

// Phabricator/Phorge Harbormaster: a "Make HTTP Request" build step calls
// /hooks/harbormaster, the change it names is built like any other, and the
// result goes back to the build target through Conduit
// harbormaster.sendmessage (pkg/conduit).

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/conduit"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// ForgeHarbormaster is the Change.Forge of changes Harbormaster asked for.
const ForgeHarbormaster = "harbormaster"

// harbormasterConsumer reports build results to Harbormaster.
const harbormasterConsumer = "builds-harbormaster"

// conduitTimeout bounds one harbormaster.sendmessage call.
const conduitTimeout = 10 * time.Second

// hmRequest is what a "Make HTTP Request" step sent.
type hmRequest struct {
	Repo       string // shiploop's name for the repository ("repo" parameter)
	Token      string
	TargetPHID string
	DiffID     int64
	RevisionID int64
	Commit     string
	URI        string
	VCS        string
	Callsign   string
}

// hmField is a request error naming the variable at fault.
type hmField struct{ field, msg string }

func (e *hmField) Error() string { return e.field + ": " + e.msg }

var (
	phidRe   = regexp.MustCompile(`^PHID-[A-Z]{4}-[A-Za-z0-9]{1,64}$`)
	hexRe    = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)
	revRe    = regexp.MustCompile(`^D?([1-9][0-9]{0,17})$`)
	numberRe = regexp.MustCompile(`^[1-9][0-9]{0,17}$`)
)

// parseHarbormaster reads the variables of a Harbormaster request from the
// query and the form (a template like
// /hooks/harbormaster?repo=acme/web&target.phid=${target.phid}&buildable.diff=${buildable.diff}&buildable.commit=${buildable.commit}).
// The token comes from HTTP basic auth (a Passphrase credential on the
// step), a "token" variable, or "Authorization: Bearer".
func parseHarbormaster(r *http.Request) (hmRequest, error) {
	var q hmRequest
	if err := r.ParseForm(); err != nil {
		return q, &hmField{"body", "not a form: " + err.Error()}
	}
	get := func(k string) string { return strings.TrimSpace(r.Form.Get(k)) }
	q.Repo, q.Token, q.TargetPHID = get("repo"), get("token"), get("target.phid")
	if _, pw, ok := r.BasicAuth(); ok && q.Token == "" {
		q.Token = pw
	}
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && q.Token == "" {
		q.Token = strings.TrimSpace(b)
	}
	q.Commit, q.URI, q.VCS, q.Callsign = strings.ToLower(get("buildable.commit")), get("repository.uri"), strings.ToLower(get("repository.vcs")), get("repository.callsign")
	if d := get("buildable.diff"); d != "" {
		if !numberRe.MatchString(d) {
			return q, &hmField{"buildable.diff", fmt.Sprintf("%q is not a diff id", d)}
		}
		q.DiffID, _ = strconv.ParseInt(d, 10, 64)
	}
	if rv := get("buildable.revision"); rv != "" {
		m := revRe.FindStringSubmatch(rv)
		if m == nil {
			return q, &hmField{"buildable.revision", fmt.Sprintf("%q is not a revision id", rv)}
		}
		q.RevisionID, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return q, nil
}

// check validates the variables once the caller is known to be allowed.
func (q hmRequest) check() error {
	switch {
	case q.TargetPHID == "":
		return &hmField{"target.phid", "required: add target.phid=${target.phid} to the step's URI (results are reported to that build target)"}
	case !phidRe.MatchString(q.TargetPHID):
		return &hmField{"target.phid", fmt.Sprintf("%q is not a PHID", q.TargetPHID)}
	case q.DiffID == 0 && q.Commit == "":
		return &hmField{"buildable.diff", "one of buildable.diff or buildable.commit is required"}
	case q.Commit != "" && !hexRe.MatchString(q.Commit):
		return &hmField{"buildable.commit", fmt.Sprintf("%q is not a full commit hash", q.Commit)}
	case q.VCS != "" && q.VCS != "git" && q.VCS != "hg":
		return &hmField{"repository.vcs", fmt.Sprintf("%q: shiploop builds git and hg repositories", q.VCS)}
	}
	return nil
}

// stagingRef is where arc diff leaves a diff in the staging area.
func stagingRef(diff int64) string { return fmt.Sprintf("phabricator/diff/%d", diff) }

// hmRepo finds the registered repository a request is for: the "repo"
// variable, else the callsign, else the clone URL.
func (s *Service) hmRepo(ctx context.Context, q hmRequest) (repoRow, vcsSettings, error) {
	name := q.Repo
	if name == "" && (q.Callsign != "" || q.URI != "") {
		err := s.db.QueryRowContext(ctx, `SELECT name FROM repositories WHERE (callsign <> '' AND callsign = $1) OR (clone_url <> '' AND clone_url = $2) ORDER BY name LIMIT 1`,
			q.Callsign, q.URI).Scan(&name)
		if errors.Is(err, sql.ErrNoRows) {
			return repoRow{}, vcsSettings{}, errNotFound
		}
		if err != nil {
			return repoRow{}, vcsSettings{}, err
		}
	}
	if name == "" {
		return repoRow{}, vcsSettings{}, errNotFound
	}
	repo, err := s.repository(ctx, name)
	if err != nil {
		return repo, vcsSettings{}, err
	}
	vs, err := s.vcsSettings(ctx, name)
	return repo, vs, err
}

func (s *Service) serveHarbormaster(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	q, err := parseHarbormaster(r)
	if q.Token == "" {
		// Nothing is looked at, let alone started, without a token.
		w.Header().Set("WWW-Authenticate", `Basic realm="shiploop harbormaster"`)
		writeJSON(w, http.StatusUnauthorized, hookReply{Error: "no token: give the repository's webhook secret as the password of the step's credential, or as token=… in its URI"})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, hookReply{Error: err.Error()})
		return
	}
	repo, vs, err := s.hmRepo(r.Context(), q)
	if errors.Is(err, errNotFound) {
		writeJSON(w, http.StatusNotFound, hookReply{Error: fmt.Sprintf("no registered repository for repo=%q callsign=%q uri=%q: add repo=<name> to the step's URI, or register it with `shiploop repo add NAME --clone-url URL`", q.Repo, q.Callsign, q.URI)})
		return
	}
	if err != nil {
		s.log.Error("looking up repository", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, hookReply{Error: "storage unavailable, retry later"})
		return
	}
	if subtle.ConstantTimeCompare([]byte(q.Token), []byte(repo.secret)) != 1 {
		writeJSON(w, http.StatusUnauthorized, hookReply{Error: "token does not match the repository's webhook secret"})
		return
	}
	if err := q.check(); err != nil {
		writeJSON(w, http.StatusBadRequest, hookReply{Error: err.Error()})
		return
	}
	if q.VCS != "" && q.VCS != vs.vcs {
		writeJSON(w, http.StatusBadRequest, hookReply{Error: fmt.Sprintf("repository.vcs: %s is registered as a %s repository, Harbormaster says %s", repo.name, vs.vcs, q.VCS)})
		return
	}
	ch := &eventsv1.Change{
		Forge: ForgeHarbormaster, DeliveryId: q.TargetPHID, Repository: repo.name, CloneUrl: repo.cloneURL,
		DefaultBranch: repo.defaultBranch, HarbormasterTargetPhid: q.TargetPHID, DiffId: q.DiffID, RevisionId: q.RevisionID,
	}
	if q.DiffID != 0 {
		// A Differential diff, built like a pull request from the staging area.
		ch.Kind = eventsv1.ChangeKind_CHANGE_KIND_PULL_REQUEST_UPDATED
		ch.Ref = stagingRef(q.DiffID)
		if vs.vcs == "git" {
			ch.Ref = "refs/tags/" + ch.Ref
		}
		ch.BaseRef = "refs/heads/" + repo.defaultBranch
		ch.PullRequestNumber = q.RevisionID
		ch.PullRequestTitle = fmt.Sprintf("D%d diff %d", q.RevisionID, q.DiffID)
		ch.StagingUrl = orText(vs.stagingURL, repo.cloneURL)
		ch.After = q.Commit // usually empty: read from the staging ref
	} else {
		ch.Kind = eventsv1.ChangeKind_CHANGE_KIND_PUSH
		ch.Ref, ch.Branch, ch.After = "refs/heads/"+repo.defaultBranch, repo.defaultBranch, q.Commit
	}
	reply, err := s.acceptHarbormaster(r.Context(), ch)
	if err != nil {
		s.log.Error("accepting harbormaster request", "repository", repo.name, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, hookReply{Error: "could not record the change, retry later"})
		return
	}
	code := http.StatusAccepted
	if reply.Duplicate {
		code = http.StatusOK
	}
	writeJSON(w, code, reply)
}

// acceptHarbormaster records the request (the build target PHID is the
// delivery id, so a repeated request starts nothing) and the target to
// report to, and publishes the change, in one transaction.
func (s *Service) acceptHarbormaster(ctx context.Context, ch *eventsv1.Change) (hookReply, error) {
	ev := bus.NewEvent(changeType(ch.Kind), ch.Repository, ch.After, ch)
	ev.ChainID = ev.ID
	reply := hookReply{EventID: ev.ID, Type: ev.Type, Repository: ch.Repository}
	err := s.ob.InTx(ctx, func(tx *bus.Tx) error {
		reply.Duplicate = false
		res, err := tx.ExecContext(ctx, `INSERT INTO deliveries (forge, delivery_id, event_id, received_at) VALUES ($1, $2, $3, $4) ON CONFLICT (forge, delivery_id) DO NOTHING`,
			ch.Forge, ch.DeliveryId, ev.ID, time.Now().UnixNano())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			reply.Duplicate = true
			return tx.QueryRowContext(ctx, `SELECT event_id FROM deliveries WHERE forge = $1 AND delivery_id = $2`, ch.Forge, ch.DeliveryId).Scan(&reply.EventID)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO harbormaster_targets (change_id, repository, target_phid, diff_id, revision_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			ev.ID, ch.Repository, ch.HarbormasterTargetPhid, ch.DiffId, ch.RevisionId, time.Now().UnixNano()); err != nil {
			return err
		}
		return tx.Publish(ev)
	})
	return reply, err
}

// prepareGitDiff fetches a diff's staging ref into the repository's mirror
// (next to the branches and tags the version needs) and sets the commit.
func (s *Service) prepareGitDiff(ctx context.Context, ch *eventsv1.Change) error {
	dir, err := s.mirrors.ensure(ctx, ch.Repository, ch.CloneUrl, "")
	if err != nil {
		return err
	}
	defer s.mirrors.lock(ch.Repository)()
	local := "refs/" + stagingRef(ch.DiffId)
	if _, err := git(ctx, dir, "fetch", "--quiet", "--force", "--no-tags", ch.StagingUrl, "+refs/tags/"+stagingRef(ch.DiffId)+":"+local); err != nil {
		return fmt.Errorf("diff %d is not in the staging area %s (arc diff pushes tag %s there): %w", ch.DiffId, ch.StagingUrl, stagingRef(ch.DiffId), err)
	}
	sha, err := resolve(ctx, dir, local)
	if err != nil {
		return err
	}
	ch.After = sha
	return nil
}

// consumeHarbormaster reports builds Harbormaster asked for: work when the
// build starts, pass or fail with unit results when it ends. Like commit
// statuses, the call happens in Prepare, outside the transaction, and a
// failure is retried with back-off through the bus; each failed attempt is
// recorded on the build (GetBuild's harbormaster.error), so an unreachable
// Conduit is visible, never silent. Nothing here holds up the pipeline.
func (s *Service) consumeHarbormaster(ctx context.Context) error {
	backoff := s.cfg.StatusBackoff
	if len(backoff) == 0 {
		backoff = defaultStatusBackoff
	}
	return s.ob.Consume(ctx, bus.ConsumerConfig{
		Name:    harbormasterConsumer,
		Filters: []string{bus.EventFilter("build", ""), bus.EventFilter("testrun.finished", "")},
		Prepare: func(ctx context.Context, ev bus.Event) (any, error) {
			return s.sendHarbormaster(ctx, ev, len(backoff)+1)
		},
		MaxDeliver: len(backoff) + 1,
		Backoff:    backoff,
	}, s.recordHarbormaster)
}

type hmSent struct {
	changeID, typ string
	phase         int
}

// sendHarbormaster sends the message an event calls for, if any.
func (s *Service) sendHarbormaster(ctx context.Context, ev bus.Event, maxAttempts int) (any, error) {
	var buildID string
	var phase int
	var tests *eventsv1.TestRunFinished
	switch d := ev.Data.(type) {
	case *eventsv1.BuildStarted:
		buildID, phase = d.GetBuildId(), phaseRunning
	case *eventsv1.BuildFinished:
		buildID, phase = d.GetBuildId(), phaseFinal
		if d.GetStatus() == eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
			// A build with tests has its final word when the test run ends.
			var hasTests int
			if err := s.db.QueryRowContext(ctx, `SELECT has_tests FROM builds WHERE id = $1`, buildID).Scan(&hasTests); err == nil && hasTests == 1 {
				return nil, nil
			}
		}
	case *eventsv1.TestRunFinished:
		buildID, phase, tests = d.GetBuildId(), phaseFinal, d
	default:
		return nil, nil
	}
	var changeID, target, failing, conduitURL, token string
	var sent, attempts int
	err := s.db.QueryRowContext(ctx, `SELECT t.change_id, t.target_phid, t.sent, t.attempts, t.failing_type, r.conduit_url, r.conduit_token
		FROM builds b JOIN harbormaster_targets t ON t.change_id = b.change_id JOIN repositories r ON r.name = b.repository WHERE b.id = $1`, buildID).
		Scan(&changeID, &target, &sent, &attempts, &failing, &conduitURL, &token)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil // not a Harbormaster build
	}
	if err != nil {
		return nil, err
	}
	if sent >= phase {
		return nil, nil // told already, or the result is there
	}
	msg := conduit.Message{BuildTargetPHID: target, Type: conduit.Work}
	if phase == phaseFinal {
		b, err := loadBuild(ctx, s.db, buildID)
		if err != nil {
			return nil, err
		}
		msg = harbormasterResult(b, target)
		if tests != nil {
			addTestUnits(&msg, tests)
		}
	}
	if failing != msg.Type {
		attempts = 0 // the failures counted were another message's
	}
	log := s.log.With("build", buildID, "target", target, "type", msg.Type)
	client, err := conduit.New(conduitURL, token, s.statuses.hc)
	if err != nil {
		err = fmt.Errorf("cannot report to Harbormaster: %w (set it with shiploop repo add --conduit-url URL --conduit-token api-…)", err)
		s.noteHarbormaster(ctx, changeID, msg.Type, attempts, err.Error())
		log.Error("harbormaster report impossible", "err", err)
		return nil, bus.Permanent(err)
	}
	cctx, cancel := context.WithTimeout(ctx, conduitTimeout)
	defer cancel()
	if err := client.SendMessage(cctx, msg); err != nil {
		text := err.Error()
		if attempts+1 >= maxAttempts {
			text = fmt.Sprintf("gave up after %d attempts: %s", attempts+1, text)
		}
		s.noteHarbormaster(ctx, changeID, msg.Type, attempts, text)
		if conduit.IsPermanent(err) {
			log.Error("harbormaster refused the message; not retrying", "err", err)
			return nil, bus.Permanent(err)
		}
		return nil, err // the bus logs it and retries with back-off
	}
	log.Info("harbormaster message sent", "units", len(msg.Unit))
	return &hmSent{changeID: changeID, typ: msg.Type, phase: phase}, nil
}

// noteHarbormaster records a failed attempt on the target, outside any
// consumer transaction (the event is about to be retried).
func (s *Service) noteHarbormaster(ctx context.Context, changeID, typ string, attempts int, text string) {
	if _, err := s.db.ExecContext(ctx, `UPDATE harbormaster_targets SET attempts = $1, failing_type = $2, last_error = $3, updated_at = $4 WHERE change_id = $5`,
		attempts+1, typ, typ+": "+text, time.Now().UnixNano(), changeID); err != nil {
		s.log.Error("recording a harbormaster failure", "change", changeID, "err", err, "failure", text)
	}
}

// recordHarbormaster notes what Harbormaster accepted.
func (s *Service) recordHarbormaster(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	p, ok := tx.Prepared.(*hmSent)
	if !ok || p == nil {
		return nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE harbormaster_targets SET sent = $1, sent_type = $2, attempts = 0, failing_type = '', last_error = '', updated_at = $3 WHERE change_id = $4 AND sent < $1`,
		p.phase, p.typ, time.Now().UnixNano(), p.changeID)
	return err
}

// harbormasterResult is the pass/fail message of a finished build: one
// unit result per step of each job (the matrix combination as namespace).
// When the build has a test run, the message waits for it and carries its
// failing tests too (addTestUnits). lint[] from the gate's findings is not
// sent yet.
func harbormasterResult(b *buildsv1.Build, target string) conduit.Message {
	m := conduit.Message{BuildTargetPHID: target, Type: conduit.Fail}
	switch b.Status {
	case eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, eventsv1.BuildStatus_BUILD_STATUS_SKIPPED:
		m.Type = conduit.Pass
	}
	for _, j := range b.Jobs {
		ns := ""
		if len(b.Jobs) > 1 {
			ns = matrixLabel(j.Matrix)
		}
		for _, st := range j.Steps {
			u := conduit.Unit{Name: st.Name, Namespace: ns, Engine: "shiploop", Result: unitResult(st.Status), Details: st.Error}
			if d := st.GetDuration().AsDuration(); d > 0 {
				u.Duration = d.Seconds()
			}
			if st.ExitCode != 0 && u.Details == "" {
				u.Details = fmt.Sprintf("exit code %d", st.ExitCode)
			}
			m.Unit = append(m.Unit, u)
		}
	}
	if len(m.Unit) == 0 && b.Error != "" {
		// Nothing ran: a bad .shiploop.yml, a commit that cannot be fetched.
		m.Unit = append(m.Unit, conduit.Unit{Name: "shiploop", Engine: "shiploop", Result: conduit.UnitBroken, Details: b.Error})
	}
	return m
}

// addTestUnits adds the test run's failing tests to the message as fail
// units (testrun.finished names up to 50) and a pass unit for the rest; a
// failed or errored run fails the message.
func addTestUnits(m *conduit.Message, tr *eventsv1.TestRunFinished) {
	for _, f := range tr.GetFailures() {
		res := conduit.UnitFail
		if f.GetStatus() == "error" {
			res = conduit.UnitBroken
		}
		ns := f.GetSuite()
		if f.GetClassName() != "" {
			ns = f.GetClassName()
		}
		m.Unit = append(m.Unit, conduit.Unit{Name: f.GetName(), Namespace: ns, Engine: "shiploop tests", Result: res, Details: f.GetMessage()})
	}
	c := tr.GetCounts()
	if passed := c.GetPassed(); passed > 0 {
		m.Unit = append(m.Unit, conduit.Unit{Name: fmt.Sprintf("%d tests passed", passed), Engine: "shiploop tests", Result: conduit.UnitPass,
			Duration: tr.GetDuration().AsDuration().Seconds()})
	}
	if skipped := c.GetSkipped(); skipped > 0 {
		m.Unit = append(m.Unit, conduit.Unit{Name: fmt.Sprintf("%d tests skipped", skipped), Engine: "shiploop tests", Result: conduit.UnitSkip})
	}
	switch tr.GetStatus() {
	case eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED, eventsv1.TestRunStatus_TEST_RUN_STATUS_ERROR:
		m.Type = conduit.Fail
		if tr.GetError() != "" {
			m.Unit = append(m.Unit, conduit.Unit{Name: "test run", Engine: "shiploop tests", Result: conduit.UnitBroken, Details: tr.GetError()})
		}
	}
}

func unitResult(st eventsv1.BuildStatus) string {
	switch st {
	case eventsv1.BuildStatus_BUILD_STATUS_SUCCESS:
		return conduit.UnitPass
	case eventsv1.BuildStatus_BUILD_STATUS_FAILURE:
		return conduit.UnitFail
	case eventsv1.BuildStatus_BUILD_STATUS_SKIPPED, eventsv1.BuildStatus_BUILD_STATUS_QUEUED:
		return conduit.UnitSkip
	}
	return conduit.UnitBroken // error, canceled, or still running when the build ended
}

// fillHarbormaster adds what was reported to Harbormaster to a build.
func fillHarbormaster(ctx context.Context, q queryer, b *buildsv1.Build) error {
	r := &buildsv1.HarbormasterReport{}
	var updated int64
	err := q.QueryRowContext(ctx, `SELECT t.target_phid, t.diff_id, t.revision_id, t.sent_type, t.attempts, t.last_error, t.updated_at
		FROM builds b JOIN harbormaster_targets t ON t.change_id = b.change_id WHERE b.id = $1`, b.Id).
		Scan(&r.TargetPhid, &r.DiffId, &r.RevisionId, &r.Sent, &r.Attempts, &r.Error, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	r.UpdatedAt = timestamppb.New(time.Unix(0, updated))
	b.Harbormaster = r
	return nil
}
