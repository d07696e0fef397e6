package metrics

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Retention and rollup rules from carbon's own files, so a team moving from
// carbon keeps them as they are:
//
//	# storage-schemas.conf: the first section whose pattern matches wins
//	[carbon]
//	pattern = ^carbon\.
//	retentions = 60:90d
//	[default]
//	pattern = .*
//	retentions = 10s:1d,1m:30d,1h:5y
//
//	# storage-aggregation.conf: likewise, for how a coarser archive is made
//	[count]
//	pattern = \.count$
//	xFilesFactor = 0
//	aggregationMethod = sum
//
// A series without a matching aggregation section rolls up by average with
// xFilesFactor 0.5, as carbon does. Other keys carbon knows but shiploop
// does not use are refused by name, so a typo never passes silently.

// confSection is one [name] section of a carbon configuration file.
type confSection struct {
	name string
	line int
	keys map[string]string
	at   map[string]int // key -> line
}

// parseConf reads carbon's INI-like files: [section], key = value, comments
// starting with # or ;.
func parseConf(file string, data []byte) ([]confSection, error) {
	var out []confSection
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") || len(line) < 3 {
				return nil, fmt.Errorf("%s:%d: want a section header such as [default], got %q", file, n, line)
			}
			out = append(out, confSection{name: line[1 : len(line)-1], line: n, keys: map[string]string{}, at: map[string]int{}})
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("%s:%d: want key = value, got %q", file, n, line)
			}
			if len(out) == 0 {
				return nil, fmt.Errorf("%s:%d: %q comes before any [section]", file, n, line)
			}
			k = strings.TrimSpace(k)
			s := &out[len(out)-1]
			if _, dup := s.keys[k]; dup {
				return nil, fmt.Errorf("%s:%d: [%s] sets %s twice", file, n, s.name, k)
			}
			s.keys[k], s.at[k] = strings.TrimSpace(v), n
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no [section] in the file", file)
	}
	return out, nil
}

// check refuses keys outside known and requires those in required.
func (s confSection) check(file string, known []string, required ...string) error {
	for k := range s.keys {
		ok := false
		for _, kk := range known {
			ok = ok || k == kk
		}
		if !ok {
			return fmt.Errorf("%s:%d: [%s]: unknown key %q (known: %s)", file, s.at[k], s.name, k, strings.Join(known, ", "))
		}
	}
	for _, k := range required {
		if _, ok := s.keys[k]; !ok {
			return fmt.Errorf("%s:%d: [%s]: %s is required", file, s.line, s.name, k)
		}
	}
	return nil
}

func (s confSection) pattern(file string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(s.keys["pattern"])
	if err != nil {
		return nil, fmt.Errorf("%s:%d: [%s]: pattern: %v", file, s.at["pattern"], s.name, err)
	}
	return re, nil
}

// AggregationRule is one section of storage-aggregation.conf.
type AggregationRule struct {
	Name         string
	Pattern      *regexp.Regexp
	Method       string // average, sum, min, max, last
	XFilesFactor float64
}

// ParseStorageSchemas reads a storage-schemas.conf: the archives of each
// pattern, aggregation left for ParseStorageAggregation.
func ParseStorageSchemas(file string, data []byte) ([]Schema, error) {
	secs, err := parseConf(file, data)
	if err != nil {
		return nil, err
	}
	var out []Schema
	for _, s := range secs {
		if err := s.check(file, []string{"pattern", "retentions"}, "pattern", "retentions"); err != nil {
			return nil, err
		}
		re, err := s.pattern(file)
		if err != nil {
			return nil, err
		}
		arch, err := ParseRetentions(s.keys["retentions"])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: [%s]: %v", file, s.at["retentions"], s.name, err)
		}
		out = append(out, Schema{Name: s.name, Pattern: re, Archives: arch, Aggregation: "average", XFilesFactor: 0.5})
	}
	return out, nil
}

// ParseStorageAggregation reads a storage-aggregation.conf.
func ParseStorageAggregation(file string, data []byte) ([]AggregationRule, error) {
	secs, err := parseConf(file, data)
	if err != nil {
		return nil, err
	}
	var out []AggregationRule
	for _, s := range secs {
		if err := s.check(file, []string{"pattern", "xFilesFactor", "aggregationMethod"}, "pattern"); err != nil {
			return nil, err
		}
		re, err := s.pattern(file)
		if err != nil {
			return nil, err
		}
		r := AggregationRule{Name: s.name, Pattern: re, Method: "average", XFilesFactor: 0.5}
		if v, ok := s.keys["xFilesFactor"]; ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 {
				return nil, fmt.Errorf("%s:%d: [%s]: xFilesFactor %q: want a number from 0 to 1", file, s.at["xFilesFactor"], s.name, v)
			}
			r.XFilesFactor = f
		}
		if v, ok := s.keys["aggregationMethod"]; ok {
			switch v {
			case "average", "sum", "min", "max", "last":
				r.Method = v
			default:
				return nil, fmt.Errorf("%s:%d: [%s]: aggregationMethod %q: want average, sum, min, max or last", file, s.at["aggregationMethod"], s.name, v)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// CombineSchemas gives each schema the aggregation of the first rule whose
// pattern matches the series too: one Schema per (schema, rule) pair in
// order, then the schema with carbon's default (average, 0.5).
func CombineSchemas(schemas []Schema, rules []AggregationRule) []Schema {
	var out []Schema
	for _, s := range schemas {
		for _, r := range rules {
			c := s
			c.Name, c.AggPattern, c.Aggregation, c.XFilesFactor = s.Name+"/"+r.Name, r.Pattern, r.Method, r.XFilesFactor
			out = append(out, c)
		}
		out = append(out, s)
	}
	return out
}

// LoadSchemas reads the two files (either may be empty: the defaults then
// stand for it) into the schemas a Storage uses.
func LoadSchemas(schemasFile, aggregationFile string) ([]Schema, error) {
	if schemasFile == "" && aggregationFile == "" {
		return nil, nil
	}
	schemas := DefaultSchemas()
	if schemasFile != "" {
		data, err := os.ReadFile(schemasFile)
		if err != nil {
			return nil, fmt.Errorf("storage schemas: %w", err)
		}
		if schemas, err = ParseStorageSchemas(schemasFile, data); err != nil {
			return nil, err
		}
	}
	if aggregationFile == "" {
		if schemasFile != "" {
			// Without an aggregation file, shiploop's own defaults: counters
			// sum, the rest averages.
			return CombineSchemas(schemas, []AggregationRule{{Name: "counters", Pattern: DefaultSchemas()[0].Pattern, Method: "sum"}}), nil
		}
		return schemas, nil
	}
	data, err := os.ReadFile(aggregationFile)
	if err != nil {
		return nil, fmt.Errorf("storage aggregation: %w", err)
	}
	rules, err := ParseStorageAggregation(aggregationFile, data)
	if err != nil {
		return nil, err
	}
	if schemasFile == "" {
		// The default retentions with the file's aggregation rules.
		schemas = schemas[len(schemas)-1:]
	}
	return CombineSchemas(schemas, rules), nil
}
