// Runbooks: named operational jobs of .shiploop.yml run by hand (restart a
// service, rotate a key, purge a cache) and data jobs that copy data from
// one environment to another.

package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Runbook is one entry of runbooks:.
//
//	runbooks:
//	  - name: restart
//	    environment: production   # optional: its secrets, variables and lock
//	    options:
//	      - {name: service, type: enum, values: [web, worker], required: true}
//	      - {name: drain, type: bool, default: false}
//	    steps:
//	      - {name: restart, commands: ['systemctl restart "$OPTION_SERVICE"']}
//	  - name: refresh-staging
//	    kind: data                # copies from one environment to another
//	    from: production
//	    to: staging               # the job takes this environment's lock
//	    steps: [...]
type Runbook struct {
	Name        string
	Kind        string // "task" (default) or "data"
	Environment string // task: "" or an environment of the file
	From, To    string // data only
	Options     []Option
	Steps       []Step
	Secrets     []string // the runbook's own secret names, for every step
	Labels      []string // agent labels; nil: the environment's, else the file's
}

// Option is a typed input of a runbook, given to its steps as the
// environment variable OPTION_<NAME> (never on a command line).
type Option struct {
	Name     string
	Type     string // string, int, bool, enum
	Values   []string
	Required bool
	Default  string
	Has      bool // a default was written
}

// OptionTypes are the types an option may have.
var OptionTypes = []string{"string", "int", "bool", "enum"}

var optionNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// EnvName is the variable an option reaches the steps as: OPTION_ and the
// name upper-cased.
func (o Option) EnvName() string { return "OPTION_" + strings.ToUpper(o.Name) }

// check validates one value of o and returns it normalised.
func (o Option) check(v string) (string, error) {
	switch o.Type {
	case "int":
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return "", fmt.Errorf("option %s: %q is not an integer", o.Name, v)
		}
		return strconv.FormatInt(n, 10), nil
	case "bool":
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return "", fmt.Errorf("option %s: %q is not true or false", o.Name, v)
		}
		return strconv.FormatBool(b), nil
	case "enum":
		if !slices.Contains(o.Values, v) {
			return "", fmt.Errorf("option %s: %q is not one of %s", o.Name, v, strings.Join(o.Values, ", "))
		}
	}
	if strings.ContainsRune(v, 0) {
		return "", fmt.Errorf("option %s: contains a NUL byte", o.Name)
	}
	return v, nil
}

// Validate checks given against the runbook's options: unknown names,
// missing required ones and values of the wrong type are errors naming the
// option. It returns every option's value (defaults applied; an optional
// option without a default and not given is absent).
func (rb *Runbook) Validate(given map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for name := range given {
		if !slices.ContainsFunc(rb.Options, func(o Option) bool { return o.Name == name }) {
			var known []string
			for _, o := range rb.Options {
				known = append(known, o.Name)
			}
			if len(known) == 0 {
				return nil, fmt.Errorf("option %s: runbook %s takes no options", name, rb.Name)
			}
			return nil, fmt.Errorf("option %s: runbook %s has no such option (options: %s)", name, rb.Name, strings.Join(known, ", "))
		}
	}
	for _, o := range rb.Options {
		v, ok := given[o.Name]
		switch {
		case ok:
			c, err := o.check(v)
			if err != nil {
				return nil, err
			}
			out[o.Name] = c
		case o.Has:
			out[o.Name] = o.Default
		case o.Required:
			if o.Type == "enum" {
				return nil, fmt.Errorf("option %s is required (one of %s)", o.Name, strings.Join(o.Values, ", "))
			}
			return nil, fmt.Errorf("option %s is required (%s)", o.Name, o.Type)
		}
	}
	return out, nil
}

// Runbook finds a runbook by name.
func (c *Pipeline) Runbook(name string) *Runbook {
	for i := range c.Runbooks {
		if c.Runbooks[i].Name == name {
			return &c.Runbooks[i]
		}
	}
	return nil
}

func (r reader) runbooks(cfg *Pipeline, n *yaml.Node) error {
	n = resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		return r.errf(n, "runbooks", "expected a list of runbooks")
	}
	for i, item := range n.Content {
		f := fmt.Sprintf("runbooks[%d]", i)
		rb, err := r.runbook(item, f)
		if err != nil {
			return err
		}
		if cfg.Runbook(rb.Name) != nil {
			return r.errf(resolve(item), f+".name", "duplicate runbook name %q", rb.Name)
		}
		cfg.Runbooks = append(cfg.Runbooks, rb)
	}
	return nil
}

// checkRunbookEnvironments makes sure the environments runbooks name are
// the file's (called once the whole file is read).
func (c *Pipeline) checkRunbookEnvironments(file string) error {
	for i, rb := range c.Runbooks {
		for _, e := range []struct{ field, name string }{{"environment", rb.Environment}, {"from", rb.From}, {"to", rb.To}} {
			if e.name == "" {
				continue
			}
			if env, _ := c.Environment(e.name); env == nil {
				return &ConfigError{File: file, Line: 1, Col: 1, Field: fmt.Sprintf("runbooks[%d].%s", i, e.field),
					Msg: fmt.Sprintf("no environment %q in environments:", e.name)}
			}
		}
	}
	return nil
}

