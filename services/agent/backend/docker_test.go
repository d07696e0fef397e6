//go:build unix

package backend

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
)

// testImage has redis-server and redis-tools (scripts/redis-image.sh).
const testImage = "shiploop-redis:local"

// newDockerTestBackend connects to the engine and makes sure testImage
// exists (building it with scripts/redis-image.sh, which needs root and
// debootstrap). Outside CI a missing engine or image skips the test; under
// CI=true it fails it (.ci/run starts dockerd).
func newDockerTestBackend(t testing.TB, agentName string) *Docker {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format+" (outside CI this skips; start dockerd to run it)", args...)
	}
	d, err := NewDocker(context.Background(), DockerConfig{Process: ProcessConfig{WorkRoot: t.TempDir(), KillGrace: time.Second}, Agent: agentName})
	if err != nil {
		unavailable("no Docker engine: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.cli.ImageInspect(context.Background(), testImage); err != nil {
		script, _ := filepath.Abs("../../../scripts/redis-image.sh")
		cmd := exec.Command(script)
		cmd.Env = append(os.Environ(), "REDIS_IMAGE="+testImage)
		if b, err := cmd.CombinedOutput(); err != nil {
			unavailable("building %s with %s: %v\n%s", testImage, script, err, b)
		}
	}
	if e, err := d.Engine(context.Background()); err == nil {
		t.Logf("engine: %s", e)
	}
	return d
}

// leftovers lists the containers and networks labelled with agent.
func leftovers(t testing.TB, d *Docker, agent string) []string {
	t.Helper()
	ctx := context.Background()
	f := filters.NewArgs(filters.Arg("label", LabelAgent+"="+agent))
	var out []string
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		out = append(out, "container "+c.ID[:12]+" "+c.State+" "+c.Command)
	}
	ns, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		out = append(out, "network "+n.Name)
	}
	return out
}

func uniqueAgent(t testing.TB) string {
	return "test-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())) + "-" + time.Now().Format("150405.000000")
}

