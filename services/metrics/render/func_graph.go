package render

import (
	"fmt"
	"math"
	"strings"
)

// Graph functions: graphite-web only sets render options on these, so in
// json they pass the series through; some rename them and add a tag, as
// graphite-web does (dashed, secondYAxis, stacked, drawAsInfinite,
// areaBetween).

func passThrough(c *call) ([]*Series, error) {
	if _, err := c.float(1, 0); err != nil && c.def.Params[1].Type == "float" {
		return nil, err
	}
	return c.series(0)
}

func color(c *call) ([]*Series, error)     { return passThrough(c) }
func alpha(c *call) ([]*Series, error)     { return passThrough(c) }
func lineWidth(c *call) ([]*Series, error) { return passThrough(c) }

// renameTagged renames every series of argument 0 name(series) and sets
// tag to value, in place as graphite-web does (the path expression stays).
func renameTagged(c *call, name func(s *Series) string, tag, value string) ([]*Series, error) {
	list, err := c.series(0)
	for _, s := range list {
		s.Tags[tag] = value
		s.rename(name(s))
	}
	return list, err
}

func dashed(c *call) ([]*Series, error) {
	n, err := c.float(1, 5)
	if err != nil {
		return nil, err
	}
	v := pyG(n)
	return renameTagged(c, func(s *Series) string { return "dashed(" + s.Name + ", " + v + ")" }, "dashed", v)
}

func secondYAxis(c *call) ([]*Series, error) {
	return renameTagged(c, func(s *Series) string { return "secondYAxis(" + s.Name + ")" }, "secondYAxis", "1")
}

func drawAsInfinite(c *call) ([]*Series, error) {
	return renameTagged(c, func(s *Series) string { return "drawAsInfinite(" + s.Name + ")" }, "drawAsInfinite", "1")
}

// stacked renames only with the default stack; a named stack is a render
// option alone.
func stacked(c *call) ([]*Series, error) {
	stack, err := c.str(1, "__DEFAULT__")
	if err != nil {
		return nil, err
	}
	if stack != "__DEFAULT__" {
		return c.series(0)
	}
	return renameTagged(c, func(s *Series) string { return "stacked(" + s.Name + ")" }, "stacked", stack)
}

// areaBetween takes exactly two series. graphite-web 1.1.8 names both
// after the second (its loop renames with the last series' name), and so
// does this.
func areaBetween(c *call) ([]*Series, error) {
	list, err := c.series(0)
	if err != nil {
		return nil, err
	}
	return areaBetweenOf(c, list)
}

func areaBetweenOf(c *call, list []*Series) ([]*Series, error) {
	if len(list) != 2 {
		return nil, c.errf(0, "areaBetween series argument must reference *exactly* 2 series, got %d", len(list))
	}
	name := "areaBetween(" + list[1].Name + ")"
	for _, s := range list {
		s.Tags["areaBetween"] = "1"
		s.rename(name)
	}
	return list, nil
}

// threshold is constantLine(value), named label when there is one (the
// name tag stays the value).
func threshold(c *call) ([]*Series, error) {
	v, err := c.float(0, 0)
	if err != nil {
		return nil, err
	}
	s := constantSeries(c.from, c.until, v, pyRepr(v, false))
	if c.has(1) {
		label, _ := c.str(1, "")
		s.Name = label
	}
	return []*Series{s}, nil
}

// verticalLine is one point of 1 at ts, named label ("None" without).
func verticalLine(c *call) ([]*Series, error) {
	ts, err := c.date(0, "")
	if err != nil {
		return nil, err
	}
	if ts < c.from {
		return nil, c.errf(0, "verticalLine(): timestamp %d exists before start of range", ts)
	}
	if ts > c.until {
		return nil, c.errf(0, "verticalLine(): timestamp %d exists after end of range", ts)
	}
	label, _ := c.str(1, "None")
	s := newDerived(label, ts, 1, []float64{1})
	return []*Series{s}, nil
}

// cactiStyle appends Current, Max and Min to each name, in columns as
// graphite-web pads them; system is "si" or "binary" prefixes.
func cactiStyle(c *call) ([]*Series, error) {
	system, _ := c.str(1, "")
	units, _ := c.str(2, "")
	if system != "" && system != "si" && system != "binary" {
		return nil, c.errf(1, "system must be si or binary, got %q", system)
	}
	list, err := c.series(0)
	if err != nil || len(list) == 0 {
		return list, err
	}
	format := func(v float64) string {
		if isNull(v) {
			return "NaN"
		}
		if system == "" {
			if units != "" {
				return fmt.Sprintf("%.2f %s", v, units)
			}
			return fmt.Sprintf("%.2f", v)
		}
		v, prefix := unitPrefix(v, system)
		return fmt.Sprintf("%.2f %s%s", v, prefix, units)
	}
	cols := make([][3]string, len(list))
	var width [3]int
	nameLen := 0
	for i, s := range list {
		pts := s.Points()
		cols[i] = [3]string{format(safeLast(pts)), format(safeMax(pts)), format(safeMin(pts))}
		for k := range width {
			width[k] = max(width[k], len(cols[i][k]))
		}
		nameLen = max(nameLen, len(s.Name))
	}
	pad := func(s string, n int) string { return s + strings.Repeat(" ", max(0, n-len(s))) }
	for i, s := range list {
		s.rename(pad(s.Name, nameLen) + " Current:" + pad(cols[i][0], width[0]+4) + "Max:" + pad(cols[i][1], width[1]+4) + "Min:" + pad(cols[i][2], width[2]+4))
	}
	return list, nil
}

// unitPrefix scales v to the largest si (1000) or binary (1024) prefix it
// reaches.
func unitPrefix(v float64, system string) (float64, string) {
	base, prefixes := 1000.0, []string{"k", "M", "G", "T", "P", "E", "Z", "Y"}
	if system == "binary" {
		base, prefixes = 1024, []string{"Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"}
	}
	for i := len(prefixes) - 1; i >= 0; i-- {
		size := math.Pow(base, float64(i+1))
		if math.Abs(v) >= size {
			return v / size, prefixes[i]
		}
	}
	return v, ""
}
