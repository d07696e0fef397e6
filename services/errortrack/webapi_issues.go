package errortrack

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// Issues and events over the web API, in Sentry's shapes.

func sentryStatus(st errortrackv1.IssueStatus) (string, map[string]any) {
	switch st {
	case errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED:
		return "resolved", map[string]any{}
	case errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED_IN_NEXT_RELEASE:
		return "resolved", map[string]any{"inNextRelease": true}
	case errortrackv1.IssueStatus_ISSUE_STATUS_IGNORED:
		return "ignored", map[string]any{}
	}
	return "unresolved", map[string]any{}
}

func shortID(project string, id int64) string {
	return strings.ToUpper(project) + "-" + strings.ToUpper(strconv.FormatInt(id, 36))
}

// issueJSON is an issue (a "group") in Sentry's shape.
func (s *Service) issueJSON(r *http.Request, is *errortrackv1.Issue, stats map[string]any) map[string]any {
	st, details := sentryStatus(is.GetStatus())
	if is.GetResolvedInRelease() != "" && is.GetStatus() == errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED {
		details["inRelease"] = is.GetResolvedInRelease()
	}
	typ, value, _ := strings.Cut(is.GetTitle(), ": ")
	metadata := map[string]any{"title": is.GetTitle()}
	if is.GetType() == "error" {
		metadata["type"], metadata["value"] = typ, value
	}
	t := func(ts interface{ AsTime() time.Time }) any {
		if ts == nil {
			return nil
		}
		return apiTime(ts.AsTime().UnixNano())
	}
	var first, last any
	if is.GetFirstSeen() != nil {
		first = t(is.GetFirstSeen())
	}
	if is.GetLastSeen() != nil {
		last = t(is.GetLastSeen())
	}
	id := strconv.FormatInt(is.GetId(), 10)
	out := map[string]any{
		"id": id, "shortId": is.GetShortId(), "title": is.GetTitle(), "culprit": is.GetCulprit(),
		"permalink": fmt.Sprintf("%s/errors/issues/%s", baseURL(r), id), "logger": nil, "level": is.GetLevel(),
		"status": st, "statusDetails": details, "substatus": nil, "isPublic": false, "platform": is.GetPlatform(),
		"project": map[string]any{"id": strconv.FormatInt(is.GetProjectId(), 10), "name": is.GetProject(), "slug": is.GetProject(), "platform": nil},
		"type":    is.GetType(), "issueType": "error", "issueCategory": "error", "metadata": metadata, "numComments": 0, "assignedTo": nil,
		"isBookmarked": false, "isSubscribed": false, "subscriptionDetails": nil, "hasSeen": false, "annotations": []any{},
		"isUnhandled": false, "count": strconv.FormatInt(is.GetTimesSeen(), 10), "userCount": is.GetUsers(),
		"firstSeen": first, "lastSeen": last, "shareId": nil,
	}
	if stats != nil {
		out["stats"] = stats
	}
	return out
}

// statsPeriod reads Sentry's statsPeriod ("24h", "14d", "" for none).
func statsPeriod(v string) (time.Duration, time.Duration, bool) {
	switch v {
	case "":
		return 0, 0, false
	case "24h":
		return 24 * time.Hour, time.Hour, true
	case "14d":
		return 14 * 24 * time.Hour, 24 * time.Hour, true
	}
	if len(v) < 2 {
		return 0, 0, false
	}
	n, err := strconv.Atoi(v[:len(v)-1])
	if err != nil || n <= 0 || n > 90 {
		return 0, 0, false
	}
	switch v[len(v)-1] {
	case 'h':
		return time.Duration(n) * time.Hour, time.Hour, true
	case 'd':
		return time.Duration(n) * 24 * time.Hour, 24 * time.Hour, true
	}
	return 0, 0, false
}

