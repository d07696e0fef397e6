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
	now       int64 // the query's clock: see Storage.ReadAt
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
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	for _, n := range names {
		s, err := f.st.ReadAt(ctx, n, from, until, f.now)
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
	out := make([]*render.Series, 0, len(names))
	for _, n := range names {
		s, err := f.st.ReadAt(ctx, n, from, until, f.now)
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
