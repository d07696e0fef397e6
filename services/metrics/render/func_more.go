package render

import (
	"fmt"
	"math"
	"math/rand"
	"sort"
	"strconv"
	"strings"
)

// log is the logarithm in base (10 by default); null at or below 0.
func log(c *call) ([]*Series, error) {
	base, err := c.float(1, 10)
	if err != nil {
		return nil, err
	}
	b := c.argStr(1, 10) // str(base), as graphite-web writes name and tag
	out, err := mapValues(c, func(s *Series) string { return "log(" + s.Name + ", " + b + ")" }, func(v float64) float64 {
		if v <= 0 {
			return nan
		}
		return math.Log(v) / math.Log(base)
	})
	for _, s := range out {
		s.Tags["log"] = b
	}
	return out, err
}

// linearRegression fits a line by least squares to each series over
// [startSourceAt, endSourceAt) (the request's range by default) and
// draws it over the request's range.
func linearRegression(c *call) ([]*Series, error) {
	from, until := c.from, c.until
	var err error
	if c.has(1) {
		if from, err = c.date(1, ""); err != nil {
			return nil, err
		}
	}
	if c.has(2) {
		if until, err = c.date(2, ""); err != nil {
			return nil, err
		}
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	source, err := c.seriesOf(c.args[0], from, until)
	if err != nil {
		return nil, err
	}
	bySrc := map[string]*Series{}
	for _, s := range source {
		bySrc[s.Name] = s
	}
	var out []*Series
	for _, s := range list {
		src := bySrc[s.Name]
		if src == nil {
			continue
		}
		factor, offset, ok := linearFit(src, s.Start)
		if !ok {
			continue
		}
		vals := make([]float64, len(s.Values))
		for i := range vals {
			vals[i] = offset + float64(int64(i)*s.Step)*factor
		}
		d := s.derive(fmt.Sprintf("linearRegression(%s, %d, %d)", s.Name, from, until), vals)
		d.Tags["linearRegressions"] = fmt.Sprintf("%d, %d", from, until)
		d.PathExpression = d.Name
		out = append(out, d)
	}
	return out, nil
}

// linearFit is the least-squares line through a series' non-null points:
// value = factor*(t-x0) + offset (x0 keeps the sums small).
func linearFit(s *Series, x0 int64) (factor, offset float64, ok bool) {
	var n, sx, sy, sxx, sxy float64
	for i, v := range s.Values {
		if isNull(v) {
			continue
		}
		x := float64(s.Start + int64(i)*s.Step - x0)
		n++
		sx += x
		sy += v
		sxx += x * x
		sxy += x * v
	}
	den := n*sxx - sx*sx
	if n < 2 || den == 0 {
		return 0, 0, false
	}
	factor = (n*sxy - sx*sy) / den
	offset = (sy - factor*sx) / n
	return factor, offset, true
}

// removeBetweenPercentile keeps the series with a point outside the nth
// and (100-n)th percentiles of all series at that time.
func removeBetweenPercentile(c *call) ([]*Series, error) {
	n, err := c.float(1, 0)
	if err != nil {
		return nil, err
	}
	if n < 50 {
		n = 100 - n
	}
	list, err := c.series(0)
	if err != nil || len(list) == 0 {
		return list, err
	}
	vals, _, _, _, ok := normalize(list)
	if !ok {
		return nil, nil
	}
	rows := rowsOf(vals)
	lo, hi := make([]float64, len(rows)), make([]float64, len(rows))
	for i, r := range rows {
		lo[i] = getPercentile(r, 100-n, false)
		hi[i] = getPercentile(r, n, false)
	}
	var out []*Series
	for k, s := range list {
		for i, v := range vals[k] {
			if !isNull(v) && i < len(lo) && !(lo[i] < v && v < hi[i]) {
				out = append(out, s)
				break
			}
		}
	}
	return out, nil
}

// mostDeviant is the n series with the largest standard deviation.
func mostDeviant(c *call) ([]*Series, error) {
	n, err := c.int(1, 0)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	type dev struct {
		sigma float64
		s     *Series
	}
	var devs []dev
	for _, s := range list {
		pts := nonNull(s.Points())
		if len(pts) == 0 {
			continue
		}
		mean := sum(pts) / float64(len(pts))
		sq := 0.0
		for _, v := range pts {
			sq += (v - mean) * (v - mean)
		}
		devs = append(devs, dev{sq / float64(len(pts)), s})
	}
	sort.SliceStable(devs, func(i, j int) bool { return devs[i].sigma > devs[j].sigma })
	var out []*Series
	for _, d := range devs[:max(0, min(n, len(devs)))] {
		out = append(out, d.s)
	}
	return out, nil
}

// useSeriesAbove fetches, for each series whose maximum is above value,
// the series named by replacing search with replace in its name.
func useSeriesAbove(c *call) ([]*Series, error) {
	value, err := c.float(1, 0)
	if err != nil {
		return nil, err
	}
	search, _ := c.str(2, "")
	repl, _ := c.str(3, "")
	re, err := pyRegexp(search)
	if err != nil {
		return nil, c.errf(2, "bad regular expression: %v", err)
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	r := pyReplacement(repl)
	var out []*Series
	for _, s := range list {
		if m := safeMax(s.Points()); isNull(m) || m <= value {
			continue
		}
		got, err := c.ev.evalString(re.ReplaceAllString(s.Name, r), c.from, c.until)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// mapSeries groups series by the given nodes, for reduceSeries. Its
// groups travel as one list, each series marked with its group's key, so
// rendered alone it answers the series in group order (graphite-web
// answers 500: a list of lists cannot be rendered).
func mapSeries(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	nodes := c.multi(1)
	var keys []string
	groups := map[string][]*Series{}
	for _, s := range list {
		k := aggKey(s, nodes)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], s)
	}
	var out []*Series
	for _, k := range keys {
		for _, s := range groups[k] {
			s.mapKey = k
			out = append(out, s)
		}
	}
	return out, nil
}

// reduceSeries applies reduceFunction to each mapSeries group: its
// arguments are the group's series whose node reduceNode equals each
// matcher, in matcher order; the result is named after the first match
// with that node replaced by "reduce.<function>". Groups without a series
// for every matcher are left out.
func reduceSeries(c *call) ([]*Series, error) {
	fn, _ := c.str(1, "")
	node, err := c.int(2, 0)
	if err != nil {
		return nil, err
	}
	var matchers []string
	for _, m := range c.multi(3) {
		if m.Kind == KindString {
			matchers = append(matchers, m.Str)
		} else {
			matchers = append(matchers, m.Raw)
		}
	}
	if funcByName[fn] == nil {
		return nil, c.errf(1, "unknown reduceFunction %q", fn)
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	var keys []string
	groups := map[string][]*Series{}
	for _, s := range list {
		if _, ok := groups[s.mapKey]; !ok {
			keys = append(keys, s.mapKey)
		}
		groups[s.mapKey] = append(groups[s.mapKey], s)
	}
	var out []*Series
	for _, k := range keys {
		args := make([][]*Series, len(matchers))
		var first *Series
		for _, s := range groups[k] {
			parts := strings.Split(s.Name, ".")
			if node < 0 || node >= len(parts) {
				continue
			}
			for i, m := range matchers {
				if parts[node] == m && args[i] == nil {
					args[i] = []*Series{s}
					if first == nil || i == 0 {
						first = s
					}
				}
			}
		}
		complete := first != nil
		for _, a := range args {
			complete = complete && a != nil
		}
		if !complete {
			continue
		}
		r, err := callLists(c, fn, args)
		if err != nil {
			return nil, err
		}
		parts := strings.Split(args[0][0].Name, ".")
		parts[node] = "reduce." + fn
		name := strings.Join(parts, ".")
		for _, s := range r {
			s.rename(name)
			s.mapKey = ""
			out = append(out, s)
		}
	}
	return out, nil
}

// callLists runs the function fn on already-evaluated series lists, one
// per positional argument.
func callLists(c *call, fn string, lists [][]*Series) ([]*Series, error) {
	e := &Expr{Kind: KindCall, Name: fn, Pos: c.e.Pos, Raw: fn}
	for i := range lists {
		e.Args = append(e.Args, &Expr{Kind: KindPath, Name: "\x00arg" + strconv.Itoa(i), Pos: c.e.Pos})
	}
	saved := c.ev.pinnedArgs
	c.ev.pinnedArgs = lists
	defer func() { c.ev.pinnedArgs = saved }()
	return c.ev.eval(e, c.from, c.until)
}

// powSeries raises the first series to the power of the second, and so
// on, point by point; null where any is null.
func powSeries(c *call) ([]*Series, error) {
	list, err := c.allSeries(0)
	if err != nil || len(list) == 0 {
		return nil, err
	}
	vals, start, _, step, ok := normalize(list)
	if !ok {
		return nil, nil
	}
	rows := rowsOf(vals)
	out := make([]float64, len(rows))
	for i, r := range rows {
		v := nan
		for j, x := range r {
			if isNull(x) {
				v = nan
				break
			}
			if j == 0 {
				v = x
				continue
			}
			v = math.Pow(v, x)
		}
		if math.IsInf(v, 0) {
			v = nan
		}
		out[i] = v
	}
	name := "powSeries(" + formatPathExpressions(list) + ")"
	return []*Series{newDerived(name, start, step, out)}, nil
}

// seriesListsBy aggregates two lists pairwise with fn (sumSeriesLists...).
func seriesListsBy(c *call, fn string, xff float64) ([]*Series, error) {
	a, err := c.series(0)
	if err != nil {
		return nil, err
	}
	b, err := c.series(1)
	if err != nil {
		return nil, err
	}
	if len(a) != len(b) {
		return nil, c.errf(1, "seriesListFirstPos and seriesListSecondPos argument must have equal length")
	}
	var out []*Series
	for i := range a {
		r, err := aggregateList(c, []*Series{a[i], b[i]}, fn, xff)
		if err != nil {
			return nil, err
		}
		out = append(out, r...)
	}
	return out, nil
}

func sumSeriesLists(c *call) ([]*Series, error)      { return seriesListsBy(c, "sum", 0) }
func diffSeriesLists(c *call) ([]*Series, error)     { return seriesListsBy(c, "diff", 0) }
func multiplySeriesLists(c *call) ([]*Series, error) { return seriesListsBy(c, "multiply", 0) }

func aggregateSeriesLists(c *call) ([]*Series, error) {
	fn, _ := c.str(2, "")
	xff, err := c.float(3, 0)
	if err != nil {
		return nil, err
	}
	if _, ok := aggFunc(fn); !ok {
		return nil, c.errf(2, "unsupported aggregation function: %s", fn)
	}
	return seriesListsBy(c, fn, xff)
}

// identity and time are timeFunction: the timestamp as the value.
func identity(c *call) ([]*Series, error) { return timeFunction(c) }

func timeFunc(c *call) ([]*Series, error) { return timeFunction(c) }

func sin(c *call) ([]*Series, error) { return sinFunction(c) }

// randomWalk starts at 0 and adds a uniform step in [-0.5, 0.5) at each
// point.
func randomWalk(c *call) ([]*Series, error) {
	name, _ := c.str(0, "")
	step, err := c.int(1, 60)
	if err != nil || step <= 0 {
		return nil, c.errf(1, "step must be a positive integer")
	}
	var vals []float64
	v := 0.0
	for t := c.from; t < c.until; t += int64(step) {
		vals = append(vals, v)
		v += rand.Float64() - 0.5
	}
	return []*Series{newDerived(name, c.from, int64(step), vals)}, nil
}

// EventCounter is a Fetcher that can also read annotations, for events().
type EventCounter interface {
	// EventTimes returns the times of the events with all the tags (every
	// event with none given) in [from, until).
	EventTimes(tags []string, from, until int64) ([]int64, error)
}

// events counts the events with the given tags in one-second steps, null
// where there is none, as graphite-web does.
func events(c *call) ([]*Series, error) {
	var tags []string
	for _, e := range c.multi(0) {
		if e.Kind == KindString {
			tags = append(tags, e.Str)
		} else {
			tags = append(tags, e.Raw)
		}
	}
	name := `events("` + strings.Join(tags, `", "`) + `")`
	if len(tags) == 1 && tags[0] == "*" {
		tags = nil // every event
	}
	// One point a second from from, until excluded, as graphite-web: an
	// event at until itself fails there (its index is past the list), and
	// is left out here.
	n := c.until - c.from
	if n <= 0 {
		return nil, nil
	}
	if err := c.ev.accountCounts(1, int(n)); err != nil {
		return nil, err
	}
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = nan
	}
	if ec, ok := c.ev.req.Fetch.(EventCounter); ok {
		times, err := ec.EventTimes(tags, c.from, c.until)
		if err != nil {
			return nil, err
		}
		for _, t := range times {
			if i := t - c.from; i >= 0 && i < n {
				if isNull(vals[i]) {
					vals[i] = 0
				}
				vals[i]++
			}
		}
	}
	return []*Series{newDerived(name, c.from, 1, vals)}, nil
}

// holtWintersAberration is how far each point lies outside the confidence
// bands (0 inside them, and where the point is null).
func holtWintersAberration(c *call) ([]*Series, error) {
	bands, err := holtWinters(c, true)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	var out []*Series
	for i, s := range list {
		if 2*i+1 >= len(bands) {
			break
		}
		lo, up := bands[2*i], bands[2*i+1]
		at := func(b *Series, t int64) float64 {
			if b.Step <= 0 || t < b.Start {
				return nan
			}
			if k := (t - b.Start) / b.Step; k < int64(len(b.Values)) {
				return b.Values[k]
			}
			return nan
		}
		vals := make([]float64, len(s.Values))
		for k, v := range s.Values {
			t := s.Start + int64(k)*s.Step
			u, l := at(up, t), at(lo, t)
			switch {
			case isNull(v):
			case !isNull(u) && v > u:
				vals[k] = v - u
			case !isNull(l) && v < l:
				vals[k] = v - l
			}
		}
		d := s.derive("holtWintersAberration("+s.Name+")", vals)
		d.PathExpression = d.Name
		out = append(out, d)
	}
	return out, nil
}

// holtWintersConfidenceArea is areaBetween of the confidence bands of one
// series, renamed holtWintersConfidenceArea(...).
func holtWintersConfidenceArea(c *call) ([]*Series, error) {
	bands, err := holtWinters(c, true)
	if err != nil || len(bands) == 0 {
		return nil, err
	}
	out, err := areaBetweenOf(c, bands)
	for _, s := range out {
		s.rename(strings.Replace(s.Name, "areaBetween", "holtWintersConfidenceArea", 1))
		delete(s.Tags, "areaBetween")
		s.Tags["holtWintersConfidenceArea"] = "1"
	}
	return out, err
}

// smartSummarize buckets each series by interval from its first point
// (from the request's from aligned to alignTo's unit when given).
func smartSummarize(c *call) ([]*Series, error) {
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
	from := c.from
	if c.has(3) && c.args[3].Kind == KindString && c.args[3].Str != "" {
		unit, err := ParseInterval("1" + strings.TrimPrefix(c.args[3].Str, "1"))
		if err != nil {
			return nil, c.errf(3, "%v", err)
		}
		from -= from % unit
	}
	list, err := c.refetch(from)
	if err != nil {
		return nil, err
	}
	agg, _ := aggFunc(fn)
	var out []*Series
	for _, s := range list {
		if err := c.tick(len(s.Values)); err != nil {
			return nil, err
		}
		pts := s.Points()
		step := s.Step * int64(max(1, s.ValuesPerPoint))
		if step <= 0 {
			continue
		}
		var vals []float64
		var bucket []float64
		end := s.Start + interval
		for i, v := range pts {
			t := s.Start + int64(i)*step
			for t >= end {
				vals = append(vals, agg(nonNull(bucket)))
				bucket = bucket[:0]
				end += interval
			}
			bucket = append(bucket, v)
		}
		vals = append(vals, agg(nonNull(bucket)))
		for i, v := range vals {
			if math.IsInf(v, 0) {
				vals[i] = nan
			}
		}
		d := s.derive(fmt.Sprintf("smartSummarize(%s, \"%s\", \"%s\")", s.Name, text, fn), vals)
		d.Step = interval
		d.Stop = d.Start + int64(len(vals))*interval
		d.ValuesPerPoint = 1
		d.Tags["smartSummarize"] = text
		d.Tags["smartSummarizeFunction"] = fn
		d.PathExpression = d.Name
		out = append(out, d)
	}
	return out, nil
}

// timeStack is timeShift by timeShiftUnit times each of
// timeShiftStart..timeShiftEnd-1.
func timeStack(c *call) ([]*Series, error) {
	text := "1d"
	if c.has(1) {
		text, _ = c.str(1, "1d")
	}
	if !strings.HasPrefix(text, "+") && !strings.HasPrefix(text, "-") {
		text = "-" + text
	}
	unit, err := ParseInterval(text)
	if err != nil {
		return nil, c.errf(1, "%v", err)
	}
	start, err := c.int(2, 0)
	if err != nil {
		return nil, err
	}
	end, err := c.int(3, 7)
	if err != nil {
		return nil, err
	}
	if end-start > 1000 {
		return nil, c.errf(3, "timeStack of more than 1000 shifts")
	}
	var out []*Series
	for i := start; i < end; i++ {
		d := unit * int64(i)
		list, err := c.seriesOf(c.args[0], c.from+d, c.until+d)
		if err != nil {
			return nil, err
		}
		for _, s := range list {
			n := s.derive(fmt.Sprintf("timeShift(%s, %s, %d)", s.Name, text, i), s.Values)
			n.Start -= d
			n.Stop -= d
			n.Tags["timeShiftUnit"] = text
			n.Tags["timeShift"] = strconv.Itoa(i)
			n.PathExpression = n.Name
			out = append(out, n)
		}
	}
	return out, nil
}

// timeSlice nulls the points outside [startSliceAt, endSliceAt]. As
// graphite-web 1.1.8, a point is kept when the time one step before it is
// inside.
func timeSlice(c *call) ([]*Series, error) {
	start, err := c.date(1, "")
	if err != nil {
		return nil, err
	}
	end, err := c.date(2, "now")
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		pts := s.Points()
		step := s.Step * int64(max(1, s.ValuesPerPoint))
		vals := make([]float64, len(pts))
		for k, v := range pts {
			t := s.Start + int64(k)*step - step
			if t < start || t > end {
				v = nan
			}
			vals[k] = v
		}
		d := s.derive(fmt.Sprintf("timeSlice(%s, %d, %d)", s.Name, start, end), vals)
		d.Step = step
		d.Stop = d.Start + int64(len(vals))*step
		d.Tags["timeSliceStart"] = strconv.FormatInt(start, 10)
		d.Tags["timeSliceEnd"] = strconv.FormatInt(end, 10)
		// graphite-web slices in place: the path expression stays.
		list[i] = d
	}
	return list, nil
}
