// Checks across fields: step references, duplicates and cycles.

package pipeline

import (
	"fmt"
	"strings"
)

// validate checks what holds across fields, once each field has decoded.
func validate(d *decoder, c *Config) {
	d.checkSteps(c.Steps, "steps")
	if c.Test != nil {
		d.checkSteps(c.Test.Steps, "test.steps")
	}
	for i, e := range c.Environments {
		field := index("environments", i) + ".steps"
		d.checkSteps(e.Steps, field)
		if paths := d.stepPaths[field]; len(paths) == len(e.Steps) {
			for j, s := range e.Steps {
				if s.Detach && s.Image != "" {
					d.errAtField(paths[j]+".detach", "%s", DetachInImage)
				}
			}
		}
	}
}

// DetachInImage is why a step with both its own image and detach: true is
// refused: a container agent runs the step in a container that is removed
// when the step ends, so nothing it starts can outlive it.
const DetachInImage = "detach has no effect in a container (image:): the step's container is removed when the step ends, with everything it started; run this step without image: on a process agent, or start the service from the step with `docker run -d`"

// errAtField records a problem at the position recorded for field.
func (d *decoder) errAtField(field, format string, args ...any) {
	p := d.pos[field]
	d.errs = append(d.errs, &FieldError{File: d.file, Line: p.Line, Column: p.Column, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// checkSteps checks one list of steps: names are unique, depends_on names
// steps of the same list, and the dependencies form no cycle.
func (d *decoder) checkSteps(steps []Step, field string) {
	if len(steps) == 0 {
		return
	}
	paths := d.stepPaths[field]
	if len(paths) != len(steps) {
		return // decoding failed in a way that leaves nothing to cross-check
	}
	byName := map[string]int{}
	var names []string // unique, in file order, for hints
	complete := true
	for i, s := range steps {
		if s.Name == "" {
			complete = false // a broken name is already reported; unknown-step errors would be noise
			continue
		}
		if first, dup := byName[s.Name]; dup {
			d.errAtField(paths[i]+".name", "duplicate step name %q (first at line %d)", s.Name, d.pos[paths[first]].Line)
			continue
		}
		byName[s.Name] = i
		names = append(names, s.Name)
	}
	// edges[i] are the indexes step i depends on, with the field of each.
	type edge struct {
		to    int
		field string
	}
	edges := make([][]edge, len(steps))
	for i, s := range steps {
		seen := map[string]bool{}
		for j, dep := range s.DependsOn {
			f := index(paths[i]+".depends_on", j)
			switch k, ok := byName[dep]; {
			case seen[dep]:
				d.errAtField(f, "%q is listed twice", dep)
			case dep == s.Name:
				d.errAtField(f, "step %q depends on itself", dep)
			case !ok && complete:
				d.errAtField(f, "unknown step %q%s", dep, hint(dep, names))
			case ok:
				edges[i] = append(edges[i], edge{k, f})
			}
			seen[dep] = true
		}
	}
	// Depth-first search in file order; each back edge closes one cycle.
	const (
		unvisited = iota
		onStack
		done
	)
	state := make([]int, len(steps))
	var stack []int
	var visit func(i int)
	visit = func(i int) {
		state[i] = onStack
		stack = append(stack, i)
		for _, e := range edges[i] {
			switch state[e.to] {
			case unvisited:
				visit(e.to)
			case onStack:
				start := 0
				for k, s := range stack {
					if s == e.to {
						start = k
					}
				}
				cycle := make([]string, 0, len(stack)-start+1)
				for _, s := range stack[start:] {
					cycle = append(cycle, steps[s].Name)
				}
				cycle = append(cycle, steps[e.to].Name)
				d.errAtField(e.field, "dependency cycle: %s", strings.Join(cycle, " -> "))
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
	}
	for i := range steps {
		if state[i] == unvisited {
			visit(i)
		}
	}
}
