package errortrack

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// RegisterGRPC registers ErrorService on a gRPC server.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	errortrackv1.RegisterErrorServiceServer(r, &grpcServer{s: s})
}

type grpcServer struct {
	errortrackv1.UnimplementedErrorServiceServer
	s *Service
}

func invalid(field, msg string) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, msg)
}

func unavailable(what string, err error) error {
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return err
	}
	if errors.Is(err, errNotFound) {
		return status.Errorf(codes.NotFound, "%s: not found", what)
	}
	return status.Errorf(codes.Unavailable, "%s: %v", what, err)
}

func ts(n int64) *timestamppb.Timestamp {
	if n == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, n))
}

func (g *grpcServer) keyProto(k key) *errortrackv1.ProjectKey {
	return &errortrackv1.ProjectKey{PublicKey: k.public, Dsn: DSN(g.s.cfg.PublicURL(), k.public, k.projectID), Revoked: k.revokedAt != 0,
		CreatedAt: ts(k.createdAt), RevokedAt: ts(k.revokedAt)}
}

func (g *grpcServer) projectProto(ctx context.Context, q queryer, p project) (*errortrackv1.Project, error) {
	out := &errortrackv1.Project{Id: p.id, Name: p.name, RateLimitPerMinute: p.ratePerMinute, QuotaPerHour: p.quotaPerHour,
		GroupingVersion: int32(p.groupingVer), Repository: p.repository, CreatedAt: ts(p.createdAt), Counters: map[string]int64{}}
	rows, err := q.QueryContext(ctx, `SELECT public_key, secret_key, project_id, created_at, revoked_at FROM project_keys WHERE project_id = $1 ORDER BY created_at`, p.id)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.public, &k.secret, &k.projectID, &k.createdAt, &k.revokedAt); err != nil {
			rows.Close()
			return nil, err
		}
		out.Keys = append(out.Keys, g.keyProto(k))
	}
	rows.Close()
	crows, err := q.QueryContext(ctx, `SELECT name, value FROM counters WHERE project_id = $1`, p.id)
	if err != nil {
		return nil, err
	}
	defer crows.Close()
	for crows.Next() {
		var n string
		var v int64
		if err := crows.Scan(&n, &v); err != nil {
			return nil, err
		}
		out.Counters[n] = v
	}
	return out, crows.Err()
}

func (g *grpcServer) CreateProject(ctx context.Context, req *errortrackv1.CreateProjectRequest) (*errortrackv1.CreateProjectResponse, error) {
	name := strings.TrimSpace(req.GetName())
	if name == "" || strings.ContainsAny(name, " \t\n/") || len(name) > 100 {
		return nil, invalid("name", fmt.Sprintf("%q: want a short name without spaces or slashes, e.g. web-frontend", name))
	}
	if _, err := strconv.ParseInt(name, 10, 64); err == nil {
		return nil, invalid("name", "must not be a number (numbers name projects by id)")
	}
	if req.GetRateLimitPerMinute() < 0 || req.GetQuotaPerHour() < 0 {
		return nil, invalid("rate_limit_per_minute", "limits cannot be negative")
	}
	var resp *errortrackv1.CreateProjectResponse
	err := g.s.db.InTx(ctx, func(tx *sql.Tx) error {
		p, k, err := createProject(ctx, tx, name, req.GetRateLimitPerMinute(), req.GetQuotaPerHour(), req.GetRepository())
		if err != nil {
			return err
		}
		pp, err := g.projectProto(ctx, tx, p)
		resp = &errortrackv1.CreateProjectResponse{Project: pp, Key: g.keyProto(k)}
		return err
	})
	if errors.Is(err, errExists) {
		return nil, status.Errorf(codes.AlreadyExists, "project %q already exists (see shiploop errors project ls)", name)
	}
	if err != nil {
		return nil, unavailable("creating project", err)
	}
	return resp, nil
}

