package builds

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/vcsarg"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// RegisterGRPC registers BuildService on a gRPC server.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	buildsv1.RegisterBuildServiceServer(r, &grpcServer{s: s})
}

type grpcServer struct {
	buildsv1.UnimplementedBuildServiceServer
	s *Service
}

func invalid(field, msg string) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, msg)
}

func (g *grpcServer) RegisterRepository(ctx context.Context, req *buildsv1.RegisterRepositoryRequest) (*buildsv1.RegisterRepositoryResponse, error) {
	name, err := normalizeRepoName(req.GetName())
	if err != nil {
		return nil, invalid("name", err.Error())
	}
	if req.GetCloneUrl() == "" {
		return nil, invalid("clone_url", "required: a URL or path git can clone")
	}
	branch := req.GetDefaultBranch()
	if branch == "" {
		branch = "main"
		if req.GetVcs() == "hg" {
			branch = "default" // Mercurial's default branch is named "default"
		}
	}
	secret := req.GetWebhookSecret()
	repo := &buildsv1.Repository{Name: name, CloneUrl: req.GetCloneUrl(), DefaultBranch: branch}
	if err := g.s.checkVCSRequest(ctx, name, req); err != nil { // hg.go
		return nil, err
	}
	now := time.Now().UTC()
	err = g.s.db.InTx(ctx, func(tx *sql.Tx) error {
		var existing string
		var created int64
		var old forgeSettings
		err := tx.QueryRowContext(ctx, `SELECT webhook_secret, created_at, forge, forge_api_url, forge_repo, forge_token FROM repositories WHERE name = $1`, name).
			Scan(&existing, &created, &old.kind, &old.apiURL, &old.repo, &old.token)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		isNew := errors.Is(err, sql.ErrNoRows)
		fs, err := mergeForge(name, old, req)
		if err != nil {
			return err
		}
		describeForge(repo, fs)
		if isNew {
			if secret == "" {
				secret = randomSecret()
			}
			repo.CreatedAt = timestamppb.New(now)
			_, err = tx.ExecContext(ctx, `INSERT INTO repositories (name, clone_url, default_branch, webhook_secret, created_at, forge, forge_api_url, forge_repo, forge_token) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				name, repo.CloneUrl, branch, secret, now.UnixNano(), fs.kind, fs.apiURL, fs.repo, fs.token)
			return err
		}
		if secret == "" {
			secret = existing
		}
		repo.CreatedAt = timestamppb.New(time.Unix(0, created))
		_, err = tx.ExecContext(ctx, `UPDATE repositories SET clone_url = $1, default_branch = $2, webhook_secret = $3, forge = $4, forge_api_url = $5, forge_repo = $6, forge_token = $7 WHERE name = $8`,
			repo.CloneUrl, branch, secret, fs.kind, fs.apiURL, fs.repo, fs.token, name)
		return err
	})
	if status.Code(err) == codes.InvalidArgument {
		return nil, err
	}
	if err == nil {
		err = g.s.applyVCSRequest(ctx, req, repo)
	}
	if status.Code(err) == codes.InvalidArgument {
		return nil, err
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "registering %s: %v", name, err)
	}
	return &buildsv1.RegisterRepositoryResponse{Repository: repo, WebhookSecret: secret}, nil
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

func (g *grpcServer) ListRepositories(ctx context.Context, req *buildsv1.ListRepositoriesRequest) (*buildsv1.ListRepositoriesResponse, error) {
	after := ""
	if t := req.GetPageToken(); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil {
			return nil, invalid("page_token", "not a token this server gave out")
		}
		after = string(b)
	}
	size := pageSize(req.GetPageSize())
	rows, err := g.s.db.QueryContext(ctx, `SELECT name, clone_url, default_branch, created_at, forge, forge_api_url, forge_repo,
		CASE WHEN forge_token = '' THEN 0 ELSE 1 END FROM repositories WHERE name > $1 ORDER BY name LIMIT $2`, after, size+1)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "listing repositories: %v", err)
	}
	defer rows.Close()
	resp := &buildsv1.ListRepositoriesResponse{}
	for rows.Next() {
		r := &buildsv1.Repository{}
		var created int64
		var tokenSet int
		if err := rows.Scan(&r.Name, &r.CloneUrl, &r.DefaultBranch, &created, &r.Forge, &r.ForgeApiUrl, &r.ForgeRepo, &tokenSet); err != nil {
			return nil, status.Errorf(codes.Internal, "listing repositories: %v", err)
		}
		r.CreatedAt = timestamppb.New(time.Unix(0, created))
		r.ForgeTokenSet = tokenSet != 0
		resp.Repositories = append(resp.Repositories, r)
	}
	if len(resp.Repositories) > size {
		resp.Repositories = resp.Repositories[:size]
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(resp.Repositories[size-1].Name))
	}
	return resp, rows.Err()
}

type queryer interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

const buildColumns = `id, repository, number, ref, commit_sha, version, status, trigger, failed_step, error, chain_id, created_at, started_at, finished_at`

func scanBuild(sc interface{ Scan(...any) error }) (*buildsv1.Build, error) {
	b := &buildsv1.Build{}
	var st int32
	var created, started, finished int64
	if err := sc.Scan(&b.Id, &b.Repository, &b.Number, &b.Ref, &b.Commit, &b.Version, &st, &b.Trigger, &b.FailedStep, &b.Error, &b.ChainId, &created, &started, &finished); err != nil {
		return nil, err
	}
	b.Status = eventsv1.BuildStatus(st)
	b.CreatedAt = timestamppb.New(time.Unix(0, created))
	if started > 0 {
		b.StartedAt = timestamppb.New(time.Unix(0, started))
	}
	if finished > 0 {
		b.FinishedAt = timestamppb.New(time.Unix(0, finished))
	}
	return b, nil
}

// loadBuild reads one build with its steps and jobs.
func loadBuild(ctx context.Context, q queryer, id string) (*buildsv1.Build, error) {
	b, err := scanBuild(q.QueryRowContext(ctx, `SELECT `+buildColumns+` FROM builds WHERE id = $1`, id))
	if err != nil {
		return nil, err
	}
	return b, fillBuild(ctx, q, b)
}

func fillBuild(ctx context.Context, q queryer, b *buildsv1.Build) error {
	jrows, err := q.QueryContext(ctx, `SELECT id, matrix, status, agent, failed_step, error FROM jobs WHERE build_id = $1 ORDER BY position`, b.Id)
	if err != nil {
		return err
	}
	byID := map[string]*buildsv1.BuildJob{}
	for jrows.Next() {
		j := &buildsv1.BuildJob{}
		var matrix string
		var st int32
		if err := jrows.Scan(&j.Id, &matrix, &st, &j.Agent, &j.FailedStep, &j.Error); err != nil {
			jrows.Close()
			return err
		}
		j.Status = eventsv1.BuildStatus(st)
		_ = json.Unmarshal([]byte(matrix), &j.Matrix)
		b.Jobs = append(b.Jobs, j)
		b.JobIds = append(b.JobIds, j.Id)
		byID[j.Id] = j
	}
	jrows.Close()
	if err := jrows.Err(); err != nil {
		return err
	}
	rows, err := q.QueryContext(ctx, `SELECT job_id, name, status, exit_code, started_at, duration_ns, error FROM build_steps WHERE build_id = $1 ORDER BY job_id, position`, b.Id)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		st := &eventsv1.StepResult{}
		var jobID string
		var s int32
		var started, dur int64
		if err := rows.Scan(&jobID, &st.Name, &s, &st.ExitCode, &started, &dur, &st.Error); err != nil {
			return err
		}
		st.Status = eventsv1.BuildStatus(s)
		if started > 0 {
			st.StartedAt = timestamppb.New(time.Unix(0, started))
		}
		st.Duration = durationpb.New(time.Duration(dur))
		if j := byID[jobID]; j != nil {
			j.Steps = append(j.Steps, st)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// Build.steps: every job's steps, in job order.
	for _, j := range b.Jobs {
		b.Steps = append(b.Steps, j.Steps...)
	}
	arows, err := q.QueryContext(ctx, `SELECT name, step, size, sha256, object_key FROM artifacts WHERE build_id = $1 ORDER BY job_id, name`, b.Id)
	if err != nil {
		return err
	}
	defer arows.Close()
	for arows.Next() {
		a := &eventsv1.Artifact{}
		if err := arows.Scan(&a.Name, &a.Step, &a.Size, &a.Sha256, &a.Key); err != nil {
			return err
		}
		b.Artifacts = append(b.Artifacts, a)
	}
	if err := arows.Err(); err != nil {
		return err
	}
	return fillImages(ctx, q, b)
}

func (g *grpcServer) ListBuilds(ctx context.Context, req *buildsv1.ListBuildsRequest) (*buildsv1.ListBuildsResponse, error) {
	size := pageSize(req.GetPageSize())
	beforeTime, beforeID := int64(1<<62), ""
	if t := req.GetPageToken(); t != "" {
		raw, err := base64.RawURLEncoding.DecodeString(t)
		ts, id, ok := strings.Cut(string(raw), "/")
		n, perr := strconv.ParseInt(ts, 10, 64)
		if err != nil || !ok || perr != nil {
			return nil, invalid("page_token", "not a token this server gave out")
		}
		beforeTime, beforeID = n, id
	}
	q := `SELECT ` + buildColumns + ` FROM builds WHERE (created_at < $1 OR (created_at = $1 AND id < $2))`
	args := []any{beforeTime, beforeID}
	if r := req.GetRepository(); r != "" {
		q += ` AND repository = $3`
		args = append(args, r)
	}
	q += fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT %d`, size+1)
	var builds []*buildsv1.Build
	err := g.s.db.InTx(ctx, func(tx *sql.Tx) error {
		builds = builds[:0]
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			b, err := scanBuild(rows)
			if err != nil {
				rows.Close()
				return err
			}
			builds = append(builds, b)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, b := range builds {
			if err := fillBuild(ctx, tx, b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "listing builds: %v", err)
	}
	resp := &buildsv1.ListBuildsResponse{Builds: builds}
	if len(builds) > size {
		last := builds[size-1]
		resp.Builds = builds[:size]
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d/%s", last.CreatedAt.AsTime().UnixNano(), last.Id))
	}
	return resp, nil
}

func (g *grpcServer) GetBuild(ctx context.Context, req *buildsv1.GetBuildRequest) (*buildsv1.GetBuildResponse, error) {
	var b *buildsv1.Build
	err := g.s.db.InTx(ctx, func(tx *sql.Tx) error {
		id := req.GetId()
		if id == "" {
			if req.GetRepository() == "" || req.GetNumber() <= 0 {
				return invalid("id", "required (or repository and number)")
			}
			if err := tx.QueryRowContext(ctx, `SELECT id FROM builds WHERE repository = $1 AND number = $2`, req.GetRepository(), req.GetNumber()).Scan(&id); err != nil {
				return err
			}
		}
		var err error
		b, err = loadBuild(ctx, tx, id)
		if errors.Is(err, sql.ErrNoRows) && req.GetId() != "" {
			// Not a build id: a chain id names its change's latest build.
			if err := tx.QueryRowContext(ctx, `SELECT id FROM builds WHERE chain_id = $1 ORDER BY created_at DESC LIMIT 1`, id).Scan(&id); err != nil {
				return err
			}
			b, err = loadBuild(ctx, tx, id)
		}
		if err != nil {
			return err
		}
		return fillHarbormaster(ctx, tx, b)
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if req.GetId() != "" {
			return nil, status.Errorf(codes.NotFound, "build %q not found (neither a build id nor a chain id)", req.GetId())
		}
		return nil, status.Errorf(codes.NotFound, "build %s#%d not found", req.GetRepository(), req.GetNumber())
	case status.Code(err) == codes.InvalidArgument:
		return nil, err
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "reading build: %v", err)
	}
	return &buildsv1.GetBuildResponse{Build: b}, nil
}

func (g *grpcServer) TriggerBuild(ctx context.Context, req *buildsv1.TriggerBuildRequest) (*buildsv1.TriggerBuildResponse, error) {
	if req.GetRepository() == "" {
		return nil, invalid("repository", "required")
	}
	repo, err := g.s.repository(ctx, req.GetRepository())
	if errors.Is(err, errNotFound) {
		return nil, status.Errorf(codes.NotFound, "repository %q is not registered (shiploop repo add)", req.GetRepository())
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading repository: %v", err)
	}
	if vs, err := g.s.vcsSettings(ctx, repo.name); err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading repository: %v", err)
	} else if vs.vcs == VCSHg {
		return g.s.triggerHg(ctx, repo, req.GetRef())
	}
	dir, err := g.s.mirrors.ensure(ctx, repo.name, repo.cloneURL, "")
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "fetching %s: %v", repo.name, err)
	}
	ref := req.GetRef()
	if ref == "" {
		ref = repo.defaultBranch
	}
	if err := vcsarg.Ref(ref); err != nil {
		return nil, invalid("ref", err.Error())
	}
	full := ref
	switch {
	case strings.HasPrefix(ref, "refs/"):
	case gitRefExists(ctx, dir, "refs/heads/"+ref):
		full = "refs/heads/" + ref
	case gitRefExists(ctx, dir, "refs/tags/"+ref):
		full = "refs/tags/" + ref
	default:
		return nil, status.Errorf(codes.NotFound, "ref %q not found in %s", ref, repo.name)
	}
	sha, err := resolve(ctx, dir, full)
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "ref %q: %v", ref, err)
	}
	ch := &eventsv1.Change{
		Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "manual", Repository: repo.name,
		CloneUrl: repo.cloneURL, DefaultBranch: repo.defaultBranch, Ref: full, After: sha,
	}
	if tag, ok := strings.CutPrefix(full, "refs/tags/"); ok {
		ch.Kind, ch.Tag = eventsv1.ChangeKind_CHANGE_KIND_TAG, tag
	} else {
		ch.Branch = branchOf(full)
	}
	reply, err := g.s.acceptChange(ctx, ch)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "recording the change: %v", err)
	}
	return &buildsv1.TriggerBuildResponse{EventId: reply.EventID, Commit: sha, Ref: full}, nil
}

