package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shiploop/shiploop/pkg/verifycheck"
)

// Monitor is one check an environment keeps running after its deploys
// (environments[].monitors[]): the verification check kinds, run every
// Every by the deploys service for as long as the release whose file
// declares it runs there.
type Monitor struct {
	Name  string
	Check Check // Kind http_status, graphite, errortrack.* ...; Kind "command" runs Command
	// Warn, for graphite monitors with warn:, is the threshold past which
	// the monitor is WARNING (Check's is CRITICAL).
	Warn    *Check
	Command []string // command monitors (run on an agent)
	Every   time.Duration
	// FailAfter consecutive failed checks make the monitor CRITICAL
	// (default 1); fewer leave its state as it was.
	FailAfter int
}

// Alert is where the state changes of an environment's monitors are sent.
type Alert struct {
	Webhook string // may hold a token: never log it in full (RedactURL)
	Format  string // slack ({"text": ...}, Mattermost too) or generic
	// Renotify sends a monitor's CRITICAL again after this long while it
	// lasts (0: once per change).
	Renotify time.Duration
}

// BlocksPromotion reports whether monitor name of e, when CRITICAL,
// refuses promotion to the next environment (block_promotion_on).
func (e *Environment) BlocksPromotion(name string) bool {
	return slices.Contains(e.BlockPromotionOn, "all") || slices.Contains(e.BlockPromotionOn, name)
}

// RedactURL shows a webhook URL without what may be a secret: scheme and
// host only, e.g. "https://hooks.slack.com/…".
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "(webhook)"
	}
	return u.Scheme + "://" + u.Hostname() + "/…"
}

var (
	monitorFields = []string{"name", "http", "check", "graphite", "command", "every", "fail_after"}
	exprRE        = regexp.MustCompile(`^(.*[^<>=!\s])\s*(<=|>=|==|!=|<|>)\s*([-+0-9.eE]+)\s*$`)
)

// ParseCondition reads "METRIC OP NUMBER" (a monitor's check:).
func ParseCondition(s string) (Check, error) {
	m := exprRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Check{}, fmt.Errorf("expected METRIC OPERATOR NUMBER, e.g. \"errortrack.error_rate_ratio <= 2\", got %q", s)
	}
	vc, err := verifycheck.Parse(m[1])
	if err != nil {
		return Check{}, err
	}
	th, err := strconv.ParseFloat(m[3], 64)
	if err != nil {
		return Check{}, fmt.Errorf("expected a number, got %q", m[3])
	}
	c := Check{Kind: vc.Kind, Target: vc.Target, Arg: vc.Arg, Op: m[2], Threshold: th}
	if strings.HasPrefix(c.Kind, "errortrack.") {
		// Between deploys a quiet night is no failure, and errors under an
		// older release are not the monitor's business.
		c.OnReleaseMismatch, c.NoEvidence = "ignore", "pass"
	}
	c.Text = fmt.Sprintf("%s %s %s", checkName(c), c.Op, strconv.FormatFloat(th, 'g', -1, 64))
	return c, nil
}

func (r reader) monitors(n *yaml.Node, field string) ([]Monitor, error) {
	rn := resolve(n)
	if rn == nil || rn.Kind != yaml.SequenceNode {
		return nil, r.errf(rn, field, "expected a list of monitors")
	}
	var out []Monitor
	seen := map[string]bool{}
	for i, item := range rn.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		m, err := r.monitor(item, f)
		if err != nil {
			return nil, err
		}
		if seen[m.Name] {
			return nil, r.errf(resolve(item), f+".name", "duplicate monitor name %q", m.Name)
		}
		seen[m.Name] = true
		out = append(out, m)
	}
	return out, nil
}

