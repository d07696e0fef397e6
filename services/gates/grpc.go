package gates

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	gatesv1 "github.com/shiploop/shiploop/proto/shiploop/gates/v1"
)

// RegisterGRPC registers GateService on a gRPC server.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	gatesv1.RegisterGateServiceServer(r, &grpcServer{s: s})
}

type grpcServer struct {
	gatesv1.UnimplementedGateServiceServer
	s *Service
}

func invalid(field, msg string) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, msg)
}

func (g *grpcServer) GetEvaluation(ctx context.Context, req *gatesv1.GetEvaluationRequest) (*gatesv1.GetEvaluationResponse, error) {
	q := `SELECT build_id, result, new_findings FROM gate_evaluations WHERE build_id = $1`
	args := []any{req.GetBuildId()}
	switch {
	case req.GetBuildId() != "":
	case req.GetRepository() != "" && req.GetNumber() > 0:
		q = `SELECT build_id, result, new_findings FROM gate_evaluations WHERE repository = $1 AND number = $2`
		args = []any{req.GetRepository(), req.GetNumber()}
	default:
		return nil, invalid("build_id", "required, or repository and number")
	}
	var id string
	var raw, newJSON []byte
	err := g.s.db.QueryRowContext(ctx, q, args...).Scan(&id, &raw, &newJSON)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, status.Error(codes.NotFound, "no gate evaluation for this build yet (the gate is judged after the build and its tests)")
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	ev := &eventsv1.GateEvaluated{}
	if err := proto.Unmarshal(raw, ev); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	out := &gatesv1.Evaluation{Result: ev}
	var fs []storedFinding
	_ = json.Unmarshal(newJSON, &fs)
	for _, f := range fs {
		out.NewFindings = append(out.NewFindings, &gatesv1.Finding{Tool: f.Tool, Rule: f.Rule, Level: f.Level, Path: f.Path,
			Line: int32(f.Line), Column: int32(f.Column), Message: f.Message, Fingerprint: f.FP})
	}
	rows, err := g.s.db.QueryContext(ctx, `SELECT name, format, findings, error FROM gate_reports WHERE build_id = $1 ORDER BY name`, id)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	defer rows.Close()
	for rows.Next() {
		r := &gatesv1.Report{}
		if err := rows.Scan(&r.Name, &r.Format, &r.Findings, &r.Error); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		out.Reports = append(out.Reports, r)
	}
	return &gatesv1.GetEvaluationResponse{Evaluation: out}, rows.Err()
}

func (g *grpcServer) ListEvaluations(ctx context.Context, req *gatesv1.ListEvaluationsRequest) (*gatesv1.ListEvaluationsResponse, error) {
	size := int(req.GetPageSize())
	if size <= 0 || size > 500 {
		size = 50
	}
	offset := 0
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return nil, invalid("page_token", "not a token this service gave")
		}
		offset = n
	}
	q := `SELECT result FROM gate_evaluations`
	var args []any
	if req.GetRepository() != "" {
		q += ` WHERE repository = $1`
		args = append(args, req.GetRepository())
	}
	q += fmt.Sprintf(` ORDER BY evaluated_at DESC, build_id LIMIT %d OFFSET %d`, size+1, offset)
	rows, err := g.s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	defer rows.Close()
	resp := &gatesv1.ListEvaluationsResponse{}
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if len(resp.Evaluations) == size {
			resp.NextPageToken = strconv.Itoa(offset + size)
			break
		}
		ev := &eventsv1.GateEvaluated{}
		if err := proto.Unmarshal(raw, ev); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		// A list leaves the findings out (GetEvaluation has them): up to
		// 200 a build would take a page of 500 past gRPC's 4 MiB.
		ev.FindingsTruncated += int64(len(ev.Findings))
		ev.Findings = nil
		resp.Evaluations = append(resp.Evaluations, ev)
	}
	return resp, rows.Err()
}

func (g *grpcServer) GetPolicy(ctx context.Context, req *gatesv1.GetPolicyRequest) (*gatesv1.GetPolicyResponse, error) {
	p, src, err := g.s.storedPolicy(ctx, g.s.db, strings.TrimSpace(req.GetRepository()))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &gatesv1.GetPolicyResponse{Policy: p, Source: src}, nil
}

// SetPolicy checks the policy as the .shiploop.yml parser would (metrics,
// operators, scopes) and compiles its expression before storing it.
func (g *grpcServer) SetPolicy(ctx context.Context, req *gatesv1.SetPolicyRequest) (*gatesv1.SetPolicyResponse, error) {
	repo := strings.TrimSpace(req.GetRepository())
	p := req.GetPolicy()
	if len(p.GetConditions()) == 0 && p.GetExpression() == "" {
		if _, err := g.s.db.ExecContext(ctx, `DELETE FROM gate_policies WHERE repository = $1`, repo); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		pol, src, err := g.s.storedPolicy(ctx, g.s.db, repo)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return &gatesv1.SetPolicyResponse{Policy: pol, Source: src}, nil
	}
	for _, c := range p.GetConditions() {
		c.File, c.Line = "", 0
		if c.Scope == "" {
			c.Scope = "overall"
		}
	}
	p.ExpressionFile, p.ExpressionLine, p.Reports = "", 0, nil
	if _, err := compile(p); err != nil {
		return nil, invalid("policy", err.Error())
	}
	raw, err := proto.Marshal(p)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if _, err := g.s.db.ExecContext(ctx, `INSERT INTO gate_policies (repository, policy, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (repository) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at`, repo, raw, time.Now().UnixNano()); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	src := "repository"
	if repo == "" {
		src = "installation"
	}
	return &gatesv1.SetPolicyResponse{Policy: p, Source: src}, nil
}
