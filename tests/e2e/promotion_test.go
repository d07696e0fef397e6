package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// imagePromotionConfig builds image (FROM the local containerImage, no
// registry) in a build step that declares it, and deploys it by running it
// with docker run in staging (automatic) and production (promoted).
func imagePromotionConfig(image, out string) string {
	deploy := fmt.Sprintf(`    variables: {OUT: %q}
    steps:
      - name: run
        commands:
          - echo "$SHIPLOOP_IMAGE" > "$OUT/$SHIPLOOP_ENVIRONMENT.image"
          - docker run --rm "$SHIPLOOP_IMAGE" cat /marker > "$OUT/$SHIPLOOP_ENVIRONMENT.marker"
`, out)
	return fmt.Sprintf(`steps:
  - name: image
    commands:
      - echo "$SHIPLOOP_VERSION $(date +%%s%%N)" > marker
      - printf 'FROM %[1]s\nCOPY marker /marker\n' > Dockerfile.e2e
      - docker build -q -f Dockerfile.e2e -t %[2]s .
    produces: {image: %[2]s}
environments:
  - name: staging
    auto: true
%[3]s  - name: production
%[3]s`, containerImage, image, deploy)
}

// TestImagePromotion: a build step on a process agent builds an image with
// the docker CLI and declares it (produces: {image: ...}); the build records
// its image ID; the staging deploy job gets it as SHIPLOOP_IMAGE and runs
// it; the promotion to production gets the very same ID (no build job runs
// again), and ListEnvironments, deploy status and GetBuild show it.
func TestImagePromotion(t *testing.T) {
	engine := needDocker(t)
	t.Logf("engine: Docker %s", engine)
	out := t.TempDir()
	image := fmt.Sprintf("shiploop-e2e-promo:t%d", time.Now().UnixNano())
	inst := startUp(t)
	cl := deployClient(t, inst)
	ctx := context.Background()
	repo := newRepo(t, map[string]string{".shiploop.yml": imagePromotionConfig(image, out)})
	secret := inst.register(t, "acme/promo", repo)
	w := inst.watch(t, "acme/promo")
	inst.push(t, "acme/promo", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))

	var evs []*eventsv1.Event
	evs = append(evs, w.until("build.finished", 180*time.Second)...)
	built, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", image).Output()
	if err != nil {
		t.Fatalf("the build step left no image %s: %v\nserver stderr:\n%s", image, err, inst.stderr)
	}
	id := strings.TrimSpace(string(built))
	t.Cleanup(func() { _ = exec.Command("docker", "image", "rm", "-f", image).Run() })
	fin := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
	if fin.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("build %v: %s\nserver stderr:\n%s", fin.GetStatus(), fin.GetError(), inst.stderr)
	}
	b, err := inst.client.GetBuild(ctx, &buildsv1.GetBuildRequest{Id: fin.GetBuildId()})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.GetBuild().GetImages()[image]; got != id {
		t.Fatalf("build records images %v, want %s=%s", b.GetBuild().GetImages(), image, id)
	}

	staging := waitDeployment(t, cl, "acme/promo", "staging", "image deployed to staging", released(fin.GetVersion(), eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
	if got := readOut(t, out, "staging.image"); got != id {
		t.Errorf("staging's SHIPLOOP_IMAGE = %q, want the build's %s", got, id)
	}
	if got := readOut(t, out, "staging.marker"); !strings.HasPrefix(got, fin.GetVersion()+" ") {
		t.Errorf("docker run in staging printed %q, want the marker the build wrote for %s", got, fin.GetVersion())
	}
	if staging.GetImages()[image] != id {
		t.Errorf("staging deployment images %v", staging.GetImages())
	}

	if _, err := cl.Promote(ctx, &deploysv1.PromoteRequest{Repository: "acme/promo", Environment: "production", By: "e2e"}); err != nil {
		t.Fatal(err)
	}
	prod := waitDeployment(t, cl, "acme/promo", "production", "image promoted to production", released(fin.GetVersion(), eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
	if prod.GetBuildId() != fin.GetBuildId() {
		t.Errorf("production deployed build %s, want %s", prod.GetBuildId(), fin.GetBuildId())
	}
	if a, b := readOut(t, out, "staging.image"), readOut(t, out, "production.image"); a != b || b != id {
		t.Errorf("SHIPLOOP_IMAGE staging %q, production %q: want both %s", a, b, id)
	}
	if a, b := readOut(t, out, "staging.marker"), readOut(t, out, "production.marker"); a != b {
		t.Errorf("the image ran in production printed %q, in staging %q: not the same image", b, a)
	}

	envs, err := cl.ListEnvironments(ctx, &deploysv1.ListEnvironmentsRequest{Repository: "acme/promo"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range envs.GetEnvironments() {
		if e.GetCurrentImages()[image] != id {
			t.Errorf("environment %s shows images %v, want %s", e.GetName(), e.GetCurrentImages(), id)
		}
	}
	status := shiploopCLI(t, "deploy", "status", "acme/promo", "--server", inst.GRPCAddr)
	if strings.Count(status, id) != 2 {
		t.Errorf("deploy status does not show the image in both environments:\n%s", status)
	}

	// No build job ran again: one build, one build job, for the push.
	evs = append(evs, w.until("deploy.finished", 30*time.Second)...)
	time.Sleep(time.Second) // let any late job.queued arrive
	for drained := false; !drained; {
		select {
		case ev := <-w.events:
			evs = append(evs, ev)
		default:
			drained = true
		}
	}
	buildsCreated, buildJobs := 0, 0
	for _, ev := range evs {
		switch short(ev.GetType()) {
		case "build.created":
			buildsCreated++
		case "job.queued":
			if payload(t, ev, &eventsv1.JobQueued{}).GetKind() == "build" {
				buildJobs++
			}
		}
	}
	if buildsCreated != 1 || buildJobs != 1 {
		t.Errorf("%d builds and %d build jobs, want one of each: the promotion must not rebuild", buildsCreated, buildJobs)
	}
}
