//go:build unix

package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// Labels on every container, network and volume the Docker backend makes.
const (
	LabelJob   = "shiploop.job"
	LabelAgent = "shiploop.agent"
	// LabelCache marks a dependency-cache volume (Step.Cache); its value
	// is the repository token. Cache volumes have no shiploop.agent or
	// shiploop.job label, so neither Destroy nor Reap removes them.
	LabelCache = "shiploop.cache"
	// LabelCachePath is the cache path, as written, of a cache volume.
	LabelCachePath = "shiploop.cache.path"
)

// Pull policies of Step.Pull and Service.Pull.
const (
	PullIfNotPresent = "if-not-present"
	PullAlways       = "always"
	PullNever        = "never"
)

// DetachIgnored is the log line of a Detach step on the Docker backend.
const DetachIgnored = "shiploop: detach is ignored on this agent (--backend docker): the step's container is removed when the step ends, with everything it started; deploy with a process agent, or start the service with `docker run -d` from the step"

// DockerConfig configures the Docker backend.
type DockerConfig struct {
	// Process configures the checkout and the workspace on the agent's
	// machine (WorkRoot, KillGrace, AllowedTransports; Env is not used).
	Process ProcessConfig
	// Host is the Docker Engine API endpoint (unix:///var/run/docker.sock,
	// tcp://...); empty: DOCKER_HOST, else the default socket. Podman's
	// Docker-compatible service works too.
	Host string
	// Agent is the value of the shiploop.agent label: an identity of this
	// agent that stays the same across its restarts, so that Reap finds
	// what a killed predecessor left.
	Agent string
}

// Docker is the Backend that runs each step in a container of its own,
// through the Docker Engine API (API version negotiated, so dockerd 20.10 /
// API 1.41 and later, or Podman's compatible service). The checkout is made
// on the agent's machine as Process does it, and the workspace root is
// bind-mounted into every container at the same path: Workspace.Dir is the
// step's working directory and SHIPLOOP_WORKSPACE, as with Process. A step
// runs `/bin/sh -e -c` with its commands joined by newlines, as the image's
// user, with the image's environment plus the job's and the step's (and the
// SHIPLOOP_ variables, which win); the agent's own environment is not passed.
//
// Every job gets a network of its own (a bridge made by Prepare, removed by
// Destroy): its steps and its services (StartService) are on it, and a
// service is reachable under its name. Everything made carries the labels
// shiploop.job=<job id> and shiploop.agent=<DockerConfig.Agent>; Reap
// removes what an agent left behind when it was killed.
//
// A step's container is removed when it ends, whatever the reason; a
// timeout or cancel stops it (SIGTERM, SIGKILL after the grace period).
// Step.Detach has no effect: nothing outlives its step's container (the
// step's log says so, DetachIgnored).
type Docker struct {
	proc  *Process
	cli   *client.Client
	agent string
	grace time.Duration
}

var (
	_ Backend       = (*Docker)(nil)
	_ ServiceRunner = (*Docker)(nil)
	_ CacheVolumes  = (*Docker)(nil)
)

// CacheVolumes: the Docker backend keeps Step.Cache paths in named volumes,
// one per repository and cache path (shiploop-cache-<hash>, labelled
// shiploop.cache=<repository token>), mounted into the step's container.
// A volume outlives jobs and agent restarts (Destroy and Reap leave it), so
// the next job of the repository on this engine finds what the last one
// left; another repository's jobs get other volumes. Concurrent jobs of one
// repository share the volume, as with a dependency cache on one machine.
func (d *Docker) CacheVolumes() bool { return true }

// cacheVolumeName is the volume of a repository's cache path.
func cacheVolumeName(repo, p string) string {
	sum := sha256.Sum256([]byte(repo + "\x00" + p))
	return "shiploop-cache-" + hex.EncodeToString(sum[:10])
}

// repoToken is a repository name as a label value and key part.
func repoToken(repo string) string {
	return strings.NewReplacer("/", "_", ".", "_", ":", "_").Replace(repo)
}

