// Package glob matches slash-separated paths against globs where "*", "?"
// and "[...]" work within one path segment (as path.Match) and "**" spans
// any number of segments. Artifacts, reports and caches all name files
// this way.
package glob

import (
	"path"
	"strings"
)

// Match reports whether name matches pattern; both are slash paths. A
// malformed pattern matches nothing.
func Match(pattern, name string) bool {
	return matchSegs(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func matchSegs(pat, segs []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(segs); i++ {
				if matchSegs(pat[1:], segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		if ok, err := path.Match(pat[0], segs[0]); err != nil || !ok {
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0
}
