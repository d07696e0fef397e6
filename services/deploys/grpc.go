package deploys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// RegisterGRPC registers DeployService on a gRPC server.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	deploysv1.RegisterDeployServiceServer(r, &grpcServer{s: s})
	deploysv1.RegisterRunbookServiceServer(r, &runbookServer{s: s}) // runbooks_grpc.go
}

type grpcServer struct {
	deploysv1.UnimplementedDeployServiceServer
	s *Service
}

func invalid(field, msg string) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, msg)
}

// statusOf maps the engine's errors to gRPC codes.
func statusOf(err error) error {
	var le *LockedError
	var fe *FrozenError
	var ng *notGoodError
	var st interface{ GRPCStatus() *status.Status }
	switch {
	case err == nil:
		return nil
	case errors.As(err, &st):
		return err
	case errors.As(err, &le):
		return status.Errorf(codes.FailedPrecondition, "%v (wait for it, or `shiploop deploy unlock` if a person holds it)", le)
	case errors.As(err, &fe):
		return status.Errorf(codes.FailedPrecondition, "%s is inside %v: pass force (--force) to deploy anyway; it is recorded as forced", "the deploy", fe)
	case errors.As(err, &ng):
		return status.Error(codes.FailedPrecondition, ng.Error())
	case errors.Is(err, sql.ErrNoRows):
		return status.Error(codes.NotFound, "not found")
	}
	return status.Errorf(codes.Unavailable, "%v", err)
}

func need(field, v string) error {
	if v == "" {
		return invalid(field, "required")
	}
	return nil
}

// path is the repository's promotion path as its newest default-branch
// build (or any newest build) declares it.
func (s *Service) path(ctx context.Context, q querier, repo string) (*Pipeline, error) {
	var branch string
	if err := q.QueryRowContext(ctx, `SELECT default_branch FROM repositories WHERE name = $1`, repo).Scan(&branch); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	var raw []byte
	err := q.QueryRowContext(ctx, `SELECT config FROM builds WHERE repository = $1 AND config IS NOT NULL ORDER BY CASE WHEN ref = $2 THEN 0 ELSE 1 END, created_at DESC LIMIT 1`,
		repo, "refs/heads/"+branch).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, status.Errorf(codes.NotFound, "no build of %s seen yet: push to it first (shiploop repo add, then a webhook)", repo)
	}
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(".shiploop.yml", raw)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	return cfg, nil
}

func (g *grpcServer) ListEnvironments(ctx context.Context, req *deploysv1.ListEnvironmentsRequest) (*deploysv1.ListEnvironmentsResponse, error) {
	if err := need("repository", req.GetRepository()); err != nil {
		return nil, err
	}
	var out []*deploysv1.Environment
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		cfg, err := g.s.path(ctx, tx, req.GetRepository())
		if err != nil {
			return err
		}
		for i, e := range cfg.Environments {
			env := &deploysv1.Environment{Repository: req.GetRepository(), Name: e.Name, Position: int32(i), Auto: e.Auto, ApprovalsRequired: int32(e.Approvals)}
			if err := g.s.describeEnv(ctx, tx, env); err != nil {
				return err
			}
			out = append(out, env)
		}
		rows, err := tx.QueryContext(ctx, `SELECT name, pull_request FROM previews WHERE repository = $1 AND deleted_at = 0 ORDER BY name`, req.GetRepository())
		if err != nil {
			return err
		}
		var previews []*deploysv1.Environment
		for rows.Next() {
			env := &deploysv1.Environment{Repository: req.GetRepository(), Preview: true, Auto: true, Position: int32(len(cfg.Environments))}
			if err := rows.Scan(&env.Name, &env.PullRequest); err != nil {
				rows.Close()
				return err
			}
			previews = append(previews, env)
		}
		rows.Close()
		for _, env := range previews {
			if err := g.s.describeEnv(ctx, tx, env); err != nil {
				return err
			}
		}
		out = append(out, previews...)
		return rows.Err()
	})
	if err != nil {
		return nil, statusOf(err)
	}
	return &deploysv1.ListEnvironmentsResponse{Environments: out}, nil
}

