package errortrack

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Releases over the web API. Versions are organization-wide; a release's
// projects are its rows in releases (which SDK events fill too), its
// metadata is release_meta, made on first use.

// releaseBody is what sentry-cli sends to create or update a release:
// NewRelease and UpdatedRelease in src/api/mod.rs (getsentry/sentry-cli).
type releaseBody struct {
	Version      *string           `json:"version"`
	Projects     []json.RawMessage `json:"projects"` // slugs, or ids as numbers
	Ref          *string           `json:"ref"`
	URL          *string           `json:"url"`
	DateStarted  *time.Time        `json:"dateStarted"`
	DateReleased *time.Time        `json:"dateReleased"`
	Status       *string           `json:"status"`
	Refs         *[]refBody        `json:"refs"`
	Commits      *[]commitBody     `json:"commits"`
}

// refBody is sentry-cli's Ref (set-commits --commit REPO@[PREV..]SHA).
type refBody struct {
	Repository     string  `json:"repository"`
	Commit         string  `json:"commit"`
	PreviousCommit *string `json:"previousCommit"`
}

// commitBody is sentry-cli's GitCommit (set-commits --auto/--local).
type commitBody struct {
	ID          string  `json:"id"`
	Repository  string  `json:"repository"`
	Message     *string `json:"message"`
	AuthorName  *string `json:"author_name"`
	AuthorEmail *string `json:"author_email"`
	Timestamp   *string `json:"timestamp"`
	PatchSet    []struct {
		Path string `json:"path"`
		Type string `json:"type"`
	} `json:"patch_set"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// resolveProjects maps the projects of a request (slugs or numeric ids).
func resolveProjects(ctx context.Context, q queryer, raw []json.RawMessage) ([]project, error) {
	var out []project
	for _, r := range raw {
		var ref string
		if err := json.Unmarshal(r, &ref); err != nil {
			var n int64
			if json.Unmarshal(r, &n) != nil {
				return nil, badRequest("projects: want slugs or ids")
			}
			ref = strconv.FormatInt(n, 10)
		}
		p, err := findProject(ctx, q, ref)
		if errors.Is(err, errNotFound) {
			return nil, badRequest("Invalid project ids or slugs: %q", ref)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ensureRelease makes release_meta's row for version when the release
// exists only through SDK events; errNotFound when it does not exist.
func ensureRelease(ctx context.Context, q queryer, version string) error {
	var first sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MIN(first_seen) FROM releases WHERE version = $1`, version).Scan(&first); err != nil {
		return err
	}
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM release_meta WHERE version = $1`, version).Scan(&one)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if !first.Valid {
		return errNotFound
	}
	_, err = q.ExecContext(ctx, `INSERT INTO release_meta (version, date_created) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING`, version, first.Int64)
	return err
}

// applyRelease writes what a create or update body sets.
func applyRelease(ctx context.Context, q queryer, version string, b *releaseBody, projects []project) error {
	now := time.Now().UnixNano()
	for _, p := range projects {
		if _, err := q.ExecContext(ctx, `INSERT INTO releases (project_id, version, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, p.id, version, now); err != nil {
			return err
		}
	}
	set := func(col string, v any) error {
		_, err := q.ExecContext(ctx, `UPDATE release_meta SET `+col+` = $1 WHERE version = $2`, v, version)
		return err
	}
	if b.Ref != nil {
		if err := set("ref", *b.Ref); err != nil {
			return err
		}
	}
	if b.URL != nil {
		if err := set("url", *b.URL); err != nil {
			return err
		}
	}
	if b.DateStarted != nil {
		if err := set("date_started", b.DateStarted.UnixNano()); err != nil {
			return err
		}
	}
	if b.DateReleased != nil {
		if err := set("date_released", b.DateReleased.UnixNano()); err != nil {
			return err
		}
	}
	if b.Status != nil {
		st := *b.Status
		if st != "open" && st != "archived" {
			return badRequest("status: want open or archived")
		}
		if err := set("status", st); err != nil {
			return err
		}
	}
	if b.Refs != nil || b.Commits != nil {
		return setCommits(ctx, q, version, b)
	}
	return nil
}

