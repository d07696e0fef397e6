package cdevents

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/cdevents/inbound"
)

// SpecVersion is the CDEvents release the bridge speaks.
const SpecVersion = "0.5.1"

// GateEvaluatedType is the custom event for a quality-gate verdict, which
// CDEvents v0.5.1 has no type for (approval.* is still a 0.6 draft).
const GateEvaluatedType = "dev.cdeventsx.shiploop-gate.evaluated.0.1.0"

// CDEvent is one CDEvents v0.5.1 event.
type CDEvent struct {
	Context    Context `json:"context"`
	Subject    Subject `json:"subject"`
	CustomData any     `json:"customData,omitempty"`
}

// Context is the CDEvents context.
type Context struct {
	SpecVersion string `json:"specversion"`
	ID          string `json:"id"`
	Source      string `json:"source"`
	Type        string `json:"type"`
	Timestamp   string `json:"timestamp"`
	ChainID     string `json:"chainId,omitempty"`
}

// Subject is the CDEvents subject; Content follows the type's schema.
type Subject struct {
	ID      string         `json:"id"`
	Source  string         `json:"source,omitempty"`
	Content map[string]any `json:"content"`
}

// Kind is "<subject>.<predicate>" ("service.deployed"); custom events give
// "<tool>-<subject>.<predicate>".
func (e CDEvent) Kind() string { return inbound.Kind(e.Context.Type) }

// NATSSubject is where the bridge publishes the event: "cdevents.service.deployed".
func (e CDEvent) NATSSubject() string { return "cdevents." + e.Kind() }

// Purl is the package URL shiploop uses for a repository's release:
// pkg:generic/acme/web@1.4.0.
func Purl(repository, version string) string {
	var parts []string
	for _, p := range strings.Split(repository, "/") {
		parts = append(parts, url.PathEscape(p))
	}
	s := "pkg:generic/" + strings.Join(parts, "/")
	if version != "" {
		s += "@" + url.PathEscape(version)
	}
	return s
}

// derivedID gives a second CDEvent made from one internal event a stable id
// of its own, so a redelivery republishes the same ids (deduplicated).
func derivedID(id, kind string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("shiploop:"+id+"/"+kind)).String()
}

func ts(t *timestamppb.Timestamp, fallback time.Time) string {
	if t != nil && (t.Seconds != 0 || t.Nanos != 0) {
		return t.AsTime().UTC().Format(time.RFC3339Nano)
	}
	if fallback.IsZero() {
		fallback = time.Now()
	}
	return fallback.UTC().Format(time.RFC3339Nano)
}

func ref(id string) map[string]any { return map[string]any{"id": id} }

// Lookup answers what a mapping needs beyond the event itself: the release
// a deploy replaced ("" for a first deploy).
type Lookup func(deployID string) (previous string, found bool)

