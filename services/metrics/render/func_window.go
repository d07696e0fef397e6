package render

import (
	"fmt"
	"math"
	"strings"
)

// windowArg reads a window given as a point count or an interval string.
// It returns the preview seconds and, for a string, the interval text.
func windowArg(c *call, i int, list []*Series) (previewSec int64, points int, text string, isString bool, err error) {
	a := c.args[i]
	if a.Kind == KindString {
		d, err := ParseInterval(a.Str)
		if err != nil {
			return 0, 0, "", false, c.errf(i, "%v", err)
		}
		if d < 0 {
			d = -d
		}
		return d, 0, a.Str, true, nil
	}
	n, err := c.int(i, 0)
	if err != nil {
		return 0, 0, "", false, err
	}
	var step int64
	for _, s := range list {
		step = max(step, s.Step)
	}
	return step * int64(n), n, a.Raw, false, nil
}

// refetch evaluates the first argument again over a wider window.
func (c *call) refetch(from int64) ([]*Series, error) {
	return c.seriesOf(c.args[0], from, c.until)
}

func movingAverage(c *call) ([]*Series, error) { return movingWindowOf(c, "average", "movingAverage") }
func movingSum(c *call) ([]*Series, error)     { return movingWindowOf(c, "sum", "movingSum") }
func movingMin(c *call) ([]*Series, error)     { return movingWindowOf(c, "min", "movingMin") }
func movingMax(c *call) ([]*Series, error)     { return movingWindowOf(c, "max", "movingMax") }
func movingMedian(c *call) ([]*Series, error)  { return movingWindowOf(c, "median", "movingMedian") }

// holtWinters is holtWintersForecast, or the confidence bands (bands).
func holtWinters(c *call, bands bool) ([]*Series, error) {
	i := 1
	delta := 3.0
	if bands {
		var err error
		if delta, err = c.float(1, 3); err != nil {
			return nil, err
		}
		i = 2
	}
	boot, _, err := c.interval(i, "7d")
	if err != nil {
		return nil, err
	}
	season, _, err := c.interval(i+1, "1d")
	if err != nil {
		return nil, err
	}
	list, err := c.refetch(c.from - boot)
	if err != nil {
		return nil, err
	}
	var out []*Series
	for _, s := range list {
		if err := c.tick(len(s.Values) * 8); err != nil {
			return nil, err
		}
		pred, dev := holtWintersAnalysis(s, season)
		wp := int(boot / s.Step)
		if wp > len(pred) {
			wp = len(pred)
		}
		mk := func(n string, vals []float64) *Series {
			d := s.derive(n, vals)
			d.Start = s.Start + boot
			d.Stop = d.Start + int64(len(vals))*d.Step
			return d
		}
		if !bands {
			out = append(out, mk("holtWintersForecast("+s.Name+")", pred[wp:]))
			continue
		}
		f, dv := pred[wp:], dev[wp:]
		up, lo := make([]float64, len(f)), make([]float64, len(f))
		for k := range f {
			if isNull(f[k]) || isNull(dv[k]) {
				up[k], lo[k] = nan, nan
				continue
			}
			up[k] = f[k] + delta*dv[k]
			lo[k] = f[k] - delta*dv[k]
		}
		out = append(out, mk("holtWintersConfidenceLower("+s.Name+")", lo), mk("holtWintersConfidenceUpper("+s.Name+")", up))
	}
	return out, nil
}

func holtWintersForecast(c *call) ([]*Series, error)        { return holtWinters(c, false) }
func holtWintersConfidenceBands(c *call) ([]*Series, error) { return holtWinters(c, true) }

// movingWindow: Moving aggregate over a window of points or time.
func movingWindow(c *call) ([]*Series, error) {
	fn, _ := c.str(2, "average")
	c.args = []*Expr{c.args[0], c.args[1], c.args[3]}
	return movingWindowOf(c, fn, "moving"+strings.ToUpper(fn[:1])+fn[1:])
}

