package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestSecretsReachTestAndDeploySteps: a build step, a test step and a
// deploy step get the repository secrets they name (the step checks a
// SHA-256 of the value, so the file never holds it) from builds at the
// job's start; the live and the stored logs show them masked; no database
// but builds' and no stream holds a value (build jobs included: their
// messages carry the names only). A secret deleted before a later deploy fails that deploy
// with the secret's name and the command that sets it.
func TestSecretsReachTestAndDeploySteps(t *testing.T) {
	const (
		repoName  = "acme/secret-paths"
		apiToken  = "e2e-api-token-6f2d91"
		deployKey = "deploy-key-0b7c44"
		prodToken = "prod-token-93aa1e"
	)
	hash := func(v string) string {
		sum := sha256.Sum256([]byte(v))
		return hex.EncodeToString(sum[:])
	}
	check := func(name, value string) string {
		return `test "$(printf %s "$` + name + `" | sha256sum | cut -c1-64)" = ` + hash(value)
	}
	inst := startUp(t)
	cl := deployClient(t, inst)
	ctx := context.Background()
	repo := newRepo(t, map[string]string{".shiploop.yml": `steps:
  - name: build
    secrets: [API_TOKEN]
    commands:
      - ` + check("API_TOKEN", apiToken) + `
      - echo "build step got $API_TOKEN"
test:
  steps:
    - name: integration
      secrets: [API_TOKEN]
      commands:
        - ` + check("API_TOKEN", apiToken) + `
        - echo "test step got $API_TOKEN"
        - mkdir -p reports
        - printf '<testsuite name="it"><testcase classname="it" name="token"/></testsuite>' > reports/TEST-it.xml
  reports: {junit: ["reports/*.xml"]}
environments:
  - name: staging
    auto: true
    secrets: [API_TOKEN]
    steps:
      - name: deploy
        secrets: [DEPLOY_KEY]
        commands:
          - ` + check("API_TOKEN", apiToken) + `
          - ` + check("DEPLOY_KEY", deployKey) + `
          - echo "deploy step got $API_TOKEN and $DEPLOY_KEY"
  - name: production
    secrets: [PROD_TOKEN]
    steps:
      - {name: deploy, commands: ['echo "production got $PROD_TOKEN"']}
`})
	hookSecret := inst.register(t, repoName, repo)
	for name, value := range map[string]string{"API_TOKEN": apiToken, "DEPLOY_KEY": deployKey, "PROD_TOKEN": prodToken} {
		if _, err := inst.client.SetSecret(ctx, &buildsv1.SetSecretRequest{Repository: repoName, Name: name, Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	w := inst.watch(t, repoName)
	inst.push(t, repoName, hookSecret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))

	// Follow the test and the deploy job's logs live from their queueing,
	// until the test run and the staging deploy have both finished.
	type followed struct{ kind, jobID, log string }
	live := make(chan followed, 4)
	jobs := map[string]string{} // kind -> job id
	var run *eventsv1.TestRunFinished
	var deployed *eventsv1.DeployFinished
	deadline := time.After(120 * time.Second)
	var seen []*eventsv1.Event
	for run == nil || deployed == nil {
		select {
		case ev, ok := <-w.events:
			if !ok {
				t.Fatalf("event stream ended; saw %v", types(seen))
			}
			seen = append(seen, ev)
			switch short(ev.GetType()) {
			case "job.queued":
				q := payload(t, ev, &eventsv1.JobQueued{})
				if q.GetKind() == "test" || q.GetKind() == "deploy" {
					jobs[q.GetKind()] = q.GetJobId()
					go func() { live <- followed{q.GetKind(), q.GetJobId(), inst.jobLog(t, q.GetJobId(), true)} }()
				}
			case "build.finished":
				if bf := payload(t, ev, &eventsv1.BuildFinished{}); bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
					t.Fatalf("build %v: %s", bf.GetStatus(), bf.GetError())
				}
			case "testrun.finished":
				run = payload(t, ev, &eventsv1.TestRunFinished{})
			case "deploy.finished":
				deployed = payload(t, ev, &eventsv1.DeployFinished{})
			}
		case <-deadline:
			t.Fatalf("no testrun.finished and deploy.finished within 120s; saw %v", types(seen))
		}
	}
	if run.GetStatus() != eventsv1.TestRunStatus_TEST_RUN_STATUS_PASSED || run.GetCounts().GetPassed() != 1 {
		t.Errorf("test run %v %+v (%s): the test step did not get API_TOKEN", run.GetStatus(), run.GetCounts(), run.GetError())
	}
	if deployed.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED || deployed.GetDeploy().GetEnvironment() != "staging" {
		t.Errorf("deploy to %s %v: %s", deployed.GetDeploy().GetEnvironment(), deployed.GetStatus(), deployed.GetReason())
	}

	wantLines := map[string]string{
		"test":   "integration: test step got ********",
		"deploy": "deploy: deploy step got ******** and ********",
	}
	for range 2 {
		f := <-live
		stored := inst.jobLog(t, f.jobID, false)
		for how, log := range map[string]string{"followed": f.log, "stored": stored} {
			for _, v := range []string{apiToken, deployKey} {
				if strings.Contains(log, v) {
					t.Errorf("the %s job's %s log shows a secret value:\n%s", f.kind, how, log)
				}
			}
			if !strings.Contains(log, wantLines[f.kind]) {
				t.Errorf("the %s job's %s log lacks %q:\n%s", f.kind, how, wantLines[f.kind], log)
			}
		}
	}
	if len(jobs) != 2 {
		t.Errorf("queued test and deploy jobs: %v", jobs)
	}

	// PROD_TOKEN goes away after the build checked it; promoting to
	// production then fails the deploy, naming it, and runs no step.
	if _, err := inst.client.DeleteSecret(ctx, &buildsv1.DeleteSecretRequest{Repository: repoName, Name: "PROD_TOKEN"}); err != nil {
		t.Fatal(err)
	}
	release := deployed.GetDeploy().GetRelease()
	if _, err := cl.Promote(ctx, &deploysv1.PromoteRequest{Repository: repoName, Environment: "production", Release: release, By: "e2e"}); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	prod := waitDeployment(t, cl, repoName, "production", "production fails without PROD_TOKEN", released(release, eventsv1.DeployStatus_DEPLOY_STATUS_FAILED))
	want := "secret PROD_TOKEN is not set for " + repoName + " (shiploop secret set " + repoName + " PROD_TOKEN)"
	if !strings.Contains(prod.GetReason(), want) {
		t.Errorf("production deploy failed with %q, want it to contain %q", prod.GetReason(), want)
	}
	if log := inst.jobLog(t, prod.GetJobId(), false); !strings.Contains(log, want) || strings.Contains(log, "production got") {
		t.Errorf("production deploy log:\n%s", log)
	}

	// Only builds' database holds the values: not testruns' or deploys'
	// databases, not the streams (JOBS, EVENTS), not the stored logs.
	holders := map[string]bool{}
	err := filepath.WalkDir(inst.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil // removed while walking (a workspace, a temp file)
		}
		for _, v := range []string{apiToken, deployKey, prodToken} {
			if bytes.Contains(data, []byte(v)) {
				rel, _ := filepath.Rel(inst.DataDir, path)
				holders[rel] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	builds := false
	for f := range holders {
		if strings.HasPrefix(f, "builds.db") {
			builds = true
			continue
		}
		t.Errorf("%s holds a secret value", f)
	}
	if !builds {
		t.Errorf("no builds.db file holds the secrets (files with them: %v): the search cannot see them", holders)
	}
}
