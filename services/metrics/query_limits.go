package metrics

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/shiploop/shiploop/services/metrics/render"
)

// Defaults of the Graphite query limits (Config fields; the timeout is also
// shiploop's --graphite-query-timeout). A query is costed before it reads
// anything (render.Cost) and refused with 400 and the reason when a budget
// is spent; what it then does runs under QueryTimeout.
const (
	// DefaultQueryMaxSeries: series one query may match, over all its
	// targets and paths.
	DefaultQueryMaxSeries = 50_000
	// DefaultQueryMaxPoints: points one query may fetch, over all its
	// targets, counted from each series' retention over the range each
	// fetch covers (a moving window's widened range, timeShift's shifted
	// one), plus each moving window's own points for each series. 20M
	// points are 160 MB of values: 2,300 series over a day at 10 s, or 460
	// series over a month at 1 min.
	DefaultQueryMaxPoints = 20_000_000
	// DefaultQueryMaxBuckets: points summarize, hitcount, timeFunction and
	// sinFunction may make, summed over the query (range / interval for
	// each series).
	DefaultQueryMaxBuckets = 10_000_000
	// DefaultQueryMaxDepth: how deep function calls may nest.
	DefaultQueryMaxDepth = 32
	// DefaultQueryMaxCalls: functions and paths one query may evaluate,
	// counting re-evaluations (a moving window with a point count
	// evaluates its argument twice).
	DefaultQueryMaxCalls = 10_000
	// DefaultQueryMaxDataPoints: a larger maxDataPoints is taken as this
	// (it only ever consolidates).
	DefaultQueryMaxDataPoints = 1_000_000
	// DefaultQueryTimeout: how long one render or gRPC Query may run.
	DefaultQueryTimeout = 10 * time.Second
)

func (cfg *Config) queryDefaults() {
	if cfg.MaxSeries <= 0 {
		cfg.MaxSeries = DefaultQueryMaxSeries
	}
	if cfg.MaxPoints <= 0 {
		cfg.MaxPoints = DefaultQueryMaxPoints
	}
	if cfg.MaxBuckets <= 0 {
		cfg.MaxBuckets = DefaultQueryMaxBuckets
	}
	if cfg.MaxDepth <= 0 {
		cfg.MaxDepth = DefaultQueryMaxDepth
	}
	if cfg.MaxCalls <= 0 {
		cfg.MaxCalls = DefaultQueryMaxCalls
	}
	if cfg.MaxDataPoints <= 0 {
		cfg.MaxDataPoints = DefaultQueryMaxDataPoints
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = DefaultQueryTimeout
	}
}

// costLimits are the budgets render.Cost checks a query against.
func (s *Service) costLimits() render.CostLimits {
	return render.CostLimits{
		Limits:     render.Limits{MaxSeries: s.cfg.MaxSeries, MaxPoints: s.cfg.MaxPoints},
		MaxBuckets: s.cfg.MaxBuckets, MaxDepth: s.cfg.MaxDepth, MaxCalls: s.cfg.MaxCalls,
	}
}

// parseTargets parses a request's targets and checks what they cost
// together, before any is evaluated.
func (s *Service) parseTargets(ctx context.Context, req render.Request, f fetcher, targets []string) ([]*render.Expr, []string, error) {
	cost := render.NewCost(ctx, req, f, s.costLimits())
	var exprs []*render.Expr
	var kept []string
	for _, t := range targets {
		if strings.TrimSpace(t) == "" {
			continue
		}
		e, err := render.Parse(t)
		if err != nil {
			return nil, nil, fmt.Errorf("target %q: %w", t, err)
		}
		if err := cost.Check(e); err != nil {
			return nil, nil, fmt.Errorf("target %q: %w", t, err)
		}
		exprs, kept = append(exprs, e), append(kept, t)
	}
	return exprs, kept, nil
}

// clampMaxDataPoints takes a maxDataPoints over the limit as the limit.
func (s *Service) clampMaxDataPoints(mdp int64) int {
	if mdp > int64(s.cfg.MaxDataPoints) {
		return s.cfg.MaxDataPoints
	}
	return int(mdp)
}

// timedOut is the answer to a query stopped by QueryTimeout.
func (s *Service) timedOut() string {
	return fmt.Sprintf("query timed out after %s: narrow the targets or the time range", s.cfg.QueryTimeout)
}
