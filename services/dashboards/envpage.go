package dashboards

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/shiploop/shiploop/pkg/server"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
)

// envPageView is /environments/{repo...}/{env}: the environment now, its
// deploy history newest first, and whether the viewer may act on it.
type envPageView struct {
	Env envView
	// Deploys: newest first, the ones not finished (awaiting approval,
	// running, verifying, paused) before the finished ones.
	Deploys []deployView
	// Runs: runbook runs against the environment or copying from it;
	// Copies: its environment.data_copied (runbooks.go).
	Runs   []runbookRunView
	Copies []dataCopyView
	// Runbooks: the forms to run the environment's runbooks (write
	// sessions only); RunbooksUnavailable says why there are none.
	Runbooks            []runbookForm
	RunbooksUnavailable string
	// CanAct: the session has write scope and DeploysService is reachable;
	// the action forms are rendered only then.
	CanAct bool
	// Why the actions are not shown, when they are not.
	NoActions string
	// Flash: the outcome of the action just taken (?done=, ?error=).
	Done, Error string
	Path        string
}

// Approvable reports whether d waits for an approval: awaiting_approval,
// or paused on an inconclusive verification (an approval accepts it).
func (d deployView) Approvable() bool {
	return d.Status == "awaiting_approval" || d.Status == "paused"
}

// NoEvidence reports a check that was inconclusive for want of any
// evidence (errortrack heard nothing from the release).
func (c checkView) NoEvidence() bool {
	return strings.HasPrefix(c.Reason, "no evidence")
}

// envPath splits /environments/{repo...}/{env}'s wildcard: the last
// segment is the environment, the rest the repository.
func envPath(r *http.Request) (repo, env string, ok bool) {
	p := strings.Trim(r.PathValue("path"), "/")
	i := strings.LastIndex(p, "/")
	if i <= 0 || i == len(p)-1 {
		return "", "", false
	}
	return p[:i], p[i+1:], true
}

// envURL is the environment page's path.
func envURL(repo, env string) string {
	return "/environments/" + repo + "/" + url.PathEscape(env)
}

func (p *pages) environment(w http.ResponseWriter, r *http.Request) {
	repo, env, ok := envPath(r)
	if !ok {
		http.Error(w, "want /environments/{owner}/{repo}/{environment}", http.StatusNotFound)
		return
	}
	v, err := p.s.environmentPage(r.Context(), repo, env)
	if err != nil {
		p.fail(w, err)
		return
	}
	v.Path = envURL(repo, env)
	v.Done, v.Error = r.URL.Query().Get("done"), r.URL.Query().Get("error")
	switch pr, signedIn := server.PrincipalFrom(r.Context()); {
	case p.s.cfg.Deploys == nil:
		v.NoActions = "actions are off: this server's dashboards do not reach the deploys service"
	case p.s.cfg.Auth.Enabled() && (!signedIn || pr.Scope < server.ScopeWrite):
		v.NoActions = "read-only session: log in with a token of write scope to approve, promote, roll back or lock"
	default:
		v.CanAct = true
		v.Runbooks, v.RunbooksUnavailable = p.s.runbookForms(r.Context(), repo, env)
	}
	p.render(w, "environment", pageData{Title: repo + " " + env, Nav: "environments", Data: v})
}

// runbookForm is one runbook's form on the environment page.
type runbookForm struct {
	Name, Kind, Where string
	Options           []*deploysv1.RunbookOption
}

// runbooksTimeout bounds the page's call to deploys for its runbooks.
const runbooksTimeout = 3 * time.Second

