package metrics

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Archive is one retention level: points every Step seconds, kept for
// Retention seconds.
type Archive struct {
	Step      int64
	Retention int64
}

// Schema maps series names to archives and an aggregation method, as
// carbon's storage-schemas.conf and storage-aggregation.conf do.
type Schema struct {
	Name    string
	Pattern *regexp.Regexp
	// AggPattern, when set, must match too: the storage-aggregation.conf
	// rule this schema's Aggregation came from (see CombineSchemas).
	AggPattern *regexp.Regexp
	// Archives, finest first; each step divides the next.
	Archives []Archive
	// Aggregation rolls a finer archive into a coarser one: average, sum,
	// min, max, last.
	Aggregation  string
	XFilesFactor float64
}

// DefaultSchemas: counters (*.count, *.sum) roll up by sum, everything else
// by average, at 10s:1d,1m:30d,1h:5y.
func DefaultSchemas() []Schema {
	ret, _ := ParseRetentions("10s:1d,1m:30d,1h:5y")
	return []Schema{
		{Name: "counters", Pattern: regexp.MustCompile(`\.(count|sum)(;|$)`), Archives: ret, Aggregation: "sum"},
		{Name: "default", Pattern: regexp.MustCompile(`.*`), Archives: ret, Aggregation: "average"},
	}
}

// ParseRetentions parses "10s:1d,1m:30d,1h:5y".
func ParseRetentions(s string) ([]Archive, error) {
	var out []Archive
	for _, part := range strings.Split(s, ",") {
		step, keep, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("retention %q: want step:duration such as 10s:1d", part)
		}
		st, err := parseUnit(step)
		if err != nil {
			return nil, fmt.Errorf("retention %q: %w", part, err)
		}
		kp, err := parseUnit(keep)
		if err != nil {
			return nil, fmt.Errorf("retention %q: %w", part, err)
		}
		if st <= 0 || kp < st {
			return nil, fmt.Errorf("retention %q: the step must be positive and at most the duration", part)
		}
		if len(out) > 0 && st%out[len(out)-1].Step != 0 {
			return nil, fmt.Errorf("retention %q: step %ds must be a multiple of the previous step %ds", part, st, out[len(out)-1].Step)
		}
		out = append(out, Archive{Step: st, Retention: kp})
	}
	return out, nil
}

func parseUnit(s string) (int64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number with a unit", s)
	}
	mult := map[string]int64{"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}[s[i:]]
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit in %q (s, m, h, d, w, y)", s)
	}
	return n * mult, nil
}

func schemaFor(schemas []Schema, name string) *Schema {
	for i := range schemas {
		if schemas[i].Pattern.MatchString(name) && (schemas[i].AggPattern == nil || schemas[i].AggPattern.MatchString(name)) {
			return &schemas[i]
		}
	}
	return &schemas[len(schemas)-1]
}

// chunkSlots is how many slots one stored chunk of an archive holds: about
// 360, and a whole number of the next archive's steps so that a coarser slot
// is always computed from one finer chunk.
func chunkSlots(archives []Archive, i int) int64 {
	n := int64(360)
	if i+1 < len(archives) {
		ratio := archives[i+1].Step / archives[i].Step
		if r := n % ratio; r != 0 {
			n += ratio - r
		}
	}
	return n
}
