// Schedules: pipelines that run at times of day, not on a push.

package pipeline

import (
	"strings"
	"time"
	_ "time/tzdata" // time zones resolve on hosts and images without a zoneinfo database

	"go.yaml.in/yaml/v3"
)

// Schedule runs the pipeline of a branch's head at every slot of a cron
// expression, with the event cron (when: {event: [cron]}, and
// when: {cron: [name]} to select by schedule).
//
//	schedules:
//	  - name: nightly
//	    cron: "0 3 * * *"       # 5 fields, see Cron
//	    timezone: Europe/Paris  # IANA name; default UTC
//	    branch: main            # default: the repository's default branch
type Schedule struct {
	Name     string
	Cron     *Cron
	Timezone string         // as written; "UTC" when the file does not say
	Location *time.Location // Timezone loaded
	Branch   string         // "" means the repository's default branch
	// Runbook, when set, is a runbook of the same file the schedule runs
	// (through deploys) instead of the pipeline; Environment overrides
	// its environment and Options are its options as written.
	Runbook     string
	Environment string
	Options     map[string]string
}

var scheduleFields = []string{"name", "cron", "timezone", "branch", "runbook", "environment", "options"}

// maxSchedules bounds the schedules of one file.
const maxSchedules = 50

func (d *decoder) schedules(n *yaml.Node, field string) []Schedule {
	out := []Schedule{}
	names := map[string]int{}
	d.list(n, field, "schedules", false, func(i int, item *yaml.Node, f string) {
		if i == maxSchedules {
			d.errAt(d.resolve(item), f, "more than %d schedules", maxSchedules)
		}
		s := d.schedule(item, f)
		if s.Name != "" {
			if line, dup := names[s.Name]; dup {
				d.errAt(d.resolve(item), join(f, "name"), "duplicate schedule name %q (first at line %d)", s.Name, line)
			}
			names[s.Name] = d.resolve(item).Line
		}
		out = append(out, s)
	})
	return out
}

func (d *decoder) schedule(n *yaml.Node, field string) Schedule {
	s := Schedule{Timezone: "UTC", Location: time.UTC}
	present := d.object(n, field, scheduleFields, func(k string, v *yaml.Node, f string) {
		switch k {
		case "name":
			if name, ok := d.str(v, f); ok {
				if msg := checkName(name); msg != "" {
					d.errAt(d.resolve(v), f, "%s", msg)
					return
				}
				s.Name = name
			}
		case "cron":
			// Unquoted "0 3 * * *" is a string; "@daily" must be quoted in
			// YAML anyway ("@" cannot start a plain scalar).
			if expr, ok := d.nonEmpty(v, f); ok {
				c, err := ParseCron(expr)
				if err != nil {
					d.errAt(d.resolve(v), f, "invalid cron expression: %v", err)
					return
				}
				s.Cron = c
			}
		case "timezone":
			if tz, ok := d.nonEmpty(v, f); ok {
				// time.LoadLocation also takes "Local" and file paths; a
				// schedule names an IANA zone.
				if tz == "Local" || strings.HasPrefix(tz, "/") || strings.Contains(tz, "..") {
					d.errAt(d.resolve(v), f, "unknown time zone %q: use an IANA name such as Europe/Paris or UTC", tz)
					return
				}
				loc, err := time.LoadLocation(tz)
				if err != nil {
					d.errAt(d.resolve(v), f, "unknown time zone %q: use an IANA name such as Europe/Paris or UTC", tz)
					return
				}
				s.Timezone, s.Location = tz, loc
			}
		case "runbook":
			if name, ok := d.nonEmpty(v, f); ok {
				d.setPos(f, v)
				s.Runbook = name
			}
		case "environment":
			if e, ok := d.nonEmpty(v, f); ok {
				d.setPos(f, v)
				s.Environment = e
			}
		case "options":
			s.Options = d.vars(v, f)
			for k := range s.Options {
				if !optionName(k) {
					d.errAtField(join(f, k), "invalid option name %q: lowercase letters, digits and _, starting with a letter", k)
				}
			}
		case "branch":
			if b, ok := d.nonEmpty(v, f); ok {
				if strings.ContainsAny(b, "*?[ ~^:\\") || strings.HasPrefix(b, "-") || strings.HasPrefix(b, "refs/") || strings.Contains(b, "..") {
					d.errAt(d.resolve(v), f, "invalid branch %q: name one branch, such as main", b)
					return
				}
				s.Branch = b
			}
		}
	})
	d.require(n, field, present, "name", "cron")
	if present != nil && s.Runbook == "" {
		for _, k := range []string{"environment", "options"} {
			if present[k] {
				d.errAtField(join(field, k), "%s is for a schedule that runs a runbook (runbook: NAME)", k)
			}
		}
	}
	if s.Runbook != "" && s.Branch != "" {
		d.errAtField(join(field, "branch"), "a runbook schedule runs the default branch's runbook: drop branch")
	}
	return s
}

// checkScheduleRefs checks, once the whole file is read, that each
// runbook schedule names a runbook and an environment of the file.
func (d *decoder) checkScheduleRefs(c *Config) {
	envs := map[string]bool{}
	for _, e := range c.Environments {
		envs[e.Name] = true
	}
	for i, s := range c.Schedules {
		f := index("schedules", i)
		if s.Runbook != "" && !d.runbookNames[s.Runbook] {
			d.errAtField(join(f, "runbook"), "no runbook %q in this file's runbooks", s.Runbook)
		}
		if s.Environment != "" && !envs[s.Environment] {
			d.errAtField(join(f, "environment"), "no environment %q in this file's environments", s.Environment)
		}
	}
}
