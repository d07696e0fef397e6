package dashboards

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shiploop/shiploop/pkg/gatepolicy"
	"github.com/shiploop/shiploop/pkg/server"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/dashboards/badge"
	"github.com/shiploop/shiploop/services/dashboards/dora"
)

//go:embed web/*.html web/*.js
var webFS embed.FS

type pages struct {
	s    *Service
	tmpl *template.Template
}

func newPages(s *Service) (*pages, error) {
	funcs := template.FuncMap{
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return dora.FormatDuration(time.Since(t)) + " ago"
		},
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"short": func(sha string) string {
			if len(sha) > 7 {
				return sha[:7]
			}
			return sha
		},
		"ms": func(ms int64) string {
			if ms <= 0 {
				return ""
			}
			return (time.Duration(ms) * time.Millisecond).Round(10 * time.Millisecond).String()
		},
		"pct": gatepolicy.FormatPercent,
		// value renders a gate condition's value: percentages as coverage
		// is shown everywhere ("50.0%"), counts as numbers.
		"value": func(metric string, v float64) string {
			if m, _ := gatepolicy.Lookup(metric); m.Unit == "%" {
				return gatepolicy.FormatPercent(v)
			}
			return strconv.FormatFloat(v, 'g', 6, 64)
		},
		"num":  func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) },
		"join": strings.Join,
	}
	t, err := template.New("").Funcs(funcs).ParseFS(webFS, "web/*.html")
	if err != nil {
		return nil, err
	}
	return &pages{s: s, tmpl: t}, nil
}

// Routes mounts the UI on mux: "/" exactly, /changes/, /environments
// (and /environments/{repo...}/{env}, an environment's history and
// actions: GET, and POST for its forms), /errors, /dora, /events, /badges/, /static/live.js, /repos (and
// /repos/{owner}/{name}[/builds], a repository's history and schedules;
// POST for the schedules' pause and resume forms), /builds (every
// build), /builds/{id} (the build page, the link commit statuses carry) and
// /builds/{id}/jobs/{job}/log.txt. Nothing else: /hooks/, /api/,
// /graphite/, /healthz, /login, /builds/{id}/artifacts/ and
// /builds/{id}/reports/ belong to others. With
// Config.Auth on, every route but the badges and the script needs read
// scope.
func (s *Service) Routes(mux *http.ServeMux) {
	p := s.pages
	read := func(pattern string, h http.HandlerFunc) {
		mux.Handle(pattern, s.cfg.Auth.Web(server.ScopeRead, h))
	}
	read("GET /{$}", p.overview)
	read("GET /changes/{chain}", p.pipeline)
	read("GET /changes/{chain}/jobs/{job}/log", p.logStream)
	read("GET /builds/{id}", p.build)
	read("GET /builds/{id}/jobs/{job}/log.txt", p.rawLog)
	read("GET /builds/{id}/tests", p.buildTests)
	read("GET /builds", p.allHistory)
	read("GET /repos", p.repos)
	read("GET /repos/{repo...}", p.repoHistory)
	// The repository page's schedule pause and resume forms: write scope,
	// same origin only, as the environment page's.
	mux.Handle("POST /repos/{repo...}", s.cfg.Auth.WebForm(server.ScopeWrite, http.HandlerFunc(p.scheduleAction)))
	read("GET /environments", p.environments)
	read("GET /environments/{path...}", p.environment)
	// The environment page's action forms: write scope from a bearer or
	// the session cookie, same origin only (CSRF), see Auth.WebForm.
	mux.Handle("POST /environments/{path...}", s.cfg.Auth.WebForm(server.ScopeWrite, http.HandlerFunc(p.envAction)))
	read("GET /errors", p.errors)
	read("GET /errors/{issue}", p.errorIssue)
	read("GET /dora", p.dora)
	read("GET /events", p.events)
	// Public: READMEs embed badges (a status, nothing more), and the
	// pages' script holds no data.
	mux.HandleFunc("GET /badges/{path...}", p.badge)
	mux.HandleFunc("GET /static/live.js", p.liveJS)
}