// TestDockerStepsAndService: steps run in the image with the workspace
// mounted at the same path, output masked and streamed, exit codes reported;
// a Redis service container is reachable under its name on the job's
// network; a timeout stops the step's container; nothing labelled is left
// after Destroy.
func TestDockerStepsAndService(t *testing.T) {
	agent := uniqueAgent(t)
	d := newDockerTestBackend(t, agent)
	r := newTestRepo(t)
	ws, err := d.Prepare(context.Background(), JobSpec{ID: "docker-1", CloneURL: r.bare, Commit: r.first, Secrets: []string{"s3cr3t-value"}})
	if err != nil {
		t.Fatal(err)
	}
	destroyed := false
	defer func() {
		if !destroyed {
			_ = d.Destroy(ws)
		}
	}()
	var mu sync.Mutex
	var lines []string
	out := func(l Line) { mu.Lock(); lines = append(lines, l.Step+"/"+l.Stream+": "+l.Text); mu.Unlock() }
	got := func() string { mu.Lock(); defer mu.Unlock(); return strings.Join(lines, "\n") }

	start := time.Now()
	stop, err := d.StartService(context.Background(), ws, Service{Name: "redis", Image: testImage, Pull: PullNever,
		Command: "exec redis-server --protected-mode no", ReadyTCP: "redis:6379", ReadyTimeout: 30 * time.Second}, out)
	if err != nil {
		t.Fatalf("redis service: %v\n%s", err, got())
	}
	t.Logf("redis ready in %s", time.Since(start))
	stopCmd, err := d.StartService(context.Background(), ws, Service{Name: "cache", Image: testImage, Pull: PullIfNotPresent,
		Command: "exec redis-server --protected-mode no --port 6380", ReadyCommand: "redis-cli -p 6380 ping | grep -q PONG", ReadyTimeout: 30 * time.Second}, out)
	if err != nil {
		t.Fatalf("cache service (ready command): %v\n%s", err, got())
	}

	o, err := d.RunStep(context.Background(), ws, Step{Name: "use", Image: testImage, Pull: PullNever, CPUs: 1, Memory: 256 << 20,
		Env: map[string]string{"TOKEN": "s3cr3t-value"},
		Commands: []string{
			`test "$PWD" = "$SHIPLOOP_WORKSPACE"`,
			`cat f.txt`,
			`echo "token=$TOKEN"`,
			`redis-cli -h redis ping`,
			`redis-cli -h cache -p 6380 ping`,
			`echo made > made.txt`,
			`echo to-stderr >&2`,
		}}, out)
	if err != nil || o.ExitCode != 0 {
		t.Fatalf("step: %+v %v\n%s", o, err, got())
	}
	if b, err := os.ReadFile(filepath.Join(ws.Dir, "made.txt")); err != nil || string(b) != "made\n" {
		t.Errorf("file the step wrote in the workspace: %q %v", b, err)
	}
	for _, want := range []string{"use/stdout: first", "use/stdout: token=***", "use/stdout: PONG", "use/stderr: to-stderr"} {
		if !strings.Contains(got(), want) {
			t.Errorf("no line %q in:\n%s", want, got())
		}
	}
	if strings.Contains(got(), "s3cr3t-value") {
		t.Errorf("secret not masked:\n%s", got())
	}

	o, err = d.RunStep(context.Background(), ws, Step{Name: "fails", Image: testImage, Commands: []string{"echo before", "exit 3", "echo after"}}, out)
	if err != nil || o.ExitCode != 3 || strings.Contains(got(), "fails/stdout: after") {
		t.Errorf("failing step: %+v %v", o, err)
	}
	start = time.Now()
	o, err = d.RunStep(context.Background(), ws, Step{Name: "slow", Image: testImage, Timeout: 500 * time.Millisecond, Commands: []string{"sleep 60"}}, out)
	if err != nil || !o.TimedOut || o.ExitCode != -1 || time.Since(start) > 20*time.Second {
		t.Errorf("timed-out step: %+v %v after %s", o, err, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	o, err = d.RunStep(ctx, ws, Step{Name: "canceled", Image: testImage, Commands: []string{"sleep 60"}}, out)
	cancel()
	if err != nil || !o.Canceled {
		t.Errorf("canceled step: %+v %v", o, err)
	}
	if _, err = d.RunStep(context.Background(), ws, Step{Name: "noimage", Commands: []string{"true"}}, out); err == nil || !strings.Contains(err.Error(), "no image") {
		t.Errorf("step without image: %v", err)
	}
	if _, err = d.RunStep(context.Background(), ws, Step{Name: "missing", Image: "shiploop-no-such-image:local", Pull: PullNever, Commands: []string{"true"}}, out); err == nil || !strings.Contains(err.Error(), "pull is never") {
		t.Errorf("missing image with pull never: %v", err)
	}
	if _, err := d.StartService(context.Background(), ws, Service{Name: "dies", Image: testImage, Command: "exit 3", ReadyTCP: "dies:1"}, out); err == nil || !strings.Contains(err.Error(), "exited before") {
		t.Errorf("service that exits: %v", err)
	}
	if _, err := d.StartService(context.Background(), ws, Service{Name: "mute", Image: testImage, Command: "exec sleep 60", ReadyTCP: "mute:1", ReadyTimeout: time.Second}, out); err == nil || !strings.Contains(err.Error(), "not ready within") {
		t.Errorf("service never ready: %v", err)
	}
	// Only the two services are left running.
	if left := leftovers(t, d, agent); len(left) != 3 { // 2 containers + the network
		t.Errorf("while the job runs: %v", left)
	}
	if err := stopCmd(); err != nil {
		t.Error(err)
	}
	if err := stop(); err != nil {
		t.Error(err)
	}
	if err := d.Destroy(ws); err != nil {
		t.Fatal(err)
	}
	destroyed = true
	if left := leftovers(t, d, agent); len(left) != 0 {
		t.Errorf("left after the job: %v", left)
	}
	if _, err := os.Stat(ws.root); !os.IsNotExist(err) {
		t.Errorf("workspace left: %v", err)
	}
}

// TestDockerReapAfterKill: an agent process killed with SIGKILL in the
// middle of a job (a service and a step running) leaves containers and a
// network; the next agent with the same identity removes them on start.
func TestDockerReapAfterKill(t *testing.T) {
	if os.Getenv("SHIPLOOP_DOCKER_HELPER") != "" {
		return
	}
	agent := uniqueAgent(t)
	d := newDockerTestBackend(t, agent)
	r := newTestRepo(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestDockerKilledAgentHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "SHIPLOOP_DOCKER_HELPER="+agent, "SHIPLOOP_DOCKER_REPO="+r.bare, "SHIPLOOP_DOCKER_COMMIT="+r.first)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The helper prints "step running" once the step's container runs.
	ready := make(chan bool, 1)
	go func() {
		var seen strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			seen.Write(buf[:n])
			if strings.Contains(seen.String(), "step running") {
				ready <- true
				for {
					if _, err := stdout.Read(buf); err != nil {
						return
					}
				}
			}
			if err != nil {
				t.Logf("helper output:\n%s", seen.String())
				ready <- false
				return
			}
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("the helper agent ended before its step ran")
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("the helper agent's step did not start in 2 minutes")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	left := leftovers(t, d, agent)
	if len(left) < 3 {
		t.Fatalf("after kill -9 expected the service's and the step's containers and the network, got %v", left)
	}
	t.Logf("left by the killed agent: %v", left)

	restarted := newDockerTestBackend(t, agent)
	n, err := restarted.Reap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, d, agent); len(left) != 0 {
		t.Errorf("after the reaper (removed %d): %v", n, left)
	}
}

// TestDockerKilledAgentHelper is the agent TestDockerReapAfterKill kills.
func TestDockerKilledAgentHelper(t *testing.T) {
	agent := os.Getenv("SHIPLOOP_DOCKER_HELPER")
	if agent == "" {
		t.Skip("run by TestDockerReapAfterKill")
	}
	d := newDockerTestBackend(t, agent)
	ws, err := d.Prepare(context.Background(), JobSpec{ID: "killed-1", CloneURL: os.Getenv("SHIPLOOP_DOCKER_REPO"), Commit: os.Getenv("SHIPLOOP_DOCKER_COMMIT")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.StartService(context.Background(), ws, Service{Name: "redis", Image: testImage, Pull: PullNever,
		Command: "exec redis-server --protected-mode no", ReadyTCP: "redis:6379"}, nil); err != nil {
		t.Fatal(err)
	}
	_, _ = d.RunStep(context.Background(), ws, Step{Name: "long", Image: testImage, Pull: PullNever, Commands: []string{"echo step running", "sleep 600"}},
		func(l Line) { os.Stdout.WriteString(l.Text + "\n") })
}