// issueStats is Sentry's {period: [[unix seconds, count], ...]}.
func issueStats(ctx context.Context, q queryer, issueID int64, key string, period, bucket time.Duration) (map[string]any, error) {
	now := time.Now().Truncate(bucket)
	n := int(period / bucket)
	start := now.Add(-time.Duration(n-1) * bucket)
	counts := make([]int64, n)
	rows, err := q.QueryContext(ctx, `SELECT received_at FROM events WHERE issue_id = $1 AND received_at >= $2 ORDER BY received_at LIMIT 100000`, issueID, start.UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			return nil, err
		}
		if i := int(time.Unix(0, at).Sub(start) / bucket); i >= 0 && i < n {
			counts[i]++
		}
	}
	points := make([][2]int64, n)
	for i := range points {
		points[i] = [2]int64{start.Add(time.Duration(i) * bucket).Unix(), counts[i]}
	}
	return map[string]any{key: points}, rows.Err()
}

// serveIssues lists a project's issues, most recently seen first: query is
// Sentry's search (is:unresolved when absent, is:resolved, is:ignored,
// release:X, environment:X, free text in the title), cursor pagination
// with the Link header.
func (s *Service) serveIssues(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, err := s.projectBySlug(ctx, r.PathValue("project"))
	if err != nil {
		s.storageError(w, "listing issues", err)
		return
	}
	qs := r.URL.Query()
	query := "is:unresolved"
	if qs.Has("query") {
		query = qs.Get("query")
	}
	q := `SELECT ` + issueColumns + ` FROM issues i JOIN projects p ON p.id = i.project_id WHERE i.project_id = $1`
	args := []any{p.id}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	var text []string
	envs := qs["environment"]
	for _, tok := range strings.Fields(query) {
		k, v, ok := strings.Cut(tok, ":")
		v = strings.Trim(v, `"`)
		switch {
		case ok && k == "is":
			switch v {
			case "unresolved":
				q += ` AND i.status = ` + arg(int32(errortrackv1.IssueStatus_ISSUE_STATUS_UNRESOLVED))
			case "resolved":
				q += ` AND i.status IN (` + arg(int32(errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED)) + `, ` + arg(int32(errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED_IN_NEXT_RELEASE)) + `)`
			case "ignored", "archived":
				q += ` AND i.status = ` + arg(int32(errortrackv1.IssueStatus_ISSUE_STATUS_IGNORED))
			default:
				apiError(w, http.StatusBadRequest, fmt.Sprintf("Error parsing search query: unsupported is:%s", v))
				return
			}
		case ok && k == "release":
			q += ` AND EXISTS (SELECT 1 FROM issue_releases r WHERE r.issue_id = i.id AND r.release = ` + arg(v) + `)`
		case ok && k == "environment":
			envs = append(envs, v)
		case ok && (k == "level"):
			q += ` AND i.level = ` + arg(v)
		default:
			text = append(text, tok)
		}
	}
	for _, e := range envs {
		q += ` AND EXISTS (SELECT 1 FROM issue_releases r WHERE r.issue_id = i.id AND r.environment = ` + arg(e) + `)`
	}
	if t := strings.Join(text, " "); t != "" {
		q += ` AND LOWER(i.title) LIKE ` + arg("%"+strings.ToLower(t)+"%")
	}
	if c := qs.Get("cursor"); c != "" {
		parts := strings.Split(c, ":")
		seen, e1 := strconv.ParseInt(parts[0], 10, 64)
		var id int64
		var e2 error
		if len(parts) == 3 {
			id, e2 = strconv.ParseInt(parts[1], 10, 64)
		}
		if len(parts) != 3 || e1 != nil || e2 != nil {
			apiError(w, http.StatusBadRequest, "Invalid cursor parameter.")
			return
		}
		if seen != 0 || id != 0 {
			q += ` AND (i.last_seen < ` + arg(seen) + ` OR (i.last_seen = ` + arg(seen) + ` AND i.id < ` + arg(id) + `))`
		}
	}
	limit := limitParam(r, 100)
	period, bucket, withStats := statsPeriod(qs.Get("statsPeriod"))
	if !qs.Has("statsPeriod") {
		period, bucket, withStats = 24*time.Hour, time.Hour, true
	}
	var out []any
	next := ""
	err = s.db.InTxOptions(ctx, &sql.TxOptions{ReadOnly: true}, func(tx *sql.Tx) error {
		out, next = []any{}, ""
		rows, err := tx.QueryContext(ctx, q+fmt.Sprintf(` ORDER BY i.last_seen DESC, i.id DESC LIMIT %d`, limit+1), args...)
		if err != nil {
			return err
		}
		var issues []*errortrackv1.Issue
		for rows.Next() {
			is, err := scanIssue(rows)
			if err != nil {
				rows.Close()
				return err
			}
			issues = append(issues, is.Issue)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(issues) > limit {
			issues = issues[:limit]
			last := issues[limit-1]
			next = fmt.Sprintf("%d:%d:0", last.GetLastSeen().AsTime().UnixNano(), last.GetId())
		}
		for _, is := range issues {
			var stats map[string]any
			if withStats {
				if stats, err = issueStats(ctx, tx, is.GetId(), qs.Get("statsPeriod"), period, bucket); err != nil {
					return err
				}
				if !qs.Has("statsPeriod") {
					stats = map[string]any{"24h": stats[""]}
				}
			}
			out = append(out, s.issueJSON(r, is, stats))
		}
		return nil
	})
	if err != nil {
		s.storageError(w, "listing issues", err)
		return
	}
	setLink(w, r, next)
	writeJSON(w, http.StatusOK, out)
}

func issueIDParam(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("issue_id"), 10, 64)
	return id, err == nil && id > 0
}

