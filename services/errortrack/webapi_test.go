package errortrack

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/server"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// Request shapes below are sentry-cli's (getsentry/sentry-cli): NewRelease,
// UpdatedRelease, Ref and GitCommit in src/api/mod.rs, Deploy in
// src/api/data_types/deploy.rs, ChunkServerOptions and
// ChunkedArtifactRequest in src/api/data_types/chunking/, the multipart
// chunk upload in Api::upload_chunks (src/api/mod.rs) and the Link header
// it follows in src/api/pagination.rs.

const (
	webAdmin = "admin-secret"
	webRead  = "read-token"
	webWrite = "write-token"
)

// newWebHarness is newHarness with auth on: the operator token and a read
// and a write token as `shiploop token create` makes them.
func newWebHarness(t *testing.T, db *store.DB) *harness {
	h := newHarness(t, db)
	tokens := map[string]server.Principal{
		server.HashToken(webRead):  {Name: "ci-read", Scope: server.ScopeRead},
		server.HashToken(webWrite): {Name: "ci-write", Scope: server.ScopeWrite},
	}
	h.svc.cfg.Auth = &server.Auth{AdminToken: webAdmin, Lookup: func(_ context.Context, hash string) (server.Principal, error) {
		if p, ok := tokens[hash]; ok {
			return p, nil
		}
		return server.Principal{}, server.ErrUnknownToken
	}}
	return h
}

// web sends a web API request with token (none when ""), as sentry-cli
// does: Authorization: Bearer <token>, a JSON body.
func (h *harness) web(method, path, token string, body any) (int, http.Header, any) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var v any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &v); err != nil {
			h.t.Fatalf("%s %s: %d, not JSON: %s", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, resp.Header, v
}

func (h *harness) apiOK(method, path string, want int, body any) any {
	h.t.Helper()
	code, _, v := h.web(method, path, webWrite, body)
	if code != want {
		h.t.Fatalf("%s %s = %d %v, want %d", method, path, code, v, want)
	}
	return v
}

func field(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// TestWebAPIAuth: Sentry's answers for no token, a wrong one, too small a
// scope, another organization and an unknown route; the intake's
// /api/{project_id}/ routes still answer beside /api/0/.
func TestWebAPIAuth(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newWebHarness(t, db)
		h.project("web", 0)
		check := func(method, path, token string, body any, code int, detail string) {
			t.Helper()
			got, hdr, v := h.web(method, path, token, body)
			if got != code || (detail != "" && field(v, "detail") != detail) {
				t.Fatalf("%s %s with %q = %d %v (WWW-Authenticate %q), want %d %q", method, path, token, got, v, hdr.Get("WWW-Authenticate"), code, detail)
			}
		}
		check("GET", "/api/0/organizations/", "", nil, 401, detailNoCredentials)
		check("GET", "/api/0/organizations/", "nope", nil, 401, detailInvalidToken)
		check("POST", "/api/0/organizations/shiploop/releases/", webRead, map[string]any{"version": "1", "projects": []string{"web"}}, 403, detailForbidden)
		check("PUT", "/api/0/organizations/shiploop/releases/1/", webRead, map[string]any{}, 403, detailForbidden)
		check("DELETE", "/api/0/organizations/shiploop/releases/1/", webRead, nil, 403, detailForbidden)
		check("GET", "/api/0/organizations/other/releases/", webRead, nil, 404, detailNotFound)
		check("GET", "/api/0/organizations/shiploop/no-such-thing/", webRead, nil, 404, detailNotFound)
		check("GET", "/api/0/organizations/shiploop/releases/nope/", webRead, nil, 404, detailNotFound)

		_, _, orgs := h.web("GET", "/api/0/organizations/", webRead, nil)
		if l, ok := orgs.([]any); !ok || len(l) != 1 || field(l[0], "slug") != "shiploop" {
			t.Fatalf("organizations = %v", orgs)
		}
		_, _, ps := h.web("GET", "/api/0/organizations/shiploop/projects/", webAdmin, nil)
		if l, ok := ps.([]any); !ok || len(l) != 1 || field(l[0], "slug") != "web" || field(l[0], "id") == nil {
			t.Fatalf("projects = %v", ps)
		}
		check("GET", "/api/0/projects/shiploop/web/", webRead, nil, 200, "")
		check("GET", "/api/0/projects/shiploop/nope/", webRead, nil, 404, detailNotFound)

		// Project ids start at 1: /api/0/envelope/ is the intake refusing
		// project 0, never a web route.
		resp, body := h.post("/api/0/envelope/", "", nil, []byte("{}\n"))
		if resp.StatusCode != 400 || !strings.Contains(body, "not a number") {
			t.Fatalf("POST /api/0/envelope/ = %d %s", resp.StatusCode, body)
		}
	})
}

