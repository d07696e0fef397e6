package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/shiploop/shiploop/pkg/testfixture"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// axeVersion is the axe-core the accessibility checks inject.
const axeVersion = "4.11.0"

// axeSource installs axe-core with npm (from SHIPLOOP_NPM_CACHE when set,
// as .ci/run warms it) and returns axe.min.js. Without npm or the package
// the test skips, except under CI=true, where it fails.
func axeSource(t *testing.T) string {
	t.Helper()
	dir := npmPackageDir(t, "axe-core", axeVersion)
	src, err := os.ReadFile(filepath.Join(dir, "node_modules", "axe-core", "axe.min.js"))
	if err != nil || len(src) < 1000 {
		testfixture.Missing(t, "axe-core installed no axe.min.js: %v", err)
	}
	return string(src)
}

// axeViolation is what the test reports of one axe-core violation.
type axeViolation struct {
	ID      string   `json:"id"`
	Impact  string   `json:"impact"`
	Help    string   `json:"help"`
	Targets []string `json:"targets"`
}

// checkA11y injects axe-core into the open page, runs it, and fails on
// serious or critical violations (others are logged).
func checkA11y(t *testing.T, ctx context.Context, axe, page string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](axe+";\ntrue")); err != nil {
		t.Fatalf("%s: injecting axe-core: %v", page, err)
	}
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](`axe.run(document, {resultTypes: ['violations']}).then(function (r) {
		return JSON.stringify(r.violations.map(function (v) {
			return {id: v.id, impact: v.impact, help: v.help, targets: v.nodes.slice(0, 5).map(function (n) { return n.target.join(' '); })};
		}));
	})`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: axe.run: %v", page, err)
	}
	var vs []axeViolation
	if err := json.Unmarshal([]byte(raw), &vs); err != nil {
		t.Fatalf("%s: axe result %q: %v", page, raw, err)
	}
	bad := 0
	for _, v := range vs {
		if v.Impact == "serious" || v.Impact == "critical" {
			bad++
			t.Errorf("%s: axe %s violation %s (%s) at %v", page, v.Impact, v.ID, v.Help, v.Targets)
		} else {
			t.Logf("%s: axe %s violation %s (%s) at %v", page, v.Impact, v.ID, v.Help, v.Targets)
		}
	}
	t.Logf("%s: axe-core: %d violations, %d serious or critical", page, len(vs), bad)
}

