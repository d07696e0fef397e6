package dashboards

import (
	"bytes"
	"fmt"
	"html"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// publishBuild publishes a change and its finished build on a ref, with
// the trigger builds gives it.
func (h *harness) publishBuild(t *testing.T, repository, chain, ref, trigger string, number int64, status eventsv1.BuildStatus, when time.Time) {
	t.Helper()
	ch := &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Repository: repository, DefaultBranch: "main", Ref: ref, After: fmt.Sprintf("%040d", number),
		Sender: "ada", Commits: []*eventsv1.Commit{{Sha: fmt.Sprintf("%040d", number), Message: fmt.Sprintf("change %d", number), AuthorName: "Ada"}}}
	switch {
	case strings.HasPrefix(ref, "refs/heads/"):
		ch.Branch = strings.TrimPrefix(ref, "refs/heads/")
	case strings.HasPrefix(ref, "refs/tags/"):
		ch.Kind, ch.Tag = eventsv1.ChangeKind_CHANGE_KIND_TAG, strings.TrimPrefix(ref, "refs/tags/")
	}
	if trigger != "manual" {
		h.publish(t, "change.pushed", repository, chain, when, ch)
	}
	id := "b-" + chain
	h.publish(t, "build.created", repository, chain, when, &eventsv1.BuildCreated{BuildId: id, Number: number, Repository: repository, Ref: ref,
		Commit: ch.After, Version: fmt.Sprintf("1.0.%d", number), Trigger: trigger, CreatedAt: timestamppb.New(when)})
	if status != eventsv1.BuildStatus_BUILD_STATUS_RUNNING {
		h.publish(t, "build.finished", repository, chain, when, &eventsv1.BuildFinished{BuildId: id, Number: number, Repository: repository, Ref: ref,
			Status: status, Duration: durationpb.New(2 * time.Second), FinishedAt: timestamppb.New(when.Add(2 * time.Second))})
	}
}

func TestReposAndHistoryPages(t *testing.T) {
	storetest.Engines(t, "dashboards", Migrations(), testReposAndHistory)
}