// cacheMounts makes (or finds) the cache volumes of step and says where
// they go in a container of img: "~/x" under the image's HOME (else /root
// for the root user), anything else under the workspace. Paths that climb
// out of either are refused.
func (d *Docker) cacheMounts(ctx context.Context, ws *Workspace, img string, paths []string) ([]mount.Mount, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	repo := ws.job.Repository
	if repo == "" {
		repo = ws.job.CloneURL
	}
	var home string
	var out []mount.Mount
	for _, p := range paths {
		base, rel := ws.Dir, p
		if r, ok := strings.CutPrefix(p, "~/"); ok {
			if home == "" {
				h, err := d.imageHome(ctx, img)
				if err != nil {
					return nil, fmt.Errorf("cache path %q: %w", p, err)
				}
				home = h
			}
			base, rel = home, r
		}
		clean := path.Clean(rel)
		if path.IsAbs(clean) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, fmt.Errorf("cache path %q is outside the workspace and the home directory", p)
		}
		name := cacheVolumeName(repo, p)
		if _, err := d.cli.VolumeCreate(ctx, volume.CreateOptions{Name: name, Labels: map[string]string{LabelCache: repoToken(repo), LabelCachePath: p}}); err != nil {
			return nil, fmt.Errorf("cache path %q: volume %s: %w", p, name, err)
		}
		out = append(out, mount.Mount{Type: mount.TypeVolume, Source: name, Target: path.Join(base, clean)})
	}
	return out, nil
}

// imageHome is the home directory of img's user: HOME in its environment,
// else /root when it runs as root.
func (d *Docker) imageHome(ctx context.Context, img string) (string, error) {
	ins, err := d.cli.ImageInspect(ctx, img)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", img, err)
	}
	user := ""
	if ins.Config != nil {
		for _, kv := range ins.Config.Env {
			if h, ok := strings.CutPrefix(kv, "HOME="); ok && path.IsAbs(h) {
				return h, nil
			}
		}
		user = ins.Config.User
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		return "/root", nil
	}
	return "", fmt.Errorf("image %s runs as user %q and sets no HOME: use a path in the workspace", img, user)
}

// NewDocker connects to the engine (negotiating the API version) and
// returns the backend. It fails when no engine answers.
func NewDocker(ctx context.Context, cfg DockerConfig) (*Docker, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("backend: docker client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("backend: no Docker engine answers at %s: %w", cli.DaemonHost(), err)
	}
	cli.NegotiateAPIVersion(pctx)
	if cfg.Agent == "" {
		cfg.Agent = "shiploop-agent"
	}
	d := &Docker{proc: NewProcess(cfg.Process), cli: cli, agent: cfg.Agent}
	d.grace = d.proc.grace
	return d, nil
}

// Close closes the connection to the engine.
func (d *Docker) Close() error { return d.cli.Close() }

// Engine describes the engine: its name, version and the API version used.
func (d *Docker) Engine(ctx context.Context) (string, error) {
	v, err := d.cli.ServerVersion(ctx)
	if err != nil {
		return "", err
	}
	name := "Docker Engine"
	for _, c := range v.Components {
		if strings.Contains(strings.ToLower(c.Name), "podman") {
			name = "Podman"
		}
	}
	return fmt.Sprintf("%s %s (API %s, client uses %s)", name, v.Version, v.APIVersion, d.cli.ClientVersion()), nil
}

func (d *Docker) labels(job string) map[string]string {
	return map[string]string{LabelJob: job, LabelAgent: d.agent}
}

// Prepare checks the commit out as Process does and makes the job's network.
func (d *Docker) Prepare(ctx context.Context, job JobSpec) (*Workspace, error) {
	ws, err := d.proc.Prepare(ctx, job)
	if err != nil {
		return nil, err
	}
	name := "shiploop-" + strings.TrimPrefix(ws.root[strings.LastIndex(ws.root, "/")+1:], "job-")
	resp, err := d.cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: d.labels(ws.job.ID)})
	if err != nil {
		_ = d.proc.Destroy(ws)
		return nil, fmt.Errorf("backend: prepare job %s: creating network %s: %w", job.ID, name, err)
	}
	ws.network = resp.ID
	return ws, nil
}

