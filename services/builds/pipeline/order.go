// Run order of steps and which steps an event selects.

package pipeline

import (
	"maps"
	"slices"
)

// BuildSteps returns the build steps in a valid topological order: each step
// after the steps it depends on, and among the steps ready at any point the
// one written first in the file.
func (c *Config) BuildSteps() []Step { return Order(c.Steps) }

// TestSteps returns the test steps in the same order as BuildSteps does for
// build steps, or nil without a test section.
func (c *Config) TestSteps() []Step {
	if c.Test == nil {
		return nil
	}
	return Order(c.Test.Steps)
}

// Order returns steps in a valid topological order, stable in file order
// among ready steps. Dependencies on names not in steps are ignored. A cycle
// (which Parse rejects) does not hang it: the remaining steps follow in file
// order.
func Order(steps []Step) []Step {
	index := make(map[string]int, len(steps))
	for i, s := range steps {
		if _, dup := index[s.Name]; !dup {
			index[s.Name] = i
		}
	}
	// Kahn's algorithm with the ready steps kept sorted by file position.
	waiting := make([]int, len(steps))      // unplaced dependencies of each step
	dependents := make([][]int, len(steps)) // steps waiting on each step
	for i, s := range steps {
		seen := map[int]bool{}
		for _, dep := range s.DependsOn {
			if j, ok := index[dep]; ok && j != i && !seen[j] {
				seen[j] = true
				waiting[i]++
				dependents[j] = append(dependents[j], i)
			}
		}
	}
	var ready []int
	for i := range steps {
		if waiting[i] == 0 {
			ready = append(ready, i)
		}
	}
	placed := make([]bool, len(steps))
	out := make([]Step, 0, len(steps))
	for len(out) < len(steps) {
		if len(ready) == 0 { // a cycle: place the rest in file order
			for i, s := range steps {
				if !placed[i] {
					placed[i] = true
					out = append(out, s)
				}
			}
			break
		}
		i := ready[0]
		ready = ready[1:]
		placed[i] = true
		out = append(out, steps[i])
		for _, k := range dependents[i] {
			if waiting[k]--; waiting[k] == 0 {
				pos, _ := slices.BinarySearch(ready, k)
				ready = slices.Insert(ready, pos, k)
			}
		}
	}
	return out
}

// Selected returns the build steps that run for ctx, in BuildSteps order, or
// nil when the pipeline-wide When does not match.
//
// A step left out by its When counts as skipped, and skipped counts as done:
// the returned copies have DependsOn rewritten so that a step depending on a
// skipped step depends on what the skipped step depended on instead
// (transitively), and an executor can run them as they are.
func (c *Config) Selected(ctx Context) []Step {
	if !c.When.Match(ctx) {
		return nil
	}
	return Select(c.BuildSteps(), ctx)
}

// Select applies each step's When to ctx, as Selected does, for any list of
// steps (test or deploy steps).
func Select(steps []Step, ctx Context) []Step {
	byName := make(map[string]Step, len(steps))
	for _, s := range steps {
		byName[s.Name] = s
	}
	keep := map[string]bool{}
	for _, s := range steps {
		keep[s.Name] = s.When.Match(ctx)
	}
	// deps returns the kept steps that name stands for: itself if kept,
	// else what it depends on, recursively.
	memo := map[string][]string{}
	var deps func(name string, seen map[string]bool) []string
	deps = func(name string, seen map[string]bool) []string {
		if keep[name] {
			return []string{name}
		}
		if r, ok := memo[name]; ok {
			return r
		}
		if seen[name] {
			return nil
		}
		seen[name] = true
		set := map[string]bool{}
		for _, d := range byName[name].DependsOn {
			for _, k := range deps(d, seen) {
				set[k] = true
			}
		}
		r := slices.Sorted(maps.Keys(set))
		memo[name] = r
		return r
	}
	var out []Step
	for _, s := range steps {
		if !keep[s.Name] {
			continue
		}
		var newDeps []string
		seen := map[string]bool{}
		for _, d := range s.DependsOn {
			for _, k := range deps(d, map[string]bool{}) {
				if !seen[k] && k != s.Name {
					seen[k] = true
					newDeps = append(newDeps, k)
				}
			}
		}
		s.DependsOn = newDeps
		out = append(out, s)
	}
	return out
}
