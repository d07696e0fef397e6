// Package config reads the deploys part of .shiploop.yml (environments,
// their steps and verification) into a Pipeline. It is apart from the
// deploys service so that it can be fuzzed without linking the service.
package config

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shiploop/shiploop/pkg/verifycheck"
)

// Pipeline is what the deploys service reads from a commit's .shiploop.yml:
// the environments (in promotion order) and whether a gate is configured.
// The builds service has already checked the whole file strictly; this
// reader is lenient about sections it does not use and strict about the
// meaning deploys gives to environment fields:
//
//   - An environment named "preview" (or starting with "preview") is the
//     template of pull-request previews, not part of the promotion path.
//   - In a preview environment, steps whose name starts with "teardown" run
//     when the pull request closes or merges; the others deploy it.
//   - verify.conditions[].metric names a check (see parseCheck): HTTP
//     probes, errortrack signals, or a Graphite target.
type Pipeline struct {
	Environments []Environment // promotion path, in file order
	Preview      *Environment  // nil without a preview template
	HasGate      bool
	Env          map[string]string // top-level env, for every deploy step
	Secrets      []string          // top-level secret names, for every deploy step
	Labels       []string          // top-level agent labels; an environment's own win
	Runbooks     []Runbook         // runbooks:, see runbooks.go
	// Image and Pull: the container image of deploy steps without one of
	// their own and when to pull it (see StepImage, container.go).
	Image string
	Pull  string
}

// JobLabels are the agent labels a deploy job to env asks for.
func (c *Pipeline) JobLabels(env *Environment) []string {
	if env.Labels != nil {
		return env.Labels
	}
	return c.Labels
}

// Environment is one deploy target.
type Environment struct {
	Name      string
	Steps     []Step
	Teardown  []Step // preview only
	Variables map[string]string
	Secrets   []string
	Labels    []string // agent labels for its deploy jobs; nil: the pipeline's
	Approvals int      // distinct approvers required, 0 for none
	Auto      bool
	Verify    *Verify
	// RerunInterrupted (on_interrupt: rerun): a deploy whose agent stopped
	// mid-way runs again on the next agent instead of ending interrupted.
	RerunInterrupted bool
	// RollbackOnFailure (on_failure: rollback): a deploy whose job failed
	// ends FAILED and the last good release is deployed again; by default
	// (on_failure: stop) it ends FAILED and a person decides.
	RollbackOnFailure bool
	// Monitors keep checking the environment after deploys, Alerts get
	// their state changes (see monitor.go). BlockPromotionOn names the
	// monitors ("all" for every one) whose CRITICAL state refuses
	// promotion to the next environment.
	Monitors         []Monitor
	Alerts           []Alert
	BlockPromotionOn []string
}

// Step is one deploy step.
type Step struct {
	Name          string
	Commands      []string
	DependsOn     []string
	Env           map[string]string
	Timeout       time.Duration
	FailureIgnore bool
	Secrets       []string // the step's own secret names; see StepSecrets
	// Detach: processes the step starts in the background outlive it (the
	// agent does not kill its process group when its shell exits).
	Detach bool
	// Container agents only (container.go): the step's image (empty: the
	// pipeline's), pull policy, CPUs (0: no limit) and Memory in bytes.
	Image  string
	Pull   string
	CPUs   float64
	Memory int64
}

// Verify is the verification after a deploy.
type Verify struct {
	Window    time.Duration
	Checks    []Check
	OnFailure string // rollback (default) or hold
}

// Check is one verification condition: Kind(Target[, Arg]) Op Threshold.
type Check struct {
	Text      string // as written, for reasons and the API
	Kind      string // http_status, http_latency_ms, http_body_match, errortrack.new_issues, errortrack.regressed_issues, errortrack.issues, errortrack.error_rate_ratio, graphite
	Target    string // URL or Graphite target; ${VAR} expands from the deploy's environment
	Arg       string // http_body_match: the regular expression
	Op        string
	Threshold float64
	// errortrack.* only. OnReleaseMismatch: "fail" (the default) fails the
	// condition when errors reach the environment during the window under
	// other releases than the deployed one; "ignore" only reports them.
	// NoEvidence is what a window without a single event, transaction or
	// session of the deployed release gives: "inconclusive" (the default:
	// the deploy pauses, not verified), "fail" (require_evidence: true) or
	// "pass" (require_evidence: false).
	OnReleaseMismatch string
	NoEvidence        string
}

