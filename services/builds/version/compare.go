// SemVer precedence, to choose between tags on one commit.

package version

import "strings"

// compare orders two SemVer versions (a leading "v" and build metadata
// allowed) by SemVer 2.0.0 precedence: -1, 0 or +1. Numbers are compared as
// digit strings, so no size overflows.
func compare(a, b string) int {
	a, _, _ = strings.Cut(strings.TrimPrefix(a, "v"), "+")
	b, _, _ = strings.Cut(strings.TrimPrefix(b, "v"), "+")
	ac, ap, aPre := strings.Cut(a, "-")
	bc, bp, bPre := strings.Cut(b, "-")
	af, bf := strings.Split(ac, "."), strings.Split(bc, ".")
	for i := 0; i < len(af) && i < len(bf); i++ {
		if c := compareNumeric(af[i], bf[i]); c != 0 {
			return c
		}
	}
	switch {
	case !aPre && !bPre:
		return 0
	case !aPre:
		return 1 // a release sorts after its prereleases
	case !bPre:
		return -1
	}
	ai, bi := strings.Split(ap, "."), strings.Split(bp, ".")
	for i := 0; i < len(ai) && i < len(bi); i++ {
		an, bn := isNumeric(ai[i]), isNumeric(bi[i])
		var c int
		switch {
		case an && bn:
			c = compareNumeric(ai[i], bi[i])
		case an:
			c = -1 // numeric identifiers sort before alphanumeric ones
		case bn:
			c = 1
		default:
			c = strings.Compare(ai[i], bi[i])
		}
		if c != 0 {
			return c
		}
	}
	switch {
	case len(ai) < len(bi):
		return -1
	case len(ai) > len(bi):
		return 1
	}
	return 0
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// compareNumeric compares two digit strings without leading zeros.
func compareNumeric(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}
