package errortrack

// Sentry's web API (/api/0/...), the part sentry-cli and issue integrations
// use: organizations and projects, releases with their commits and deploys,
// issues and events, and source map upload (chunk-upload and assemble).
// Request and answer shapes follow sentry-cli's src/api/mod.rs and
// src/api/data_types/ (getsentry/sentry-cli) and Sentry's public API docs.
//
// Routes: the intake is /api/{project_id}/envelope/ with a numeric project
// id > 0, so the web API's /api/0/... never collides with it (project ids
// come from a serial column and start at 1; the intake answers 400 for 0).

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shiploop/shiploop/pkg/server"
)

// DefaultOrganization is the slug of the one organization the web API
// shows when Config.Organization is empty.
const DefaultOrganization = "shiploop"

// Sentry's answers to a refused request (rest_framework's wording).
const (
	detailNoCredentials = "Authentication credentials were not provided."
	detailInvalidToken  = "Invalid token"
	detailForbidden     = "You do not have permission to perform this action."
	detailNotFound      = "The requested resource does not exist"
)

func (s *Service) org() string {
	if s.cfg.Organization != "" {
		return s.cfg.Organization
	}
	if v := os.Getenv("SHIPLOOP_SENTRY_ORG"); v != "" {
		return v
	}
	return DefaultOrganization
}

// webRoutes registers the web API on mux.
func (s *Service) webRoutes(mux *http.ServeMux) {
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request)) {
		mux.Handle(pattern, s.web(fn))
	}
	const org = "/api/0/organizations/{org}"
	h("GET /api/0/{$}", s.serveAuthInfo)
	h("GET /api/0/organizations/{$}", s.serveOrganizations)
	h("GET "+org+"/{$}", s.serveOrganization)
	h("GET "+org+"/projects/{$}", s.serveProjects)
	h("GET /api/0/projects/{$}", s.serveProjects)
	h("GET /api/0/projects/{org}/{project}/{$}", s.serveProject)
	h("GET "+org+"/repos/{$}", s.serveRepos)

	h("GET "+org+"/releases/{$}", s.serveReleases)
	h("GET /api/0/projects/{org}/{project}/releases/{$}", s.serveReleases)
	h("POST "+org+"/releases/{$}", s.serveCreateRelease)
	h("POST /api/0/projects/{org}/{project}/releases/{$}", s.serveCreateRelease)
	h("GET "+org+"/releases/{version}/{$}", s.serveRelease)
	h("PUT "+org+"/releases/{version}/{$}", s.serveUpdateRelease)
	h("DELETE "+org+"/releases/{version}/{$}", s.serveDeleteRelease)
	h("GET "+org+"/releases/{version}/commits/{$}", s.serveReleaseCommits)
	h("GET "+org+"/releases/{version}/previous-with-commits/{$}", s.servePreviousWithCommits)
	h("GET "+org+"/releases/{version}/deploys/{$}", s.serveDeploys)
	h("POST "+org+"/releases/{version}/deploys/{$}", s.serveCreateDeploy)

	h("GET /api/0/projects/{org}/{project}/issues/{$}", s.serveIssues)
	h("PUT /api/0/projects/{org}/{project}/issues/{$}", s.serveBulkUpdateIssues)
	h("GET "+org+"/issues/{issue_id}/{$}", s.serveIssue)
	h("PUT "+org+"/issues/{issue_id}/{$}", s.serveUpdateIssue)
	h("GET /api/0/issues/{issue_id}/{$}", s.serveIssue)
	h("PUT /api/0/issues/{issue_id}/{$}", s.serveUpdateIssue)
	h("GET "+org+"/issues/{issue_id}/events/{$}", s.serveIssueEvents)
	h("GET "+org+"/issues/{issue_id}/events/{which}/{$}", s.serveIssueEvent)
	h("GET /api/0/issues/{issue_id}/events/{$}", s.serveIssueEvents)
	h("GET /api/0/issues/{issue_id}/events/{which}/{$}", s.serveIssueEvent)
	h("GET /api/0/projects/{org}/{project}/events/{$}", s.serveProjectEvents)
	h("GET /api/0/projects/{org}/{project}/events/{event_id}/{$}", s.serveProjectEvent)
	h("GET /api/0/projects/{org}/{project}/events/{event_id}/attachments/{$}", s.serveEventAttachments)
	h("GET /api/0/projects/{org}/{project}/events/{event_id}/attachments/{attachment_id}/{$}", s.serveEventAttachment)

	h("GET "+org+"/chunk-upload/{$}", s.serveChunkOptions)
	h("POST "+org+"/chunk-upload/{$}", s.serveChunkUpload)
	h("POST "+org+"/artifactbundle/assemble/{$}", s.serveAssembleBundle)
	h("POST "+org+"/releases/{version}/assemble/{$}", s.serveAssembleBundle)

	// Anything else under /api/0/ answers Sentry's 404 (no POST catch-all:
	// it would overlap the intake's POST /api/{project_id}/...).
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		h(m+" /api/0/{rest...}", func(w http.ResponseWriter, r *http.Request) { apiNotFound(w) })
	}
}