// RollbackCause is how deploy status, ListEnvironments and the dashboards
// say why an environment runs a release put back by a rollback:
// "rolled back from 1.1.0: verification failed: …". from is the release
// rolled back ("" when unknown); cause the rollback's cause.
func RollbackCause(from, cause string) string {
	switch {
	case from == "" && cause == "":
		return "rolled back"
	case from == "":
		return "rolled back: " + cause
	case cause == "":
		return "rolled back from " + from
	}
	return "rolled back from " + from + ": " + cause
}

// describeEnv fills what runs in env (and how it got there: kind, rollback
// cause, approvers), its lock, freezes and what waits.
func (s *Service) describeEnv(ctx context.Context, q querier, env *deploysv1.Environment) error {
	cur, err := currentDeployment(ctx, q, env.Repository, env.Name)
	if err != nil {
		return err
	}
	if cur != nil {
		env.CurrentRelease, env.CurrentDeployId, env.DeployedBy = cur.version, cur.id, cur.by
		env.Since = timestamppb.New(time.Unix(0, cur.deployedAt))
		env.CurrentKind = cur.kind
		if env.CurrentImages, err = buildImages(ctx, q, cur.buildID); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if cur.kind == "rollback" {
			// Say how the release got back there: from which release, and why.
			env.CurrentByRollback = true
			if cur.rollbackOf != "" {
				bad, err := loadDeployment(ctx, q, `id = $1`, cur.rollbackOf)
				if err == nil {
					env.RolledBackRelease = bad.version
				} else if !errors.Is(err, sql.ErrNoRows) {
					return err
				}
			}
			env.CurrentCause = RollbackCause(env.RolledBackRelease, cur.cause)
		}
		rows, err := q.QueryContext(ctx, `SELECT approver FROM approvals WHERE deploy_id = $1 ORDER BY at, approver`, cur.id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var a string
			if err := rows.Scan(&a); err != nil {
				rows.Close()
				return err
			}
			env.ApprovedBy = append(env.ApprovedBy, a)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	l, err := readLock(ctx, q, env.Repository, env.Name)
	if err != nil {
		return err
	}
	if l != nil {
		env.LockedBy, env.LockReason = l.holder, l.reason
	}
	fz, err := s.freezes(ctx, q, env.Repository, env.Name)
	if err != nil {
		return err
	}
	env.Freezes = fz
	p, err := loadDeployment(ctx, q, `repository = $1 AND environment = $2 AND status IN ($3, $4, $5, $6, $7, $8) ORDER BY created_at DESC LIMIT 1`, env.Repository, env.Name,
		int32(inWaiting[0]), int32(inWaiting[1]), int32(inWaiting[2]), int32(eventsv1.DeployStatus_DEPLOY_STATUS_PAUSED),
		int32(eventsv1.DeployStatus_DEPLOY_STATUS_RUNNING), int32(eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING))
	if err == nil {
		env.PendingDeployId, env.PendingStatus = p.id, p.status
	} else if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	return nil
}

func (s *Service) freezes(ctx context.Context, q querier, repo, env string) ([]*deploysv1.FreezeWindow, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, repository, environment, starts_at, ends_at, reason, created_by FROM freezes WHERE repository = $1 AND (environment = $2 OR environment = '') AND ends_at > $3 ORDER BY starts_at`,
		repo, env, s.now().UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*deploysv1.FreezeWindow
	for rows.Next() {
		f := &deploysv1.FreezeWindow{}
		var from, to int64
		if err := rows.Scan(&f.Id, &f.Repository, &f.Environment, &from, &to, &f.Reason, &f.CreatedBy); err != nil {
			return nil, err
		}
		f.StartsAt, f.EndsAt = timestamppb.New(time.Unix(0, from)), timestamppb.New(time.Unix(0, to))
		out = append(out, f)
	}
	return out, rows.Err()
}

func ts(ns int64) *timestamppb.Timestamp {
	if ns == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, ns))
}

// describe turns a row into the API's Deployment with its approvals,
// checks and tickets.
func (s *Service) describe(ctx context.Context, q querier, d *deployment) (*deploysv1.Deployment, error) {
	out := &deploysv1.Deployment{
		Id: d.id, Repository: d.repository, Environment: d.environment, Release: d.version, Commit: d.commit, BuildId: d.buildID,
		Kind: d.kind, Status: d.status, Reason: d.reason, TriggeredBy: d.by, Forced: d.forced, JobId: d.jobID, PreviousRelease: d.previous,
		RollbackOf: d.rollbackOf, Cause: d.cause, CreatedAt: ts(d.createdAt), StartedAt: ts(d.startedAt), FinishedAt: ts(d.finishedAt),
		ApprovalsRequired: int32(d.approvalsNeeded),
	}
	images, err := buildImages(ctx, q, d.buildID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	out.Images = images
	rows, err := q.QueryContext(ctx, `SELECT approver, comment, at FROM approvals WHERE deploy_id = $1 ORDER BY at`, d.id)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		a := &deploysv1.Approval{}
		var at int64
		if err := rows.Scan(&a.Approver, &a.Comment, &at); err != nil {
			rows.Close()
			return nil, err
		}
		a.At = ts(at)
		out.Approvals = append(out.Approvals, a)
	}
	rows.Close()
	if out.Checks, err = loadChecks(ctx, q, d.id); err != nil {
		return nil, err
	}
	rows, err = q.QueryContext(ctx, `SELECT ticket FROM tickets WHERE deploy_id = $1 ORDER BY ticket`, d.id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out.Tickets = append(out.Tickets, t)
	}
	return out, rows.Err()
}

func (g *grpcServer) ListDeployments(ctx context.Context, req *deploysv1.ListDeploymentsRequest) (*deploysv1.ListDeploymentsResponse, error) {
	if err := need("repository", req.GetRepository()); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	if size <= 0 || size > 500 {
		size = 50
	}
	before := int64(1<<62 - 1)
	if req.GetPageToken() != "" {
		n, err := strconv.ParseInt(req.GetPageToken(), 10, 64)
		if err != nil {
			return nil, invalid("page_token", "not a token this service gave out")
		}
		before = n
	}
	resp := &deploysv1.ListDeploymentsResponse{}
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		ds, err := loadDeployments(ctx, tx, `repository = $1 AND ($2 = '' OR environment = $2) AND created_at < $3 ORDER BY created_at DESC LIMIT $4`,
			req.GetRepository(), req.GetEnvironment(), before, size+1)
		if err != nil {
			return err
		}
		if len(ds) > size {
			ds = ds[:size]
			resp.NextPageToken = strconv.FormatInt(ds[size-1].createdAt, 10)
		}
		for _, d := range ds {
			pd, err := g.s.describe(ctx, tx, d)
			if err != nil {
				return err
			}
			resp.Deployments = append(resp.Deployments, pd)
		}
		return nil
	})
	return resp, statusOf(err)
}

func (g *grpcServer) GetDeployment(ctx context.Context, req *deploysv1.GetDeploymentRequest) (*deploysv1.GetDeploymentResponse, error) {
	if err := need("id", req.GetId()); err != nil {
		return nil, err
	}
	var out *deploysv1.Deployment
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		d, err := loadDeployment(ctx, tx, `id = $1`, req.GetId())
		if errors.Is(err, sql.ErrNoRows) {
			return status.Errorf(codes.NotFound, "deployment %q not found (shiploop deploy status REPO lists them)", req.GetId())
		}
		if err != nil {
			return err
		}
		out, err = g.s.describe(ctx, tx, d)
		return err
	})
	if err != nil {
		return nil, statusOf(err)
	}
	return &deploysv1.GetDeploymentResponse{Deployment: out}, nil
}

func by(v string) string {
	if v == "" {
		return "anonymous"
	}
	return v
}

func (g *grpcServer) Promote(ctx context.Context, req *deploysv1.PromoteRequest) (*deploysv1.PromoteResponse, error) {
	if err := need("repository", req.GetRepository()); err != nil {
		return nil, err
	}
	if err := need("environment", req.GetEnvironment()); err != nil {
		return nil, err
	}
	var out *deploysv1.Deployment
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		repo, envName := req.GetRepository(), req.GetEnvironment()
		path, err := g.s.path(ctx, tx, repo)
		if err != nil {
			return err
		}
		_, idx := path.Environment(envName)
		if idx < 0 {
			return status.Errorf(codes.NotFound, "%s has no environment %q (its path: %s)", repo, envName, envNames(path))
		}
		if idx > 0 {
			// A CRITICAL monitor of the environment before refuses (monitor.go).
			if err := promotionBlocked(ctx, tx, repo, path.Environments[idx-1].Name, envName); err != nil {
				return err
			}
		}
		release := req.GetRelease()
		var b *buildInfo
		switch {
		case release != "":
			b, err = loadBuildInfo(ctx, tx, `repository = $1 AND version = $2 AND status = $3 ORDER BY created_at DESC LIMIT 1`, repo, release, int32(eventsv1.BuildStatus_BUILD_STATUS_SUCCESS))
			if errors.Is(err, sql.ErrNoRows) {
				return status.Errorf(codes.NotFound, "no successful build of %s has version %q", repo, release)
			}
		case idx > 0:
			prev := path.Environments[idx-1].Name
			cur, err := currentDeployment(ctx, tx, repo, prev)
			if err != nil {
				return err
			}
			if cur == nil || cur.status != eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED {
				return status.Errorf(codes.FailedPrecondition, "nothing verified in %s to promote to %s yet: name a release (--release)", prev, envName)
			}
			b, err = loadBuildInfo(ctx, tx, `id = $1`, cur.buildID)
			if err != nil {
				return err
			}
		default:
			branch, err := g.s.defaultBranch(ctx, tx, repo)
			if err != nil {
				return err
			}
			b, err = loadBuildInfo(ctx, tx, `repository = $1 AND ref = $2 AND status = $3 ORDER BY created_at DESC LIMIT 1`, repo, "refs/heads/"+branch, int32(eventsv1.BuildStatus_BUILD_STATUS_SUCCESS))
			if errors.Is(err, sql.ErrNoRows) {
				return status.Errorf(codes.FailedPrecondition, "no successful build of %s's %s branch yet", repo, branch)
			}
		}
		if err != nil {
			return err
		}
		cfg, err := b.parse()
		if err != nil {
			return status.Errorf(codes.FailedPrecondition, "release %s: %v", b.version, err)
		}
		env, _ := cfg.Environment(envName)
		if env == nil {
			return status.Errorf(codes.FailedPrecondition, "release %s's .shiploop.yml has no environment %q", b.version, envName)
		}
		kind := "deploy"
		if cur, err := currentDeployment(ctx, tx, repo, envName); err != nil {
			return err
		} else if cur != nil && cur.version == b.version {
			kind = "redeploy"
		}
		d, err := g.s.offer(ctx, tx, b, cfg, env, offer{kind: kind, by: by(req.GetBy()), force: req.GetForce(), cause: req.GetComment()})
		if err != nil {
			return err
		}
		out, err = g.s.describe(ctx, tx, d)
		return err
	})
	if err != nil {
		return nil, statusOf(err)
	}
	return &deploysv1.PromoteResponse{Deployment: out}, nil
}

func envNames(c *Pipeline) string {
	s := ""
	for i, e := range c.Environments {
		if i > 0 {
			s += " → "
		}
		s += e.Name
	}
	if s == "" {
		return "none"
	}
	return s
}

func (g *grpcServer) Approve(ctx context.Context, req *deploysv1.ApproveRequest) (*deploysv1.ApproveResponse, error) {
	if err := need("deploy_id", req.GetDeployId()); err != nil {
		return nil, err
	}
	if err := need("approver", req.GetApprover()); err != nil {
		return nil, err
	}
	var out *deploysv1.Deployment
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		d, err := loadDeployment(ctx, tx, `id = $1`, req.GetDeployId())
		if errors.Is(err, sql.ErrNoRows) {
			return status.Errorf(codes.NotFound, "deployment %q not found", req.GetDeployId())
		}
		if err != nil {
			return err
		}
		now := g.s.now()
		switch d.status {
		case eventsv1.DeployStatus_DEPLOY_STATUS_PAUSED:
			if _, err := tx.ExecContext(ctx, `INSERT INTO approvals (deploy_id, approver, comment, at) VALUES ($1, $2, $3, $4) ON CONFLICT (deploy_id, approver) DO NOTHING`,
				d.id, req.GetApprover(), req.GetComment(), now.UnixNano()); err != nil {
				return err
			}
			// Who accepted it is an approval like any other: the
			// dashboards' "approved by" comes from this event.
			if err := g.s.publish(tx, "deploy.approved", d, &eventsv1.DeployApproved{Deploy: d.ref(), Approver: req.GetApprover(), Comment: req.GetComment(),
				ApprovalsRequired: 1, ApprovalsGiven: 1}); err != nil {
				return err
			}
			if err := g.s.finish(ctx, tx, d, eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED, fmt.Sprintf("inconclusive verification accepted by %s: %s", req.GetApprover(), req.GetComment())); err != nil {
				return err
			}
		case eventsv1.DeployStatus_DEPLOY_STATUS_AWAITING_APPROVAL:
			res, err := tx.ExecContext(ctx, `INSERT INTO approvals (deploy_id, approver, comment, at) VALUES ($1, $2, $3, $4) ON CONFLICT (deploy_id, approver) DO NOTHING`,
				d.id, req.GetApprover(), req.GetComment(), now.UnixNano())
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return status.Errorf(codes.AlreadyExists, "%s already approved deployment %s: another person must approve", req.GetApprover(), d.id)
			}
			var given int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM approvals WHERE deploy_id = $1`, d.id).Scan(&given); err != nil {
				return err
			}
			if err := g.s.publish(tx, "deploy.approved", d, &eventsv1.DeployApproved{Deploy: d.ref(), Approver: req.GetApprover(), Comment: req.GetComment(),
				ApprovalsRequired: int32(d.approvalsNeeded), ApprovalsGiven: int32(given)}); err != nil {
				return err
			}
			if given >= d.approvalsNeeded {
				if _, err := tx.ExecContext(ctx, `UPDATE deployments SET status = $1 WHERE id = $2`, int32(eventsv1.DeployStatus_DEPLOY_STATUS_QUEUED), d.id); err != nil {
					return err
				}
				d.status = eventsv1.DeployStatus_DEPLOY_STATUS_QUEUED
				// Approved: it waits for the lock rather than failing.
				if err := g.s.start(ctx, tx, d, true, ""); err != nil {
					return err
				}
			} else {
				if _, err := tx.ExecContext(ctx, `UPDATE deployments SET reason = $1 WHERE id = $2`, fmt.Sprintf("%d of %d approvals", given, d.approvalsNeeded), d.id); err != nil {
					return err
				}
			}
		default:
			return status.Errorf(codes.FailedPrecondition, "deployment %s is %s, not waiting for an approval", d.id, statusName(d.status))
		}
		d, err = loadDeployment(ctx, tx, `id = $1`, d.id)
		if err != nil {
			return err
		}
		out, err = g.s.describe(ctx, tx, d)
		return err
	})
	if err != nil {
		return nil, statusOf(err)
	}
	return &deploysv1.ApproveResponse{Deployment: out}, nil
}

