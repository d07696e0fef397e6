package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

const zero = "0000000000000000000000000000000000000000"

const goodConfig = `steps:
  - name: compile
    commands:
      - echo "compiling $SHIPLOOP_VERSION"
      - test -f src/app.txt
  - name: unit
    depends_on: [compile]
    commands:
      - echo unit tests pass
`

// TestPushBecomesBuild is the foundation's slice: a signed GitHub push
// becomes a build with a version, its job runs on the agent, and every
// event shows up in order; gRPC answers with the steps.
func TestPushBecomesBuild(t *testing.T) {
	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": goodConfig, "src/app.txt": "v1\n"})
	sha := repo.git("rev-parse", "HEAD")
	secret := inst.register(t, "acme/app", repo)

	// `shiploop watch` as an operator runs it.
	// --since replays from before the push, so the watcher misses nothing
	// however long it takes to connect.
	watchCmd := exec.Command(binary, "watch", "--server", inst.GRPCAddr, "--repo", "acme/app", "--since", time.Now().Add(-time.Second).UTC().Format(time.RFC3339))
	var watchOut lockedBuffer
	watchCmd.Stdout = &watchOut
	if err := watchCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watchCmd.Process.Kill(); _ = watchCmd.Wait() })
	// And a script's watcher: JSON, one type only.
	jsonCmd := exec.Command(binary, "watch", "--server", inst.GRPCAddr, "--json", "--type", "build.finished", "--since", "1m")
	var jsonOut lockedBuffer
	jsonCmd.Stdout = &jsonOut
	if err := jsonCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jsonCmd.Process.Kill(); _ = jsonCmd.Wait() })

	w := inst.watch(t, "acme/app")
	res := inst.push(t, "acme/app", secret, "refs/heads/main", zero, sha)
	if res.Status != 202 {
		t.Fatalf("push: HTTP %d %s", res.Status, res.Raw)
	}
	evs := w.until("build.finished", 60*time.Second)
	checkEventOrder(t, evs, 2)
	// One chain links them all, starting at the change event.
	for _, ev := range evs {
		if ev.GetChainId() != evs[0].GetId() {
			t.Errorf("%s has chain id %q, want the change event's id %q", short(ev.GetType()), ev.GetChainId(), evs[0].GetId())
		}
	}
	if evs[0].GetId() != res.Body["event_id"] {
		t.Errorf("webhook answered event_id %v, the stream's change event is %s", res.Body["event_id"], evs[0].GetId())
	}
	bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
	if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("build finished %v (%s)", bf.GetStatus(), bf.GetError())
	}
	wantVersion := "0.0.1-dev.1+g" + sha[:7]
	if bf.GetVersion() != wantVersion {
		t.Errorf("version %q, want %q", bf.GetVersion(), wantVersion)
	}

	got, err := inst.client.GetBuild(context.Background(), &buildsv1.GetBuildRequest{Id: bf.GetBuildId()})
	if err != nil {
		t.Fatalf("GetBuild: %v", err)
	}
	b := got.GetBuild()
	if b.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS || b.GetVersion() != wantVersion || b.GetCommit() != sha || b.GetNumber() != 1 || b.GetRef() != "refs/heads/main" {
		t.Errorf("GetBuild = status %v version %q commit %q number %d ref %q", b.GetStatus(), b.GetVersion(), b.GetCommit(), b.GetNumber(), b.GetRef())
	}
	if len(b.GetSteps()) != 2 {
		t.Fatalf("steps: %v", b.GetSteps())
	}
	for i, name := range []string{"compile", "unit"} {
		s := b.GetSteps()[i]
		if s.GetName() != name || s.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS || s.GetExitCode() != 0 || s.GetDuration().AsDuration() <= 0 {
			t.Errorf("step %d = %s %v exit %d duration %v", i, s.GetName(), s.GetStatus(), s.GetExitCode(), s.GetDuration().AsDuration())
		}
	}
	list, err := inst.client.ListBuilds(context.Background(), &buildsv1.ListBuildsRequest{Repository: "acme/app"})
	if err != nil || len(list.GetBuilds()) != 1 || list.GetBuilds()[0].GetId() != b.GetId() {
		t.Errorf("ListBuilds = %v, %v", list.GetBuilds(), err)
	}

	// The log kept in the Object Store has the steps' output.
	if len(b.GetJobIds()) != 1 {
		t.Fatalf("job ids %v", b.GetJobIds())
	}
	logs, err := inst.client.StreamLogs(context.Background(), &buildsv1.StreamLogsRequest{JobId: b.GetJobIds()[0]})
	if err != nil {
		t.Fatal(err)
	}
	var text []string
	for {
		r, err := logs.Recv()
		if err != nil {
			break
		}
		text = append(text, r.GetLine().GetStep()+": "+r.GetLine().GetText())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{"compile: compiling " + wantVersion, "unit: unit tests pass"} {
		if !strings.Contains(all, want) {
			t.Errorf("log lacks %q:\n%s", want, all)
		}
	}

	// The CLI watcher printed a readable line per event.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(watchOut.String(), "build.finished") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := watchOut.String()
	line := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d{3}  build\.finished\s+acme/app\s+#1 success version=` + regexp.QuoteMeta(wantVersion))
	if !line.MatchString(out) {
		t.Errorf("shiploop watch output lacks the build.finished line:\n%s", out)
	}
	// Every event of the build, one line each, in stream order; other
	// services' events (a gate's verdict) may follow.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < len(evs) {
		t.Fatalf("shiploop watch printed %d lines for %d events:\n%s", len(lines), len(evs), out)
	}
	for i, ev := range evs {
		if !strings.Contains(lines[i], "  "+short(ev.GetType())+" ") {
			t.Errorf("watch line %d is %q, want the %s event", i, lines[i], short(ev.GetType()))
		}
	}
	for !strings.Contains(jsonOut.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var printed struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		Data struct {
			Version string `json:"version"`
			Status  string `json:"status"`
		} `json:"data"`
	}
	jsonLines := strings.Split(strings.TrimSpace(jsonOut.String()), "\n")
	if len(jsonLines) != 1 || json.Unmarshal([]byte(jsonLines[0]), &printed) != nil || printed.Type != "dev.shiploop.build.finished.v1" ||
		printed.Data.Version != wantVersion || printed.Data.Status != "BUILD_STATUS_SUCCESS" || printed.ID != evs[len(evs)-1].GetId() {
		t.Errorf("shiploop watch --json --type build.finished printed:\n%s", jsonOut.String())
	}
}

