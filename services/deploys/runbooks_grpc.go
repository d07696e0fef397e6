package deploys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/server"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// runbookServer answers RunbookService. RunRunbook needs the write scope
// (pkg/server MethodScope); the runner recorded is the caller's token name.
type runbookServer struct {
	deploysv1.UnimplementedRunbookServiceServer
	s *Service
}

// principal is who calls: the token's name, "anonymous" without auth.
func principal(ctx context.Context) string {
	if p, ok := server.PrincipalFrom(ctx); ok && p.Name != "" {
		return p.Name
	}
	return "anonymous"
}

func runStatus(err error) error {
	var re *RunbookError
	if errors.As(err, &re) {
		return status.Error(codes.InvalidArgument, re.Msg)
	}
	return statusOf(err)
}

func (g *runbookServer) RunRunbook(ctx context.Context, req *deploysv1.RunRunbookRequest) (*deploysv1.RunRunbookResponse, error) {
	if err := need("repository", req.GetRepository()); err != nil {
		return nil, err
	}
	if err := need("runbook", req.GetRunbook()); err != nil {
		return nil, err
	}
	who := principal(ctx)
	if o := strings.TrimSpace(req.GetOnBehalfOf()); o != "" && o != who {
		// The claim is the caller's word; the token is what was checked.
		if len(o) > 200 || strings.ContainsAny(o, "\r\n") {
			return nil, status.Error(codes.InvalidArgument, "on_behalf_of: at most 200 characters on one line")
		}
		who = o + " via " + who
	}
	x, err := g.s.RunRunbook(ctx, req.GetRepository(), req.GetRunbook(), req.GetEnvironment(), req.GetOptions(), who)
	if err != nil {
		return nil, runStatus(err)
	}
	return &deploysv1.RunRunbookResponse{Run: x.proto()}, nil
}

// ListRunbooks lists the runbooks of the default branch's newest file
// with their options; with an environment, those that run against it or
// copy from or to it.
func (g *runbookServer) ListRunbooks(ctx context.Context, req *deploysv1.ListRunbooksRequest) (*deploysv1.ListRunbooksResponse, error) {
	if err := need("repository", req.GetRepository()); err != nil {
		return nil, err
	}
	out := &deploysv1.ListRunbooksResponse{}
	err := g.s.ob.InTx(ctx, func(tx *bus.Tx) error {
		b, err := runbookBuild(ctx, tx, req.GetRepository())
		if err != nil {
			return err
		}
		cfg, err := b.parse()
		if err != nil {
			return &RunbookError{Msg: fmt.Sprintf("the .shiploop.yml of %s (build %s) does not parse: %v", req.GetRepository(), b.version, err)}
		}
		out.BuildId, out.Version = b.id, b.version
		env := req.GetEnvironment()
		for _, rb := range cfg.Runbooks {
			if env != "" && rb.Environment != env && rb.From != env && rb.To != env {
				continue
			}
			p := &deploysv1.Runbook{Name: rb.Name, Kind: rb.Kind, Environment: rb.Environment, FromEnvironment: rb.From, ToEnvironment: rb.To}
			if rb.Kind == "data" {
				p.Environment = rb.To
			}
			for _, o := range rb.Options {
				p.Options = append(p.Options, &deploysv1.RunbookOption{Name: o.Name, Type: o.Type, Values: o.Values, Required: o.Required, Default: o.Default, HasDefault: o.Has})
			}
			for _, st := range rb.Steps {
				p.Steps = append(p.Steps, st.Name)
			}
			out.Runbooks = append(out.Runbooks, p)
		}
		return nil
	})
	if err != nil {
		var re *RunbookError
		if errors.As(err, &re) {
			return nil, status.Error(codes.FailedPrecondition, re.Msg)
		}
		return nil, statusOf(err)
	}
	return out, nil
}

func (g *runbookServer) ListRunbookRuns(ctx context.Context, req *deploysv1.ListRunbookRunsRequest) (*deploysv1.ListRunbookRunsResponse, error) {
	if err := need("repository", req.GetRepository()); err != nil {
		return nil, err
	}
	limit := req.GetLimit()
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	where, args := `repository = $1`, []any{req.GetRepository()}
	if req.GetRunbook() != "" {
		where, args = where+` AND runbook = $2`, append(args, req.GetRunbook())
	}
	runs, err := loadRuns(ctx, g.s.db, where+` ORDER BY created_at DESC LIMIT `+strconv.Itoa(int(limit)), args...)
	if err != nil {
		return nil, statusOf(err)
	}
	out := &deploysv1.ListRunbookRunsResponse{}
	for _, x := range runs {
		out.Runs = append(out.Runs, x.proto())
	}
	return out, nil
}

func (g *runbookServer) GetRunbookRun(ctx context.Context, req *deploysv1.GetRunbookRunRequest) (*deploysv1.GetRunbookRunResponse, error) {
	if err := need("run_id", req.GetRunId()); err != nil {
		return nil, err
	}
	x, err := loadRun(ctx, g.s.db, `id = $1`, req.GetRunId())
	if errors.Is(err, sql.ErrNoRows) {
		return nil, status.Errorf(codes.NotFound, "runbook run %q not found", req.GetRunId())
	}
	if err != nil {
		return nil, statusOf(err)
	}
	return &deploysv1.GetRunbookRunResponse{Run: x.proto()}, nil
}

// runAsDeployment is a runbook run seen as a deployment, for StreamLogs:
// its job's log is read the same way.
func runAsDeployment(ctx context.Context, q querier, id string) (*deployment, error) {
	x, err := loadRun(ctx, q, `id = $1`, id)
	if err != nil {
		return nil, err
	}
	d := &deployment{id: x.id, repository: x.repository, environment: x.environment, jobID: x.jobID, reason: x.reason,
		status: eventsv1.DeployStatus_DEPLOY_STATUS_QUEUED}
	return d, nil
}
