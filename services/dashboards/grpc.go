package dashboards

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	dashboardsv1 "github.com/shiploop/shiploop/proto/shiploop/dashboards/v1"
)

// RegisterGRPC registers DashboardService on a gRPC server.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	dashboardsv1.RegisterDashboardServiceServer(r, &grpcServer{s: s})
}

type grpcServer struct {
	dashboardsv1.UnimplementedDashboardServiceServer
	s *Service
}

func tsp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func grpcErr(err error) error {
	if errors.Is(err, errNotFound) {
		return status.Error(codes.NotFound, err.Error())
	}
	return status.Errorf(codes.Unavailable, "reading the read models: %v", err)
}

func (g *grpcServer) Overview(ctx context.Context, req *dashboardsv1.OverviewRequest) (*dashboardsv1.OverviewResponse, error) {
	repos, err := g.s.overview(ctx, req.GetRepository())
	if err != nil {
		return nil, grpcErr(err)
	}
	out := &dashboardsv1.OverviewResponse{}
	for _, r := range repos {
		ro := &dashboardsv1.RepositoryOverview{Name: r.Name}
		for _, b := range r.Branches {
			bh := &dashboardsv1.BranchHead{Branch: b.Branch, ChainId: b.ChainID, Commit: b.Commit, Message: b.Message, Author: b.Author, Version: b.Version, PushedAt: tsp(b.PushedAt)}
			for _, st := range b.Stages {
				bh.Stages = append(bh.Stages, &dashboardsv1.Stage{Name: st.Name, Status: st.Status, Summary: st.Summary})
			}
			ro.Branches = append(ro.Branches, bh)
		}
		out.Repositories = append(out.Repositories, ro)
	}
	return out, nil
}

func (g *grpcServer) Pipeline(ctx context.Context, req *dashboardsv1.PipelineRequest) (*dashboardsv1.PipelineResponse, error) {
	if req.GetChainId() == "" {
		return nil, status.Error(codes.InvalidArgument, "chain_id: required (the id of the change event; the overview lists them)")
	}
	p, err := g.s.pipeline(ctx, req.GetChainId())
	if err != nil {
		return nil, grpcErr(err)
	}
	out := &dashboardsv1.PipelineResponse{ChainId: p.ChainID, Repository: p.Repository, Ref: p.Ref, Commit: p.Commit, Message: p.Message, Author: p.Author, PushedAt: tsp(p.PushedAt)}
	for _, b := range p.Builds {
		bo := &dashboardsv1.Build{BuildId: b.ID, Number: b.Number, Status: b.Status, Version: b.Version, FailedStep: b.FailedStep, Error: b.Error, DurationMs: b.DurationMS}
		for _, j := range b.Jobs {
			jo := &dashboardsv1.Job{JobId: j.ID, Kind: j.Kind, Status: j.Status, Agent: j.Agent, Matrix: j.Matrix}
			for _, st := range j.Steps {
				jo.Steps = append(jo.Steps, &dashboardsv1.Step{Name: st.Name, Status: st.Status, ExitCode: st.ExitCode, DurationMs: st.DurationMS, Error: st.Error})
			}
			bo.Jobs = append(bo.Jobs, jo)
		}
		out.Builds = append(out.Builds, bo)
	}
	for _, t := range p.TestRuns {
		cov, has := t.Coverage()
		out.TestRuns = append(out.TestRuns, &dashboardsv1.TestRun{RunId: t.ID, Status: t.Status, Tests: t.Tests, Passed: t.Passed, Failed: t.Failed,
			Skipped: t.Skipped, CoveragePercent: cov, HasCoverage: has, Error: t.Error})
	}
	if p.Gate != nil {
		out.Gate = &dashboardsv1.Gate{Status: p.Gate.Status, Summary: p.Gate.Summary}
		for _, c := range p.Gate.Conditions {
			out.Gate.Conditions = append(out.Gate.Conditions, &dashboardsv1.GateCondition{Metric: c.Metric, Operator: c.Operator, Threshold: c.Threshold,
				Scope: c.Scope, Value: c.Value, HasValue: c.HasValue, Verdict: c.Verdict, Detail: c.Detail})
		}
	}
	for _, d := range p.Deploys {
		out.Deploys = append(out.Deploys, deployProto(d))
	}
	for _, is := range p.Issues {
		kind := is.Kind
		if !is.ResolvedAt.IsZero() {
			kind = "resolved"
		}
		out.Errors = append(out.Errors, &dashboardsv1.ErrorIssue{IssueId: is.IssueID, Project: is.Project, Title: is.Title, Release: is.Release, Environment: is.Env, Status: kind})
	}
	return out, nil
}

func deployProto(d deployView) *dashboardsv1.Deploy {
	return &dashboardsv1.Deploy{DeployId: d.ID, Environment: d.Environment, Release: d.Release, Status: d.Status, Kind: d.Kind,
		TriggeredBy: d.TriggeredBy, Approvers: d.Approvers, Reason: d.Reason, FinishedAt: tsp(d.FinishedAt)}
}

func (g *grpcServer) Environments(ctx context.Context, req *dashboardsv1.EnvironmentsRequest) (*dashboardsv1.EnvironmentsResponse, error) {
	envs, err := g.s.environments(ctx, req.GetRepository())
	if err != nil {
		return nil, grpcErr(err)
	}
	out := &dashboardsv1.EnvironmentsResponse{}
	for _, e := range envs {
		out.Environments = append(out.Environments, &dashboardsv1.Environment{Repository: e.Repository, Name: e.Name, Release: e.Release, Status: e.Status,
			Since: tsp(e.Since), Approvers: e.Approvers, Locked: e.Locked, LockedBy: e.LockedBy, LockReason: e.LockReason})
	}
	return out, nil
}

func (g *grpcServer) Dora(ctx context.Context, req *dashboardsv1.DoraRequest) (*dashboardsv1.DoraResponse, error) {
	if req.GetEnvironment() != "" && req.GetEnvironment() != g.s.cfg.ProductionEnvironment {
		return nil, status.Errorf(codes.InvalidArgument, "environment: this server measures %q", g.s.cfg.ProductionEnvironment)
	}
	rep, err := g.s.doraReport(ctx, req.GetRepository(), req.GetPeriod(), req.GetProfile())
	var inv invalidError
	if errors.As(err, &inv) {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err != nil {
		return nil, grpcErr(err)
	}
	out := &dashboardsv1.DoraResponse{Profile: rep.Profile, From: tsp(rep.From), To: tsp(rep.To), Deploys: int64(rep.Result.Deploys), FailedDeploys: int64(rep.Result.FailedDeploys)}
	for _, m := range rep.Metrics {
		out.Metrics = append(out.Metrics, &dashboardsv1.DoraMetric{Name: m.Name, Display: m.Display, Value: m.Value, Bucket: m.Bucket, HasValue: m.Has})
	}
	return out, nil
}

func (g *grpcServer) Rebuild(ctx context.Context, _ *dashboardsv1.RebuildRequest) (*dashboardsv1.RebuildResponse, error) {
	start := time.Now()
	n, err := g.s.Rebuild(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &dashboardsv1.RebuildResponse{Events: n, DurationMs: time.Since(start).Milliseconds()}, nil
}
