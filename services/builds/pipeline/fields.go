// Decoding of each part of .shiploop.yml into the Config types.

package pipeline

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/shiploop/shiploop/pkg/gatepolicy"
	"github.com/shiploop/shiploop/pkg/verifycheck"
)

var (
	namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	varPattern  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	events      = []string{"push", "tag", "pull_request", "manual", "cron"}
)

// Fields of each mapping, as written in the file.
var (
	topFields         = []string{"version", "env", "secrets", "labels", "when", "matrix", "concurrency", "steps", "test", "environments", "gate", "schedules", "runbooks", "image", "pull"}
	concurrencyFields = []string{"group", "limit"}
	stepFields        = []string{"name", "commands", "depends_on", "env", "secrets", "when", "failure", "timeout", "artifacts", "cache", "detach", "image", "pull", "cpus", "memory", "produces"}
	whenFields        = []string{"event", "branch", "tag", "paths", "cron"}
	cacheFields       = []string{"key_files", "paths"}
	testFields        = []string{"steps", "reports", "services", "shards", "retries", "labels"}
	reportFields      = []string{"junit", "coverage"}
	serviceFields     = []string{"name", "command", "env", "ready", "image", "pull"}
	readyFields       = []string{"tcp", "command"}
	envFields         = []string{"name", "steps", "variables", "secrets", "labels", "approval", "auto", "verify", "on_interrupt", "on_failure", "monitors", "alerts", "block_promotion_on"}
	approvalFields    = []string{"required"}
	verifyFields      = []string{"window", "conditions", "on_failure"}
	gateFields        = []string{"conditions", "expression", "min_new_lines", "reports", gatepolicy.OnNoDataKey}
	conditionFields   = []string{"metric", "operator", "threshold", "scope", gatepolicy.OnNoDataKey}
	verifyConditions  = []string{"metric", "operator", "threshold", "on_release_mismatch", "require_evidence"} // verify conditions
	operators         = []string{"<", "<=", ">", ">=", "==", "!="}
)

func checkName(s string) string {
	switch {
	case len(s) > maxNameLen:
		return fmt.Sprintf("name %q is longer than %d characters", s, maxNameLen)
	case !namePattern.MatchString(s):
		return fmt.Sprintf("invalid name %q: use lowercase letters, digits, \"_\", \".\" and \"-\", starting with a letter or digit", s)
	}
	return ""
}

// checkRelative accepts globs that stay inside the workspace.
func checkRelative(s string) string {
	if strings.HasPrefix(s, "/") {
		return fmt.Sprintf("%q must be relative to the workspace", s)
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == ".." {
			return fmt.Sprintf("%q must not leave the workspace (..)", s)
		}
	}
	return ""
}

// checkPattern accepts a when pattern: a glob, "!" for an exclusion.
func checkPattern(s string) string {
	if strings.TrimSpace(strings.TrimPrefix(s, "!")) == "" {
		return fmt.Sprintf("pattern %q is empty", s)
	}
	return ""
}

func (d *decoder) config(root *yaml.Node) *Config {
	c := &Config{Version: 1}
	present := d.object(root, "", topFields, func(key string, v *yaml.Node, f string) {
		switch key {
		case "version":
			switch n := d.resolve(v); {
			case n.Kind != yaml.ScalarNode:
				d.errAt(n, f, "expected the integer 1, got %s", describe(n))
			case n.ShortTag() != "!!int" || n.Value != "1":
				d.errAt(n, f, "unsupported version %q: only 1 is known", n.Value)
			}
		case "env":
			c.Env = d.vars(v, f)
		case "secrets":
			c.Secrets = d.names(v, f)
		case "labels":
			c.Labels = d.labels(v, f)
		case "when":
			c.When = d.when(v, f)
		case "matrix":
			c.Matrix = d.matrix(v, f)
		case "concurrency":
			c.Concurrency = d.concurrency(v, f)
		case "steps":
			c.Steps = d.steps(v, f)
		case "test":
			c.Test = d.test(v, f)
		case "environments":
			c.Environments = d.environments(v, f)
		case "gate":
			c.Gate = d.gate(v, f)
		case "schedules":
			c.Schedules = d.schedules(v, f) // schedules.go
		case "runbooks":
			d.runbooks(v, f) // runbooks.go: checked here, run by deploys
		case "image":
			c.Image, _ = d.nonEmpty(v, f)
		case "pull":
			c.Pull, _ = d.oneOf(v, f, "pull policy", PullPolicies)
		}
	})
	if present != nil && !present["steps"] {
		d.errAt(root, "steps", "missing required field")
	}
	d.checkScheduleRefs(c)
	return c
}

