package render

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// mapValues applies f to every value of every series, renaming each with
// name(series).
func mapValues(c *call, name func(s *Series) string, f func(v float64) float64) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	out := make([]*Series, len(list))
	for i, s := range list {
		pts := s.Points()
		vals := make([]float64, len(pts))
		for j, v := range pts {
			if isNull(v) {
				vals[j] = nan
			} else {
				vals[j] = f(v)
			}
		}
		d := s.derive(name(s), vals)
		d.Step = s.Step * int64(max(1, s.ValuesPerPoint))
		d.Stop = d.Start + int64(len(vals))*d.Step
		d.PathExpression = d.Name
		out[i] = d
	}
	return out, nil
}

func pInt(name string, req bool) param { return param{Name: name, Type: "integer", Required: req} }
func pFloat(name string, req bool) param {
	return param{Name: name, Type: "float", Required: req}
}
func pStr(name string, req bool) param { return param{Name: name, Type: "string", Required: req} }

// mapEach applies f to every point, naming each series name(series).
func mapEach(c *call, name string, f func(float64) float64) ([]*Series, error) {
	return mapValues(c, func(s *Series) string { return name + "(" + s.Name + ")" }, f)
}

func absolute(c *call) ([]*Series, error) { return mapEach(c, "absolute", math.Abs) }

func squareRoot(c *call) ([]*Series, error) { return mapEach(c, "squareRoot", math.Sqrt) }

func invert(c *call) ([]*Series, error) {
	return mapEach(c, "invert", func(v float64) float64 {
		if v == 0 {
			return nan
		}
		return 1 / v
	})
}

func exp(c *call) ([]*Series, error) { return mapEach(c, "exp", math.Exp) }

func sigmoid(c *call) ([]*Series, error) {
	return mapEach(c, "sigmoid", func(v float64) float64 {
		r := 1 / (1 + math.Exp(-v))
		if math.IsInf(r, 0) {
			return nan
		}
		return r
	})
}

func logit(c *call) ([]*Series, error) {
	return mapEach(c, "logit", func(v float64) float64 {
		if v == 1 || v/(1-v) <= 0 {
			return nan
		}
		return math.Log(v / (1 - v))
	})
}

// isNonNull: 1 where a point has a value, 0 where it is null.
func isNonNull(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		vals := make([]float64, len(s.Values))
		for j, v := range s.Points() {
			if !isNull(v) {
				vals[j] = 1
			}
		}
		d := s.derive("isNonNull("+s.Name+")", vals[:len(s.Points())])
		d.PathExpression = d.Name
		list[i] = d
	}
	return list, nil
}

// deriveSeries is derivative, nonNegativeDerivative and perSecond.
func deriveSeries(c *call, name string) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	maxV, minV := nan, nan
	if c.has(1) {
		if maxV, err = c.float(1, 0); err != nil {
			return nil, err
		}
	}
	if c.has(2) {
		if minV, err = c.float(2, 0); err != nil {
			return nil, err
		}
	}
	for i, s := range list {
		vals := make([]float64, len(s.Values))
		prev := nan
		for j, v := range s.Values {
			switch name {
			case "derivative":
				if isNull(prev) || isNull(v) {
					vals[j] = nan
				} else {
					vals[j] = v - prev
				}
				prev = v
			default:
				var d float64
				d, prev = nonNegativeDelta(v, prev, maxV, minV)
				if name == "perSecond" && !isNull(d) {
					d = math.Round(d/float64(s.Step)*1e6) / 1e6
				}
				vals[j] = d
			}
		}
		d := s.derive(name+"("+s.Name+")", vals)
		d.Tags[name] = "1"
		list[i] = d
	}
	return list, nil
}

func derivative(c *call) ([]*Series, error) { return deriveSeries(c, "derivative") }
func nonNegativeDerivative(c *call) ([]*Series, error) {
	return deriveSeries(c, "nonNegativeDerivative")
}
func perSecond(c *call) ([]*Series, error) { return deriveSeries(c, "perSecond") }

