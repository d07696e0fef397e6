// Conditions on events, and the glob syntax of their patterns.

package pipeline

import (
	"regexp"
	"slices"
	"strings"
)

// Context describes the event a pipeline runs for.
type Context struct {
	Event  string // push, tag, pull_request, manual or cron
	Cron   string // the schedule's name when Event is cron
	Branch string // empty for a tag build
	Tag    string // empty unless Event is tag
	// ChangedPaths are the files the change touches, relative to the
	// repository root. Empty means unknown, not "nothing changed".
	ChangedPaths []string
}

// Match reports whether the condition holds for ctx. Every non-empty list
// must match:
//
//   - Event: ctx.Event is one of the listed events.
//   - Branch, Tag: ctx.Branch (ctx.Tag) matches an including pattern (or
//     there are only "!" patterns) and no "!" pattern. A build without a
//     branch (a tag build) does not match a branch list that includes
//     something, and likewise for tags; so {branch: [main]} never runs for
//     tags, and {event: [tag], tag: ["v*"]} is how a step runs for releases.
//   - Cron: like Branch, over ctx.Cron, the schedule's name; so
//     {cron: [nightly]} runs only for the schedule named nightly.
//   - Paths: with ctx.ChangedPaths unknown (empty) the list matches; else
//     at least one changed path is included and not excluded.
//
// Patterns are globs: "*" matches within one path segment (not "/"), "**"
// across segments ("docs/**" matches everything under docs, "**/*.go" every
// Go file), "?" one character other than "/". Everything else is literal.
func (w When) Match(ctx Context) bool {
	if len(w.Event) > 0 && !slices.Contains(w.Event, ctx.Event) {
		return false
	}
	if len(w.Branch) > 0 && !matchList(w.Branch, ctx.Branch) {
		return false
	}
	if len(w.Tag) > 0 && !matchList(w.Tag, ctx.Tag) {
		return false
	}
	if len(w.Cron) > 0 && !matchList(w.Cron, ctx.Cron) {
		return false
	}
	if len(w.Paths) > 0 && len(ctx.ChangedPaths) > 0 {
		for _, p := range ctx.ChangedPaths {
			if matchList(w.Paths, p) {
				return true
			}
		}
		return false
	}
	return true
}

// matchList applies a list of patterns to one value: it must match an
// including pattern (if the list has any) and no "!" pattern. An empty
// value matches only a list that includes nothing.
func matchList(patterns []string, value string) bool {
	included, hasInclude := false, false
	for _, p := range patterns {
		if rest, ok := strings.CutPrefix(p, "!"); ok {
			if value != "" && Glob(rest, value) {
				return false
			}
			continue
		}
		hasInclude = true
		if !included && value != "" && Glob(p, value) {
			included = true
		}
	}
	if !hasInclude {
		return true
	}
	return included
}

// Glob reports whether name matches pattern: "*" matches any run of
// characters other than "/", "**" any run including "/" (and "**/" also
// nothing), "?" one character other than "/".
func Glob(pattern, name string) bool {
	return globRegexp(pattern).MatchString(name)
}

func globRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`^`)
	for i := 0; i < len(pattern); {
		switch {
		case strings.HasPrefix(pattern[i:], "**/"):
			b.WriteString(`(?:.*/)?`)
			i += 3
		case strings.HasPrefix(pattern[i:], "**"):
			b.WriteString(`.*`)
			i += 2
		case pattern[i] == '*':
			b.WriteString(`[^/]*`)
			i++
		case pattern[i] == '?':
			b.WriteString(`[^/]`)
			i++
		default:
			j := i + 1
			for j < len(pattern) && pattern[j] != '*' && pattern[j] != '?' {
				j++
			}
			b.WriteString(regexp.QuoteMeta(pattern[i:j]))
			i = j
		}
	}
	b.WriteString(`$`)
	// The expression is built from quoted literals and fixed pieces only, so
	// it always compiles. (?s) lets "." and "[^/]" cross newlines too.
	return regexp.MustCompile(`(?s)` + b.String())
}
