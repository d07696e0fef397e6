package deploys

import (
	"context"
	"fmt"
	"testing"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

const containerConfig = `image: alpine:3
pull: never
steps:
  - name: build
    commands: [docker build -t app .]
    produces: {image: app}
environments:
  - name: staging
    auto: true
    steps:
      - {name: migrate, commands: [./migrate], cpus: 1.5, memory: 256m}
      - {name: roll, commands: ["docker run --rm $SHIPLOOP_IMAGE"], image: "docker:cli", pull: if-not-present}
  - name: production
    steps:
      - {name: roll, commands: ["docker run --rm $SHIPLOOP_IMAGE"]}
`

// TestDeployStepsInContainers: a deploy job's steps carry image and pull
// (the step's, else the pipeline's) and cpus/memory to docker agents; the
// images the build produced reach its staging deploy and the promotion to
// production as the same SHIPLOOP_IMAGE, and ListEnvironments shows them.
func TestDeployStepsInContainers(t *testing.T) {
	cfg, err := ParseConfig(".shiploop.yml", []byte(containerConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Image != "alpine:3" || cfg.Pull != "never" {
		t.Fatalf("pipeline image %q pull %q", cfg.Image, cfg.Pull)
	}
	for _, bad := range []string{
		"environments: [{name: s, steps: {a: {commands: x, pull: sometimes}}}]",
		"environments: [{name: s, steps: {a: {commands: x, memory: 1k}}}]",
		"environments: [{name: s, steps: {a: {commands: x, cpus: lots}}}]",
		"environments: [{name: s, steps: {a: {commands: x, image: ''}}}]",
		"pull: later\nenvironments: [{name: s, steps: {a: {commands: x}}}]",
	} {
		if _, err := ParseConfig(".shiploop.yml", []byte(bad)); err == nil {
			t.Errorf("accepted: %s", bad)
		}
	}
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		h := newHarness(t, db)
		const repo = "acme/containers"
		// As builds would: the build job reports the image it produced
		// before the build finishes.
		n := builds.Add(1)
		sha := fmt.Sprintf("%040d", n)
		id := fmt.Sprintf("build-%d", n)
		const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		h.publish("change.pushed", repo, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Repository: repo, CloneUrl: "/nonexistent", DefaultBranch: "main", Ref: "refs/heads/main", After: sha})
		h.publish("build.created", repo, &eventsv1.BuildCreated{BuildId: id, Number: n, Repository: repo, Ref: "refs/heads/main", Commit: sha, Version: "1.0.0", Trigger: "push", Config: []byte(containerConfig)})
		h.publish("job.finished", repo, &eventsv1.JobFinished{JobId: "job-" + id, BuildId: id, Repository: repo, Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, Images: map[string]string{"app": digest}})
		h.publish("build.finished", repo, &eventsv1.BuildFinished{BuildId: id, Number: n, Repository: repo, Ref: "refs/heads/main", Commit: sha, Version: "1.0.0", Status: eventsv1.BuildStatus_BUILD_STATUS_SUCCESS})

		j := h.nextJob()
		if len(j.Steps) != 2 {
			t.Fatalf("staging job steps %v", j.Steps)
		}
		m, r := j.Steps[0], j.Steps[1]
		if m.GetImage() != "alpine:3" || m.GetPull() != "never" || m.GetCpus() != 1.5 || m.GetMemoryBytes() != 256<<20 {
			t.Errorf("migrate step %v: want the pipeline's alpine:3/never, cpus 1.5, 256 MiB", m)
		}
		if r.GetImage() != "docker:cli" || r.GetPull() != "if-not-present" || r.GetCpus() != 0 || r.GetMemoryBytes() != 0 {
			t.Errorf("roll step %v: want its own docker:cli/if-not-present, no limits", r)
		}
		if got := j.Environment["SHIPLOOP_IMAGE"]; got != digest {
			t.Errorf("staging SHIPLOOP_IMAGE = %q, want %q", got, digest)
		}
		if got := j.Environment["SHIPLOOP_IMAGE_APP"]; got != digest {
			t.Errorf("staging SHIPLOOP_IMAGE_APP = %q, want %q", got, digest)
		}
		h.run(j, true)
		h.waitFor(repo, "staging", "1.0.0 in staging", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))

		res, err := h.api.Promote(ctx, &deploysv1.PromoteRequest{Repository: repo, Environment: "production", By: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if got := res.GetDeployment().GetImages()["app"]; got != digest {
			t.Errorf("promotion's images %v, want app=%s", res.GetDeployment().GetImages(), digest)
		}
		p := h.nextJob()
		if p.BuildId != id || p.Environment["SHIPLOOP_IMAGE"] != digest {
			t.Errorf("production job of build %s with SHIPLOOP_IMAGE %q, want build %s and %s", p.BuildId, p.Environment["SHIPLOOP_IMAGE"], id, digest)
		}
		h.run(p, true)
		h.waitFor(repo, "production", "1.0.0 in production", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		envs, err := h.api.ListEnvironments(ctx, &deploysv1.ListEnvironmentsRequest{Repository: repo})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range envs.Environments {
			if e.GetCurrentImages()["app"] != digest {
				t.Errorf("environment %s shows images %v, want app=%s", e.Name, e.GetCurrentImages(), digest)
			}
		}
	})
}

func TestImageEnv(t *testing.T) {
	env := ImageEnv(map[string]string{"app:ci": "sha256:a", "acme/worker": "sha256:b"})
	if env["SHIPLOOP_IMAGE_APP_CI"] != "sha256:a" || env["SHIPLOOP_IMAGE_ACME_WORKER"] != "sha256:b" || env["SHIPLOOP_IMAGE"] != "" || len(env) != 2 {
		t.Errorf("ImageEnv = %v", env)
	}
}

// TestRunbookStepsInContainers: a runbook's steps carry image (the step's,
// else the file's), pull and limits like deploy steps.
func TestRunbookStepsInContainers(t *testing.T) {
	const cfg = `image: alpine:3
steps: [{name: build, commands: [make]}]
environments:
  - {name: production, steps: [{name: deploy, commands: [./deploy.sh]}]}
runbooks:
  - name: restart
    environment: production
    steps:
      - {name: restart, commands: [./restart.sh], memory: 64m}
      - {name: check, commands: [./check.sh], image: "curl:8", pull: never, cpus: 0.5}
`
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		const repo = "acme/ops-img"
		h.build(repo, "refs/heads/main", "1.0.0", cfg, "push")
		h.waitForBuild(repo)
		if _, err := (&runbookServer{s: h.svc}).RunRunbook(context.Background(), &deploysv1.RunRunbookRequest{Repository: repo, Runbook: "restart"}); err != nil {
			t.Fatal(err)
		}
		j := h.nextJob()
		if len(j.Steps) != 2 {
			t.Fatalf("runbook job steps %v", j.Steps)
		}
		if s := j.Steps[0]; s.GetImage() != "alpine:3" || s.GetMemoryBytes() != 64<<20 {
			t.Errorf("restart step %v: want the file's alpine:3 and 64 MiB", s)
		}
		if s := j.Steps[1]; s.GetImage() != "curl:8" || s.GetPull() != "never" || s.GetCpus() != 0.5 {
			t.Errorf("check step %v: want curl:8, never, 0.5 CPUs", s)
		}
	})
}