func nulls(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = nan
	}
	return v
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func nonNegativeDelta(v, prev, maxV, minV float64) (float64, float64) {
	if isNull(v) {
		return nan, nan
	}
	if !isNull(maxV) && v > maxV {
		return nan, nan
	}
	if !isNull(minV) && v < minV {
		return nan, nan
	}
	if isNull(prev) {
		return nan, v
	}
	if v >= prev {
		return v - prev, v
	}
	if !isNull(maxV) {
		m := 0.0
		if !isNull(minV) {
			m = minV
		}
		return maxV + 1 + v - prev - m, v
	}
	if !isNull(minV) {
		return v - minV, v
	}
	return nan, v
}

func consolidateByName(c *call, fn string) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for _, s := range list {
		s.ConsolidationFunc = fn
		s.rename(fmt.Sprintf("consolidateBy(%s,\"%s\")", s.Name, fn))
		s.PathExpression = s.Name
		s.Tags["consolidateBy"] = fn
	}
	return list, nil
}

// pyRound rounds half to even at a precision, as Python's round().
func pyRound(v float64, prec int) float64 {
	p := math.Pow(10, float64(prec))
	if math.IsInf(p, 0) || p == 0 {
		if prec < 0 {
			return 0
		}
		return v
	}
	return math.RoundToEven(v*p) / p
}

// pyRegexp translates a Python regular expression and replacement (with
// \1 back-references) into Go's.
func pyRegexp(pattern string) (*regexp.Regexp, error) {
	// Python's (?P<name>...) is Go's too; \d, \w, \s are the same.
	return regexp.Compile(pattern)
}

