package e2e

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestSplitMode runs the production shape: a standalone nats-server with
// JetStream, PostgreSQL, `shiploop serve builds` and two `shiploop agent`
// processes, all separate. A push becomes a build exactly as it does in
// `shiploop up`, and a burst of pushes is shared by both agents, each build
// finishing once.
func TestSplitMode(t *testing.T) {
	natsBin := natsServerBinary(t)
	dbURL := createDatabase(t)
	natsURL := startNATSServer(t, natsBin)
	inst := startServer(t, "serve", "--nats-url", natsURL, "--database-url", dbURL, "--data-dir", t.TempDir(), "builds")
	agents := []string{startAgent(t, natsURL), startAgent(t, natsURL)}
	t.Logf("split mode ready: serve in %dms, agents %v", inst.ReadyMS, agents)

	t.Run("push becomes build", func(t *testing.T) {
		repo := newRepo(t, map[string]string{".shiploop.yml": goodConfig, "src/app.txt": "v1\n"})
		sha := repo.git("rev-parse", "HEAD")
		secret := inst.register(t, "acme/app", repo)
		w := inst.watch(t, "acme/app")
		res := inst.push(t, "acme/app", secret, "refs/heads/main", zero, sha)
		if res.Status != 202 {
			t.Fatalf("push: HTTP %d %s", res.Status, res.Raw)
		}
		evs := w.until("build.finished", 60*time.Second)
		checkEventOrder(t, evs, 2)
		for _, ev := range evs {
			if ev.GetChainId() != evs[0].GetId() {
				t.Errorf("%s has chain id %q, want the change event's id %q", short(ev.GetType()), ev.GetChainId(), evs[0].GetId())
			}
		}
		if evs[0].GetId() != res.Body["event_id"] {
			t.Errorf("webhook answered event_id %v, the stream's change event is %s", res.Body["event_id"], evs[0].GetId())
		}
		for _, ev := range evs {
			if short(ev.GetType()) == "job.started" {
				if a := payload(t, ev, &eventsv1.JobStarted{}).GetAgent(); !slices.Contains(agents, a) {
					t.Errorf("job started on agent %q, want one of %v", a, agents)
				}
			}
		}
		bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
		if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
			t.Fatalf("build finished %v (%s)", bf.GetStatus(), bf.GetError())
		}
		wantVersion := "0.0.1-dev.1+g" + sha[:7]
		if bf.GetVersion() != wantVersion {
			t.Errorf("version %q, want %q", bf.GetVersion(), wantVersion)
		}

		got, err := inst.client.GetBuild(context.Background(), &buildsv1.GetBuildRequest{Id: bf.GetBuildId()})
		if err != nil {
			t.Fatalf("GetBuild: %v", err)
		}
		b := got.GetBuild()
		if b.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS || b.GetVersion() != wantVersion || b.GetCommit() != sha || b.GetNumber() != 1 || b.GetRef() != "refs/heads/main" {
			t.Errorf("GetBuild = status %v version %q commit %q number %d ref %q", b.GetStatus(), b.GetVersion(), b.GetCommit(), b.GetNumber(), b.GetRef())
		}
		if len(b.GetSteps()) != 2 {
			t.Fatalf("steps: %v", b.GetSteps())
		}
		for i, name := range []string{"compile", "unit"} {
			s := b.GetSteps()[i]
			if s.GetName() != name || s.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS || s.GetExitCode() != 0 || s.GetDuration().AsDuration() <= 0 {
				t.Errorf("step %d = %s %v exit %d duration %v", i, s.GetName(), s.GetStatus(), s.GetExitCode(), s.GetDuration().AsDuration())
			}
		}
		list, err := inst.client.ListBuilds(context.Background(), &buildsv1.ListBuildsRequest{Repository: "acme/app"})
		if err != nil || len(list.GetBuilds()) != 1 || list.GetBuilds()[0].GetId() != b.GetId() {
			t.Errorf("ListBuilds = %v, %v", list.GetBuilds(), err)
		}

		// The agent stored the log in the Object Store of the standalone server.
		if len(b.GetJobIds()) != 1 {
			t.Fatalf("job ids %v", b.GetJobIds())
		}
		logs, err := inst.client.StreamLogs(context.Background(), &buildsv1.StreamLogsRequest{JobId: b.GetJobIds()[0]})
		if err != nil {
			t.Fatal(err)
		}
		var text []string
		for {
			r, err := logs.Recv()
			if err != nil {
				break
			}
			text = append(text, r.GetLine().GetStep()+": "+r.GetLine().GetText())
		}
		all := strings.Join(text, "\n")
		for _, want := range []string{"compile: compiling " + wantVersion, "unit: unit tests pass"} {
			if !strings.Contains(all, want) {
				t.Errorf("log lacks %q:\n%s", want, all)
			}
		}
	})

	t.Run("builds are shared by both agents", func(t *testing.T) {
		// Every job waits for the gate file, so while it is closed each agent
		// holds one job (an agent runs one at a time): the first two jobs to
		// start must be on different agents.
		gate := filepath.Join(t.TempDir(), "gate")
		config := fmt.Sprintf("steps:\n  - name: wait\n    commands:\n      - 'while [ ! -e %s ]; do sleep 0.02; done'\n      - echo built $SHIPLOOP_VERSION\n", gate)
		repo := newRepo(t, map[string]string{".shiploop.yml": config})
		secret := inst.register(t, "acme/many", repo)
		w := inst.watch(t, "acme/many")

		// Each build on a branch of its own: a newer push to the same branch
		// would supersede (cancel) the older builds.
		const n = 6
		commits := map[string]bool{}
		for i := range n {
			sha := repo.commit(fmt.Sprintf("change %d", i), map[string]string{"n.txt": strconv.Itoa(i)})
			branch := fmt.Sprintf("topic-%d", i)
			repo.git("branch", branch, sha)
			commits[sha] = true
			if res := inst.push(t, "acme/many", secret, "refs/heads/"+branch, zero, sha); res.Status != 202 {
				t.Fatalf("push %d: HTTP %d %s", i, res.Status, res.Raw)
			}
		}

		var evs []*eventsv1.Event
		count := func(typ string) int {
			c := 0
			for _, ev := range evs {
				if short(ev.GetType()) == typ {
					c++
				}
			}
			return c
		}
		started := func() []*eventsv1.JobStarted {
			var out []*eventsv1.JobStarted
			for _, ev := range evs {
				if short(ev.GetType()) == "job.started" {
					out = append(out, payload(t, ev, &eventsv1.JobStarted{}))
				}
			}
			return out
		}
		for count("job.started") < 2 {
			evs = append(evs, w.until("job.started", 60*time.Second)...)
		}
		if first := started(); first[0].GetAgent() == first[1].GetAgent() {
			t.Errorf("two jobs running at once on agent %s, which runs one at a time", first[0].GetAgent())
		}
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for count("build.finished") < n {
			evs = append(evs, w.until("build.finished", 60*time.Second)...)
		}

		finished := map[string]int{} // build id -> build.finished events
		for _, ev := range evs {
			if short(ev.GetType()) != "build.finished" {
				continue
			}
			bf := payload(t, ev, &eventsv1.BuildFinished{})
			finished[bf.GetBuildId()]++
			if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS || !commits[bf.GetCommit()] {
				t.Errorf("build #%d of %s finished %v (%s)", bf.GetNumber(), bf.GetCommit(), bf.GetStatus(), bf.GetError())
			}
			if want := regexp.MustCompile(`^0\.0\.1-dev\.\d+\+g` + bf.GetCommit()[:7] + `$`); !want.MatchString(bf.GetVersion()) {
				t.Errorf("build #%d version %q, want 0.0.1-dev.N+g%s", bf.GetNumber(), bf.GetVersion(), bf.GetCommit()[:7])
			}
		}
		if len(finished) != n {
			t.Errorf("build.finished for %d builds, want %d", len(finished), n)
		}

		// Each job started once, on its first delivery, and the jobs were
		// spread over both agents.
		perAgent := map[string]int{}
		jobs := map[string]int{}
		for _, js := range started() {
			perAgent[js.GetAgent()]++
			jobs[js.GetJobId()]++
			if js.GetAttempt() != 1 {
				t.Errorf("job %s started on attempt %d", js.GetJobId(), js.GetAttempt())
			}
		}
		for job, c := range jobs {
			if c != 1 {
				t.Errorf("job %s started %d times", job, c)
			}
		}
		if len(jobs) != n {
			t.Errorf("%d jobs started, want %d", len(jobs), n)
		}
		for _, a := range agents {
			if perAgent[a] == 0 {
				t.Errorf("agent %s took no job; jobs per agent %v", a, perAgent)
			}
		}
		for a := range perAgent {
			if !slices.Contains(agents, a) {
				t.Errorf("a job started on unknown agent %q (agents %v)", a, agents)
			}
		}
		t.Logf("jobs per agent: %v", perAgent)

		// The store agrees: six builds, numbered 1 to 6, one success each.
		list, err := inst.client.ListBuilds(context.Background(), &buildsv1.ListBuildsRequest{Repository: "acme/many"})
		if err != nil {
			t.Fatalf("ListBuilds: %v", err)
		}
		var numbers []int
		for _, b := range list.GetBuilds() {
			numbers = append(numbers, int(b.GetNumber()))
			if b.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS || finished[b.GetId()] != 1 {
				t.Errorf("build #%d: status %v, %d build.finished events", b.GetNumber(), b.GetStatus(), finished[b.GetId()])
			}
		}
		slices.Sort(numbers)
		if !slices.Equal(numbers, []int{1, 2, 3, 4, 5, 6}) {
			t.Errorf("build numbers %v, want 1..6", numbers)
		}
	})
}