// deployCommit is a commit as deploys.commits holds it (loadDeploy).
type deployCommit struct {
	SHA, Message, Author string
	Files                []string
}

// setCommits replaces a release's commits: refs record each repository's
// head commit (shiploop has no repository integration to list the range),
// commits record what sentry-cli read from local git. Deploys of the
// release recorded without commits get them, so suspect commits work.
func setCommits(ctx context.Context, q queryer, version string, b *releaseBody) error {
	if _, err := q.ExecContext(ctx, `DELETE FROM release_commits WHERE version = $1`, version); err != nil {
		return err
	}
	var dc []deployCommit
	pos := 0
	ins := func(repo, id, prev, msg, name, email string, at int64, files []string) error {
		if id == "" {
			return badRequest("commits: each needs an id")
		}
		fj, _ := json.Marshal(files)
		if files == nil {
			fj = []byte("[]")
		}
		_, err := q.ExecContext(ctx, `INSERT INTO release_commits (version, position, repository, commit_id, previous_commit, message, author_name, author_email, committed_at, files)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, version, pos, repo, id, prev, msg, name, email, at, string(fj))
		pos++
		author := name
		if email != "" {
			author = strings.TrimSpace(name + " <" + email + ">")
		}
		dc = append(dc, deployCommit{SHA: id, Message: msg, Author: author, Files: files})
		return err
	}
	if b.Refs != nil {
		for _, r := range *b.Refs {
			if r.Repository == "" || r.Commit == "" {
				return badRequest("refs: each needs repository and commit")
			}
			if err := ins(r.Repository, r.Commit, str(r.PreviousCommit), "", "", "", 0, nil); err != nil {
				return err
			}
		}
	}
	if b.Commits != nil {
		for _, c := range *b.Commits {
			var at int64
			if t, err := time.Parse(time.RFC3339, str(c.Timestamp)); err == nil {
				at = t.UnixNano()
			}
			var files []string
			for _, p := range c.PatchSet {
				files = append(files, p.Path)
			}
			if err := ins(c.Repository, c.ID, "", str(c.Message), str(c.AuthorName), str(c.AuthorEmail), at, files); err != nil {
				return err
			}
		}
	}
	cj, _ := json.Marshal(dc)
	if dc == nil {
		cj = []byte("[]")
	}
	_, err := q.ExecContext(ctx, `UPDATE deploys SET commits = $1 WHERE release = $2 AND (commits = '[]' OR id LIKE 'sentry-%')`, string(cj), version)
	return err
}

func releaseDeployCommits(ctx context.Context, q queryer, version string) (string, error) {
	rows, err := q.QueryContext(ctx, `SELECT commit_id, message, author_name, author_email, files FROM release_commits WHERE version = $1 ORDER BY position`, version)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	dc := []deployCommit{}
	for rows.Next() {
		var c deployCommit
		var name, email, files string
		if err := rows.Scan(&c.SHA, &c.Message, &name, &email, &files); err != nil {
			return "", err
		}
		c.Author = name
		if email != "" {
			c.Author = strings.TrimSpace(name + " <" + email + ">")
		}
		_ = json.Unmarshal([]byte(files), &c.Files)
		dc = append(dc, c)
	}
	b, _ := json.Marshal(dc)
	return string(b), rows.Err()
}

func (s *Service) serveCreateRelease(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var b releaseBody
	if err := decodeBody(r, &b); err != nil {
		s.storageError(w, "creating release", err)
		return
	}
	version := strings.TrimSpace(str(b.Version))
	if version == "" || len(version) > 200 || strings.ContainsAny(version, "\n\t/\\") || version == "." || version == ".." || version == "latest" {
		apiError(w, http.StatusBadRequest, "version: a release version is required (at most 200 characters, no slashes or newlines)")
		return
	}
	if slug := r.PathValue("project"); slug != "" {
		raw, _ := json.Marshal(slug)
		b.Projects = append(b.Projects, raw)
	}
	created := false
	var out map[string]any
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		projects, err := resolveProjects(ctx, tx, b.Projects)
		if err != nil {
			return err
		}
		if len(projects) == 0 {
			return badRequest("projects: at least one project is required")
		}
		var id int64
		err = tx.QueryRowContext(ctx, `INSERT INTO release_meta (version, date_created) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING RETURNING id`,
			version, time.Now().UnixNano()).Scan(&id)
		created = err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := applyRelease(ctx, tx, version, &b, projects); err != nil {
			return err
		}
		out, err = s.releaseJSON(ctx, tx, version)
		return err
	})
	if err != nil {
		s.storageError(w, "creating release", err)
		return
	}
	code := http.StatusCreated
	if !created {
		code = http.StatusAlreadyReported // Sentry's answer for a release that exists
	}
	writeJSON(w, code, out)
}

func (s *Service) serveRelease(w http.ResponseWriter, r *http.Request) {
	var out map[string]any
	err := s.db.InTx(r.Context(), func(tx *sql.Tx) error {
		var err error
		out, err = s.releaseJSON(r.Context(), tx, r.PathValue("version"))
		return err
	})
	if err != nil {
		s.storageError(w, "reading release", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// serveUpdateRelease is PUT: finalize (dateReleased), ref, url, status,
// and set-commits (refs or commits).
func (s *Service) serveUpdateRelease(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var b releaseBody
	if err := decodeBody(r, &b); err != nil {
		s.storageError(w, "updating release", err)
		return
	}
	version := r.PathValue("version")
	var out map[string]any
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := ensureRelease(ctx, tx, version); err != nil {
			return err
		}
		projects, err := resolveProjects(ctx, tx, b.Projects)
		if err != nil {
			return err
		}
		if err := applyRelease(ctx, tx, version, &b, projects); err != nil {
			return err
		}
		out, err = s.releaseJSON(ctx, tx, version)
		return err
	})
	if err != nil {
		s.storageError(w, "updating release", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// serveDeleteRelease removes a release nothing refers to; like Sentry it
// refuses one that issues were seen in.
func (s *Service) serveDeleteRelease(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	version := r.PathValue("version")
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := ensureRelease(ctx, tx, version); err != nil {
			return err
		}
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM issue_releases WHERE release = $1`, version).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return badRequest("This release is referenced by active issues and cannot be removed.")
		}
		for _, q := range []string{
			`DELETE FROM release_meta WHERE version = $1`, `DELETE FROM release_commits WHERE version = $1`,
			`DELETE FROM release_deploys WHERE version = $1`, `DELETE FROM deploys WHERE release = $1 AND id LIKE 'sentry-%'`,
			`DELETE FROM releases WHERE version = $1 AND NOT EXISTS (SELECT 1 FROM deploys d WHERE d.release = releases.version AND d.project_id = releases.project_id)`,
		} {
			if _, err := tx.ExecContext(ctx, q, version); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.storageError(w, "deleting release", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// serveReleases lists releases, newest first, offset-paginated (cursor
// "0:OFFSET:0"); ?project=ID or the project in the path filters, ?query=
// matches versions.
func (s *Service) serveReleases(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	limit := limitParam(r, 100)
	offset := cursorOffset(r.URL.Query().Get("cursor"))
	q := `SELECT v.version, COALESCE(m.date_created, v.first) FROM (SELECT version, MIN(first_seen) AS first FROM releases`
	var args []any
	var conds []string
	if slug := r.PathValue("project"); slug != "" {
		p, err := s.projectBySlug(ctx, slug)
		if err != nil {
			s.storageError(w, "listing releases", err)
			return
		}
		args = append(args, p.id)
		conds = append(conds, fmt.Sprintf("project_id = $%d", len(args)))
	} else if ids := r.URL.Query()["project"]; len(ids) > 0 {
		var ph []string
		for _, id := range ids {
			n, err := strconv.ParseInt(id, 10, 64)
			if err != nil {
				apiError(w, http.StatusBadRequest, "project: want project ids")
				return
			}
			args = append(args, n)
			ph = append(ph, fmt.Sprintf("$%d", len(args)))
		}
		conds = append(conds, "project_id IN ("+strings.Join(ph, ", ")+")")
	}
	if t := r.URL.Query().Get("query"); t != "" {
		args = append(args, "%"+strings.ToLower(t)+"%")
		conds = append(conds, fmt.Sprintf("LOWER(version) LIKE $%d", len(args)))
	}
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	q += ` GROUP BY version) v LEFT JOIN release_meta m ON m.version = v.version ORDER BY 2 DESC, 1 DESC` + fmt.Sprintf(` LIMIT %d OFFSET %d`, limit+1, offset)
	out := []any{}
	more := false
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		var versions []string
		for rows.Next() {
			var v string
			var at int64
			if err := rows.Scan(&v, &at); err != nil {
				rows.Close()
				return err
			}
			versions = append(versions, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		more = len(versions) > limit
		if more {
			versions = versions[:limit]
		}
		for _, v := range versions {
			j, err := s.releaseJSON(ctx, tx, v)
			if err != nil {
				return err
			}
			out = append(out, j)
		}
		return nil
	})
	if err != nil {
		s.storageError(w, "listing releases", err)
		return
	}
	next := ""
	if more {
		next = fmt.Sprintf("0:%d:0", offset+limit)
	}
	setLink(w, r, next)
	writeJSON(w, http.StatusOK, out)
}

// cursorOffset reads Sentry's "value:offset:is_prev" cursor's offset.
func cursorOffset(c string) int {
	parts := strings.Split(c, ":")
	if len(parts) != 3 {
		return 0
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// releaseJSON is a release in Sentry's shape (what sentry-cli reads as
// ReleaseInfo: version, dateCreated, dateReleased, lastEvent, newGroups,
// projects, lastCommit).
func (s *Service) releaseJSON(ctx context.Context, q queryer, version string) (map[string]any, error) {
	if err := ensureRelease(ctx, q, version); err != nil {
		return nil, err
	}
	var id, created, started, released int64
	var ref, u, status string
	if err := q.QueryRowContext(ctx, `SELECT id, ref, url, status, date_created, date_started, date_released FROM release_meta WHERE version = $1`, version).
		Scan(&id, &ref, &u, &status, &created, &started, &released); err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT p.id, p.name, (SELECT COUNT(*) FROM issues i WHERE i.project_id = p.id AND i.first_release = r.version)
		FROM releases r JOIN projects p ON p.id = r.project_id WHERE r.version = $1 ORDER BY p.name`, version)
	if err != nil {
		return nil, err
	}
	projects := []any{}
	var newGroups int64
	for rows.Next() {
		var pid, n int64
		var name string
		if err := rows.Scan(&pid, &name, &n); err != nil {
			rows.Close()
			return nil, err
		}
		newGroups += n
		projects = append(projects, map[string]any{"id": pid, "slug": name, "name": name, "newGroups": n, "platform": nil, "platforms": []string{}, "hasHealthData": false})
	}
	rows.Close()
	var first, last sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MIN(first_seen), MAX(last_seen) FROM issue_releases WHERE release = $1`, version).Scan(&first, &last); err != nil {
		return nil, err
	}
	commits, err := releaseCommits(ctx, q, version)
	if err != nil {
		return nil, err
	}
	deploys, err := releaseDeploys(ctx, q, version)
	if err != nil {
		return nil, err
	}
	var lastCommit, lastDeploy any
	if len(commits) > 0 {
		lastCommit = commits[0]
	}
	if len(deploys) > 0 {
		lastDeploy = deploys[0]
	}
	authors := []any{}
	seen := map[string]bool{}
	for _, c := range commits {
		if a, ok := c["author"].(map[string]any); ok && !seen[fmt.Sprint(a["email"])] {
			seen[fmt.Sprint(a["email"])] = true
			authors = append(authors, a)
		}
	}
	short := version
	if i := strings.LastIndexByte(short, '@'); i >= 0 && i < len(short)-1 {
		short = short[i+1:]
	}
	pkg, raw, _ := strings.Cut(version, "@")
	if raw == "" {
		pkg, raw = "", version
	}
	return map[string]any{
		"id": id, "version": version, "shortVersion": short, "status": status, "ref": nullable(ref), "url": nullable(u),
		"dateCreated": apiTime(created), "dateStarted": apiTime(started), "dateReleased": apiTime(released),
		"data": map[string]any{}, "owner": nil, "newGroups": newGroups, "projects": projects,
		"firstEvent": apiTime(first.Int64), "lastEvent": apiTime(last.Int64),
		"commitCount": len(commits), "lastCommit": lastCommit, "authors": authors,
		"deployCount": len(deploys), "lastDeploy": lastDeploy,
		"versionInfo":        map[string]any{"package": nullable(pkg), "version": map[string]any{"raw": raw}, "description": short, "buildHash": nil},
		"currentProjectMeta": map[string]any{}, "userAgent": nil,
	}, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// releaseCommits are a release's commits in Sentry's shape, newest first
// (the order sentry-cli sends them).
func releaseCommits(ctx context.Context, q queryer, version string) ([]map[string]any, error) {
	rows, err := q.QueryContext(ctx, `SELECT repository, commit_id, message, author_name, author_email, committed_at FROM release_commits WHERE version = $1 ORDER BY position`, version)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var repo, id, msg, name, email string
		var at int64
		if err := rows.Scan(&repo, &id, &msg, &name, &email, &at); err != nil {
			return nil, err
		}
		var author any
		if name != "" || email != "" {
			author = map[string]any{"name": name, "email": email}
		}
		out = append(out, map[string]any{
			"id": id, "message": nullable(msg), "dateCreated": apiTime(at), "author": author, "pullRequest": nil, "suspectCommitType": "",
			"repository": repoJSON(repo, 0, 0),
		})
	}
	return out, rows.Err()
}

func (s *Service) serveReleaseCommits(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	version := r.PathValue("version")
	if err := ensureRelease(ctx, s.db, version); err != nil {
		s.storageError(w, "reading release", err)
		return
	}
	cs, err := releaseCommits(ctx, s.db, version)
	if err != nil {
		s.storageError(w, "reading commits", err)
		return
	}
	out := []any{}
	for _, c := range cs {
		out = append(out, c)
	}
	setLink(w, r, "")
	writeJSON(w, http.StatusOK, out)
}

// servePreviousWithCommits is the newest release created before this one
// that has commits ({} when none): set-commits --auto/--local reads its
// lastCommit to know where the new commit range starts.
func (s *Service) servePreviousWithCommits(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	version := r.PathValue("version")
	var out map[string]any
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		out = map[string]any{}
		if err := ensureRelease(ctx, tx, version); err != nil {
			return err
		}
		var prev string
		err := tx.QueryRowContext(ctx, `SELECT m.version FROM release_meta m WHERE m.date_created < (SELECT date_created FROM release_meta WHERE version = $1)
			AND EXISTS (SELECT 1 FROM release_commits c WHERE c.version = m.version) ORDER BY m.date_created DESC LIMIT 1`, version).Scan(&prev)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		out, err = s.releaseJSON(ctx, tx, prev)
		return err
	})
	if err != nil {
		s.storageError(w, "reading release", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// deployBody is sentry-cli's Deploy (src/api/data_types/deploy.rs).
type deployBody struct {
	Environment  string     `json:"environment"`
	Name         *string    `json:"name"`
	URL          *string    `json:"url"`
	DateStarted  *time.Time `json:"dateStarted"`
	DateFinished *time.Time `json:"dateFinished"`
	Projects     []string   `json:"projects"`
}

// releaseDeploys are a release's deploys, newest first: those made over the
// web API and those shiploop's deploy events recorded (one per environment
// and time, whatever the number of projects).
func releaseDeploys(ctx context.Context, q queryer, version string) ([]map[string]any, error) {
	type dep struct {
		j  map[string]any
		at int64
	}
	var ds []dep
	rows, err := q.QueryContext(ctx, `SELECT id, environment, name, url, date_started, date_finished FROM release_deploys WHERE version = $1`, version)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id, started, finished int64
		var env, name, u string
		if err := rows.Scan(&id, &env, &name, &u, &started, &finished); err != nil {
			rows.Close()
			return nil, err
		}
		ds = append(ds, dep{map[string]any{"id": strconv.FormatInt(id, 10), "environment": env, "name": nullable(name), "url": nullable(u),
			"dateStarted": apiTime(started), "dateFinished": apiTime(finished)}, finished})
	}
	rows.Close()
	rows, err = q.QueryContext(ctx, `SELECT MIN(id), environment, deployed_at FROM deploys WHERE release = $1 AND id NOT LIKE 'sentry-%' GROUP BY environment, deployed_at`, version)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id, env string
		var at int64
		if err := rows.Scan(&id, &env, &at); err != nil {
			rows.Close()
			return nil, err
		}
		ds = append(ds, dep{map[string]any{"id": id, "environment": env, "name": nil, "url": nil, "dateStarted": apiTime(at), "dateFinished": apiTime(at)}, at})
	}
	rows.Close()
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].at > ds[j].at })
	out := make([]map[string]any, len(ds))
	for i, d := range ds {
		out[i] = d.j
	}
	return out, rows.Err()
}