func (r reader) monitor(n *yaml.Node, field string) (Monitor, error) {
	m := Monitor{Every: time.Minute, FailAfter: 1}
	rn := resolve(n)
	if rn == nil || rn.Kind != yaml.MappingNode {
		return m, r.errf(rn, field, "expected a monitor (name, http|check|graphite|command, every)")
	}
	kinds := 0
	for _, p := range pairs(n, 0) {
		f := field + "." + p[0].Value
		var err error
		switch p[0].Value {
		case "name":
			if m.Name, err = r.str(p[1], f); err == nil && !nameRE.MatchString(m.Name) {
				err = r.errf(resolve(p[1]), f, "invalid name %q", m.Name)
			}
		case "every":
			if m.Every, err = r.duration(p[1], f); err == nil && m.Every < time.Second {
				err = r.errf(resolve(p[1]), f, "at least 1s")
			}
		case "fail_after":
			var s string
			if s, err = r.str(p[1], f); err == nil {
				if m.FailAfter, err = strconv.Atoi(s); err != nil || m.FailAfter < 1 || m.FailAfter > 100 {
					err = r.errf(resolve(p[1]), f, "expected a whole number from 1 to 100, got %q", s)
				}
			}
		case "check":
			kinds++
			var s string
			if s, err = r.str(p[1], f); err == nil {
				if m.Check, err = ParseCondition(s); err != nil {
					err = r.errf(resolve(p[1]), f, "%v", err)
				}
			}
		case "http":
			kinds++
			m.Check = Check{Kind: "http_status", Op: "==", Threshold: 200}
			for _, q := range pairs(p[1], 0) {
				var s string
				if s, err = r.str(q[1], f+"."+q[0].Value); err != nil {
					break
				}
				switch q[0].Value {
				case "url":
					m.Check.Target = s
					if _, perr := verifycheck.Parse("http_status(" + s + ")"); perr != nil {
						err = r.errf(resolve(q[1]), f+".url", "%v", perr)
					}
				case "expect":
					if m.Check.Threshold, err = strconv.ParseFloat(s, 64); err != nil || m.Check.Threshold < 100 || m.Check.Threshold > 599 {
						err = r.errf(resolve(q[1]), f+".expect", "expected an HTTP status code, got %q", s)
					}
				default:
					err = r.errf(q[0], f+"."+q[0].Value, "unknown field (known fields: expect, url)")
				}
				if err != nil {
					break
				}
			}
			if err == nil && m.Check.Target == "" {
				err = r.errf(resolve(p[1]), f+".url", "required")
			}
		case "graphite":
			kinds++
			m.Check = Check{Kind: "graphite"}
			var warn *float64
			for _, q := range pairs(p[1], 0) {
				var s string
				if s, err = r.str(q[1], f+"."+q[0].Value); err != nil {
					break
				}
				switch q[0].Value {
				case "target":
					m.Check.Target = s
				case "max", "min", "warn":
					v, perr := strconv.ParseFloat(s, 64)
					if perr != nil {
						err = r.errf(resolve(q[1]), f+"."+q[0].Value, "expected a number, got %q", s)
						break
					}
					switch q[0].Value {
					case "max":
						m.Check.Op, m.Check.Threshold = "<=", v
					case "min":
						m.Check.Op, m.Check.Threshold = ">=", v
					default:
						warn = &v
					}
				default:
					err = r.errf(q[0], f+"."+q[0].Value, "unknown field (known fields: max, min, target, warn)")
				}
				if err != nil {
					break
				}
			}
			switch {
			case err != nil:
			case m.Check.Target == "":
				err = r.errf(resolve(p[1]), f+".target", "required")
			case m.Check.Op == "":
				err = r.errf(resolve(p[1]), f, "max or min is required")
			case warn != nil:
				w := m.Check
				w.Threshold = *warn
				w.Text = fmt.Sprintf("%s %s %s", checkName(w), w.Op, strconv.FormatFloat(w.Threshold, 'g', -1, 64))
				m.Warn = &w
			}
		case "command":
			kinds++
			m.Check = Check{Kind: "command"}
			m.Command, err = r.strs(p[1], f)
			if err == nil && len(m.Command) == 0 {
				err = r.errf(resolve(p[1]), f, "at least one command is required")
			}
		default:
			err = r.errf(p[0], f, "unknown field (known fields: %s)", strings.Join(monitorFields, ", "))
		}
		if err != nil {
			return m, err
		}
	}
	if m.Name == "" {
		return m, r.errf(rn, field+".name", "required")
	}
	if kinds != 1 {
		return m, r.errf(rn, field, "exactly one of http, check, graphite or command is required")
	}
	if m.Check.Text == "" {
		switch m.Check.Kind {
		case "command":
			m.Check.Text = "command: " + strings.Join(m.Command, "; ")
		default:
			m.Check.Text = fmt.Sprintf("%s %s %s", checkName(m.Check), m.Check.Op, strconv.FormatFloat(m.Check.Threshold, 'g', -1, 64))
		}
	}
	return m, nil
}

func (r reader) alerts(n *yaml.Node, field string) ([]Alert, error) {
	rn := resolve(n)
	if rn == nil || rn.Kind != yaml.SequenceNode {
		return nil, r.errf(rn, field, "expected a list of alerts")
	}
	var out []Alert
	for i, item := range rn.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		a := Alert{Format: "generic"}
		if ri := resolve(item); ri == nil || ri.Kind != yaml.MappingNode {
			return nil, r.errf(ri, f, "expected an alert (webhook, format)")
		}
		for _, q := range pairs(item, 0) {
			qf := f + "." + q[0].Value
			var err error
			switch q[0].Value {
			case "webhook":
				if a.Webhook, err = r.str(q[1], qf); err == nil && !strings.HasPrefix(a.Webhook, "https://") && !strings.HasPrefix(a.Webhook, "http://") {
					err = r.errf(resolve(q[1]), qf, "must start with https:// or http://")
				}
			case "format":
				if a.Format, err = r.str(q[1], qf); err == nil && a.Format != "slack" && a.Format != "generic" {
					err = r.errf(resolve(q[1]), qf, "expected slack or generic, got %q", a.Format)
				}
			case "renotify":
				a.Renotify, err = r.duration(q[1], qf)
			default:
				err = r.errf(q[0], qf, "unknown field (known fields: format, renotify, webhook)")
			}
			if err != nil {
				return nil, err
			}
		}
		if a.Webhook == "" {
			return nil, r.errf(resolve(item), f+".webhook", "required")
		}
		out = append(out, a)
	}
	return out, nil
}
