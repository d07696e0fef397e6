// Package agent runs jobs from the JOBS work queue: it checks the commit
// out through a Backend, runs the steps, streams their log lines live on core
// NATS, keeps the whole log in the Object Store and reports the job's
// progress as events. Agents are stateless and scale out horizontally: every
// agent pulls from the same durable consumer, one job at a time.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/agent/backend"
)

// Config wires an agent.
type Config struct {
	Bus     *bus.Bus
	Backend backend.Backend
	// Name identifies the agent in events (default: hostname-pid).
	Name string
	// Concurrency is how many jobs this agent runs at once (default 1).
	Concurrency int
	// Kinds restricts the job kinds taken ("build", "test", "deploy"); all when empty.
	Kinds []string
	// Labels are what the agent offers ("gpu", "docker", "region=eu"): it
	// takes jobs whose labels it all has (see bus.Pool), and jobs without
	// labels. os=<GOOS> and arch=<GOARCH> are always added.
	Labels []string
	// LogDir holds jobs' logs while they run (default the system temp dir).
	LogDir string
	// Lease is how long a job stays with an agent that stopped answering
	// before another agent gets it (default 30s). Running jobs are
	// heartbeated every third of it.
	Lease time.Duration
	// SecretsWait is how long a job whose steps name secrets it does not
	// carry (test and deploy jobs) keeps asking the builds service for
	// them before it fails (default 30s; see secrets.go).
	SecretsWait time.Duration
	Logger      *slog.Logger
}

// Agent takes and runs jobs.
type Agent struct {
	cfg Config
	log *slog.Logger
}

// New makes an agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Bus == nil || cfg.Backend == nil {
		return nil, errors.New("agent: Bus and Backend are required")
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LogDir == "" {
		cfg.LogDir = filepath.Join(os.TempDir(), "shiploop-agent-logs")
	}
	if cfg.SecretsWait <= 0 {
		cfg.SecretsWait = 30 * time.Second
	}
	return &Agent{cfg: cfg, log: cfg.Logger.With("service", "agent", "agent", cfg.Name)}, nil
}

// Run takes jobs until ctx ends. A job in progress when ctx ends is given
// back to the queue for another agent.
func (a *Agent) Run(ctx context.Context) error {
	return a.cfg.Bus.Serve(ctx, bus.ServeConfig{
		Kinds: a.cfg.Kinds, Labels: a.Labels(), Slots: a.cfg.Concurrency, AckWait: a.cfg.Lease, MaxDeliver: jobMaxDeliver, Logger: a.log,
	}, a.run)
}

// jobMaxDeliver is how often a job is handed to an agent at most.
const jobMaxDeliver = 5

// Labels are the labels the agent serves jobs for: its configured ones plus
// os=<GOOS> and arch=<GOARCH>.
func (a *Agent) Labels() []string {
	return append(slices.Clone(a.cfg.Labels), "os="+runtime.GOOS, "arch="+runtime.GOARCH)
}

// run executes one job.
func (a *Agent) run(ctx context.Context, j *bus.Job) error {
	job, ok := j.Data.(*eventsv1.Job)
	if !ok {
		a.log.Error("job message carries no Job", "type", j.Type, "id", j.ID)
		return nil // acked: it can never run
	}
	r := &jobRun{a: a, job: job, started: time.Now().UTC(), attempt: j.Attempt}
	var err error
	if r.log, err = newJobLog(a.cfg.Bus, a.cfg.LogDir, job.JobId); err != nil {
		return err // the agent's disk is full: let another agent take it
	}
	defer r.log.close()
	lctx, stopStoring := context.WithCancel(ctx)
	go r.log.keepStored(lctx, 5*time.Second)
	err = r.execute(ctx)
	stopStoring()
	if ctx.Err() != nil {
		// Shutting down: give the job back; the next agent reruns it.
		return ctx.Err()
	}
	return err
}

