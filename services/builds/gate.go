package builds

import (
	"context"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/builds/pipeline"
)

// gateBuild is what the gates service needs from a build's config: the
// gate section (nil without one, so the repository's or the installation's
// policy applies), the ref new code is measured against, and whether a test
// run will follow. cfg is nil when the config could not be read.
func gateBuild(ch *eventsv1.Change, cfg *pipeline.Config) *eventsv1.GateBuild {
	g := &eventsv1.GateBuild{BaseRef: ch.GetBaseRef()}
	if g.BaseRef == "" && ch.GetDefaultBranch() != "" {
		g.BaseRef = "refs/heads/" + ch.GetDefaultBranch()
	}
	if g.BaseRef != "" && !strings.HasPrefix(g.BaseRef, "refs/") {
		g.BaseRef = "refs/heads/" + g.BaseRef
	}
	if cfg == nil {
		return g
	}
	g.HasTests = cfg.Test != nil
	if cfg.Gate == nil {
		return g
	}
	p := &eventsv1.GatePolicy{Expression: cfg.Gate.Expression, OnNoData: cfg.Gate.OnNoData}
	for i, c := range cfg.Gate.Conditions {
		field := "gate.conditions[" + strconv.Itoa(i) + "]"
		pos, _ := cfg.Position(field)
		p.Conditions = append(p.Conditions, &eventsv1.GateCondition{
			Metric: c.Metric, Operator: string(c.Operator), Threshold: c.Threshold, Scope: string(c.Scope), OnNoData: c.OnNoData,
			File: cfg.File(), Line: int32(pos.Line),
		})
	}
	if p.Expression != "" {
		pos, _ := cfg.Position("gate.expression")
		p.ExpressionFile, p.ExpressionLine = cfg.File(), int32(pos.Line)
	}
	if cfg.Gate.MinNewLines != nil {
		p.MinNewLines = int32(*cfg.Gate.MinNewLines)
		if p.MinNewLines == 0 {
			p.MinNewLines = -1 // 0 in the file judges always; 0 on the wire means the default
		}
	}
	if r := cfg.Gate.Reports; len(r) > 0 {
		p.Reports = &eventsv1.GateReports{Sarif: r["sarif"], Flake8: r["flake8"], Checkstyle: r["checkstyle"], GolangciLint: r["golangci_lint"], Metrics: r["metrics"]}
	}
	g.Policy = p
	return g
}

// GetForgeSettings gives another shiploop service (gates) what it needs to
// post commit statuses for a repository, token included. Guard the gRPC
// API with --token: this is the one call that returns a credential.
func (g *grpcServer) GetForgeSettings(ctx context.Context, req *buildsv1.GetForgeSettingsRequest) (*buildsv1.GetForgeSettingsResponse, error) {
	name, err := normalizeRepoName(req.GetRepository())
	if err != nil {
		return nil, invalid("repository", err.Error())
	}
	f, err := g.s.forgeSettings(ctx, name)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading forge settings: %v", err)
	}
	return &buildsv1.GetForgeSettingsResponse{Forge: f.kind, ApiUrl: f.apiURL, ForgeRepo: f.repo, Token: f.token}, nil
}
