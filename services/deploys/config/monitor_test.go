package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseMonitors(t *testing.T) {
	cfg, err := Parse(".shiploop.yml", []byte(`
environments:
  - name: production
    steps: {deploy: {commands: ./deploy.sh}}
    block_promotion_on: [web-up]
    monitors:
      - {name: web-up, http: {url: "https://example.com/healthz", expect: 200}, every: 30s, fail_after: 2}
      - {name: errors, check: "errortrack.error_rate_ratio <= 2", every: 1m}
      - {name: probe, check: "http_status(https://example.com/?a=b) == 204"}
      - {name: latency, graphite: {target: "stats.timers.web.p95", max: 250, warn: 200}, every: 1m}
      - {name: disk, command: ["./check-disk.sh"], every: 5m}
    alerts:
      - {webhook: "https://hooks.slack.com/services/T/B/secret", format: slack, renotify: 4h}
      - {webhook: "https://ops.example.com/hook?token=x"}
`))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Environments[0]
	if len(e.Monitors) != 5 || len(e.Alerts) != 2 {
		t.Fatalf("monitors %d alerts %d", len(e.Monitors), len(e.Alerts))
	}
	m := e.Monitors[0]
	if m.Name != "web-up" || m.Every != 30*time.Second || m.FailAfter != 2 || m.Check.Kind != "http_status" || m.Check.Op != "==" || m.Check.Threshold != 200 || m.Check.Target != "https://example.com/healthz" {
		t.Errorf("web-up: %+v", m)
	}
	if c := e.Monitors[1].Check; c.Kind != "errortrack.error_rate_ratio" || c.Op != "<=" || c.Threshold != 2 || e.Monitors[1].FailAfter != 1 {
		t.Errorf("errors: %+v", c)
	}
	if c := e.Monitors[2].Check; c.Target != "https://example.com/?a=b" || c.Op != "==" || c.Threshold != 204 || e.Monitors[2].Every != time.Minute {
		t.Errorf("probe: %+v", c)
	}
	if m := e.Monitors[3]; m.Check.Kind != "graphite" || m.Check.Op != "<=" || m.Check.Threshold != 250 || m.Warn == nil || m.Warn.Threshold != 200 {
		t.Errorf("latency: %+v", m)
	}
	if m := e.Monitors[4]; m.Check.Kind != "command" || m.Command[0] != "./check-disk.sh" || m.Every != 5*time.Minute {
		t.Errorf("disk: %+v", m)
	}
	if a := e.Alerts[0]; a.Format != "slack" || a.Renotify != 4*time.Hour {
		t.Errorf("alert: %+v", a)
	}
	if a := e.Alerts[1]; a.Format != "generic" {
		t.Errorf("alert: %+v", a)
	}
	if !e.BlocksPromotion("web-up") || e.BlocksPromotion("errors") {
		t.Error("block_promotion_on")
	}
	if got := RedactURL(e.Alerts[0].Webhook); got != "https://hooks.slack.com/…" || strings.Contains(got, "secret") {
		t.Errorf("RedactURL = %q", got)
	}
}

func TestParseMonitorErrors(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{`monitors: [{name: a, every: 1m}]`, "exactly one of"},
		{`monitors: [{name: a, check: "errortrack.nope <= 2"}]`, "unknown check"},
		{`monitors: [{name: a, check: "errortrack.issues"}]`, "METRIC OPERATOR NUMBER"},
		{`monitors: [{name: a, http: {url: "ftp://x"}}]`, "http://"},
		{`monitors: [{name: a, graphite: {target: x}}]`, "max or min"},
		{`monitors: [{name: a, http: {url: "https://x"}, fail_after: 0}]`, "fail_after"},
		{`monitors: [{name: a, http: {url: "https://x"}}, {name: a, http: {url: "https://y"}}]`, "duplicate monitor"},
		{`alerts: [{webhook: "https://x", format: teams}]`, "slack or generic"},
		{`block_promotion_on: [nope]`, `no monitor "nope"`},
	} {
		_, err := Parse(".shiploop.yml", []byte("environments:\n  - name: prod\n    steps: {d: {commands: x}}\n    "+tc.env+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.env, err, tc.want)
		}
	}
}
