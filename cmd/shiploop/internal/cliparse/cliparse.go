// Package cliparse holds the parsers of what the shiploop CLI reads from
// users: the client config file and --rule values. It is apart from package
// main so that fuzzing them does not link (and scan the coverage of) every
// service the binary holds.
package cliparse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ConfigKeys are the keys the client config file may hold.
var ConfigKeys = map[string]bool{"server": true, "token": true, "color": true}

// Config parses the client config file's contents (raw, read from path):
// a mapping of ConfigKeys to plain values. Empty contents are no config;
// errors name path and line.
func Config(path string, raw []byte) (map[string]string, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config %s:%d: want a mapping like \"server: host:9090\"", path, m.Line)
	}
	out := map[string]string{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if !ConfigKeys[k.Value] {
			return nil, fmt.Errorf("config %s:%d: unknown key %q (known: server, token, color)", path, k.Line, k.Value)
		}
		if v.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("config %s:%d: %s wants a plain value", path, v.Line, k.Value)
		}
		out[k.Value] = v.Value
	}
	return out, nil
}

// FlagRule is a --rule value: when the context's Attribute compares by Op
// with one of Values, the flag is Variant. (The CLI sends it as a
// flagsv1.Rule; it is plain here so that this package does not link the
// protobuf runtime, whose coverage counters slowed its fuzzing fourfold.)
type FlagRule struct {
	Attribute, Op string
	Values        []string
	Variant       string
}

// Rule reads a --rule value, "ATTR OP V1,V2 -> VARIANT".
func Rule(s string) (FlagRule, error) {
	cond, variant, ok := strings.Cut(s, "->")
	variant = strings.TrimSpace(variant)
	fields := strings.Fields(cond)
	if !ok || variant == "" || len(fields) < 3 {
		return FlagRule{}, fmt.Errorf("--rule %q: want 'ATTR OP VALUE[,VALUE] -> VARIANT', e.g. 'email ends_with @acme.com -> on'", s)
	}
	var vals []string
	for _, v := range strings.Split(strings.Join(fields[2:], " "), ",") {
		if v = strings.TrimSpace(v); v != "" {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return FlagRule{}, fmt.Errorf("--rule %q: no values", s)
	}
	return FlagRule{Attribute: fields[0], Op: fields[1], Values: vals, Variant: variant}, nil
}