// exponentialMovingAverage: Exponential moving average.
func exponentialMovingAverage(c *call) ([]*Series, error) {
	wide, byInterval, err := wideByInterval(c)
	list := wide
	if !byInterval {
		list, err = c.series(0)
	}
	if err != nil || len(list) == 0 {
		return nil, err
	}
	preview, n, text, isStr, err := windowArg(c, 1, list)
	if err != nil {
		return nil, err
	}
	constant := 2 / float64(n+1)
	if isStr {
		constant = 2 / float64(preview+1)
	}
	if !byInterval {
		if wide, err = c.refetch(c.from - preview); err != nil {
			return nil, err
		}
	}
	var out []*Series
	for _, s := range wide {
		name := fmt.Sprintf("exponentialMovingAverage(%s,%s)", s.Name, text)
		wp := n
		if isStr {
			name = fmt.Sprintf("exponentialMovingAverage(%s,\"%s\")", s.Name, text)
			wp = int(preview / s.Step)
		}
		ema := safeAvg(s.Values[:min(wp, len(s.Values))])
		if isNull(ema) {
			ema = 0
		}
		vals := []float64{pyRound(ema, 6)}
		for i := wp; i < len(s.Values); i++ {
			if v := s.Values[i]; !isNull(v) {
				ema = constant*v + (1-constant)*ema
				vals = append(vals, pyRound(ema, 6))
			} else {
				vals = append(vals, nan)
			}
		}
		d := s.derive(name, vals)
		d.Start = s.Start + preview
		d.Stop = d.Start + int64(len(vals))*d.Step
		out = append(out, d)
	}
	return out, nil
}

// summarize: Summarizes into intervals.
func summarize(c *call) ([]*Series, error) {
	interval, text, err := c.interval(1, "")
	if err != nil {
		return nil, err
	}
	if interval <= 0 {
		return nil, c.errf(1, "interval must be positive")
	}
	fn, _ := c.str(2, "sum")
	if _, ok := aggFunc(fn); !ok {
		return nil, c.errf(2, "unsupported aggregation function: %s", fn)
	}
	align, err := c.bool(3, false)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		start, end := s.Start, s.Stop
		if !align {
			start = s.Start - s.Start%interval
			end = s.Stop - s.Stop%interval + interval
		}
		vals, err := summarizeValues(c, s, fn, interval, start, end)
		if err != nil {
			return nil, err
		}
		suffix := ""
		if align {
			suffix = ", true"
		}
		d := s.derive(fmt.Sprintf("summarize(%s, \"%s\", \"%s\"%s)", s.Name, text, fn, suffix), vals)
		d.Start, d.Step = start, interval
		d.Stop = start + int64(len(vals))*interval
		d.Tags["summarize"] = text
		d.Tags["summarizeFunction"] = fn
		d.PathExpression = d.Name // a new series in graphite-web
		list[i] = d
	}
	return list, nil
}

// hitcount: Counts hits per interval.
func hitcount(c *call) ([]*Series, error) {
	interval, text, err := c.interval(1, "")
	if err != nil {
		return nil, err
	}
	if interval <= 0 {
		return nil, c.errf(1, "interval must be positive")
	}
	align, err := c.bool(2, false)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	if align {
		from := c.from
		switch {
		case interval >= 86400:
			from -= from % 86400
		case interval >= 3600:
			from -= from % 3600
		case interval >= 60:
			from -= from % 60
		}
		if list, err = c.refetch(from); err != nil {
			return nil, err
		}
		for _, s := range list {
			n := (s.Stop - s.Start) / interval
			s.Stop = s.Start + n*interval + interval
		}
	}
	for i, s := range list {
		count := int((s.Stop - s.Start + interval - 1) / interval)
		buckets := make([]float64, count)
		used := make([]bool, count)
		newStart := s.Stop - int64(count)*interval
		add := func(b int64, v float64) {
			if b >= 0 && b < int64(count) {
				buckets[b] += v
				used[b] = true
			}
		}
		for j, v := range s.Values {
			if err := c.tick(1); err != nil {
				return nil, err
			}
			if isNull(v) {
				continue
			}
			st := s.Start + int64(j)*s.Step
			sb, sm := floorDiv(st-newStart, interval), mod(st-newStart, interval)
			et := st + s.Step
			eb, em := floorDiv(et-newStart, interval), mod(et-newStart, interval)
			if eb >= int64(count) {
				eb, em = int64(count)-1, interval
			}
			if sb == eb {
				if sb >= 0 {
					add(sb, v*float64(em-sm))
				}
				continue
			}
			if sb >= 0 {
				add(sb, v*float64(interval-sm))
			}
			for k := sb + 1; k < eb; k++ {
				if err := c.tick(1); err != nil {
					return nil, err
				}
				add(k, v*float64(interval))
			}
			if em > 0 {
				add(eb, v*float64(em))
			}
		}
		for k := range buckets {
			if !used[k] {
				buckets[k] = nan
			}
		}
		suffix := ""
		if align {
			suffix = ", true"
		}
		d := s.derive(fmt.Sprintf("hitcount(%s, \"%s\"%s)", s.Name, text, suffix), buckets)
		d.Start, d.Step = newStart, interval
		d.Stop = newStart + int64(count)*interval
		d.Tags["hitcount"] = text
		d.PathExpression = d.Name // a new series in graphite-web
		list[i] = d
	}
	return list, nil
}

