// Generic decoding of YAML nodes: types, lists, mappings with merge keys,
// positions and the problems found on the way.

package pipeline

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shiploop/shiploop/pkg/labels"
)

func (d *decoder) setPos(field string, n *yaml.Node) {
	if _, ok := d.pos[field]; !ok {
		d.pos[field] = Position{Line: n.Line, Column: n.Column}
	}
}

// describe names the kind of a node for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch t := n.ShortTag(); t {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "nothing (null)"
		case "!!timestamp":
			return "a timestamp"
		default:
			return "a value tagged " + t
		}
	}
	return "an empty value"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

type pair struct{ key, val *yaml.Node }

// pairs returns the entries of mapping n in order, expanding "<<" merge keys
// in place (explicit keys win over merged ones, earlier merges over later
// ones) and reporting duplicate and non-string keys.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	explicit := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.resolve(n.Content[i])
		if k.Kind == yaml.ScalarNode && k.ShortTag() != "!!merge" {
			if _, ok := explicit[k.Value]; !ok {
				explicit[k.Value] = k
			}
		}
	}
	seen := map[string]*yaml.Node{}
	var out []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.resolve(n.Content[i]), n.Content[i+1]
		switch {
		case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
			for _, p := range d.merged(v, path) {
				if _, ok := explicit[p.key.Value]; ok {
					continue
				}
				if _, ok := seen[p.key.Value]; ok {
					continue
				}
				seen[p.key.Value] = p.key
				out = append(out, p)
			}
		case k.Kind != yaml.ScalarNode:
			d.errAt(k, path, "keys must be strings, not %s", describe(k))
		default:
			if first, dup := seen[k.Value]; dup {
				d.errAt(k, join(path, k.Value), "duplicate key (first at line %d)", first.Line)
				continue
			}
			seen[k.Value] = k
			out = append(out, pair{k, v})
		}
	}
	return out
}

// merged returns the entries a "<<" merge value brings in.
func (d *decoder) merged(v *yaml.Node, path string) []pair {
	v = d.resolve(v)
	sources := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		sources = v.Content
	}
	var out []pair
	for _, s := range sources {
		s = d.resolve(s)
		if s.Kind != yaml.MappingNode {
			d.errAt(s, path, "<< merges a mapping or a list of mappings, not %s", describe(s))
			continue
		}
		out = append(out, d.pairs(s, path)...)
	}
	return out
}

// object decodes mapping n field by field. Unknown fields are reported with
// the nearest known name; fn is called for each known one. It returns the
// set of fields present, or nil when n is not a mapping.
func (d *decoder) object(n *yaml.Node, path string, known []string, fn func(key string, v *yaml.Node, field string)) map[string]bool {
	n = d.resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errAt(n, path, "expected a mapping, got %s", describe(n))
		return nil
	}
	d.setPos(path, n)
	present := map[string]bool{}
	for _, p := range d.pairs(n, path) {
		key := p.key.Value
		field := join(path, key)
		if !slices.Contains(known, key) {
			if near := closest(key, known); near != "" {
				d.errAt(p.key, field, "unknown field (did you mean %q?)", near)
				// The typo is the problem; do not also report near as missing.
				present[near] = true
			} else {
				sorted := slices.Sorted(slices.Values(known))
				d.errAt(p.key, field, "unknown field (known fields: %s)", strings.Join(sorted, ", "))
			}
			continue
		}
		present[key] = true
		d.setPos(field, d.resolve(p.val))
		fn(key, p.val, field)
	}
	return present
}

// require reports the fields of known that are missing from present.
func (d *decoder) require(n *yaml.Node, path string, present map[string]bool, fields ...string) {
	if present == nil {
		return // not a mapping; already reported
	}
	n = d.resolve(n)
	for _, f := range fields {
		if !present[f] {
			d.errAt(n, join(path, f), "missing required field")
		}
	}
}

func (d *decoder) str(n *yaml.Node, field string) (string, bool) {
	n = d.resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.errAt(n, field, "expected a string, got %s", describe(n))
		return "", false
	}
	d.setPos(field, n)
	return n.Value, true
}

// nonEmpty decodes a string that must not be empty.
func (d *decoder) nonEmpty(n *yaml.Node, field string) (string, bool) {
	s, ok := d.str(n, field)
	if ok && strings.TrimSpace(s) == "" {
		d.errAt(d.resolve(n), field, "must not be empty")
		return "", false
	}
	return s, ok
}

// value decodes a scalar whose YAML type does not matter, such as an
// environment value: CGO_ENABLED: 0 is "0". The text is kept as written.
func (d *decoder) value(n *yaml.Node, field string) (string, bool) {
	n = d.resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" || n.ShortTag() == "!!binary" || !strings.HasPrefix(n.ShortTag(), "!!") {
		d.errAt(n, field, "expected a string, number or boolean, got %s", describe(n))
		return "", false
	}
	d.setPos(field, n)
	return n.Value, true
}

// list decodes a sequence, calling fn for each item with its field path.
// With scalarOK, a single scalar stands for a list of one.
func (d *decoder) list(n *yaml.Node, field, what string, scalarOK bool, fn func(i int, item *yaml.Node, field string)) bool {
	n = d.resolve(n)
	switch {
	case n.Kind == yaml.SequenceNode:
		d.setPos(field, n)
		for i, item := range n.Content {
			fn(i, item, index(field, i))
		}
		return true
	case scalarOK && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		d.setPos(field, n)
		fn(0, n, field)
		return true
	case scalarOK:
		d.errAt(n, field, "expected a string or a list of strings, got %s", describe(n))
	default:
		d.errAt(n, field, "expected a list of %s, got %s", what, describe(n))
	}
	return false
}

