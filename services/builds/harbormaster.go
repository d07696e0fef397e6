package builds

// Phabricator/Phorge Harbormaster: a "Make HTTP Request" build step calls
// /hooks/harbormaster, the change it names is built like any other, and the
// result goes back to the build target through Conduit
// harbormaster.sendmessage (pkg/conduit).

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/conduit"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/builds/hmrequest"
)

// ForgeHarbormaster is the Change.Forge of changes Harbormaster asked for.
const ForgeHarbormaster = "harbormaster"

// harbormasterConsumer reports build results to Harbormaster.
const harbormasterConsumer = "builds-harbormaster"

// conduitTimeout bounds one harbormaster.sendmessage call.
const conduitTimeout = 10 * time.Second

// hmGateWait bounds how long a final message waits for the gate's
// findings. The gate judges a build as soon as it (and its test run) ended,
// so this only runs out when the gates service is down or far behind; the
// message then goes without lint, saying so in a unit result.
const hmGateWait = 2 * time.Minute

// hmSweep is how often held messages are looked at (the gate's arrival
// also wakes the sweeper at once).
const hmSweep = time.Second

// hmRequest is what a "Make HTTP Request" step sent: package hmrequest
// reads and checks it.
type hmRequest = hmrequest.Request

// hexRe matches a full commit hash (hmrequest.CommitHash).
var hexRe = hmrequest.CommitHash

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
	q, err := hmrequest.Parse(r)
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
	if err := q.Check(); err != nil {
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
	if err := s.mirrors.transports.CloneURL(VCSGit, ch.StagingUrl); err != nil {
		return fmt.Errorf("staging area: %w", err)
	}
	if _, err := s.mirrors.git(ctx, dir, "fetch", "--quiet", "--force", "--no-tags", "--end-of-options", ch.StagingUrl, "+refs/tags/"+stagingRef(ch.DiffId)+":"+local); err != nil {
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
//
// When the build's gate reads static-analysis reports (its .shiploop.yml
// names some, as build.created tells), the final message carries the
// gate's findings as lint and so waits for gate.evaluated: it is held in
// harbormaster_targets, and a sweeper sends it once the gate has spoken or
// hmGateWait has passed, with its own retries on the same back-off. The
// wait holds only this message: the consumer goes on with other events,
// and the build, its statuses and the gate never wait for it.
func (s *Service) consumeHarbormaster(ctx context.Context) error {
	backoff := s.cfg.StatusBackoff
	if len(backoff) == 0 {
		backoff = defaultStatusBackoff
	}
	wake := make(chan struct{}, 1)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return s.ob.Consume(ctx, bus.ConsumerConfig{
			Name:    harbormasterConsumer,
			Filters: []string{bus.EventFilter("build", ""), bus.EventFilter("testrun.finished", ""), bus.EventFilter("gate.evaluated", "")},
			Prepare: func(ctx context.Context, ev bus.Event) (any, error) {
				return s.sendHarbormaster(ctx, ev, len(backoff)+1, wake)
			},
			MaxDeliver: len(backoff) + 1,
			Backoff:    backoff,
		}, s.recordHarbormaster)
	})
	g.Go(func() error { return s.sweepHarbormaster(ctx, backoff, wake) })
	return g.Wait()
}

type hmSent struct {
	changeID, typ string
	phase         int
}

// hmHeld is a final message to keep until the gate's findings come.
type hmHeld struct {
	changeID string
	msg      conduit.Message
}

// hmGateLint is what gate.evaluated gives Harbormaster: its findings as
// lint, and how many did not fit.
type hmGateLint struct {
	Lint      []conduit.Lint `json:"lint"`
	Truncated int64          `json:"truncated"`
}