func (r reader) runbook(n *yaml.Node, field string) (Runbook, error) {
	rb := Runbook{Kind: "task"}
	if rn := resolve(n); rn == nil || rn.Kind != yaml.MappingNode {
		return rb, r.errf(rn, field, "expected a runbook (name, steps, ...)")
	}
	for _, p := range pairs(n, 0) {
		f := field + "." + p[0].Value
		var err error
		switch p[0].Value {
		case "name":
			if rb.Name, err = r.str(p[1], f); err == nil && !nameRE.MatchString(rb.Name) {
				err = r.errf(resolve(p[1]), f, "invalid name %q", rb.Name)
			}
		case "kind":
			if rb.Kind, err = r.str(p[1], f); err == nil && rb.Kind != "task" && rb.Kind != "data" {
				err = r.errf(resolve(p[1]), f, "expected task or data, got %q", rb.Kind)
			}
		case "environment":
			rb.Environment, err = r.str(p[1], f)
		case "from":
			rb.From, err = r.str(p[1], f)
		case "to":
			rb.To, err = r.str(p[1], f)
		case "steps":
			rb.Steps, err = r.steps(p[1], f)
		case "secrets":
			rb.Secrets, err = r.strs(p[1], f)
		case "labels":
			rb.Labels, err = r.strs(p[1], f)
		case "options":
			rb.Options, err = r.options(p[1], f)
		}
		if err != nil {
			return rb, err
		}
	}
	switch {
	case rb.Name == "":
		return rb, r.errf(resolve(n), field+".name", "required")
	case len(rb.Steps) == 0:
		return rb, r.errf(resolve(n), field+".steps", "at least one step is required")
	case rb.Kind == "data" && (rb.From == "" || rb.To == ""):
		return rb, r.errf(resolve(n), field, "a data runbook needs from and to")
	case rb.Kind == "data" && rb.From == rb.To:
		return rb, r.errf(resolve(n), field+".to", "from and to are the same environment %q", rb.To)
	case rb.Kind == "data" && rb.Environment != "":
		return rb, r.errf(resolve(n), field+".environment", "a data runbook runs against its to environment: use from and to")
	case rb.Kind == "task" && (rb.From != "" || rb.To != ""):
		return rb, r.errf(resolve(n), field, "from and to are for kind: data")
	}
	if rb.Kind == "data" {
		rb.Environment = rb.To
	}
	return rb, nil
}

func (r reader) options(n *yaml.Node, field string) ([]Option, error) {
	rn := resolve(n)
	if rn == nil || rn.Kind != yaml.SequenceNode {
		return nil, r.errf(rn, field, "expected a list of options")
	}
	var out []Option
	for i, item := range rn.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		o := Option{Type: "string"}
		if ri := resolve(item); ri == nil || ri.Kind != yaml.MappingNode {
			return nil, r.errf(ri, f, "expected an option (name, type, ...)")
		}
		var def *yaml.Node
		for _, p := range pairs(item, 0) {
			ff := f + "." + p[0].Value
			var err error
			switch p[0].Value {
			case "name":
				if o.Name, err = r.str(p[1], ff); err == nil && !optionNameRE.MatchString(o.Name) {
					err = r.errf(resolve(p[1]), ff, "invalid option name %q: lowercase letters, digits and _, starting with a letter (it becomes OPTION_%s)", o.Name, strings.ToUpper(o.Name))
				}
			case "type":
				if o.Type, err = r.str(p[1], ff); err == nil && !slices.Contains(OptionTypes, o.Type) {
					err = r.errf(resolve(p[1]), ff, "expected one of %s, got %q", strings.Join(OptionTypes, ", "), o.Type)
				}
			case "values":
				o.Values, err = r.strs(p[1], ff)
			case "required":
				var s string
				if s, err = r.str(p[1], ff); err == nil {
					if o.Required, err = strconv.ParseBool(s); err != nil {
						err = r.errf(resolve(p[1]), ff, "expected true or false, got %q", s)
					}
				}
			case "default":
				def = p[1]
			}
			if err != nil {
				return nil, err
			}
		}
		if o.Name == "" {
			return nil, r.errf(resolve(item), f+".name", "required")
		}
		if slices.ContainsFunc(out, func(x Option) bool { return x.Name == o.Name }) {
			return nil, r.errf(resolve(item), f+".name", "duplicate option %q", o.Name)
		}
		if o.Type == "enum" && len(o.Values) == 0 {
			return nil, r.errf(resolve(item), f+".values", "an enum option needs values")
		}
		if o.Type != "enum" && len(o.Values) > 0 {
			return nil, r.errf(resolve(item), f+".values", "values are for type: enum")
		}
		if def != nil {
			s, err := r.str(def, f+".default")
			if err != nil {
				return nil, err
			}
			if o.Default, err = o.check(s); err != nil {
				return nil, r.errf(resolve(def), f+".default", "%v", err)
			}
			o.Has = true
		}
		out = append(out, o)
	}
	return out, nil
}