func statusName(s eventsv1.DeployStatus) string {
	n := s.String()
	if len(n) > len("DEPLOY_STATUS_") {
		n = n[len("DEPLOY_STATUS_"):]
	}
	return n
}

func (g *grpcServer) Rollback(ctx context.Context, req *deploysv1.RollbackRequest) (*deploysv1.RollbackResponse, error) {
	if err := need("repository", req.GetRepository()); err != nil {
		return nil, err
	}
	if err := need("environment", req.GetEnvironment()); err != nil {
		return nil, err
	}
	var out *deploysv1.Deployment
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		repo, env := req.GetRepository(), req.GetEnvironment()
		cur, err := loadDeployment(ctx, tx, `repository = $1 AND environment = $2 AND status IN ($3, $4) ORDER BY created_at DESC LIMIT 1`, repo, env,
			int32(eventsv1.DeployStatus_DEPLOY_STATUS_VERIFYING), int32(eventsv1.DeployStatus_DEPLOY_STATUS_PAUSED))
		if errors.Is(err, sql.ErrNoRows) {
			cur, err = currentDeployment(ctx, tx, repo, env)
			if err == nil && cur == nil {
				return status.Errorf(codes.FailedPrecondition, "nothing runs in %s of %s yet: nothing to roll back", env, repo)
			}
		}
		if err != nil {
			return err
		}
		cause := fmt.Sprintf("rolled back by %s", by(req.GetBy()))
		if req.GetReason() != "" {
			cause += ": " + req.GetReason()
		}
		if err := g.s.rollback(ctx, tx, cur, req.GetRelease(), by(req.GetBy()), cause); err != nil {
			return err
		}
		rb, err := loadDeployment(ctx, tx, `rollback_of = $1 AND kind = 'rollback' ORDER BY created_at DESC LIMIT 1`, cur.id)
		if err != nil {
			return err
		}
		out, err = g.s.describe(ctx, tx, rb)
		return err
	})
	if err != nil {
		return nil, statusOf(err)
	}
	return &deploysv1.RollbackResponse{Deployment: out}, nil
}