// sendHarbormaster sends the message an event calls for, if any.
func (s *Service) sendHarbormaster(ctx context.Context, ev bus.Event, maxAttempts int, wake chan<- struct{}) (any, error) {
	var buildID string
	var phase int
	var tests *eventsv1.TestRunFinished
	switch d := ev.Data.(type) {
	case *eventsv1.GateEvaluated:
		return nil, s.noteGate(ctx, d, wake)
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
	var sent, attempts, gateWait int
	var gateLint, held []byte
	err := s.db.QueryRowContext(ctx, `SELECT t.change_id, t.target_phid, t.sent, t.attempts, t.failing_type, t.gate_wait, t.gate_lint, t.held, r.conduit_url, r.conduit_token
		FROM builds b JOIN harbormaster_targets t ON t.change_id = b.change_id JOIN repositories r ON r.name = b.repository WHERE b.id = $1`, buildID).
		Scan(&changeID, &target, &sent, &attempts, &failing, &gateWait, &gateLint, &held, &conduitURL, &token)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil // not a Harbormaster build
	}
	if err != nil {
		return nil, err
	}
	if sent >= phase || (phase == phaseFinal && len(held) > 0) {
		return nil, nil // told already, the result is there, or it waits for the gate
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
		switch {
		case len(gateLint) > 0:
			var gl hmGateLint
			if err := json.Unmarshal(gateLint, &gl); err != nil {
				return nil, fmt.Errorf("harbormaster lint of build %s: %w", buildID, err)
			}
			addGateLint(&msg, gl)
		case gateWait == 1 && gateJudges(b.Status):
			return &hmHeld{changeID: changeID, msg: msg}, nil
		}
	}
	if failing != msg.Type {
		attempts = 0 // the failures counted were another message's
	}
	log := s.log.With("build", buildID, "target", target, "type", msg.Type)
	if err := s.callConduit(ctx, conduitURL, token, msg); err != nil {
		permanent := conduit.IsPermanent(err)
		text := err.Error()
		if attempts+1 >= maxAttempts && !permanent {
			text = fmt.Sprintf("gave up after %d attempts: %s", attempts+1, text)
		}
		s.noteHarbormaster(ctx, changeID, msg.Type, attempts, text)
		if permanent {
			log.Error("harbormaster message not sent; not retrying", "err", err)
			return nil, bus.Permanent(err)
		}
		return nil, err // the bus logs it and retries with back-off
	}
	log.Info("harbormaster message sent", "units", len(msg.Unit), "lint", len(msg.Lint))
	return &hmSent{changeID: changeID, typ: msg.Type, phase: phase}, nil
}

// callConduit sends one message to a repository's Conduit. Settings that
// cannot work are a permanent error naming the fix.
func (s *Service) callConduit(ctx context.Context, conduitURL, token string, msg conduit.Message) error {
	client, err := conduit.New(conduitURL, token, s.statuses.hc)
	if err != nil {
		return &conduit.ParamError{Msg: fmt.Sprintf("cannot report to Harbormaster: %v (set it with shiploop repo add --conduit-url URL --conduit-token api-…)", err)}
	}
	cctx, cancel := context.WithTimeout(ctx, conduitTimeout)
	defer cancel()
	return client.SendMessage(cctx, msg)
}

// gateJudges reports whether the gate judges a build that ended so (it
// skips canceled and skipped builds): only then is its verdict awaited.
func gateJudges(st eventsv1.BuildStatus) bool {
	switch st {
	case eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, eventsv1.BuildStatus_BUILD_STATUS_FAILURE, eventsv1.BuildStatus_BUILD_STATUS_ERROR:
		return true
	}
	return false
}

// noteGate keeps a gate verdict's findings for the build's final message
// and wakes the sweeper when that message is held. It writes outside the
// consumer's transaction so that the sweeper, woken now, sees it; doing it
// again on a redelivery is harmless, and a later revision (a late report)
// replaces it until the message is sent.
func (s *Service) noteGate(ctx context.Context, ge *eventsv1.GateEvaluated, wake chan<- struct{}) error {
	raw, err := json.Marshal(gateLint(ge))
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	res, err := s.db.ExecContext(ctx, `UPDATE harbormaster_targets SET gate_lint = $1, retry_at = CASE WHEN held IS NULL THEN retry_at ELSE CAST($2 AS BIGINT) END
		WHERE change_id = (SELECT change_id FROM builds WHERE id = $3) AND sent < $4`, raw, now, ge.GetBuildId(), phaseFinal)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n > 0 {
		select {
		case wake <- struct{}{}:
		default: // already woken
		}
	}
	return nil
}

// noteHarbormaster records a failed attempt on the target, outside any
// consumer transaction (the event is about to be retried).
func (s *Service) noteHarbormaster(ctx context.Context, changeID, typ string, attempts int, text string) {
	if _, err := s.db.ExecContext(ctx, `UPDATE harbormaster_targets SET attempts = $1, failing_type = $2, last_error = $3, updated_at = $4 WHERE change_id = $5`,
		attempts+1, typ, typ+": "+text, time.Now().UnixNano(), changeID); err != nil {
		s.log.Error("recording a harbormaster failure", "change", changeID, "err", err, "failure", text)
	}
}