func (g *grpcServer) ListProjects(ctx context.Context, _ *errortrackv1.ListProjectsRequest) (*errortrackv1.ListProjectsResponse, error) {
	resp := &errortrackv1.ListProjectsResponse{}
	err := g.s.db.InTxOptions(ctx, &sql.TxOptions{ReadOnly: true}, func(tx *sql.Tx) error {
		resp.Projects = nil
		rows, err := tx.QueryContext(ctx, `SELECT `+projectColumns+` FROM projects ORDER BY id`)
		if err != nil {
			return err
		}
		var ps []project
		for rows.Next() {
			p, err := scanProject(rows)
			if err != nil {
				rows.Close()
				return err
			}
			ps = append(ps, p)
		}
		rows.Close()
		for _, p := range ps {
			pp, err := g.projectProto(ctx, tx, p)
			if err != nil {
				return err
			}
			resp.Projects = append(resp.Projects, pp)
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("listing projects", err)
	}
	return resp, nil
}

func (g *grpcServer) withProject(ctx context.Context, ref string, fn func(tx *sql.Tx, p project) error) error {
	if strings.TrimSpace(ref) == "" {
		return invalid("project", "required: a project id or name")
	}
	err := g.s.db.InTx(ctx, func(tx *sql.Tx) error {
		p, err := findProject(ctx, tx, ref)
		if errors.Is(err, errNotFound) {
			return status.Errorf(codes.NotFound, "project %q not found (shiploop errors project ls)", ref)
		}
		if err != nil {
			return err
		}
		return fn(tx, p)
	})
	if err != nil {
		return unavailable("project "+ref, err)
	}
	return nil
}

func (g *grpcServer) GetProject(ctx context.Context, req *errortrackv1.GetProjectRequest) (*errortrackv1.GetProjectResponse, error) {
	resp := &errortrackv1.GetProjectResponse{}
	err := g.withProject(ctx, req.GetProject(), func(tx *sql.Tx, p project) error {
		var err error
		resp.Project, err = g.projectProto(ctx, tx, p)
		return err
	})
	return resp, err
}

func (g *grpcServer) UpdateProject(ctx context.Context, req *errortrackv1.UpdateProjectRequest) (*errortrackv1.UpdateProjectResponse, error) {
	resp := &errortrackv1.UpdateProjectResponse{}
	var id int64
	err := g.withProject(ctx, req.GetProject(), func(tx *sql.Tx, p project) error {
		id = p.id
		if req.GetRateLimitPerMinute() >= 0 {
			p.ratePerMinute = req.GetRateLimitPerMinute()
		}
		if req.GetQuotaPerHour() >= 0 {
			p.quotaPerHour = req.GetQuotaPerHour()
		}
		if req.GetRepository() != "" {
			p.repository = req.GetRepository()
		}
		if _, err := tx.ExecContext(ctx, `UPDATE projects SET rate_limit_per_minute = $1, quota_per_hour = $2, repository = $3 WHERE id = $4`,
			p.ratePerMinute, p.quotaPerHour, p.repository, p.id); err != nil {
			return err
		}
		var err error
		resp.Project, err = g.projectProto(ctx, tx, p)
		return err
	})
	g.s.keys.forget("", id)
	g.s.limiter.reset(id)
	return resp, err
}

func (g *grpcServer) RotateKey(ctx context.Context, req *errortrackv1.RotateKeyRequest) (*errortrackv1.RotateKeyResponse, error) {
	resp := &errortrackv1.RotateKeyResponse{}
	var revoked []string
	err := g.withProject(ctx, req.GetProject(), func(tx *sql.Tx, p project) error {
		revoked = revoked[:0]
		if req.GetRevokeOthers() {
			rows, err := tx.QueryContext(ctx, `SELECT public_key FROM project_keys WHERE project_id = $1 AND revoked_at = 0`, p.id)
			if err != nil {
				return err
			}
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					rows.Close()
					return err
				}
				revoked = append(revoked, k)
			}
			rows.Close()
			if _, err := tx.ExecContext(ctx, `UPDATE project_keys SET revoked_at = $1 WHERE project_id = $2 AND revoked_at = 0`, time.Now().UnixNano(), p.id); err != nil {
				return err
			}
		}
		k, err := addKey(ctx, tx, p.id)
		resp.Key = g.keyProto(k)
		return err
	})
	for _, k := range revoked {
		g.s.keys.forget(k, 0)
	}
	return resp, err
}