func (g *grpcServer) Lock(ctx context.Context, req *deploysv1.LockRequest) (*deploysv1.LockResponse, error) {
	if err := need("repository", req.GetRepository()); err != nil {
		return nil, err
	}
	if err := need("environment", req.GetEnvironment()); err != nil {
		return nil, err
	}
	if err := need("reason", req.GetReason()); err != nil {
		return nil, err
	}
	env := &deploysv1.Environment{Repository: req.GetRepository(), Name: req.GetEnvironment()}
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		holder := "user " + by(req.GetBy())
		res, err := tx.ExecContext(ctx, `INSERT INTO locks (repository, environment, holder, reason, since) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (repository, environment) DO NOTHING`,
			env.Repository, env.Name, holder, req.GetReason(), g.s.now().UnixNano())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			l, err := readLock(ctx, tx, env.Repository, env.Name)
			if err != nil {
				return err
			}
			return &LockedError{Repository: env.Repository, Environment: env.Name, Holder: l.holder, Reason: l.reason, Since: time.Unix(0, l.since).UTC()}
		}
		if err := tx.Publish(bus.Event{Type: "environment.locked", Repository: env.Repository, Subject: env.Name,
			Data: &eventsv1.EnvironmentChanged{Repository: env.Repository, Environment: env.Name, By: by(req.GetBy()), Reason: req.GetReason()}}); err != nil {
			return err
		}
		return g.s.describeEnv(ctx, tx, env)
	})
	if err != nil {
		return nil, statusOf(err)
	}
	return &deploysv1.LockResponse{Environment: env}, nil
}