// TestDashboardsPagesInBrowser builds a repository whose steps print
// colours and keep a test report, then visits /repos, the repository's
// history (filtered too), the build page (its log steps, colours, a line
// anchor, a search) in headless Chromium: a screenshot of each, and
// axe-core on each, failing on serious or critical violations. The
// overview, pipeline, environments, errors and DORA pages are checked by
// axe as well.
func TestDashboardsPagesInBrowser(t *testing.T) {
	axe := axeSource(t)
	ctx := browser(t)
	dir := artifactDir(t)
	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": `steps:
  - name: greet
    commands: [echo hello from the pages test]
  - name: colour
    commands:
      - 'printf "\033[1;32mall green\033[0m and \033[31mred\033[0m\n"'
      - mkdir -p dist && echo app > dist/app.txt
    artifacts: ["dist/*"]
test:
  steps:
    - name: unit
      commands:
        - mkdir -p reports
        - printf '<testsuite name="login"><testcase classname="LoginTest" name="test_ok"/></testsuite>' > reports/TEST-login.xml
  reports: {junit: ["reports/*.xml"]}
`})
	secret := inst.register(t, "demo/pages", repo)
	w := inst.watch(t, "demo/pages")
	head := repo.git("rev-parse", "HEAD")
	if res := inst.pushCommit(t, "demo/pages", secret, strings.Repeat("0", 40), head, "Pages under test"); res.Status != http.StatusAccepted {
		t.Fatalf("push: %d %s", res.Status, res.Raw)
	}
	evs := w.until("build.finished", 90*time.Second)
	bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
	if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("build %v: %s", bf.GetStatus(), bf.GetError())
	}
	build := bf.GetBuildId()

	tctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	visit := func(path, waitFor string) string {
		t.Helper()
		if err := chromedp.Do(tctx, chromedp.Navigate(inst.HTTPURL+path), chromedp.WaitVisible(chromedp.CSS(waitFor))); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		text, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
		if err != nil {
			t.Fatal(err)
		}
		return text
	}
	// poll waits for js to hold, across a navigation the last action
	// started (a form's submit).
	poll := func(path, js string, timeout time.Duration) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			ok, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`(function(){try{return !!(`+js+`)}catch(e){return false}})()`))
			if err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				text, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
				t.Fatalf("%s: waiting for %s: %v; the page shows:\n%s", path, js, err, text)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// /repos: the repository with its last build.
	text := visit("/repos", "table.repos")
	for _, want := range []string{"demo/pages", "#1", "success"} {
		if !strings.Contains(text, want) {
			t.Errorf("/repos lacks %q:\n%s", want, text)
		}
	}
	screenshot(t, tctx, dir, "repos.png")
	checkA11y(t, tctx, axe, "/repos")

	// The history, reached by its link, then filtered with the form.
	if err := chromedp.Do(tctx, chromedp.Click(chromedp.Search(`//a[text()='demo/pages']`)), chromedp.WaitVisible(chromedp.CSS(`table.history`))); err != nil {
		t.Fatalf("history link: %v", err)
	}
	poll("/repos/demo/pages", `location.pathname === '/repos/demo/pages' && document.querySelectorAll('tr.build-row').length === 1 && document.querySelector('tr.build-row').innerText.includes('push')`, 10*time.Second)
	screenshot(t, tctx, dir, "history.png")
	checkA11y(t, tctx, axe, "/repos/demo/pages")
	if err := chromedp.Do(tctx,
		void(chromedp.Evaluate[bool](`document.querySelector('select[name=status]').value = 'failure'; true`)),
		chromedp.Click(chromedp.CSS(`form.filters button`)),
	); err != nil {
		t.Fatalf("filter: %v", err)
	}
	poll("/repos/demo/pages?status=failure", `location.search.includes('status=failure') && document.querySelector('main').innerText.includes('No build matches')`, 10*time.Second)
	screenshot(t, tctx, dir, "history-filtered.png")

	// The build page: the graph, the steps' logs with colours, the artifact
	// and the report (which may arrive after build.finished: live).
	visit("/builds/"+build, "ol.graph")
	poll("/builds/"+build, `(function(){var t=document.querySelector('main').innerText;return t.includes('dist/app.txt') && t.includes('reports/TEST-login.xml')})()`, 60*time.Second)
	text, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"demo/pages · build #1", "greet", "colour", "hello from the pages test", "Tests", "Gate", "Deploys", "raw log"} {
		if !strings.Contains(text, want) {
			t.Errorf("build page lacks %q:\n%s", want, text)
		}
	}
	green, err := chromedp.Run(tctx, chromedp.Evaluate[string](`(function(){var s=document.querySelector('span.ansi-fg-green');return s ? s.textContent + '|' + getComputedStyle(s).color : ''})()`))
	if err != nil || !strings.HasPrefix(green, "all green|") {
		t.Errorf("no green span from the step's colours: %q %v", green, err)
	}
	screenshot(t, tctx, dir, "build.png")
	checkA11y(t, tctx, axe, "/builds/{id}")

	// A line anchor opens its step and points at the line.
	anchor, err := chromedp.Run(tctx, chromedp.Evaluate[string](`[...document.querySelectorAll('pre.log .line')].find(function(l){return l.innerText.includes('hello from the pages test')}).id`))
	if err != nil || !strings.HasPrefix(anchor, "L") {
		t.Fatalf("no anchored line: %q %v", anchor, err)
	}
	visit("/builds/"+build+"#"+anchor, "ol.graph")
	poll("anchor", `location.hash === '#`+anchor+`' && document.getElementById('`+anchor+`').closest('details').open`, 10*time.Second)
	screenshot(t, tctx, dir, "build-anchor.png")

	// Search, through the form: only matching lines, marked.
	if err := chromedp.Do(tctx,
		chromedp.SendKeys(chromedp.CSS(`input[name=q]`), "RED"),
		chromedp.Submit(chromedp.CSS(`input[name=q]`)),
	); err != nil {
		t.Fatalf("search: %v", err)
	}
	poll("search", `location.search === '?q=RED' && document.querySelector('pre.log mark') !== null && document.querySelector('pre.log mark').textContent === 'red' && !document.querySelector('main').innerText.includes('hello from the pages test')`, 10*time.Second)
	screenshot(t, tctx, dir, "build-search.png")
	checkA11y(t, tctx, axe, "/builds/{id}?q=")

	// The raw log downloads, colour escapes and all.
	raw, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.querySelector('a.raw').getAttribute('href')`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(inst.HTTPURL + raw)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") ||
		!strings.Contains(string(body), "##[step] greet\nhello from the pages test") || !strings.Contains(string(body), "\x1b[1;32mall green") {
		t.Errorf("raw log %s: %d %v\n%q", raw, resp.StatusCode, resp.Header, body)
	}
	// The other pages pass axe too.
	for _, p := range []struct{ path, wait string }{
		{"/", "h2.repo"}, {"/changes/" + evs[len(evs)-1].GetChainId(), "table.steps"}, {"/builds", "table.history"},
		{"/environments", "main"}, {"/errors", "main"}, {"/dora", "#m-lead_time"},
	} {
		visit(p.path, p.wait)
		if p.path == "/builds" {
			screenshot(t, tctx, dir, "all-builds.png")
		}
		checkA11y(t, tctx, axe, p.path)
	}
}