// Holds reports whether value Op Threshold.
func (c Check) Holds(v float64) bool {
	switch c.Op {
	case "<":
		return v < c.Threshold
	case "<=":
		return v <= c.Threshold
	case ">":
		return v > c.Threshold
	case ">=":
		return v >= c.Threshold
	case "==":
		return v == c.Threshold
	case "!=":
		return v != c.Threshold
	}
	return false
}

// Environment returns the named environment of the promotion path.
func (c *Pipeline) Environment(name string) (*Environment, int) {
	for i := range c.Environments {
		if c.Environments[i].Name == name {
			return &c.Environments[i], i
		}
	}
	return nil, -1
}

// StepSecrets are the names of the secrets a deploy step to env sees,
// sorted: the file's, the environment's and the step's own (as builds
// gives a build step the file's and its own). Only names: the agent asks
// the builds service for the values when the job starts, so this service
// never holds one.
func (c *Pipeline) StepSecrets(env *Environment, st Step) []string {
	var out []string
	out = append(out, c.Secrets...)
	if env != nil {
		out = append(out, env.Secrets...)
	}
	out = append(out, st.Secrets...)
	slices.Sort(out)
	return slices.Compact(out)
}

// ConfigError is a problem in the file, naming the line and field.
type ConfigError struct {
	File  string
	Line  int
	Col   int
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s: %s", e.File, e.Line, e.Col, e.Field, e.Msg)
}

type reader struct{ file string }

func (r reader) errf(n *yaml.Node, field, format string, args ...any) error {
	e := &ConfigError{File: r.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	return e
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return resolve(n.Content[0])
	}
	return n
}

// pairs lists a mapping's key/value pairs, "<<" merges first (later keys win).
func pairs(n *yaml.Node, depth int) [][2]*yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode || depth > 20 {
		return nil
	}
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			v = resolve(v)
			if v != nil && v.Kind == yaml.SequenceNode {
				for _, m := range v.Content {
					out = append(out, pairs(m, depth+1)...)
				}
			} else {
				out = append(out, pairs(v, depth+1)...)
			}
			continue
		}
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out
}

func (r reader) str(n *yaml.Node, field string) (string, error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode {
		return "", r.errf(n, field, "expected a string")
	}
	return n.Value, nil
}

