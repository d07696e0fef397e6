package render

import (
	"errors"
	"strings"
)

// errNoStream stops a streamed aggregate that must be computed from the
// whole list instead (see streamAggregate).
var errNoStream = errors.New("series cannot be aggregated one at a time")

// streamAggregate computes sum, average, min, max or count (aggregate with
// xff, or countSeries when count is set) over a single plain path argument
// one series at a time, dropping each once added, when the Fetcher can
// stream: a day of 10,000 series at 10 s would otherwise be held whole
// (700 MB) before being added up. The answer is the one aggregate or
// countSeries gives over the fetched list, which is why it needs the
// series in name order and one step (normalize would consolidate them to
// the lcm of their steps, which is known only once all are read). It
// reports false when it cannot tell, so that the caller evaluates the
// usual way; a stream that meets a second step is abandoned and the
// series are read again.
func streamAggregate(c *call, fn string, xff float64, count bool) ([]*Series, bool, error) {
	sf, ok := c.ev.req.Fetch.(StreamFetcher)
	if !ok || !c.has(0) || len(c.rest) > 0 {
		return nil, false, nil
	}
	e := c.args[0]
	if e.Kind != KindPath || e.Name == "\x00group" {
		return nil, false, nil
	}
	var acc *seriesAcc
	if !count {
		fn = strings.TrimSuffix(fn, "Series")
		if _, ok := aggFunc(fn); !ok {
			return nil, false, nil
		}
		if acc, ok = newSeriesAcc(fn); !ok {
			return nil, false, nil
		}
	}
	if err := c.ev.ctx.Err(); err != nil {
		return nil, true, err
	}
	var (
		n, points, slots int
		start, step      int64
		prev             string
		tags             map[string]string
		paths            []string
		seen             = map[string]bool{}
	)
	err := sf.FetchEach(c.ev.ctx, e.Name, c.from, c.until, func(s *Series) error {
		if n > 0 && s.Name == prev {
			return nil // sortedUnique keeps the first of a name
		}
		if n > 0 && (s.Name < prev || s.Step != step) || s.Step <= 0 {
			return errNoStream
		}
		if n == 0 {
			start, step = s.Start, s.Step
		}
		n++
		prev = s.Name
		points += len(s.Values)
		slots = max(slots, len(s.Values))
		start = min(start, s.Start)
		// As eval sets it on a fetched series.
		pe := s.PathExpression
		if pe == "" || pe == s.Name {
			pe = e.Name
		}
		if !seen[pe] {
			seen[pe] = true
			paths = append(paths, pe)
		}
		if acc != nil {
			tags = meetTags(tags, s)
			acc.add(s.Values)
		}
		return nil
	})
	if errors.Is(err, errNoStream) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	if err := c.ev.accountCounts(n, points); err != nil {
		return nil, true, err
	}
	if n == 0 {
		return nil, true, nil
	}
	if count {
		out := make([]float64, slots)
		for i := range out {
			out[i] = float64(n)
		}
		return []*Series{newDerived("countSeries("+strings.Join(paths, ",")+")", start, step, out)}, true, nil
	}
	return aggregated(fn, strings.Join(paths, ","), tags, start, step, acc.result(xff), xff), true, nil
}
