package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// verdictFields is the key fields, with their verdict, of the events that
// tell how a change ended: gates, test runs, deploys (verification checks
// included), rollbacks and error tracking. ok is false for other payloads.
func verdictFields(m proto.Message) (string, bool) {
	switch d := m.(type) {
	case *eventsv1.GateEvaluated:
		s := fmt.Sprintf("build=%s %s", short8(d.GetBuildId()), enumWord(d.GetStatus().String(), "GATE_STATUS_"))
		if d.GetVersion() != "" {
			s += " version=" + d.GetVersion()
		}
		if d.GetSummary() != "" {
			s += " " + strconv.Quote(d.GetSummary())
		}
		return s, true
	case *eventsv1.TestRunStarted:
		return fmt.Sprintf("build=%s run=%s version=%s", short8(d.GetBuildId()), short8(d.GetRunId()), d.GetVersion()), true
	case *eventsv1.TestRunFinished:
		c := d.GetCounts()
		s := fmt.Sprintf("build=%s %s tests=%d passed=%d failed=%d errors=%d skipped=%d", short8(d.GetBuildId()),
			enumWord(d.GetStatus().String(), "TEST_RUN_STATUS_"), c.GetTests(), c.GetPassed(), c.GetFailed(), c.GetErrors(), c.GetSkipped())
		if c.GetFlaky() > 0 {
			s += fmt.Sprintf(" flaky=%d", c.GetFlaky())
		}
		if c.GetQuarantined() > 0 {
			s += fmt.Sprintf(" quarantined=%d", c.GetQuarantined())
		}
		if d.GetDuration() != nil {
			s += " in " + d.GetDuration().AsDuration().Round(time.Millisecond).String()
		}
		if d.GetError() != "" {
			s += " error=" + strconv.Quote(d.GetError())
		}
		return s, true
	case *eventsv1.DeployStarted:
		s := deployRef(d.GetDeploy())
		if d.GetPreviousRelease() != "" {
			s += " previous=" + d.GetPreviousRelease()
		}
		if d.GetForced() {
			s += " forced"
		}
		return s + " started", true
	case *eventsv1.DeployPending:
		s := deployRef(d.GetDeploy()) + " " + enumWord(d.GetStatus().String(), "DEPLOY_STATUS_")
		if d.GetApprovalsRequired() > 0 {
			s += fmt.Sprintf(" approvals=%d/%d", d.GetApprovalsGiven(), d.GetApprovalsRequired())
		}
		return withReason(s, d.GetReason()), true
	case *eventsv1.DeployApproved:
		return fmt.Sprintf("%s approved by %s approvals=%d/%d", deployRef(d.GetDeploy()), d.GetApprover(), d.GetApprovalsGiven(), d.GetApprovalsRequired()), true
	case *eventsv1.DeployFinished:
		s := deployRef(d.GetDeploy()) + " " + enumWord(d.GetStatus().String(), "DEPLOY_STATUS_")
		if d.GetDuration() != nil {
			s += " in " + d.GetDuration().AsDuration().Round(time.Millisecond).String()
		}
		s = withReason(s, d.GetReason())
		// Verification: each check's verdict.
		var checks []string
		for _, c := range d.GetChecks() {
			cs := fmt.Sprintf("%s=%s", c.GetCheck(), enumWord(c.GetStatus().String(), "CHECK_STATUS_"))
			if c.GetReason() != "" {
				cs += " (" + c.GetReason() + ")"
			}
			checks = append(checks, cs)
		}
		if len(checks) > 0 {
			s += " checks: " + strings.Join(checks, "; ")
		}
		return s, true
	case *eventsv1.DeployRolledBack:
		s := fmt.Sprintf("%s rolled back %s → %s", d.GetDeploy().GetEnvironment(), d.GetFromRelease(), d.GetToRelease())
		if d.GetRolledBackDeployId() != "" {
			s += " (deploy=" + short8(d.GetRolledBackDeployId()) + ")"
		}
		if d.GetCause() != "" {
			s += " cause=" + strconv.Quote(d.GetCause())
		}
		return s, true
	case *eventsv1.TicketShipped:
		return fmt.Sprintf("%s ticket=%s commit=%s", deployRef(d.GetDeploy()), d.GetTicket(), short(d.GetCommit())), true
	case *errortrackv1.IssueOpened:
		return issueLine("new", d.GetIssue(), d.GetRelease(), d.GetEnvironment()), true
	case *errortrackv1.IssueRegressed:
		s := issueLine("regressed", d.GetIssue(), d.GetRelease(), d.GetEnvironment())
		if d.GetResolvedInRelease() != "" {
			s += " resolved_in=" + d.GetResolvedInRelease()
		}
		return s, true
	case *errortrackv1.IssueResolved:
		s := fmt.Sprintf("issue #%d %s %s", d.GetIssue().GetIssueId(), enumWord(d.GetStatus().String(), "ISSUE_STATUS_"), strconv.Quote(d.GetIssue().GetTitle()))
		if d.GetResolvedInRelease() != "" {
			s += " release=" + d.GetResolvedInRelease()
		}
		return s, true
	case *errortrackv1.ReleaseCounted:
		return fmt.Sprintf("project=%s env=%s release=%s errors=%d transactions=%d sessions=%d", d.GetProject(), d.GetEnvironment(), d.GetRelease(),
			d.GetErrors(), d.GetTransactions(), d.GetSessions()), true
	}
	return "", false
}

// deployRef is "env=production release=1.2.0 deploy=…": where and what.
func deployRef(r *eventsv1.DeployRef) string {
	s := fmt.Sprintf("env=%s release=%s", r.GetEnvironment(), r.GetRelease())
	if r.GetKind() != "" && r.GetKind() != "deploy" {
		s += " kind=" + r.GetKind()
	}
	return s + " deploy=" + short8(r.GetDeployId())
}

func withReason(s, reason string) string {
	if reason == "" {
		return s
	}
	return s + " reason=" + strconv.Quote(reason)
}

func issueLine(what string, is *errortrackv1.IssueRef, release, env string) string {
	s := fmt.Sprintf("issue #%d %s %s", is.GetIssueId(), what, strconv.Quote(is.GetTitle()))
	if release != "" {
		s += " release=" + release
	}
	if env != "" {
		s += " env=" + env
	}
	return s
}

// enumWord is an enum value's name without its prefix, in lower case:
// GATE_STATUS_PASSED → passed.
func enumWord(name, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}
