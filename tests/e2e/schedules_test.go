package e2e

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// minutelyConfig's schedule fires every minute, on the real clock: the
// test plans its kills around minute boundaries.
const minutelyConfig = `schedules:
  - name: minutely
    cron: "* * * * *"
steps:
  - name: build
    commands: [echo scheduled]
`

// TestScheduleReplicasKill9: two serve builds replicas on one NATS and one
// database, a schedule firing every minute; at each of two consecutive
// slots one replica (each in turn) is kill -9'd right at the slot and
// restarted 3 s later (a restarted scheduler fires a missed slot at once,
// racing the survivor's tick). Each slot fires exactly once: one change
// event of the schedule and one build with the trigger cron.
func TestScheduleReplicasKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("schedules across replicas: two real minute slots")
	}
	natsBin := natsServerBinary(t)
	dbURL := createDatabase(t)
	natsURL := startNATSServer(t, natsBin)
	procs, httpAddr, grpcAddr := startSplit(t, natsURL, dbURL)
	grpc2 := freeAddr(t)
	replica2 := &killable{name: "serve builds (replica 2)", ready: readyJSON,
		args: []string{"serve", "--json", "--nats-url", natsURL, "--database-url", dbURL, "--data-dir", t.TempDir(),
			"--carbon-listen", "127.0.0.1:0", "--pickle-listen", "127.0.0.1:0",
			"--http-listen", freeAddr(t), "--grpc-listen", grpc2, "builds"}}
	if err := replica2.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica2.stop(t) })
	replicas := []*killable{procs[0], replica2}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := buildsv1.NewBuildServiceClient(conn)
	repo := newRepo(t, map[string]string{".shiploop.yml": minutelyConfig})
	secret := registerRepo(t, conn, "acme/minutely", repo.dir)
	sha := repo.git("rev-parse", "HEAD")
	pushAll(t, httpAddr, []push{{repo: "acme/minutely", secret: secret, ref: "refs/heads/main", sha: sha}}, nil)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		// Through either replica: builds is killed and restarted below.
		ls, err := client.ListSchedules(context.Background(), &buildsv1.ListSchedulesRequest{Repository: "acme/minutely"})
		if err == nil && len(ls.GetSchedules()) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("schedule not stored after the push: %v, %v", ls, err)
		}
	}

	var slots []time.Time
	for i := range 2 {
		slot := time.Now().Truncate(time.Minute).Add(time.Minute)
		if time.Until(slot) < 3*time.Second {
			slot = slot.Add(time.Minute)
		}
		time.Sleep(time.Until(slot.Add(-time.Second)))
		time.Sleep(time.Until(slot))
		victim := replicas[i%2]
		victim.kill9()
		t.Logf("slot %s: %s killed -9", slot.UTC().Format(time.TimeOnly), victim.name)
		time.Sleep(3 * time.Second)
		if err := victim.start(); err != nil {
			t.Fatalf("restarting after kill -9: %v", err)
		}
		slots = append(slots, slot)
	}
	// The survivor's tick is 10 s, and a restart fires a missed slot at
	// once: 25 s after the last slot it has fired.
	time.Sleep(time.Until(slots[len(slots)-1].Add(25 * time.Second)))

	js := jetStreamAt(t, natsURL)
	perSlot := map[int64]int{} // by the slot's Unix time
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		evs, err := readEvents(js)
		if err == nil {
			clear(perSlot)
			for _, ev := range evs {
				if ch, ok := ev.Data.(*eventsv1.Change); ok && ch.GetSchedule() == "minutely" {
					// Fired within seconds of its slot: the minute it is in.
					perSlot[ev.Time.Truncate(time.Minute).Unix()]++
				}
			}
			if perSlot[slots[0].Unix()] > 0 && perSlot[slots[1].Unix()] > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("slots' change events: %v (err %v); want one at each of %v", perSlot, err, slots)
		}
	}
	for s, n := range perSlot {
		if n != 1 {
			t.Errorf("slot %s fired %d times", time.Unix(s, 0).UTC().Format(time.TimeOnly), n)
		}
	}

	// And one build each, with the trigger cron.
	builds := map[int64]int{}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		resp, err := client.ListBuilds(context.Background(), &buildsv1.ListBuildsRequest{Repository: "acme/minutely", PageSize: 100})
		if err == nil {
			clear(builds)
			for _, b := range resp.GetBuilds() {
				if b.GetTrigger() == "cron" {
					builds[b.GetCreatedAt().AsTime().Truncate(time.Minute).Unix()]++
				}
			}
			total := 0
			for _, n := range builds {
				total += n
			}
			if total >= len(perSlot) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cron builds per minute %v (err %v); want one for each fired slot %v", builds, err, perSlot)
		}
	}
	for _, s := range slots {
		if builds[s.Unix()] != 1 {
			t.Errorf("slot %s: %d cron builds, want 1 (all: %v)", s.UTC().Format(time.TimeOnly), builds[s.Unix()], builds)
		}
	}
	if t.Failed() {
		for _, r := range replicas {
			t.Logf("%s stderr:\n%s%s", r.name, r.log.String(), r.stderr)
		}
	}
}

// TestSplitSchedulesSection: `serve dashboards` and `serve builds` in
// processes of their own. The repository page lists the schedules of the
// default branch's .shiploop.yml, read over BuildService found in NATS,
// and its Pause form pauses the schedule in builds.
func TestSplitSchedulesSection(t *testing.T) {
	natsURL := startNATSServer(t, natsServerBinary(t))
	procs, httpAddr, grpcAddr := startSplit(t, natsURL, createDatabase(t), "dashboards")
	dashProc, dashReady := splitProc(t, procs, "serve dashboards")
	// 29 February at 03:00 only: never fires during the test.
	repo := newRepo(t, map[string]string{".shiploop.yml": `schedules:
  - name: leap-night
    cron: "0 3 29 2 *"
    timezone: Europe/Paris
steps:
  - name: build
    commands: ["true"]
`})
	conn := dialInsecure(t, grpcAddr)
	secret := registerRepo(t, conn, "acme/split-sched", repo.dir)
	pushAll(t, httpAddr, []push{{repo: "acme/split-sched", secret: secret, ref: "refs/heads/main", sha: repo.git("rev-parse", "HEAD")}}, nil)
	page := dashReady.HTTPURL + "/repos/acme/split-sched"
	var status int
	var body []byte
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		resp, err := http.Get(page)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		if status == http.StatusOK && strings.Contains(string(body), "<td>leap-night</td>") && strings.Contains(string(body), "<td>Europe/Paris</td>") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dashboards' repository page: %d, no schedule leap-night:\n%s\nserve dashboards stderr:\n%s", status, body, dashProc.stderr)
		}
	}
	form := url.Values{"action": {"pause"}, "name": {"leap-night"}}
	req, err := http.NewRequest(http.MethodPost, page, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", dashReady.HTTPURL) // the page's own form
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "?done=") {
		t.Fatalf("pause form: %d, Location %q\nserve dashboards stderr:\n%s", resp.StatusCode, loc, dashProc.stderr)
	}
	ls, err := buildsv1.NewBuildServiceClient(conn).ListSchedules(context.Background(), &buildsv1.ListSchedulesRequest{Repository: "acme/split-sched"})
	if err != nil || len(ls.GetSchedules()) != 1 || !ls.GetSchedules()[0].GetPaused() {
		t.Fatalf("after the pause form, builds' schedules: %v, %v", ls, err)
	}
}