func (s *Service) serveIssue(w http.ResponseWriter, r *http.Request) {
	id, ok := issueIDParam(r)
	if !ok {
		apiNotFound(w)
		return
	}
	resp, err := (&grpcServer{s: s}).GetIssue(r.Context(), &errortrackv1.GetIssueRequest{Id: id})
	if err != nil {
		s.grpcError(w, "reading issue", err)
		return
	}
	is := resp.GetIssue()
	out := s.issueJSON(r, is, nil)
	rel := func(v string) any {
		if v == "" {
			return nil
		}
		return map[string]any{"version": v, "shortVersion": v}
	}
	out["firstRelease"], out["lastRelease"] = rel(is.GetFirstRelease()), rel(is.GetLastRelease())
	out["seenBy"], out["participants"], out["activity"] = []any{}, []any{}, []any{}
	envs := map[string]bool{}
	tags := []any{}
	for _, ir := range is.GetReleases() {
		envs[ir.GetEnvironment()] = true
	}
	if len(envs) > 0 {
		tags = append(tags, map[string]any{"key": "environment", "name": "Environment", "totalValues": len(envs)})
	}
	out["tags"] = tags
	writeJSON(w, http.StatusOK, out)
}

// grpcError answers an error from the gRPC implementation.
func (s *Service) grpcError(w http.ResponseWriter, what string, err error) {
	switch status.Code(err) {
	case codes.NotFound:
		apiNotFound(w)
	case codes.InvalidArgument:
		apiError(w, http.StatusBadRequest, status.Convert(err).Message())
	default:
		s.log.Error("web api: "+what, "err", err)
		apiError(w, http.StatusServiceUnavailable, what+": storage unavailable, retry later")
	}
}

// issueUpdateBody is the body of PUT .../issues/{id}/ (and the bulk form).
type issueUpdateBody struct {
	Status        string `json:"status"`
	StatusDetails struct {
		InRelease     string `json:"inRelease"`
		InNextRelease bool   `json:"inNextRelease"`
	} `json:"statusDetails"`
}

