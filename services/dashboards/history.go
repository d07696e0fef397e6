package dashboards

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The repositories page and a repository's build history.

// repoSummary is one row of /repos.
type repoSummary struct {
	Name                  string
	LastBuildID           string
	LastBuildStatus       string
	LastBuildNumber       int64
	LastBuildBranch       string
	Branches, Builds      int64
	LastActivity          time.Time
	DefaultBranch         string
	LastBuildCreatedNanos int64
}

// repoSummaries reads every repository with its newest build, its branch
// count and its last activity (a push or a build): four grouped queries.
func (s *Service) repoSummaries(ctx context.Context) ([]repoSummary, error) {
	byName := map[string]*repoSummary{}
	get := func(name string) *repoSummary {
		r := byName[name]
		if r == nil {
			r = &repoSummary{Name: name}
			byName[name] = r
		}
		return r
	}
	rows, err := s.db.QueryContext(ctx, `SELECT repository, COUNT(*), MAX(pushed_at) FROM dash_branches GROUP BY repository`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name string
		var n, last int64
		if err := rows.Scan(&name, &n, &last); err != nil {
			rows.Close()
			return nil, err
		}
		r := get(name)
		r.Branches, r.LastActivity = n, ts(last)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = s.db.QueryContext(ctx, `SELECT b.repository, b.id, b.number, b.status, b.branch, b.created_at, b.finished_at, x.n
		FROM dash_builds b JOIN (SELECT repository, MAX(created_at) AS m, COUNT(*) AS n FROM dash_builds GROUP BY repository) x
		ON x.repository = b.repository AND x.m = b.created_at`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name, id, status, branch string
		var number, created, finished, n int64
		if err := rows.Scan(&name, &id, &number, &status, &branch, &created, &finished, &n); err != nil {
			rows.Close()
			return nil, err
		}
		r := get(name)
		if r.LastBuildID != "" && (r.LastBuildCreatedNanos > created || r.LastBuildNumber > number) {
			continue // a tie on created_at: the higher number wins
		}
		r.LastBuildID, r.LastBuildNumber, r.LastBuildStatus, r.LastBuildBranch, r.Builds, r.LastBuildCreatedNanos = id, number, status, branch, n, created
		if t := ts(max(created, finished)); t.After(r.LastActivity) {
			r.LastActivity = t
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = s.db.QueryContext(ctx, `SELECT name, default_branch FROM dash_repos`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			rows.Close()
			return nil, err
		}
		if r := byName[name]; r != nil {
			r.DefaultBranch = def
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]repoSummary, 0, len(byName))
	for _, r := range byName {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b repoSummary) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// historyFilter is what a history page shows.
type historyFilter struct {
	Repository, Branch, Status, Event string
	// Before is the cursor: builds strictly older than (created_at, id).
	BeforeAt int64
	BeforeID string
	Limit    int
}

// historyRow is one build in a history.
type historyRow struct {
	ID, ChainID, Repository, Branch, Event, Status, Version, Commit, Message, Author string
	Number, DurationMS                                                               int64
	CreatedAt                                                                        time.Time
	createdNanos                                                                     int64
}

// historyPage is a history page's data.
type historyPage struct {
	Repository string
	Filter     historyFilter
	Rows       []historyRow
	// Branches are the filter's choices: the repository's branches.
	Branches []string
	Statuses []string
	Events   []string
	// Older links the next page ("" on the last); Newest the first.
	Older, Newest string
	// Base is the page's path.
	Base string
	// Schedules: the repository's schedules (nil: all builds, or builds
	// not reachable).
	Schedules *repoSchedules
}

var (
	historyStatuses = []string{"queued", "running", "success", "failure", "error", "canceled", "skipped"}
	historyEvents   = []string{"push", "tag", "pull_request", "manual", "cron"}
)

// history reads a page of builds, newest first, by keyset on
// (created_at, id).
func (s *Service) history(ctx context.Context, f historyFilter) ([]historyRow, bool, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Repository != "" {
		where = append(where, "b.repository = "+arg(f.Repository))
	}
	if f.Branch != "" {
		where = append(where, "b.branch = "+arg(f.Branch))
	}
	if f.Status != "" {
		where = append(where, "b.status = "+arg(f.Status))
	}
	if f.Event != "" {
		where = append(where, "b.event = "+arg(f.Event))
	}
	if f.BeforeID != "" {
		c := arg(f.BeforeAt)
		where = append(where, "(b.created_at < "+c+" OR (b.created_at = "+c+" AND b.id < "+arg(f.BeforeID)+"))")
	}
	q := `SELECT b.id, b.chain_id, b.repository, b.branch, b.event, b.status, b.version, b.commit_sha, b.number, b.duration_ms, b.created_at,
		COALESCE(c.message, ''), COALESCE(c.author, '') FROM dash_builds b LEFT JOIN dash_changes c ON c.chain_id = b.chain_id`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY b.created_at DESC, b.id DESC LIMIT " + arg(f.Limit+1)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var out []historyRow
	for rows.Next() {
		var h historyRow
		if err := rows.Scan(&h.ID, &h.ChainID, &h.Repository, &h.Branch, &h.Event, &h.Status, &h.Version, &h.Commit, &h.Number, &h.DurationMS,
			&h.createdNanos, &h.Message, &h.Author); err != nil {
			return nil, false, err
		}
		h.CreatedAt = ts(h.createdNanos)
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	more := len(out) > f.Limit
	if more {
		out = out[:f.Limit]
	}
	return out, more, nil
}

func (s *Service) branchesOf(ctx context.Context, repo string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT branch FROM dash_branches WHERE repository = $1 ORDER BY branch`, repo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

const historyPageSize = 50

func (p *pages) repos(w http.ResponseWriter, r *http.Request) {
	rs, err := p.s.repoSummaries(r.Context())
	if err != nil {
		p.fail(w, err)
		return
	}
	p.render(w, "repos", pageData{Title: "Repositories", Nav: "repos", Data: rs})
}

// repoHistory serves /repos/{owner}/{name} and /repos/{owner}/{name}/builds
// (repository names hold slashes: the path is matched whole).
func (p *pages) repoHistory(w http.ResponseWriter, r *http.Request) {
	repo := strings.Trim(r.PathValue("repo"), "/")
	repo = strings.TrimSuffix(repo, "/builds")
	if !strings.Contains(repo, "/") {
		http.Error(w, fmt.Sprintf("no repository %q: repositories are owner/name (/repos/{owner}/{name})", repo), http.StatusNotFound)
		return
	}
	p.historyFor(w, r, repo, "/repos/"+repo)
}

// allHistory serves /builds: every repository's builds.
func (p *pages) allHistory(w http.ResponseWriter, r *http.Request) {
	p.historyFor(w, r, "", "/builds")
}

func (p *pages) historyFor(w http.ResponseWriter, r *http.Request, repo, base string) {
	q := r.URL.Query()
	f := historyFilter{Repository: repo, Branch: q.Get("branch"), Status: q.Get("status"), Event: q.Get("event"), Limit: historyPageSize}
	if f.Status != "" && !slices.Contains(historyStatuses, f.Status) {
		http.Error(w, fmt.Sprintf("unknown status %q (one of %s)", f.Status, strings.Join(historyStatuses, ", ")), http.StatusBadRequest)
		return
	}
	if f.Event != "" && !slices.Contains(historyEvents, f.Event) {
		http.Error(w, fmt.Sprintf("unknown event %q (one of %s)", f.Event, strings.Join(historyEvents, ", ")), http.StatusBadRequest)
		return
	}
	if before := q.Get("before"); before != "" {
		at, id, ok := strings.Cut(before, "_")
		n, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil || id == "" {
			http.Error(w, fmt.Sprintf("bad cursor %q", before), http.StatusBadRequest)
			return
		}
		f.BeforeAt, f.BeforeID = n, id
	}
	rows, more, err := p.s.history(r.Context(), f)
	if err != nil {
		p.fail(w, err)
		return
	}
	if repo != "" && len(rows) == 0 && f.BeforeID == "" && f.Branch == "" && f.Status == "" && f.Event == "" {
		var n int
		if err := p.s.db.QueryRowContext(r.Context(), `SELECT COUNT(*) FROM dash_branches WHERE repository = $1`, repo).Scan(&n); err != nil {
			p.fail(w, err)
			return
		}
		if n == 0 {
			http.Error(w, fmt.Sprintf("repository %q has no builds or changes (yet)", repo), http.StatusNotFound)
			return
		}
	}
	hp := &historyPage{Repository: repo, Filter: f, Rows: rows, Statuses: historyStatuses, Events: historyEvents, Base: base}
	if repo != "" {
		if hp.Branches, err = p.s.branchesOf(r.Context(), repo); err != nil {
			p.fail(w, err)
			return
		}
		if f.Branch != "" && !slices.Contains(hp.Branches, f.Branch) {
			hp.Branches = append(hp.Branches, f.Branch)
		}
		hp.Schedules = p.repoSchedules(r, repo)
	}
	link := func(before string) string {
		v := url.Values{}
		for k, val := range map[string]string{"branch": f.Branch, "status": f.Status, "event": f.Event, "before": before} {
			if val != "" {
				v.Set(k, val)
			}
		}
		if len(v) == 0 {
			return base
		}
		return base + "?" + v.Encode()
	}
	if more {
		last := rows[len(rows)-1]
		hp.Older = link(strconv.FormatInt(last.createdNanos, 10) + "_" + last.ID)
	}
	if f.BeforeID != "" {
		hp.Newest = link("")
	}
	title := "Builds"
	if repo != "" {
		title = repo
	}
	p.render(w, "history", pageData{Title: title, Nav: "repos", Data: hp})
}
