package deploys

import (
	"context"
	"database/sql"
	"errors"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
	x, err := g.s.RunRunbook(ctx, req.GetRepository(), req.GetRunbook(), req.GetEnvironment(), req.GetOptions(), principal(ctx))
	if err != nil {
		return nil, runStatus(err)
	}
	return &deploysv1.RunRunbookResponse{Run: x.proto()}, nil
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