// liveJS is the pages' live-update script: a file, not an inline
// <script>, so the Content-Security-Policy can forbid inline scripts.
func (p *pages) liveJS(w http.ResponseWriter, r *http.Request) {
	b, err := webFS.ReadFile("web/live.js")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

type pageData struct {
	Title, Nav string
	Data       any
	// Auth: the UI needs a login (shows "Log out").
	Auth bool
}

func (p *pages) render(w http.ResponseWriter, name string, d pageData) {
	d.Auth = p.s.cfg.Auth.Enabled()
	var b strings.Builder
	if err := p.tmpl.ExecuteTemplate(&b, name, d); err != nil {
		p.s.log.Error("rendering page", "page", name, "err", err)
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write([]byte(b.String()))
}

func (p *pages) fail(w http.ResponseWriter, err error) {
	if errors.Is(err, errNotFound) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	p.s.log.Error("dashboards page", "err", err)
	http.Error(w, "reading the dashboards failed: "+err.Error(), http.StatusServiceUnavailable)
}

func (p *pages) overview(w http.ResponseWriter, r *http.Request) {
	repos, err := p.s.overview(r.Context(), r.URL.Query().Get("repo"))
	if err != nil {
		p.fail(w, err)
		return
	}
	p.render(w, "overview", pageData{Title: "Overview", Nav: "overview", Data: repos})
}

func (p *pages) pipeline(w http.ResponseWriter, r *http.Request) {
	pv, err := p.s.pipeline(r.Context(), r.PathValue("chain"))
	if err != nil {
		p.fail(w, err)
		return
	}
	for i := range pv.Builds {
		for j := range pv.Builds[i].Jobs {
			job := &pv.Builds[i].Jobs[j]
			lines := p.s.storedLog(r.Context(), job.ID)
			if len(lines) > 2000 {
				lines = lines[len(lines)-2000:]
			}
			for _, l := range lines {
				job.LastLine = l.GetNumber()
				if l.GetStream() == "end" {
					job.Live = false
					continue
				}
				job.Log = append(job.Log, logLineView{Number: l.GetNumber(), Step: l.GetStep(), Stream: l.GetStream(), Text: l.GetText()})
			}
		}
	}
	p.render(w, "pipeline", pageData{Title: pv.Repository + " " + pv.Branch, Nav: "overview", Data: pv})
}

func (p *pages) environments(w http.ResponseWriter, r *http.Request) {
	envs, err := p.s.environments(r.Context(), r.URL.Query().Get("repo"))
	if err != nil {
		p.fail(w, err)
		return
	}
	p.render(w, "environments", pageData{Title: "Environments", Nav: "environments", Data: envs})
}

type errorGroup struct {
	Repository, Release, Environment string
	Opened, Regressed, Resolved      int
	Issues                           []issueView
}

func (p *pages) errors(w http.ResponseWriter, r *http.Request) {
	where, args := `ORDER BY at DESC LIMIT 2000`, []any(nil)
	if repo := r.URL.Query().Get("repo"); repo != "" {
		where, args = `WHERE repository = $1 `+where, []any{repo}
	}
	issues, err := p.s.issues(r.Context(), where, args...)
	if err != nil {
		p.fail(w, err)
		return
	}
	var groups []*errorGroup
	idx := map[[3]string]*errorGroup{}
	for _, is := range issues {
		k := [3]string{is.Repository, is.Release, is.Env}
		g := idx[k]
		if g == nil {
			g = &errorGroup{Repository: is.Repository, Release: is.Release, Environment: is.Env}
			idx[k] = g
			groups = append(groups, g)
		}
		switch is.Kind {
		case "opened":
			g.Opened++
		case "regressed":
			g.Regressed++
		}
		if !is.ResolvedAt.IsZero() {
			g.Resolved++
		}
		g.Issues = append(g.Issues, is)
	}
	p.render(w, "errors", pageData{Title: "Errors", Nav: "errors", Data: groups})
}

// invalidError is a bad request parameter.
type invalidError struct{ error }

// doraReport is one computation with its display.
type doraReport struct {
	Repository, Period, Profile string
	Repositories                []string
	Periods                     []string
	Profiles                    []dora.Profile
	From, To                    time.Time
	Result                      dora.Result
	Metrics                     []doraMetric
	Charts                      []template.HTML
}

type doraMetric struct {
	Name, Title, Display, Bucket string
	Value                        float64
	Has                          bool
}

var doraPeriods = []string{"7d", "30d", "90d", "180d", "365d"}

func (s *Service) doraReport(ctx context.Context, repo, period, profile string) (*doraReport, error) {
	span, err := dora.Period(period)
	if err != nil {
		return nil, invalidError{err}
	}
	prof, err := dora.LookupProfile(profile)
	if err != nil {
		return nil, invalidError{err}
	}
	to := s.cfg.Now().UTC()
	from := to.Add(-span)
	in, err := s.doraInput(ctx, repo, from.Add(-span), to) // the span before, for restores across the edge
	if err != nil {
		return nil, err
	}
	in.From = from
	res := dora.Compute(in)
	rep := &doraReport{Repository: repo, Period: period, Profile: prof.Name, From: from, To: to, Result: res, Periods: doraPeriods}
	if rep.Period == "" {
		rep.Period = "30d"
	}
	for _, n := range dora.ProfileNames {
		rep.Profiles = append(rep.Profiles, dora.Profiles[n])
	}
	df := fmt.Sprintf("%.2f/day", res.DeploysPerDay)
	if res.DeploysPerDay < 1 && res.Deploys > 0 {
		df = fmt.Sprintf("%.1f/week", res.DeploysPerDay*7)
	}
	ltd, ttr := "no data", "no data"
	if res.HasLeadTime {
		ltd = dora.FormatDuration(res.LeadTime)
	}
	if res.HasTimeToRestore {
		ttr = dora.FormatDuration(res.TimeToRestore)
	}
	cfr, rework := "no data", "no data"
	if res.Deploys > 0 {
		cfr = fmt.Sprintf("%.0f%%", 100*res.ChangeFailureRate)
		rework = fmt.Sprintf("%.0f%%", 100*res.ReworkRate)
	}
	rep.Metrics = []doraMetric{
		{Name: "deployment_frequency", Title: "Deployment frequency", Display: df, Value: res.DeploysPerDay, Bucket: prof.DeploymentFrequency(res), Has: res.Deploys > 0},
		{Name: "lead_time", Title: "Lead time for changes", Display: ltd, Value: res.LeadTime.Seconds(), Bucket: prof.LeadTime(res), Has: res.HasLeadTime},
		{Name: "change_failure_rate", Title: "Change failure rate", Display: cfr, Value: res.ChangeFailureRate, Bucket: prof.ChangeFailureRate(res), Has: res.Deploys > 0},
		{Name: "time_to_restore", Title: "Time to restore", Display: ttr, Value: res.TimeToRestore.Seconds(), Bucket: prof.TimeToRestore(res), Has: res.HasTimeToRestore},
		{Name: "rework_rate", Title: "Rework rate", Display: rework, Value: res.ReworkRate, Has: res.Deploys > 0},
	}
	rep.Charts = doraCharts(in, from, to)
	return rep, nil
}

func (p *pages) dora(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rep, err := p.s.doraReport(r.Context(), q.Get("repo"), q.Get("period"), q.Get("profile"))
	var inv invalidError
	if errors.As(err, &inv) {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err != nil {
		p.fail(w, err)
		return
	}
	if rep.Repositories, err = p.s.repositories(r.Context()); err != nil {
		p.fail(w, err)
		return
	}
	p.render(w, "dora", pageData{Title: "DORA", Nav: "dora", Data: rep})
}

// events is the live-update stream: an "update" event each time the read
// models change; the page then re-reads itself.
func (p *pages) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch, cancel := p.s.hub.subscribe()
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	_, _ = fmt.Fprint(w, "retry: 2000\n: connected\n\n")
	fl.Flush()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case v := <-ch:
			if _, err := fmt.Fprintf(w, "event: update\ndata: %d\n\n", v); err != nil {
				return
			}
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		}
		fl.Flush()
	}
}