// timeShift: Draws the series shifted in time.
func timeShift(c *call) ([]*Series, error) {
	a := c.args[1]
	text := a.Raw
	if a.Kind == KindString {
		text = a.Str
	}
	if !strings.HasPrefix(text, "+") && !strings.HasPrefix(text, "-") {
		text = "-" + text
	}
	d, err := ParseInterval(text)
	if err != nil {
		return nil, c.errf(1, "%v", err)
	}
	reset, err := c.bool(2, true)
	if err != nil {
		return nil, err
	}
	// As graphite-web: the unshifted list is evaluated too, and every
	// shifted series takes the first one's start (and, with resetEnd,
	// its end); its values are kept, and read only up to that end.
	orig, err := c.series(0)
	if err != nil || len(orig) == 0 {
		return nil, err
	}
	first := orig[0]
	list, err := c.seriesOf(c.args[0], c.from+d, c.until+d)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		n := s.derive(fmt.Sprintf("timeShift(%s, \"%s\")", s.Name, text), s.Values)
		end := s.Stop - s.Start + first.Start
		if reset {
			end = first.Stop
		}
		n.Start = first.Start
		// graphite-web's datapoints() pairs values with the timestamps
		// start, start+step, ... up to end inclusive.
		if n.Step > 0 && end >= n.Start {
			if keep := (end-n.Start)/n.Step + 1; keep < int64(len(n.Values)) {
				n.Values = n.Values[:keep]
			}
		}
		// graphite-web sets the end whatever the values: a series shifted
		// past now has fewer values but keeps the end, and a timeShift
		// around it takes that end (timeShift(timeShift(x, '+20min'),
		// '-1h') over 3 h has 180 points, not the inner one's 160); and
		// maxDataPoints spreads its points over that end.
		n.Stop = end
		n.Tags["timeShift"] = text
		list[i] = n
	}
	return list, nil
}