// TestFailingStep: a step that exits 1 fails the build, names the step, and
// the steps after it do not run.
func TestFailingStep(t *testing.T) {
	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": `steps:
  - name: prepare
    commands: [echo ok]
  - name: check
    commands: ["echo checking", "exit 1"]
  - name: publish
    commands: [echo never]
`})
	secret := inst.register(t, "acme/fail", repo)
	w := inst.watch(t, "acme/fail")
	if res := inst.push(t, "acme/fail", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD")); res.Status != 202 {
		t.Fatalf("push: %d %s", res.Status, res.Raw)
	}
	evs := w.until("build.finished", 60*time.Second)
	bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
	if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_FAILURE || bf.GetFailedStep() != "check" {
		t.Fatalf("build finished %v failed_step %q, want failure at check", bf.GetStatus(), bf.GetFailedStep())
	}
	b, err := inst.client.GetBuild(context.Background(), &buildsv1.GetBuildRequest{Id: bf.GetBuildId()})
	if err != nil {
		t.Fatal(err)
	}
	steps := b.GetBuild().GetSteps()
	want := []struct {
		name   string
		status eventsv1.BuildStatus
		exit   int32
	}{
		{"prepare", eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, 0},
		{"check", eventsv1.BuildStatus_BUILD_STATUS_FAILURE, 1},
		{"publish", eventsv1.BuildStatus_BUILD_STATUS_SKIPPED, -1},
	}
	if len(steps) != len(want) {
		t.Fatalf("steps %v", steps)
	}
	for i, w := range want {
		if s := steps[i]; s.GetName() != w.name || s.GetStatus() != w.status || s.GetExitCode() != w.exit {
			t.Errorf("step %d: %s %v exit %d, want %s %v exit %d", i, s.GetName(), s.GetStatus(), s.GetExitCode(), w.name, w.status, w.exit)
		}
	}
}

// TestWebhookRejections: bad signature, malformed JSON, oversized body, and a
// duplicate delivery; none of them publishes anything.
func TestWebhookRejections(t *testing.T) {
	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: a\n    commands: [true]\n"})
	sha := repo.git("rev-parse", "HEAD")
	secret := inst.register(t, "acme/hooks", repo)
	w := inst.watch(t, "acme/hooks")
	body := pushBody("acme/hooks", "refs/heads/main", zero, sha)

	t.Run("bad signature", func(t *testing.T) {
		res := inst.hook(t, "push", "", sign("wrong-secret", body), body)
		if res.Status != 401 {
			t.Errorf("HTTP %d %s, want 401", res.Status, res.Raw)
		}
		res = inst.hook(t, "push", "", "", body)
		if res.Status != 401 || !strings.Contains(res.Raw, "X-Hub-Signature-256") {
			t.Errorf("missing signature: HTTP %d %s, want 401 naming X-Hub-Signature-256", res.Status, res.Raw)
		}
	})
	t.Run("malformed JSON", func(t *testing.T) {
		bad := []byte(`{"ref": "refs/heads/main", "repository": {`)
		res := inst.hook(t, "push", "", sign(secret, bad), bad)
		if res.Status != 400 || res.Body["error"] == nil || !strings.Contains(fmt.Sprint(res.Body["error"]), "JSON") && !strings.Contains(fmt.Sprint(res.Body["error"]), "unexpected") {
			t.Errorf("HTTP %d %s, want 400 with the reason", res.Status, res.Raw)
		}
	})
	t.Run("body over 25 MiB", func(t *testing.T) {
		big := make([]byte, 25<<20+1)
		for i := range big {
			big[i] = ' '
		}
		res := inst.hook(t, "push", "", sign(secret, big), big)
		if res.Status != 413 {
			t.Errorf("HTTP %d %s, want 413", res.Status, res.Raw)
		}
	})
	t.Run("unknown repository", func(t *testing.T) {
		other := pushBody("acme/unknown", "refs/heads/main", zero, sha)
		res := inst.hook(t, "push", "", sign(secret, other), other)
		if res.Status != 404 || !strings.Contains(res.Raw, "shiploop repo add") {
			t.Errorf("HTTP %d %s, want 404 naming the fix", res.Status, res.Raw)
		}
	})
	t.Run("duplicate delivery builds once", func(t *testing.T) {
		first := inst.hook(t, "push", "same-delivery", sign(secret, body), body)
		again := inst.hook(t, "push", "same-delivery", sign(secret, body), body)
		if first.Status != 202 || again.Status != 200 || again.Body["duplicate"] != true || again.Body["event_id"] != first.Body["event_id"] {
			t.Fatalf("first %d %s, again %d %s", first.Status, first.Raw, again.Status, again.Raw)
		}
		// The first event on the stream is this delivery's: the rejected
		// requests above published nothing.
		evs := w.until("build.finished", 60*time.Second)
		if evs[0].GetId() != first.Body["event_id"] {
			t.Fatalf("first event on the stream is %s %s, want the accepted delivery's change", short(evs[0].GetType()), evs[0].GetId())
		}
		// A new delivery gets build #2: the duplicate made no build.
		if res := inst.hook(t, "push", "", sign(secret, body), body); res.Status != 202 {
			t.Fatalf("third delivery: %d %s", res.Status, res.Raw)
		}
		evs = w.until("build.finished", 60*time.Second)
		if n := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{}).GetNumber(); n != 2 {
			t.Errorf("next build is #%d, want #2", n)
		}
		for _, ev := range evs {
			if short(ev.GetType()) == "change.pushed" && ev.GetId() == first.Body["event_id"] {
				t.Errorf("the duplicate delivery was published again")
			}
		}
	})
}

// TestInvalidConfig: a bad .shiploop.yml ends the build in error naming
// file, line and field.
func TestInvalidConfig(t *testing.T) {
	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: build\n    comands: [make]\n"})
	secret := inst.register(t, "acme/badcfg", repo)
	w := inst.watch(t, "acme/badcfg")
	inst.push(t, "acme/badcfg", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))
	evs := w.until("build.finished", 60*time.Second)
	bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
	if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_ERROR {
		t.Fatalf("status %v, want error", bf.GetStatus())
	}
	if !regexp.MustCompile(`\.shiploop\.yml:3:\d+: steps\[0\]\.comands`).MatchString(bf.GetError()) {
		t.Errorf("error %q does not name file, line and field", bf.GetError())
	}
	if !strings.Contains(bf.GetError(), "commands") {
		t.Errorf("error %q gives no hint of the right field", bf.GetError())
	}
}

// TestTagVersion: a tag push builds that exact version; the commit after it
// gets the next patch's dev version.
func TestTagVersion(t *testing.T) {
	// --nats-listen exposes the embedded NATS: a plain NATS client sees the
	// events, as `nats sub 'shiploop.>'` would.
	inst := startUp(t, "--nats-listen", "127.0.0.1:0")
	if inst.NATSURL == "" {
		t.Fatal("up --nats-listen printed no nats_url")
	}
	nc, err := nats.Connect(inst.NATSURL)
	if err != nil {
		t.Fatalf("connecting to the exposed NATS: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("shiploop.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	repo := newRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: a\n    commands: [true]\n"})
	tagged := repo.git("rev-parse", "HEAD")
	repo.git("tag", "-a", "v1.4.0", "-m", "release 1.4.0")
	secret := inst.register(t, "acme/tags", repo)
	w := inst.watch(t, "acme/tags")
	inst.push(t, "acme/tags", secret, "refs/tags/v1.4.0", zero, tagged)
	evs := w.until("build.finished", 60*time.Second)
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil || m.Subject != "shiploop.evt.change.tagged.acme_tags" || m.Header.Get("ce-type") != "dev.shiploop.change.tagged.v1" || m.Header.Get("Nats-Msg-Id") != evs[0].GetId() {
		t.Errorf("first message on the exposed NATS: %v %v %v", m, err, m)
	}
	if bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{}); bf.GetVersion() != "1.4.0" {
		t.Errorf("tag build version %q, want 1.4.0 (status %v %s)", bf.GetVersion(), bf.GetStatus(), bf.GetError())
	}
	next := repo.commit("fix", map[string]string{"fix.txt": "x"})
	inst.push(t, "acme/tags", secret, "refs/heads/main", tagged, next)
	evs = w.until("build.finished", 60*time.Second)
	if v, want := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{}).GetVersion(), "1.4.1-dev.1+g"+next[:7]; v != want {
		t.Errorf("version %q, want %q", v, want)
	}
}
