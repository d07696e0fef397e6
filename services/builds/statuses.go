package builds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/forgestatus"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// StatusContext names shiploop's build status among a commit's statuses.
const StatusContext = "shiploop/build"

// statusConsumer is the durable consumer that posts commit statuses.
const statusConsumer = "builds-statuses"

// statusTimeout bounds one request to a forge: a slow forge is retried
// later rather than holding the consumer.
const statusTimeout = 10 * time.Second

var defaultStatusBackoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 10 * time.Minute}

// Phases of a build's commit status, in the order a forge must see them;
// builds.status_posted keeps the last one posted.
const (
	phaseNone = iota
	phasePending
	phaseRunning
	phaseFinal
)

// statusPoster makes the forge clients.
type statusPoster struct {
	forges forgestatus.Registry
	hc     *http.Client
}

func newStatusPoster() *statusPoster {
	return &statusPoster{forges: forgestatus.NewRegistry(), hc: &http.Client{Timeout: statusTimeout}}
}

// forgeSettings is a repository's commit-status configuration.
type forgeSettings struct {
	kind, apiURL, repo, token string
}

func (f forgeSettings) config(hc *http.Client) forgestatus.Config {
	return forgestatus.Config{APIURL: f.apiURL, Repo: f.repo, Token: f.token, HTTPClient: hc, UserAgent: "shiploop"}
}

// consumeStatuses posts a commit status for every build event: pending when
// a build is created, running when it starts, its result when it finishes.
// The post happens in Prepare, outside the database transaction, so a slow
// forge never holds the database; a failed post is retried with back-off
// by the bus, a post the forge refuses for good (4xx other than 408/429)
// goes to the DLQ. The transaction then records the phase posted, so a
// redelivered or late event never posts again nor puts a finished build
// back to pending.
func (s *Service) consumeStatuses(ctx context.Context) error {
	backoff := s.cfg.StatusBackoff
	if len(backoff) == 0 {
		backoff = defaultStatusBackoff
	}
	return s.ob.Consume(ctx, bus.ConsumerConfig{
		Name:       statusConsumer,
		Filters:    []string{bus.EventFilter("build", "")},
		Prepare:    s.postStatus,
		MaxDeliver: len(backoff) + 1,
		Backoff:    backoff,
	}, s.recordStatus)
}

// postedStatus is what postStatus did, for recordStatus.
type postedStatus struct {
	buildID string
	phase   int
}

// postStatus posts the commit status an event calls for, if any.
func (s *Service) postStatus(ctx context.Context, ev bus.Event) (any, error) {
	var buildID string
	var phase int
	switch d := ev.Data.(type) {
	case *eventsv1.BuildCreated:
		buildID, phase = d.GetBuildId(), phasePending
	case *eventsv1.BuildStarted:
		buildID, phase = d.GetBuildId(), phaseRunning
	case *eventsv1.BuildFinished:
		buildID, phase = d.GetBuildId(), phaseFinal
	default:
		return nil, nil
	}
	var posted int
	b, err := scanBuild(alsoScan{s.db.QueryRowContext(ctx, `SELECT `+buildColumns+`, status_posted FROM builds WHERE id = $1`, buildID), []any{&posted}})
	if errors.Is(err, sql.ErrNoRows) {
		s.log.Warn("commit status: build not found", "build", buildID, "event", ev.ID)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if posted >= phase || b.Commit == "" {
		return nil, nil // posted already, a later status is on the forge, or no commit to mark
	}
	fs, err := s.forgeSettings(ctx, b.Repository)
	if err != nil || fs.kind == "" {
		return nil, err // no forge configured: nothing to post
	}
	// Two builds of one commit (a retry, a branch and a tag) share the
	// status context: the newest build speaks for the commit.
	var newer int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM builds WHERE repository = $1 AND commit_sha = $2 AND number > $3`,
		b.Repository, b.Commit, b.Number).Scan(&newer); err != nil {
		return nil, err
	}
	if newer > 0 {
		return nil, nil
	}
	st := s.commitStatus(b, phase)
	log := s.log.With("repository", b.Repository, "build", b.Id, "number", b.Number, "forge", fs.kind, "forge_repo", fs.repo, "commit", b.Commit, "state", st.State)
	client, err := s.statuses.forges.New(fs.kind, fs.config(s.statuses.hc))
	if err == nil {
		err = client.SetStatus(ctx, st)
	}
	switch {
	case err == nil:
		log.Info("commit status posted")
		return &postedStatus{buildID: b.Id, phase: phase}, nil
	case forgestatus.IsPermanent(err):
		log.Error("commit status refused; not retrying (check the repository's forge settings: shiploop repo add --forge ...)", "err", err)
		return nil, bus.Permanent(err)
	}
	return nil, err // the bus logs it and retries with back-off
}

// alsoScan scans columns after the ones its caller asks for.
type alsoScan struct {
	row   *sql.Row
	extra []any
}

func (a alsoScan) Scan(dest ...any) error { return a.row.Scan(append(dest, a.extra...)...) }

// recordStatus notes the phase posted, in the consumer's transaction.
func (s *Service) recordStatus(ctx context.Context, tx *bus.Tx, ev bus.Event) error {
	p, ok := tx.Prepared.(*postedStatus)
	if !ok || p == nil {
		return nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE builds SET status_posted = $1 WHERE id = $2 AND status_posted < $1`, p.phase, p.buildID)
	return err
}