func (s *Service) updateIssue(ctx context.Context, id int64, u issueUpdateBody) (*errortrackv1.Issue, error) {
	g := &grpcServer{s: s}
	switch u.Status {
	case "resolved", "resolvedInNextRelease":
		in := u.StatusDetails.InRelease
		if in == "latest" {
			in = ""
		}
		resp, err := g.ResolveIssue(ctx, &errortrackv1.ResolveIssueRequest{Id: id, InRelease: in,
			InNextRelease: u.Status == "resolvedInNextRelease" || u.StatusDetails.InNextRelease})
		return resp.GetIssue(), err
	case "unresolved":
		resp, err := g.UnresolveIssue(ctx, &errortrackv1.UnresolveIssueRequest{Id: id})
		return resp.GetIssue(), err
	case "ignored", "archived":
		resp, err := g.IgnoreIssue(ctx, &errortrackv1.IgnoreIssueRequest{Id: id})
		return resp.GetIssue(), err
	case "":
		resp, err := g.GetIssue(ctx, &errortrackv1.GetIssueRequest{Id: id})
		return resp.GetIssue(), err
	}
	return nil, status.Errorf(codes.InvalidArgument, "status: %q is not one of resolved, resolvedInNextRelease, unresolved, ignored", u.Status)
}

func (s *Service) serveUpdateIssue(w http.ResponseWriter, r *http.Request) {
	id, ok := issueIDParam(r)
	if !ok {
		apiNotFound(w)
		return
	}
	var u issueUpdateBody
	if err := decodeBody(r, &u); err != nil {
		s.storageError(w, "updating issue", err)
		return
	}
	is, err := s.updateIssue(r.Context(), id, u)
	if err != nil {
		s.grpcError(w, "updating issue", err)
		return
	}
	writeJSON(w, http.StatusOK, s.issueJSON(r, is, nil))
}

// serveBulkUpdateIssues is PUT /projects/{org}/{project}/issues/?id=1&id=2
// (or ?status=unresolved for all so), what `sentry-cli issues resolve`
// sends (bulk_update_issue in src/api/mod.rs).
func (s *Service) serveBulkUpdateIssues(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, err := s.projectBySlug(ctx, r.PathValue("project"))
	if err != nil {
		s.storageError(w, "updating issues", err)
		return
	}
	var u issueUpdateBody
	if err := decodeBody(r, &u); err != nil {
		s.storageError(w, "updating issues", err)
		return
	}
	qs := r.URL.Query()
	var ids []int64
	for _, v := range qs["id"] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			apiError(w, http.StatusBadRequest, "id: want issue ids")
			return
		}
		ids = append(ids, n)
	}
	if len(ids) == 0 {
		q := `SELECT id FROM issues WHERE project_id = $1`
		args := []any{p.id}
		switch qs.Get("status") {
		case "unresolved":
			q += ` AND status = $2`
			args = append(args, int32(errortrackv1.IssueStatus_ISSUE_STATUS_UNRESOLVED))
		case "resolved":
			q += ` AND status = $2`
			args = append(args, int32(errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED))
		case "ignored":
			q += ` AND status = $2`
			args = append(args, int32(errortrackv1.IssueStatus_ISSUE_STATUS_IGNORED))
		}
		rows, err := s.db.QueryContext(ctx, q+` ORDER BY id LIMIT 1000`, args...)
		if err != nil {
			s.storageError(w, "updating issues", err)
			return
		}
		for rows.Next() {
			var id int64
			if rows.Scan(&id) == nil {
				ids = append(ids, id)
			}
		}
		rows.Close()
	}
	for _, id := range ids {
		var pid int64
		if err := s.db.QueryRowContext(ctx, `SELECT project_id FROM issues WHERE id = $1`, id).Scan(&pid); err != nil || pid != p.id {
			continue // another project's issue, or none: skipped as Sentry does
		}
		if _, err := s.updateIssue(ctx, id, u); err != nil {
			s.grpcError(w, "updating issues", err)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": u.Status, "statusDetails": map[string]any{}})
}

// eventRow is a stored event.
type eventRow struct {
	projectID                                                        int64
	project                                                          string
	eventID                                                          string
	issueID                                                          int64
	typ, title, message, level, release, environment, platform, data string
	occurred, received                                               int64
}

const eventColumns = `e.project_id, p.name, e.event_id, e.issue_id, e.type, e.title, e.message, e.level, e.release, e.environment, e.platform, e.occurred_at, e.received_at, e.data`

func scanEvent(sc interface{ Scan(...any) error }) (eventRow, error) {
	var e eventRow
	err := sc.Scan(&e.projectID, &e.project, &e.eventID, &e.issueID, &e.typ, &e.title, &e.message, &e.level, &e.release, &e.environment, &e.platform, &e.occurred, &e.received, &e.data)
	if errors.Is(err, sql.ErrNoRows) {
		err = errNotFound
	}
	return e, err
}

// rawList reads an SDK's {"values": [...]} or bare [...] interface.
func rawList(raw json.RawMessage) []json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	var list []json.RawMessage
	if raw[0] == '[' {
		_ = json.Unmarshal(raw, &list)
		return list
	}
	var obj struct {
		Values []json.RawMessage `json:"values"`
	}
	_ = json.Unmarshal(raw, &obj)
	return obj.Values
}

