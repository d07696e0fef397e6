package e2e

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestLostJobEndsItsBuild: a job whose agents die with it every time (an
// out-of-memory step, say) is tried five times, one agent after another,
// and then its build ends with an error saying the agents were lost,
// instead of running for ever. Both agents are kill -9'd whenever the job
// has started, in split mode on PostgreSQL with real agent processes.
func TestLostJobEndsItsBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("kills agents five times")
	}
	natsURL := startNATSServer(t, natsServerBinary(t))
	dbURL := createDatabase(t)
	procs, httpAddr, grpcAddr := startSplit(t, natsURL, dbURL)
	agents := procs[1:]
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	repo := newRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: eat-memory\n    commands: [sleep 120]\n"})
	secret := registerRepo(t, conn, "acme/lost", repo.dir)
	js := jetStreamAt(t, natsURL)
	pushAll(t, httpAddr, []push{{repo: "acme/lost", secret: secret, ref: "refs/heads/main", sha: repo.git("rev-parse", "HEAD")}}, nil)

	// Each time the job starts (attempt 1, 2, …), its agent dies with it.
	var finished *eventsv1.BuildFinished
	killed := 0
	for deadline := time.Now().Add(3 * time.Minute); finished == nil; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the build did not finish within 3 minutes; %d attempts killed", killed)
		}
		evs, err := readEvents(js)
		if err != nil {
			continue
		}
		attempts := 0
		for _, ev := range evs {
			switch d := ev.Data.(type) {
			case *eventsv1.JobStarted:
				attempts = max(attempts, int(d.GetAttempt()))
			case *eventsv1.BuildFinished:
				finished = d
			}
		}
		if attempts > killed && finished == nil {
			for _, a := range agents {
				a.kill9()
				if err := a.start(); err != nil {
					t.Fatal(err)
				}
			}
			killed = attempts
		}
	}
	if killed != 5 {
		t.Errorf("the job started %d times, want 5 (the job consumers' MaxDeliver)", killed)
	}
	if finished.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_ERROR || !strings.Contains(finished.GetError(), "agent lost: the job was delivered 5 times") {
		t.Errorf("build finished %v: %q, want an error saying 5 agents were lost", finished.GetStatus(), finished.GetError())
	}
}
