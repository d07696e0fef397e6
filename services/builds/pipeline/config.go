// Package pipeline reads a repository's .shiploop.yml: what to build, test,
// check and deploy. The file is data, never a programming language; Parse
// decodes it strictly (unknown fields are errors, with the nearest known name
// as a hint) and every problem it reports names the file, the line, the
// column and the field path, e.g.
//
//	.shiploop.yml:7:18: steps[1].depends_on[0]: unknown step "lnt" (did you mean "lint"?)
//
// Rules beyond the field types (see docs/shiploop.schema.json at the
// repository root for the types; a test keeps schema and parser in
// agreement):
//
//   - steps is a list (each step has a name) or a mapping of name to step
//     (in the mapping's order). Names match [a-z0-9][a-z0-9_.-]*, at most 63
//     characters, unique within their list.
//   - When no step of a list has depends_on, the steps run one after another
//     in order. Once any step has depends_on, the list is a DAG: every step
//     starts as soon as the steps it names have finished, and a step without
//     depends_on starts at once. depends_on names steps of the same list
//     (build, test, or one environment's deploy steps); unknown names and
//     cycles are errors.
//   - commands and the when lists take a single string for a list of one.
//   - Environment values (env, variables, matrix values) may be strings,
//     numbers or booleans and keep their text as written (CGO_ENABLED: 0 is
//     "0", GO: 1.10 is "1.10").
//   - timeout and verify.window are Go durations ("10m") or whole seconds.
//   - Globs in artifacts, reports and cache.key_files stay in the workspace
//     (no leading "/", no "..").
//   - YAML anchors, aliases and "<<" merge keys work; a file holds one YAML
//     document of at most 1 MiB.
//   - A matrix has at most 256 combinations; include entries set every
//     variable; exclude entries name known variables and values.
package pipeline

import "time"

// Config is a parsed and validated .shiploop.yml (schema version 1).
//
// Parse fills defaults, so a Config from Parse has Version 1, every step's
// Failure set, and Test.Shards at least 1 when Test is present.
type Config struct {
	Version int               // always 1
	Env     map[string]string // environment of every step (build, test, deploy); see StepEnv
	Secrets []string          // secret names exposed to every step; see StepSecrets
	// Labels an agent must all have to take the build's jobs (and the test
	// and deploy jobs, unless test or the environment has its own).
	Labels []string
	When   When    // pipeline-wide condition; the zero When matches everything
	Matrix *Matrix // nil without a matrix; expands build and test jobs, not deploys
	// Concurrency limits how many jobs of every build in a group run at
	// once across the installation; nil without one.
	Concurrency *Concurrency
	Steps       []Step // build steps in file order; see BuildSteps for run order
	Test        *Test  // nil without a test section
	// Environments are the deploy targets in promotion order.
	Environments []Environment
	Gate         *Gate // nil without a gate
	// Schedules run the pipeline at times of day (schedules.go); only the
	// default branch's file declares them.
	Schedules []Schedule
	// Image is the container image of steps without one of their own, on
	// agents that run steps in containers (`--backend docker`); Pull is
	// when such agents pull images ("if-not-present" when empty). Process
	// agents ignore both. See StepImage.
	Image string
	Pull  string

	file      string
	pos       map[string]Position // field path -> where it is in the file
	stepPaths map[string][]string // steps field -> field path of each step
}

// Concurrency is a group shared by every repository that names it: at most
// Limit of its jobs are handed to agents at once; the others wait in order.
type Concurrency struct {
	Group string
	Limit int // at least 1; 1 when the file does not say
}

// Step is one unit of work: commands run in order in one shell session.
type Step struct {
	Name     string
	Commands []string // at least one
	// DependsOn names steps of the same list that must finish first. In a
	// list where any step has DependsOn, a step without it starts at once, in
	// parallel with the others; where none has, steps run in order.
	DependsOn []string
	Env       map[string]string
	Secrets   []string // exposed as environment variables of the same name, masked in logs
	When      When
	Failure   Failure       // FailureFail unless the file says ignore
	Timeout   time.Duration // 0: none given, the platform's default applies
	Artifacts []string      // globs relative to the workspace
	Cache     *Cache
	// Detach (deploy steps only): processes the step starts in the
	// background keep running after it ends, e.g. the service it deploys.
	Detach bool
	// Container agents only (process agents ignore them): the image the
	// step runs in (empty: the pipeline's Image), when to pull it (empty:
	// the pipeline's Pull), and its container's limits: CPUs (0: none)
	// and Memory in bytes (0: none).
	Image  string
	Pull   string
	CPUs   float64
	Memory int64
	// Produces (produces: {image: NAME} or {image: [A, B]}, build steps
	// only): container images the step builds on the agent's Docker
	// engine. After the step succeeds the agent reports each one's image
	// ID; the build records them and its deploys get them as
	// SHIPLOOP_IMAGE_<NAME> (and SHIPLOOP_IMAGE for a single image).
	Produces []string
}

