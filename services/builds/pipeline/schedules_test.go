package pipeline

import (
	"strings"
	"testing"
	"time"
)

func TestParseSchedules(t *testing.T) {
	cfg, err := Parse(file, []byte(`schedules:
  - name: nightly
    cron: "0 3 * * *"
    timezone: Europe/Paris
    branch: main
  - name: weekly
    cron: '@weekly'
steps:
  all: {commands: make}
  scheduled: {commands: make long, when: {event: [cron], cron: nightly}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Schedules) != 2 {
		t.Fatalf("schedules = %+v", cfg.Schedules)
	}
	n, w := cfg.Schedules[0], cfg.Schedules[1]
	if n.Name != "nightly" || n.Cron.String() != "0 3 * * *" || n.Timezone != "Europe/Paris" || n.Location.String() != "Europe/Paris" || n.Branch != "main" {
		t.Errorf("nightly = %+v", n)
	}
	if w.Name != "weekly" || w.Timezone != "UTC" || w.Location != time.UTC || w.Branch != "" {
		t.Errorf("weekly = %+v", w)
	}
	names := func(ctx Context) string {
		var out []string
		for _, s := range cfg.Selected(ctx) {
			out = append(out, s.Name)
		}
		return strings.Join(out, ",")
	}
	if got := names(Context{Event: "push", Branch: "main"}); got != "all" {
		t.Errorf("push runs %s", got)
	}
	if got := names(Context{Event: "cron", Cron: "nightly", Branch: "main"}); got != "all,scheduled" {
		t.Errorf("cron nightly runs %s", got)
	}
	if got := names(Context{Event: "cron", Cron: "weekly", Branch: "main"}); got != "all" {
		t.Errorf("cron weekly runs %s", got)
	}
}

func TestParseSchedulesInvalid(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"bad cron", "schedules:\n  - name: n\n    cron: '61 * * * *'\nsteps: {a: {commands: x}}",
			`.shiploop.yml:3:11: schedules[0].cron: invalid cron expression: minute "61": want 0–59`},
		{"four fields", "schedules:\n  - name: n\n    cron: '* * * *'\nsteps: {a: {commands: x}}",
			`schedules[0].cron: invalid cron expression: "* * * *" has 4 fields`},
		{"never", "schedules:\n  - name: n\n    cron: '0 0 31 2 *'\nsteps: {a: {commands: x}}",
			`never fires`},
		{"time zone", "schedules:\n  - name: n\n    cron: '0 3 * * *'\n    timezone: Europe/Pariss\nsteps: {a: {commands: x}}",
			`.shiploop.yml:4:15: schedules[0].timezone: unknown time zone "Europe/Pariss"`},
		{"local zone", "schedules:\n  - name: n\n    cron: '0 3 * * *'\n    timezone: Local\nsteps: {a: {commands: x}}",
			`unknown time zone "Local"`},
		{"missing cron", "schedules:\n  - name: n\nsteps: {a: {commands: x}}",
			`.shiploop.yml:2:5: schedules[0].cron: missing required field`},
		{"duplicate", "schedules:\n  - {name: n, cron: '@daily'}\n  - {name: n, cron: '@hourly'}\nsteps: {a: {commands: x}}",
			`.shiploop.yml:3:5: schedules[1].name: duplicate schedule name "n" (first at line 2)`},
		{"typo", "schedules:\n  - {name: n, cron: '@daily', timzone: UTC}\nsteps: {a: {commands: x}}",
			`schedules[0].timzone: unknown field (did you mean "timezone"?)`},
		{"bad name", "schedules:\n  - {name: Nightly, cron: '@daily'}\nsteps: {a: {commands: x}}",
			`schedules[0].name: invalid name "Nightly"`},
		{"branch glob", "schedules:\n  - {name: n, cron: '@daily', branch: 'release/*'}\nsteps: {a: {commands: x}}",
			`schedules[0].branch: invalid branch "release/*"`},
		{"unknown descriptor", "schedules:\n  - {name: n, cron: '@often'}\nsteps: {a: {commands: x}}",
			`unknown descriptor "@often"`},
		{"cron event typo", "steps: {a: {commands: x, when: {event: crom}}}",
			`steps.a.when.event: unknown event "crom" (did you mean "cron"?)`},
		{"unknown runbook", "schedules:\n  - {name: n, cron: '@daily', runbook: purge}\nrunbooks: [{name: restart, steps: [{name: s, commands: [x]}]}]\nsteps: {a: {commands: x}}",
			`.shiploop.yml:2:40: schedules[0].runbook: no runbook "purge" in this file's runbooks`},
		{"unknown environment", "schedules:\n  - {name: n, cron: '@daily', runbook: restart, environment: prod}\nrunbooks: [{name: restart, steps: [{name: s, commands: [x]}]}]\nsteps: {a: {commands: x}}",
			`schedules[0].environment: no environment "prod" in this file's environments`},
		{"options without runbook", "schedules:\n  - {name: n, cron: '@daily', options: {a: b}}\nsteps: {a: {commands: x}}",
			`schedules[0].options: options is for a schedule that runs a runbook (runbook: NAME)`},
		{"runbook and branch", "schedules:\n  - {name: n, cron: '@daily', runbook: restart, branch: dev}\nrunbooks: [{name: restart, steps: [{name: s, commands: [x]}]}]\nsteps: {a: {commands: x}}",
			`schedules[0].branch: a runbook schedule runs the default branch's runbook: drop branch`},
		{"bad option name", "schedules:\n  - {name: n, cron: '@daily', runbook: restart, options: {Service: web}}\nrunbooks: [{name: restart, steps: [{name: s, commands: [x]}]}]\nsteps: {a: {commands: x}}",
			`schedules[0].options.Service: invalid option name "Service"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(file, []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse: %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
}

func TestSchedulesSchemaAgrees(t *testing.T) {
	sch := compileSchema(t)
	for _, tc := range []struct {
		yaml  string
		valid bool
	}{
		{"schedules: [{name: n, cron: '0 3 * * *', timezone: Europe/Paris, branch: main}]\nsteps: {a: {commands: x}}", true},
		{"schedules: [{name: n, cron: '@daily'}]\nsteps: {a: {commands: x}}", true},
		{"schedules: [{name: n}]\nsteps: {a: {commands: x}}", false},
		{"schedules: [{name: n, cron: '* * *'}]\nsteps: {a: {commands: x}}", false},
		{"schedules: [{name: n, cron: '@daily', when: x}]\nsteps: {a: {commands: x}}", false},
		{"steps: {a: {commands: x, when: {event: cron, cron: [nightly, '!weekly']}}}", true},
		{"schedules: [{name: n, cron: '@daily', runbook: restart, options: {service: web, drain: true}}]\nrunbooks: [{name: restart, steps: [{name: s, commands: [x]}]}]\nsteps: {a: {commands: x}}", true},
		{"schedules: [{name: n, cron: '@daily', runbook: restart, options: {service: [web]}}]\nrunbooks: [{name: restart, steps: [{name: s, commands: [x]}]}]\nsteps: {a: {commands: x}}", false},
	} {
		_, err := Parse(file, []byte(tc.yaml))
		if (err == nil) != tc.valid {
			t.Errorf("parser valid = %v, want %v: %v\n%s", err == nil, tc.valid, err, tc.yaml)
		}
		inst, err := yamlToJSON([]byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(inst); (err == nil) != tc.valid {
			t.Errorf("schema valid = %v, want %v: %v\n%s", err == nil, tc.valid, err, tc.yaml)
		}
	}
}

func mustCron(t *testing.T, expr string) *Cron {
	t.Helper()
	c, err := ParseCron(expr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCronNext(t *testing.T) {
	utc := func(s string) time.Time {
		tm, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, tc := range []struct{ expr, from, want string }{
		{"* * * * *", "2026-01-01 10:00", "2026-01-01 10:01"},
		{"0 3 * * *", "2026-01-01 03:00", "2026-01-02 03:00"},
		{"0 3 * * *", "2026-01-01 02:59", "2026-01-01 03:00"},
		{"*/15 * * * *", "2026-01-01 10:16", "2026-01-01 10:30"},
		{"0 9-17/4 * * mon-fri", "2026-01-02 17:00", "2026-01-05 09:00"}, // Friday 17:00 -> Monday 09:00
		{"0 9-17/4 * * mon-fri", "2026-01-02 14:00", "2026-01-02 17:00"}, // 9, 13, 17
		{"0 0 1 * *", "2026-01-15 00:00", "2026-02-01 00:00"},
		{"0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"},
		{"0 12 * * 7", "2026-01-01 00:00", "2026-01-04 12:00"},      // 7 is Sunday
		{"0 0 13 * fri", "2026-01-01 00:00", "2026-01-02 00:00"},    // day of month OR day of week
		{"0 0 * jan,jul *", "2026-02-01 00:00", "2026-07-01 00:00"}, // names
		{"@hourly", "2026-01-01 10:30", "2026-01-01 11:00"},
		{"5/20 * * * *", "2026-01-01 10:26", "2026-01-01 10:45"},
	} {
		got := mustCron(t, tc.expr).Next(utc(tc.from))
		if want := utc(tc.want); !got.Equal(want) {
			t.Errorf("%q after %s = %s, want %s", tc.expr, tc.from, got, want)
		}
	}
}

// TestCronAcrossDST: slots are wall-clock times of the schedule's zone. In
// Europe/Paris, clocks go from 02:00 to 03:00 on 2026-03-29 and from 03:00
// back to 02:00 on 2026-10-25.
func TestCronAcrossDST(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	at := func(y int, m time.Month, d, h, mi int) time.Time { return time.Date(y, m, d, h, mi, 0, 0, paris) }
	slots := func(expr string, from time.Time, n int) []string {
		c := mustCron(t, expr)
		var out []string
		for t := from.In(paris); len(out) < n; {
			t = c.Next(t)
			out = append(out, t.UTC().Format("01-02 15:04Z")+"/"+t.Format("15:04 MST"))
		}
		return out
	}
	check := func(name string, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s:\n got %v\nwant %v", name, got, want)
		}
	}
	// 03:00 every day: 02:00 UTC in winter, 01:00 UTC in summer.
	check("nightly in spring", slots("0 3 * * *", at(2026, 3, 27, 12, 0), 3),
		"03-28 02:00Z/03:00 CET", "03-29 01:00Z/03:00 CEST", "03-30 01:00Z/03:00 CEST")
	// 02:30 does not exist on 2026-03-29: no slot that day.
	check("skipped hour", slots("30 2 * * *", at(2026, 3, 28, 12, 0), 2),
		"03-30 00:30Z/02:30 CEST", "03-31 00:30Z/02:30 CEST")
	// 02:30 happens twice on 2026-10-25: one slot, the first.
	check("repeated hour", slots("30 2 * * *", at(2026, 10, 24, 12, 0), 3),
		"10-25 00:30Z/02:30 CEST", "10-26 01:30Z/02:30 CET", "10-27 01:30Z/02:30 CET")
	// Every 30 minutes across the autumn change: the repeated 02:00 and
	// 02:30 fire once.
	check("half-hourly in autumn", slots("*/30 * * * *", at(2026, 10, 25, 1, 0), 4),
		"10-24 23:30Z/01:30 CEST", "10-25 00:00Z/02:00 CEST", "10-25 00:30Z/02:30 CEST", "10-25 02:00Z/03:00 CET")
	// Hourly across the spring change: 02:00 does not exist.
	check("hourly in spring", slots("0 * * * *", at(2026, 3, 29, 0, 30), 3),
		"03-29 00:00Z/01:00 CET", "03-29 01:00Z/03:00 CEST", "03-29 02:00Z/04:00 CEST")
}

func TestCronLatest(t *testing.T) {
	c := mustCron(t, "0 3 * * *")
	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	// Down for a week: one slot, the latest.
	if got, want := c.Latest(now.AddDate(0, 0, -7), now), time.Date(2026, 5, 10, 3, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Latest = %s, want %s", got, want)
	}
	// Nothing since the last slot.
	if got := c.Latest(time.Date(2026, 5, 10, 3, 0, 0, 0, time.UTC), now); !got.IsZero() {
		t.Errorf("Latest after the last slot = %s", got)
	}
	// A slot exactly at now counts.
	if got := c.Latest(now.Add(-time.Minute), now.Add(-9*time.Hour)); !got.IsZero() {
		t.Errorf("Latest with now before after = %s", got)
	}
	m := mustCron(t, "* * * * *")
	if got := m.Latest(now.AddDate(-1, 0, 0), now); !got.Equal(now) {
		t.Errorf("minutely Latest after a year = %s, want %s", got, now)
	}
	y := mustCron(t, "@yearly")
	if got, want := y.Latest(now.AddDate(-3, 0, 0), now), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("yearly Latest = %s, want %s", got, want)
	}
}

// A schedule may run a runbook of the same file, with an environment and
// options, in place of the pipeline.
func TestParseRunbookSchedule(t *testing.T) {
	cfg, err := Parse(file, []byte(`schedules:
  - name: nightly-refresh
    cron: "30 2 * * *"
    runbook: refresh
    environment: staging
    options: {rows: 1000, anonymise: true}
environments:
  - {name: staging, steps: [{name: d, commands: [x]}]}
runbooks:
  - name: refresh
    options: [{name: rows, type: int}, {name: anonymise, type: bool}]
    steps: [{name: copy, commands: [x]}]
steps: {a: {commands: x}}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Schedules[0]
	if s.Runbook != "refresh" || s.Environment != "staging" || s.Options["rows"] != "1000" || s.Options["anonymise"] != "true" || s.Branch != "" {
		t.Fatalf("schedule = %+v", s)
	}
}