// recordHarbormaster notes what Harbormaster accepted, which builds wait
// for their gate, and the final messages held for it.
func (s *Service) recordHarbormaster(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	now := time.Now().UnixNano()
	if bc, ok := ev.Data.(*eventsv1.BuildCreated); ok && readsLint(bc.GetGate().GetPolicy().GetReports()) {
		_, err := tx.ExecContext(ctx, `UPDATE harbormaster_targets SET gate_wait = 1 WHERE change_id = (SELECT change_id FROM builds WHERE id = $1)`, bc.GetBuildId())
		return err
	}
	switch p := tx.Prepared.(type) {
	case *hmSent:
		_, err := tx.ExecContext(ctx, `UPDATE harbormaster_targets SET sent = $1, sent_type = $2, attempts = 0, failing_type = '', last_error = '', updated_at = $3 WHERE change_id = $4 AND sent < $1`,
			p.phase, p.typ, now, p.changeID)
		return err
	case *hmHeld:
		raw, err := json.Marshal(p.msg)
		if err != nil {
			return err
		}
		// Due when the wait ends, or at once if the gate spoke meanwhile.
		_, err = tx.ExecContext(ctx, `UPDATE harbormaster_targets SET held = $1, held_at = $2, retry_at = CASE WHEN gate_lint IS NULL THEN CAST($3 AS BIGINT) ELSE CAST($2 AS BIGINT) END
			WHERE change_id = $4 AND sent < $5 AND held IS NULL`, raw, now, now+int64(hmGateWait), p.changeID, phaseFinal)
		if err == nil {
			s.log.Info("harbormaster result held for the gate's findings", "change", p.changeID, "type", p.msg.Type, "wait", hmGateWait)
		}
		return err
	}
	return nil
}

// readsLint reports whether a gate section names static-analysis reports
// (metrics reports give numbers, not findings).
func readsLint(r *eventsv1.GateReports) bool {
	return len(r.GetSarif()) > 0 || len(r.GetFlake8()) > 0 || len(r.GetCheckstyle()) > 0 || len(r.GetGolangciLint()) > 0
}

// sweepHarbormaster sends held final messages when they are due, until ctx
// ends: every hmSweep, and at once when woken.
func (s *Service) sweepHarbormaster(ctx context.Context, backoff []time.Duration, wake <-chan struct{}) error {
	t := time.NewTicker(hmSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-wake:
		}
		if err := s.sendHeld(ctx, backoff); err != nil && ctx.Err() == nil {
			s.log.Warn("sending held harbormaster messages", "err", err)
		}
	}
}

// heldRow is a held message that is due.
type heldRow struct {
	changeID, target, failing, conduitURL, token string
	retryAt                                      int64
	attempts                                     int
	held, gateLint                               []byte
}

// sendHeld sends every held message that is due: its gate spoke, its wait
// ran out, or a failed attempt's back-off passed. Each is claimed first
// (retry_at moved past the call's timeout), so two builds services never
// both send it; one that dies mid-call leaves it to be retried.
func (s *Service) sendHeld(ctx context.Context, backoff []time.Duration) error {
	now := time.Now().UnixNano()
	rows, err := s.db.QueryContext(ctx, `SELECT t.change_id, t.target_phid, t.failing_type, r.conduit_url, r.conduit_token, t.retry_at, t.attempts, t.held, t.gate_lint
		FROM harbormaster_targets t JOIN repositories r ON r.name = t.repository WHERE t.retry_at > 0 AND t.retry_at <= $1 AND t.held IS NOT NULL`, now)
	if err != nil {
		return err
	}
	var due []heldRow
	for rows.Next() {
		var h heldRow
		if err := rows.Scan(&h.changeID, &h.target, &h.failing, &h.conduitURL, &h.token, &h.retryAt, &h.attempts, &h.held, &h.gateLint); err != nil {
			rows.Close()
			return err
		}
		due = append(due, h)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for _, h := range due {
		res, err := s.db.ExecContext(ctx, `UPDATE harbormaster_targets SET retry_at = $1 WHERE change_id = $2 AND retry_at = $3`,
			now+int64(2*conduitTimeout), h.changeID, h.retryAt)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			continue // another builds service has it
		}
		if err := s.sendOneHeld(ctx, h, backoff); err != nil {
			// The claim runs out and the message is tried again.
			s.log.Error("sending a held harbormaster message", "change", h.changeID, "err", err)
		}
	}
	return nil
}