// pyReplacement turns a replacement template of Python's re.sub into Go's
// Expand template: \1 and \g<1> (or a name) become ${1}, \\ is one
// backslash, \n and the other character escapes are the character, and $
// is escaped. graphite-web passes the quoted argument to re.sub as
// written, so Grafana 12's wrapping of every target, aliasSub(x, "(^.*$)",
// "\1 A") with one backslash, names the series "<name> A"; with two
// backslashes ("\\1 A") it would be named \1 A.
func pyReplacement(repl string) string {
	var b strings.Builder
	for i := 0; i < len(repl); i++ {
		c := repl[i]
		if c == '$' {
			b.WriteString("$$")
			continue
		}
		if c != '\\' || i+1 == len(repl) {
			b.WriteByte(c)
			continue
		}
		n := repl[i+1]
		switch {
		case n == '\\':
			b.WriteByte('\\')
			i++
		case n == '0':
			// An octal escape: \0 to \077.
			j, v := i+2, 0
			for ; j < len(repl) && j < i+4 && repl[j] >= '0' && repl[j] <= '7'; j++ {
				v = v*8 + int(repl[j]-'0')
			}
			b.WriteByte(byte(v))
			i = j - 1
		case n >= '1' && n <= '9':
			j := i + 2
			if j < len(repl) && repl[j] >= '0' && repl[j] <= '9' {
				j++
			}
			b.WriteString("${" + repl[i+1:j] + "}")
			i = j - 1
		case n == 'g' && i+2 < len(repl) && repl[i+2] == '<':
			end := strings.IndexByte(repl[i+3:], '>')
			if end < 0 {
				b.WriteByte(c)
				continue
			}
			b.WriteString("${" + repl[i+3:i+3+end] + "}")
			i += 3 + end
		case strings.IndexByte("abfnrtv", n) >= 0:
			b.WriteByte("\a\b\f\n\r\t\v"[strings.IndexByte("abfnrtv", n)])
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// scale: Multiplies each point by a factor.
func scale(c *call) ([]*Series, error) {
	f, err := c.float(1, 1)
	if err != nil {
		return nil, err
	}
	return mapValues(c, func(s *Series) string { return fmt.Sprintf("scale(%s,%s)", s.Name, pyG(f)) }, func(v float64) float64 { return v * f })
}

// offset: Adds a constant to each point.
func offset(c *call) ([]*Series, error) {
	f, err := c.float(1, 0)
	if err != nil {
		return nil, err
	}
	return mapValues(c, func(s *Series) string { return fmt.Sprintf("offset(%s,%s)", s.Name, pyG(f)) }, func(v float64) float64 { return v + f })
}

// add: Adds a constant to each point.
func add(c *call) ([]*Series, error) {
	f, err := c.float(1, 0)
	if err != nil {
		return nil, err
	}
	return mapValues(c, func(s *Series) string { return fmt.Sprintf("add(%s,%d)", s.Name, int64(f)) }, func(v float64) float64 { return v + f })
}

// pow: Raises each point to a power.
func pow(c *call) ([]*Series, error) {
	f, err := c.float(1, 1)
	if err != nil {
		return nil, err
	}
	return mapValues(c, func(s *Series) string { return fmt.Sprintf("pow(%s,%s)", s.Name, pyG(f)) }, func(v float64) float64 {
		r := math.Pow(v, f)
		if math.IsInf(r, 0) || math.IsNaN(r) {
			return nan
		}
		return r
	})
}

// scaleToSeconds: Scales each point to a per-seconds rate.
func scaleToSeconds(c *call) ([]*Series, error) {
	sec, err := c.float(1, 1)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		factor := sec / float64(s.Step)
		vals := make([]float64, len(s.Values))
		for j, v := range s.Values {
			vals[j] = math.Round(v*factor*1e6) / 1e6
		}
		list[i] = s.derive(fmt.Sprintf("scaleToSeconds(%s,%d)", s.Name, int64(sec)), vals)
		list[i].Tags["scaleToSeconds"] = pyG(sec)
	}
	return list, nil
}

// round: Rounds each point to a precision.
func round(c *call) ([]*Series, error) {
	prec, err := c.int(1, 0)
	if err != nil {
		return nil, err
	}
	has := c.has(1)
	return mapValues(c, func(s *Series) string {
		if !has {
			return "round(" + s.Name + ")"
		}
		return fmt.Sprintf("round(%s,%d)", s.Name, prec)
	}, func(v float64) float64 { return pyRound(v, prec) })
}

// offsetToZero: Offsets a series so its minimum is zero.
func offsetToZero(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		m := safeMin(s.Values)
		vals := make([]float64, len(s.Values))
		for j, v := range s.Values {
			vals[j] = v - m
		}
		list[i] = s.derive("offsetToZero("+s.Name+")", vals)
		// graphite-web tags str(safeMin(series)): a float, or None.
		if isNull(m) {
			list[i].Tags["offsetToZero"] = "None"
		} else {
			list[i].Tags["offsetToZero"] = pyStr(m)
		}
	}
	return list, nil
}

// minMax: Scales a series to [0, 1].
func minMax(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		lo, hi := safeMin(s.Values), safeMax(s.Values)
		vals := make([]float64, len(s.Values))
		for j, v := range s.Values {
			switch {
			case isNull(v):
				vals[j] = nan
			case hi-lo == 0:
				vals[j] = 0
			default:
				vals[j] = (v - lo) / (hi - lo)
			}
		}
		list[i] = s.derive("minMax("+s.Name+")", vals)
	}
	return list, nil
}

// transformNull: Replaces nulls with a default value.
func transformNull(c *call) ([]*Series, error) {
	def, err := c.float(1, 0)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	var ref []*Series
	if c.has(2) {
		if ref, err = c.series(2); err != nil {
			return nil, err
		}
	}
	for i, s := range list {
		vals := make([]float64, len(s.Values))
		for j, v := range s.Values {
			vals[j] = v
			if isNull(v) {
				fill := ref == nil
				for _, r := range ref {
					if j < len(r.Values) && !isNull(r.Values[j]) {
						fill = true
					}
				}
				if fill {
					vals[j] = def
				}
			}
		}
		name := fmt.Sprintf("transformNull(%s,%s)", s.Name, pyG(def))
		if ref != nil {
			name = fmt.Sprintf("transformNull(%s,%s,referenceSeries)", s.Name, pyG(def))
		}
		list[i] = s.derive(name, vals)
		list[i].PathExpression = name
		if len(ref) > 0 {
			list[i].Tags["referenceSeries"] = "1"
		}
	}
	return list, nil
}