func (g *grpcServer) Unlock(ctx context.Context, req *deploysv1.UnlockRequest) (*deploysv1.UnlockResponse, error) {
	if err := need("repository", req.GetRepository()); err != nil {
		return nil, err
	}
	if err := need("environment", req.GetEnvironment()); err != nil {
		return nil, err
	}
	env := &deploysv1.Environment{Repository: req.GetRepository(), Name: req.GetEnvironment()}
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		l, err := readLock(ctx, tx, env.Repository, env.Name)
		if err != nil {
			return err
		}
		if l == nil {
			return status.Errorf(codes.FailedPrecondition, "%s of %s is not locked", env.Name, env.Repository)
		}
		if l.deployID != "" {
			return status.Errorf(codes.FailedPrecondition, "%s of %s is held by %s, not by a person: it is released when that deploy ends (or roll it back)", env.Name, env.Repository, l.holder)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM locks WHERE repository = $1 AND environment = $2 AND deploy_id = ''`, env.Repository, env.Name); err != nil {
			return err
		}
		if err := tx.Publish(bus.Event{Type: "environment.unlocked", Repository: env.Repository, Subject: env.Name,
			Data: &eventsv1.EnvironmentChanged{Repository: env.Repository, Environment: env.Name, By: by(req.GetBy()), Reason: "was: " + l.reason}}); err != nil {
			return err
		}
		if err := g.s.dispatchQueued(ctx, tx, env.Repository, env.Name); err != nil {
			return err
		}
		return g.s.describeEnv(ctx, tx, env)
	})
	if err != nil {
		return nil, statusOf(err)
	}
	return &deploysv1.UnlockResponse{Environment: env}, nil
}

func (g *grpcServer) Freeze(ctx context.Context, req *deploysv1.FreezeRequest) (*deploysv1.FreezeResponse, error) {
	if err := need("repository", req.GetRepository()); err != nil {
		return nil, err
	}
	if err := need("reason", req.GetReason()); err != nil {
		return nil, err
	}
	from, to := g.s.now(), time.Time{}
	if req.GetStartsAt() != nil {
		from = req.GetStartsAt().AsTime()
	}
	if req.GetEndsAt() == nil {
		return nil, invalid("ends_at", "required: when the freeze ends")
	}
	to = req.GetEndsAt().AsTime()
	if !to.After(from) {
		return nil, invalid("ends_at", fmt.Sprintf("%s is not after starts_at %s", to.Format(time.RFC3339), from.Format(time.RFC3339)))
	}
	f := &deploysv1.FreezeWindow{Repository: req.GetRepository(), Environment: req.GetEnvironment(), StartsAt: timestamppb.New(from), EndsAt: timestamppb.New(to), Reason: req.GetReason(), CreatedBy: by(req.GetBy())}
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		if err := tx.QueryRowContext(ctx, `INSERT INTO freezes (repository, environment, starts_at, ends_at, reason, created_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			f.Repository, f.Environment, from.UnixNano(), to.UnixNano(), f.Reason, f.CreatedBy).Scan(&f.Id); err != nil {
			return err
		}
		// Boards show the window; an empty environment freezes them all.
		return tx.Publish(bus.Event{Type: "environment.frozen", Repository: f.Repository, Subject: f.Environment, Data: &eventsv1.EnvironmentChanged{
			Repository: f.Repository, Environment: f.Environment, By: f.CreatedBy, Reason: f.Reason, StartsAt: f.StartsAt, EndsAt: f.EndsAt,
		}})
	})
	if err != nil {
		return nil, statusOf(err)
	}
	return &deploysv1.FreezeResponse{Freeze: f}, nil
}