// sendOneHeld sends a claimed held message with the gate's lint, or
// without it (saying why) when the gate did not speak in time, and
// records the outcome: sent, to be retried after the back-off, or given up.
func (s *Service) sendOneHeld(ctx context.Context, h heldRow, backoff []time.Duration) error {
	var msg conduit.Message
	if err := json.Unmarshal(h.held, &msg); err != nil {
		return fmt.Errorf("held harbormaster message of change %s: %w", h.changeID, err)
	}
	log := s.log.With("change", h.changeID, "target", h.target, "type", msg.Type)
	if len(h.gateLint) > 0 {
		var gl hmGateLint
		if err := json.Unmarshal(h.gateLint, &gl); err != nil {
			return fmt.Errorf("harbormaster lint of change %s: %w", h.changeID, err)
		}
		addGateLint(&msg, gl)
	} else {
		log.Warn("the gate did not report in time; sending the result without lint", "waited", hmGateWait)
		msg.Unit = append(msg.Unit, conduit.Unit{Name: "lint", Engine: "shiploop gate", Result: conduit.UnitSkip,
			Details: fmt.Sprintf("The gate did not report its findings within %v, so no lint was sent (is the gates service running?).", hmGateWait)})
	}
	err := s.callConduit(ctx, h.conduitURL, h.token, msg)
	now := time.Now().UnixNano()
	if err == nil {
		log.Info("harbormaster message sent", "units", len(msg.Unit), "lint", len(msg.Lint))
		_, err := s.db.ExecContext(ctx, `UPDATE harbormaster_targets SET sent = $1, sent_type = $2, held = NULL, retry_at = 0, attempts = 0, failing_type = '', last_error = '', updated_at = $3
			WHERE change_id = $4 AND sent < $1`, phaseFinal, msg.Type, now, h.changeID)
		return err
	}
	attempts := h.attempts
	if h.failing != msg.Type {
		attempts = 0
	}
	attempts++
	text := err.Error()
	if permanent := conduit.IsPermanent(err); permanent || attempts > len(backoff) {
		if !permanent {
			text = fmt.Sprintf("gave up after %d attempts: %s", attempts, text)
		}
		log.Error("harbormaster message not sent; giving up", "attempts", attempts, "err", err)
		_, err := s.db.ExecContext(ctx, `UPDATE harbormaster_targets SET held = NULL, retry_at = 0, attempts = $1, failing_type = $2, last_error = $3, updated_at = $4 WHERE change_id = $5`,
			attempts, msg.Type, msg.Type+": "+text, now, h.changeID)
		return err
	}
	delay := backoff[attempts-1]
	log.Warn("harbormaster message failed; will retry", "attempt", attempts, "retry_in", delay, "err", err)
	_, err = s.db.ExecContext(ctx, `UPDATE harbormaster_targets SET retry_at = $1, attempts = $2, failing_type = $3, last_error = $4, updated_at = $5 WHERE change_id = $6`,
		now+int64(delay), attempts, msg.Type, msg.Type+": "+text, now, h.changeID)
	return err
}

// harbormasterResult is the pass/fail message of a finished build: one
// unit result per step of each job (the matrix combination as namespace).
// When the build has a test run, the message waits for it and carries its
// failing tests too (addTestUnits); when its gate reads static-analysis
// reports, it waits for the gate too and carries the findings as lint
// (addGateLint).
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

// Limits of Phabricator's HarbormasterBuildLintMessage columns (name
// text255, code text128): longer values would not be stored whole.
const (
	maxLintName = 255
	maxLintCode = 128
)

// gateLint turns a gate verdict's findings into Harbormaster lint
// messages (HarbormasterBuildLintMessage: name, code, severity, path and
// optional line, char, description).
func gateLint(ge *eventsv1.GateEvaluated) hmGateLint {
	gl := hmGateLint{Truncated: ge.GetFindingsTruncated()}
	for _, f := range ge.GetFindings() {
		code := f.GetRule()
		if code == "" {
			code = f.GetTool()
		}
		// Harbormaster's lint table shows the name as the message: the
		// finding's first line; the description keeps all of it.
		name, _, _ := strings.Cut(f.GetMessage(), "\n")
		name = strings.TrimSpace(name)
		if name == "" {
			name = code
		}
		gl.Lint = append(gl.Lint, conduit.Lint{
			Name: cutBytes(name, maxLintName), Code: cutBytes(code, maxLintCode), Severity: lintSeverity(f.GetLevel()),
			Path: f.GetPath(), Line: int(max(f.GetLine(), 0)),
			// SARIF counts columns in characters where Harbormaster wants
			// bytes; the report's number is the best there is.
			Char:        int(max(f.GetColumn(), 0)),
			Description: f.GetTool() + ": " + f.GetMessage(),
		})
	}
	return gl
}

// lintSeverity maps a finding's level to an Arcanist lint severity: SARIF
// error and warning keep their names, note (and none, read as note) is
// advice.
func lintSeverity(level string) string {
	switch level {
	case "error":
		return conduit.SeverityError
	case "warning":
		return conduit.SeverityWarning
	}
	return conduit.SeverityAdvice
}

// addGateLint adds the gate's lint to a message, and a unit result saying
// how many findings did not fit, if any. Lint never changes pass or fail:
// the gate has its own verdict.
func addGateLint(m *conduit.Message, gl hmGateLint) {
	m.Lint = append(m.Lint, gl.Lint...)
	if gl.Truncated > 0 {
		m.Unit = append(m.Unit, conduit.Unit{Name: "lint", Engine: "shiploop gate", Result: conduit.UnitSkip,
			Details: fmt.Sprintf("%d more findings are not sent as lint: Harbormaster gets the first %d, new ones first.", gl.Truncated, len(gl.Lint))})
	}
}

// cutBytes cuts s to at most n bytes on a rune boundary.
func cutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
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