// TestWebAPIReleasesAndDeploys: sentry-cli's releases new, set-commits
// (--commit and --local), finalize, deploys new, list and delete; a deploy
// lands in deploys with the release's commits.
func TestWebAPIReleasesAndDeploys(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newWebHarness(t, db)
		ctx := context.Background()
		p, _ := h.project("web", 0)
		if _, err := h.api.UpdateProject(ctx, &errortrackv1.UpdateProjectRequest{Project: "web", Repository: "acme/web", RateLimitPerMinute: -1, QuotaPerHour: -1}); err != nil {
			t.Fatal(err)
		}
		const org = "/api/0/organizations/shiploop"
		// releases new: NewRelease {version, projects}.
		rel := h.apiOK("POST", org+"/releases/", 201, map[string]any{"version": "web@1.0.0", "projects": []any{"web"}})
		if field(rel, "version") != "web@1.0.0" || field(rel, "dateCreated") == nil || field(rel, "dateReleased") != nil || field(rel, "newGroups") != 0.0 {
			t.Fatalf("new release = %v", rel)
		}
		if ps, _ := field(rel, "projects").([]any); len(ps) != 1 || field(ps[0], "slug") != "web" {
			t.Fatalf("release projects = %v", field(rel, "projects"))
		}
		// Again (set-commits makes sure the release exists): 208, unchanged.
		h.apiOK("POST", org+"/releases/", 208, map[string]any{"version": "web@1.0.0", "projects": []any{p.GetId()}})
		if code, _, v := h.web("POST", org+"/releases/", webWrite, map[string]any{"version": "x", "projects": []any{"nope"}}); code != 400 || field(v, "detail") == nil {
			t.Fatalf("unknown project = %d %v", code, v)
		}

		// set-commits --commit acme/web@abc: sentry-cli checks the repo is listed.
		repos := h.apiOK("GET", org+"/repos/?cursor=", 200, nil)
		if l, _ := repos.([]any); len(l) != 1 || field(l[0], "name") != "acme/web" {
			t.Fatalf("repos = %v", repos)
		}
		h.apiOK("PUT", org+"/releases/web@1.0.0/", 200, map[string]any{"refs": []any{map[string]any{"repository": "acme/web", "commit": "abc123", "previousCommit": nil}}})
		commits := h.apiOK("GET", org+"/releases/web@1.0.0/commits/", 200, nil)
		if l, _ := commits.([]any); len(l) != 1 || field(l[0], "id") != "abc123" || field(l[0], "repository", "name") != "acme/web" {
			t.Fatalf("commits = %v", commits)
		}
		// set-commits --local: GitCommit with patch_set replaces them.
		rel = h.apiOK("PUT", org+"/releases/web@1.0.0/", 200, map[string]any{"commits": []any{
			map[string]any{"id": "def456", "repository": "acme/web", "message": "fix the handler", "author_name": "Ann", "author_email": "ann@example.com",
				"timestamp": "2024-05-01T10:00:00+02:00", "patch_set": []any{map[string]any{"path": "api/handler.go", "type": "M"}}},
			map[string]any{"id": "abc123", "repository": "acme/web", "message": "older", "author_email": "bob@example.com", "timestamp": "2024-04-01T10:00:00Z", "patch_set": []any{}},
		}})
		if field(rel, "commitCount") != 2.0 || field(rel, "lastCommit", "id") != "def456" || field(rel, "lastCommit", "author", "email") != "ann@example.com" {
			t.Fatalf("release after commits = %v", rel)
		}
		// finalize: UpdatedRelease {dateReleased}.
		when := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
		rel = h.apiOK("PUT", org+"/releases/web@1.0.0/", 200, map[string]any{"dateReleased": when.Format(time.RFC3339Nano)})
		if field(rel, "dateReleased") != "2024-05-01T12:00:00.000000Z" {
			t.Fatalf("finalized = %v", rel)
		}
		// deploys new: Deploy {environment, name, url, dateStarted, dateFinished}.
		dep := h.apiOK("POST", org+"/releases/web@1.0.0/deploys/", 201, map[string]any{"environment": "production", "name": "deploy 7",
			"url": "https://ci.example.com/7", "dateStarted": when.Add(-time.Minute).Format(time.RFC3339), "dateFinished": when.Format(time.RFC3339)})
		if field(dep, "environment") != "production" || field(dep, "name") != "deploy 7" || field(dep, "dateFinished") != "2024-05-01T12:00:00.000000Z" || field(dep, "id") == nil {
			t.Fatalf("deploy = %v", dep)
		}
		if code, _, _ := h.web("POST", org+"/releases/web@1.0.0/deploys/", webWrite, map[string]any{"name": "no env"}); code != 400 {
			t.Fatalf("deploy without environment = %d", code)
		}
		deps := h.apiOK("GET", org+"/releases/web@1.0.0/deploys/", 200, nil)
		if l, _ := deps.([]any); len(l) != 1 {
			t.Fatalf("deploys = %v", deps)
		}
		// The deploy is errortrack's: ordered for regressions, with commits for suspects.
		var commitsJSON string
		var at int64
		if err := db.QueryRowContext(ctx, `SELECT commits, deployed_at FROM deploys WHERE project_id = $1 AND release = 'web@1.0.0' AND environment = 'production'`, p.GetId()).Scan(&commitsJSON, &at); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(commitsJSON, "api/handler.go") || at != when.Add(-time.Minute).UnixNano() {
			t.Fatalf("deploys row = %s at %d", commitsJSON, at)
		}
		rel = h.apiOK("GET", org+"/releases/web@1.0.0/", 200, nil)
		if field(rel, "deployCount") != 1.0 || field(rel, "lastDeploy", "environment") != "production" {
			t.Fatalf("release = %v", rel)
		}

		// A second release: previous-with-commits finds the first; the list pages.
		time.Sleep(2 * time.Millisecond)
		h.apiOK("POST", org+"/releases/", 201, map[string]any{"version": "web@1.1.0", "projects": []any{"web"}, "ref": "main", "url": "https://example.com/r"})
		prev := h.apiOK("GET", org+"/releases/web@1.1.0/previous-with-commits/", 200, nil)
		if field(prev, "version") != "web@1.0.0" || field(prev, "lastCommit", "id") != "def456" {
			t.Fatalf("previous-with-commits = %v", prev)
		}
		code, hdr, list := h.web("GET", org+"/releases/?per_page=1", webRead, nil)
		if l, _ := list.([]any); code != 200 || len(l) != 1 || field(l[0], "version") != "web@1.1.0" || field(l[0], "ref") != "main" {
			t.Fatalf("releases page 1 = %d %v", code, list)
		}
		link := hdr.Get("Link")
		if !strings.Contains(link, `rel="next"; results="true"; cursor="0:1:0"`) {
			t.Fatalf("Link = %q", link)
		}
		_, hdr, list = h.web("GET", org+"/releases/?per_page=1&cursor=0:1:0", webRead, nil)
		if l, _ := list.([]any); len(l) != 1 || field(l[0], "version") != "web@1.0.0" || !strings.Contains(hdr.Get("Link"), `rel="next"; results="false"`) {
			t.Fatalf("releases page 2 = %v, Link %q", list, hdr.Get("Link"))
		}
		if l, _ := h.apiOK("GET", "/api/0/projects/shiploop/web/releases/", 200, nil).([]any); len(l) != 2 {
			t.Fatalf("project releases = %v", l)
		}

		// releases delete: gone, its web deploys too.
		h.apiOK("DELETE", org+"/releases/web@1.1.0/", 204, nil)
		if code, _, _ := h.web("GET", org+"/releases/web@1.1.0/", webRead, nil); code != 404 {
			t.Fatalf("deleted release = %d", code)
		}
	})
}