// commitStatus is the status of a build at a phase: state, description
// ("shiploop #12 failed at step test") and the link to the build.
func (s *Service) commitStatus(b *buildsv1.Build, phase int) forgestatus.Status {
	st := forgestatus.Status{SHA: b.Commit, Ref: b.Ref, Context: StatusContext, TargetURL: s.buildURL(b.Id)}
	name := fmt.Sprintf("shiploop #%d", b.Number)
	switch phase {
	case phasePending:
		st.State, st.Description = forgestatus.Pending, name+" queued"
	case phaseRunning:
		st.State, st.Description = forgestatus.Running, name+" running"
	default:
		st.State, st.Description = finalStatus(name, b)
	}
	return st
}

func finalStatus(name string, b *buildsv1.Build) (forgestatus.State, string) {
	took := ""
	if b.StartedAt != nil && b.FinishedAt != nil {
		d := b.FinishedAt.AsTime().Sub(b.StartedAt.AsTime())
		if d < time.Second {
			d = d.Round(time.Millisecond)
		} else {
			d = d.Round(time.Second)
		}
		took = " in " + d.String()
	}
	switch b.Status {
	case eventsv1.BuildStatus_BUILD_STATUS_SUCCESS:
		return forgestatus.Success, name + " passed" + took
	case eventsv1.BuildStatus_BUILD_STATUS_SKIPPED:
		// Nothing to build is not a failure: a required check must not block.
		return forgestatus.Success, name + " skipped: " + orText(b.Error, "no step matches this change")
	case eventsv1.BuildStatus_BUILD_STATUS_FAILURE:
		if b.FailedStep != "" {
			return forgestatus.Failure, name + " failed at step " + b.FailedStep
		}
		return forgestatus.Failure, name + " failed" + reason(b.Error)
	case eventsv1.BuildStatus_BUILD_STATUS_CANCELED:
		return forgestatus.Canceled, name + " canceled" + reason(b.Error)
	}
	if b.FailedStep != "" {
		return forgestatus.Error, name + " errored at step " + b.FailedStep + reason(b.Error)
	}
	return forgestatus.Error, name + " errored" + reason(b.Error)
}

func reason(text string) string {
	text = strings.Join(strings.Fields(text), " ") // one line
	if text == "" {
		return ""
	}
	return ": " + text
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// buildURL is the build's page in the web UI, "" without a public URL.
func (s *Service) buildURL(id string) string {
	if s.cfg.PublicURL == "" {
		return ""
	}
	return strings.TrimRight(s.cfg.PublicURL, "/") + "/builds/" + url.PathEscape(id)
}

// forgeSettings reads a repository's forge configuration, token included;
// it stays in this service.
func (s *Service) forgeSettings(ctx context.Context, repo string) (forgeSettings, error) {
	var f forgeSettings
	err := s.db.QueryRowContext(ctx, `SELECT forge, forge_api_url, forge_repo, forge_token FROM repositories WHERE name = $1`, repo).
		Scan(&f.kind, &f.apiURL, &f.repo, &f.token)
	if errors.Is(err, sql.ErrNoRows) {
		return forgeSettings{}, nil
	}
	return f, err
}

// forgeNone in a request removes a repository's forge settings.
const forgeNone = "none"

// mergeForge applies a RegisterRepository request's forge fields to what is
// stored (old) and checks the result: an empty kind keeps old, "none"
// clears it, an empty token keeps the stored one. The token is only ever
// checked, never echoed.
func mergeForge(name string, old forgeSettings, req *buildsv1.RegisterRepositoryRequest) (forgeSettings, error) {
	kind := strings.ToLower(strings.TrimSpace(req.GetForge()))
	switch kind {
	case "":
		if req.GetForgeApiUrl() != "" || req.GetForgeRepo() != "" || req.GetForgeToken() != "" {
			return old, invalid("forge", "required with forge_api_url, forge_repo or forge_token (github, gitlab, gitea or forgejo)")
		}
		return old, nil
	case forgeNone:
		return forgeSettings{}, nil
	}
	f := forgeSettings{kind: kind, apiURL: strings.TrimSpace(req.GetForgeApiUrl()), repo: strings.TrimSpace(req.GetForgeRepo()), token: strings.TrimSpace(req.GetForgeToken())}
	if _, ok := forgestatus.NewRegistry()[kind]; !ok {
		return old, invalid("forge", fmt.Sprintf("%q: want one of %s, or %s", kind, strings.Join(forgestatus.Kinds(), ", "), forgeNone))
	}
	if f.apiURL == "" {
		f.apiURL = forgestatus.DefaultAPIURL(kind)
	}
	if f.apiURL == "" {
		return old, invalid("forge_api_url", fmt.Sprintf("required for %s (e.g. https://%s.example.com/api/v1)", kind, kind))
	}
	f.apiURL = strings.TrimRight(f.apiURL, "/")
	if f.repo == "" {
		f.repo = name
	}
	if f.token == "" {
		f.token = old.token
	}
	if f.token == "" {
		return old, invalid("forge_token", "required: a token allowed to set commit statuses on "+f.repo)
	}
	if _, err := forgestatus.New(kind, f.config(nil)); err != nil {
		field, msg := "forge", err.Error()
		var ce *forgestatus.ConfigError
		if errors.As(err, &ce) {
			msg = ce.Msg
			if ce.Field != "kind" {
				field = "forge_" + ce.Field
			}
		}
		return old, invalid(field, msg)
	}
	return f, nil
}

// describeForge fills a Repository's forge fields, never the token.
func describeForge(r *buildsv1.Repository, f forgeSettings) {
	r.Forge, r.ForgeApiUrl, r.ForgeRepo, r.ForgeTokenSet = f.kind, f.apiURL, f.repo, f.token != ""
}