// Destroy removes the job's containers (any left), its network and volumes,
// then the workspace.
func (d *Docker) Destroy(ws *Workspace) error {
	if ws == nil || ws.root == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := []error{d.remove(ctx, filters.NewArgs(
		filters.Arg("label", LabelJob+"="+ws.job.ID), filters.Arg("label", LabelAgent+"="+d.agent)))}
	ws.network = ""
	errs = append(errs, d.proc.Destroy(ws))
	return errors.Join(errs...)
}

// Reap removes every container, network and volume labelled as this
// agent's (shiploop.agent=DockerConfig.Agent): call it when the agent
// starts, before it runs jobs, to clean up after a predecessor that was
// killed. It returns how many objects it removed.
func (d *Docker) Reap(ctx context.Context) (int, error) {
	var n int
	f := filters.NewArgs(filters.Arg("label", LabelAgent+"="+d.agent))
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return 0, fmt.Errorf("backend: reap: %w", err)
	}
	ns, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return 0, fmt.Errorf("backend: reap: %w", err)
	}
	vs, err := d.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return 0, fmt.Errorf("backend: reap: %w", err)
	}
	n = len(cs) + len(ns) + len(vs.Volumes)
	if err := d.remove(ctx, f); err != nil {
		return n, fmt.Errorf("backend: reap: %w", err)
	}
	return n, nil
}

// remove removes the containers, then the networks and volumes matching f.
func (d *Docker) remove(ctx context.Context, f filters.Args) error {
	var errs []error
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	errs = append(errs, err)
	for _, c := range cs {
		if err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !client.IsErrNotFound(err) {
			errs = append(errs, err)
		}
	}
	ns, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	errs = append(errs, err)
	for _, n := range ns {
		if err := d.cli.NetworkRemove(ctx, n.ID); err != nil && !client.IsErrNotFound(err) {
			errs = append(errs, err)
		}
	}
	vs, err := d.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	errs = append(errs, err)
	for _, v := range vs.Volumes {
		if err := d.cli.VolumeRemove(ctx, v.Name, true); err != nil && !client.IsErrNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ensureImage applies the pull policy.
func (d *Docker) ensureImage(ctx context.Context, ref, policy string) error {
	switch policy {
	case "", PullIfNotPresent, PullAlways, PullNever:
	default:
		return fmt.Errorf("unknown pull policy %q (want if-not-present, always or never)", policy)
	}
	if policy != PullAlways {
		_, err := d.cli.ImageInspect(ctx, ref)
		if err == nil {
			return nil
		}
		if !client.IsErrNotFound(err) {
			return fmt.Errorf("image %s: %w", ref, err)
		}
		if policy == PullNever {
			return fmt.Errorf("image %s is not on this agent and pull is never", ref)
		}
	}
	rc, err := d.cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return fmt.Errorf("pulling image %s: %w", ref, err)
	}
	defer rc.Close()
	// The progress stream ends when the pull does; an error is its last message.
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("pulling image %s: %w", ref, err)
	}
	if i := strings.LastIndex(string(b), `"error"`); i >= 0 {
		return fmt.Errorf("pulling image %s: %s", ref, strings.TrimSpace(string(b[i:])))
	}
	return nil
}