func (r reader) strs(n *yaml.Node, field string) ([]string, error) {
	n = resolve(n)
	if n != nil && n.Kind == yaml.ScalarNode {
		return []string{n.Value}, nil
	}
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil, r.errf(n, field, "expected a list of strings")
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		s, err := r.str(c, fmt.Sprintf("%s[%d]", field, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (r reader) vars(n *yaml.Node, field string) (map[string]string, error) {
	if rn := resolve(n); rn == nil || rn.Kind != yaml.MappingNode {
		return nil, r.errf(rn, field, "expected a mapping of NAME: value")
	}
	out := map[string]string{}
	for _, p := range pairs(n, 0) {
		v, err := r.str(p[1], field+"."+p[0].Value)
		if err != nil {
			return nil, err
		}
		out[p[0].Value] = v
	}
	return out, nil
}

func (r reader) duration(n *yaml.Node, field string) (time.Duration, error) {
	s, err := r.str(n, field)
	if err != nil {
		return 0, err
	}
	if secs, err := strconv.Atoi(s); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, r.errf(resolve(n), field, "invalid duration %q: use a Go duration such as 10m, or whole seconds", s)
	}
	return d, nil
}

// Parse reads the environments of a .shiploop.yml.
func Parse(file string, data []byte) (*Pipeline, error) {
	r := reader{file: file}
	var doc yaml.Node
	if len(data) > 1<<20 {
		return nil, &ConfigError{File: file, Line: 1, Col: 1, Field: "(file)", Msg: "larger than 1 MiB"}
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ConfigError{File: file, Line: 1, Col: 1, Field: "(file)", Msg: err.Error()}
	}
	cfg := &Pipeline{Env: map[string]string{}}
	root := resolve(&doc)
	if root == nil {
		return cfg, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, r.errf(root, "(file)", "expected a mapping at the top")
	}
	for _, p := range pairs(root, 0) {
		var err error
		switch p[0].Value {
		case "gate":
			cfg.HasGate = true
		case "env":
			cfg.Env, err = r.vars(p[1], "env")
		case "secrets":
			cfg.Secrets, err = r.strs(p[1], "secrets")
		case "labels":
			cfg.Labels, err = r.strs(p[1], "labels")
		case "environments":
			err = r.environments(cfg, p[1])
		case "runbooks":
			err = r.runbooks(cfg, p[1])
		case "image":
			cfg.Image, err = r.image(p[1], "image")
		case "pull":
			cfg.Pull, err = r.pull(p[1], "pull")
		}
		if err != nil {
			return nil, err
		}
	}
	if err := cfg.checkRunbookEnvironments(file); err != nil {
		return nil, err
	}
	return cfg, nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

func (r reader) environments(cfg *Pipeline, n *yaml.Node) error {
	n = resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		return r.errf(n, "environments", "expected a list of environments")
	}
	seen := map[string]bool{}
	for i, item := range n.Content {
		f := fmt.Sprintf("environments[%d]", i)
		e, err := r.environment(item, f)
		if err != nil {
			return err
		}
		if seen[e.Name] {
			return r.errf(resolve(item), f+".name", "duplicate environment name %q", e.Name)
		}
		seen[e.Name] = true
		if strings.HasPrefix(e.Name, "preview") {
			if cfg.Preview != nil {
				return r.errf(resolve(item), f+".name", "a second preview environment %q: one template serves every pull request", e.Name)
			}
			for _, st := range e.Steps {
				if strings.HasPrefix(st.Name, "teardown") {
					e.Teardown = append(e.Teardown, st)
				}
			}
			steps := e.Steps[:0:0]
			for _, st := range e.Steps {
				if !strings.HasPrefix(st.Name, "teardown") {
					steps = append(steps, st)
				}
			}
			e.Steps = steps
			cfg.Preview = &e
			continue
		}
		cfg.Environments = append(cfg.Environments, e)
	}
	return nil
}

func (r reader) environment(n *yaml.Node, field string) (Environment, error) {
	e := Environment{Variables: map[string]string{}}
	if rn := resolve(n); rn == nil || rn.Kind != yaml.MappingNode {
		return e, r.errf(rn, field, "expected an environment (name, steps, ...)")
	}
	for _, p := range pairs(n, 0) {
		f := field + "." + p[0].Value
		var err error
		switch p[0].Value {
		case "name":
			if e.Name, err = r.str(p[1], f); err == nil && !nameRE.MatchString(e.Name) {
				err = r.errf(resolve(p[1]), f, "invalid name %q", e.Name)
			}
		case "steps":
			e.Steps, err = r.steps(p[1], f)
		case "variables":
			e.Variables, err = r.vars(p[1], f)
		case "secrets":
			e.Secrets, err = r.strs(p[1], f)
		case "labels":
			e.Labels, err = r.strs(p[1], f)
		case "auto":
			var s string
			if s, err = r.str(p[1], f); err == nil {
				e.Auto, err = strconv.ParseBool(s)
				if err != nil {
					err = r.errf(resolve(p[1]), f, "expected true or false, got %q", s)
				}
			}
		case "approval":
			for _, q := range pairs(p[1], 0) {
				if q[0].Value == "required" {
					var s string
					if s, err = r.str(q[1], f+".required"); err == nil {
						if e.Approvals, err = strconv.Atoi(s); err != nil || e.Approvals < 1 || e.Approvals > 100 {
							err = r.errf(resolve(q[1]), f+".required", "expected a whole number from 1 to 100, got %q", s)
						}
					}
				}
			}
		case "verify":
			e.Verify, err = r.verify(p[1], f)
		case "on_interrupt":
			var s string
			if s, err = r.str(p[1], f); err == nil {
				switch s {
				case "stop", "rerun":
					e.RerunInterrupted = s == "rerun"
				default:
					err = r.errf(resolve(p[1]), f, "expected stop or rerun, got %q", s)
				}
			}
		case "on_failure":
			var s string
			if s, err = r.str(p[1], f); err == nil {
				switch s {
				case "stop", "rollback":
					e.RollbackOnFailure = s == "rollback"
				default:
					err = r.errf(resolve(p[1]), f, "expected stop or rollback, got %q", s)
				}
			}
		case "monitors":
			e.Monitors, err = r.monitors(p[1], f)
		case "alerts":
			e.Alerts, err = r.alerts(p[1], f)
		case "block_promotion_on":
			e.BlockPromotionOn, err = r.strs(p[1], f)
		}
		if err != nil {
			return e, err
		}
	}
	for _, b := range e.BlockPromotionOn {
		if b != "all" && !slices.ContainsFunc(e.Monitors, func(m Monitor) bool { return m.Name == b }) {
			return e, r.errf(resolve(n), field+".block_promotion_on", "no monitor %q in this environment (name monitors, or all)", b)
		}
	}
	if e.Name == "" {
		return e, r.errf(resolve(n), field+".name", "required")
	}
	if len(e.Steps) == 0 {
		return e, r.errf(resolve(n), field+".steps", "at least one step is required")
	}
	return e, nil
}

func (r reader) steps(n *yaml.Node, field string) ([]Step, error) {
	rn := resolve(n)
	var out []Step
	switch {
	case rn != nil && rn.Kind == yaml.SequenceNode:
		for i, item := range rn.Content {
			st, err := r.step(item, fmt.Sprintf("%s[%d]", field, i), "")
			if err != nil {
				return nil, err
			}
			out = append(out, st)
		}
	case rn != nil && rn.Kind == yaml.MappingNode:
		for _, p := range pairs(rn, 0) {
			st, err := r.step(p[1], field+"."+p[0].Value, p[0].Value)
			if err != nil {
				return nil, err
			}
			out = append(out, st)
		}
	default:
		return nil, r.errf(rn, field, "expected a list of steps")
	}
	return out, nil
}

func (r reader) step(n *yaml.Node, field, name string) (Step, error) {
	st := Step{Name: name}
	if rn := resolve(n); rn == nil || rn.Kind != yaml.MappingNode {
		return st, r.errf(rn, field, "expected a step (name, commands, ...)")
	}
	for _, p := range pairs(n, 0) {
		f := field + "." + p[0].Value
		var err error
		switch p[0].Value {
		case "name":
			st.Name, err = r.str(p[1], f)
		case "commands":
			st.Commands, err = r.strs(p[1], f)
		case "depends_on":
			st.DependsOn, err = r.strs(p[1], f)
		case "env":
			st.Env, err = r.vars(p[1], f)
		case "secrets":
			st.Secrets, err = r.strs(p[1], f)
		case "timeout":
			st.Timeout, err = r.duration(p[1], f)
		case "failure":
			var s string
			s, err = r.str(p[1], f)
			st.FailureIgnore = s == "ignore"
		case "detach":
			var s string
			if s, err = r.str(p[1], f); err == nil {
				if st.Detach, err = strconv.ParseBool(s); err != nil {
					err = r.errf(resolve(p[1]), f, "expected true or false, got %q", s)
				}
			}
		default:
			_, err = r.containerField(&st, p[0].Value, p[1], f)
		}
		if err != nil {
			return st, err
		}
	}
	if st.Name == "" {
		return st, r.errf(resolve(n), field+".name", "required")
	}
	if st.Detach && st.Image != "" {
		return st, r.errf(resolve(n), field+".detach", "detach has no effect in a container (image:): the step's container is removed when the step ends, with everything it started; run this step without image: on a process agent, or start the service from the step with `docker run -d`")
	}
	if len(st.Commands) == 0 {
		return st, r.errf(resolve(n), field+".commands", "at least one command is required")
	}
	return st, nil
}

func (r reader) verify(n *yaml.Node, field string) (*Verify, error) {
	v := &Verify{OnFailure: "rollback"}
	if rn := resolve(n); rn == nil || rn.Kind != yaml.MappingNode {
		return nil, r.errf(rn, field, "expected window and conditions")
	}
	for _, p := range pairs(n, 0) {
		f := field + "." + p[0].Value
		var err error
		switch p[0].Value {
		case "window":
			v.Window, err = r.duration(p[1], f)
		case "on_failure":
			v.OnFailure, err = r.str(p[1], f)
			if err == nil && v.OnFailure != "rollback" && v.OnFailure != "hold" {
				err = r.errf(resolve(p[1]), f, "expected rollback or hold, got %q", v.OnFailure)
			}
		case "conditions":
			rn := resolve(p[1])
			if rn == nil || rn.Kind != yaml.SequenceNode {
				return nil, r.errf(rn, f, "expected a list of conditions")
			}
			for i, item := range rn.Content {
				cf := fmt.Sprintf("%s[%d]", f, i)
				var c Check
				for _, q := range pairs(item, 0) {
					s, err := r.str(q[1], cf+"."+q[0].Value)
					if err != nil {
						return nil, err
					}
					switch q[0].Value {
					case "metric":
						kind, target, arg, perr := parseCheck(s)
						if perr != nil {
							return nil, r.errf(resolve(q[1]), cf+".metric", "%v", perr)
						}
						c.Kind, c.Target, c.Arg = kind, target, arg
					case "operator":
						c.Op = s
					case "threshold":
						if c.Threshold, err = strconv.ParseFloat(s, 64); err != nil {
							return nil, r.errf(resolve(q[1]), cf+".threshold", "expected a number, got %q", s)
						}
					case "on_release_mismatch":
						if s != "fail" && s != "ignore" {
							return nil, r.errf(resolve(q[1]), cf+".on_release_mismatch", "expected fail or ignore, got %q", s)
						}
						c.OnReleaseMismatch = s
					case "require_evidence":
						switch s {
						case "true":
							c.NoEvidence = "fail"
						case "false":
							c.NoEvidence = "pass"
						default:
							return nil, r.errf(resolve(q[1]), cf+".require_evidence", "expected true or false, got %q", s)
						}
					}
				}
				if (c.OnReleaseMismatch != "" || c.NoEvidence != "") && c.Kind != "" && !strings.HasPrefix(c.Kind, "errortrack.") {
					return nil, r.errf(resolve(item), cf, "on_release_mismatch and require_evidence apply to errortrack.* conditions only")
				}
				if strings.HasPrefix(c.Kind, "errortrack.") {
					c.OnReleaseMismatch = cmp.Or(c.OnReleaseMismatch, "fail")
					c.NoEvidence = cmp.Or(c.NoEvidence, "inconclusive")
				}
				switch c.Op {
				case "<", "<=", ">", ">=", "==", "!=":
				default:
					return nil, r.errf(resolve(item), cf+".operator", "expected one of < <= > >= == !=, got %q", c.Op)
				}
				if c.Kind == "" {
					return nil, r.errf(resolve(item), cf+".metric", "required")
				}
				c.Text = fmt.Sprintf("%s %s %s", checkName(c), c.Op, strconv.FormatFloat(c.Threshold, 'g', -1, 64))
				v.Checks = append(v.Checks, c)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if v.Window <= 0 {
		return nil, r.errf(resolve(n), field+".window", "required: how long to watch after a deploy (e.g. 5m)")
	}
	return v, nil
}

func checkName(c Check) string {
	switch {
	case c.Arg != "":
		return fmt.Sprintf("%s(%s, %s)", c.Kind, c.Target, c.Arg)
	case c.Target != "":
		return fmt.Sprintf("%s(%s)", c.Kind, c.Target)
	}
	return c.Kind
}

// parseCheck reads a verification metric (see verifycheck.Parse).
func parseCheck(s string) (kind, target, arg string, err error) {
	c, err := verifycheck.Parse(s)
	return c.Kind, c.Target, c.Arg, err
}
