package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/conduit/conduittest"
	"github.com/shiploop/shiploop/pkg/testfixture"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
)

const e2eConduitToken = "api-e2e0123456789abcdefghijklmno"

// requireHg skips without Mercurial outside CI; CI must have it.
func requireHg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("hg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("hg (Mercurial) is not installed; .ci/run installs it with apt-get install -y mercurial")
		}
		t.Skip("hg (Mercurial) is not installed: apt-get install mercurial to run the Harbormaster/Mercurial test")
	}
}

// hgRepo is a Mercurial repository that does not publish: what is pushed
// to it stays draft, like a review repository.
type hgRepo struct {
	t   *testing.T
	dir string
}

func newHgRepo(t *testing.T) *hgRepo {
	t.Helper()
	r := &hgRepo{t: t, dir: t.TempDir()}
	r.hg("init")
	if err := os.WriteFile(filepath.Join(r.dir, ".hg", "hgrc"), []byte("[phases]\npublish = False\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *hgRepo) hg(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("hg", append([]string{"--cwd", r.dir}, args...)...)
	cmd.Env = append(os.Environ(), "HGPLAIN=1", "HGUSER=e2e <e2e@example.invalid>", "HGRCPATH=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("hg %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *hgRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.hg("commit", "-A", "-q", "-m", msg)
	return r.hg("log", "-r", ".", "-T", "{node}")
}

// harbormaster sends what a "Make HTTP Request" step sends: the templated
// URI, the token as its credential's password.
func (inst *instance) harbormaster(t *testing.T, method, password string, vars url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, inst.HTTPURL+"/hooks/harbormaster?"+vars.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if password != "" {
		req.SetBasicAuth("phabricator", password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestHarbormasterDiffOnMercurial takes Jenkins's place behind
// Harbormaster for a Mercurial repository, through the built binary: a
// draft changeset staged as Differential diff 7 is requested by a "Make
// HTTP Request" step, built by the agent, and reported back through Conduit
// as work, then fail with one unit result per step.
func TestHarbormasterDiffOnMercurial(t *testing.T) {
	requireHg(t)
	inst := startUp(t)
	ctx := context.Background()
	fake := conduittest.NewServer(t, e2eConduitToken)

	src := newHgRepo(t)
	base := src.commit("base", map[string]string{".shiploop.yml": `steps:
  - name: unit
    commands: [test -f feature.txt, echo unit ok]
  - name: integration
    commands: [grep -q ready feature.txt || exit 3]
`})
	src.hg("phase", "--public", "-r", base)
	draft := src.commit("D3: add the feature", map[string]string{"feature.txt": "not yet\n"})
	if phase := src.hg("log", "-r", draft, "-T", "{phase}"); phase != "draft" {
		t.Fatalf("the diff's changeset is %s, want draft", phase)
	}
	staging := newHgRepo(t)
	src.hg("bookmark", "-r", draft, "phabricator/diff/7")
	src.hg("push", "-q", "-r", draft, "-B", "phabricator/diff/7", staging.dir)

	resp, err := inst.client.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/hgweb", CloneUrl: src.dir, DefaultBranch: "default",
		Vcs: "hg", PublicOnly: new(true), ConduitUrl: fake.URL, ConduitToken: e2eConduitToken, StagingUrl: staging.dir, Callsign: "HGWEB"})
	if err != nil {
		t.Fatalf("RegisterRepository: %v", err)
	}
	secret := resp.GetWebhookSecret()
	vars := url.Values{"target.phid": {"PHID-HMBT-e2e7"}, "buildable.diff": {"7"}, "buildable.revision": {"3"}, "buildable.commit": {""},
		"repository.callsign": {"HGWEB"}, "repository.vcs": {"hg"}, "repository.uri": {src.dir}, "step.timestamp": {"1700000000"}}

	if code, body := inst.harbormaster(t, "GET", "", vars); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d %s", code, body)
	}
	noTarget := url.Values{"buildable.diff": {"7"}, "repository.callsign": {"HGWEB"}}
	if code, body := inst.harbormaster(t, "POST", secret, noTarget); code != http.StatusBadRequest || !strings.Contains(body, "target.phid") {
		t.Errorf("without target.phid: %d %s", code, body)
	}
	if list, _ := inst.client.ListBuilds(ctx, &buildsv1.ListBuildsRequest{Repository: "acme/hgweb"}); len(list.GetBuilds()) != 0 {
		t.Fatalf("refused requests started builds: %v", list.GetBuilds())
	}

	start := time.Now()
	code, body := inst.harbormaster(t, "GET", secret, vars)
	if code != http.StatusAccepted {
		t.Fatalf("harbormaster request: %d %s", code, body)
	}
	calls := fake.Wait(t, 60*time.Second, "work then the result", func(c []conduittest.Call) bool { return len(c) >= 2 })
	took := time.Since(start)
	if len(calls) != 2 {
		t.Fatalf("calls = %+v", calls)
	}
	for i, want := range []string{"work", "fail"} {
		c := calls[i]
		if c.Method != "harbormaster.sendmessage" || c.Error != "" || c.Type() != want || c.Target() != "PHID-HMBT-e2e7" {
			t.Errorf("call %d = %+v, want an accepted %s for PHID-HMBT-e2e7", i, c, want)
		}
	}
	units := calls[1].Units()
	if len(units) != 2 || units[0]["name"] != "unit" || units[0]["result"] != "pass" ||
		units[1]["name"] != "integration" || units[1]["result"] != "fail" || !strings.Contains(units[1]["details"].(string), "exit code 3") {
		t.Errorf("unit results = %v", units)
	}
	if d, ok := units[0]["duration"].(json.Number); !ok || d.String() == "" {
		t.Errorf("unit duration = %v", units[0]["duration"])
	}

	list, err := inst.client.ListBuilds(ctx, &buildsv1.ListBuildsRequest{Repository: "acme/hgweb"})
	if err != nil || len(list.GetBuilds()) != 1 {
		t.Fatalf("ListBuilds = %v, %v", list, err)
	}
	b := list.GetBuilds()[0]
	if b.GetCommit() != draft || b.GetRef() != "phabricator/diff/7" || b.GetTrigger() != "pull_request" || b.GetVersion() != "0.0.1-dev.2+h"+draft[:12] {
		t.Errorf("build = %v", b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := inst.client.GetBuild(ctx, &buildsv1.GetBuildRequest{Id: b.GetId()})
		if hm := got.GetBuild().GetHarbormaster(); err == nil && hm.GetSent() == "fail" && hm.GetDiffId() == 7 && hm.GetRevisionId() == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetBuild harbormaster = %v, %v", got.GetBuild().GetHarbormaster(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("Harbormaster request to the fail message: %v", took.Round(time.Millisecond))
}

// levelsSARIF is a report with one result of each SARIF level (the third
// takes its rule's default, note; it gives no column, which SARIF reads
// as column 1).
const levelsSARIF = `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"vet","rules":[{"id":"V1","defaultConfiguration":{"level":"note"}}]}},"results":[
{"ruleId":"V2","level":"error","message":{"text":"x declared and not used"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"main.go"},"region":{"startLine":7,"startColumn":2}}}]},
{"ruleId":"V3","level":"warning","message":{"text":"unreachable code"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"util/u.go"},"region":{"startLine":12,"startColumn":3}}}]},
{"ruleId":"V1","message":{"text":"consider a shorter name"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"main.go"},"region":{"startLine":3}}}]},
{"ruleId":"V4","level":"none","message":{"text":"generated file"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"gen.go"},"region":{"startLine":1,"startColumn":1}}}]}
]}]}`

// TestHarbormasterLint: a Differential diff of a git repository whose step
// keeps a flake8 report (the shared fixture, read in place) and a SARIF
// report ends with a pass message whose lint[] has one entry per finding,
// with the path, line, char and code of the report and the Arcanist
// severity of its level (SARIF error → error, warning → warning, note and
// none → advice; flake8 has no levels: its E999 syntax error is an error,
// the rest warnings), as Phabricator decodes the form-encoded call.
func TestHarbormasterLint(t *testing.T) {
	flake8, err := filepath.Abs(filepath.Join(sharedTestdata, "lint/flake8/flake8-default-format.txt"))
	if err != nil {
		t.Fatal(err)
	}
	report, err := os.ReadFile(flake8)
	if err != nil {
		testfixture.Missing(t, "shared fixtures: %v", err)
	}
	inst := startUp(t)
	ctx := context.Background()
	fake := conduittest.NewServer(t, e2eConduitToken)

	repo := newRepo(t, map[string]string{"README": "lint me\n"})
	staging := &gitRepo{t: t, dir: t.TempDir()}
	staging.git("init", "--quiet", "--bare")
	repo.git("checkout", "--quiet", "-b", "D5")
	repo.commit("D5: lint the diff", map[string]string{"levels.sarif": levelsSARIF, ".shiploop.yml": `steps:
  - name: lint
    commands:
      - mkdir -p out
      - cp '` + flake8 + `' out/flake8.txt
      - cp levels.sarif out/levels.sarif
    artifacts: [out/flake8.txt, out/levels.sarif]
gate:
  conditions:
    - {metric: issues_error, operator: "==", threshold: 0}
  reports:
    flake8: [out/flake8.txt]
    sarif: ["out/*.sarif"]
`})
	repo.git("push", "--quiet", staging.dir, "HEAD:refs/tags/phabricator/diff/9")
	repo.git("checkout", "--quiet", "main")

	resp, err := inst.client.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/lint", CloneUrl: repo.dir, DefaultBranch: "main",
		ConduitUrl: fake.URL, ConduitToken: e2eConduitToken, StagingUrl: staging.dir, Callsign: "LINT"})
	if err != nil {
		t.Fatalf("RegisterRepository: %v", err)
	}
	vars := url.Values{"target.phid": {"PHID-HMBT-e2elint"}, "buildable.diff": {"9"}, "buildable.revision": {"5"},
		"repository.callsign": {"LINT"}, "repository.vcs": {"git"}}
	start := time.Now()
	if code, body := inst.harbormaster(t, "GET", resp.GetWebhookSecret(), vars); code != http.StatusAccepted {
		t.Fatalf("harbormaster request: %d %s", code, body)
	}
	calls := fake.Wait(t, 90*time.Second, "work then the result", func(c []conduittest.Call) bool { return len(c) >= 2 })
	took := time.Since(start)
	if len(calls) != 2 {
		t.Fatalf("calls = %+v", calls)
	}
	for i, want := range []string{"work", "pass"} {
		c := calls[i]
		if c.Method != "harbormaster.sendmessage" || c.Error != "" || c.Type() != want || c.Target() != "PHID-HMBT-e2elint" || c.Encoding != "params-json" {
			t.Errorf("call %d = %+v, want an accepted %s for PHID-HMBT-e2elint", i, c, want)
		}
	}
	if units := calls[1].Units(); len(units) != 1 || units[0]["name"] != "lint" || units[0]["result"] != "pass" {
		t.Errorf("units = %v", units)
	}

	// What the reports say, each finding as "path:line:char severity code".
	want := []string{"main.go:7:2 error V2", "util/u.go:12:3 warning V3", "main.go:3:1 advice V1", "gen.go:1:1 advice V4"}
	line := regexp.MustCompile(`^\./(.+?):(\d+):(\d+): ([A-Z]+\d+) `)
	for _, l := range strings.Split(strings.TrimSpace(string(report)), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("fixture line %q is not flake8's default format", l)
		}
		sev := "warning"
		if m[4] == "E999" {
			sev = "error"
		}
		want = append(want, fmt.Sprintf("%s:%s:%s %s %s", m[1], m[2], m[3], sev, m[4]))
	}
	var got []string
	for _, l := range calls[1].Lints() {
		got = append(got, fmt.Sprintf("%v:%v:%v %v %v", l["path"], l["line"], l["char"], l["severity"], l["code"]))
		if l["code"] == "E999" && (l["name"] != "SyntaxError: invalid syntax" || l["description"] != "flake8: SyntaxError: invalid syntax") {
			t.Errorf("E999 lint = %v", l)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("lint (%d):\n%s\nwant (%d):\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	t.Logf("Harbormaster request to the pass message with %d lint messages: %v", len(got), took.Round(time.Millisecond))
}