// keepLastValue: Fills nulls with the last value seen.
func keepLastValue(c *call) ([]*Series, error) {
	limit := math.Inf(1)
	if c.has(1) {
		f, err := c.float(1, 0)
		if err != nil {
			return nil, err
		}
		limit = f
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		vals := append([]float64(nil), s.Points()...)
		nones := 0
		last := nan
		for j, v := range vals {
			if isNull(v) {
				nones++
				continue
			}
			if nones > 0 && float64(nones) <= limit && !isNull(last) {
				for k := j - nones; k < j; k++ {
					vals[k] = last
				}
			}
			nones = 0
			last = v
		}
		if nones > 0 && float64(nones) <= limit && !isNull(last) {
			for k := len(vals) - nones; k < len(vals); k++ {
				vals[k] = last
			}
		}
		d := s.derive("keepLastValue("+s.Name+")", vals)
		d.PathExpression = d.Name
		list[i] = d
	}
	return list, nil
}

// interpolate: Fills nulls by linear interpolation.
func interpolate(c *call) ([]*Series, error) {
	limit := math.Inf(1)
	if c.has(1) {
		f, err := c.float(1, 0)
		if err != nil {
			return nil, err
		}
		limit = f
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		vals := append([]float64(nil), s.Values...)
		nones := 0
		for j := 1; j < len(vals); j++ {
			v := vals[j]
			switch {
			case isNull(v):
				nones++
			case nones == 0:
			case isNull(vals[j-nones-1]):
				nones = 0
			default:
				if float64(nones) <= limit {
					base := vals[j-nones-1]
					for k := j - nones; k < j; k++ {
						vals[k] = base + float64(k-(j-nones-1))*(v-base)/float64(nones+1)
					}
				}
				nones = 0
			}
		}
		d := s.derive("interpolate("+s.Name+")", vals)
		d.PathExpression = d.Name
		list[i] = d
	}
	return list, nil
}

// changed: 1 where the value changed, else 0.
func changed(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		vals := make([]float64, len(s.Values))
		prev := nan
		first := true
		for j, v := range s.Values {
			switch {
			case first || isNull(prev):
				prev = v
				first = false
				vals[j] = 0
			case !isNull(v) && prev != v:
				vals[j] = 1
				prev = v
			default:
				vals[j] = 0
			}
		}
		d := s.derive("changed("+s.Name+")", vals)
		d.PathExpression = d.Name
		list[i] = d
	}
	return list, nil
}

// integral: Running total of the series.
func integral(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		vals := make([]float64, len(s.Values))
		cur := 0.0
		for j, v := range s.Values {
			if isNull(v) {
				vals[j] = nan
			} else {
				cur += v
				vals[j] = cur
			}
		}
		list[i] = s.derive("integral("+s.Name+")", vals)
	}
	return list, nil
}

// integralByInterval: Running total that resets every interval.
func integralByInterval(c *call) ([]*Series, error) {
	d, raw, err := c.interval(1, "")
	if err != nil {
		return nil, err
	}
	if d < 0 {
		d = -d
	}
	if d == 0 {
		return nil, c.errf(1, "interval must not be zero")
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		vals := make([]float64, len(s.Values))
		t := s.Start
		cur := 0.0
		for j, v := range s.Values {
			if floorDiv(t-c.from, d) != floorDiv(t-c.from-s.Step, d) {
				cur = 0
			}
			if !isNull(v) {
				cur += v
			}
			vals[j] = cur
			t += s.Step
		}
		list[i] = s.derive(fmt.Sprintf("integralByInterval(%s,'%s')", s.Name, raw), vals)
	}
	return list, nil
}

