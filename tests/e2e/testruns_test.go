package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	testrunsv1 "github.com/shiploop/shiploop/proto/shiploop/testruns/v1"
)

// sharedTestdata is the team's fixture tree, read in place.
const sharedTestdata = "../../../shared/testdata"

// tests runs `shiploop tests ARGS --server ADDR` and returns its output.
func (inst *instance) tests(t *testing.T, wantErr bool, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, append(append([]string{"tests"}, args...), "--server", inst.GRPCAddr)...).CombinedOutput()
	if (err != nil) != wantErr {
		t.Fatalf("shiploop tests %v: err %v\n%s", args, err, out)
	}
	return string(out)
}

// TestTestRunsUpload: after a build, reports uploaded with the CLI become a
// test run (testrun.started/finished on the event stream); a corrupt report
// is named with its position; quarantine turns a failing run green; history
// and flaky tests answer over gRPC and the CLI.
func TestTestRunsUpload(t *testing.T) {
	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: build\n    commands: [\"true\"]\n"})
	secret := inst.register(t, "acme/tested", repo)
	w := inst.watch(t, "acme/tested")
	inst.push(t, "acme/tested", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))
	evs := w.until("build.finished", 60*time.Second)
	bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
	if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("build %v: %s", bf.GetStatus(), bf.GetError())
	}
	build := bf.GetBuildId()

	// A report for a build shiploop does not know is refused with a reason.
	out := inst.tests(t, true, "upload", "--build", "no-such-build", filepath.Join(sharedTestdata, "junit/surefire/TEST-org.acme.FlakyTest.xml"))
	if !strings.Contains(out, "unknown build no-such-build") {
		t.Errorf("unknown build: %s", out)
	}

	dir := t.TempDir()
	failing := filepath.Join(dir, "TEST-app.xml")
	writeTestFile(t, failing, `<?xml version="1.0"?><testsuite name="app"><testcase classname="app.Math" name="adds"/>`+
		`<testcase classname="app.Math" name="divides"><failure message="expected 2 but was 3">trace</failure></testcase></testsuite>`)
	corrupt := filepath.Join(dir, "broken.xml")
	writeTestFile(t, corrupt, "<testsuites>\n<testsuite name=\"x\">\n<testcase name=\"y\">")
	out = inst.tests(t, false, "upload", "--build", build,
		filepath.Join(sharedTestdata, "junit/surefire/TEST-org.acme.FlakyTest.xml"),
		filepath.Join(sharedTestdata, "coverage/go-coverprofile/mux_v1.8.1.coverage.txt"),
		failing, corrupt, "--strip", "github.com/gorilla/mux", "--complete")
	if !strings.Contains(out, "broken.xml: not read: broken.xml:3:") || !strings.Contains(out, ": failed") {
		t.Errorf("upload output:\n%s", out)
	}
	evs = w.until("testrun.finished", 30*time.Second)
	if !containsType(evs, "testrun.started") {
		t.Errorf("no testrun.started before testrun.finished: %v", types(evs))
	}
	fin := payload(t, evs[len(evs)-1], &eventsv1.TestRunFinished{})
	if fin.GetStatus() != eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED || fin.GetCounts().GetTests() != 4 || fin.GetCounts().GetFailed() != 1 ||
		fin.GetCounts().GetFlaky() != 1 || fin.GetBuildId() != build {
		t.Errorf("testrun.finished %v %+v", fin.GetStatus(), fin.GetCounts())
	}
	// The Go profile keeps its own unit: 515 of 588 statements.
	if c := fin.GetCoverage(); c.GetRawUnit() != "statements" || c.GetRawCovered() != 515 || c.GetRawTotal() != 588 {
		t.Errorf("coverage %+v", c)
	}

	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := testrunsv1.NewTestRunServiceClient(conn)
	ctx := context.Background()
	cases, err := cl.ListTestCases(ctx, &testrunsv1.ListTestCasesRequest{RunId: fin.GetRunId(), Statuses: []string{"failed"}})
	if err != nil || len(cases.GetCases()) != 1 || cases.GetCases()[0].GetName() != "divides" {
		t.Fatalf("failed cases %v %v", cases, err)
	}
	cov, err := cl.Coverage(ctx, &testrunsv1.CoverageRequest{RunId: fin.GetRunId(), PathPrefix: "mux.go"})
	if err != nil || len(cov.GetFiles()) != 1 || cov.GetFiles()[0].GetPath() != "mux.go" {
		t.Errorf("coverage of mux.go: %v %v", cov, err)
	}
	if out := inst.tests(t, false, "cases", fin.GetRunId(), "--status", "failed"); !strings.Contains(out, "divides") || !strings.Contains(out, "expected 2 but was 3") {
		t.Errorf("tests cases:\n%s", out)
	}
	if out := inst.tests(t, false, "flaky", "--repo", "acme/tested"); !strings.Contains(out, "testFlaky") {
		t.Errorf("tests flaky:\n%s", out)
	}

	// Quarantine the failing test; the next build's run passes with it
	// reported as quarantined.
	if out := inst.tests(t, false, "quarantine", "--repo", "acme/tested", "--suite", "app", "--class", "app.Math", "divides", "--reason", "BUG-7"); !strings.Contains(out, "quarantined") {
		t.Errorf("quarantine: %s", out)
	}
	inst.push(t, "acme/tested", secret, "refs/heads/main", repo.git("rev-parse", "HEAD"), repo.commit("second", map[string]string{"b.txt": "b"}))
	evs = w.until("build.finished", 60*time.Second)
	build2 := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{}).GetBuildId()
	out = inst.tests(t, false, "upload", "--build", build2, failing, "--complete")
	if !strings.Contains(out, ": passed") || !strings.Contains(out, "1 quarantined") {
		t.Errorf("with quarantine:\n%s", out)
	}
	out = inst.tests(t, false, "history", "--repo", "acme/tested", "--suite", "app", "--class", "app.Math", "divides")
	if !strings.Contains(out, "2 runs, 2 failures (100.0%)") || !strings.Contains(out, build) || !strings.Contains(out, build2) {
		t.Errorf("history:\n%s", out)
	}
	if out := inst.tests(t, false, "show", "--build", build); !strings.Contains(out, "statements (515/588)") || !strings.Contains(out, "report broken.xml: broken.xml:3:") {
		t.Errorf("show:\n%s", out)
	}
}