func (g *grpcServer) RevokeKey(ctx context.Context, req *errortrackv1.RevokeKeyRequest) (*errortrackv1.RevokeKeyResponse, error) {
	if req.GetPublicKey() == "" {
		return nil, invalid("public_key", "required")
	}
	var k key
	err := g.s.db.InTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT public_key, secret_key, project_id, created_at, revoked_at FROM project_keys WHERE public_key = $1`, req.GetPublicKey()).
			Scan(&k.public, &k.secret, &k.projectID, &k.createdAt, &k.revokedAt)
		if errors.Is(err, sql.ErrNoRows) {
			return status.Errorf(codes.NotFound, "key %q not found", req.GetPublicKey())
		}
		if err != nil || k.revokedAt != 0 {
			return err
		}
		k.revokedAt = time.Now().UnixNano()
		_, err = tx.ExecContext(ctx, `UPDATE project_keys SET revoked_at = $1 WHERE public_key = $2`, k.revokedAt, k.public)
		return err
	})
	if err != nil {
		return nil, unavailable("revoking key", err)
	}
	g.s.keys.forget(k.public, 0)
	return &errortrackv1.RevokeKeyResponse{Key: g.keyProto(k)}, nil
}

const issueColumns = `i.id, i.project_id, p.name, i.title, i.culprit, i.level, i.type, i.status, i.resolved_in_release, i.regressed, i.times_seen, i.users,
	i.first_seen, i.last_seen, i.first_release, i.last_release, i.platform, i.last_event_id, i.grouping_version, i.first_environment, i.first_deploy_id, i.files, i.short_number`

type issueRow struct {
	*errortrackv1.Issue
	firstEnv, firstDeploy, files string
}

func scanIssue(sc interface{ Scan(...any) error }) (issueRow, error) {
	is := issueRow{Issue: &errortrackv1.Issue{}}
	var st int32
	var regressed int64
	var first, last int64
	err := sc.Scan(&is.Id, &is.ProjectId, &is.Project, &is.Title, &is.Culprit, &is.Level, &is.Type, &st, &is.ResolvedInRelease, &regressed,
		&is.TimesSeen, &is.Users, &first, &last, &is.FirstRelease, &is.LastRelease, &is.Platform, &is.LastEventId, &is.GroupingVersion,
		&is.firstEnv, &is.firstDeploy, &is.files, &is.ShortNumber)
	if errors.Is(err, sql.ErrNoRows) {
		err = errNotFound
	}
	is.Status = errortrackv1.IssueStatus(st)
	is.Regressed = regressed > 0
	is.FirstSeen, is.LastSeen = ts(first), ts(last)
	if is.ShortNumber > 0 {
		is.ShortId = shortID(is.Project, is.ShortNumber)
	}
	return is, err
}

func pageSize(n int32) int {
	switch {
	case n <= 0:
		return 50
	case n > 500:
		return 500
	}
	return int(n)
}

func (g *grpcServer) ListIssues(ctx context.Context, req *errortrackv1.ListIssuesRequest) (*errortrackv1.ListIssuesResponse, error) {
	size := pageSize(req.GetPageSize())
	beforeSeen, beforeID := int64(1<<62), int64(1<<62)
	if t := req.GetPageToken(); t != "" {
		raw, err := base64.RawURLEncoding.DecodeString(t)
		a, b, ok := strings.Cut(string(raw), "/")
		n1, e1 := strconv.ParseInt(a, 10, 64)
		n2, e2 := strconv.ParseInt(b, 10, 64)
		if err != nil || !ok || e1 != nil || e2 != nil {
			return nil, invalid("page_token", "not a token this server gave out")
		}
		beforeSeen, beforeID = n1, n2
	}
	q := `SELECT ` + issueColumns + ` FROM issues i JOIN projects p ON p.id = i.project_id WHERE (i.last_seen < $1 OR (i.last_seen = $1 AND i.id < $2))`
	args := []any{beforeSeen, beforeID}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	resp := &errortrackv1.ListIssuesResponse{}
	err := g.s.db.InTxOptions(ctx, &sql.TxOptions{ReadOnly: true}, func(tx *sql.Tx) error {
		resp.Issues = nil
		if ref := req.GetProject(); ref != "" {
			p, err := findProject(ctx, tx, ref)
			if errors.Is(err, errNotFound) {
				return status.Errorf(codes.NotFound, "project %q not found", ref)
			}
			if err != nil {
				return err
			}
			q += ` AND i.project_id = ` + arg(p.id)
		}
		if st := req.GetStatus(); st != errortrackv1.IssueStatus_ISSUE_STATUS_UNSPECIFIED {
			q += ` AND i.status = ` + arg(int32(st))
		}
		if r, e := req.GetRelease(), req.GetEnvironment(); r != "" || e != "" {
			sub := ` AND EXISTS (SELECT 1 FROM issue_releases r WHERE r.issue_id = i.id`
			if r != "" {
				sub += ` AND r.release = ` + arg(r)
			}
			if e != "" {
				sub += ` AND r.environment = ` + arg(e)
			}
			q += sub + `)`
		}
		if t := req.GetQuery(); t != "" {
			q += ` AND LOWER(i.title) LIKE ` + arg("%"+strings.ToLower(t)+"%")
		}
		rows, err := tx.QueryContext(ctx, q+fmt.Sprintf(` ORDER BY i.last_seen DESC, i.id DESC LIMIT %d`, size+1), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			is, err := scanIssue(rows)
			if err != nil {
				return err
			}
			resp.Issues = append(resp.Issues, is.Issue)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, unavailable("listing issues", err)
	}
	if len(resp.Issues) > size {
		last := resp.Issues[size-1]
		resp.Issues = resp.Issues[:size]
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d/%d", last.LastSeen.AsTime().UnixNano(), last.Id))
	}
	return resp, nil
}

func loadIssue(ctx context.Context, q queryer, id int64) (issueRow, error) {
	return scanIssue(q.QueryRowContext(ctx, `SELECT `+issueColumns+` FROM issues i JOIN projects p ON p.id = i.project_id WHERE i.id = $1`, id))
}

func (g *grpcServer) GetIssue(ctx context.Context, req *errortrackv1.GetIssueRequest) (*errortrackv1.GetIssueResponse, error) {
	var out *errortrackv1.Issue
	err := g.s.db.InTxOptions(ctx, &sql.TxOptions{ReadOnly: true}, func(tx *sql.Tx) error {
		is, err := loadIssue(ctx, tx, req.GetId())
		if errors.Is(err, errNotFound) {
			return status.Errorf(codes.NotFound, "issue %d not found", req.GetId())
		}
		if err != nil {
			return err
		}
		out = is.Issue
		return fillIssue(ctx, tx, is)
	})
	if err != nil {
		return nil, unavailable("reading issue", err)
	}
	return &errortrackv1.GetIssueResponse{Issue: out}, nil
}

// fillIssue adds hashes, per-release counts, the first deploy and the
// suspect commits: that deploy's commits touching the issue's in-app files.
func fillIssue(ctx context.Context, q queryer, is issueRow) error {
	rows, err := q.QueryContext(ctx, `SELECT hash FROM issue_hashes WHERE issue_id = $1 ORDER BY hash`, is.Id)
	if err != nil {
		return err
	}
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			rows.Close()
			return err
		}
		is.Hashes = append(is.Hashes, h)
	}
	rows.Close()
	rrows, err := q.QueryContext(ctx, `SELECT release, environment, times_seen, first_seen, last_seen FROM issue_releases WHERE issue_id = $1 ORDER BY first_seen`, is.Id)
	if err != nil {
		return err
	}
	for rrows.Next() {
		r := &errortrackv1.IssueRelease{}
		var f, l int64
		if err := rrows.Scan(&r.Release, &r.Environment, &r.TimesSeen, &f, &l); err != nil {
			rrows.Close()
			return err
		}
		r.FirstSeen, r.LastSeen = ts(f), ts(l)
		is.Releases = append(is.Releases, r)
	}
	rrows.Close()
	deployID := is.firstDeploy
	if deployID == "" && is.FirstRelease != "" {
		// A deploy recorded after the issue opened (events raced the record).
		_ = q.QueryRowContext(ctx, `SELECT id FROM deploys WHERE project_id = $1 AND release = $2 AND environment = $3 ORDER BY deployed_at LIMIT 1`,
			is.ProjectId, is.FirstRelease, is.firstEnv).Scan(&deployID)
	}
	if deployID == "" {
		return nil
	}
	d, err := loadDeploy(ctx, q, deployID)
	if err != nil {
		return nil
	}
	is.FirstDeploy = d
	// A regressed issue's suspects are in the release it came back in.
	suspectDeploy := deployID
	if is.Regressed && is.LastRelease != "" && is.LastRelease != is.FirstRelease {
		_ = q.QueryRowContext(ctx, `SELECT id FROM deploys WHERE project_id = $1 AND release = $2 AND environment = $3 ORDER BY deployed_at DESC LIMIT 1`,
			is.ProjectId, is.LastRelease, is.firstEnv).Scan(&suspectDeploy)
	}
	is.SuspectCommits = suspectsFor(ctx, q, suspectDeploy, is.files)
	return nil
}

func loadDeploy(ctx context.Context, q queryer, id string) (*errortrackv1.Deploy, error) {
	d := &errortrackv1.Deploy{}
	var at int64
	var commits string
	if err := q.QueryRowContext(ctx, `SELECT id, project_id, release, environment, deployed_at, commits FROM deploys WHERE id = $1`, id).
		Scan(&d.Id, &d.ProjectId, &d.Release, &d.Environment, &at, &commits); err != nil {
		return nil, err
	}
	d.DeployedAt = ts(at)
	var cs []struct {
		SHA, Message, Author string
		Files                []string
	}
	_ = json.Unmarshal([]byte(commits), &cs)
	for _, c := range cs {
		d.Commits = append(d.Commits, &errortrackv1.Commit{Sha: c.SHA, Message: c.Message, Author: c.Author, Files: c.Files})
	}
	return d, nil
}

func (g *grpcServer) ListIssueEvents(ctx context.Context, req *errortrackv1.ListIssueEventsRequest) (*errortrackv1.ListIssueEventsResponse, error) {
	size := pageSize(req.GetPageSize())
	before, beforeID := int64(1<<62), "~"
	if t := req.GetPageToken(); t != "" {
		raw, err := base64.RawURLEncoding.DecodeString(t)
		a, b, ok := strings.Cut(string(raw), "/")
		n, e := strconv.ParseInt(a, 10, 64)
		if err != nil || !ok || e != nil {
			return nil, invalid("page_token", "not a token this server gave out")
		}
		before, beforeID = n, b
	}
	resp := &errortrackv1.ListIssueEventsResponse{}
	var lastRecv int64
	err := g.s.db.InTxOptions(ctx, &sql.TxOptions{ReadOnly: true}, func(tx *sql.Tx) error {
		resp.Events = nil
		is, err := loadIssue(ctx, tx, req.GetIssueId())
		if errors.Is(err, errNotFound) {
			return status.Errorf(codes.NotFound, "issue %d not found", req.GetIssueId())
		}
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, fmt.Sprintf(`SELECT event_id, issue_id, type, title, message, level, release, environment, platform, occurred_at, received_at, data
			FROM events WHERE issue_id = $1 AND project_id = $2 AND (received_at < $3 OR (received_at = $3 AND event_id < $4)) ORDER BY received_at DESC, event_id DESC LIMIT %d`, size+1),
			is.Id, is.ProjectId, before, beforeID)
		if err != nil {
			return err
		}
		for rows.Next() {
			e := &errortrackv1.ErrorEvent{}
			var occ, recv int64
			if err := rows.Scan(&e.EventId, &e.IssueId, &e.Type, &e.Title, &e.Message, &e.Level, &e.Release, &e.Environment, &e.Platform, &occ, &recv, &e.Json); err != nil {
				rows.Close()
				return err
			}
			e.Timestamp, e.ReceivedAt = ts(occ), ts(recv)
			resp.Events = append(resp.Events, e)
			lastRecv = recv
			if len(resp.Events) == size {
				break
			}
		}
		more := rows.Next()
		rows.Close()
		if !more {
			lastRecv = 0
		}
		for _, e := range resp.Events {
			e.Detail = readDetail(e.Json)
			if err := loadAttachments(ctx, tx, is.ProjectId, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("listing events", err)
	}
	if lastRecv != 0 && len(resp.Events) > 0 {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d/%s", lastRecv, resp.Events[len(resp.Events)-1].EventId))
	}
	return resp, nil
}

// setStatus changes an issue's status in a transaction and publishes what
// the change means.
func (g *grpcServer) setStatus(ctx context.Context, id int64, fn func(tx *bus.Tx, is issueRow) (errortrackv1.IssueStatus, string, error)) (*errortrackv1.Issue, error) {
	var out *errortrackv1.Issue
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		is, err := loadIssue(ctx, tx, id)
		if errors.Is(err, errNotFound) {
			return status.Errorf(codes.NotFound, "issue %d not found", id)
		}
		if err != nil {
			return err
		}
		st, rel, err := fn(tx, is)
		if err != nil {
			return err
		}
		resolvedAt := int64(0)
		if st == errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED || st == errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED_IN_NEXT_RELEASE {
			resolvedAt = time.Now().UnixNano()
			p, err := scanProject(tx.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE id = $1`, is.ProjectId))
			if err != nil {
				return err
			}
			if err := tx.Publish(bus.NewEvent("errortrack.issue.resolved", p.repository, fmt.Sprint(is.Id), &errortrackv1.IssueResolved{
				Issue:  issueRef(p, is.Id, is.Title, is.Culprit, is.Level, is.FirstSeen.AsTime()),
				Status: st, ResolvedInRelease: rel,
			})); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE issues SET status = $1, resolved_in_release = $2, resolved_at = $3 WHERE id = $4`, int32(st), rel, resolvedAt, id); err != nil {
			return err
		}
		is2, err := loadIssue(ctx, tx, id)
		out = is2.Issue
		return err
	})
	if err != nil {
		return nil, unavailable("changing issue", err)
	}
	return out, nil
}

func (g *grpcServer) ResolveIssue(ctx context.Context, req *errortrackv1.ResolveIssueRequest) (*errortrackv1.ResolveIssueResponse, error) {
	is, err := g.setStatus(ctx, req.GetId(), func(tx *bus.Tx, is issueRow) (errortrackv1.IssueStatus, string, error) {
		rel := req.GetInRelease()
		if rel == "" {
			newest, err := newestRelease(ctx, tx, is)
			if err != nil {
				return 0, "", err
			}
			rel = newest
		}
		if req.GetInNextRelease() {
			return errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED_IN_NEXT_RELEASE, rel, nil
		}
		return errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED, rel, nil
	})
	if err != nil {
		return nil, err
	}
	return &errortrackv1.ResolveIssueResponse{Issue: is}, nil
}

// newestRelease is the newest release an issue was seen in.
func newestRelease(ctx context.Context, tx *bus.Tx, is issueRow) (string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT release FROM issue_releases WHERE issue_id = $1 AND release <> ''`, is.Id)
	if err != nil {
		return "", err
	}
	var rels []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return "", err
		}
		rels = append(rels, r)
	}
	rows.Close()
	newest := ""
	for _, r := range rels {
		if newest == "" {
			newest = r
			continue
		}
		c, err := compareReleases(ctx, tx, is.ProjectId, "", r, newest)
		if err != nil {
			return "", err
		}
		if c > 0 {
			newest = r
		}
	}
	return newest, nil
}

