// Package carbon decodes the Carbon ingest protocols: plaintext lines
// ("path value timestamp\n", on TCP and UDP 2003) and pickle frames (a
// 4-byte big-endian length, then a pickled list of (path, (ts, value))
// tuples, on TCP 2004). It also normalises tagged names ("name;k=v") the way
// carbon does. Nothing here allocates per byte or panics on bad input.
package carbon

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Point is one decoded datapoint. Timestamp -1 on the wire becomes Now in
// ParseLine's caller's clock.
type Point struct {
	Name      string
	Value     float64
	Timestamp int64
}

// LineError says why a plaintext line was refused.
type LineError struct {
	Line   string
	Reason string
}

func (e *LineError) Error() string {
	return fmt.Sprintf("carbon: bad line %q: %s", e.Line, e.Reason)
}

// ErrEmpty is returned for a blank line, which callers skip silently.
var ErrEmpty = errors.New("carbon: empty line")

// ParseLine parses one plaintext line, "<path> <value> <timestamp>" with
// surrounding spaces, \r and \n trimmed, as go-carbon does: the name runs to
// the first space, the value to the next, the timestamp is the rest (so a
// fourth field is an error). Value and timestamp are floats; NaN values are
// refused; the timestamp is truncated to seconds; -1 means now. Tagged names
// are normalised (tags sorted, last value wins).
func ParseLine(line []byte, now int64) (Point, error) {
	line = bytes.Trim(line, " \r\n")
	if len(line) == 0 {
		return Point{}, ErrEmpty
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return Point{}, &LineError{string(line), "want \"<path> <value> <timestamp>\""}
	}
	name := line[:sp]
	rest := bytes.TrimLeft(line[sp+1:], " ")
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return Point{}, &LineError{string(line), "missing timestamp"}
	}
	vs, ts := rest[:sp2], bytes.TrimLeft(rest[sp2+1:], " ")
	v, err := strconv.ParseFloat(string(vs), 64)
	if err != nil || math.IsNaN(v) {
		return Point{}, &LineError{string(line), fmt.Sprintf("value %q is not a number", vs)}
	}
	t, err := strconv.ParseFloat(string(ts), 64)
	if err != nil || math.IsNaN(t) || math.IsInf(t, 0) || t > 1<<40 || t < -1<<40 {
		return Point{}, &LineError{string(line), fmt.Sprintf("timestamp %q is not a unix time", ts)}
	}
	p := Point{Value: v, Timestamp: int64(t)}
	if p.Timestamp == -1 {
		p.Timestamp = now
	}
	p.Name, err = NormalizeName(string(name))
	if err != nil {
		return Point{}, &LineError{string(line), err.Error()}
	}
	return p, nil
}

// NormalizeName checks a series name and, for a tagged name
// ("disk.used;rack=a1;dc=x"), sorts its tags by key with the last value of a
// repeated key winning, as carbon's util.py does. Empty path components
// ("a..b") are refused.
func NormalizeName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty metric name")
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 || name[i] == 0x7f {
			return "", fmt.Errorf("control character at byte %d of the name", i)
		}
	}
	semi := strings.IndexByte(name, ';')
	path := name
	if semi >= 0 {
		path = name[:semi]
	}
	if path == "" || path[0] == '.' || path[len(path)-1] == '.' || strings.Contains(path, "..") {
		return "", fmt.Errorf("metric path %q has an empty component", path)
	}
	if semi < 0 {
		return name, nil
	}
	tags, err := ParseTags(name[semi+1:])
	if err != nil {
		return "", err
	}
	return FormatTagged(path, tags), nil
}

// Tag is one key=value of a tagged series.
type Tag struct{ Key, Value string }

// ParseTags parses "k=v;k2=v2" into tags sorted by key, last value winning.
func ParseTags(s string) ([]Tag, error) {
	var tags []Tag
	for len(s) > 0 {
		seg := s
		if i := strings.IndexByte(s, ';'); i >= 0 {
			seg, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		eq := strings.IndexByte(seg, '=')
		if eq < 1 {
			return nil, fmt.Errorf("tag %q: want key=value", seg)
		}
		k, v := seg[:eq], seg[eq+1:]
		if v == "" || v[0] == '~' {
			return nil, fmt.Errorf("tag %q: the value must be non-empty and not start with ~", seg)
		}
		for i := 0; i < len(k); i++ {
			switch k[i] {
			case '!', '^', '=', ' ':
				return nil, fmt.Errorf("tag %q: the key may not contain %q", seg, k[i])
			}
		}
		replaced := false
		for i := range tags {
			if tags[i].Key == k {
				tags[i].Value = v
				replaced = true
			}
		}
		if !replaced {
			tags = append(tags, Tag{k, v})
		}
	}
	// insertion sort: few tags, stable.
	for i := 1; i < len(tags); i++ {
		for j := i; j > 0 && tags[j].Key < tags[j-1].Key; j-- {
			tags[j], tags[j-1] = tags[j-1], tags[j]
		}
	}
	return tags, nil
}

// FormatTagged writes the canonical "path;k=v;..." form.
func FormatTagged(path string, tags []Tag) string {
	n := len(path)
	for _, t := range tags {
		n += len(t.Key) + len(t.Value) + 2
	}
	b := make([]byte, 0, n)
	b = append(b, path...)
	for _, t := range tags {
		b = append(b, ';')
		b = append(b, t.Key...)
		b = append(b, '=')
		b = append(b, t.Value...)
	}
	return string(b)
}

// SplitTagged returns the path and tags of a canonical name; a plain name has
// no tags.
func SplitTagged(name string) (string, []Tag) {
	i := strings.IndexByte(name, ';')
	if i < 0 {
		return name, nil
	}
	tags, _ := ParseTags(name[i+1:])
	return name[:i], tags
}