func rawObject(raw json.RawMessage) map[string]json.RawMessage {
	m := map[string]json.RawMessage{}
	_ = json.Unmarshal(raw, &m)
	return m
}

func rawValue(raw json.RawMessage) any {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	return v
}

func rawString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return ""
}

// rawTime turns an SDK timestamp (seconds as a number, or RFC 3339) into
// Sentry's form.
func rawTime(raw json.RawMessage) any {
	var f float64
	if json.Unmarshal(raw, &f) == nil && f > 0 && !math.IsInf(f, 0) {
		sec, frac := math.Modf(f)
		return apiTime(time.Unix(int64(sec), int64(frac*1e9)).UnixNano())
	}
	if s := rawString(raw); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return apiTime(t.UnixNano())
		}
		if t, err := time.Parse("2006-01-02T15:04:05.999999", s); err == nil {
			return apiTime(t.UnixNano())
		}
		return s
	}
	return nil
}

// frameJSON turns an SDK frame (snake_case) into the API's (camelCase).
func frameJSON(raw json.RawMessage) map[string]any {
	f := rawObject(raw)
	out := map[string]any{
		"filename": rawValue(f["filename"]), "absPath": rawValue(f["abs_path"]), "module": rawValue(f["module"]), "package": rawValue(f["package"]),
		"platform": rawValue(f["platform"]), "instructionAddr": rawValue(f["instruction_addr"]), "symbolAddr": rawValue(f["symbol_addr"]),
		"function": rawValue(f["function"]), "rawFunction": rawValue(f["raw_function"]), "symbol": rawValue(f["symbol"]),
		"lineNo": rawValue(f["lineno"]), "colNo": rawValue(f["colno"]), "inApp": rawValue(f["in_app"]) == true,
		"trust": nil, "errors": nil, "vars": rawValue(f["vars"]),
	}
	if out["inApp"] == false && rawValue(f["in_app"]) == nil {
		out["inApp"] = false
	}
	// context: [[lineno, line], ...] around the frame's line.
	ctx := []any{}
	lineno, _ := rawValue(f["lineno"]).(float64)
	var pre, post []string
	_ = json.Unmarshal(f["pre_context"], &pre)
	_ = json.Unmarshal(f["post_context"], &post)
	if lineno > 0 {
		n := int(lineno)
		for i, l := range pre {
			ctx = append(ctx, []any{n - len(pre) + i, l})
		}
		if cl, ok := rawValue(f["context_line"]).(string); ok {
			ctx = append(ctx, []any{n, cl})
		}
		for i, l := range post {
			ctx = append(ctx, []any{n + 1 + i, l})
		}
	}
	out["context"] = ctx
	return out
}

func stacktraceJSON(raw json.RawMessage) any {
	st := rawObject(raw)
	if len(st) == 0 {
		return nil
	}
	frames := []any{}
	system := false
	for _, f := range rawList(st["frames"]) {
		fj := frameJSON(f)
		if fj["inApp"] == false {
			system = true
		}
		frames = append(frames, fj)
	}
	return map[string]any{"frames": frames, "framesOmitted": nil, "registers": rawValue(st["registers"]), "hasSystemFrames": system}
}

