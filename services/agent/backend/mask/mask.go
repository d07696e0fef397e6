// Package mask hides secret values in log lines before they leave the agent.
package mask

import (
	"sort"
	"strings"
)

// Replacement is what every occurrence of a secret becomes.
const Replacement = "********"

// MinLen is the shortest secret (in bytes, after trimming spaces) that is masked.
// Shorter values are ignored: masking every "ab" or "1" would wreck the log while
// hiding next to nothing, since a secret that short can be guessed anyway.
const MinLen = 3

// Masker replaces secrets in text. It is immutable and safe for concurrent use;
// a nil *Masker masks nothing.
type Masker struct {
	secrets []string // unique, longest first
}

// New returns a Masker for secrets. Masking works on one line at a time, so a
// multi-line secret (a PEM key, say) is split into its lines and each line is
// masked on its own. Leading and trailing spaces of each line are dropped, so a
// value read from a file with a trailing newline still matches. Parts shorter
// than MinLen are ignored.
func New(secrets ...string) *Masker {
	seen := make(map[string]bool)
	var parts []string
	for _, s := range secrets {
		for _, part := range strings.Split(s, "\n") {
			part = strings.TrimSpace(part)
			if len(part) < MinLen || seen[part] {
				continue
			}
			seen[part] = true
			parts = append(parts, part)
		}
	}
	sort.SliceStable(parts, func(i, j int) bool { return len(parts[i]) > len(parts[j]) })
	return &Masker{secrets: parts}
}

// Mask returns s with every occurrence of every secret replaced by Replacement.
// Occurrences that overlap or touch (two secrets sharing characters, or a secret
// repeated back to back) become a single Replacement, so no fragment of either
// secret is left visible.
func (m *Masker) Mask(s string) string {
	if m == nil || len(m.secrets) == 0 || len(s) < MinLen {
		return s
	}
	var spans []span
	for _, sec := range m.secrets {
		for from := 0; from <= len(s)-len(sec); {
			i := strings.Index(s[from:], sec)
			if i < 0 {
				break
			}
			start := from + i
			spans = append(spans, span{start, start + len(sec)})
			from = start + 1 // occurrences of one secret may overlap ("aaa" in "aaaa")
		}
	}
	if len(spans) == 0 {
		return s
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	var b strings.Builder
	b.Grow(len(s))
	last := 0 // end of the text already written
	cur := spans[0]
	flush := func(sp span) {
		b.WriteString(s[last:sp.start])
		b.WriteString(Replacement)
		last = sp.end
	}
	for _, sp := range spans[1:] {
		if sp.start <= cur.end {
			cur.end = max(cur.end, sp.end)
			continue
		}
		flush(cur)
		cur = sp
	}
	flush(cur)
	b.WriteString(s[last:])
	return b.String()
}

type span struct{ start, end int }