// containerEnv is the environment of a step's or service's container.
func containerEnv(ws *Workspace, name string, extra map[string]string) ([]string, error) {
	env := []string{"TMPDIR=" + ws.tmp}
	set := map[string]bool{}
	for _, m := range []map[string]string{ws.job.Env, extra} {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(m[k], 0) {
				return nil, fmt.Errorf("invalid environment variable %q", k)
			}
			set[k] = true
			env = append(env, k+"="+m[k])
		}
	}
	fixed := []string{
		"CI=true",
		"SHIPLOOP_JOB_ID=" + ws.job.ID,
		"SHIPLOOP_COMMIT=" + ws.job.Commit,
		"SHIPLOOP_REF=" + ws.job.Ref,
		"SHIPLOOP_STEP=" + name,
		"SHIPLOOP_WORKSPACE=" + ws.Dir,
	}
	// The engine keeps the first of duplicate keys: drop the ones the
	// fixed variables replace.
	env = slices.DeleteFunc(env, func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return k == "CI" || strings.HasPrefix(k, "SHIPLOOP_") && slices.ContainsFunc(fixed, func(f string) bool { return strings.HasPrefix(f, k+"=") })
	})
	return append(env, fixed...), nil
}

// create makes a container on the job's network with the workspace mounted.
func (d *Docker) create(ctx context.Context, ws *Workspace, cfg *container.Config, hc *container.HostConfig, alias string) (string, error) {
	cfg.Labels = d.labels(ws.job.ID)
	hc.Binds = []string{ws.root + ":" + ws.root}
	hc.NetworkMode = container.NetworkMode(ws.network)
	var nc *network.NetworkingConfig
	if alias != "" {
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{ws.network: {Aliases: []string{alias}}}}
	}
	resp, err := d.cli.ContainerCreate(ctx, cfg, hc, nc, nil, "")
	if err != nil {
		return "", err
	}
	return resp.ID, nil
}

// attach streams a container's output, masked, to out; the returned channel
// closes when the output ends (the container exited or the stream was
// closed). Call it before starting the container so no output is missed.
func (d *Docker) attach(ctx context.Context, ws *Workspace, id, step string, out func(Line)) (done <-chan struct{}, closeFn func(), err error) {
	hj, err := d.cli.ContainerAttach(ctx, id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return nil, nil, err
	}
	var outMu sync.Mutex
	var wg sync.WaitGroup
	read := func(r io.Reader, stream string) {
		defer wg.Done()
		scanLines(r, func(text string) {
			if out == nil {
				return
			}
			line := Line{Step: step, Stream: stream, Text: cleanText(ws.masker.Mask(text)), Time: time.Now()}
			outMu.Lock()
			defer outMu.Unlock()
			out(line)
		})
	}
	stdoutR, stdoutW := io.Pipe()
	stderrR, stderrW := io.Pipe()
	wg.Add(2)
	go read(stdoutR, Stdout)
	go read(stderrR, Stderr)
	go func() {
		_, err := stdcopy.StdCopy(stdoutW, stderrW, hj.Reader)
		stdoutW.CloseWithError(err)
		stderrW.CloseWithError(err)
	}()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	return ch, hj.Close, nil
}