// eventEntries are a full event's entries: exception (or message),
// breadcrumbs, request, as Sentry orders them.
func eventEntries(ev map[string]json.RawMessage) []any {
	entries := []any{}
	if exc := rawList(ev["exception"]); len(exc) > 0 {
		values := []any{}
		system := false
		for _, e := range exc {
			eo := rawObject(e)
			st := stacktraceJSON(eo["stacktrace"])
			if m, ok := st.(map[string]any); ok && m["hasSystemFrames"] == true {
				system = true
			}
			values = append(values, map[string]any{
				"type": rawValue(eo["type"]), "value": rawValue(eo["value"]), "module": rawValue(eo["module"]),
				"mechanism": rawValue(eo["mechanism"]), "threadId": rawValue(eo["thread_id"]), "rawStacktrace": nil, "stacktrace": st,
			})
		}
		entries = append(entries, map[string]any{"type": "exception", "data": map[string]any{"values": values, "hasSystemFrames": system, "excOmitted": nil}})
	}
	msgRaw := ev["logentry"]
	if len(msgRaw) == 0 {
		msgRaw = ev["message"]
	}
	if len(bytes.TrimSpace(msgRaw)) > 0 {
		var formatted, message string
		var params any
		if s := rawString(msgRaw); s != "" {
			formatted = s
		} else {
			m := rawObject(msgRaw)
			formatted, message, params = rawString(m["formatted"]), rawString(m["message"]), rawValue(m["params"])
			if formatted == "" {
				formatted = message
			}
		}
		if formatted != "" {
			entries = append(entries, map[string]any{"type": "message", "data": map[string]any{"formatted": formatted, "message": nullable(message), "params": params}})
		}
	}
	if crumbs := rawList(ev["breadcrumbs"]); len(crumbs) > 0 {
		values := []any{}
		for _, c := range crumbs {
			co := rawObject(c)
			typ := rawString(co["type"])
			if typ == "" {
				typ = "default"
			}
			level := rawString(co["level"])
			if level == "" {
				level = "info"
			}
			values = append(values, map[string]any{"type": typ, "category": rawValue(co["category"]), "level": level, "message": rawValue(co["message"]),
				"data": rawValue(co["data"]), "timestamp": rawTime(co["timestamp"]), "event_id": rawValue(co["event_id"])})
		}
		entries = append(entries, map[string]any{"type": "breadcrumbs", "data": map[string]any{"values": values}})
	}
	if req := rawObject(ev["request"]); len(req) > 0 {
		entries = append(entries, map[string]any{"type": "request", "data": map[string]any{
			"url": rawValue(req["url"]), "method": rawValue(req["method"]), "query": queryPairs(req["query_string"]), "fragment": rawValue(req["fragment"]),
			"data": rawValue(req["data"]), "headers": pairs(req["headers"]), "cookies": pairs(req["cookies"]), "env": rawValue(req["env"]),
			"inferredContentType": rawValue(req["inferred_content_type"]), "apiTarget": nil,
		}})
	}
	return entries
}

// pairs turns {"k": "v"} or [["k","v"]] into sorted [[k, v], ...].
func pairs(raw json.RawMessage) []any {
	out := []any{}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return out
	}
	if raw[0] == '[' {
		var list [][]json.RawMessage
		_ = json.Unmarshal(raw, &list)
		for _, p := range list {
			if len(p) == 2 {
				out = append(out, []any{rawString(p[0]), rawString(p[1])})
			}
		}
		return out
	}
	if raw[0] == '"' { // a cookie header
		for _, c := range strings.Split(rawString(raw), ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(c), "=")
			if k != "" {
				out = append(out, []any{k, v})
			}
		}
		return out
	}
	m := rawObject(raw)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, []any{k, rawString(m[k])})
	}
	return out
}

func queryPairs(raw json.RawMessage) []any {
	if s := rawString(raw); s != "" {
		out := []any{}
		for _, part := range strings.Split(strings.TrimPrefix(s, "?"), "&") {
			k, v, _ := strings.Cut(part, "=")
			ku, _ := url.QueryUnescape(k)
			vu, _ := url.QueryUnescape(v)
			if ku != "" {
				out = append(out, []any{ku, vu})
			}
		}
		return out
	}
	return pairs(raw)
}