type jobRun struct {
	a       *Agent
	job     *eventsv1.Job
	started time.Time
	attempt uint64

	log       *jobLog
	artifacts []*eventsv1.Artifact
	images    map[string]string      // produced images (images.go)
	reports   []*eventsv1.ReportFile // test jobs (testjob.go)
	// notKept says which artifact or report could not be stored after
	// persist's retries: the job then ends in error, not in success with
	// its outputs silently missing (a test run would read "no report").
	notKept string
}

// keepFailed records the first output that could not be stored.
func (r *jobRun) keepFailed(msg string) {
	if r.notKept == "" {
		r.notKept = msg
	}
}

func (r *jobRun) emit(ctx context.Context, typ string, ev bus.Event) error {
	ev.Type, ev.Repository, ev.Subject, ev.ChainID = typ, r.job.Repository, r.job.JobId, r.job.ChainId
	// The events are how the build learns what happened, so a blip must
	// not lose them. One id for every attempt: JetStream keeps one copy.
	ev.ID = bus.NewID()
	return persist(ctx, func() error { return r.a.cfg.Bus.Publish(ctx, ev) })
}

// permanentError is an error trying again cannot mend (a file gone).
type permanentError struct{ error }

// persistBudget is how long persist keeps trying: it outlasts a JetStream
// leader election in a cluster (a few seconds); giving up sooner would
// lose a log or a report, or burn one of the job's few deliveries.
var persistBudget = 30 * time.Second

