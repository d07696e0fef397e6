// Test jobs: services started around the steps, and report files collected
// after them (whatever the steps' result) for the testruns service.

package agent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/agent/backend"
)

// startServices starts the test job's services in order and returns what
// stops them all (in reverse order). On an error the ones started are
// stopped already.
func (r *jobRun) startServices(ctx context.Context, ws *backend.Workspace) (func(), error) {
	specs := r.job.GetTest().GetServices()
	if len(specs) == 0 {
		return func() {}, nil
	}
	runner, ok := r.a.cfg.Backend.(backend.ServiceRunner)
	if !ok {
		return nil, fmt.Errorf("this agent's backend cannot run services (%s)", specs[0].Name)
	}
	var stops []func() error
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			if err := stops[i](); err != nil {
				r.line("", "system", ws.Mask(fmt.Sprintf("stopping service: %v", err)), time.Now())
			}
		}
	}
	out := func(l backend.Line) { r.line(l.Step, l.Stream, l.Text, l.Time) }
	for _, s := range specs {
		r.line("service:"+s.Name, "system", fmt.Sprintf("starting service %s", s.Name), time.Now())
		stop, err := runner.StartService(ctx, ws, backend.Service{Name: s.Name, Command: s.Command, Env: s.Environment, ReadyTCP: s.ReadyTcp,
			Image: s.GetImage(), Pull: s.GetPull(), ReadyCommand: s.GetReadyCommand()}, out)
		if err != nil {
			stopAll()
			return nil, err
		}
		stops = append(stops, stop)
		r.line("service:"+s.Name, "system", fmt.Sprintf("service %s is ready", s.Name), time.Now())
	}
	return stopAll, nil
}

// collectReports keeps the files matching the job's report globs in the
// Object Store (bucket "artifacts", "<job>/<path>") and lists them.
func (r *jobRun) collectReports(ctx context.Context, ws *backend.Workspace) []*eventsv1.ReportFile {
	globs := r.job.GetTest().GetReports()
	if globs == nil {
		return nil
	}
	prefixes := []string{ws.Dir}
	if real, err := filepath.EvalSymlinks(ws.Dir); err == nil && real != ws.Dir {
		prefixes = append(prefixes, real)
	}
	if mod := goModule(ws.Dir); mod != "" {
		prefixes = append(prefixes, mod)
	}
	var out []*eventsv1.ReportFile
	for _, kind := range []struct {
		name  string
		globs []string
	}{{"junit", globs.GetJunit()}, {"coverage", globs.GetCoverage()}} {
		if len(kind.globs) == 0 {
			continue
		}
		files, refused, err := findArtifacts(ws.Dir, kind.globs)
		for _, f := range refused {
			r.line("", "system", fmt.Sprintf("report %s: outside the workspace, not kept", f), time.Now())
		}
		if err != nil {
			r.line("", "system", ws.Mask(fmt.Sprintf("finding %s reports: %v", kind.name, err)), time.Now())
		}
		if len(files) == 0 {
			r.line("", "system", fmt.Sprintf("no %s report matches %s", kind.name, strings.Join(kind.globs, ", ")), time.Now())
			continue
		}
		obs, err := artifactStore(ctx, r.a.cfg.Bus)
		if err != nil {
			msg := ws.Mask(fmt.Sprintf("keeping reports: %v", err))
			r.line("", "system", msg, time.Now())
			r.keepFailed(msg)
			return out
		}
		for _, rel := range files {
			a, err := putArtifact(ctx, obs, filepath.Join(ws.Dir, filepath.FromSlash(rel)), r.job.JobId+"/"+rel)
			if err != nil {
				msg := ws.Mask(fmt.Sprintf("keeping %s report %s: %v", kind.name, rel, err))
				r.line("", "system", msg, time.Now())
				r.keepFailed(msg)
				continue
			}
			out = append(out, &eventsv1.ReportFile{Name: rel, Kind: kind.name, Key: a.Key, Size: a.Size, Sha256: a.Sha256, PathPrefixes: prefixes})
			r.line("", "system", fmt.Sprintf("kept %s report %s (%d bytes)", kind.name, rel, a.Size), time.Now())
		}
	}
	return out
}

// goModule is the module path of dir/go.mod, or "".
func goModule(dir string) string {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