func testReposAndHistory(t *testing.T, db *store.DB) {
	h := newHarness(t, db, time.Time{})
	ok, fail := eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, eventsv1.BuildStatus_BUILD_STATUS_FAILURE
	base := time.Now().Add(-2 * time.Hour)
	// acme/web: 60 builds on main (every 3rd failing), 3 on feature/x, a tag, a manual one.
	n := int64(0)
	for i := range 60 {
		n++
		st := ok
		if i%3 == 2 {
			st = fail
		}
		h.publishBuild(t, repo, fmt.Sprintf("main-%02d", i), "refs/heads/main", "push", n, st, base.Add(time.Duration(n)*time.Minute))
	}
	for i := range 3 {
		n++
		h.publishBuild(t, repo, fmt.Sprintf("fx-%d", i), "refs/heads/feature/x", "push", n, ok, base.Add(time.Duration(n)*time.Minute))
	}
	n++
	h.publishBuild(t, repo, "tag-1", "refs/tags/v1.0.0", "tag", n, ok, base.Add(time.Duration(n)*time.Minute))
	n++
	h.publishBuild(t, repo, "manual-1", "refs/heads/main", "manual", n, fail, base.Add(time.Duration(n)*time.Minute))
	h.publishBuild(t, "acme/api", "api-1", "refs/heads/main", "push", 1, eventsv1.BuildStatus_BUILD_STATUS_RUNNING, base)
	until(t, "every build projected", func() bool {
		var c int
		_ = h.svc.db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM dash_builds WHERE status <> 'queued' OR repository = 'acme/api'`).Scan(&c)
		return c == 66
	})

	t.Run("repos", func(t *testing.T) {
		code, _, body := h.get(t, "/repos")
		if code != 200 {
			t.Fatalf("/repos %d: %s", code, body)
		}
		for _, want := range []string{`href="/repos/acme/web"`, `href="/repos/acme/api"`, `Repositories`,
			// acme/web's last build is the manual one, #65, failed; 3 branches (main, feature/x, tag v1.0.0).
			`href="/builds/b-manual-1">#65</a> <span class="st failure">failure</span>`, `<td class="branches">3</td>`, `<td>65</td>`,
			`href="/builds/b-api-1">#1</a> <span class="st queued">queued</span>`} {
			if !strings.Contains(body, want) {
				t.Errorf("/repos lacks %s:\n%s", want, body)
			}
		}
	})

	t.Run("history paginates", func(t *testing.T) {
		code, _, body := h.get(t, "/repos/acme/web")
		if code != 200 {
			t.Fatalf("%d: %s", code, body)
		}
		rows := strings.Count(body, `<tr class="build-row">`)
		if rows != historyPageSize {
			t.Errorf("first page: %d rows", rows)
		}
		// Newest first: #65 (manual) then the tag.
		if i, j := strings.Index(body, ">#65<"), strings.Index(body, ">#64<"); i < 0 || j < 0 || i > j {
			t.Errorf("not newest first (%d, %d)", i, j)
		}
		for _, want := range []string{`<section id="history" data-live>`, `<td class="event">manual</td>`, `<td class="event">tag</td>`, `<td>tag v1.0.0</td>`, `<option>feature/x</option>`, `rel="next"`} {
			if !strings.Contains(body, want) {
				t.Errorf("history lacks %s", want)
			}
		}
		if strings.Contains(body, `rel="first"`) {
			t.Error("first page links to the newest")
		}
		older := regexp.MustCompile(`<a href="([^"]+)" rel="next">`).FindStringSubmatch(body)
		if older == nil {
			t.Fatal("no Older link")
		}
		code, _, page2 := h.get(t, html.UnescapeString(older[1]))
		if code != 200 || strings.Count(page2, `<tr class="build-row">`) != 15 || !strings.Contains(page2, ">#15<") || !strings.Contains(page2, ">#1<") ||
			strings.Contains(page2, ">#16<") || strings.Contains(page2, `rel="next"`) || !strings.Contains(page2, `href="/repos/acme/web" rel="first"`) {
			t.Errorf("second page %d:\n%s", code, page2)
		}
		// The /builds sub-route is the same history.
		if code, _, b := h.get(t, "/repos/acme/web/builds?status=failure"); code != 200 || !strings.Contains(b, ">#65<") {
			t.Errorf("/repos/acme/web/builds: %d", code)
		}
	})

	t.Run("filters", func(t *testing.T) {
		_, _, body := h.get(t, "/repos/acme/web?branch=feature/x")
		if c := strings.Count(body, `<tr class="build-row">`); c != 3 || !strings.Contains(body, `<option selected>feature/x</option>`) {
			t.Errorf("branch filter: %d rows", c)
		}
		_, _, body = h.get(t, "/repos/acme/web?status=failure&branch=main")
		if c := strings.Count(body, `<tr class="build-row">`); c != 21 || strings.Contains(body, `class="st success"`) {
			t.Errorf("status filter: %d rows", c)
		}
		_, _, body = h.get(t, "/repos/acme/web?event=tag")
		if c := strings.Count(body, `<tr class="build-row">`); c != 1 || !strings.Contains(body, ">#64<") {
			t.Errorf("event filter: %d rows", c)
		}
		_, _, body = h.get(t, "/repos/acme/web?event=manual")
		if c := strings.Count(body, `<tr class="build-row">`); c != 1 || !strings.Contains(body, ">#65<") || !strings.Contains(body, `<option selected>manual</option>`) {
			t.Errorf("manual filter: %d rows", c)
		}
		_, _, body = h.get(t, "/repos/acme/web?event=pull_request")
		if !strings.Contains(body, "No build matches.") {
			t.Error("pull_request filter matched")
		}
		// The filters survive pagination.
		_, _, body = h.get(t, "/repos/acme/web?branch=main")
		if !regexp.MustCompile(`href="/repos/acme/web\?before=[0-9]+_b-main-[0-9]+&amp;branch=main" rel="next"`).MatchString(body) {
			t.Errorf("the Older link drops the filter")
		}
		if code, _, _ := h.get(t, "/repos/acme/web?status=bogus"); code != 400 {
			t.Errorf("bad status: %d", code)
		}
		if code, _, _ := h.get(t, "/repos/acme/web?before=nonsense"); code != 400 {
			t.Errorf("bad cursor: %d", code)
		}
	})

	t.Run("all builds and unknowns", func(t *testing.T) {
		code, _, body := h.get(t, "/builds?status=queued")
		if code != 200 || !strings.Contains(body, `href="/repos/acme/api"`) || strings.Count(body, `<tr class="build-row">`) != 1 {
			t.Errorf("/builds: %d\n%s", code, body)
		}
		for _, p := range []string{"/repos/nobody/nothing", "/repos/justone"} {
			if code, _, _ := h.get(t, p); code != 404 {
				t.Errorf("%s: %d", p, code)
			}
		}
	})
}