// logStream sends a job's log lines after ?after=N as server-sent events
// ("line" with the JSON line, then "end").
func (p *pages) logStream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	if le := r.Header.Get("Last-Event-ID"); le != "" {
		if n, err := strconv.ParseUint(le, 10, 64); err == nil {
			after = n
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	_, _ = fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	err := p.s.followLog(r.Context(), r.PathValue("job"), after, func(l *eventsv1.LogLine) error {
		data, _ := json.Marshal(map[string]any{"n": l.GetNumber(), "step": l.GetStep(), "stream": l.GetStream(), "text": l.GetText()})
		if _, err := fmt.Fprintf(w, "id: %d\nevent: line\ndata: %s\n\n", l.GetNumber(), data); err != nil {
			return err
		}
		fl.Flush()
		return nil
	})
	if err == nil && r.Context().Err() == nil {
		_, _ = fmt.Fprint(w, "event: end\ndata: {}\n\n")
		fl.Flush()
	}
}

// badge serves /badges/{repo}/{build|tests|coverage|gate}.{svg|json} and
// /badges/{repo}/deploy/{env}.{svg|json}; ?style= picks the style and
// ?branch= the branch (default: the repository's default branch).
func (p *pages) badge(w http.ResponseWriter, r *http.Request) {
	path := r.PathValue("path")
	ext := ""
	switch {
	case strings.HasSuffix(path, ".svg"):
		ext, path = "svg", strings.TrimSuffix(path, ".svg")
	case strings.HasSuffix(path, ".json"):
		ext, path = "json", strings.TrimSuffix(path, ".json")
	default:
		http.Error(w, "badge path must end in .svg or .json: /badges/{repo}/{build|tests|coverage|gate}.svg or /badges/{repo}/deploy/{env}.svg", http.StatusNotFound)
		return
	}
	style, err := badge.ParseStyle(r.URL.Query().Get("style"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var repo, kind, env string
	if i := strings.LastIndex(path, "/deploy/"); i > 0 {
		repo, kind, env = path[:i], "deploy", path[i+len("/deploy/"):]
	} else if i := strings.LastIndexByte(path, '/'); i > 0 {
		repo, kind = path[:i], path[i+1:]
	}
	if repo == "" || !slices.Contains([]string{"build", "tests", "coverage", "gate", "deploy"}, kind) || (kind == "deploy" && env == "") {
		http.Error(w, fmt.Sprintf("unknown badge %q: want /badges/{repo}/{build|tests|coverage|gate}.%s or /badges/{repo}/deploy/{env}.%s", r.PathValue("path"), ext, ext), http.StatusNotFound)
		return
	}
	b, isErr, err := p.s.badgeFor(r.Context(), repo, kind, env, r.URL.Query().Get("branch"))
	if err != nil {
		p.fail(w, err)
		return
	}
	b.Style = style
	var body []byte
	maxAge := int(p.s.cfg.BadgeMaxAge / time.Second)
	if ext == "svg" {
		body = []byte(badge.SVG(b))
		w.Header().Set("Content-Type", "image/svg+xml;charset=utf-8")
	} else {
		body = badge.EndpointJSON(b, isErr, maxAge)
		w.Header().Set("Content-Type", "application/json")
	}
	hsh := fnv.New64a()
	_, _ = hsh.Write(body)
	etag := fmt.Sprintf(`"%016x"`, hsh.Sum64())
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", maxAge))
	if match := r.Header.Get("If-None-Match"); match != "" && (match == etag || match == "*" || slices.Contains(strings.Split(strings.ReplaceAll(match, " ", ""), ","), etag)) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(body)
}

// badgeFor reads what a badge says; isErr when there is nothing to say
// (unknown repository, no build yet).
func (s *Service) badgeFor(ctx context.Context, repo, kind, env, branch string) (badge.Badge, bool, error) {
	b := badge.Badge{Label: kind, Color: "lightgrey"}
	if kind == "deploy" {
		b.Label = env
		var release, status string
		err := s.db.QueryRowContext(ctx, `SELECT release, status FROM dash_environments WHERE repository = $1 AND name = $2`, repo, env).Scan(&release, &status)
		if errors.Is(err, sql.ErrNoRows) || err == nil && release == "" {
			b.Message = "not deployed"
			return b, true, nil
		}
		if err != nil {
			return b, false, err
		}
		b.Message, b.Color = release, "blue"
		return b, false, nil
	}
	if branch == "" {
		err := s.db.QueryRowContext(ctx, `SELECT default_branch FROM dash_repos WHERE name = $1`, repo).Scan(&branch)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return b, false, err
		}
	}
	// The newest finished build of the branch ("" when the default branch
	// is unknown: the newest of any branch).
	q := `SELECT b.id, b.status FROM dash_builds b WHERE b.repository = $1 AND b.status NOT IN ('queued', 'running')`
	args := []any{repo}
	if branch != "" {
		q += ` AND b.ref = $2`
		args = append(args, "refs/heads/"+branch)
	}
	var id, status string
	err := s.db.QueryRowContext(ctx, q+` ORDER BY b.created_at DESC LIMIT 1`, args...).Scan(&id, &status)
	if errors.Is(err, sql.ErrNoRows) {
		b.Message = "unknown"
		return b, true, nil
	}
	if err != nil {
		return b, false, err
	}
	switch kind {
	case "build":
		b.Message, b.Color = buildBadge(status)
		return b, false, nil
	case "tests", "coverage":
		var passed, failed, skipped, covered, coverable int64
		var runStatus string
		err := s.db.QueryRowContext(ctx, `SELECT status, passed, failed, skipped, covered, coverable FROM dash_testruns WHERE build_id = $1 AND status <> 'running' ORDER BY at DESC LIMIT 1`, id).
			Scan(&runStatus, &passed, &failed, &skipped, &covered, &coverable)
		if errors.Is(err, sql.ErrNoRows) {
			b.Message = "unknown"
			return b, true, nil
		}
		if err != nil {
			return b, false, err
		}
		if kind == "tests" {
			b.Message, b.Color = testsBadge(runStatus, passed, failed, skipped)
			return b, false, nil
		}
		if coverable == 0 {
			b.Message = "unknown"
			return b, true, nil
		}
		pct := 100 * float64(covered) / float64(coverable)
		b.Message, b.Color = gatepolicy.FormatPercent(pct), coverageColor(pct)
		return b, false, nil
	default: // gate
		var st string
		err := s.db.QueryRowContext(ctx, `SELECT status FROM dash_gates WHERE build_id = $1`, id).Scan(&st)
		if errors.Is(err, sql.ErrNoRows) {
			b.Message = "unknown"
			return b, true, nil
		}
		if err != nil {
			return b, false, err
		}
		b.Message = st
		switch st {
		case "passed":
			b.Color = "brightgreen"
		case "failed":
			b.Color = "red"
		}
		return b, false, nil
	}
}

// testsBadge is the tests badge of a finished run: never green without a
// passing test. A run in error is red ("error", or its counts), one that
// ran no test grey ("no tests").
func testsBadge(status string, passed, failed, skipped int64) (message, color string) {
	switch {
	case failed > 0:
		message, color = fmt.Sprintf("%d passed, %d failed", passed, failed), "red"
	case status == "error" && passed == 0:
		return "error, no tests", "red"
	case passed == 0 && skipped == 0:
		return "no tests", "lightgrey"
	case passed == 0:
		message, color = "0 passed", "lightgrey"
	case status == "error":
		message, color = fmt.Sprintf("%d passed, error", passed), "red"
	default:
		message, color = fmt.Sprintf("%d passed", passed), "brightgreen"
	}
	if skipped > 0 {
		message += fmt.Sprintf(", %d skipped", skipped)
	}
	return message, color
}

func buildBadge(status string) (string, string) {
	switch status {
	case "success":
		return "passing", "brightgreen"
	case "failure":
		return "failing", "red"
	case "error":
		return "error", "red"
	case "canceled":
		return "canceled", "lightgrey"
	case "skipped":
		return "skipped", "lightgrey"
	}
	return status, "lightgrey"
}

func coverageColor(pct float64) string {
	switch {
	case pct >= 90:
		return "brightgreen"
	case pct >= 80:
		return "green"
	case pct >= 70:
		return "yellowgreen"
	case pct >= 60:
		return "yellow"
	case pct >= 50:
		return "orange"
	}
	return "red"
}
