// Package backend runs a job's steps for the agent: it prepares a workspace with
// the repository checked out, runs each step's commands, streams masked output
// lines and cleans up. Backend is the interface; Process (process.go) runs steps
// as local child processes. It has no protobuf dependency: the agent maps its
// job messages onto these plain types.
package backend

import (
	"context"
	"time"

	"github.com/shiploop/shiploop/services/agent/backend/mask"
)

// Stream names used in Line.Stream.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Step is one step to run: its commands run in one shell (`/bin/sh -e -c`,
// commands joined by newlines), in order, in the workspace dir, so the first
// failing command ends the step.
type Step struct {
	Name     string
	Commands []string
	Env      map[string]string // added on top of the job env
	Timeout  time.Duration     // 0 = no step timeout (the ctx still applies)
	// Detach lets processes the step started in the background outlive it:
	// when the shell exits on its own, the rest of its process group is left
	// running (a deploy step starting a service). Their output is the step's
	// log for up to 2 seconds after the shell exits, then it is read and
	// discarded while the agent runs. A timeout or cancel still kills the
	// whole group. The agent sets it only for deploy jobs' steps.
	Detach bool
	// Container backends only (Docker, docker.go); the process backend
	// ignores them. Image is the image the step runs in; Pull is when to
	// pull it: "if-not-present" (also when empty), "always" or "never".
	// CPUs (0 = no limit) and Memory (bytes, 0 = no limit) bound the
	// step's container.
	Image  string
	Pull   string
	CPUs   float64
	Memory int64
	// Cache (container backends that implement CacheVolumes only; the
	// process backend ignores it, the agent saves and restores its caches
	// through the Object Store): the step's cache paths, "~/x" under the
	// container user's home, anything else under Dir. Each path is a named
	// volume of the job's repository (JobSpec.Repository) mounted there.
	Cache []string
}

// JobSpec is what Prepare needs to know about a job.
type JobSpec struct {
	ID       string
	CloneURL string // anything `git clone` takes, incl. a local path or file:// URL
	Commit   string // full SHA (40 or 64 hex digits) to check out, detached
	VCS      string // "git" (also when empty) or "hg": CloneURL is a Mercurial repository, Commit a node
	Ref      string // e.g. refs/heads/main, for information/env
	// Repository is the repository's name (owner/name); container backends
	// key the dependency-cache volumes by it (Step.Cache).
	Repository string
	Env        map[string]string
	Secrets    []string // values to mask in every output line, see mask.New
}

// Workspace is a prepared job workspace. Create it with Backend.Prepare and
// remove it with Backend.Destroy.
type Workspace struct {
	// Dir is the repository checkout and the working directory of every step.
	// Artifact and report globs are relative to it.
	Dir string

	root   string // everything Destroy removes; Dir and tmp live inside
	tmp    string // TMPDIR of the steps
	job    JobSpec
	masker *mask.Masker
	// network is the job's container network (Docker backend only).
	network string
}

// Mask masks the job's secrets in s. Use it for any text about the job that did
// not come through RunStep's out (agent messages, errors) before it leaves the agent.
func (ws *Workspace) Mask(s string) string {
	if ws == nil {
		return s
	}
	return ws.masker.Mask(s)
}

// Outcome of a step.
type Outcome struct {
	// ExitCode is the shell's exit status; -1 when TimedOut or Canceled; 128+n
	// when the shell was killed by signal n for another reason (as a shell reports it).
	ExitCode  int
	TimedOut  bool // the step ran longer than Step.Timeout
	Canceled  bool // RunStep's ctx ended first (job canceled or its deadline passed)
	Duration  time.Duration
	StartedAt time.Time
}

// Line is one line of output. Stream is Stdout or Stderr; Text has secrets
// masked already, is valid UTF-8 (invalid bytes become U+FFFD) and has no
// trailing newline. Lines longer than MaxLineBytes are split into several Lines.
type Line struct {
	Step, Stream, Text string
	Time               time.Time
}

// MaxLineBytes is the longest Line.Text before masking; longer lines are split.
// A secret straddling a split is not masked.
const MaxLineBytes = 64 << 10

// CacheVolumes is a Backend that keeps Step.Cache paths itself, in volumes
// per repository that outlive jobs: the agent passes the paths on instead
// of restoring and saving them through the Object Store.
type CacheVolumes interface {
	CacheVolumes() bool
}

// Backend runs a job's steps.
//
// Contract:
//   - Prepare makes an isolated workspace with the repository JobSpec.CloneURL
//     checked out at JobSpec.Commit (detached HEAD). If it fails, nothing is left
//     behind and the error names the URL and commit.
//   - RunStep runs one step in the workspace and returns only when the step's
//     process AND every process it started are gone. After the step's shell
//     exits, whatever it left running in the background is killed, so a job
//     leaves nothing running. The exception is a Step with Detach: when its
//     shell exits on its own, RunStep returns without killing the rest.
//   - A step that exceeds its Timeout, or whose ctx ends, has its whole process
//     group killed (SIGTERM, then SIGKILL after a grace period) and reports
//     TimedOut or Canceled with ExitCode -1.
//   - Output lines are delivered to out, masked, in order per stream (stdout and
//     stderr are read independently, so their relative order is not kept), all
//     before RunStep returns. out is never called concurrently; a slow out slows
//     the step down rather than dropping lines. out may be nil.
//   - A non-zero exit is an Outcome, not an error. Errors are for the backend
//     failing to run the step at all, or failing to clean up after it (then the
//     Outcome is filled in too).
//   - Destroy removes the workspace; call it after the last RunStep has returned.
//     Destroying a nil or already destroyed workspace is not an error.
type Backend interface {
	Prepare(ctx context.Context, job JobSpec) (*Workspace, error)
	RunStep(ctx context.Context, ws *Workspace, step Step, out func(Line)) (Outcome, error)
	Destroy(ws *Workspace) error
}