func gitRefExists(ctx context.Context, dir, ref string) bool {
	_, err := git(ctx, dir, "show-ref", "--verify", "--quiet", "--end-of-options", ref)
	return err == nil
}

func (g *grpcServer) WatchEvents(req *buildsv1.WatchEventsRequest, stream grpc.ServerStreamingServer[buildsv1.WatchEventsResponse]) error {
	var filters []string
	for _, t := range req.GetTypes() {
		filters = append(filters, bus.EventFilter(t, req.GetRepository()))
	}
	if len(filters) == 0 {
		filters = []string{bus.EventFilter("", req.GetRepository())}
	}
	opts := bus.WatchOptions{Filters: filters}
	if req.GetSince() != nil {
		opts.Since = req.GetSince().AsTime()
	}
	// Tell the client the watch is in place (the header) once the consumer
	// exists, so that it can act knowing nothing will be missed.
	opts.Ready = func() error { return stream.SendHeader(nil) }
	err := g.s.bus.Watch(stream.Context(), opts, func(ev bus.Event) error {
		if r := req.GetRepository(); r != "" && ev.Repository != r {
			return nil
		}
		pe, err := ev.Proto()
		if err != nil {
			return nil
		}
		return stream.Send(&buildsv1.WatchEventsResponse{Event: pe})
	})
	if err != nil && stream.Context().Err() == nil {
		return status.Errorf(codes.Unavailable, "watching events: %v", err)
	}
	return nil
}

