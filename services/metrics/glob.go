package metrics

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// globMatcher matches one path component against a graphite glob: *, ?,
// [a-z] classes and {a,b} alternatives.
type globMatcher struct {
	lit string
	re  *regexp.Regexp
}

func compileGlob(p string) (*globMatcher, error) {
	if !strings.ContainsAny(p, "*?[]{}") {
		return &globMatcher{lit: p}, nil
	}
	var b strings.Builder
	b.WriteString("^")
	depth := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '[':
			j := strings.IndexByte(p[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unclosed '[' in %q", p)
			}
			class := p[i+1 : i+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += j
		case '{':
			depth++
			b.WriteString("(?:")
		case '}':
			if depth == 0 {
				return nil, fmt.Errorf("unmatched '}' in %q", p)
			}
			depth--
			b.WriteString(")")
		case ',':
			if depth > 0 {
				b.WriteString("|")
			} else {
				b.WriteString(",")
			}
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unclosed '{' in %q", p)
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("bad glob %q: %w", p, err)
	}
	return &globMatcher{re: re}, nil
}

func (m *globMatcher) literal() (string, bool) { return m.lit, m.re == nil }

func (m *globMatcher) match(s string) bool {
	if m.re == nil {
		return s == m.lit
	}
	return m.re.MatchString(s)
}

// tagExpr is one seriesByTag term: tag=value, tag!=value, tag=~re, tag!=~re.
type tagExpr struct {
	tag, op, value string
	re             *regexp.Regexp
}

func parseTagExpr(s string) (tagExpr, error) {
	for _, op := range []string{"!=~", "=~", "!=", "="} {
		if i := strings.Index(s, op); i > 0 {
			e := tagExpr{tag: strings.TrimSpace(s[:i]), op: op, value: s[i+len(op):]}
			if strings.HasSuffix(op, "~") {
				re, err := regexp.Compile("^(?:" + e.value + ")")
				if err != nil {
					return e, fmt.Errorf("tag expression %q: %w", s, err)
				}
				e.re = re
			}
			return e, nil
		}
	}
	return tagExpr{}, fmt.Errorf("tag expression %q: want tag=value, tag!=value, tag=~regex or tag!=~regex", s)
}

func (e tagExpr) matches(v string) bool {
	switch e.op {
	case "=":
		return v == e.value
	case "!=":
		return v != e.value
	case "=~":
		return e.re.MatchString(v)
	default:
		return !e.re.MatchString(v)
	}
}

// matchesEmpty: a spec that matches an empty value also matches series
// without the tag.
func (e tagExpr) matchesEmpty() bool { return e.matches("") }

// FindTagged returns the names of the series matching all tag expressions.
func (st *Storage) FindTagged(exprs []string) ([]string, error) {
	var parsed []tagExpr
	var anchor *tagExpr
	for _, s := range exprs {
		e, err := parseTagExpr(s)
		if err != nil {
			return nil, err
		}
		parsed = append(parsed, e)
		if !e.matchesEmpty() && anchor == nil {
			anchor = &parsed[len(parsed)-1]
		}
	}
	if anchor == nil {
		return nil, fmt.Errorf("seriesByTag: at least one tag expression must require a non-empty value")
	}
	st.mu.RLock()
	defer st.mu.RUnlock()
	cands := map[*series]struct{}{}
	for v, set := range st.tagIdx[anchor.tag] {
		if anchor.matches(v) {
			for _, s := range set {
				cands[s] = struct{}{}
			}
		}
	}
	var out []string
	for s := range cands {
		tags := tagsOf(s.name)
		ok := true
		for _, e := range parsed {
			if !e.matches(tags[e.tag]) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, s.name)
		}
	}
	sort.Strings(out)
	return out, nil
}

func tagsOf(name string) map[string]string {
	path, tags := splitTagged(name)
	m := map[string]string{"name": path}
	for _, t := range tags {
		m[t[0]] = t[1]
	}
	return m
}

func splitTagged(name string) (string, [][2]string) {
	path, rest, ok := strings.Cut(name, ";")
	if !ok {
		return name, nil
	}
	var out [][2]string
	for _, kv := range strings.Split(rest, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out = append(out, [2]string{k, v})
		}
	}
	return path, out
}

// TagNames lists tags (with a prefix) of series matching exprs (all when
// none), leaving out the tags exprs already name, as graphite-web does.
func (st *Storage) TagNames(exprs []string, prefix string, limit int) ([]string, error) {
	set := map[string]bool{}
	if len(exprs) == 0 {
		st.mu.RLock()
		for t := range st.tagIdx {
			set[t] = true
		}
		st.mu.RUnlock()
	} else {
		names, err := st.FindTagged(exprs)
		if err != nil {
			return nil, err
		}
		searched := map[string]bool{}
		for _, x := range exprs {
			if e, err := parseTagExpr(x); err == nil {
				searched[e.tag] = true
			}
		}
		for _, n := range names {
			for t := range tagsOf(n) {
				if !searched[t] {
					set[t] = true
				}
			}
		}
	}
	return sortedLimited(set, prefix, limit), nil
}

// TagValues lists values of tag (with a prefix) among series matching exprs.
func (st *Storage) TagValues(tag string, exprs []string, prefix string, limit int) ([]string, map[string]int, error) {
	set := map[string]bool{}
	counts := map[string]int{}
	if len(exprs) == 0 {
		st.mu.RLock()
		for v, s := range st.tagIdx[tag] {
			set[v] = true
			counts[v] = len(s)
		}
		st.mu.RUnlock()
	} else {
		names, err := st.FindTagged(exprs)
		if err != nil {
			return nil, nil, err
		}
		for _, n := range names {
			if v, ok := tagsOf(n)[tag]; ok {
				set[v] = true
				counts[v]++
			}
		}
	}
	return sortedLimited(set, prefix, limit), counts, nil
}

func sortedLimited(set map[string]bool, prefix string, limit int) []string {
	out := []string{}
	for k := range set {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