// runbookForms reads the runbooks that run against env (or copy from or to
// it) for the page's forms; with none or deploys unreachable, the second
// value says so.
func (s *Service) runbookForms(ctx context.Context, repo, env string) ([]runbookForm, string) {
	if s.cfg.Runbooks == nil {
		return nil, "runbooks cannot be run from here: this server's dashboards do not reach the runbook service"
	}
	ctx, cancel := context.WithTimeout(ctx, runbooksTimeout)
	defer cancel()
	resp, err := s.cfg.Runbooks.ListRunbooks(ctx, &deploysv1.ListRunbooksRequest{Repository: repo, Environment: env})
	if err != nil {
		return nil, "runbooks unavailable: " + grpcMessage(err)
	}
	var out []runbookForm
	for _, rb := range resp.GetRunbooks() {
		f := runbookForm{Name: rb.GetName(), Kind: rb.GetKind(), Where: rb.GetEnvironment(), Options: rb.GetOptions()}
		if rb.GetKind() == "data" {
			f.Where = rb.GetFromEnvironment() + " → " + rb.GetToEnvironment()
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, "no runbook runs against " + env + " (runbooks: in the default branch's .shiploop.yml)"
	}
	return out, ""
}

// environmentPage reads an environment and its last 50 deploys.
func (s *Service) environmentPage(ctx context.Context, repo, env string) (envPageView, error) {
	envs, err := s.environments(ctx, repo)
	if err != nil {
		return envPageView{}, err
	}
	v := envPageView{Env: envView{Repository: repo, Name: env}}
	found := false
	for _, e := range envs {
		if e.Name == env {
			v.Env, found = e, true
		}
	}
	v.Deploys, err = s.deploys(ctx, `WHERE repository = $1 AND environment = $2
		ORDER BY CASE WHEN finished_at = 0 THEN 0 ELSE 1 END, finished_at DESC, started_at DESC, id DESC LIMIT 50`, repo, env)
	if err != nil {
		return envPageView{}, err
	}
	if v.Runs, v.Copies, err = s.envRunbooks(ctx, repo, env); err != nil {
		return envPageView{}, err
	}
	if !found && len(v.Deploys) == 0 && len(v.Runs) == 0 {
		return envPageView{}, fmt.Errorf("%w: environment %s of %s", errNotFound, env, repo)
	}
	return v, nil
}

// envAction is a POST of an environment page's forms: approve (deploy_id),
// promote (release, "" = what the previous environment runs), rollback
// (release, "" = the last good one; reason), lock (reason) or unlock. It
// runs behind server.Auth.WebForm (write scope, same origin) and calls
// DeploysService with the session's token name as the actor (by,
// approver); the call itself carries the server's token. It answers 303
// back to the page with ?done= or ?error=.
func (p *pages) envAction(w http.ResponseWriter, r *http.Request) {
	repo, env, ok := envPath(r)
	if !ok {
		http.Error(w, "want /environments/{owner}/{repo}/{environment}", http.StatusNotFound)
		return
	}
	if p.s.cfg.Deploys == nil {
		http.Error(w, "this server's dashboards do not reach the deploys service", http.StatusServiceUnavailable)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "reading the form: "+err.Error(), http.StatusBadRequest)
		return
	}
	actor := "anonymous"
	if pr, ok := server.PrincipalFrom(r.Context()); ok && pr.Name != "" {
		actor = pr.Name
	}
	done, err := p.s.envAct(r.Context(), repo, env, actor, r.PostForm)
	target := envURL(repo, env)
	if err != nil {
		var bad *badAction
		if errors.As(err, &bad) {
			http.Error(w, bad.msg, http.StatusBadRequest)
			return
		}
		msg := err.Error()
		if st, ok := status.FromError(err); ok {
			msg = st.Message()
		}
		http.Redirect(w, r, target+"?error="+url.QueryEscape(msg), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, target+"?done="+url.QueryEscape(done), http.StatusSeeOther)
}

type badAction struct{ msg string }

func (e *badAction) Error() string { return e.msg }

// envAct performs one action for actor and says what it did.
func (s *Service) envAct(ctx context.Context, repo, env, actor string, f url.Values) (string, error) {
	d := s.cfg.Deploys
	get := func(k string) string { return strings.TrimSpace(f.Get(k)) }
	switch a := get("action"); a {
	case "approve":
		id := get("deploy_id")
		if id == "" {
			return "", &badAction{"approve: no deploy_id"}
		}
		resp, err := d.Approve(ctx, &deploysv1.ApproveRequest{DeployId: id, Approver: actor, Comment: get("comment")})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s approved deployment %s (%s)", actor, id, resp.GetDeployment().GetRelease()), nil
	case "promote":
		resp, err := d.Promote(ctx, &deploysv1.PromoteRequest{Repository: repo, Environment: env, Release: get("release"), By: actor, Comment: get("comment")})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s promoted %s to %s", actor, resp.GetDeployment().GetRelease(), env), nil
	case "rollback":
		resp, err := d.Rollback(ctx, &deploysv1.RollbackRequest{Repository: repo, Environment: env, Release: get("release"), By: actor, Reason: get("reason")})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s rolled %s back to %s", actor, env, resp.GetDeployment().GetRelease()), nil
	case "lock":
		if _, err := d.Lock(ctx, &deploysv1.LockRequest{Repository: repo, Environment: env, Reason: get("reason"), By: actor}); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s locked %s", actor, env), nil
	case "unlock":
		if _, err := d.Unlock(ctx, &deploysv1.UnlockRequest{Repository: repo, Environment: env, By: actor}); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s unlocked %s", actor, env), nil
	case "runbook":
		if s.cfg.Runbooks == nil {
			return "", &badAction{"runbook: this server's dashboards do not reach the runbook service"}
		}
		name := get("runbook")
		if name == "" {
			return "", &badAction{"runbook: no runbook named"}
		}
		// option.<name> fields; empty ones are left to the runbook's
		// defaults (and its required check).
		opts := map[string]string{}
		for k, vs := range f {
			if o, ok := strings.CutPrefix(k, "option."); ok && len(vs) > 0 && strings.TrimSpace(vs[0]) != "" {
				opts[o] = strings.TrimSpace(vs[0])
			}
		}
		resp, err := s.cfg.Runbooks.RunRunbook(ctx, &deploysv1.RunRunbookRequest{Repository: repo, Runbook: name, Options: opts, OnBehalfOf: actor})
		if err != nil {
			return "", err
		}
		r := resp.GetRun()
		return fmt.Sprintf("%s ran runbook %s: run %s %s%s", actor, name, r.GetRunId(), r.GetStatus(), reasonText(r.GetReason())), nil
	default:
		return "", &badAction{fmt.Sprintf("unknown action %q: want approve, promote, rollback, lock, unlock or runbook", a)}
	}
}

func reasonText(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}