// StepImage is the image and pull policy of st: its own, else the
// pipeline's.
func (c *Config) StepImage(st Step) (image, pull string) {
	image, pull = st.Image, st.Pull
	if image == "" {
		image = c.Image
	}
	if pull == "" {
		pull = c.Pull
	}
	return image, pull
}

// Pull policies of image pulls.
var PullPolicies = []string{"if-not-present", "always", "never"}

// Failure says what a failing step does to its job.
type Failure string

const (
	FailureFail   Failure = "fail"   // the job fails (the default)
	FailureIgnore Failure = "ignore" // the failure is recorded; the job goes on as if the step passed
)

// Cache keeps paths between runs of a step. The cache key is derived from the
// contents of KeyFiles (and the step name); without KeyFiles one cache is
// kept per step.
type Cache struct {
	KeyFiles []string
	Paths    []string // at least one; "~" means the job's home directory
}

// When is a condition on the event that started a pipeline. Every non-empty
// list must match; an empty list matches anything. Patterns starting with "!"
// exclude. See Match for the exact rules.
type When struct {
	Event  []string // push, tag, pull_request, manual, cron
	Branch []string // globs over branch names
	Tag    []string // globs over tag names
	Paths  []string // globs over changed file paths
	Cron   []string // globs over schedule names (event cron only)
}

// Matrix expands a pipeline into one job per combination of its axes; a
// job's combination is visible to its steps as environment variables.
type Matrix struct {
	Axes    []MatrixAxis        // in file order
	Include []map[string]string // extra combinations, added after the product
	Exclude []map[string]string // partial combinations removed from the product
}

// MatrixAxis is one variable of a matrix and its values in file order.
type MatrixAxis struct {
	Name   string
	Values []string
}

// Test is the test section: steps run as a job after the build.
type Test struct {
	Steps    []Step
	Reports  Reports
	Services []Service // started before the steps, stopped after them
	// Shards runs the test job this many times in parallel; each shard sees
	// SHIPLOOP_SHARD_INDEX (0-based) and SHIPLOOP_SHARD_TOTAL. At least 1.
	Shards int
	// Retries runs a failed test job again up to this many times (0–5);
	// a test that fails and then passes on the same commit is flaky.
	Retries int
	Labels  []string // agent labels for test jobs; nil: the pipeline's
}

// Reports are globs of report files collected after the test steps.
type Reports struct {
	JUnit    []string
	Coverage []string
}

// Service is a long-running process the test steps need, such as a database.
type Service struct {
	Name    string
	Command string // required without Image; with it, replaces the image's command
	Env     map[string]string
	Ready   *Ready // nil: the service counts as ready once started
	// Image: on container agents the service runs in this image, on the
	// job's network with Name as its host name; Pull as in Step.
	Image string
	Pull  string
}

// Ready says how to tell that a service accepts work.
type Ready struct {
	TCP     string // host:port that must accept a connection
	Command string // container agents: a command in the service's container that exits 0 once it is ready
}

// Environment is a deploy target, such as staging or production.
type Environment struct {
	Name      string
	Steps     []Step            // deploy steps, same shape and rules as build steps
	Variables map[string]string // environment variables of the deploy steps
	Secrets   []string          // secret names exposed to the deploy steps
	Labels    []string          // agent labels for deploy jobs; nil: the pipeline's
	Approval  *Approval         // nil: no approval needed
	// Auto deploys as soon as the previous environment (or, for the first
	// one, the gate) has passed; otherwise someone promotes by hand.
	Auto   bool
	Verify *Verify // nil: no verification after a deploy
	// RerunInterrupted is on_interrupt: rerun. When the agent running a
	// deploy stops mid-way (killed, lost), the next agent runs its steps
	// again from the first; by default (on_interrupt: stop) the deploy ends
	// interrupted and a person decides, since steps that are not
	// idempotent could apply twice.
	RerunInterrupted bool
	// RollbackOnFailure is on_failure: rollback. When a deploy step fails,
	// the deploy ends failed and the last good release is deployed again;
	// by default (on_failure: stop) the deploy ends failed and a person
	// decides.
	RollbackOnFailure bool
	// Monitors keep checking the environment after its deploys; Alerts
	// receive their state changes; BlockPromotionOn names the monitors
	// ("all": every one) whose CRITICAL state refuses promotion to the next
	// environment. The deploys service runs them.
	Monitors         []Monitor
	Alerts           []Alert
	BlockPromotionOn []string
}