// steps decodes a list of steps, or a mapping from step name to step.
func (d *decoder) steps(n *yaml.Node, field string) []Step {
	n = d.resolve(n)
	out := []Step{}
	var paths []string
	switch n.Kind {
	case yaml.SequenceNode:
		d.setPos(field, n)
		for i, item := range n.Content {
			out = append(out, d.step(item, index(field, i), ""))
			paths = append(paths, index(field, i))
		}
	case yaml.MappingNode:
		d.setPos(field, n)
		for _, p := range d.pairs(n, field) {
			f := join(field, p.key.Value)
			if msg := checkName(p.key.Value); msg != "" {
				d.errAt(p.key, f, "%s", msg)
			}
			out = append(out, d.step(p.val, f, p.key.Value))
			paths = append(paths, f)
		}
	default:
		d.errAt(n, field, "expected a list of steps or a mapping of name: step, got %s", describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		d.errAt(n, field, "must have at least one step")
	}
	d.stepPaths[field] = paths
	return out
}

// step decodes one step. key is its name when steps is a mapping.
func (d *decoder) step(n *yaml.Node, field, key string) Step {
	s := Step{Name: key, Failure: FailureFail}
	present := d.object(n, field, stepFields, func(k string, v *yaml.Node, f string) {
		switch k {
		case "name":
			if key != "" {
				d.errAt(d.resolve(v), f, "not allowed when steps is a mapping: the key %q is the name", key)
				return
			}
			if name, ok := d.str(v, f); ok {
				if msg := checkName(name); msg != "" {
					d.errAt(d.resolve(v), f, "%s", msg)
				}
				// Kept even when invalid, so that references to it do not
				// add "unknown step" errors; the file is rejected anyway.
				s.Name = name
			}
		case "commands":
			s.Commands = d.commands(v, f)
		case "depends_on":
			s.DependsOn = d.stringList(v, f, false, nil)
		case "env":
			s.Env = d.vars(v, f)
		case "secrets":
			s.Secrets = d.names(v, f)
		case "when":
			s.When = d.when(v, f)
		case "failure":
			if fp, ok := d.oneOf(v, f, "failure policy", []string{string(FailureFail), string(FailureIgnore)}); ok {
				s.Failure = Failure(fp)
			}
		case "timeout":
			s.Timeout = d.duration(v, f)
		case "artifacts":
			s.Artifacts = d.stringList(v, f, false, checkRelative)
		case "cache":
			s.Cache = d.cache(v, f)
		case "detach":
			s.Detach = d.boolean(v, f)
			if s.Detach && !d.deploy {
				d.errAt(d.resolve(v), f, "detach is only for deploy steps (environments[].steps): a build or test step must not leave processes running on the agent")
			}
		case "image":
			s.Image, _ = d.nonEmpty(v, f)
		case "pull":
			s.Pull, _ = d.oneOf(v, f, "pull policy", PullPolicies)
		case "cpus":
			if s.CPUs = d.number(v, f); s.CPUs < 0 || s.CPUs > 1024 {
				d.errAt(d.resolve(v), f, "cpus must be between 0 and 1024")
			}
		case "memory":
			s.Memory = d.memory(v, f)
		case "produces":
			s.Produces = d.produces(v, f)
		}
	})
	if key == "" {
		d.require(n, field, present, "name", "commands")
	} else {
		d.require(n, field, present, "commands")
	}
	return s
}

func (d *decoder) commands(n *yaml.Node, field string) []string {
	out := []string{}
	d.list(n, field, "shell commands", true, func(_ int, item *yaml.Node, f string) {
		r := d.resolve(item)
		if r.Kind == yaml.MappingNode && len(r.Content) == 2 {
			// "- echo a: b" is a mapping to YAML; say so.
			d.errAt(r, f, "expected a string, got a mapping (quote a command that contains \": \")")
			return
		}
		// A command is shell text: "- true" or "- 42" are the commands
		// as written, not a boolean or a number.
		if s, ok := d.value(item, f); ok {
			if strings.TrimSpace(s) == "" {
				d.errAt(r, f, "must not be empty")
				return
			}
			out = append(out, s)
		}
	})
	if r := d.resolve(n); r.Kind == yaml.SequenceNode && len(r.Content) == 0 {
		d.errAt(r, field, "must have at least one command")
	}
	return out
}

func (d *decoder) when(n *yaml.Node, field string) When {
	var w When
	d.object(n, field, whenFields, func(k string, v *yaml.Node, f string) {
		switch k {
		case "event":
			w.Event = []string{}
			d.list(v, f, "events", true, func(_ int, item *yaml.Node, f string) {
				if e, ok := d.oneOf(item, f, "event", events); ok {
					w.Event = append(w.Event, e)
				}
			})
		case "branch":
			w.Branch = d.stringList(v, f, true, checkPattern)
		case "tag":
			w.Tag = d.stringList(v, f, true, checkPattern)
		case "paths":
			w.Paths = d.stringList(v, f, true, checkPattern)
		case "cron":
			w.Cron = d.stringList(v, f, true, checkPattern)
		}
	})
	return w
}

func (d *decoder) cache(n *yaml.Node, field string) *Cache {
	c := &Cache{}
	present := d.object(n, field, cacheFields, func(k string, v *yaml.Node, f string) {
		switch k {
		case "key_files":
			c.KeyFiles = d.stringList(v, f, false, checkRelative)
		case "paths":
			c.Paths = d.stringList(v, f, false, nil)
			if r := d.resolve(v); r.Kind == yaml.SequenceNode && len(r.Content) == 0 {
				d.errAt(r, f, "must have at least one path")
			}
		}
	})
	d.require(n, field, present, "paths")
	return c
}

func (d *decoder) test(n *yaml.Node, field string) *Test {
	t := &Test{Shards: 1}
	present := d.object(n, field, testFields, func(k string, v *yaml.Node, f string) {
		switch k {
		case "steps":
			t.Steps = d.steps(v, f)
		case "reports":
			d.object(v, f, reportFields, func(k string, v *yaml.Node, f string) {
				switch k {
				case "junit":
					t.Reports.JUnit = d.stringList(v, f, false, checkRelative)
				case "coverage":
					t.Reports.Coverage = d.stringList(v, f, false, checkRelative)
				}
			})
		case "services":
			t.Services = []Service{}
			names := map[string]int{}
			d.list(v, f, "services", false, func(_ int, item *yaml.Node, f string) {
				svc := d.service(item, f)
				if svc.Name == "" {
					return
				}
				if line, dup := names[svc.Name]; dup {
					d.errAt(d.resolve(item), join(f, "name"), "duplicate service name %q (first at line %d)", svc.Name, line)
				}
				names[svc.Name] = d.resolve(item).Line
				t.Services = append(t.Services, svc)
			})
		case "shards":
			t.Shards = d.integer(v, f, 1, maxShards)
		case "retries":
			t.Retries = d.integer(v, f, 0, 5)
		case "labels":
			t.Labels = d.labels(v, f)
		}
	})
	d.require(n, field, present, "steps")
	return t
}

func (d *decoder) service(n *yaml.Node, field string) Service {
	var s Service
	present := d.object(n, field, serviceFields, func(k string, v *yaml.Node, f string) {
		switch k {
		case "name":
			if name, ok := d.str(v, f); ok {
				if msg := checkName(name); msg != "" {
					d.errAt(d.resolve(v), f, "%s", msg)
					return
				}
				s.Name = name
			}
		case "command":
			s.Command, _ = d.nonEmpty(v, f)
		case "env":
			s.Env = d.vars(v, f)
		case "image":
			s.Image, _ = d.nonEmpty(v, f)
		case "pull":
			s.Pull, _ = d.oneOf(v, f, "pull policy", PullPolicies)
		case "ready":
			r := &Ready{}
			present := d.object(v, f, readyFields, func(k string, v *yaml.Node, f string) {
				if k == "command" {
					r.Command, _ = d.nonEmpty(v, f)
					return
				}
				addr, ok := d.nonEmpty(v, f)
				if !ok {
					return
				}
				if _, port, err := net.SplitHostPort(addr); err != nil || !validPort(port) {
					d.errAt(d.resolve(v), f, "invalid address %q: use host:port", addr)
					return
				}
				r.TCP = addr
			})
			if present != nil && !present["tcp"] && !present["command"] {
				d.errAt(d.resolve(v), f, "needs tcp or command")
			}
			s.Ready = r
		}
	})
	if present != nil && present["image"] {
		d.require(n, field, present, "name")
	} else {
		d.require(n, field, present, "name", "command")
	}
	return s
}

// memory decodes a size in bytes: an integer, or a number with a unit
// k, m or g (KiB, MiB, GiB; e.g. "512m", "1.5g"). 0 means no limit;
// otherwise at least 4 MiB (the engine's minimum).
func (d *decoder) memory(n *yaml.Node, field string) int64 {
	s, ok := d.value(n, field)
	if !ok {
		return 0
	}
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "b")
	mult := 1.0
	if t != "" {
		switch t[len(t)-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		}
		if mult != 1 {
			t = t[:len(t)-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*mult > 1<<50 {
		d.errAt(d.resolve(n), field, "invalid memory size %q: use bytes or a number with k, m or g (\"512m\")", s)
		return 0
	}
	b := int64(v * mult)
	if b != 0 && b < 4<<20 {
		d.errAt(d.resolve(n), field, "memory %q is below the 4m minimum", s)
		return 0
	}
	return b
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

func (d *decoder) environments(n *yaml.Node, field string) []Environment {
	out := []Environment{}
	names := map[string]int{}
	d.list(n, field, "environments", false, func(_ int, item *yaml.Node, f string) {
		e := d.environment(item, f)
		if e.Name != "" {
			if line, dup := names[e.Name]; dup {
				d.errAt(d.resolve(item), join(f, "name"), "duplicate environment name %q (first at line %d)", e.Name, line)
			}
			names[e.Name] = d.resolve(item).Line
		}
		out = append(out, e)
	})
	return out
}

func (d *decoder) environment(n *yaml.Node, field string) Environment {
	var e Environment
	var blockNode *yaml.Node
	present := d.object(n, field, envFields, func(k string, v *yaml.Node, f string) {
		switch k {
		case "name":
			if name, ok := d.str(v, f); ok {
				if msg := checkName(name); msg != "" {
					d.errAt(d.resolve(v), f, "%s", msg)
					return
				}
				e.Name = name
			}
		case "steps":
			d.deploy = true
			e.Steps = d.steps(v, f)
			d.deploy = false
		case "variables":
			e.Variables = d.vars(v, f)
		case "secrets":
			e.Secrets = d.names(v, f)
		case "labels":
			e.Labels = d.labels(v, f)
		case "approval":
			a := &Approval{}
			present := d.object(v, f, approvalFields, func(_ string, v *yaml.Node, f string) {
				a.Required = d.integer(v, f, 1, 100)
			})
			d.require(v, f, present, "required")
			e.Approval = a
		case "auto":
			e.Auto = d.boolean(v, f)
		case "verify":
			e.Verify = d.verify(v, f)
		case "on_interrupt":
			if s, ok := d.oneOf(v, f, "on_interrupt", []string{"stop", "rerun"}); ok {
				e.RerunInterrupted = s == "rerun"
			}
		case "on_failure":
			if s, ok := d.oneOf(v, f, "on_failure", []string{"stop", "rollback"}); ok {
				e.RollbackOnFailure = s == "rollback"
			}
		case "monitors":
			e.Monitors = d.monitors(v, f)
		case "alerts":
			e.Alerts = d.alerts(v, f)
		case "block_promotion_on":
			blockNode = v
			e.BlockPromotionOn = d.stringList(v, f, true, nil)
		}
	})
	d.require(n, field, present, "name", "steps")
	if blockNode != nil {
		d.checkBlockPromotion(blockNode, join(field, "block_promotion_on"), &e)
	}
	return e
}

func (d *decoder) verify(n *yaml.Node, field string) *Verify {
	vf := &Verify{OnFailure: OnFailureRollback}
	present := d.object(n, field, verifyFields, func(k string, v *yaml.Node, f string) {
		switch k {
		case "window":
			vf.Window = d.duration(v, f)
		case "conditions":
			vf.Conditions = d.conditions(v, f, false)
		case "on_failure":
			if s, ok := d.oneOf(v, f, "on_failure", []string{string(OnFailureRollback), string(OnFailureHold)}); ok {
				vf.OnFailure = OnFailure(s)
			}
		}
	})
	d.require(n, field, present, "window", "conditions")
	return vf
}

func (d *decoder) concurrency(n *yaml.Node, field string) *Concurrency {
	c := &Concurrency{Limit: 1}
	present := d.object(n, field, concurrencyFields, func(k string, v *yaml.Node, f string) {
		switch k {
		case "group":
			if s, ok := d.nonEmpty(v, f); ok {
				if !groupPattern.MatchString(s) {
					d.errAt(d.resolve(v), f, "invalid group %q: use letters, digits, '.', '_' and '-', at most 100 characters", s)
				} else {
					c.Group = s
				}
			}
		case "limit":
			c.Limit = d.integer(v, f, 1, 1000)
		}
	})
	d.require(n, field, present, "group")
	return c
}

var groupPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

func (d *decoder) gate(n *yaml.Node, field string) *Gate {
	g := &Gate{}
	present := d.object(n, field, gateFields, func(k string, v *yaml.Node, f string) {
		switch k {
		case "conditions":
			g.Conditions = d.conditions(v, f, true)
		case "expression":
			g.Expression, _ = d.nonEmpty(v, f)
		case "min_new_lines":
			lines := d.integer(v, f, 0, 1000000)
			g.MinNewLines = &lines
		case gatepolicy.OnNoDataKey:
			g.OnNoData, _ = d.oneOf(v, f, gatepolicy.OnNoDataKey, gatepolicy.OnNoDataValues)
		case "reports":
			g.Reports = map[string][]string{}
			d.object(v, f, gatepolicy.ReportFormats, func(k string, v *yaml.Node, f string) {
				g.Reports[k] = d.stringList(v, f, false, checkRelative)
			})
		}
	})
	d.require(n, field, present, "conditions")
	return g
}

func (d *decoder) conditions(n *yaml.Node, field string, scoped bool) []Condition {
	out := []Condition{}
	known := conditionFields
	if !scoped {
		known = verifyConditions
	}
	d.list(n, field, "conditions", false, func(_ int, item *yaml.Node, f string) {
		c := Condition{Scope: ScopeOverall}
		var metricNode *yaml.Node
		if !scoped {
			c.Scope = ""
		}
		present := d.object(item, f, known, func(k string, v *yaml.Node, f string) {
			switch k {
			case "metric":
				c.Metric, _ = d.nonEmpty(v, f)
				metricNode = v
			case "operator":
				if op, ok := d.oneOf(v, f, "operator", operators); ok {
					c.Operator = Operator(op)
				}
			case "threshold":
				c.Threshold = d.number(v, f)
			case "scope":
				if s, ok := d.oneOf(v, f, "scope", []string{string(ScopeOverall), string(ScopeNewCode)}); ok {
					c.Scope = Scope(s)
				}
			case gatepolicy.OnNoDataKey:
				c.OnNoData, _ = d.oneOf(v, f, gatepolicy.OnNoDataKey, gatepolicy.OnNoDataValues)
			case "on_release_mismatch":
				c.OnReleaseMismatch, _ = d.oneOf(v, f, "on_release_mismatch", []string{"fail", "ignore"})
			case "require_evidence":
				b := d.boolean(v, f)
				c.RequireEvidence = &b
			}
		})
		d.require(item, f, present, "metric", "operator", "threshold")
		// Gate metrics are the platform's (pkg/gatepolicy): a typo is an
		// error now, not when the gate runs.
		if scoped && c.Metric != "" {
			if msg := gatepolicy.CheckMetric(c.Metric, string(c.Scope)); msg != "" {
				d.errAt(d.resolve(metricNode), join(f, "metric"), "%s", msg)
			}
		}
		// Verification checks too (pkg/verifycheck, what deploys runs).
		if !scoped && c.Metric != "" {
			if vc, err := verifycheck.Parse(c.Metric); err != nil {
				d.errAt(d.resolve(metricNode), join(f, "metric"), "%v", err)
			} else if (c.OnReleaseMismatch != "" || c.RequireEvidence != nil) && !strings.HasPrefix(vc.Kind, "errortrack.") {
				d.errAt(d.resolve(item), f, "on_release_mismatch and require_evidence apply to errortrack.* conditions only")
			}
		}
		out = append(out, c)
	})
	if r := d.resolve(n); r.Kind == yaml.SequenceNode && len(r.Content) == 0 {
		d.errAt(r, field, "must have at least one condition")
	}
	return out
}

func (d *decoder) matrix(n *yaml.Node, field string) *Matrix {
	n = d.resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errAt(n, field, "expected a mapping of VARIABLE: [values], got %s", describe(n))
		return nil
	}
	d.setPos(field, n)
	m := &Matrix{}
	var includes, excludes []pair
	for _, p := range d.pairs(n, field) {
		f := join(field, p.key.Value)
		switch p.key.Value {
		case "include":
			includes = append(includes, p)
			continue
		case "exclude":
			excludes = append(excludes, p)
			continue
		}
		if !varPattern.MatchString(p.key.Value) {
			d.errAt(p.key, f, "invalid variable name %q: use letters, digits and _, not starting with a digit", p.key.Value)
			continue
		}
		ax := MatrixAxis{Name: p.key.Value, Values: []string{}}
		seen := map[string]bool{}
		d.list(p.val, f, "values", false, func(_ int, item *yaml.Node, f string) {
			v, ok := d.value(item, f)
			if !ok {
				return
			}
			if seen[v] {
				d.errAt(d.resolve(item), f, "value %q is listed twice", v)
				return
			}
			seen[v] = true
			ax.Values = append(ax.Values, v)
		})
		if r := d.resolve(p.val); r.Kind == yaml.SequenceNode && len(r.Content) == 0 {
			d.errAt(r, f, "must have at least one value")
		}
		m.Axes = append(m.Axes, ax)
	}
	axis := func(name string) *MatrixAxis {
		for i := range m.Axes {
			if m.Axes[i].Name == name {
				return &m.Axes[i]
			}
		}
		return nil
	}
	axisNames := make([]string, len(m.Axes))
	for i, a := range m.Axes {
		axisNames[i] = a.Name
	}
	// entries decodes include or exclude: a list of VARIABLE: value mappings.
	entries := func(p pair, exclude bool) []map[string]string {
		f := join(field, p.key.Value)
		out := []map[string]string{}
		d.list(p.val, f, "mappings of VARIABLE: value", false, func(_ int, item *yaml.Node, f string) {
			r := d.resolve(item)
			if r.Kind != yaml.MappingNode {
				d.errAt(r, f, "expected a mapping of VARIABLE: value, got %s", describe(r))
				return
			}
			d.setPos(f, r)
			entry := map[string]string{}
			good := true
			for _, kv := range d.pairs(r, f) {
				name, ff := kv.key.Value, join(f, kv.key.Value)
				v, ok := d.value(kv.val, ff)
				if !ok {
					good = false
					continue
				}
				switch a := axis(name); {
				case a == nil && (exclude || len(m.Axes) > 0):
					d.errAt(kv.key, ff, "unknown matrix variable%s", orKnown(name, axisNames))
					good = false
				case a == nil && !varPattern.MatchString(name):
					d.errAt(kv.key, ff, "invalid variable name %q: use letters, digits and _, not starting with a digit", name)
					good = false
				case exclude && !slices.Contains(a.Values, v):
					d.errAt(d.resolve(kv.val), ff, "value %q is not one of %s's values", v, name)
					good = false
				}
				entry[name] = v
			}
			switch {
			case !good:
				return
			case len(entry) == 0:
				d.errAt(r, f, "must name at least one matrix variable")
				return
			case !exclude:
				for _, a := range m.Axes {
					if _, ok := entry[a.Name]; !ok {
						d.errAt(r, f, "must set every matrix variable; %s is missing", a.Name)
						return
					}
				}
			}
			out = append(out, entry)
		})
		return out
	}
	for _, p := range includes {
		m.Include = entries(p, false)
	}
	for _, p := range excludes {
		m.Exclude = entries(p, true)
	}
	if len(m.Axes) == 0 && len(includes) == 0 {
		d.errAt(n, field, "matrix has no variables")
		return m
	}
	product := 1
	for _, a := range m.Axes {
		product *= max(len(a.Values), 1)
		if product > maxMatrixJobs {
			d.errAt(n, field, "matrix has more than %d combinations", maxMatrixJobs)
			return m
		}
	}
	if jobs := len(m.Combinations()); jobs == 0 {
		d.errAt(n, field, "matrix excludes every combination")
	} else if jobs > maxMatrixJobs {
		d.errAt(n, field, "matrix has more than %d combinations", maxMatrixJobs)
	}
	return m
}

func orKnown(name string, known []string) string {
	if h := hint(name, known); h != "" {
		return h
	}
	if len(known) == 0 {
		return ""
	}
	return " (known: " + strings.Join(known, ", ") + ")"
}
