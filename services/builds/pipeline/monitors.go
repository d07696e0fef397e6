// Decoding of environments[].monitors, alerts and block_promotion_on:
// checked here as strictly as the rest of the file; the deploys service
// (services/deploys/config) runs them.

package pipeline

import (
	"regexp"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/shiploop/shiploop/pkg/verifycheck"
)

// Monitor keeps checking an environment after its deploys; exactly one of
// HTTP, Check, Graphite and Command is set.
type Monitor struct {
	Name      string
	HTTPURL   string // http: {url, expect}
	Expect    int
	Check     string // check: "METRIC OP NUMBER", a verification metric
	Graphite  string // graphite: {target, max|min, warn}
	Command   []string
	Every     string
	FailAfter int
}

// Alert is a webhook receiving an environment's monitor state changes.
type Alert struct {
	Webhook  string
	Format   string // slack or generic
	Renotify string
}

var (
	monitorFields         = []string{"name", "http", "check", "graphite", "command", "every", "fail_after"}
	monitorHTTPFields     = []string{"url", "expect"}
	monitorGraphiteFields = []string{"target", "max", "min", "warn"}
	alertFields           = []string{"webhook", "format", "renotify"}
	monitorExpr           = regexp.MustCompile(`^\s*(.*[^<>=!\s])\s*(<=|>=|==|!=|<|>)\s*[-+]?[0-9.]+([eE][-+]?[0-9]+)?\s*$`)
)

func (d *decoder) monitors(n *yaml.Node, field string) []Monitor {
	out := []Monitor{}
	names := map[string]bool{}
	d.list(n, field, "monitors", false, func(_ int, item *yaml.Node, f string) {
		m := Monitor{FailAfter: 1}
		kinds := 0
		present := d.object(item, f, monitorFields, func(k string, v *yaml.Node, f string) {
			switch k {
			case "name":
				if s, ok := d.str(v, f); ok {
					if msg := checkName(s); msg != "" {
						d.errAt(d.resolve(v), f, "%s", msg)
					} else if names[s] {
						d.errAt(d.resolve(v), f, "duplicate monitor name %q", s)
					}
					m.Name, names[s] = s, true
				}
			case "every":
				if dur := d.duration(v, f); dur > 0 {
					m.Every = d.resolve(v).Value
				}
			case "fail_after":
				m.FailAfter = d.integer(v, f, 1, 100)
			case "check":
				kinds++
				if s, ok := d.nonEmpty(v, f); ok {
					sub := monitorExpr.FindStringSubmatch(s)
					if sub == nil {
						d.errAt(d.resolve(v), f, "expected METRIC OPERATOR NUMBER, e.g. \"errortrack.error_rate_ratio <= 2\", got %q", s)
					} else if _, err := verifycheck.Parse(sub[1]); err != nil {
						d.errAt(d.resolve(v), f, "%v", err)
					}
					m.Check = s
				}
			case "http":
				kinds++
				m.Expect = 200
				p := d.object(v, f, monitorHTTPFields, func(k string, v *yaml.Node, f string) {
					switch k {
					case "url":
						if s, ok := d.nonEmpty(v, f); ok {
							if _, err := verifycheck.Parse("http_status(" + s + ")"); err != nil {
								d.errAt(d.resolve(v), f, "%v", err)
							}
							m.HTTPURL = s
						}
					case "expect":
						m.Expect = d.integer(v, f, 100, 599)
					}
				})
				d.require(v, f, p, "url")
			case "graphite":
				kinds++
				p := d.object(v, f, monitorGraphiteFields, func(k string, v *yaml.Node, f string) {
					switch k {
					case "target":
						m.Graphite, _ = d.nonEmpty(v, f)
					default:
						d.number(v, f)
					}
				})
				d.require(v, f, p, "target")
				if p != nil && !p["max"] && !p["min"] {
					d.errAt(d.resolve(v), f, "max or min is required")
				}
			case "command":
				kinds++
				m.Command = d.stringList(v, f, true, nil)
			}
		})
		d.require(item, f, present, "name")
		if present != nil && kinds != 1 {
			d.errAt(d.resolve(item), f, "exactly one of http, check, graphite or command is required")
		}
		out = append(out, m)
	})
	return out
}

func (d *decoder) alerts(n *yaml.Node, field string) []Alert {
	out := []Alert{}
	d.list(n, field, "alerts", false, func(_ int, item *yaml.Node, f string) {
		a := Alert{Format: "generic"}
		present := d.object(item, f, alertFields, func(k string, v *yaml.Node, f string) {
			switch k {
			case "webhook":
				if s, ok := d.nonEmpty(v, f); ok {
					if _, err := verifycheck.Parse("http_status(" + s + ")"); err != nil || s[0] == '$' {
						d.errAt(d.resolve(v), f, "must start with https:// or http://")
					}
					a.Webhook = s
				}
			case "format":
				a.Format, _ = d.oneOf(v, f, "format", []string{"slack", "generic"})
			case "renotify":
				if d.duration(v, f) > 0 {
					a.Renotify = d.resolve(v).Value
				}
			}
		})
		d.require(item, f, present, "webhook")
		out = append(out, a)
	})
	return out
}

// checkBlockPromotion: block_promotion_on names monitors of e, or all.
func (d *decoder) checkBlockPromotion(n *yaml.Node, field string, e *Environment) {
	for _, b := range e.BlockPromotionOn {
		if b != "all" && !slices.ContainsFunc(e.Monitors, func(m Monitor) bool { return m.Name == b }) {
			d.errAt(d.resolve(n), field, "no monitor %q in this environment (name monitors, or all)", b)
		}
	}
}