// Export maps one internal event to the CDEvents it stands for; none for
// events with no CDEvents meaning (jobs, logs).
func Export(ev bus.Event, previous Lookup) []CDEvent {
	mk := func(typ, subjectID string, content map[string]any, at string) CDEvent {
		if content == nil {
			content = map[string]any{}
		}
		src := ev.Source
		if src == "" {
			src = "/shiploop"
		}
		return CDEvent{
			Context: Context{SpecVersion: SpecVersion, ID: ev.ID, Source: src, Type: typ, Timestamp: at, ChainID: ev.ChainID},
			Subject: Subject{ID: subjectID, Content: content},
		}
	}
	at := ts(nil, ev.Time)
	switch d := ev.Data.(type) {
	case *eventsv1.Change:
		repo := map[string]any{"id": d.GetRepository()}
		switch ev.Type {
		case "change.pushed":
			// A scheduled run (forge cron) changed nothing: its build's
			// build.queued is all there is to say.
			if d.GetAfter() == "" || d.GetForge() == "cron" {
				return nil
			}
			return []CDEvent{mk("dev.cdevents.change.merged.0.3.0", d.GetAfter(), map[string]any{"repository": repo}, at)}
		case "change.pr_opened":
			c := map[string]any{"repository": repo}
			if d.GetPullRequestTitle() != "" {
				c["description"] = d.GetPullRequestTitle()
			}
			return []CDEvent{mk("dev.cdevents.change.created.0.4.0", prID(d), c, at)}
		case "change.pr_updated":
			return []CDEvent{mk("dev.cdevents.change.updated.0.3.0", prID(d), map[string]any{"repository": repo}, at)}
		case "change.pr_merged":
			return []CDEvent{mk("dev.cdevents.change.merged.0.3.0", prID(d), map[string]any{"repository": repo}, at)}
		case "change.pr_closed":
			return []CDEvent{mk("dev.cdevents.change.abandoned.0.3.0", prID(d), map[string]any{"repository": repo}, at)}
		}
	case *eventsv1.BuildCreated:
		return []CDEvent{mk("dev.cdevents.build.queued.0.3.0", d.GetBuildId(), nil, ts(d.GetCreatedAt(), ev.Time))}
	case *eventsv1.BuildStarted:
		return []CDEvent{mk("dev.cdevents.build.started.0.3.0", d.GetBuildId(), nil, ts(d.GetStartedAt(), ev.Time))}
	case *eventsv1.BuildFinished:
		at := ts(d.GetFinishedAt(), ev.Time)
		content := map[string]any{}
		if d.GetVersion() != "" {
			content["artifactId"] = Purl(d.GetRepository(), d.GetVersion())
		}
		// build.finished has no outcome in v0.5.1; it rides in customData.
		b := mk("dev.cdevents.build.finished.0.3.0", d.GetBuildId(), content, at)
		b.CustomData = map[string]any{"outcome": buildOutcome(d.GetStatus()), "repository": d.GetRepository(),
			"commit": d.GetCommit(), "number": d.GetNumber(), "failedStep": d.GetFailedStep(), "error": d.GetError()}
		out := []CDEvent{b}
		if d.GetStatus() == eventsv1.BuildStatus_BUILD_STATUS_SUCCESS && d.GetVersion() != "" && d.GetCommit() != "" {
			a := mk("dev.cdevents.artifact.packaged.0.3.0", Purl(d.GetRepository(), d.GetVersion()),
				map[string]any{"change": map[string]any{"id": d.GetCommit(), "source": d.GetRepository()}}, at)
			a.Context.ID = derivedID(ev.ID, "artifact.packaged")
			out = append(out, a)
		}
		return out
	case *eventsv1.TestRunStarted:
		return []CDEvent{mk("dev.cdevents.testsuiterun.started.0.3.0", d.GetRunId(), map[string]any{
			"environment": ref("ci"), "testSuite": map[string]any{"id": d.GetRepository(), "name": d.GetRepository(), "version": d.GetVersion()},
			"trigger": map[string]any{"type": "pipeline"},
		}, ts(d.GetStartedAt(), ev.Time))}
	case *eventsv1.TestRunFinished:
		c := map[string]any{"environment": ref("ci"), "outcome": testOutcome(d.GetStatus()),
			"testSuite": map[string]any{"id": d.GetRepository(), "name": d.GetRepository(), "version": d.GetVersion()}}
		if d.GetError() != "" {
			c["reason"] = d.GetError()
		}
		e := mk("dev.cdevents.testsuiterun.finished.0.3.0", d.GetRunId(), c, ts(d.GetFinishedAt(), ev.Time))
		if n := d.GetCounts(); n != nil {
			e.CustomData = map[string]any{"tests": n.GetTests(), "passed": n.GetPassed(), "failed": n.GetFailed(), "errors": n.GetErrors(), "skipped": n.GetSkipped(), "buildId": d.GetBuildId()}
		}
		return []CDEvent{e}
	case *eventsv1.DeployFinished:
		r := d.GetDeploy()
		if d.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED || r.GetKind() == "teardown" || r.GetRepository() == "" || r.GetEnvironment() == "" {
			return nil
		}
		if r.GetKind() == "rollback" {
			return nil // deploy.rolled_back says it as service.rolledback
		}
		typ := "dev.cdevents.service.deployed.0.3.0"
		if prev, ok := previous(r.GetDeployId()); ok && prev != "" && prev != r.GetRelease() {
			typ = "dev.cdevents.service.upgraded.0.3.0"
		}
		e := mk(typ, r.GetRepository(), map[string]any{"environment": ref(r.GetEnvironment()), "artifactId": Purl(r.GetRepository(), r.GetRelease())}, ts(d.GetFinishedAt(), ev.Time))
		e.CustomData = map[string]any{"deployId": r.GetDeployId(), "commit": r.GetCommit(), "buildId": r.GetBuildId(), "kind": r.GetKind()}
		return []CDEvent{e}
	case *eventsv1.DeployRolledBack:
		r := d.GetDeploy()
		if r.GetRepository() == "" || r.GetEnvironment() == "" {
			return nil
		}
		e := mk("dev.cdevents.service.rolledback.0.3.0", r.GetRepository(), map[string]any{"environment": ref(r.GetEnvironment()), "artifactId": Purl(r.GetRepository(), d.GetToRelease())}, at)
		e.CustomData = map[string]any{"from": d.GetFromRelease(), "to": d.GetToRelease(), "cause": d.GetCause(), "rolledBackDeployId": d.GetRolledBackDeployId()}
		return []CDEvent{e}
	case *eventsv1.EnvironmentChanged:
		typ := map[string]string{
			"environment.created":  "dev.cdevents.environment.created.0.3.0",
			"environment.deleted":  "dev.cdevents.environment.deleted.0.3.0",
			"environment.locked":   "dev.cdevents.environment.modified.0.3.0",
			"environment.unlocked": "dev.cdevents.environment.modified.0.3.0",
		}[ev.Type]
		if typ == "" || d.GetEnvironment() == "" {
			return nil
		}
		e := mk(typ, d.GetEnvironment(), map[string]any{"name": d.GetEnvironment()}, at)
		e.Subject.Source = d.GetRepository()
		e.CustomData = map[string]any{"change": strings.TrimPrefix(ev.Type, "environment."), "repository": d.GetRepository(), "by": d.GetBy(), "reason": d.GetReason()}
		return []CDEvent{e}
	case *errortrackv1.IssueOpened:
		return []CDEvent{incident("dev.cdevents.incident.detected.0.3.0", mk, ev, d.GetIssue(), d.GetEnvironment(), d.GetRelease(), at)}
	case *errortrackv1.IssueRegressed:
		return []CDEvent{incident("dev.cdevents.incident.detected.0.3.0", mk, ev, d.GetIssue(), d.GetEnvironment(), d.GetRelease(), at)}
	case *errortrackv1.IssueResolved:
		return []CDEvent{incident("dev.cdevents.incident.resolved.0.3.0", mk, ev, d.GetIssue(), "", d.GetResolvedInRelease(), at)}
	case *eventsv1.RunbookStarted:
		r := d.GetRun()
		if r.GetRunId() == "" || r.GetStatus() != "running" {
			return nil
		}
		e := mk("dev.cdevents.taskrun.started.0.3.0", r.GetRunId(), map[string]any{"taskName": r.GetRunbook()}, ts(r.GetStartedAt(), ev.Time))
		e.Subject.Source = r.GetRepository()
		e.CustomData = runbookData(r)
		return []CDEvent{e}
	case *eventsv1.RunbookFinished:
		r := d.GetRun()
		if r.GetRunId() == "" {
			return nil
		}
		c := map[string]any{"taskName": r.GetRunbook(), "outcome": runOutcome(r.GetStatus())}
		if r.GetStatus() != "succeeded" && r.GetReason() != "" {
			c["errors"] = r.GetReason()
		}
		e := mk("dev.cdevents.taskrun.finished.0.3.0", r.GetRunId(), c, ts(r.GetFinishedAt(), ev.Time))
		e.Subject.Source = r.GetRepository()
		e.CustomData = runbookData(r)
		return []CDEvent{e}
	case *eventsv1.DataCopied:
		if d.GetEnvironment() == "" || d.GetEnvironment() != d.GetToEnvironment() {
			return nil // once per copy: the environment whose data changed
		}
		e := mk("dev.cdevents.environment.modified.0.3.0", d.GetEnvironment(), map[string]any{"name": d.GetEnvironment()}, ts(d.GetAt(), ev.Time))
		e.Subject.Source = d.GetRepository()
		e.CustomData = map[string]any{"change": "data_copied", "repository": d.GetRepository(), "from": d.GetFromEnvironment(),
			"runbook": d.GetRunbook(), "runId": d.GetRunId(), "by": d.GetBy()}
		return []CDEvent{e}
	case *eventsv1.MonitorStateChanged:
		// A monitor going CRITICAL is an incident detected in its
		// environment; its recovery from CRITICAL, one resolved. WARNING and
		// UNKNOWN are no incident.
		var typ string
		switch {
		case d.GetTo() == eventsv1.MonitorState_MONITOR_STATE_CRITICAL:
			typ = "dev.cdevents.incident.detected.0.3.0"
		case d.GetFrom() == eventsv1.MonitorState_MONITOR_STATE_CRITICAL && d.GetTo() == eventsv1.MonitorState_MONITOR_STATE_OK:
			typ = "dev.cdevents.incident.resolved.0.3.0"
		default:
			return nil
		}
		if d.GetEnvironment() == "" || d.GetRepository() == "" {
			return nil
		}
		c := map[string]any{"environment": ref(d.GetEnvironment()), "service": ref(d.GetRepository()),
			"description": fmt.Sprintf("monitor %s: %s", d.GetMonitor(), d.GetDetail())}
		if d.GetRelease() != "" {
			c["artifactId"] = Purl(d.GetRepository(), d.GetRelease())
		}
		// One incident per monitor and time it went CRITICAL: detected and
		// resolved share the subject id.
		id := fmt.Sprintf("monitor/%s/%s/%s", d.GetRepository(), d.GetEnvironment(), d.GetMonitor())
		e := mk(typ, id, c, ts(d.GetSince(), ev.Time))
		e.CustomData = map[string]any{"monitor": d.GetMonitor(), "from": strings.TrimPrefix(d.GetFrom().String(), "MONITOR_STATE_"),
			"to": strings.TrimPrefix(d.GetTo().String(), "MONITOR_STATE_"), "detail": d.GetDetail()}
		return []CDEvent{e}
	case *eventsv1.GateEvaluated:
		conds := []map[string]any{}
		for _, c := range d.GetConditions() {
			conds = append(conds, map[string]any{"metric": c.GetMetric(), "operator": c.GetOperator(), "threshold": c.GetThreshold(), "value": c.GetValue(), "verdict": c.GetVerdict()})
		}
		return []CDEvent{mk(GateEvaluatedType, d.GetEvaluationId(), map[string]any{
			"verdict": gateVerdict(d.GetStatus()), "buildId": d.GetBuildId(), "buildNumber": d.GetBuildNumber(),
			"repository": d.GetRepository(), "commit": d.GetCommit(), "version": d.GetVersion(), "summary": d.GetSummary(), "conditions": conds,
		}, ts(d.GetEvaluatedAt(), ev.Time))}
	}
	return nil
}