// Approval asks people to approve a deploy before it starts.
type Approval struct {
	Required int // number of distinct approvers, at least 1
}

// Verify watches an environment after a deploy and decides whether the
// release stays.
type Verify struct {
	Window     time.Duration // how long to watch; required
	Conditions []Condition   // every condition must hold during the window; Scope is unused
	OnFailure  OnFailure     // OnFailureRollback unless the file says hold
}

// OnFailure says what a failed verification does.
type OnFailure string

const (
	OnFailureRollback OnFailure = "rollback" // promote the previous release again (the default)
	OnFailureHold     OnFailure = "hold"     // keep the release and wait for a person
)

// Gate is the quality gate evaluated after the tests.
type Gate struct {
	Conditions []Condition // every condition must hold for the gate to pass; at least one
	// Expression is an optional CEL expression over the metrics that must
	// be true; the gates service compiles it.
	Expression string
	// MinNewLines: below it, coverage and duplication conditions on new code
	// are not judged; nil when the file does not say (the default applies).
	MinNewLines *int
	// Reports are globs over the build's artifact names, by format (sarif,
	// flake8, checkstyle, golangci_lint, metrics).
	Reports map[string][]string
	// OnNoData is what a condition without data, a test run in error or a
	// test stage without tests does: "pass" allows it; "" or "fail" fails
	// the gate (gatepolicy.OnNoDataKey).
	OnNoData string
}

// Condition is one requirement: Metric Operator Threshold must be true.
// For example {coverage >= 80 on new_code}.
type Condition struct {
	Metric    string
	Operator  Operator
	Threshold float64
	Scope     Scope // ScopeOverall unless the file says new_code (gate conditions only)
	// OnNoData overrides the gate's on_no_data for this condition: "pass",
	// "fail", or "" (gate conditions only).
	OnNoData string
	// Verify conditions on errortrack.* only: OnReleaseMismatch is "fail"
	// (the default, "") or "ignore" for errors under other releases in the
	// environment; RequireEvidence true fails a release errortrack heard
	// nothing from, false passes it, nil leaves it inconclusive.
	OnReleaseMismatch string
	RequireEvidence   *bool
}

// Operator compares a metric with a threshold.
type Operator string

const (
	OpLess         Operator = "<"
	OpLessEqual    Operator = "<="
	OpGreater      Operator = ">"
	OpGreaterEqual Operator = ">="
	OpEqual        Operator = "=="
	OpNotEqual     Operator = "!="
)

// Holds reports whether value op threshold is true.
func (op Operator) Holds(value, threshold float64) bool {
	switch op {
	case OpLess:
		return value < threshold
	case OpLessEqual:
		return value <= threshold
	case OpGreater:
		return value > threshold
	case OpGreaterEqual:
		return value >= threshold
	case OpEqual:
		return value == threshold
	case OpNotEqual:
		return value != threshold
	}
	return false
}

// Scope says which code a gate condition measures.
type Scope string

const (
	ScopeOverall Scope = "overall"  // the whole code base (the default)
	ScopeNewCode Scope = "new_code" // only code changed by this change
)

// Position is a place in the file, 1-based.
type Position struct {
	Line, Column int
}

// File is the file name given to Parse.
func (c *Config) File() string { return c.file }

// Position returns where the field with the given path (as in FieldError,
// e.g. "steps[1].secrets[0]") is in the file, and whether it is there at all.
func (c *Config) Position(field string) (Position, bool) {
	p, ok := c.pos[field]
	return p, ok
}

// FieldError builds an error about a field of this config found after
// parsing, for example a secret the repository does not define, so that it
// too names the file, line and field.
func (c *Config) FieldError(field, msg string) *FieldError {
	p := c.pos[field]
	return &FieldError{File: c.file, Line: p.Line, Column: p.Column, Field: field, Msg: msg}
}