// TestWebAPIIssuesAndEvents: the issue list with Sentry's default query,
// status changes, cursor pagination; events with entries and tags.
func TestWebAPIIssuesAndEvents(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newWebHarness(t, db)
		p, k := h.project("web", 0)
		auth := http.Header{"X-Sentry-Auth": {"Sentry sentry_version=7, sentry_key=" + k.GetPublicKey()}}
		send := func(id, typ string) {
			ev := fmt.Sprintf(`{"event_id":"%s","platform":"javascript","level":"error","release":"web@1.0.0","environment":"production",
				"tags":{"browser":"Firefox"},"user":{"id":"u1"},
				"exception":{"values":[{"type":"%s","value":"boom","stacktrace":{"frames":[{"filename":"app.js","abs_path":"https://example.com/app.js","function":"handle","lineno":10,"colno":5,"in_app":true,"context_line":"throw x","pre_context":["a","b"]}]}}]},
				"breadcrumbs":{"values":[{"timestamp":1714557600.5,"category":"xhr","message":"GET /api","level":"info"}]},
				"request":{"url":"https://example.com/page","method":"GET","query_string":"a=1&b=2","headers":{"User-Agent":"Firefox"}}}`, id, typ)
			resp, body := h.post(fmt.Sprintf("/api/%d/store/", p.GetId()), "", auth, []byte(ev))
			if resp.StatusCode != 200 {
				t.Fatalf("store = %d %s", resp.StatusCode, body)
			}
		}
		send("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "TypeError")
		send("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "RangeError")
		issues := h.waitIssues("web", "two issues", func(is []*errortrackv1.Issue) bool { return len(is) == 2 })

		const proj = "/api/0/projects/shiploop/web/issues/"
		code, hdr, page := h.web("GET", proj+"?limit=1&statsPeriod=24h", webRead, nil)
		l, _ := page.([]any)
		if code != 200 || len(l) != 1 || field(l[0], "status") != "unresolved" || field(l[0], "count") != "1" || field(l[0], "project", "slug") != "web" {
			t.Fatalf("issues page 1 = %d %v", code, page)
		}
		if pts, _ := field(l[0], "stats", "24h").([]any); len(pts) != 24 {
			t.Fatalf("stats = %v", field(l[0], "stats"))
		}
		link := hdr.Get("Link")
		i := strings.Index(link, `rel="next"; results="true"; cursor="`)
		if i < 0 {
			t.Fatalf("Link = %q", link)
		}
		cursor := strings.TrimSuffix(link[i+len(`rel="next"; results="true"; cursor="`):], `"`)
		_, hdr, page2 := h.web("GET", proj+"?limit=1&cursor="+cursor, webRead, nil)
		l2, _ := page2.([]any)
		if len(l2) != 1 || field(l2[0], "id") == field(l[0], "id") || !strings.Contains(hdr.Get("Link"), `rel="next"; results="false"`) {
			t.Fatalf("issues page 2 = %v (Link %q)", page2, hdr.Get("Link"))
		}

		// Resolve one: the default query (is:unresolved) leaves it out.
		id := fmt.Sprint(issues[0].GetId())
		upd := h.apiOK("PUT", "/api/0/organizations/shiploop/issues/"+id+"/", 200, map[string]any{"status": "resolved"})
		if field(upd, "status") != "resolved" {
			t.Fatalf("resolved = %v", upd)
		}
		if l, _ := h.apiOK("GET", proj, 200, nil).([]any); len(l) != 1 {
			t.Fatalf("unresolved = %v", l)
		}
		if l, _ := h.apiOK("GET", proj+"?query=is:resolved", 200, nil).([]any); len(l) != 1 || field(l[0], "id") != id {
			t.Fatalf("resolved list = %v", l)
		}
		if l, _ := h.apiOK("GET", proj+"?query=", 200, nil).([]any); len(l) != 2 {
			t.Fatalf("all = %v", l)
		}
		if code, _, _ := h.web("PUT", "/api/0/organizations/shiploop/issues/"+id+"/", webRead, map[string]any{"status": "unresolved"}); code != 403 {
			t.Fatalf("read token resolving = %d", code)
		}
		is := h.apiOK("GET", "/api/0/organizations/shiploop/issues/"+id+"/", 200, nil)
		if field(is, "firstRelease", "version") != "web@1.0.0" || field(is, "shortId") == nil {
			t.Fatalf("issue = %v", is)
		}
		// sentry-cli issues unresolve --id: the bulk form.
		h.apiOK("PUT", proj+"?id="+id, 200, map[string]any{"status": "unresolved"})
		if l, _ := h.apiOK("GET", proj, 200, nil).([]any); len(l) != 2 {
			t.Fatalf("after bulk unresolve = %v", l)
		}

		// Events.
		evs := h.apiOK("GET", "/api/0/organizations/shiploop/issues/"+id+"/events/", 200, nil)
		if l, _ := evs.([]any); len(l) != 1 || field(l[0], "groupID") != id {
			t.Fatalf("events = %v", evs)
		}
		latest := h.apiOK("GET", "/api/0/organizations/shiploop/issues/"+id+"/events/latest/", 200, nil)
		entries, _ := field(latest, "entries").([]any)
		types := []string{}
		for _, e := range entries {
			types = append(types, fmt.Sprint(field(e, "type")))
		}
		if strings.Join(types, ",") != "exception,breadcrumbs,request" {
			t.Fatalf("entries = %v", types)
		}
		frames, _ := field(entries[0], "data", "values").([]any)
		fr, _ := field(frames[0], "stacktrace", "frames").([]any)
		if len(fr) != 1 || field(fr[0], "absPath") != "https://example.com/app.js" || field(fr[0], "lineNo") != 10.0 || field(fr[0], "inApp") != true {
			t.Fatalf("frames = %v", fr)
		}
		crumbs, _ := field(entries[1], "data", "values").([]any)
		if len(crumbs) != 1 || field(crumbs[0], "timestamp") != "2024-05-01T10:00:00.500000Z" {
			t.Fatalf("breadcrumbs = %v", crumbs)
		}
		if q, _ := field(entries[2], "data", "query").([]any); len(q) != 2 {
			t.Fatalf("request = %v", field(entries[2], "data"))
		}
		eid := fmt.Sprint(field(latest, "eventID"))
		ev := h.apiOK("GET", "/api/0/projects/shiploop/web/events/"+eid+"/", 200, nil)
		tags, _ := field(ev, "tags").([]any)
		want := map[string]string{"browser": "Firefox", "environment": "production", "level": "error", "release": "web@1.0.0"}
		for _, tg := range tags {
			if v, ok := want[fmt.Sprint(field(tg, "key"))]; ok && v == field(tg, "value") {
				delete(want, fmt.Sprint(field(tg, "key")))
			}
		}
		if len(want) != 0 || field(ev, "entries") == nil {
			t.Fatalf("event tags = %v (missing %v)", tags, want)
		}
		if code, _, _ := h.web("GET", "/api/0/projects/shiploop/web/events/cccccccccccccccccccccccccccccccc/", webRead, nil); code != 404 {
			t.Fatalf("unknown event = %d", code)
		}
		// The release now counts its new issues.
		rel := h.apiOK("GET", "/api/0/organizations/shiploop/releases/web@1.0.0/", 200, nil)
		if field(rel, "newGroups") != 2.0 || field(rel, "lastEvent") == nil || field(rel, "firstEvent") == nil {
			t.Fatalf("release = %v", rel)
		}
	})
}

