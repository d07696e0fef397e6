// Package labels checks agent labels and names the job pool of a label set.
// It has no dependencies, so that parsers of .shiploop.yml can use it without
// linking the bus (pkg/bus routes jobs by the pools it names).
package labels

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// DefaultPool is the pool of jobs that ask for no label.
const DefaultPool = "any"

// MaxLabels and MaxLen bound a label set.
const (
	MaxLabels = 16
	MaxLen    = 64
)

// Check reports what is wrong with a label, or nil. Labels are free text
// ("linux", "gpu", "os=linux") without spaces or control characters.
func Check(l string) error {
	switch {
	case l == "":
		return errors.New("empty label")
	case len(l) > MaxLen:
		return fmt.Errorf("label %q is longer than %d characters", l, MaxLen)
	}
	for _, r := range l {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("label %q contains a space or control character", l)
		}
	}
	return nil
}

// Pool returns the pool token of a label set and the set in canonical form
// (sorted, without duplicates): DefaultPool for no labels, else "p" and 12
// hex digits of the set's hash.
func Pool(labels []string) (string, []string, error) {
	set := slices.Clone(labels)
	slices.Sort(set)
	set = slices.Compact(set)
	if len(set) > MaxLabels {
		return "", nil, fmt.Errorf("%d labels: at most %d", len(set), MaxLabels)
	}
	for _, l := range set {
		if err := Check(l); err != nil {
			return "", nil, err
		}
	}
	if len(set) == 0 {
		return DefaultPool, nil, nil
	}
	sum := sha256.Sum256([]byte(strings.Join(set, "\n")))
	return "p" + hex.EncodeToString(sum[:6]), set, nil
}
