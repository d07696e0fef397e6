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

func TestRunbookCLIUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"runbook"}, "say what: ls, run, history, show or logs"},
		{[]string{"runbook", "ls"}, "runbook ls takes one REPO"},
		{[]string{"runbook", "run", "acme/web"}, "runbook run takes REPO NAME"},
		{[]string{"runbook", "history"}, "runbook history takes REPO [NAME]"},
		{[]string{"runbook", "show"}, "runbook show takes one RUN_ID"},
		{[]string{"runbook", "run", "acme/web", "restart", "--option", "tier"}, "want name=value"},
		{[]string{"runbook", "start"}, `unknown runbook command "start"`},
	} {
		code, _, errOut := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestOptionFlag(t *testing.T) {
	o := optionFlag{}
	for _, v := range []string{"tier=web", "note=a=b, c", "empty="} {
		if err := o.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if o["tier"] != "web" || o["note"] != "a=b, c" || o["empty"] != "" || len(o) != 3 {
		t.Fatalf("options %v", o)
	}
	if err := o.Set("=x"); err == nil {
		t.Error("an option without a name was taken")
	}
}

func TestPrintRunbookRuns(t *testing.T) {
	at := timestamppb.New(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC))
	runs := []*eventsv1.RunbookRun{
		{RunId: "r2", Runbook: "refresh-staging", Kind: "data", FromEnvironment: "production", Environment: "staging", By: "ops-oncall", CreatedAt: at, Status: "failed", Reason: "step copy exited 1"},
		{RunId: "r1", Runbook: "restart", Kind: "task", Environment: "production", By: "ann", CreatedAt: at, Options: map[string]string{"tier": "web", "drain": "true"}, Status: "succeeded"},
	}
	var b bytes.Buffer
	printRunbookRuns(&b, runs)
	out := b.String()
	for _, want := range []string{"RUN", "BY", "OPTIONS", "RESULT", "production -> staging", "ops-oncall", "failed (step copy exited 1)", "drain=true tier=web", "ann"} {
		if !strings.Contains(out, want) {
			t.Errorf("history lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	describeRunbookRun(&b, runs[1])
	if out := b.String(); !strings.Contains(out, "by:          ann") || !strings.Contains(out, "result:      succeeded") || strings.Contains(out, "finished:") {
		t.Errorf("show:\n%s", out)
	}
}

func TestPrintRunbooks(t *testing.T) {
	var b bytes.Buffer
	printRunbooks(&b, &deploysv1.ListRunbooksResponse{Version: "1.4.0", BuildId: "b12", Runbooks: []*deploysv1.Runbook{
		{Name: "restart", Kind: "task", Environment: "production", Steps: []string{"restart"}, Options: []*deploysv1.RunbookOption{
			{Name: "service", Type: "enum", Values: []string{"web", "worker"}, Required: true},
			{Name: "drain", Type: "bool", Default: "false", HasDefault: true}}},
		{Name: "refresh-staging", Kind: "data", FromEnvironment: "production", ToEnvironment: "staging", Steps: []string{"dump", "restore"}},
	}})
	out := b.String()
	for _, want := range []string{"NAME", "OPTIONS", "service:enum(web|worker) required, drain:bool =false", "production -> staging", "dump,restore",
		"from the .shiploop.yml of 1.4.0 (build b12)"} {
		if !strings.Contains(out, want) {
			t.Errorf("runbook ls lacks %q:\n%s", want, out)
		}
	}
}