func TestBuildPage(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, "dashboards"), time.Time{})
	when := time.Now().Add(-time.Hour)
	h.publishPipeline(t, "chain-1", "abc1234def", "Add the login page", when)
	h.publish(t, "job.finished", repo, "chain-1", when, &eventsv1.JobFinished{JobId: "j-chain-1", BuildId: "b-chain-1", Repository: repo,
		Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, Agent: "agent-1",
		Artifacts: []*eventsv1.Artifact{{Name: "dist/app v1.tar.gz", Size: 1234, Step: "compile"}},
		Reports:   []*eventsv1.ReportFile{{Name: "reports/TEST-login.xml", Kind: "junit", Size: 99}}})
	obs, err := h.bus.LogStore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	lines := []struct{ step, stream, text string }{
		{"lint", "stdout", "go vet ./..."},
		{"lint", "stdout", "\x1b[32mok\x1b[0m lint passed"},
		{"compile", "stdout", "building <app>"},
		{"compile", "stderr", "\x1b[1;31mwarning\x1b[0m: deprecated FOO"},
		{"compile", "stdout", "done"},
		{"", "end", ""},
	}
	for i, l := range lines {
		_ = bus.EncodeLog(&buf, &eventsv1.LogLine{JobId: "j-chain-1", Step: l.step, Number: uint64(i + 1), Stream: l.stream, Text: l.text})
	}
	if _, err := obs.PutBytes(t.Context(), "j-chain-1", buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	until(t, "the files projected", func() bool {
		var c int
		_ = h.svc.db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM dash_files`).Scan(&c)
		return c == 2
	})
	until(t, "the gate projected", func() bool {
		_, _, body := h.get(t, "/builds/b-chain-1")
		return strings.Contains(body, "coverage") && strings.Contains(body, "1 failed")
	})

	code, _, body := h.get(t, "/builds/b-chain-1")
	if code != 200 {
		t.Fatalf("/builds/b-chain-1 %d: %s", code, body)
	}
	for _, want := range []string{
		"acme/web · build #7", `href="/repos/acme/web"`, `<section id="graph-section" data-live>`, `<section id="logs" data-live>`, `href="/changes/chain-1"`, "Add the login page",
		// The graph: the job, its steps, tests, gate.
		`<ol class="graph"`, `href="#job-j-chain-1">build job</a>`, `<span class="st success">success</span> lint`, `<span class="st success">success</span> compile`,
		`<div class="node gate"><span class="st failed">failed</span>`,
		// A <details> per step, in the job's order, with line anchors.
		`<details class="step-log" id="Sj-chain-1-0" open><summary><span class="st success">success</span> lint <span class="muted">2 lines</span>`,
		`<details class="step-log" id="Sj-chain-1-1" open><summary><span class="st success">success</span> compile <span class="muted">3 lines</span>`,
		`<span class="line" id="Lj-chain-1-1"><a class="ln" href="#Lj-chain-1-1">1</a>go vet ./...</span>`,
		// ANSI colours as spans, HTML escaped.
		`<span class="ansi-fg-green">ok</span> lint passed`,
		`<span class="line stderr" id="Lj-chain-1-4"><a class="ln" href="#Lj-chain-1-4">4</a><span class="ansi-bold ansi-fg-red">warning</span>: deprecated FOO</span>`,
		`building &lt;app&gt;`,
		// Raw download, artifacts and reports.
		`href="/builds/b-chain-1/jobs/j-chain-1/log.txt"`,
		`<a href="/builds/b-chain-1/artifacts/dist/app%20v1.tar.gz?job=j-chain-1" download>dist/app v1.tar.gz</a>`,
		`<a href="/builds/b-chain-1/reports/reports/TEST-login.xml?job=j-chain-1" download>reports/TEST-login.xml</a>`, `junit`,
		`<input type="search" name="q" value="" size="30">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("build page lacks %s", want)
		}
	}
	if strings.Contains(body, "\x1b") || strings.Contains(body, "<app>") {
		t.Error("escapes or raw HTML reach the page")
	}

	t.Run("search", func(t *testing.T) {
		_, _, body := h.get(t, "/builds/b-chain-1?q=DEPRECATED")
		for _, want := range []string{`<mark>deprecated</mark> FOO`, `1 matching lines`, `value="DEPRECATED"`, `1 of 3 lines`, `id="Lj-chain-1-4"`} {
			if !strings.Contains(body, want) {
				t.Errorf("search lacks %s", want)
			}
		}
		if strings.Contains(body, "go vet") || strings.Contains(body, `id="Sj-chain-1-0"`) {
			t.Error("search shows lines or steps without a match")
		}
		_, _, body = h.get(t, "/builds/b-chain-1?q=nothing-like-this")
		if !strings.Contains(body, "No line matches.") || !strings.Contains(body, "0 matching lines") {
			t.Error("empty search")
		}
	})

	t.Run("raw log", func(t *testing.T) {
		code, hdr, body := h.get(t, "/builds/b-chain-1/jobs/j-chain-1/log.txt")
		if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") ||
			hdr.Get("Content-Disposition") != `attachment; filename=build-b-chain-1-job-j-chain-1.log` {
			t.Fatalf("raw %d %v", code, hdr)
		}
		want := "##[step] lint\ngo vet ./...\n\x1b[32mok\x1b[0m lint passed\n##[step] compile\nbuilding <app>\n\x1b[1;31mwarning\x1b[0m: deprecated FOO\ndone\n"
		if body != want {
			t.Errorf("raw log %q", body)
		}
		if code, _, _ := h.get(t, "/builds/other/jobs/j-chain-1/log.txt"); code != 404 {
			t.Errorf("another build's job: %d", code)
		}
	})

	if code, _, _ := h.get(t, "/builds/nope"); code != 404 {
		t.Errorf("unknown build: %d", code)
	}
}