// StreamLogs sends a job's log in order, each line once: what is stored,
// and with follow the live tail until the job ends (bus.FollowLog).
func (g *grpcServer) StreamLogs(req *buildsv1.StreamLogsRequest, stream grpc.ServerStreamingServer[buildsv1.StreamLogsResponse]) error {
	if req.GetJobId() == "" {
		return invalid("job_id", "required")
	}
	err := g.s.bus.FollowLog(stream.Context(), req.GetJobId(), 0, req.GetFollow(), func(l *eventsv1.LogLine) error {
		return stream.Send(&buildsv1.StreamLogsResponse{Line: l})
	})
	if errors.Is(err, bus.ErrNoLog) {
		return status.Errorf(codes.NotFound, "no stored log for job %q (it may still be running: use follow)", req.GetJobId())
	}
	return err
}

func (g *grpcServer) CancelBuild(ctx context.Context, req *buildsv1.CancelBuildRequest) (*buildsv1.CancelBuildResponse, error) {
	if req.GetId() == "" {
		return nil, invalid("id", "required")
	}
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		return g.s.cancelBuild(ctx, tx, req.GetId(), "canceled by request", time.Now().UTC())
	})
	switch {
	case errors.Is(err, errAlreadyFinished):
		return &buildsv1.CancelBuildResponse{Canceled: false}, nil
	case errors.Is(err, sql.ErrNoRows):
		return nil, status.Errorf(codes.NotFound, "build %q not found", req.GetId())
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "canceling: %v", err)
	}
	return &buildsv1.CancelBuildResponse{Canceled: true}, nil
}