// eventTags are the event's tags as [{key, value}], with level,
// environment and release as Sentry adds them.
func eventTags(ev map[string]json.RawMessage, e eventRow) []any {
	tags := map[string]string{}
	for _, p := range pairs(ev["tags"]) {
		kv := p.([]any)
		tags[kv[0].(string)] = kv[1].(string)
	}
	add := func(k, v string) {
		if _, ok := tags[k]; !ok && v != "" {
			tags[k] = v
		}
	}
	add("level", e.level)
	add("environment", e.environment)
	add("release", e.release)
	if sn := rawString(ev["server_name"]); sn != "" {
		add("server_name", sn)
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := []any{}
	for _, k := range keys {
		out = append(out, map[string]string{"key": k, "value": tags[k]})
	}
	return out
}

// eventJSON is a stored event in Sentry's shape; full adds entries and
// contexts (the event details endpoints), else the list's fields.
func eventJSON(e eventRow, full bool) map[string]any {
	ev := rawObject(json.RawMessage(e.data))
	var group any
	if e.issueID != 0 {
		group = strconv.FormatInt(e.issueID, 10)
	}
	typ := "default"
	if e.typ == "transaction" {
		typ = "transaction"
	} else if len(rawList(ev["exception"])) > 0 {
		typ = "error"
	}
	culprit := rawString(ev["culprit"])
	if culprit == "" {
		culprit = rawString(ev["transaction"])
	}
	out := map[string]any{
		"id": e.eventID, "eventID": e.eventID, "groupID": group, "projectID": strconv.FormatInt(e.projectID, 10),
		"title": e.title, "message": e.message, "platform": e.platform, "type": typ, "event.type": typ,
		"dateCreated": apiTime(e.occurred), "dateReceived": apiTime(e.received), "culprit": culprit, "location": nullable(rawString(ev["transaction"])),
		"tags": eventTags(ev, e), "user": rawValue(ev["user"]), "crashFile": nil,
	}
	if !full {
		return out
	}
	meta := map[string]any{"title": e.title}
	if exc := rawList(ev["exception"]); len(exc) > 0 {
		last := rawObject(exc[len(exc)-1])
		meta["type"], meta["value"] = rawValue(last["type"]), rawValue(last["value"])
	}
	contexts := rawValue(ev["contexts"])
	if contexts == nil {
		contexts = map[string]any{}
	}
	var release any
	if e.release != "" {
		release = map[string]any{"version": e.release, "shortVersion": e.release}
	}
	packages := rawValue(ev["modules"])
	if packages == nil {
		packages = map[string]any{}
	}
	out["entries"] = eventEntries(ev)
	out["contexts"] = contexts
	out["context"] = orEmpty(rawValue(ev["extra"]))
	out["sdk"] = rawValue(ev["sdk"])
	out["metadata"] = meta
	out["release"] = release
	out["dist"] = rawValue(ev["dist"])
	out["fingerprints"] = orList(rawValue(ev["fingerprint"]))
	out["packages"] = packages
	out["errors"] = []any{}
	out["size"] = len(e.data)
	out["occurrence"] = nil
	return out
}

func orEmpty(v any) any {
	if v == nil {
		return map[string]any{}
	}
	return v
}

func orList(v any) any {
	if v == nil {
		return []any{}
	}
	return v
}

// serveIssueEvents lists an issue's events, newest first (cursor
// "RECEIVED:0:0" keyset by received time and event id encoded in value).
func (s *Service) serveIssueEvents(w http.ResponseWriter, r *http.Request) {
	id, ok := issueIDParam(r)
	if !ok {
		apiNotFound(w)
		return
	}
	s.listEvents(w, r, `e.issue_id = $1`, id)
}

func (s *Service) serveProjectEvents(w http.ResponseWriter, r *http.Request) {
	p, err := s.projectBySlug(r.Context(), r.PathValue("project"))
	if err != nil {
		s.storageError(w, "listing events", err)
		return
	}
	s.listEvents(w, r, `e.project_id = $1 AND e.type <> 'transaction'`, p.id)
}

func (s *Service) listEvents(w http.ResponseWriter, r *http.Request, cond string, arg int64) {
	ctx := r.Context()
	qs := r.URL.Query()
	limit := limitParam(r, 100)
	full := qs.Get("full") == "true" || qs.Get("full") == "1"
	q := `SELECT ` + eventColumns + ` FROM events e JOIN projects p ON p.id = e.project_id WHERE ` + cond
	args := []any{arg}
	if strings.HasPrefix(cond, "e.issue_id") {
		var one int
		if err := s.db.QueryRowContext(ctx, `SELECT 1 FROM issues WHERE id = $1`, arg).Scan(&one); err != nil {
			s.storageError(w, "listing events", err)
			return
		}
	}
	if c := qs.Get("cursor"); c != "" {
		val, _, _ := strings.Cut(c, ":")
		recv, eid, ok := strings.Cut(val, ".")
		n, err := strconv.ParseInt(recv, 10, 64)
		if c != "0:0:0" && c != "0:0:1" {
			if !ok || err != nil {
				apiError(w, http.StatusBadRequest, "Invalid cursor parameter.")
				return
			}
			args = append(args, n, eid)
			q += ` AND (e.received_at < $2 OR (e.received_at = $2 AND e.event_id < $3))`
		}
	}
	rows, err := s.db.QueryContext(ctx, q+fmt.Sprintf(` ORDER BY e.received_at DESC, e.event_id DESC LIMIT %d`, limit+1), args...)
	if err != nil {
		s.storageError(w, "listing events", err)
		return
	}
	var evs []eventRow
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			rows.Close()
			s.storageError(w, "listing events", err)
			return
		}
		evs = append(evs, e)
	}
	rows.Close()
	next := ""
	if len(evs) > limit {
		evs = evs[:limit]
		last := evs[limit-1]
		next = fmt.Sprintf("%d.%s:0:0", last.received, last.eventID)
	}
	out := []any{}
	for _, e := range evs {
		out = append(out, eventJSON(e, full))
	}
	setLink(w, r, next)
	writeJSON(w, http.StatusOK, out)
}

