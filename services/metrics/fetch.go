package metrics

import (
	"context"
	"fmt"
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
	var names []string
	if strings.ContainsAny(path, ";") {
		names = []string{path}
	} else {
		res, err := f.st.Find(path, f.maxSeries)
		if err != nil {
			return nil, err
		}
		for _, r := range res {
			if r.Leaf {
				names = append(names, r.Path)
			}
		}
	}
	return f.read(ctx, names, from, until)
}

func (f fetcher) FetchTagged(ctx context.Context, exprs []string, from, until int64) ([]*render.Series, error) {
	names, err := f.st.FindTagged(exprs)
	if err != nil {
		return nil, &render.ArgError{Func: "seriesByTag", Msg: err.Error()}
	}
	return f.read(ctx, names, from, until)
}

func (f fetcher) read(ctx context.Context, names []string, from, until int64) ([]*render.Series, error) {
	if f.maxSeries > 0 && len(names) > f.maxSeries {
		return nil, &render.LimitError{Msg: fmt.Sprintf("the query matches %d series, over the limit of %d: narrow the path expression", len(names), f.maxSeries)}
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
