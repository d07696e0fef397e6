package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

func TestMonitorCLIUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"monitor"}, "say what: ls, silence or unsilence"},
		{[]string{"monitor", "ls"}, "monitor ls takes REPO [ENV]"},
		{[]string{"monitor", "silence", "acme/web", "production"}, "needs --for"},
		{[]string{"monitor", "silence", "acme/web", "production", "--for", "2h"}, "needs --for (e.g. 2h) and --reason"},
		{[]string{"monitor", "unsilence", "x"}, "takes a silence ID"},
		{[]string{"monitor", "mute"}, `unknown monitor command "mute"`},
	} {
		code, _, errOut := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestPrintMonitors(t *testing.T) {
	var b bytes.Buffer
	since := timestamppb.New(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC))
	printMonitors(&b, &deploysv1.ListMonitorsResponse{
		Monitors: []*deploysv1.Monitor{{Environment: "production", Name: "web-up", Check: "http_status(https://app/healthz) == 200",
			State: eventsv1.MonitorState_MONITOR_STATE_CRITICAL, Since: since, Detail: "GET https://app/healthz answered 503", SilenceId: 3, BlocksPromotion: true}},
		Silences: []*deploysv1.MonitorSilence{{Id: 3, Environment: "production", Monitor: "web-up", EndsAt: since, CreatedBy: "ann", Reason: "maintenance"}},
	})
	out := b.String()
	for _, want := range []string{"web-up", "CRITICAL (silenced #3) [blocks promotion]", "answered 503", "#3", "maintenance"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