// persist runs fn, which writes to JetStream, until it succeeds, ctx ends
// or persistBudget has passed, backing off from 100 ms to 2 s; it returns
// fn's last error. An error wrapped by permanent ends it at once.
func persist(ctx context.Context, fn func() error) error {
	delay := 100 * time.Millisecond
	deadline := time.Now().Add(persistBudget)
	for {
		err := fn()
		var p permanentError
		if errors.As(err, &p) {
			return p.error
		}
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

func (r *jobRun) line(step, stream, text string, t time.Time) {
	r.log.add(step, stream, text, t)
}

func (r *jobRun) execute(ctx context.Context) error {
	job, a := r.job, r.a
	log := a.log.With("job", job.JobId, "repository", job.Repository)
	timeout := job.GetTimeout().AsDuration()
	if timeout <= 0 {
		timeout = time.Hour
	}
	jctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A cancel recorded before or during the job stops it.
	cctx, cancelJob := context.WithCancelCause(jctx)
	defer cancelJob(nil)
	jctx = cctx
	if reason, ok := r.watchCancel(jctx, cancelJob); ok {
		return r.finish(ctx, eventsv1.BuildStatus_BUILD_STATUS_CANCELED, "", reason, r.skipAll(job.Steps, "not run: "+reason))
	}

	if err := r.emit(ctx, "job.started", bus.Event{Data: &eventsv1.JobStarted{
		JobId: job.JobId, BuildId: job.BuildId, Repository: job.Repository, Agent: a.cfg.Name,
		StartedAt: timestamppb.New(r.started), Attempt: r.attempt,
	}}); err != nil {
		return fmt.Errorf("reporting job start: %w", err)
	}
	// Before the workspace: the masker is made from every value.
	if err := r.resolveSecrets(jctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if cause := context.Cause(jctx); errors.Is(cause, errCanceled) {
			return r.finish(ctx, eventsv1.BuildStatus_BUILD_STATUS_CANCELED, "", cause.Error(), r.skipAll(job.Steps, "not run: "+cause.Error()))
		}
		msg := fmt.Sprintf("getting the job's secrets: %v", err)
		r.line("", "system", msg, time.Now())
		if errors.Is(err, errSecretsUnavailable) && r.attempt < uint64(jobMaxDeliver) {
			// builds is away for now: another delivery tries again later.
			return err
		}
		return r.finish(ctx, eventsv1.BuildStatus_BUILD_STATUS_ERROR, "", msg, r.skipAll(job.Steps, "not run: the job's secrets could not be had"))
	}
	secretValues := make([]string, 0, len(job.Secrets))
	for _, v := range job.Secrets {
		secretValues = append(secretValues, v)
	}
	ws, err := a.cfg.Backend.Prepare(jctx, backend.JobSpec{
		ID: job.JobId, CloneURL: job.CloneUrl, Commit: job.Commit, VCS: job.Vcs, Ref: job.Ref, Env: job.Environment, Secrets: secretValues,
		Repository: job.Repository,
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := fmt.Sprintf("preparing the workspace: %v", err)
		r.line("", "system", msg, time.Now())
		return r.finish(ctx, eventsv1.BuildStatus_BUILD_STATUS_ERROR, "", msg, r.skipAll(job.Steps, "not run: the workspace could not be prepared"))
	}
	defer func() {
		if err := a.cfg.Backend.Destroy(ws); err != nil {
			log.Warn("removing workspace", "err", err)
		}
	}()

	stopServices, err := r.startServices(jctx, ws) // test jobs (testjob.go)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := ws.Mask(fmt.Sprintf("starting services: %v", err))
		r.line("", "system", msg, time.Now())
		return r.finish(ctx, eventsv1.BuildStatus_BUILD_STATUS_ERROR, "", msg, r.skipAll(job.Steps, "not run: a service did not start"))
	}
	results, failed := r.runSteps(ctx, jctx, ws)
	stopServices()
	if ctx.Err() == nil {
		r.reports = r.collectReports(ctx, ws)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	status := eventsv1.BuildStatus_BUILD_STATUS_SUCCESS
	if failed != "" {
		status = eventsv1.BuildStatus_BUILD_STATUS_FAILURE
	}
	errText := ""
	switch {
	case errors.Is(context.Cause(jctx), errCanceled):
		status, failed, errText = eventsv1.BuildStatus_BUILD_STATUS_CANCELED, "", context.Cause(jctx).Error()
	case jctx.Err() != nil:
		status, errText = eventsv1.BuildStatus_BUILD_STATUS_FAILURE, fmt.Sprintf("the job timed out after %s", timeout)
	case failed != "":
		errText = fmt.Sprintf("step %s failed", failed)
	case r.notKept != "":
		// The steps passed but what they made is not stored: an error of
		// the platform, not a failure of the code.
		status, errText = eventsv1.BuildStatus_BUILD_STATUS_ERROR, r.notKept
	}
	return r.finish(ctx, status, failed, errText, results)
}

// runSteps runs the job's steps. With no depends_on anywhere they run one
// after another in order; once any step has depends_on, every step starts as
// soon as the steps it depends on have succeeded, so independent steps run
// in parallel. After a failure (not ignored) no further step starts; the
// steps that did not run are reported as skipped. Results are in job order.
func (r *jobRun) runSteps(ctx, jctx context.Context, ws *backend.Workspace) ([]*eventsv1.StepResult, string) {
	steps := r.job.Steps
	dag := false
	for _, st := range steps {
		dag = dag || len(st.DependsOn) > 0
	}
	results := make([]*eventsv1.StepResult, len(steps))
	index := make(map[string]int, len(steps))
	for i, st := range steps {
		index[st.Name] = i
	}
	type done struct {
		i   int
		res *eventsv1.StepResult
	}
	finished := make(chan done)
	started := make([]bool, len(steps))
	running, failed := 0, ""
	ready := func(i int) bool {
		if !dag {
			// Sequential: the previous step must have finished.
			return i == 0 || results[i-1] != nil
		}
		for _, d := range steps[i].DependsOn {
			j, ok := index[d]
			if ok && (results[j] == nil || results[j].Status != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS && !steps[j].FailureIgnore) {
				return false
			}
		}
		return true
	}
	for {
		if failed == "" && jctx.Err() == nil {
			for i, st := range steps {
				if started[i] || !ready(i) {
					continue
				}
				started[i] = true
				running++
				go func() {
					res, _ := r.runStep(jctx, ws, st)
					finished <- done{i, res}
				}()
			}
		}
		if running == 0 {
			break
		}
		d := <-finished
		running--
		results[d.i] = d.res
		if st := steps[d.i]; len(st.Artifacts) > 0 && d.res.Status == eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
			arts, err := r.uploadArtifacts(ctx, ws.Dir, st)
			r.artifacts = append(r.artifacts, arts...)
			if err != nil {
				msg := ws.Mask(fmt.Sprintf("step %s: keeping artifacts: %v", st.Name, err))
				r.line(st.Name, "system", msg, timeNow())
				r.keepFailed(msg)
			}
		}
		if st := steps[d.i]; len(st.GetProducesImages()) > 0 && d.res.Status == eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
			r.collectImages(ctx, ws, st, d.res)
		}
		// Durable once a step ends.
		if err := r.log.store(ctx); err != nil {
			r.a.log.Warn("storing log", "job", r.job.JobId, "err", err)
		}
		if ctx.Err() == nil {
			if err := r.emit(ctx, "job.step_finished", bus.Event{Data: &eventsv1.JobStepFinished{
				JobId: r.job.JobId, BuildId: r.job.BuildId, Repository: r.job.Repository, Step: d.res,
			}}); err != nil {
				r.a.log.Warn("reporting step", "job", r.job.JobId, "step", d.res.Name, "err", err)
			}
		}
		if d.res.Status != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS && !steps[d.i].FailureIgnore && failed == "" {
			failed = d.res.Name
		}
	}
	why := "not run: the job timed out"
	if failed != "" {
		why = fmt.Sprintf("not run: step %s failed", failed)
	}
	for i := range results {
		if results[i] == nil {
			results[i] = r.skipAll(steps[i:i+1], why)[0]
		}
	}
	return results, failed
}

// withoutDeadline returns ctx without its deadline, still ended (with its
// cause) when ctx ends. nats.go bounds each JetStream round trip made with
// a context that has no deadline by its own timeout (5 s, and per publish
// for the Object Store's chunks), but waits until the deadline for one made
// with a context that has one. A job's context carries the job's timeout,
// an hour by default: a JetStream request whose answer died with a cluster
// node held the job, and the agent's slot, for that hour. JetStream calls
// made for a job go through this.
func withoutDeadline(ctx context.Context) context.Context {
	if _, ok := ctx.Deadline(); !ok {
		return ctx
	}
	c, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	return c
}

// errCanceled is the cause of a job context ended by a cancel request.
var errCanceled = errors.New("canceled")

// watchCancel reports a cancel recorded before the job started; otherwise it
// watches for one until ctx ends and cancels the job with its reason.
func (r *jobRun) watchCancel(ctx context.Context, cancel context.CancelCauseFunc) (string, bool) {
	ctx = withoutDeadline(ctx)
	kv, err := r.a.cfg.Bus.Cancels(ctx)
	if err != nil {
		r.a.log.Warn("cannot watch for cancels", "job", r.job.JobId, "err", err)
		return "", false
	}
	if e, err := kv.Get(ctx, r.job.JobId); err == nil {
		return string(e.Value()), true
	}
	w, err := kv.Watch(ctx, r.job.JobId, jetstream.UpdatesOnly())
	if err != nil {
		r.a.log.Warn("cannot watch for cancels", "job", r.job.JobId, "err", err)
		return "", false
	}
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil && e.Operation() == jetstream.KeyValuePut {
					cancel(fmt.Errorf("%w: %s", errCanceled, e.Value()))
					return
				}
			}
		}
	}()
	return "", false
}

