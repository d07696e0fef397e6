package metrics

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/shiploop/shiploop/services/metrics/render"
)

// fetcher serves the render engine from Storage, within limits.
type fetcher struct {
	st        *Storage
	maxSeries int
	// maxPoints refuses one fetch over this many points before reading it
	// (0: no limit): the cost check plans most fetches, but not those a
	// function builds at run time (applyByNode, aliasQuery).
	maxPoints int64
	now       int64 // the query's clock: see Storage.ReadAt
	// events reads the annotations' times for events() (nil: none).
	events func(ctx context.Context, tags []string, from, until int64) ([]int64, error)
	ctx    context.Context
}

// EventTimes makes the fetcher a render.EventCounter: events() counts the
// annotations graphite_events holds (POST /events and deploys), as
// graphite-web's counts its events table.
func (f fetcher) EventTimes(tags []string, from, until int64) ([]int64, error) {
	if f.events == nil {
		return nil, nil
	}
	ctx := f.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	return f.events(ctx, tags, from, until)
}

// Plan is what Fetch would read, from the index and the retentions alone.
func (f fetcher) Plan(ctx context.Context, path string, from, until int64) (render.Plan, error) {
	names, err := f.names(path)
	if err != nil {
		return render.Plan{}, err
	}
	if err := f.check(names); err != nil {
		return render.Plan{}, err
	}
	return f.plan(names, from, until), nil
}

// PlanTagged is what FetchTagged would read.
func (f fetcher) PlanTagged(ctx context.Context, exprs []string, from, until int64) (render.Plan, error) {
	names, err := f.st.FindTagged(exprs)
	if err != nil {
		return render.Plan{}, err
	}
	if err := f.check(names); err != nil {
		return render.Plan{}, err
	}
	return f.plan(names, from, until), nil
}

func (f fetcher) plan(names []string, from, until int64) render.Plan {
	p := render.Plan{}
	for _, n := range names {
		pts, step := f.st.PlanRead(n, from, until, f.now)
		if step == 0 {
			continue
		}
		p.Series++
		p.Points += pts
		p.Step = max(p.Step, step)
	}
	return p
}

// checkPoints refuses a fetch over maxPoints before reading it.
func (f fetcher) checkPoints(names []string, from, until int64) error {
	if f.maxPoints <= 0 {
		return nil
	}
	if p := f.plan(names, from, until); p.Points > f.maxPoints {
		return &render.LimitError{Msg: fmt.Sprintf("query too expensive: reading %d series over %s gives %d points (limit %d): narrow the path expression or the time range", p.Series, render.Span(until-from), p.Points, f.maxPoints)}
	}
	return nil
}

func (f fetcher) Fetch(ctx context.Context, path string, from, until int64) ([]*render.Series, error) {
	names, err := f.names(path)
	if err != nil {
		return nil, err
	}
	return f.read(ctx, names, from, until)
}

// FetchEach reads the series Fetch would, one at a time in name order, so
// that an aggregate over them holds one series rather than all of them.
func (f fetcher) FetchEach(ctx context.Context, path string, from, until int64, fn func(*render.Series) error) error {
	names, err := f.names(path)
	if err != nil {
		return err
	}
	if err := f.check(names); err != nil {
		return err
	}
	if err := f.checkPoints(names, from, until); err != nil {
		return err
	}
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		s, err := f.st.ReadAt(ctx, n, from, f.readUntil(until), f.now)
		if err != nil {
			return err
		}
		if s == nil {
			continue
		}
		if err := fn(s); err != nil {
			return err
		}
	}
	return nil
}

// names lists the series a path expression matches.
func (f fetcher) names(path string) ([]string, error) {
	if strings.ContainsAny(path, ";") {
		return []string{path}, nil
	}
	res, err := f.st.Find(path, f.maxSeries)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range res {
		if r.Leaf {
			names = append(names, r.Path)
		}
	}
	return names, nil
}

func (f fetcher) FetchTagged(ctx context.Context, exprs []string, from, until int64) ([]*render.Series, error) {
	names, err := f.st.FindTagged(exprs)
	if err != nil {
		return nil, &render.ArgError{Func: "seriesByTag", Msg: err.Error()}
	}
	return f.read(ctx, names, from, until)
}

func (f fetcher) read(ctx context.Context, names []string, from, until int64) ([]*render.Series, error) {
	if err := f.check(names); err != nil {
		return nil, err
	}
	if err := f.checkPoints(names, from, until); err != nil {
		return nil, err
	}
	out := make([]*render.Series, 0, len(names))
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := f.st.ReadAt(ctx, n, from, f.readUntil(until), f.now)
		if err != nil {
			return nil, err
		}
		if s != nil {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f fetcher) check(names []string) error {
	if f.maxSeries > 0 && len(names) > f.maxSeries {
		return &render.LimitError{Msg: fmt.Sprintf("the query matches %d series, over the limit of %d: narrow the path expression", len(names), f.maxSeries)}
	}
	return nil
}

// readUntil is until as whisper reads it: no later than now. (The cost
// check plans the unclamped range: an upper bound.)
func (f fetcher) readUntil(until int64) int64 {
	if f.now > 0 && until > f.now {
		return f.now
	}
	return until
}
