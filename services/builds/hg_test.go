package builds

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/conduit/conduittest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/builds/pipeline"
)

// hgSource makes a non-publishing Mercurial repository (its changesets stay
// drafts when pulled, like a review repository) with a .shiploop.yml.
func hgSource(t *testing.T) (dir, node string) {
	t.Helper()
	requireHg(t)
	dir = t.TempDir()
	runIn(t, dir, "hg", "init")
	write(t, dir+"/.hg", "hgrc", "[phases]\npublish = False\n")
	write(t, dir, ".shiploop.yml", hmConfig)
	runIn(t, dir, "hg", "commit", "-A", "-q", "-m", "first")
	return dir, runIn(t, dir, "hg", "log", "-r", ".", "-T", "{node}")
}

// TestHgRepository builds Mercurial changesets on both engines: a push of
// a public changeset builds, a draft is skipped with the reason when the
// repository builds only public changesets, a Harbormaster diff builds its
// draft from the staging bookmark, and a manual trigger resolves hg names.
func TestHgRepository(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h, _ := newStatusHarness(t, db, 20*time.Millisecond)
		ctx := context.Background()
		src, first := hgSource(t)
		runIn(t, src, "hg", "phase", "--public", "-r", first)
		runIn(t, src, "hg", "tag", "-r", first, "v1.0.0")
		runIn(t, src, "hg", "phase", "--public", "-r", ".")
		tagged := runIn(t, src, "hg", "log", "-r", ".", "-T", "{node}")
		fake := conduittest.NewServer(t, conduitToken)
		resp, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/hg", CloneUrl: src, DefaultBranch: "default",
			Vcs: "hg", PublicOnly: new(true), ConduitUrl: fake.URL, ConduitToken: conduitToken})
		if err != nil {
			t.Fatal(err)
		}

		// A public changeset pushed.
		if _, err := h.svc.acceptChange(ctx, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "generic", DeliveryId: "p1", Repository: "acme/hg",
			CloneUrl: src, Ref: "refs/heads/default", Branch: "default", After: tagged}); err != nil {
			t.Fatal(err)
		}
		job := h.nextJob(ctx)
		if job.GetVcs() != "hg" || job.GetCommit() != tagged || job.GetCloneUrl() != src || job.GetVersion() != "1.0.1-dev.1+h"+tagged[:12] {
			t.Fatalf("job = %v", job)
		}

		// A draft pushed: skipped, saying why.
		write(t, src, "draft.go", "package x\n")
		runIn(t, src, "hg", "commit", "-A", "-q", "-m", "draft")
		draft := runIn(t, src, "hg", "log", "-r", ".", "-T", "{node}")
		reply, err := h.svc.acceptChange(ctx, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "generic", DeliveryId: "p2", Repository: "acme/hg",
			CloneUrl: src, Ref: "refs/heads/default", Branch: "default", After: draft})
		if err != nil {
			t.Fatal(err)
		}
		b := waitChangeBuild(t, h, reply.EventID)
		if b.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SKIPPED || !strings.Contains(b.GetError(), "is draft") {
			t.Errorf("draft build = %v", b)
		}

		// The same draft as Differential diff 5, staged under a bookmark.
		staging := t.TempDir()
		runIn(t, staging, "hg", "init")
		write(t, staging+"/.hg", "hgrc", "[phases]\npublish = False\n")
		runIn(t, src, "hg", "bookmark", "-r", draft, "phabricator/diff/5")
		runIn(t, src, "hg", "push", "-q", "-r", draft, "-B", "phabricator/diff/5", "--new-branch", staging)
		if _, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/hg", CloneUrl: src, StagingUrl: staging}); err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		h.svc.Routes(mux)
		web := httptest.NewServer(mux)
		t.Cleanup(web.Close)
		code, r := hmCall(t, web.URL, "POST", resp.GetWebhookSecret(), url.Values{"repo": {"acme/hg"}, "target.phid": {"PHID-HMBT-hg5"},
			"buildable.diff": {"5"}, "buildable.revision": {"2"}, "repository.vcs": {"hg"}})
		if code != http.StatusAccepted {
			t.Fatalf("harbormaster: %d %+v", code, r)
		}
		job = h.nextJob(ctx)
		if job.GetVcs() != "hg" || job.GetCommit() != draft || job.GetCloneUrl() != staging || job.GetRef() != "phabricator/diff/5" {
			t.Fatalf("diff job = %v", job)
		}
		h.jobStarted(job)
		h.jobFinished(job, eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, "")
		calls := fake.Wait(t, 30*time.Second, "work and pass", func(c []conduittest.Call) bool { return len(c) == 2 })
		if calls[0].Type() != "work" || calls[1].Type() != "pass" || calls[1].Error != "" || len(calls[1].Units()) != 2 {
			t.Errorf("calls = %+v", calls)
		}

		// Manual builds: a tag builds its exact version.
		tr, err := h.api.TriggerBuild(ctx, &buildsv1.TriggerBuildRequest{Repository: "acme/hg", Ref: "v1.0.0"})
		if err != nil || tr.GetCommit() != first || tr.GetRef() != "refs/tags/v1.0.0" {
			t.Fatalf("TriggerBuild tag: %v, %v", tr, err)
		}
		if job = h.nextJob(ctx); job.GetVersion() != "1.0.0" {
			t.Errorf("tag build version %q", job.GetVersion())
		}
		if _, err := h.api.TriggerBuild(ctx, &buildsv1.TriggerBuildRequest{Repository: "acme/hg", Ref: "nope"}); err == nil {
			t.Error("unknown ref accepted")
		}
	})
}

// waitChangeBuild waits for the finished build of a change.
func waitChangeBuild(t *testing.T, h *harness, changeID string) *buildsv1.Build {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var id string
		if err := h.svc.db.QueryRowContext(context.Background(), `SELECT id FROM builds WHERE change_id = $1 AND finished_at > 0`, changeID).Scan(&id); err == nil {
			got, err := h.api.GetBuild(context.Background(), &buildsv1.GetBuildRequest{Id: id})
			if err != nil {
				t.Fatal(err)
			}
			return got.GetBuild()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished build for change %s", changeID)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHgTestPlan: the test jobs of a Mercurial repository carry vcs hg, as
// its build jobs do, so the agent clones them with hg (not git fetch).
func TestHgTestPlan(t *testing.T) {
	cfg, err := pipeline.Parse(".shiploop.yml", []byte("steps:\n  - name: build\n    commands: [make]\ntest:\n  steps:\n    - name: unit\n      commands: [pytest]\n  reports:\n    junit: [report.xml]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, vcs := range []string{"hg", ""} {
		ev := testsPlanned(buildRow{id: "b1", repository: "acme/hg", ref: "refs/heads/default", commit: "c1", version: "1.0.0"},
			&eventsv1.Change{CloneUrl: "https://hg.example.com/acme"}, &preparedChange{cfg: cfg, vcs: vcs})
		if ev == nil {
			t.Fatal("no build.tests_planned")
		}
		if got := ev.Data.(*eventsv1.BuildTestsPlanned).GetPlan().GetVcs(); got != vcs {
			t.Errorf("test plan vcs %q, want %q", got, vcs)
		}
	}
}