// checkEventOrder checks one build's events in the order the producers
// guarantee. builds and the agent publish independently, so only causal
// order is fixed: the change, build.created and job.queued first, the
// agent's events in their order, build.started after job.started, and
// build.finished last.
func checkEventOrder(t *testing.T, evs []*eventsv1.Event, steps int) {
	t.Helper()
	got := types(evs)
	var agent, other []string
	for _, typ := range got {
		if strings.HasPrefix(typ, "job.") && typ != "job.queued" {
			agent = append(agent, typ)
		} else {
			other = append(other, typ)
		}
	}
	wantAgent := []string{"job.started"}
	for range steps {
		wantAgent = append(wantAgent, "job.step_finished")
	}
	wantAgent = append(wantAgent, "job.finished")
	wantOther := []string{"change.pushed", "build.created", "job.queued", "build.started", "build.finished"}
	if !slices.Equal(agent, wantAgent) || !slices.Equal(other, wantOther) ||
		slices.Index(got, "job.started") < slices.Index(got, "job.queued") ||
		slices.Index(got, "build.started") < slices.Index(got, "job.started") ||
		got[len(got)-1] != "build.finished" {
		t.Fatalf("events out of order: %v", got)
	}
}

// startNATSServer starts bin, a standalone nats-server, with JetStream on a
// random port and returns its client URL.
func startNATSServer(t *testing.T, bin string) string {
	t.Helper()
	p := startProcess(t, "nats-server", bin, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", t.TempDir())
	const listening = "Listening for client connections on "
	line := p.waitLine(t, p.stderr, "its client address", func(l string) bool { return strings.Contains(l, listening) }, 30*time.Second)
	p.waitLine(t, p.stderr, "that it is ready", func(l string) bool { return strings.Contains(l, "Server is ready") }, 30*time.Second)
	return "nats://" + strings.TrimSpace(line[strings.Index(line, listening)+len(listening):])
}

// natsServerBinary finds a nats-server of the version pkg/go.mod builds
// against: NATS_SERVER_BIN, else the one `go install` puts in GOBIN or
// GOPATH/bin. (Older servers, such as Debian's 2.9, lack multi-subject
// consumer filters.)
func natsServerBinary(t *testing.T) string {
	t.Helper()
	want := natsServerModuleVersion(t)
	if bin := os.Getenv("NATS_SERVER_BIN"); bin != "" {
		got, err := natsServerVersion(bin)
		if err != nil {
			t.Fatalf("NATS_SERVER_BIN=%s: %v", bin, err)
		}
		if got != want {
			t.Logf("NATS_SERVER_BIN=%s is nats-server %s; shiploop builds against %s", bin, got, want)
		}
		return bin
	}
	dir := goEnv(t, "GOBIN")
	if dir == "" {
		dir = filepath.Join(filepath.SplitList(goEnv(t, "GOPATH"))[0], "bin")
	}
	bin := filepath.Join(dir, "nats-server")
	got, err := natsServerVersion(bin)
	if err == nil && got == want {
		return bin
	}
	found := "not found"
	if err == nil {
		found = "found " + got
	}
	needService(t, fmt.Sprintf("split-mode test needs nats-server %s: go install github.com/nats-io/nats-server/v2@%s or set NATS_SERVER_BIN (%s: %s)", want, want, bin, found))
	return ""
}

// natsServerModuleVersion reads the nats-server version from pkg/go.mod.
func natsServerModuleVersion(t *testing.T) string {
	t.Helper()
	mod, err := os.ReadFile("../../pkg/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("pkg/go.mod does not require github.com/nats-io/nats-server/v2")
	}
	return string(m[1])
}

func natsServerVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server: "), nil
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// createDatabase creates a database of its own on the PostgreSQL test server
// (SHIPLOOP_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test),
// drops it when the test ends and returns its URL. serve's builds service
// always uses the schema "builds", so a database per test keeps runs apart.
func createDatabase(t *testing.T) string {
	t.Helper()
	adminURL := os.Getenv("SHIPLOOP_TEST_DATABASE_URL")
	if adminURL == "" {
		adminURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatalf("SHIPLOOP_TEST_DATABASE_URL: %v", err)
	}
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		needService(t, "split-mode test needs PostgreSQL: "+u.Redacted()+" is unreachable: "+err.Error()+
			"\nPoint SHIPLOOP_TEST_DATABASE_URL at one, or start one with\n"+
			"  docker run --rm -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test postgres:17")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "shiploop_e2e_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// needService skips the test when something it needs is missing, except
// with CI=true, where everything must run.
func needService(t *testing.T, msg string) {
	t.Helper()
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal(msg + "\n(CI=true: this test must run in CI)")
	}
	t.Skip(msg)
}

// startAgent starts `shiploop agent`, waits until it runs and returns its
// name as it appears in job events (hostname-pid).
func startAgent(t *testing.T, natsURL string) string {
	t.Helper()
	p := startProcess(t, "shiploop agent", binary, "agent", "--nats-url", natsURL, "--data-dir", t.TempDir())
	p.waitLine(t, p.stderr, "its ready log line", func(l string) bool { return strings.Contains(l, `msg="shiploop ready"`) }, 30*time.Second)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s-%d", host, p.cmd.Process.Pid)
}