// delay: Shifts values by a number of steps.
func delay(c *call) ([]*Series, error) {
	steps, err := c.int(1, 0)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		n := len(s.Values)
		var vals []float64
		if steps < 0 {
			k := min(-steps, n)
			vals = append(append([]float64{}, s.Values[k:]...), nulls(k)...)
		} else {
			k := min(steps, n)
			vals = append(nulls(k), s.Values[:max(0, n-steps)]...)
			if steps == 0 {
				vals = nil // Python's series[:-0] is empty
			}
		}
		d := s.derive(fmt.Sprintf("delay(%s,%d)", s.Name, steps), vals)
		list[i] = d
	}
	return list, nil
}

// cumulative: consolidateBy(seriesList, 'sum').
func cumulative(c *call) ([]*Series, error) {
	return consolidateByName(c, "sum")
}

// consolidateBy: Sets how maxDataPoints consolidates points.
func consolidateBy(c *call) ([]*Series, error) {
	fn, _ := c.str(1, "")
	switch fn {
	case "sum", "average", "avg", "avg_zero", "min", "max", "first", "last":
	default:
		return nil, c.errf(1, "invalid consolidation function %q (sum, average, avg_zero, min, max, first or last)", fn)
	}
	return consolidateByName(c, fn)
}

// setXFilesFactor: Sets the series' xFilesFactor.
func setXFilesFactor(c *call) ([]*Series, error) {
	x, err := c.float(1, 0)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	for _, s := range list {
		s.XFilesFactor = x
		s.Tags["xFilesFactor"] = pyG(x)
	}
	return list, err
}

// stdev: Moving standard deviation.
func stdev(c *call) ([]*Series, error) {
	points, err := c.int(1, 1)
	if err != nil {
		return nil, err
	}
	tol, err := c.float(2, 0.1)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for i, s := range list {
		vals := make([]float64, len(s.Values))
		valid := 0
		sum, sq := 0.0, 0.0
		for j, v := range s.Values {
			boot := j < points
			dropped := nan
			if !boot {
				dropped = s.Values[j-points]
			}
			if !boot && !isNull(dropped) {
				valid--
				sum -= dropped
				sq -= dropped * dropped
			}
			if !isNull(v) {
				valid++
				sum += v
				sq += v * v
			}
			if valid > 0 && float64(valid)/float64(points) >= tol {
				x := float64(valid)*sq - sum*sum
				if x < 0 {
					vals[j] = nan
				} else {
					vals[j] = math.Sqrt(x) / float64(valid)
				}
			} else {
				vals[j] = nan
			}
		}
		list[i] = s.derive(fmt.Sprintf("stdev(%s,%d)", s.Name, points), vals)
	}
	return list, nil
}

// alias: Renames series.
func alias(c *call) ([]*Series, error) {
	n, err := c.str(1, "")
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	for _, s := range list {
		s.Name = n
	}
	return list, err
}

// aliasSub: Renames series with a regular expression; \\1 refers to a group.
func aliasSub(c *call) ([]*Series, error) {
	search, _ := c.str(1, "")
	repl, _ := c.str(2, "")
	re, err := pyRegexp(search)
	if err != nil {
		return nil, c.errf(1, "bad regular expression: %v", err)
	}
	list, err := c.series(0)
	r := pyReplacement(repl)
	for _, s := range list {
		s.Name = re.ReplaceAllString(s.Name, r)
	}
	return list, err
}

// aliasByNode: Renames series to some of their nodes.
func aliasByNode(c *call) ([]*Series, error) {
	list, err := c.series(0)
	nodes := c.multi(1)
	for _, s := range list {
		s.Name = aggKey(s, nodes)
	}
	return list, err
}

// aliasByTags: Renames series to some of their tags or nodes.
func aliasByTags(c *call) ([]*Series, error) {
	list, err := c.series(0)
	nodes := c.multi(1)
	for _, s := range list {
		path := s.Tags["name"]
		var parts []string
		for _, n := range nodes {
			parts = append(parts, nodeOrTag(s, n, path))
		}
		s.Name = strings.Join(parts, ".")
	}
	return list, err
}