// StreamLogs sends a deployment's job log: what is stored, then (follow)
// live lines in order until the end marker, filling gaps from the store
// (the same protocol as BuildService.StreamLogs).
func (g *grpcServer) StreamLogs(req *deploysv1.StreamLogsRequest, stream grpc.ServerStreamingServer[deploysv1.StreamLogsResponse]) error {
	if err := need("deploy_id", req.GetDeployId()); err != nil {
		return err
	}
	ctx := stream.Context()
	d, err := loadDeployment(ctx, g.s.db, `id = $1`, req.GetDeployId())
	if errors.Is(err, sql.ErrNoRows) {
		// A runbook run's id reads its job's log alike (runbooks_grpc.go).
		d, err = runAsDeployment(ctx, g.s.db, req.GetDeployId())
	}
	if errors.Is(err, sql.ErrNoRows) {
		return status.Errorf(codes.NotFound, "deployment %q not found", req.GetDeployId())
	}
	if err != nil {
		return statusOf(err)
	}
	if d.jobID == "" {
		return status.Errorf(codes.FailedPrecondition, "deployment %s has not started (%s: %s)", d.id, statusName(d.status), d.reason)
	}
	err = g.s.bus.FollowLog(ctx, d.jobID, 0, req.GetFollow(), func(l *eventsv1.LogLine) error {
		return stream.Send(&deploysv1.StreamLogsResponse{Line: l})
	})
	if errors.Is(err, bus.ErrNoLog) {
		return status.Errorf(codes.NotFound, "no stored log for deployment %s yet (still queued? use follow)", d.id)
	}
	return err
}
