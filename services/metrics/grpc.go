package metrics

import (
	"context"
	"errors"
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	metricsv1 "github.com/shiploop/shiploop/proto/shiploop/metrics/v1"
	"github.com/shiploop/shiploop/services/metrics/render"
)

// RegisterGRPC registers MetricsService on a gRPC server.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	metricsv1.RegisterMetricsServiceServer(r, &grpcServer{s: s})
}

type grpcServer struct {
	metricsv1.UnimplementedMetricsServiceServer
	s *Service
}

func grpcError(err error) error {
	var le *render.LimitError
	switch {
	case errors.As(err, &le):
		return status.Error(codes.ResourceExhausted, err.Error())
	case render.IsBadRequest(err):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func (g *grpcServer) Query(ctx context.Context, req *metricsv1.QueryRequest) (*metricsv1.QueryResponse, error) {
	if len(req.GetTargets()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "targets: at least one target expression is required")
	}
	p := map[string][]string{}
	if req.GetFrom() != "" {
		p["from"] = []string{req.GetFrom()}
	}
	if req.GetUntil() != "" {
		p["until"] = []string{req.GetUntil()}
	}
	from, until, err := g.s.timeRange(p)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "from/until: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, g.s.cfg.QueryTimeout)
	defer cancel()
	data, err := g.s.Query(ctx, req.GetTargets(), from, until)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return nil, status.Error(codes.DeadlineExceeded, g.s.timedOut())
		}
		return nil, grpcError(err)
	}
	consolidateForMaxPoints(data, g.s.clampMaxDataPoints(int64(req.GetMaxDataPoints())))
	resp := &metricsv1.QueryResponse{}
	for _, sr := range data {
		vals := sr.Points()
		out := &metricsv1.Series{Name: sr.Name, Tags: sr.Tags, Start: sr.Start, Step: sr.Step * int64(max(1, sr.ValuesPerPoint)), Values: vals, Nulls: make([]bool, len(vals))}
		for i, v := range vals {
			out.Nulls[i] = math.IsNaN(v)
		}
		resp.Series = append(resp.Series, out)
	}
	return resp, nil
}

func (g *grpcServer) FindSeries(ctx context.Context, req *metricsv1.FindSeriesRequest) (*metricsv1.FindSeriesResponse, error) {
	limit := int(req.GetLimit())
	if limit <= 0 {
		limit = 1000
	}
	resp := &metricsv1.FindSeriesResponse{}
	if len(req.GetTagExpressions()) > 0 {
		names, err := g.s.st.FindTagged(req.GetTagExpressions())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "tag_expressions: %v", err)
		}
		for _, n := range names[:min(limit, len(names))] {
			resp.Nodes = append(resp.Nodes, &metricsv1.Node{Path: n, Leaf: true})
		}
		return resp, nil
	}
	if req.GetQuery() == "" {
		return nil, status.Error(codes.InvalidArgument, "query: a glob such as servers.* (or tag_expressions) is required")
	}
	res, err := g.s.st.Find(req.GetQuery(), limit)
	if err != nil {
		var le *render.LimitError
		if errors.As(err, &le) {
			return nil, status.Error(codes.ResourceExhausted, err.Error())
		}
		return nil, status.Errorf(codes.InvalidArgument, "query: %v", err)
	}
	for _, r := range res {
		resp.Nodes = append(resp.Nodes, &metricsv1.Node{Path: r.Path, Leaf: r.Leaf, HasChildren: r.Branch})
	}
	return resp, nil
}

var _ = time.Second