// web authenticates a web API request as Sentry does (Authorization:
// Bearer <token>, here a shiploop API token: read scope for GET, write for
// the rest), checks the organization in the path and answers errors as
// {"detail": ...}.
func (s *Service) web(fn func(w http.ResponseWriter, r *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need := server.ScopeWrite
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			need = server.ScopeRead
		}
		authz := strings.TrimSpace(r.Header.Get("Authorization"))
		if s.cfg.Auth.Enabled() && authz == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
			apiError(w, http.StatusUnauthorized, detailNoCredentials)
			return
		}
		if _, err := s.cfg.Auth.Check(r.Context(), authz, need); err != nil {
			switch server.HTTPStatus(err) {
			case http.StatusForbidden:
				apiError(w, http.StatusForbidden, detailForbidden)
			case http.StatusServiceUnavailable:
				apiError(w, http.StatusServiceUnavailable, "checking the token failed, retry later")
			default:
				w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
				apiError(w, http.StatusUnauthorized, detailInvalidToken)
			}
			return
		}
		if o := r.PathValue("org"); o != "" && o != s.org() {
			apiNotFound(w)
			return
		}
		fn(w, r)
	})
}

func apiError(w http.ResponseWriter, code int, detail string) {
	writeJSON(w, code, map[string]string{"detail": detail})
}

func apiNotFound(w http.ResponseWriter) { apiError(w, http.StatusNotFound, detailNotFound) }

// storageError answers 503 for a storage failure, 404 for errNotFound.
func (s *Service) storageError(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, errNotFound) || errors.Is(err, sql.ErrNoRows) {
		apiNotFound(w)
		return
	}
	var ae *apiErr
	if errors.As(err, &ae) {
		apiError(w, ae.code, ae.detail)
		return
	}
	s.log.Error("web api: "+what, "err", err)
	apiError(w, http.StatusServiceUnavailable, what+": storage unavailable, retry later")
}

// apiErr is an error a handler answers with its own status.
type apiErr struct {
	code   int
	detail string
}

func (e *apiErr) Error() string { return e.detail }

func badRequest(format string, a ...any) error {
	return &apiErr{http.StatusBadRequest, fmt.Sprintf(format, a...)}
}

// decodeBody reads a JSON request body (at most 8 MiB: set-commits with
// patch sets can be large).
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 8<<20))
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body: %v", err)
	}
	return nil
}

// apiTime is Sentry's timestamp form; zero is null.
func apiTime(nanos int64) any {
	if nanos == 0 {
		return nil
	}
	return time.Unix(0, nanos).UTC().Format("2006-01-02T15:04:05.000000Z")
}

// baseURL is the scheme and host the client used.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

// setLink writes Sentry's pagination header: sentry-cli follows rel="next"
// while results="true" (src/api/pagination.rs).
func setLink(w http.ResponseWriter, r *http.Request, next string) {
	link := func(cursor, rel string, results bool) string {
		q := r.URL.Query()
		q.Set("cursor", cursor)
		u := baseURL(r) + r.URL.Path + "?" + q.Encode()
		return fmt.Sprintf(`<%s>; rel="%s"; results="%t"; cursor="%s"`, u, rel, results, cursor)
	}
	nextCursor := next
	if nextCursor == "" {
		nextCursor = "0:0:0"
	}
	w.Header().Set("Link", link("0:0:1", "previous", false)+", "+link(nextCursor, "next", next != ""))
}

// limitParam reads ?limit= or ?per_page= (default def, at most 100).
func limitParam(r *http.Request, def int) int {
	for _, k := range []string{"limit", "per_page"} {
		if n, err := strconv.Atoi(r.URL.Query().Get(k)); err == nil && n > 0 {
			return min(n, 100)
		}
	}
	return def
}