func (g *grpcServer) IgnoreIssue(ctx context.Context, req *errortrackv1.IgnoreIssueRequest) (*errortrackv1.IgnoreIssueResponse, error) {
	is, err := g.setStatus(ctx, req.GetId(), func(*bus.Tx, issueRow) (errortrackv1.IssueStatus, string, error) {
		return errortrackv1.IssueStatus_ISSUE_STATUS_IGNORED, "", nil
	})
	if err != nil {
		return nil, err
	}
	return &errortrackv1.IgnoreIssueResponse{Issue: is}, nil
}

func (g *grpcServer) UnresolveIssue(ctx context.Context, req *errortrackv1.UnresolveIssueRequest) (*errortrackv1.UnresolveIssueResponse, error) {
	is, err := g.setStatus(ctx, req.GetId(), func(*bus.Tx, issueRow) (errortrackv1.IssueStatus, string, error) {
		return errortrackv1.IssueStatus_ISSUE_STATUS_UNRESOLVED, "", nil
	})
	if err != nil {
		return nil, err
	}
	return &errortrackv1.UnresolveIssueResponse{Issue: is}, nil
}

func (g *grpcServer) RecordDeploy(ctx context.Context, req *errortrackv1.RecordDeployRequest) (*errortrackv1.RecordDeployResponse, error) {
	if req.GetRelease() == "" {
		return nil, invalid("release", "required")
	}
	env := req.GetEnvironment()
	if env == "" {
		env = "production"
	}
	at := time.Now()
	if req.GetDeployedAt() != nil {
		at = req.GetDeployedAt().AsTime()
	}
	type commit struct {
		SHA, Message, Author string
		Files                []string
	}
	var cs []commit
	for _, c := range req.GetCommits() {
		cs = append(cs, commit{SHA: c.GetSha(), Message: c.GetMessage(), Author: c.GetAuthor(), Files: c.GetFiles()})
	}
	commits, _ := json.Marshal(cs)
	resp := &errortrackv1.RecordDeployResponse{}
	err := g.withProject(ctx, req.GetProject(), func(tx *sql.Tx, p project) error {
		id := bus.NewID()
		if _, err := tx.ExecContext(ctx, `INSERT INTO deploys (id, project_id, release, environment, deployed_at, commits) VALUES ($1, $2, $3, $4, $5, $6)`,
			id, p.id, req.GetRelease(), env, at.UnixNano(), string(commits)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO releases (project_id, version, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, p.id, req.GetRelease(), at.UnixNano()); err != nil {
			return err
		}
		var err error
		resp.Deploy, err = loadDeploy(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (g *grpcServer) ListReleases(ctx context.Context, req *errortrackv1.ListReleasesRequest) (*errortrackv1.ListReleasesResponse, error) {
	resp := &errortrackv1.ListReleasesResponse{}
	err := g.withProject(ctx, req.GetProject(), func(tx *sql.Tx, p project) error {
		resp.Releases = nil
		rows, err := tx.QueryContext(ctx, `SELECT version, first_seen FROM releases r WHERE project_id = $1 ORDER BY first_seen DESC, version`, p.id)
		if err != nil {
			return err
		}
		for rows.Next() {
			r := &errortrackv1.Release{}
			var first int64
			if err := rows.Scan(&r.Version, &first); err != nil {
				rows.Close()
				return err
			}
			r.FirstSeen = ts(first)
			resp.Releases = append(resp.Releases, r)
		}
		rows.Close()
		for _, r := range resp.Releases {
			h, err := releaseHealth(ctx, tx, p.id, r.Version)
			if err != nil {
				return err
			}
			r.Health = h
			for _, e := range h {
				r.Events += e.Events
				r.Errors += e.Errors
				r.Transactions += e.Transactions
				r.Sessions += e.Sessions
			}
			if r.Transactions > 0 {
				if r.TransactionNames, err = transactionSummaries(ctx, tx, p.id, r.Version, ""); err != nil {
					return err
				}
			}
		}
		if req.GetWindowRelease() == "" {
			return nil
		}
		until := time.Now()
		if req.GetWindowUntil() != nil {
			until = req.GetWindowUntil().AsTime()
		}
		resp.Window, err = releaseWindow(ctx, tx, p.id, req.GetWindowRelease(), req.GetWindowEnvironment(), req.GetWindowSince().AsTime(), until)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// releaseHealth counts, per environment that sent anything under release,
// its events (transactions apart; errors are the events of level error or
// fatal) and its sessions, individual and aggregated.
func releaseHealth(ctx context.Context, q queryer, projectID int64, release string) ([]*errortrackv1.ReleaseHealth, error) {
	byEnv := map[string]*errortrackv1.ReleaseHealth{}
	var order []string
	get := func(env string) *errortrackv1.ReleaseHealth {
		h := byEnv[env]
		if h == nil {
			h = &errortrackv1.ReleaseHealth{Environment: env}
			byEnv[env] = h
			order = append(order, env)
		}
		return h
	}
	erows, err := q.QueryContext(ctx, `SELECT environment, CASE WHEN type = 'transaction' THEN 't' WHEN level IN ('error', 'fatal') THEN 'e' ELSE 'o' END, COUNT(*)
		FROM events WHERE project_id = $1 AND release = $2 GROUP BY 1, 2 ORDER BY 1`, projectID, release)
	if err != nil {
		return nil, err
	}
	type envCount struct {
		env, kind string
		n         int64
	}
	var counts []envCount
	for erows.Next() {
		var c envCount
		if err := erows.Scan(&c.env, &c.kind, &c.n); err != nil {
			erows.Close()
			return nil, err
		}
		counts = append(counts, c)
	}
	erows.Close()
	if err := erows.Err(); err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT environment, status, COUNT(*) FROM sessions WHERE project_id = $1 AND release = $2 GROUP BY environment, status ORDER BY environment, status`, projectID, release)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var env, st string
		var n int64
		if err := rows.Scan(&env, &st, &n); err != nil {
			rows.Close()
			return nil, err
		}
		h := get(env)
		h.Sessions += n
		switch st {
		case "errored":
			h.Errored += n
		case "crashed":
			h.Crashed += n
		case "abnormal":
			h.Abnormal += n
		}
	}
	rows.Close()
	arows, err := q.QueryContext(ctx, `SELECT environment, SUM(exited), SUM(errored), SUM(crashed), SUM(abnormal) FROM session_aggregates WHERE project_id = $1 AND release = $2 GROUP BY environment ORDER BY environment`, projectID, release)
	if err != nil {
		return nil, err
	}
	for arows.Next() {
		var env string
		var ex, er, cr, ab int64
		if err := arows.Scan(&env, &ex, &er, &cr, &ab); err != nil {
			arows.Close()
			return nil, err
		}
		h := get(env)
		h.Sessions += ex + er + cr + ab
		h.Errored += er
		h.Crashed += cr
		h.Abnormal += ab
	}
	arows.Close()
	for _, c := range counts {
		h := get(c.env)
		switch {
		case c.kind == "t":
			h.Transactions += c.n
		case c.kind == "e":
			h.Events += c.n
			h.Errors += c.n
		default:
			h.Events += c.n
		}
	}
	out := make([]*errortrackv1.ReleaseHealth, 0, len(order))
	for _, env := range order {
		h := byEnv[env]
		h.CrashFreeRate = 1
		if h.Sessions > 0 {
			h.CrashFreeRate = 1 - float64(h.Crashed)/float64(h.Sessions)
		}
		out = append(out, h)
	}
	return out, nil
}
