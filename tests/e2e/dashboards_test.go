package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds Debian's chromium: the test skips without it, except in
// CI (CI=true), where it must run.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "headless Chromium is not installed: apt-get install -y chromium (the dashboards' browser test needs it)"
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal(msg + "; CI=true: the browser test must run in CI")
	}
	t.Skip(msg)
	return ""
}

// artifactDir is where screenshots are kept: $SHIPLOOP_TEST_ARTIFACTS/<test>
// when set (CI keeps them), else the test's temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	if base := os.Getenv("SHIPLOOP_TEST_ARTIFACTS"); base != "" {
		dir := filepath.Join(base, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// browser starts headless Chromium with a fresh profile and returns a
// chromedp context; cleanup closes it.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// void runs an action for its effect only.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

// pushCommit sends a signed GitHub push for a commit with its message.
func (inst *instance) pushCommit(t *testing.T, repo, secret, before, after, message string) hookResult {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal(pushBody(repo, "refs/heads/main", before, after), &body); err != nil {
		t.Fatal(err)
	}
	commit := map[string]any{"id": after, "message": message, "added": []string{}, "modified": []string{"x"}, "removed": []string{},
		"author": map[string]any{"name": "Ada Lovelace", "email": "ada@example.invalid"}}
	body["head_commit"], body["commits"] = commit, []any{commit}
	raw, _ := json.Marshal(body)
	return inst.hook(t, "push", "", sign(secret, raw), raw)
}

// TestDashboardsInBrowser opens the overview in headless Chromium, pushes,
// and watches the change appear on the open page without a reload; then
// opens the change's pipeline page. Screenshots of both are kept.
func TestDashboardsInBrowser(t *testing.T) {
	ctx := browser(t)
	dir := artifactDir(t)
	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: greet\n    commands: [echo hello from the dashboards test]\n"})
	secret := inst.register(t, "demo/web", repo)
	w := inst.watch(t, "demo/web")
	first := repo.git("rev-parse", "HEAD")
	if res := inst.pushCommit(t, "demo/web", secret, strings.Repeat("0", 40), first, "First commit"); res.Status != http.StatusAccepted {
		t.Fatalf("push: %d %s", res.Status, res.Raw)
	}
	w.until("build.finished", 60*time.Second)

	tctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	err := chromedp.Do(tctx,
		chromedp.Navigate(inst.HTTPURL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`h2.repo`)),
		// The live stream is connected before we push.
		void(chromedp.Poll[bool](`document.getElementById('live-state').textContent.includes('live')`, chromedp.WithPollingTimeout(20*time.Second))),
		void(chromedp.Evaluate[bool](`window.__notReloaded = true`)),
	)
	if err != nil {
		t.Fatalf("overview: %v", err)
	}
	title, err := chromedp.Run(tctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(title, "Overview") {
		t.Errorf("title %q", title)
	}
	// Polled, and read from the live document: a live update may replace
	// main's content between finding the node and reading its text (the
	// text of the replaced node read empty once).
	if _, err := chromedp.Run(tctx, chromedp.Poll[bool](`(function(){var t=document.querySelector('main').innerText;return t.includes('demo/web') && t.includes('First commit')})()`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		text, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
		t.Fatalf("overview: %v; it shows:\n%s", err, text)
	}
	screenshot(t, tctx, dir, "overview.png")

	// A push made now shows up on the open page.
	// It also brings a test job whose JUnit report has a failing test: the
	// pipeline page must name it, and the gate's failing condition.
	second := repo.commit("Second change, pushed while the page is open", map[string]string{"x": "2", ".shiploop.yml": `steps:
  - name: greet
    commands: [echo hello from the dashboards test]
test:
  steps:
    - name: unit
      commands:
        - mkdir -p reports
        - printf '<testsuite name="login"><testcase classname="LoginTest" name="test_ok"/><testcase classname="LoginTest" name="test_wrong_password"><failure message="expected 401, got 500"/></testcase></testsuite>' > reports/TEST-login.xml
  reports: {junit: ["reports/*.xml"]}
`})
	if res := inst.pushCommit(t, "demo/web", secret, first, second, "Second change, pushed while the page is open"); res.Status != http.StatusAccepted {
		t.Fatalf("push: %d %s", res.Status, res.Raw)
	}
	_, err = chromedp.Run(tctx,
		chromedp.Poll[bool](`document.querySelector('main').innerText.includes('Second change, pushed while the page is open')`, chromedp.WithPollingTimeout(30*time.Second)),
	)
	if err != nil {
		t.Fatalf("the push did not appear on the open page: %v", err)
	}
	if notReloaded, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`window.__notReloaded === true`)); err != nil || !notReloaded {
		t.Fatalf("the page reloaded (%v)", err)
	}
	// And its build finishes on the page too.
	_, err = chromedp.Run(tctx, chromedp.Poll[bool](`(function(){var r=[...document.querySelectorAll('tr.branch')].find(function(e){return e.innerText.includes('Second change')});return !!r && r.querySelector('.st.success') !== null})()`,
		chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		t.Fatalf("the build's success did not appear: %v", err)
	}
	screenshot(t, tctx, dir, "overview-after-push.png")

	// The pipeline page of the change: steps and the job's log.
	err = chromedp.Do(tctx,
		chromedp.Click(chromedp.Search(`//tr[contains(., 'Second change')]//a`)),
		chromedp.WaitVisible(chromedp.CSS(`table.steps`)),
		void(chromedp.Poll[bool](`document.querySelector('pre.log').innerText.includes('hello from the dashboards test')`, chromedp.WithPollingTimeout(20*time.Second))),
	)
	if err != nil {
		t.Fatalf("pipeline page: %v", err)
	}
	pipeline, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(`main`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"greet", "success", "hello from the dashboards test"} {
		if !strings.Contains(pipeline, want) {
			t.Errorf("pipeline page lacks %q:\n%s", want, pipeline)
		}
	}
	_, err = chromedp.Run(tctx, chromedp.Poll[bool](`(function(){var t=document.querySelector('main').innerText;return t.includes('LoginTest.test_wrong_password') && t.includes('expected 401, got 500') && t.includes('gate failed')})()`,
		chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		text, _ := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(`main`)))
		t.Fatalf("the failed test and the gate's failing condition did not appear on the pipeline page: %v\n%s", err, text)
	}
	screenshot(t, tctx, dir, "pipeline.png")

	// Badges and the DORA CLI against the same server.
	resp, err := http.Get(inst.HTTPURL + "/badges/demo/web/build.svg")
	if err != nil {
		t.Fatal(err)
	}
	svg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(svg), `aria-label="build: passing"`) || resp.Header.Get("ETag") == "" {
		t.Errorf("badge %d: %s", resp.StatusCode, svg)
	}
	out, err := exec.Command(binary, "dora", "--server", inst.GRPCAddr, "--json").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"deployment_frequency"`) {
		t.Errorf("shiploop dora: %v\n%s", err, out)
	}
	if err := chromedp.Do(tctx, chromedp.Navigate(inst.HTTPURL+"/dora"), chromedp.WaitVisible(chromedp.CSS(`#m-lead_time`))); err != nil {
		t.Fatalf("dora page: %v", err)
	}
	screenshot(t, tctx, dir, "dora.png")
}
