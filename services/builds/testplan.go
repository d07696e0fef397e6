package builds

import (
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/builds/pipeline"
)

// testsPlanned is the build.tests_planned event of a build whose
// .shiploop.yml has a test section, or nil: the testruns service keeps the
// plan and queues the test jobs (matrix cells × shards) once the build
// succeeded. Secret values stay here: steps carry their secret names only.
func testsPlanned(b buildRow, ch *eventsv1.Change, p *preparedChange) *bus.Event {
	if p.cfg == nil || p.cfg.Test == nil || len(p.cfg.Test.Steps) == 0 {
		return nil
	}
	cfg, t := p.cfg, p.cfg.Test
	plan := &eventsv1.TestPlan{
		Environment: map[string]string{
			"SHIPLOOP_VERSION":    b.version,
			"SHIPLOOP_REPOSITORY": b.repository,
		},
		Reports:  &eventsv1.TestReportGlobs{Junit: t.Reports.JUnit, Coverage: t.Reports.Coverage},
		Shards:   int32(max(t.Shards, 1)),
		Retries:  int32(t.Retries),
		CloneUrl: orText(p.jobCloneURL, ch.CloneUrl),
		// Test jobs check out with the repository's VCS, as build jobs
		// do: a Mercurial repository's test job must not run git fetch.
		Vcs:    p.vcs,
		Labels: cfg.Labels,
	}
	if t.Labels != nil {
		plan.Labels = t.Labels
	}
	for k, v := range cfg.Env {
		plan.Environment[k] = v
	}
	for _, combo := range cfg.MatrixCombinations() {
		if len(combo) > 0 {
			plan.Matrix = append(plan.Matrix, &eventsv1.MatrixCell{Values: combo})
		}
	}
	for _, st := range t.Steps {
		// The job's environment holds the pipeline's env and the matrix
		// cell; the step's own env wins over both, as in StepEnv.
		js := &eventsv1.Step{
			Name: st.Name, Commands: st.Commands, Environment: st.Env,
			FailureIgnore: st.Failure == pipeline.FailureIgnore, DependsOn: st.DependsOn,
			Secrets: cfg.StepSecrets(st, nil), Artifacts: st.Artifacts, Cache: stepCache(st.Cache),
			Cpus: st.CPUs, MemoryBytes: st.Memory,
		}
		js.Image, js.Pull = cfg.StepImage(st)
		if st.Timeout > 0 {
			js.Timeout = durationpb.New(st.Timeout)
		}
		plan.Steps = append(plan.Steps, js)
	}
	for _, s := range t.Services {
		ts := &eventsv1.TestService{Name: s.Name, Command: s.Command, Environment: s.Env, Image: s.Image, Pull: s.Pull}
		if ts.Pull == "" {
			ts.Pull = cfg.Pull
		}
		if s.Ready != nil {
			ts.ReadyTcp, ts.ReadyCommand = s.Ready.TCP, s.Ready.Command
		}
		plan.Services = append(plan.Services, ts)
	}
	base := ch.GetBaseSha()
	if base == "" && strings.Trim(ch.GetBefore(), "0") != "" {
		base = ch.GetBefore()
	}
	return &bus.Event{Type: "build.tests_planned", Repository: b.repository, Subject: b.id, Data: &eventsv1.BuildTestsPlanned{
		BuildId: b.id, Repository: b.repository, Ref: b.ref, Commit: b.commit, Version: b.version, Plan: plan, BaseCommit: base,
	}}
}
