package dashboards

// The repository page's schedules: the default branch's .shiploop.yml
// schedules, read from BuildService (ListSchedules) when Config.Builds is
// set, with pause and resume forms (SetSchedulePaused) for a session of
// write scope.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/shiploop/shiploop/pkg/server"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
)

// scheduleView is one schedule on the repository page.
type scheduleView struct {
	Name, Cron, Timezone, Branch string
	// Runbook (and its Environment) for a schedule that runs a runbook.
	Runbook, Environment string
	Paused               bool
	// NextRun and LastRun are zero when there is none (paused; never fired).
	NextRun, LastRun time.Time
}

// repoSchedules is the repository page's schedules section.
type repoSchedules struct {
	Schedules []scheduleView
	// Unavailable says why the schedules could not be read ("" when read).
	Unavailable string
	// CanPause: the session has write scope; the forms are rendered only then.
	CanPause bool
	// Flash: the outcome of the action just taken (?done=, ?error=).
	Done, Error string
}

// schedulesTimeout bounds the page's call to builds: a builds service
// down or slow leaves the section saying so, not the page hanging.
const schedulesTimeout = 3 * time.Second

// repoSchedules reads repo's schedules for the page; nil when the
// dashboards do not reach builds.
func (p *pages) repoSchedules(r *http.Request, repo string) *repoSchedules {
	b := p.s.cfg.Builds
	if b == nil {
		return nil
	}
	v := &repoSchedules{Done: r.URL.Query().Get("done"), Error: r.URL.Query().Get("error")}
	ctx, cancel := context.WithTimeout(r.Context(), schedulesTimeout)
	defer cancel()
	resp, err := b.ListSchedules(ctx, &buildsv1.ListSchedulesRequest{Repository: repo})
	if err != nil {
		v.Unavailable = "schedules unavailable: " + grpcMessage(err)
		return v
	}
	for _, s := range resp.GetSchedules() {
		sv := scheduleView{Name: s.GetName(), Cron: s.GetCron(), Timezone: s.GetTimezone(), Branch: s.GetBranch(), Paused: s.GetPaused(),
			Runbook: s.GetRunbook(), Environment: s.GetEnvironment()}
		if s.GetNextRun() != nil {
			sv.NextRun = s.GetNextRun().AsTime()
		}
		if s.GetLastRun() != nil {
			sv.LastRun = s.GetLastRun().AsTime()
		}
		v.Schedules = append(v.Schedules, sv)
	}
	pr, signedIn := server.PrincipalFrom(r.Context())
	v.CanPause = !p.s.cfg.Auth.Enabled() || signedIn && pr.Scope >= server.ScopeWrite
	return v
}

func grpcMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// scheduleAction is a POST of the repository page's forms: action pause or
// resume, name the schedule. Write scope, same origin (Auth.WebForm).
func (p *pages) scheduleAction(w http.ResponseWriter, r *http.Request) {
	repo := strings.TrimSuffix(strings.Trim(r.PathValue("repo"), "/"), "/builds")
	if !strings.Contains(repo, "/") {
		http.Error(w, fmt.Sprintf("no repository %q: repositories are owner/name (/repos/{owner}/{name})", repo), http.StatusNotFound)
		return
	}
	if p.s.cfg.Builds == nil {
		http.Error(w, "this server's dashboards do not reach the builds service", http.StatusServiceUnavailable)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "reading the form: "+err.Error(), http.StatusBadRequest)
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	var paused bool
	switch a := r.PostForm.Get("action"); a {
	case "pause":
		paused = true
	case "resume":
	default:
		http.Error(w, fmt.Sprintf("unknown action %q (pause or resume)", a), http.StatusBadRequest)
		return
	}
	if name == "" {
		http.Error(w, "no schedule name", http.StatusBadRequest)
		return
	}
	actor := "anonymous"
	if pr, ok := server.PrincipalFrom(r.Context()); ok && pr.Name != "" {
		actor = pr.Name
	}
	target := "/repos/" + repo
	_, err := p.s.cfg.Builds.SetSchedulePaused(r.Context(), &buildsv1.SetSchedulePausedRequest{Repository: repo, Name: name, Paused: paused})
	if err != nil {
		http.Redirect(w, r, target+"?error="+url.QueryEscape(grpcMessage(err)), http.StatusSeeOther)
		return
	}
	done := fmt.Sprintf("%s resumed schedule %s", actor, name)
	if paused {
		done = fmt.Sprintf("%s paused schedule %s", actor, name)
	}
	p.s.log.Info("schedule paused from the dashboard", "repository", repo, "schedule", name, "paused", paused, "by", actor)
	http.Redirect(w, r, target+"?done="+url.QueryEscape(done), http.StatusSeeOther)
}