// RunStep runs step in a container of step.Image; see the Backend contract
// and Docker.
func (d *Docker) RunStep(ctx context.Context, ws *Workspace, step Step, out func(Line)) (Outcome, error) {
	if ws == nil || ws.root == "" || ws.network == "" {
		return Outcome{}, errors.New("backend: RunStep needs a workspace made by Docker.Prepare")
	}
	fail := func(err error) (Outcome, error) {
		if ctx.Err() != nil { // the engine call was canceled with the step
			return Outcome{ExitCode: -1, Canceled: true, StartedAt: time.Now()}, nil
		}
		return Outcome{ExitCode: -1, StartedAt: time.Now()}, fmt.Errorf("backend: step %q: %w", step.Name, err)
	}
	if step.Image == "" {
		return fail(errors.New("no image: this agent runs steps in containers; set image: on the step or the pipeline"))
	}
	env, err := containerEnv(ws, step.Name, step.Env)
	if err != nil {
		return fail(err)
	}
	if ctx.Err() != nil {
		return Outcome{ExitCode: -1, Canceled: true, StartedAt: time.Now()}, nil
	}
	if err := d.ensureImage(ctx, step.Image, step.Pull); err != nil {
		return fail(err)
	}
	mounts, err := d.cacheMounts(ctx, ws, step.Image, step.Cache)
	if err != nil {
		return fail(err)
	}
	id, err := d.create(ctx, ws, &container.Config{
		Image:      step.Image,
		Entrypoint: []string{"/bin/sh", "-e", "-c", strings.Join(step.Commands, "\n")},
		Cmd:        []string{},
		Env:        env,
		WorkingDir: ws.Dir,
	}, &container.HostConfig{Mounts: mounts, Resources: container.Resources{NanoCPUs: int64(step.CPUs * 1e9), Memory: step.Memory}}, "")
	if err != nil {
		return fail(err)
	}
	// Whatever happens next, the container goes.
	cleanup := func() error {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := d.cli.ContainerRemove(cctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if client.IsErrNotFound(err) {
			return nil
		}
		return err
	}
	drained, closeAttach, err := d.attach(context.Background(), ws, id, step.Name, out)
	if err != nil {
		_ = cleanup()
		return fail(err)
	}
	defer closeAttach()
	if step.Detach && out != nil {
		// The parsers refuse detach with a step's own image; one inherited
		// from the pipeline's image: gets here.
		out(Line{Step: step.Name, Stream: Stderr, Time: time.Now(), Text: DetachIgnored})
	}
	startedAt := time.Now()
	if err := d.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		_ = cleanup()
		return fail(err)
	}
	waitC, errC := d.cli.ContainerWait(context.Background(), id, container.WaitConditionNotRunning)

	var timeout <-chan time.Time
	if step.Timeout > 0 {
		t := time.NewTimer(step.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	o := Outcome{StartedAt: startedAt}
	var runErr error
	select {
	case w := <-waitC:
		o.ExitCode = int(w.StatusCode)
		if w.Error != nil && w.Error.Message != "" {
			runErr = errors.New(w.Error.Message)
		}
	case err := <-errC:
		runErr = err
	case <-timeout:
		o.TimedOut = true
	case <-ctx.Done():
		o.Canceled = true
	}
	if o.TimedOut || o.Canceled {
		o.ExitCode = -1
		secs := int(d.grace.Seconds())
		sctx, cancel := context.WithTimeout(context.Background(), d.grace+30*time.Second)
		_ = d.cli.ContainerStop(sctx, id, container.StopOptions{Timeout: &secs})
		cancel()
	}
	select {
	case <-drained:
	case <-time.After(pipeDrainTimeout):
		closeAttach()
		<-drained
	}
	o.Duration = time.Since(startedAt)
	if err := cleanup(); err != nil {
		return o, fmt.Errorf("backend: step %q: removing its container: %w", step.Name, err)
	}
	if runErr != nil {
		o.ExitCode = -1
		return o, fmt.Errorf("backend: step %q: %w", step.Name, runErr)
	}
	return o, nil
}

// StartService runs svc in a container of svc.Image on the job's network,
// reachable under svc.Name, and returns once it is ready; see ServiceRunner.
func (d *Docker) StartService(ctx context.Context, ws *Workspace, svc Service, out func(Line)) (func() error, error) {
	if ws == nil || ws.root == "" || ws.network == "" {
		return nil, errors.New("backend: StartService needs a workspace made by Docker.Prepare")
	}
	name := "service:" + svc.Name
	fail := func(err error) (func() error, error) {
		return nil, fmt.Errorf("backend: service %q: %w", svc.Name, err)
	}
	if svc.Image == "" {
		return fail(errors.New("no image: this agent runs services in containers; set image: on the service"))
	}
	env, err := containerEnv(ws, name, svc.Env)
	if err != nil {
		return fail(err)
	}
	if err := d.ensureImage(ctx, svc.Image, svc.Pull); err != nil {
		return fail(err)
	}
	cfg := &container.Config{Image: svc.Image, Env: env, Hostname: svc.Name}
	if svc.Command != "" {
		cfg.Entrypoint = []string{"/bin/sh", "-c", svc.Command}
		cfg.Cmd = []string{}
	}
	id, err := d.create(ctx, ws, cfg, &container.HostConfig{}, svc.Name)
	if err != nil {
		return fail(err)
	}
	var once sync.Once
	var stopErr error
	closeAttach := func() {}
	var drained <-chan struct{}
	stop := func() error {
		once.Do(func() {
			secs := int(d.grace.Seconds())
			sctx, cancel := context.WithTimeout(context.Background(), d.grace+30*time.Second)
			defer cancel()
			_ = d.cli.ContainerStop(sctx, id, container.StopOptions{Timeout: &secs})
			if drained != nil {
				select {
				case <-drained:
				case <-time.After(pipeDrainTimeout):
				}
			}
			closeAttach()
			stopErr = d.cli.ContainerRemove(sctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
			if client.IsErrNotFound(stopErr) {
				stopErr = nil
			}
		})
		return stopErr
	}
	drained, closeAttach, err = d.attach(context.Background(), ws, id, name, out)
	if err != nil {
		_ = stop()
		return fail(err)
	}
	if err := d.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		_ = stop()
		return fail(err)
	}
	if svc.ReadyTCP == "" && svc.ReadyCommand == "" {
		return stop, nil
	}
	timeout := svc.ReadyTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	deadline := time.Now().Add(timeout)
	what := svc.ReadyCommand
	if what == "" {
		what = "port " + svc.ReadyTCP
	}
	for {
		ready, running, err := d.ready(ctx, id, svc)
		if ready {
			return stop, nil
		}
		if !running {
			_ = stop()
			return fail(fmt.Errorf("exited before it was ready (%s)", what))
		}
		if err != nil && ctx.Err() == nil && !errors.Is(err, errNotReady) {
			_ = stop()
			return fail(err)
		}
		select {
		case <-ctx.Done():
			_ = stop()
			return fail(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = stop()
			return fail(fmt.Errorf("not ready within %s (%s)", timeout, what))
		}
	}
}

var errNotReady = errors.New("not ready")

// ready checks a service's readiness once: its ReadyCommand in the
// container, else a connection to ReadyTCP's port on its address.
func (d *Docker) ready(ctx context.Context, id string, svc Service) (ready, running bool, err error) {
	ins, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return false, true, err
	}
	if ins.State == nil || !ins.State.Running {
		return false, false, nil
	}
	if svc.ReadyCommand != "" {
		ex, err := d.cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: []string{"/bin/sh", "-c", svc.ReadyCommand}, AttachStdout: true, AttachStderr: true})
		if err != nil {
			return false, true, err
		}
		hj, err := d.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
		if err != nil {
			return false, true, err
		}
		_, _ = io.Copy(io.Discard, hj.Reader)
		hj.Close()
		st, err := d.cli.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			return false, true, err
		}
		if st.Running || st.ExitCode != 0 {
			return false, true, errNotReady
		}
		if svc.ReadyTCP == "" {
			return true, true, nil
		}
	}
	_, port, err := net.SplitHostPort(svc.ReadyTCP)
	if err != nil {
		if _, perr := strconv.Atoi(svc.ReadyTCP); perr != nil {
			return false, true, fmt.Errorf("ready_tcp %q: want host:port or a port", svc.ReadyTCP)
		}
		port = svc.ReadyTCP
	}
	var ip string
	if ins.NetworkSettings != nil {
		for _, ep := range ins.NetworkSettings.Networks {
			if ep != nil && ep.IPAddress != "" {
				ip = ep.IPAddress
				break
			}
		}
	}
	if ip == "" {
		return false, true, errNotReady
	}
	dl := net.Dialer{Timeout: time.Second}
	conn, err := dl.DialContext(ctx, "tcp", net.JoinHostPort(ip, port))
	if err != nil {
		return false, true, errNotReady
	}
	conn.Close()
	return true, true, nil
}
