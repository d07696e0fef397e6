// Runbooks: named operational jobs run by hand through deploys (see
// services/deploys/config/runbooks.go, which gives them their meaning;
// this checks their shape strictly, like every other section).

package pipeline

import (
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	runbookFields = []string{"name", "kind", "environment", "from", "to", "options", "steps", "secrets", "labels"}
	optionFields  = []string{"name", "type", "values", "required", "default"}
)

// runbooks checks runbooks:; the steps are checked as deploy steps are.
func (d *decoder) runbooks(n *yaml.Node, field string) {
	names := map[string]bool{}
	d.list(n, field, "runbooks", false, func(_ int, item *yaml.Node, f string) {
		var kind, from, to string
		present := d.object(item, f, runbookFields, func(k string, v *yaml.Node, ff string) {
			switch k {
			case "name":
				if name, ok := d.str(v, ff); ok {
					if msg := checkName(name); msg != "" {
						d.errAt(d.resolve(v), ff, "%s", msg)
					} else if names[name] {
						d.errAt(d.resolve(v), ff, "duplicate runbook name %q", name)
					}
					names[name] = true
					if d.runbookNames == nil {
						d.runbookNames = map[string]bool{}
					}
					d.runbookNames[name] = true
				}
			case "kind":
				kind, _ = d.oneOf(v, ff, "runbook kind", []string{"task", "data"})
			case "environment":
				_, _ = d.nonEmpty(v, ff)
			case "from":
				from, _ = d.nonEmpty(v, ff)
			case "to":
				to, _ = d.nonEmpty(v, ff)
			case "steps":
				d.steps(v, ff)
			case "secrets":
				d.names(v, ff)
			case "labels":
				d.labels(v, ff)
			case "options":
				d.runbookOptions(v, ff)
			}
		})
		if present == nil {
			return
		}
		d.require(item, f, present, "name", "steps")
		switch {
		case kind == "data" && (from == "" || to == ""):
			d.errAt(d.resolve(item), f, "a data runbook needs from and to")
		case kind == "data" && present["environment"]:
			d.errAt(d.resolve(item), join(f, "environment"), "a data runbook runs against its to environment: use from and to")
		case kind != "data" && (present["from"] || present["to"]):
			d.errAt(d.resolve(item), f, "from and to are for kind: data")
		}
	})
}

func (d *decoder) runbookOptions(n *yaml.Node, field string) {
	d.list(n, field, "options", false, func(_ int, item *yaml.Node, f string) {
		typ := "string"
		present := d.object(item, f, optionFields, func(k string, v *yaml.Node, ff string) {
			switch k {
			case "name":
				if name, ok := d.str(v, ff); ok && !optionName(name) {
					d.errAt(d.resolve(v), ff, "invalid option name %q: lowercase letters, digits and _, starting with a letter (it becomes OPTION_%s)", name, strings.ToUpper(name))
				}
			case "type":
				typ, _ = d.oneOf(v, ff, "option type", []string{"string", "int", "bool", "enum"})
			case "values":
				d.stringList(v, ff, false, nil)
			case "required":
				d.boolean(v, ff)
			case "default":
				if rn := d.resolve(v); rn.Kind != yaml.ScalarNode {
					d.errAt(rn, ff, "expected a scalar, got %s", describe(rn))
				}
			}
		})
		if present == nil {
			return
		}
		d.require(item, f, present, "name")
		if typ == "enum" && !present["values"] {
			d.errAt(d.resolve(item), join(f, "values"), "an enum option needs values")
		}
		if typ != "enum" && present["values"] {
			d.errAt(d.resolve(item), join(f, "values"), "values are for type: enum")
		}
	})
}

func optionName(s string) bool {
	if s == "" || len(s) > 63 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}
