//go:build unix

package backend

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
)

// TestDockerCacheVolumes: a cache path lives in a named volume of the
// repository: job 1 writes into it (a workspace path and a ~/ path), job 2
// of the same repository finds the files, a job of another repository does
// not; Destroy and Reap leave the volumes. A detach step's log says detach
// is ignored.
func TestDockerCacheVolumes(t *testing.T) {
	agent := uniqueAgent(t)
	d := newDockerTestBackend(t, agent)
	r := newTestRepo(t)
	ctx := context.Background()
	repoA, repoB := "acme/"+agent+"-a", "acme/"+agent+"-b"
	t.Cleanup(func() {
		for _, repo := range []string{repoA, repoB} {
			vs, _ := d.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelCache+"="+repoToken(repo)))})
			for _, v := range vs.Volumes {
				_ = d.cli.VolumeRemove(ctx, v.Name, true)
			}
		}
	})
	cache := []string{".deps", "~/.cache/tool"}
	run := func(job, repo string, step Step) (string, Outcome) {
		t.Helper()
		ws, err := d.Prepare(ctx, JobSpec{ID: job, Repository: repo, CloneURL: r.bare, Commit: r.first})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var lines []string
		step.Image, step.Pull, step.Cache = testImage, PullNever, cache
		o, err := d.RunStep(ctx, ws, step, func(l Line) { mu.Lock(); lines = append(lines, l.Stream+": "+l.Text); mu.Unlock() })
		if err != nil {
			t.Fatalf("%s: %v\n%s", job, err, strings.Join(lines, "\n"))
		}
		if err := d.Destroy(ws); err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n"), o
	}
	out, o := run("cache-1", repoA, Step{Name: "fill", Commands: []string{
		"test ! -e .deps/dep.txt", "test ! -e $HOME/.cache/tool/tool.txt",
		"echo from-job-1 > .deps/dep.txt", "echo tool-1 > $HOME/.cache/tool/tool.txt"}})
	if o.ExitCode != 0 {
		t.Fatalf("job 1: exit %d\n%s", o.ExitCode, out)
	}
	// The reaper of this agent leaves cache volumes alone.
	if _, err := d.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	out, o = run("cache-2", repoA, Step{Name: "use", Commands: []string{"cat .deps/dep.txt $HOME/.cache/tool/tool.txt"}})
	if o.ExitCode != 0 || !strings.Contains(out, "stdout: from-job-1") || !strings.Contains(out, "stdout: tool-1") {
		t.Errorf("job 2 of the same repository: exit %d, want both cached files\n%s", o.ExitCode, out)
	}
	out, o = run("cache-3", repoB, Step{Name: "other", Detach: true, Commands: []string{
		"test ! -e .deps/dep.txt", "test ! -e $HOME/.cache/tool/tool.txt", "echo clean"}})
	if o.ExitCode != 0 || !strings.Contains(out, "stdout: clean") {
		t.Errorf("a job of another repository sees the first one's cache: exit %d\n%s", o.ExitCode, out)
	}
	if !strings.Contains(out, "stderr: "+DetachIgnored) {
		t.Errorf("a detach step's log does not say detach is ignored:\n%s", out)
	}
	vs, err := d.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelCache+"="+repoToken(repoA)))})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs.Volumes) != len(cache) {
		t.Errorf("repository %s has %d cache volumes, want %d", repoA, len(vs.Volumes), len(cache))
	}
	if left := leftovers(t, d, agent); len(left) != 0 {
		t.Errorf("left after the jobs: %v", left)
	}
	// A path out of the workspace is refused.
	ws, err := d.Prepare(ctx, JobSpec{ID: "cache-4", Repository: repoA, CloneURL: r.bare, Commit: r.first})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Destroy(ws)
	if _, err := d.RunStep(ctx, ws, Step{Name: "escape", Image: testImage, Pull: PullNever, Cache: []string{"../up"}, Commands: []string{"true"}}, nil); err == nil || !strings.Contains(err.Error(), "outside the workspace") {
		t.Errorf("cache path ../up: %v, want refused", err)
	}
}