// TestTestJobsFromPipeline: a push whose .shiploop.yml has a test section
// builds, then its test jobs run on the agent (two shards, a TCP service
// started around the steps), their JUnit and coverage reports are collected
// and read, and testrun.finished says what happened.
func TestTestJobsFromPipeline(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed (the test service is a python one-liner)")
	}
	inst := startUp(t)
	port := freeTCPPort(t)
	repo := newRepo(t, map[string]string{
		"go.mod":  "module example.com/calc\n",
		"calc.go": "package calc\n\nfunc Add(a, b int) int {\n\treturn a + b\n}\n",
		"daemon.py": "import socket, os\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n" +
			"s.bind(('127.0.0.1', int(os.environ['PORT'])))\ns.listen(8)\nwhile True:\n    c, _ = s.accept(); c.sendall(b'pong'); c.close()\n",
		"check.py": "import socket, os\nprint(socket.create_connection(('127.0.0.1', int(os.environ['PORT']))).recv(4).decode())\n",
		".shiploop.yml": `steps:
  - name: build
    commands: ["true"]
test:
  steps:
    - name: unit
      commands:
        - PORT=` + port + ` python3 check.py | grep pong
        - mkdir -p reports
        - |
          if [ "$SHIPLOOP_SHARD_INDEX" = 0 ]; then
            printf '<testsuite name="calc"><testcase classname="calc" name="TestAdd" time="0.01"/></testsuite>' > reports/TEST-0.xml
            printf 'mode: set\nexample.com/calc/calc.go:3.25,5.2 1 1\n' > cover.out
          else
            printf '<testsuite name="calc"><testcase classname="calc" name="TestSub"><failure message="2-1 != 3"/></testcase></testsuite>' > reports/TEST-1.xml
            exit 1
          fi
  reports: {junit: ["reports/*.xml"], coverage: [cover.out]}
  services:
    - name: pong
      command: python3 daemon.py
      env: {PORT: "` + port + `"}
      ready: {tcp: "127.0.0.1:` + port + `"}
  shards: 2
`,
	})
	secret := inst.register(t, "acme/pipeline-tests", repo)
	w := inst.watch(t, "acme/pipeline-tests")
	inst.push(t, "acme/pipeline-tests", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))
	evs := w.until("testrun.finished", 120*time.Second)
	if !containsType(evs, "build.finished") || !containsType(evs, "testrun.started") {
		t.Errorf("events %v", types(evs))
	}
	fin := payload(t, evs[len(evs)-1], &eventsv1.TestRunFinished{})
	if fin.GetStatus() != eventsv1.TestRunStatus_TEST_RUN_STATUS_FAILED || fin.GetCounts().GetTests() != 2 ||
		fin.GetCounts().GetPassed() != 1 || fin.GetCounts().GetFailed() != 1 {
		t.Errorf("testrun.finished %v %+v %s", fin.GetStatus(), fin.GetCounts(), fin.GetError())
	}
	if c := fin.GetCoverage(); c.GetRawCovered() != 1 || c.GetRawTotal() != 1 || c.GetLinesTotal() != 3 {
		t.Errorf("coverage %+v", c)
	}
	if out := inst.tests(t, false, "coverage", fin.GetRunId()); !strings.Contains(out, "calc.go") {
		t.Errorf("coverage paths are not repository-relative:\n%s", out)
	}
}

func freeTCPPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func containsType(evs []*eventsv1.Event, typ string) bool {
	for _, e := range evs {
		if short(e.GetType()) == typ {
			return true
		}
	}
	return false
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