// nPercentile: A line at the nth percentile of each series.
func nPercentile(c *call) ([]*Series, error) {
	n, err := c.float(1, 0)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	var out []*Series
	for _, s := range list {
		p := getPercentile(s.Values, n, false)
		if isNull(p) {
			continue
		}
		vals := make([]float64, len(s.Values))
		for i := range vals {
			vals[i] = p
		}
		out = append(out, s.derive(fmt.Sprintf("nPercentile(%s, %s)", s.Name, pyG(n)), vals))
	}
	return out, err
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// wideByInterval evaluates the first argument once over the range widened
// by a window given as an interval string, when it is one: such a window
// needs no step, so the argument need not be evaluated over the plain range
// first (which doubles the work at each level of nesting).
func wideByInterval(c *call) (wide []*Series, ok bool, err error) {
	a := c.args[1]
	if a.Kind != KindString {
		return nil, false, nil
	}
	d, perr := ParseInterval(a.Str)
	if perr != nil {
		return nil, false, nil
	}
	wide, err = c.refetch(c.from - max(d, -d))
	return wide, true, err
}

func movingWindowOf(c *call, fn, tagName string) ([]*Series, error) {
	wide, byInterval, err := wideByInterval(c)
	list := wide
	if !byInterval {
		list, err = c.series(0)
	}
	if err != nil || len(list) == 0 {
		return nil, err
	}
	agg, ok := aggFunc(fn)
	if !ok {
		return nil, c.errf(1, "unsupported aggregation function: %s", fn)
	}
	preview, n, text, isStr, err := windowArg(c, 1, list)
	if err != nil {
		return nil, err
	}
	var xff float64
	hasXff := c.has(2)
	if hasXff {
		if xff, err = c.float(2, 0); err != nil {
			return nil, err
		}
	}
	if !byInterval {
		if wide, err = c.refetch(c.from - preview); err != nil {
			return nil, err
		}
	}
	var out []*Series
	for _, s := range wide {
		name := fmt.Sprintf("%s(%s,%s)", tagName, s.Name, text)
		wp := n
		if isStr {
			name = fmt.Sprintf("%s(%s,\"%s\")", tagName, s.Name, text)
			wp = int(preview / s.Step)
		}
		x := s.XFilesFactor
		if hasXff {
			x = xff
		}
		// graphite-web's window for the point at i is the wp points
		// before it, not including it: values[i-wp:i] for i in
		// [wp, len).
		var vals []float64
		for i := max(wp, 0); i < len(s.Values); i++ {
			if err := c.tick(wp); err != nil {
				return nil, err
			}
			win := nonNull(s.Values[i-max(wp, 0) : i])
			if len(win) > 0 && wp > 0 && float64(len(win))/float64(wp) >= x {
				vals = append(vals, agg(win))
			} else {
				vals = append(vals, nan)
			}
		}
		d := s.derive(name, vals)
		d.Start = s.Start + preview
		d.Stop = d.Start + int64(len(vals))*d.Step
		d.Tags[tagName] = text
		// A copy in graphite-web: its path expression is its name, which
		// an aggregate over it is then named after.
		d.PathExpression = d.Name
		out = append(out, d)
	}
	return out, nil
}

func summarizeValues(c *call, s *Series, fn string, interval, start, end int64) ([]float64, error) {
	agg, _ := aggFunc(fn)
	n := len(s.Values)
	var out []float64
	i := 0
	points := float64(interval) / float64(s.Step)
	for t := start; t < end; t += interval {
		if err := c.tick(1); err != nil {
			return nil, err
		}
		b := i
		nn := 0
		for i < n && s.Start+int64(i)*s.Step < t+interval {
			ts := s.Start + int64(i)*s.Step
			if ts <= t {
				b = i
			}
			if ts >= t && !isNull(s.Values[i]) {
				nn++
			}
			i++
		}
		if nn > 0 && float64(nn)/points >= s.XFilesFactor {
			out = append(out, agg(s.Values[b:i]))
		} else {
			out = append(out, nan)
		}
	}
	return out, nil
}

func holtWintersAnalysis(s *Series, season int64) (pred, dev []float64) {
	const alpha, gamma, beta = 0.1, 0.1, 0.0035
	sl := int(season / s.Step)
	if sl < 2 {
		sl = 2
	}
	var intercepts, slopes, seasonals []float64
	lastSeasonal := func(i int) float64 {
		if j := i - sl; j >= 0 {
			return seasonals[j]
		}
		return 0
	}
	lastDev := func(i int) float64 {
		if j := i - sl; j >= 0 {
			return dev[j]
		}
		return 0
	}
	nextPred := nan
	for i, actual := range s.Values {
		if isNull(actual) {
			intercepts = append(intercepts, nan)
			slopes = append(slopes, 0)
			seasonals = append(seasonals, 0)
			pred = append(pred, nextPred)
			dev = append(dev, 0)
			nextPred = nan
			continue
		}
		var li, ls, prediction float64
		if i == 0 {
			li, ls, prediction = actual, 0, actual
		} else {
			li, ls = intercepts[len(intercepts)-1], slopes[len(slopes)-1]
			if isNull(li) {
				li = actual
			}
			prediction = nextPred
		}
		lsea := lastSeasonal(i)
		nls := lastSeasonal(i + 1)
		lsd := lastDev(i)
		intercept := alpha*(actual-lsea) + (1-alpha)*(li+ls)
		slope := beta*(intercept-li) + (1-beta)*ls
		seasonal := gamma*(actual-intercept) + (1-gamma)*lsea
		nextPred = intercept + slope + nls
		p := prediction
		if isNull(p) {
			p = 0
		}
		deviation := gamma*math.Abs(actual-p) + (1-gamma)*lsd
		intercepts = append(intercepts, intercept)
		slopes = append(slopes, slope)
		seasonals = append(seasonals, seasonal)
		pred = append(pred, prediction)
		dev = append(dev, deviation)
	}
	return pred, dev
}
