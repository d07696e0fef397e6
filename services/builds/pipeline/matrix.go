// Matrix expansion and the secrets a file refers to.

package pipeline

import (
	"maps"
	"slices"
)

// MatrixCombinations returns one map of variable -> value per job. Without a
// matrix it returns a single empty combination, so callers can always loop
// over it. The order is deterministic: see Matrix.Combinations.
func (c *Config) MatrixCombinations() []map[string]string {
	if c.Matrix == nil {
		return []map[string]string{{}}
	}
	return c.Matrix.Combinations()
}

// Combinations expands the matrix: the product of the axes in file order
// (the last axis varying fastest, values in file order), minus every
// combination that matches all variables of an Exclude entry, followed by
// the Include entries that are not already there.
func (m *Matrix) Combinations() []map[string]string {
	var out []map[string]string
	if len(m.Axes) > 0 {
		total := 1
		for _, a := range m.Axes {
			total *= len(a.Values)
			if total == 0 || total > maxMatrixJobs*maxMatrixJobs {
				total = 0 // Parse rejects such a matrix; do not expand it
				break
			}
		}
		idx := make([]int, len(m.Axes))
		for range total {
			combo := make(map[string]string, len(m.Axes))
			for i, a := range m.Axes {
				combo[a.Name] = a.Values[idx[i]]
			}
			if !m.excluded(combo) {
				out = append(out, combo)
			}
			for i := len(idx) - 1; i >= 0; i-- {
				if idx[i]++; idx[i] < len(m.Axes[i].Values) {
					break
				}
				idx[i] = 0
			}
		}
	}
	for _, inc := range m.Include {
		if !slices.ContainsFunc(out, func(c map[string]string) bool { return maps.Equal(c, inc) }) {
			out = append(out, maps.Clone(inc))
		}
	}
	return out
}

func (m *Matrix) excluded(combo map[string]string) bool {
	for _, ex := range m.Exclude {
		match := len(ex) > 0
		for k, v := range ex {
			if combo[k] != v {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// SecretRef is one use of a secret name in the file.
type SecretRef struct {
	Name  string
	Field string // e.g. "secrets[0]", "steps[2].secrets[1]", "environments[0].secrets[0]"
}

// SecretRefs returns every use of a secret name (pipeline-wide, in build,
// test and deploy steps, in environments) in file order, so the platform can
// check them against the repository's secrets before it starts a job and
// report a missing one where it is used:
//
//	for _, ref := range cfg.SecretRefs() {
//		if !defined(ref.Name) {
//			errs = append(errs, cfg.FieldError(ref.Field, fmt.Sprintf("secret %q is not defined for this repository", ref.Name)))
//		}
//	}
func (c *Config) SecretRefs() []SecretRef {
	var out []SecretRef
	add := func(field string, names []string) {
		for i, n := range names {
			out = append(out, SecretRef{Name: n, Field: index(field, i)})
		}
	}
	addSteps := func(field string, steps []Step) {
		paths := c.stepPaths[field]
		for i, s := range steps {
			if i < len(paths) {
				add(paths[i]+".secrets", s.Secrets)
			}
		}
	}
	add("secrets", c.Secrets)
	addSteps("steps", c.Steps)
	if c.Test != nil {
		addSteps("test.steps", c.Test.Steps)
	}
	for i, e := range c.Environments {
		f := index("environments", i)
		add(f+".secrets", e.Secrets)
		addSteps(f+".steps", e.Steps)
	}
	return out
}
