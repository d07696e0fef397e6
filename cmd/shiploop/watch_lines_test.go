package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestWatchVerdictLines: watch prints, for each event that tells how a
// change ended, its verdict and where: gate (passed/failed + summary), test
// run (status and counts), deploys (environment, release, status, reason,
// verification checks), the rollback (from → to, cause), and issues
// (title, release).
func TestWatchVerdictLines(t *testing.T) {
	prod := &eventsv1.DeployRef{DeployId: "0199-deploy-0000bad1", Repository: "acme/web", Environment: "production", Release: "1.5.0", Kind: "deploy"}
	rb := &eventsv1.DeployRef{DeployId: "0199-deploy-0000rb01", Repository: "acme/web", Environment: "production", Release: "1.4.0", Kind: "rollback"}
	issue := &errortrackv1.IssueRef{IssueId: 7, Project: "web", Title: "KeyError: 'user'"}
	for _, tt := range []struct {
		typ  string
		data proto.Message
		want string
	}{
		{"gate.evaluated", &eventsv1.GateEvaluated{BuildId: "b-0000000000042", Status: eventsv1.GateStatus_GATE_STATUS_FAILED, Version: "1.5.0", Summary: "coverage 71% < 80%"},
			`build=00000042 failed version=1.5.0 "coverage 71% < 80%"`},
		{"gate.evaluated", &eventsv1.GateEvaluated{BuildId: "b-42", Status: eventsv1.GateStatus_GATE_STATUS_PASSED, Summary: "all 3 conditions met"},
			`build=b-42 passed "all 3 conditions met"`},
		{"testrun.finished", &eventsv1.TestRunFinished{BuildId: "b-42", Status: eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED,
			Counts: &eventsv1.TestCounts{Tests: 120, Passed: 117, Failed: 2, Skipped: 1, Flaky: 1}, Duration: durationpb.New(3500 * time.Millisecond)},
			`build=b-42 failed tests=120 passed=117 failed=2 errors=0 skipped=1 flaky=1 in 3.5s`},
		{"deploy.started", &eventsv1.DeployStarted{Deploy: prod, PreviousRelease: "1.4.0"},
			`env=production release=1.5.0 deploy=0000bad1 previous=1.4.0 started`},
		{"deploy.pending", &eventsv1.DeployPending{Deploy: prod, Status: eventsv1.DeployStatus_DEPLOY_STATUS_AWAITING_APPROVAL, Reason: "needs 1 approval", ApprovalsRequired: 1},
			`env=production release=1.5.0 deploy=0000bad1 awaiting_approval approvals=0/1 reason="needs 1 approval"`},
		{"deploy.finished", &eventsv1.DeployFinished{Deploy: prod, Status: eventsv1.DeployStatus_DEPLOY_STATUS_FAILED, Reason: "verification failed: error_rate",
			Duration: durationpb.New(90 * time.Second), Checks: []*eventsv1.CheckResult{
				{Check: "health", Status: eventsv1.CheckStatus_CHECK_STATUS_SUCCESS},
				{Check: "error_rate", Status: eventsv1.CheckStatus_CHECK_STATUS_FAILURE, Reason: "12 errors in 1.5.0, 0 before"}}},
			`env=production release=1.5.0 deploy=0000bad1 failed in 1m30s reason="verification failed: error_rate" checks: health=success; error_rate=failure (12 errors in 1.5.0, 0 before)`},
		{"deploy.rolled_back", &eventsv1.DeployRolledBack{Deploy: rb, FromRelease: "1.5.0", ToRelease: "1.4.0", Cause: "error_rate: 12 errors", RolledBackDeployId: prod.DeployId},
			`production rolled back 1.5.0 → 1.4.0 (deploy=0000bad1) cause="error_rate: 12 errors"`},
		{"deploy.finished", &eventsv1.DeployFinished{Deploy: rb, Status: eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED},
			`env=production release=1.4.0 kind=rollback deploy=0000rb01 succeeded`},
		{"errortrack.issue.opened", &errortrackv1.IssueOpened{Issue: issue, Release: "web@1.5.0", Environment: "production"},
			`issue #7 new "KeyError: 'user'" release=web@1.5.0 env=production`},
		{"errortrack.issue.regressed", &errortrackv1.IssueRegressed{Issue: issue, Release: "web@1.5.0", Environment: "production", ResolvedInRelease: "web@1.4.0"},
			`issue #7 regressed "KeyError: 'user'" release=web@1.5.0 env=production resolved_in=web@1.4.0`},
		{"errortrack.issue.resolved", &errortrackv1.IssueResolved{Issue: issue, Status: errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED, ResolvedInRelease: "web@1.5.1"},
			`issue #7 resolved "KeyError: 'user'" release=web@1.5.1`},
	} {
		data, err := anypb.New(tt.data)
		if err != nil {
			t.Fatal(err)
		}
		ev := &eventsv1.Event{Type: "dev.shiploop." + tt.typ + ".v1", Repository: "acme/web", Subject: "subject-only", Time: timestamppb.Now(), Data: data}
		line := formatEvent(ev)
		if !strings.HasSuffix(line, "acme/web                 "+tt.want) || !strings.Contains(line, tt.typ) {
			t.Errorf("%s line = %q\nwant it to end with %q", tt.typ, line, tt.want)
		}
	}
}