// stringList decodes a list of non-empty strings, each checked by check (which
// may be nil and returns a problem or "").
func (d *decoder) stringList(n *yaml.Node, field string, scalarOK bool, check func(string) string) []string {
	out := []string{}
	d.list(n, field, "strings", scalarOK, func(_ int, item *yaml.Node, f string) {
		s, ok := d.nonEmpty(item, f)
		if !ok {
			return
		}
		if check != nil {
			if msg := check(s); msg != "" {
				d.errAt(d.resolve(item), f, "%s", msg)
				return
			}
		}
		out = append(out, s)
	})
	return out
}

// names decodes a list of variable-like names (secrets), unique.
func (d *decoder) names(n *yaml.Node, field string) []string {
	out := []string{}
	first := map[string]int{}
	d.list(n, field, "names", false, func(_ int, item *yaml.Node, f string) {
		s, ok := d.str(item, f)
		if !ok {
			return
		}
		item = d.resolve(item)
		if !varPattern.MatchString(s) {
			d.errAt(item, f, "invalid name %q: use letters, digits and _, not starting with a digit", s)
			return
		}
		if line, dup := first[s]; dup {
			d.errAt(item, f, "%q is listed twice (first at line %d)", s, line)
			return
		}
		first[s] = item.Line
		out = append(out, s)
	})
	return out
}

// labels decodes the labels an agent must have to take a job: a string or
// a list of them, each a label labels.Check accepts, at most 16.
func (d *decoder) labels(n *yaml.Node, field string) []string {
	out := d.stringList(n, field, true, func(s string) string {
		if err := labels.Check(s); err != nil {
			return err.Error()
		}
		return ""
	})
	if _, _, err := labels.Pool(out); err != nil {
		d.errAt(d.resolve(n), field, "%v", err)
	}
	return out
}

// vars decodes a mapping of environment variables.
func (d *decoder) vars(n *yaml.Node, field string) map[string]string {
	n = d.resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errAt(n, field, "expected a mapping of NAME: value, got %s", describe(n))
		return nil
	}
	d.setPos(field, n)
	out := map[string]string{}
	for _, p := range d.pairs(n, field) {
		f := join(field, p.key.Value)
		if !varPattern.MatchString(p.key.Value) {
			d.errAt(p.key, f, "invalid variable name %q: use letters, digits and _, not starting with a digit", p.key.Value)
			continue
		}
		if v, ok := d.value(p.val, f); ok {
			out[p.key.Value] = v
		}
	}
	return out
}

func (d *decoder) boolean(n *yaml.Node, field string) bool {
	n = d.resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		if n.Kind == yaml.ScalarNode && slices.Contains([]string{"yes", "no", "on", "off", "y", "n"}, strings.ToLower(n.Value)) {
			d.errAt(n, field, "expected true or false, got the string %q", n.Value)
			return false
		}
		d.errAt(n, field, "expected true or false, got %s", describe(n))
		return false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		d.errAt(n, field, "expected true or false, got %q", n.Value)
	}
	return b
}

func (d *decoder) integer(n *yaml.Node, field string, lo, hi int) int {
	n = d.resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.errAt(n, field, "expected an integer, got %s", describe(n))
		return 0
	}
	var v int64
	if err := n.Decode(&v); err != nil || v < int64(lo) || v > int64(hi) {
		d.errAt(n, field, "must be between %d and %d, got %s", lo, hi, n.Value)
		return 0
	}
	return int(v)
}

func (d *decoder) number(n *yaml.Node, field string) float64 {
	n = d.resolve(n)
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		d.errAt(n, field, "expected a number, got %s", describe(n))
		return 0
	}
	var v float64
	if err := n.Decode(&v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.errAt(n, field, "expected a finite number, got %s", n.Value)
		return 0
	}
	return v
}

// duration decodes a Go duration ("10m", "1h30m") or whole seconds (600).
func (d *decoder) duration(n *yaml.Node, field string) time.Duration {
	n = d.resolve(n)
	const usage = `use a duration like "10m" or "1h30m", or a whole number of seconds`
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int":
		var v int64
		if err := n.Decode(&v); err != nil || v > math.MaxInt64/int64(time.Second) {
			d.errAt(n, field, "duration %s is too long", n.Value)
			return 0
		}
		if v <= 0 {
			d.errAt(n, field, "duration must be positive, got %s", n.Value)
			return 0
		}
		return time.Duration(v) * time.Second
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		v, err := time.ParseDuration(n.Value)
		if err != nil {
			d.errAt(n, field, "invalid duration %q: %s", n.Value, usage)
			return 0
		}
		if v <= 0 {
			d.errAt(n, field, "duration must be positive, got %q", n.Value)
			return 0
		}
		return v
	}
	d.errAt(n, field, "expected a duration, got %s: %s", describe(n), usage)
	return 0
}

// oneOf decodes a string that must be one of choices.
func (d *decoder) oneOf(n *yaml.Node, field, what string, choices []string) (string, bool) {
	s, ok := d.str(n, field)
	if !ok {
		return "", false
	}
	if !slices.Contains(choices, s) {
		h := hint(s, choices)
		if h == "" {
			h = " (one of " + strings.Join(choices, ", ") + ")"
		}
		d.errAt(d.resolve(n), field, "unknown %s %q%s", what, s, h)
		return "", false
	}
	return s, true
}