// TestWebAPIChunkUpload: sourcemaps upload's protocol: options, assemble
// naming the missing chunks, a gzip multipart chunk upload, assemble ok;
// a chunk whose name is not its checksum is refused.
func TestWebAPIChunkUpload(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newWebHarness(t, db)
		h.project("web", 0)
		const org = "/api/0/organizations/shiploop"
		opts := h.apiOK("GET", org+"/chunk-upload/", 200, nil)
		if field(opts, "hashAlgorithm") != "sha1" || field(opts, "url") != org+"/chunk-upload/" || field(opts, "chunkSize") != float64(chunkSize) {
			t.Fatalf("options = %v", opts)
		}
		bundle := bytes.Repeat([]byte("PK source bundle "), 1000)
		sum := sha1.Sum(bundle)
		checksum := hex.EncodeToString(sum[:])
		req := map[string]any{"checksum": checksum, "chunks": []string{checksum}, "projects": []string{"web"}, "version": "web@1.0.0"}
		got := h.apiOK("POST", org+"/artifactbundle/assemble/", 200, req)
		if field(got, "state") != "not_found" || fmt.Sprint(field(got, "missingChunks")) != "["+checksum+"]" {
			t.Fatalf("assemble before upload = %v", got)
		}
		upload := func(name, field string, data []byte, token string) int {
			var body bytes.Buffer
			mw := multipart.NewWriter(&body)
			part, _ := mw.CreateFormFile(field, name)
			if field == "file_gzip" {
				zw := gzip.NewWriter(part)
				zw.Write(data)
				zw.Close()
			} else {
				part.Write(data)
			}
			mw.Close()
			r, _ := http.NewRequest("POST", h.srv.URL+org+"/chunk-upload/", &body)
			r.Header.Set("Content-Type", mw.FormDataContentType())
			r.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := upload(checksum, "file_gzip", bundle, webRead); code != 403 {
			t.Fatalf("upload with a read token = %d", code)
		}
		if code := upload(strings.Repeat("0", 40), "file", bundle, webWrite); code != 400 {
			t.Fatalf("upload under a wrong checksum = %d", code)
		}
		if code := upload(checksum, "file_gzip", bundle, webWrite); code != 200 {
			t.Fatalf("upload = %d", code)
		}
		got = h.apiOK("POST", org+"/artifactbundle/assemble/", 200, req)
		if field(got, "state") != "ok" || fmt.Sprint(field(got, "missingChunks")) != "[]" {
			t.Fatalf("assemble after upload = %v", got)
		}
		if n := h.count(`SELECT COUNT(*) FROM artifact_bundles WHERE checksum = $1 AND release = 'web@1.0.0'`, checksum); n != 1 {
			t.Fatalf("bundles = %d", n)
		}
		_, bundles, err := h.svc.objectStores(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if data, err := bundles.GetBytes(context.Background(), checksum); err != nil || !bytes.Equal(data, bundle) {
			t.Fatalf("stored bundle: %d bytes, %v", len(data), err)
		}
		// Chunks that do not join to the checksum: error.
		bad := map[string]any{"checksum": strings.Repeat("1", 40), "chunks": []string{checksum}, "projects": []string{"web"}}
		if got := h.apiOK("POST", org+"/artifactbundle/assemble/", 200, bad); field(got, "state") != "error" {
			t.Fatalf("mismatched assemble = %v", got)
		}
	})
}