func (s *Service) serveDeploys(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	version := r.PathValue("version")
	if err := ensureRelease(ctx, s.db, version); err != nil {
		s.storageError(w, "reading release", err)
		return
	}
	ds, err := releaseDeploys(ctx, s.db, version)
	if err != nil {
		s.storageError(w, "listing deploys", err)
		return
	}
	out := []any{}
	for _, d := range ds {
		out = append(out, d)
	}
	writeJSON(w, http.StatusOK, out)
}

// serveCreateDeploy records a deploy (sentry-cli deploys new). Each of the
// release's projects (or those named) gets a row in deploys, the table
// shiploop's own deploy events fill: regressions order releases by it,
// verification windows and "first seen in deploy" read it.
func (s *Service) serveCreateDeploy(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var b deployBody
	if err := decodeBody(r, &b); err != nil {
		s.storageError(w, "creating deploy", err)
		return
	}
	b.Environment = strings.TrimSpace(b.Environment)
	if b.Environment == "" || len(b.Environment) > 64 {
		apiError(w, http.StatusBadRequest, "environment: required (at most 64 characters)")
		return
	}
	version := r.PathValue("version")
	finished := time.Now()
	if b.DateFinished != nil {
		finished = *b.DateFinished
	}
	var started int64
	if b.DateStarted != nil {
		started = b.DateStarted.UnixNano()
	}
	// The release runs there from when the deploy started.
	at := finished.UnixNano()
	if started != 0 {
		at = started
	}
	var out map[string]any
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := ensureRelease(ctx, tx, version); err != nil {
			return err
		}
		var id int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO release_deploys (version, environment, name, url, date_started, date_finished) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			version, b.Environment, str(b.Name), str(b.URL), started, finished.UnixNano()).Scan(&id); err != nil {
			return err
		}
		commits, err := releaseDeployCommits(ctx, tx, version)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT p.id, p.name FROM releases r JOIN projects p ON p.id = r.project_id WHERE r.version = $1`, version)
		if err != nil {
			return err
		}
		var pids []int64
		for rows.Next() {
			var pid int64
			var name string
			if err := rows.Scan(&pid, &name); err != nil {
				rows.Close()
				return err
			}
			if len(b.Projects) == 0 || containsString(b.Projects, name) || containsString(b.Projects, strconv.FormatInt(pid, 10)) {
				pids = append(pids, pid)
			}
		}
		rows.Close()
		for _, pid := range pids {
			if _, err := tx.ExecContext(ctx, `INSERT INTO deploys (id, project_id, release, environment, deployed_at, commits) VALUES ($1, $2, $3, $4, $5, $6)`,
				fmt.Sprintf("sentry-%d-%d", id, pid), pid, version, b.Environment, at, commits); err != nil {
				return err
			}
		}
		out = map[string]any{"id": strconv.FormatInt(id, 10), "environment": b.Environment, "name": nullable(str(b.Name)), "url": nullable(str(b.URL)),
			"dateStarted": apiTime(started), "dateFinished": apiTime(finished.UnixNano())}
		return nil
	})
	if err != nil {
		s.storageError(w, "creating deploy", err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func containsString(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
