package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestDLQCommands: in split mode on PostgreSQL, a poison change event (its
// payload is garbage) is dead-lettered by the builds consumer with the
// reason while a good push behind it still builds; `shiploop dlq ls` and
// `show` report it, `dlq replay` republishes it (still poison, so it comes
// back to the DLQ as a new letter rather than vanishing). (The token on
// DLQService is checked in services/dlq's tests: the harness registers
// repositories without one.)
func TestDLQCommands(t *testing.T) {
	natsBin := natsServerBinary(t)
	dbURL := createDatabase(t)
	natsURL := startNATSServer(t, natsBin)
	inst := startServer(t, "serve", "--nats-url", natsURL, "--database-url", dbURL, "--data-dir", t.TempDir(), "builds", "dlq")
	startAgent(t, natsURL)

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	poison := bus.NewEvent("change.pushed", "acme/poison", "refs/heads/main", &eventsv1.Change{Forge: "github", Repository: "acme/poison", Ref: "refs/heads/main"})
	poison.ChainID = poison.ID
	m, err := bus.Encode(context.Background(), bus.EventSubject(poison.Type, poison.Repository), poison)
	if err != nil {
		t.Fatal(err)
	}
	m.Data = []byte{0xff, 0xfe, 0xfd}
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}

	dlq := func(args ...string) (string, error) {
		full := append([]string{"dlq", "--server", inst.GRPCAddr}, args...)
		out, err := exec.Command(binary, full...).CombinedOutput()
		return string(out), err
	}
	type letter struct {
		Seq       string `json:"seq"`
		Kind      string `json:"kind"`
		Consumer  string `json:"consumer"`
		Reason    string `json:"reason"`
		EventID   string `json:"event_id"`
		Subject   string `json:"subject"`
		StreamSeq string `json:"stream_seq"`
	}
	list := func() []letter {
		out, err := dlq("ls", "--json")
		if err != nil {
			t.Fatalf("dlq ls: %v\n%s", err, out)
		}
		var ls []letter
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var l letter
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("dlq ls --json line %q: %v", line, err)
			}
			if l.EventID == poison.ID {
				ls = append(ls, l)
			}
		}
		return ls
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// A good push behind the poison event still builds.
	repo := newRepo(t, map[string]string{".shiploop.yml": goodConfig, "src/app.txt": "v1\n"})
	secret := inst.register(t, "acme/app", repo)
	w := inst.watch(t, "acme/app")
	if res := inst.push(t, "acme/app", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD")); res.Status != 202 {
		t.Fatalf("push: HTTP %d %s", res.Status, res.Raw)
	}
	w.until("build.finished", 60*time.Second)

	var ls []letter
	waitUntil("the poison event in `dlq ls`", func() bool { ls = list(); return len(ls) > 0 })
	first := ls[0]
	if first.Kind != "dead-letter" || !strings.HasPrefix(first.Consumer, "builds") || !strings.Contains(first.Reason, "payload is not a shiploop.events.v1.Change") ||
		first.Subject != m.Subject {
		t.Errorf("dead letter %+v", first)
	}
	out, err := dlq("ls")
	if err != nil || !strings.Contains(out, "SEQ") || !strings.Contains(out, first.Consumer) {
		t.Errorf("dlq ls table: %v\n%s", err, out)
	}
	out, err = dlq("show", first.Seq)
	if err != nil || !strings.Contains(out, "reason:") || !strings.Contains(out, poison.ID) || !strings.Contains(out, "payload:     3 bytes") {
		t.Errorf("dlq show: %v\n%s", err, out)
	}
	if out, err := dlq("show", "x1"); err == nil || !strings.Contains(out, "dlq ls") {
		t.Errorf("dlq show x1: %v\n%s", err, out)
	}

	before := len(ls)
	out, err = dlq("replay", first.Seq)
	if err != nil || !strings.Contains(out, "replayed "+first.Seq) {
		t.Fatalf("dlq replay: %v\n%s", err, out)
	}
	// Still poison: it is dead-lettered again, as a new letter for a new
	// stream sequence; the replayed letter is gone.
	waitUntil("the replayed poison event back in the DLQ", func() bool {
		ls = list()
		for _, l := range ls {
			if l.Seq == first.Seq {
				return false
			}
		}
		return len(ls) >= before
	})
	for _, l := range ls {
		a, _ := strconv.Atoi(l.StreamSeq)
		b, _ := strconv.Atoi(first.StreamSeq)
		if l.Consumer == first.Consumer && a <= b {
			t.Errorf("letter %+v: want the replayed copy's new stream sequence (> %s)", l, first.StreamSeq)
		}
	}
}