func (r *jobRun) skipAll(steps []*eventsv1.Step, why string) []*eventsv1.StepResult {
	out := make([]*eventsv1.StepResult, 0, len(steps))
	for _, st := range steps {
		out = append(out, &eventsv1.StepResult{Name: st.Name, Status: eventsv1.BuildStatus_BUILD_STATUS_SKIPPED, ExitCode: -1, Duration: durationpb.New(0), Error: why})
	}
	return out
}

func (r *jobRun) runStep(ctx context.Context, ws *backend.Workspace, st *eventsv1.Step) (*eventsv1.StepResult, error) {
	env := st.Environment
	if len(st.Secrets) > 0 {
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		for _, n := range st.Secrets {
			env[n] = r.job.Secrets[n]
		}
	}
	home, _ := os.UserHomeDir()
	// A backend with cache volumes (Docker) keeps the paths itself, per
	// repository; otherwise they go through the Object Store.
	var volumeCache []string
	cacheSt := st
	if cv, ok := r.a.cfg.Backend.(backend.CacheVolumes); ok && cv.CacheVolumes() && len(st.GetCache().GetPaths()) > 0 {
		volumeCache = st.GetCache().GetPaths()
		cacheSt = &eventsv1.Step{Name: st.Name}
		r.line(st.Name, "system", fmt.Sprintf("cache %s: in this repository's volumes on this agent", strings.Join(volumeCache, ", ")), timeNow())
	}
	cacheKey, cacheHit := r.restoreCache(ctx, ws.Dir, home, cacheSt)
	out, err := r.a.cfg.Backend.RunStep(ctx, ws, backend.Step{
		Name: st.Name, Commands: st.Commands, Env: env, Timeout: st.GetTimeout().AsDuration(),
		// Only a deploy may leave a service running; a build or test step
		// leaving processes on the agent is a leak.
		Detach: st.GetDetach() && r.job.GetKind() == "deploy",
		Image:  st.GetImage(), Pull: st.GetPull(), CPUs: st.GetCpus(), Memory: st.GetMemoryBytes(),
		Cache: volumeCache,
	}, func(l backend.Line) { r.line(st.Name, l.Stream, l.Text, l.Time) })
	res := &eventsv1.StepResult{
		Name: st.Name, ExitCode: int32(out.ExitCode), Duration: durationpb.New(out.Duration),
		StartedAt: timestamppb.New(out.StartedAt), Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS,
	}
	switch {
	case err != nil:
		res.Status, res.Error = eventsv1.BuildStatus_BUILD_STATUS_ERROR, ws.Mask(err.Error())
	case out.TimedOut:
		res.Status, res.Error = eventsv1.BuildStatus_BUILD_STATUS_FAILURE, fmt.Sprintf("timed out after %s", st.GetTimeout().AsDuration())
	case out.Canceled:
		res.Status, res.Error = eventsv1.BuildStatus_BUILD_STATUS_CANCELED, "stopped: the job timed out or the agent is stopping"
		if cause := context.Cause(ctx); errors.Is(cause, errCanceled) {
			res.Error = cause.Error()
		}
	case out.ExitCode != 0:
		res.Status, res.Error = eventsv1.BuildStatus_BUILD_STATUS_FAILURE, fmt.Sprintf("exit code %d", out.ExitCode)
	}
	if res.Error != "" {
		r.line(st.Name, "system", fmt.Sprintf("step %s: %s", st.Name, res.Error), time.Now())
	}
	if cacheSt.GetCache() != nil && !cacheHit && res.Status == eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		r.saveCache(ctx, ws.Dir, home, cacheKey, st)
	}
	return res, err
}

// finish stores the log and reports the job's end.
func (r *jobRun) finish(ctx context.Context, status eventsv1.BuildStatus, failed, errText string, steps []*eventsv1.StepResult) error {
	job := r.job
	// The last line marks the log complete, live and stored.
	r.line("", "end", "", time.Now())
	logKey := job.JobId
	if err := persist(ctx, func() error { return r.log.store(ctx) }); err != nil {
		logKey = ""
		r.a.log.Warn("storing log", "job", job.JobId, "err", err)
	}
	return r.emit(ctx, "job.finished", bus.Event{Data: &eventsv1.JobFinished{
		JobId: job.JobId, BuildId: job.BuildId, Repository: job.Repository, Status: status,
		FailedStep: failed, Error: errText, Steps: steps, Duration: durationpb.New(time.Since(r.started)),
		Agent: r.a.cfg.Name, LogKey: logKey, Artifacts: r.artifacts, Reports: r.reports, Images: r.images,
	}})
}

func timeNow() time.Time { return time.Now() }