// serveIssueEvent is .../events/latest/, oldest/, recommended/ or an event id.
func (s *Service) serveIssueEvent(w http.ResponseWriter, r *http.Request) {
	id, ok := issueIDParam(r)
	if !ok {
		apiNotFound(w)
		return
	}
	q := `SELECT ` + eventColumns + ` FROM events e JOIN projects p ON p.id = e.project_id WHERE e.issue_id = $1`
	args := []any{id}
	switch which := r.PathValue("which"); which {
	case "latest", "recommended":
		q += ` ORDER BY e.received_at DESC, e.event_id DESC LIMIT 1`
	case "oldest":
		q += ` ORDER BY e.received_at, e.event_id LIMIT 1`
	default:
		q += ` AND e.event_id = $2`
		args = append(args, strings.ReplaceAll(strings.ToLower(which), "-", ""))
	}
	e, err := scanEvent(s.db.QueryRowContext(r.Context(), q, args...))
	if err != nil {
		s.storageError(w, "reading event", err)
		return
	}
	writeJSON(w, http.StatusOK, eventJSON(e, true))
}

func (s *Service) serveProjectEvent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, err := s.projectBySlug(ctx, r.PathValue("project"))
	if err != nil {
		s.storageError(w, "reading event", err)
		return
	}
	eid := strings.ReplaceAll(strings.ToLower(r.PathValue("event_id")), "-", "")
	e, err := scanEvent(s.db.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events e JOIN projects p ON p.id = e.project_id WHERE e.project_id = $1 AND e.event_id = $2`, p.id, eid))
	if err != nil {
		s.storageError(w, "reading event", err)
		return
	}
	writeJSON(w, http.StatusOK, eventJSON(e, true))
}