func (s *Service) serveAuthInfo(w http.ResponseWriter, r *http.Request) {
	scopes := []string{"org:read", "project:read", "project:releases", "event:read"}
	if _, err := s.cfg.Auth.Check(r.Context(), r.Header.Get("Authorization"), server.ScopeWrite); err == nil {
		scopes = append(scopes, "project:write", "event:write", "org:ci")
	}
	writeJSON(w, http.StatusOK, map[string]any{"version": "0", "auth": map[string]any{"scopes": scopes}, "user": nil})
}

func (s *Service) orgJSON(ctx context.Context) map[string]any {
	var created sql.NullInt64
	_ = s.db.QueryRowContext(ctx, `SELECT MIN(created_at) FROM projects`).Scan(&created)
	return map[string]any{
		"id": "1", "slug": s.org(), "name": s.org(), "dateCreated": apiTime(max(created.Int64, 1)),
		"isEarlyAdopter": false, "require2FA": false, "requireEmailVerification": false,
		"status": map[string]string{"id": "active", "name": "active"}, "features": []string{},
		"avatar": map[string]any{"avatarType": "letter_avatar", "avatarUuid": nil}, "links": map[string]any{},
	}
}

func (s *Service) serveOrganizations(w http.ResponseWriter, r *http.Request) {
	setLink(w, r, "")
	writeJSON(w, http.StatusOK, []any{s.orgJSON(r.Context())})
}

func (s *Service) serveOrganization(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.orgJSON(r.Context()))
}

func projectJSON(p project, org string) map[string]any {
	return map[string]any{
		"id": strconv.FormatInt(p.id, 10), "slug": p.name, "name": p.name, "platform": nil, "dateCreated": apiTime(p.createdAt),
		"isMember": true, "hasAccess": true, "isBookmarked": false, "features": []string{}, "status": "active",
		"team": nil, "teams": []any{}, "organization": map[string]any{"id": "1", "slug": org, "name": org},
	}
}

func (s *Service) allProjects(ctx context.Context) ([]project, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+projectColumns+` FROM projects ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []project
	for rows.Next() {
		p, err := scanProject(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func (s *Service) serveProjects(w http.ResponseWriter, r *http.Request) {
	ps, err := s.allProjects(r.Context())
	if err != nil {
		s.storageError(w, "listing projects", err)
		return
	}
	out := []any{}
	for _, p := range ps {
		out = append(out, projectJSON(p, s.org()))
	}
	setLink(w, r, "")
	writeJSON(w, http.StatusOK, out)
}

// projectBySlug finds the project a path names (its errortrack name; a
// numeric id is accepted too, as Sentry does).
func (s *Service) projectBySlug(ctx context.Context, slug string) (project, error) {
	if slug == "" {
		return project{}, errNotFound
	}
	return findProject(ctx, s.db, slug)
}

func (s *Service) serveProject(w http.ResponseWriter, r *http.Request) {
	p, err := s.projectBySlug(r.Context(), r.PathValue("project"))
	if err != nil {
		s.storageError(w, "reading project", err)
		return
	}
	writeJSON(w, http.StatusOK, projectJSON(p, s.org()))
}

// serveRepos lists the repositories errortrack projects name: sentry-cli's
// `releases set-commits --commit REPO@SHA` checks REPO against this list.
func (s *Service) serveRepos(w http.ResponseWriter, r *http.Request) {
	rows, err := s.db.QueryContext(r.Context(), `SELECT repository, MIN(id), MIN(created_at) FROM projects WHERE repository <> '' GROUP BY repository ORDER BY repository`)
	if err != nil {
		s.storageError(w, "listing repositories", err)
		return
	}
	defer rows.Close()
	out := []any{}
	for rows.Next() {
		var name string
		var id, created int64
		if err := rows.Scan(&name, &id, &created); err != nil {
			s.storageError(w, "listing repositories", err)
			return
		}
		out = append(out, repoJSON(name, id, created))
	}
	setLink(w, r, "")
	writeJSON(w, http.StatusOK, out)
}

func repoJSON(name string, id, created int64) map[string]any {
	var u any
	if strings.Contains(name, "://") {
		u = name
	} else if parsed, err := url.Parse("https://" + name); err == nil && strings.Contains(parsed.Host, ".") {
		u = parsed.String()
	}
	var rid any
	if id != 0 {
		rid = strconv.FormatInt(id, 10)
	}
	return map[string]any{
		"id": rid, "name": name, "url": u, "status": "active", "dateCreated": apiTime(created),
		"provider":      map[string]string{"id": "shiploop", "name": "shiploop"},
		"integrationId": nil, "externalSlug": name,
	}
}
