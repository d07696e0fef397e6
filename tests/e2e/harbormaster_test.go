package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/conduit/conduittest"
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