// aliasByMetric: Renames series to their last node.
func aliasByMetric(c *call) ([]*Series, error) {
	list, err := c.series(0)
	for _, s := range list {
		base, _, _ := strings.Cut(s.Name, ";")
		parts := strings.Split(base, ".")
		s.Name = parts[len(parts)-1]
	}
	return list, err
}

// aliasQuery: Renames series with a value from another query.
func aliasQuery(c *call) ([]*Series, error) {
	search, _ := c.str(1, "")
	repl, _ := c.str(2, "")
	newName, _ := c.str(3, "")
	re, err := pyRegexp(search)
	if err != nil {
		return nil, c.errf(1, "bad regular expression: %v", err)
	}
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	for _, s := range list {
		q := re.ReplaceAllString(s.Name, pyReplacement(repl))
		r, err := c.ev.evalString(q, c.from, c.until)
		if err != nil {
			return nil, err
		}
		if len(r) == 0 {
			return nil, c.errf(1, "no series found with query: %s", q)
		}
		last := safeLast(r[0].Values)
		if isNull(last) {
			return nil, c.errf(1, "cannot get the last value of series %s", r[0].Name)
		}
		s.Name = pyPercent(newName, last)
	}
	return list, nil
}

// legendValue: Appends values such as avg or max to the name.
func legendValue(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	var types []string
	for _, e := range c.multi(1) {
		types = append(types, e.Str)
	}
	for _, s := range list {
		for _, t := range types {
			if t == "si" || t == "binary" {
				continue
			}
			f, ok := aggFunc(t)
			if !ok {
				s.Name = fmt.Sprintf("%s (%s: (?))", s.Name, t)
				continue
			}
			s.Name = fmt.Sprintf("%s (%s: %s)", s.Name, t, formatLegend(f(s.Values)))
		}
	}
	return list, nil
}

// substr: Renames series to a slice of their nodes.
func substr(c *call) ([]*Series, error) {
	start, err := c.int(1, 0)
	if err != nil {
		return nil, err
	}
	stop, err := c.int(2, 0)
	if err != nil {
		return nil, err
	}
	list, err := c.series(0)
	for _, s := range list {
		left := strings.LastIndexByte(s.Name, '(') + 1
		right := strings.IndexByte(s.Name, ')')
		if right < 0 {
			right = len(s.Name)
		}
		if right < left {
			right = left
		}
		parts := strings.Split(s.Name[left:right], ".")
		a, b := pyIndex(start, len(parts)), len(parts)
		if stop != 0 {
			b = pyIndex(stop, len(parts))
		}
		if b < a {
			b = a
		}
		n := strings.Join(parts[a:b], ".")
		if i := strings.IndexByte(n, ','); i >= 0 {
			n = n[:i]
		}
		s.Name = n
	}
	return list, err
}

func pyIndex(i, n int) int {
	if i < 0 {
		i += n
	}
	return max(0, min(i, n))
}

func formatLegend(v float64) string {
	if isNull(v) {
		return "None"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return fmt.Sprintf("%.2f", v)
}

// pyPercent formats one value into a Python %-format such as "%.f MHz".
func pyPercent(format string, v float64) string {
	re := regexp.MustCompile(`%[-+ 0#]*\d*(\.\d*)?[diouxXeEfFgGs%]`)
	done := false
	return re.ReplaceAllStringFunc(format, func(m string) string {
		if m == "%%" {
			return "%"
		}
		if done {
			return m
		}
		done = true
		verb := m[len(m)-1]
		spec := m[:len(m)-1]
		if strings.HasSuffix(spec, ".") {
			spec += "0"
		}
		switch verb {
		case 'd', 'i', 'u':
			return fmt.Sprintf(spec+"d", int64(v))
		case 's':
			return fmt.Sprintf(spec+"s", pyRepr(v, false))
		}
		return fmt.Sprintf(spec+string(verb), v)
	})
}