func (g *grpcServer) RetryBuild(ctx context.Context, req *buildsv1.RetryBuildRequest) (*buildsv1.RetryBuildResponse, error) {
	if req.GetId() == "" {
		return nil, invalid("id", "required")
	}
	var b *buildsv1.Build
	err := g.s.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		b, err = loadBuild(ctx, tx, req.GetId())
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, status.Errorf(codes.NotFound, "build %q not found", req.GetId())
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading build: %v", err)
	}
	repo, err := g.s.repository(ctx, b.Repository)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "repository %s: %v", b.Repository, err)
	}
	ch := &eventsv1.Change{
		Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "manual", Repository: b.Repository,
		CloneUrl: repo.cloneURL, DefaultBranch: repo.defaultBranch, Ref: b.Ref, After: b.Commit,
	}
	if tag, ok := strings.CutPrefix(b.Ref, "refs/tags/"); ok {
		ch.Kind, ch.Tag = eventsv1.ChangeKind_CHANGE_KIND_TAG, tag
	} else {
		ch.Branch = branchOf(b.Ref)
	}
	reply, err := g.s.acceptChange(ctx, ch)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "recording the change: %v", err)
	}
	return &buildsv1.RetryBuildResponse{EventId: reply.EventID}, nil
}

var secretName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (g *grpcServer) SetSecret(ctx context.Context, req *buildsv1.SetSecretRequest) (*buildsv1.SetSecretResponse, error) {
	if !secretName.MatchString(req.GetName()) {
		return nil, invalid("name", fmt.Sprintf("%q is not a variable name (letters, digits and _, not starting with a digit)", req.GetName()))
	}
	if req.GetValue() == "" {
		return nil, invalid("value", "required")
	}
	if _, err := g.s.repository(ctx, req.GetRepository()); errors.Is(err, errNotFound) {
		return nil, status.Errorf(codes.NotFound, "repository %q is not registered", req.GetRepository())
	} else if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	err := g.s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO secrets (repository, name, value, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (repository, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
			req.GetRepository(), req.GetName(), req.GetValue(), time.Now().UnixNano())
		return err
	})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "storing secret: %v", err)
	}
	return &buildsv1.SetSecretResponse{}, nil
}

func (g *grpcServer) ListSecrets(ctx context.Context, req *buildsv1.ListSecretsRequest) (*buildsv1.ListSecretsResponse, error) {
	rows, err := g.s.db.QueryContext(ctx, `SELECT name FROM secrets WHERE repository = $1 ORDER BY name`, req.GetRepository())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "listing secrets: %v", err)
	}
	defer rows.Close()
	resp := &buildsv1.ListSecretsResponse{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, status.Errorf(codes.Internal, "listing secrets: %v", err)
		}
		resp.Names = append(resp.Names, n)
	}
	return resp, rows.Err()
}

func (g *grpcServer) DeleteSecret(ctx context.Context, req *buildsv1.DeleteSecretRequest) (*buildsv1.DeleteSecretResponse, error) {
	var n int64
	err := g.s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM secrets WHERE repository = $1 AND name = $2`, req.GetRepository(), req.GetName())
		if err == nil {
			n, _ = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "deleting secret: %v", err)
	}
	return &buildsv1.DeleteSecretResponse{Deleted: n > 0}, nil
}
