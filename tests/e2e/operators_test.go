package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestFeatureFlagsOverOFREP(t *testing.T) {
	inst := startUp(t)
	cli(t, "flags", "set", "checkout.new-flow", "--server", inst.GRPCAddr, "--env", "staging",
		"--variant", "on=true", "--variant", "off=false", "--default", "off", "--rule", "email ends_with @acme.com -> on", "--by", "e2e")
	if out := cli(t, "flags", "ls", "--server", inst.GRPCAddr, "--env", "staging"); !strings.Contains(out, "checkout.new-flow") {
		t.Fatalf("flags ls:\n%s", out)
	}
	eval := func(email string) map[string]any {
		resp, err := http.Post(inst.HTTPURL+"/ofrep/v1/evaluate/flags/checkout.new-flow", "application/json",
			strings.NewReader(`{"context":{"targetingKey":"u1","environment":"staging","email":"`+email+`"}}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	if r := eval("ann@acme.com"); r["value"] != true || r["reason"] != "TARGETING_MATCH" {
		t.Fatalf("staff: %v", r)
	}
	if r := eval("bob@example.org"); r["value"] != false || r["variant"] != "off" {
		t.Fatalf("guest: %v", r)
	}
}

func TestWatchChain(t *testing.T) {
	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": goodConfig, "src/app.txt": "v1\n"})
	sha := repo.git("rev-parse", "HEAD")
	secret := inst.register(t, "acme/chain", repo)
	w := watchSince(t, inst, "acme/chain", time.Now().Add(-time.Minute))
	if res := inst.push(t, "acme/chain", secret, "refs/heads/main", zero, sha); res.Status != 202 {
		t.Fatalf("push: %d %s", res.Status, res.Raw)
	}
	evs := w.until("build.finished", 60*time.Second)
	chain := evs[0].GetId()

	// Replays the change from its own time, only its events, plain when piped.
	cmd := exec.Command(binary, "watch", "--server", inst.GRPCAddr, "--chain", chain)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	timeout := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended; saw %q", seen)
			}
			seen = append(seen, l)
			done = strings.Contains(l, "build.finished")
		case <-timeout:
			t.Fatalf("no build.finished from watch --chain; saw %q", seen)
		}
	}
	if !strings.Contains(seen[0], "change.pushed") {
		t.Fatalf("first line %q, want the change itself", seen[0])
	}
	for _, l := range seen {
		if strings.Contains(l, "\x1b[") {
			t.Fatalf("colour codes on a pipe: %q", l)
		}
	}
}