// runOutcome maps a runbook run's end to CDEvents' taskrun outcomes.
func runOutcome(status string) string {
	switch status {
	case "succeeded":
		return "success"
	case "failed":
		return "failure"
	case "canceled":
		return "cancel"
	}
	return "error"
}

func runbookData(r *eventsv1.RunbookRun) map[string]any {
	m := map[string]any{"repository": r.GetRepository(), "kind": r.GetKind(), "by": r.GetBy(), "status": r.GetStatus(), "jobId": r.GetJobId()}
	if r.GetEnvironment() != "" {
		m["environment"] = r.GetEnvironment()
	}
	if r.GetFromEnvironment() != "" {
		m["from"] = r.GetFromEnvironment()
	}
	if len(r.GetOptions()) > 0 {
		m["options"] = r.GetOptions()
	}
	return m
}

func prID(d *eventsv1.Change) string {
	return fmt.Sprintf("%s/pull/%d", d.GetRepository(), d.GetPullRequestNumber())
}

func incident(typ string, mk func(string, string, map[string]any, string) CDEvent, ev bus.Event, is *errortrackv1.IssueRef, env, release, at string) CDEvent {
	if env == "" {
		env = "unknown" // a resolution is not tied to one environment; the schema needs one
	}
	c := map[string]any{"environment": ref(env)}
	if ev.Repository != "" {
		c["service"] = ref(ev.Repository)
		if release != "" {
			c["artifactId"] = Purl(ev.Repository, release)
		}
	}
	if is.GetTitle() != "" {
		c["description"] = is.GetTitle()
	}
	e := mk(typ, fmt.Sprintf("issue-%d", is.GetIssueId()), c, at)
	e.CustomData = map[string]any{"issueId": is.GetIssueId(), "project": is.GetProject(), "level": is.GetLevel(), "culprit": is.GetCulprit()}
	return e
}

func buildOutcome(s eventsv1.BuildStatus) string {
	switch s {
	case eventsv1.BuildStatus_BUILD_STATUS_SUCCESS:
		return "success"
	case eventsv1.BuildStatus_BUILD_STATUS_FAILURE:
		return "failure"
	case eventsv1.BuildStatus_BUILD_STATUS_CANCELED, eventsv1.BuildStatus_BUILD_STATUS_SKIPPED:
		return "cancel"
	}
	return "error"
}

func testOutcome(s eventsv1.TestRunStatus) string {
	switch s {
	case eventsv1.TestRunStatus_TEST_RUN_STATUS_PASSED:
		return "success"
	case eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED:
		return "failure"
	}
	return "error"
}

func gateVerdict(s eventsv1.GateStatus) string {
	switch s {
	case eventsv1.GateStatus_GATE_STATUS_PASSED:
		return "passed"
	case eventsv1.GateStatus_GATE_STATUS_FAILED:
		return "failed"
	}
	return "error"
}

// Marshal encodes an event as JSON.
func (e CDEvent) Marshal() ([]byte, error) { return json.Marshal(e) }
