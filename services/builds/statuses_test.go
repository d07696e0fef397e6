package builds

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	"github.com/shiploop/shiploop/pkg/vcsarg"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

const forgeToken = "ghp_status-token-never-logged"

// lockedLog collects the service's log lines.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newStatusHarness is newHarness with a web UI URL, a quick status
// back-off and a log the test can read.
func newStatusHarness(t *testing.T, db *store.DB, backoff ...time.Duration) (*harness, *lockedLog) {
	t.Helper()
	b := bustest.Start(t, bus.Options{Source: "/test"})
	ctx, cancel := context.WithCancel(context.Background())
	logs := &lockedLog{}
	svc, err := New(ctx, Config{DB: db, Bus: b, DataDir: t.TempDir(), AllowedTransports: "https,ssh,git,file", PublicURL: "https://ci.example.com/",
		StatusBackoff: backoff, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &harness{t: t, svc: svc, bus: b, api: &grpcServer{s: svc}}, logs
}

// fakeStatus is one request the fake GitHub saw and its answer.
type fakeStatus struct {
	Path, Auth                             string
	State, Description, Context, TargetURL string
	Code                                   int
}

// fakeGitHub records commit-status requests; answer picks each reply's
// code (201 when nil).
type fakeGitHub struct {
	*httptest.Server
	mu     sync.Mutex
	seen   []fakeStatus
	answer func(seen []fakeStatus, next fakeStatus) int
}

func newFakeGitHub(t *testing.T, answer func(seen []fakeStatus, next fakeStatus) int) *fakeGitHub {
	f := &fakeGitHub{answer: answer}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body struct {
			State       string `json:"state"`
			Description string `json:"description"`
			Context     string `json:"context"`
			TargetURL   string `json:"target_url"`
		}
		if r.Method != http.MethodPost || json.Unmarshal(raw, &body) != nil {
			t.Errorf("fake GitHub: %s %s %q", r.Method, r.RequestURI, raw)
		}
		st := fakeStatus{Path: r.RequestURI, Auth: r.Header.Get("Authorization"), State: body.State,
			Description: body.Description, Context: body.Context, TargetURL: body.TargetURL, Code: http.StatusCreated}
		f.mu.Lock()
		if f.answer != nil {
			st.Code = f.answer(f.seen, st)
		}
		f.seen = append(f.seen, st)
		f.mu.Unlock()
		w.WriteHeader(st.Code)
		_, _ = w.Write([]byte(`{"message":"fake"}`))
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeGitHub) all() []fakeStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeStatus(nil), f.seen...)
}

// accepted are the statuses the fake answered 201, as "state description".
func (f *fakeGitHub) accepted() []string {
	var out []string
	for _, s := range f.all() {
		if s.Code == http.StatusCreated {
			out = append(out, s.State+" "+s.Description)
		}
	}
	return out
}

func (f *fakeGitHub) waitAccepted(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(f.accepted()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("fake GitHub accepted %d statuses within 30s, want %d: %+v", len(f.accepted()), n, f.all())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f.accepted()
}

// startBuild registers acme/web with the fake as its forge, pushes a
// commit and returns the queued job.
func startBuild(t *testing.T, h *harness, fake *fakeGitHub) (*eventsv1.Job, string) {
	t.Helper()
	ctx := context.Background()
	dir, sha := gitRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: test\n    commands: [echo ok]\n"})
	resp, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/web", CloneUrl: dir,
		Forge: "github", ForgeApiUrl: fake.URL, ForgeToken: forgeToken})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.GetRepository(); r.GetForge() != "github" || r.GetForgeRepo() != "acme/web" || r.GetForgeApiUrl() != fake.URL || !r.GetForgeTokenSet() {
		t.Errorf("registered %v", r)
	}
	if _, err := h.svc.acceptChange(ctx, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "github", DeliveryId: "d-" + sha,
		Repository: "acme/web", CloneUrl: dir, Ref: "refs/heads/main", Branch: "main", After: sha}); err != nil {
		t.Fatal(err)
	}
	return h.nextJob(ctx), sha
}

func (h *harness) jobStarted(job *eventsv1.Job) {
	h.t.Helper()
	if err := h.bus.Publish(context.Background(), bus.Event{Type: "job.started", Repository: job.GetRepository(), Subject: job.GetJobId(), Data: &eventsv1.JobStarted{
		JobId: job.GetJobId(), BuildId: job.GetBuildId(), Repository: job.GetRepository(), Agent: "a1", StartedAt: timestamppb.Now()}}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) jobFinished(job *eventsv1.Job, st eventsv1.BuildStatus, failedStep string) {
	h.t.Helper()
	if err := h.bus.Publish(context.Background(), bus.Event{Type: "job.finished", Repository: job.GetRepository(), Subject: job.GetJobId(), Data: &eventsv1.JobFinished{
		JobId: job.GetJobId(), BuildId: job.GetBuildId(), Repository: job.GetRepository(), Status: st, FailedStep: failedStep, Agent: "a1",
		Steps: []*eventsv1.StepResult{{Name: "test", Status: st}}}}); err != nil {
		h.t.Fatal(err)
	}
}

// quiet waits a while and checks the fake saw nothing more.
func quiet(t *testing.T, fake *fakeGitHub, d time.Duration) {
	t.Helper()
	n := len(fake.all())
	time.Sleep(d)
	if all := fake.all(); len(all) != n {
		t.Errorf("the fake saw more after the final status: %+v", all[n:])
	}
}

// TestCommitStatusesLifecycle: a build posts pending when created, pending
// ("running") when it starts and its result when it ends, each once, with
// the request GitHub documents; the token appears in no log line.
func TestCommitStatusesLifecycle(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		fake := newFakeGitHub(t, nil)
		h, logs := newStatusHarness(t, db, 50*time.Millisecond)
		job, sha := startBuild(t, h, fake)
		fake.waitAccepted(t, 1)
		h.jobStarted(job)
		fake.waitAccepted(t, 2)
		h.jobFinished(job, eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, "")
		got := fake.waitAccepted(t, 3)
		if len(got) != 3 || got[0] != "pending shiploop #1 queued" || got[1] != "pending shiploop #1 running" || !strings.HasPrefix(got[2], "success shiploop #1 passed in ") {
			t.Errorf("statuses = %q", got)
		}
		for _, s := range fake.all() {
			if s.Path != "/repos/acme/web/statuses/"+sha || s.Auth != "Bearer "+forgeToken || s.Context != "shiploop/build" ||
				s.TargetURL != "https://ci.example.com/builds/"+job.GetBuildId() {
				t.Errorf("request %+v", s)
			}
		}
		quiet(t, fake, 300*time.Millisecond)
		var posted int
		if err := db.QueryRowContext(context.Background(), `SELECT status_posted FROM builds WHERE id = $1`, job.GetBuildId()).Scan(&posted); err != nil || posted != phaseFinal {
			t.Errorf("status_posted = %d, %v", posted, err)
		}
		list, err := h.api.ListRepositories(context.Background(), &buildsv1.ListRepositoriesRequest{})
		if err != nil || len(list.GetRepositories()) != 1 || !list.GetRepositories()[0].GetForgeTokenSet() {
			t.Errorf("ListRepositories = %v, %v", list, err)
		}
		if strings.Contains(list.String(), forgeToken) || strings.Contains(logs.String(), forgeToken) {
			t.Error("the forge token left the service")
		}
		if !strings.Contains(logs.String(), "commit status posted") {
			t.Errorf("no log line for posted statuses:\n%s", logs)
		}
	})
}

// TestCommitStatusRetried: a forge answering 500 twice to the final status
// gets it a third time, through the bus's back-off, and ends with exactly
// one final status.
func TestCommitStatusRetried(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		fake := newFakeGitHub(t, func(seen []fakeStatus, next fakeStatus) int {
			failed := 0
			for _, s := range seen {
				if s.State == "failure" && s.Code == 500 {
					failed++
				}
			}
			if next.State == "failure" && failed < 2 {
				return 500
			}
			return http.StatusCreated
		})
		h, _ := newStatusHarness(t, db, 50*time.Millisecond, 100*time.Millisecond)
		job, _ := startBuild(t, h, fake)
		fake.waitAccepted(t, 1)
		h.jobStarted(job)
		fake.waitAccepted(t, 2)
		h.jobFinished(job, eventsv1.BuildStatus_BUILD_STATUS_FAILURE, "test")
		got := fake.waitAccepted(t, 3)
		quiet(t, fake, 500*time.Millisecond)
		got = fake.accepted()
		want := []string{"pending shiploop #1 queued", "pending shiploop #1 running", "failure shiploop #1 failed at step test"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("accepted statuses:\n got %q\nwant %q", got, want)
		}
		if n := len(fake.all()); n != 5 {
			t.Errorf("the fake saw %d requests, want 5 (two 500s): %+v", n, fake.all())
		}
	})
}

// TestLateStatusNeverRegresses: a pending status whose post failed and is
// retried after the build has finished is dropped, not posted over the
// final status.
func TestLateStatusNeverRegresses(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		fake := newFakeGitHub(t, func(seen []fakeStatus, next fakeStatus) int {
			if len(seen) == 0 {
				return http.StatusBadGateway // the first pending
			}
			return http.StatusCreated
		})
		h, _ := newStatusHarness(t, db, 1500*time.Millisecond)
		job, _ := startBuild(t, h, fake)
		deadline := time.Now().Add(30 * time.Second)
		for len(fake.all()) == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		h.jobStarted(job)
		h.jobFinished(job, eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, "")
		fake.waitAccepted(t, 2)
		quiet(t, fake, 2500*time.Millisecond) // past the pending's redelivery
		got := fake.accepted()
		if len(got) != 2 || got[0] != "pending shiploop #1 running" || !strings.HasPrefix(got[1], "success ") {
			t.Errorf("accepted statuses = %q, want running then success", got)
		}
	})
}

// TestCommitStatusRefused: a forge answering 401 is not retried: one
// request per status, each logged.
func TestCommitStatusRefused(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		fake := newFakeGitHub(t, func([]fakeStatus, fakeStatus) int { return http.StatusUnauthorized })
		h, logs := newStatusHarness(t, db, 20*time.Millisecond)
		job, _ := startBuild(t, h, fake)
		h.jobStarted(job)
		h.jobFinished(job, eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, "")
		h.waitBuild(context.Background(), job.GetBuildId(), eventsv1.BuildStatus_BUILD_STATUS_SUCCESS)
		deadline := time.Now().Add(30 * time.Second)
		for len(fake.all()) < 3 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		quiet(t, fake, 300*time.Millisecond)
		if n := len(fake.all()); n != 3 {
			t.Errorf("the fake saw %d requests, want 3 (one per status, no retries): %+v", n, fake.all())
		}
		if c := strings.Count(logs.String(), "commit status refused"); c != 3 {
			t.Errorf("%d refusals logged, want 3:\n%s", c, logs)
		}
		if strings.Contains(logs.String(), forgeToken) {
			t.Error("the forge token is in the log")
		}
	})
}

// TestRegisterRepositoryForge: forge settings are checked, kept on updates
// that do not name them, cleared with "none"; the token is never returned.
func TestRegisterRepositoryForge(t *testing.T) {
	storetest.Engines(t, "builds", Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		api := &grpcServer{s: &Service{db: db, mirrors: newMirrors(t.TempDir(), vcsarg.MustTransports("https,ssh,git,file"))}}
		reg := func(req *buildsv1.RegisterRepositoryRequest) (*buildsv1.Repository, error) {
			req.Name, req.CloneUrl = "acme/web", "/tmp/acme-web"
			resp, err := api.RegisterRepository(ctx, req)
			return resp.GetRepository(), err
		}
		for _, tc := range []struct {
			req   *buildsv1.RegisterRepositoryRequest
			field string
		}{
			{&buildsv1.RegisterRepositoryRequest{Forge: "bitbucket", ForgeToken: "t"}, "forge: "},
			{&buildsv1.RegisterRepositoryRequest{Forge: "github"}, "forge_token: "},
			{&buildsv1.RegisterRepositoryRequest{Forge: "gitea", ForgeToken: "t"}, "forge_api_url: "},
			{&buildsv1.RegisterRepositoryRequest{Forge: "gitea", ForgeApiUrl: "gitea.example.com", ForgeToken: "t"}, "forge_api_url: "},
			{&buildsv1.RegisterRepositoryRequest{Forge: "github", ForgeRepo: "web", ForgeToken: "t"}, "forge_repo: "},
			{&buildsv1.RegisterRepositoryRequest{ForgeToken: "t"}, "forge: "},
		} {
			_, err := reg(tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("%v: %v, want InvalidArgument on %s", tc.req, err, tc.field)
			}
		}
		r, err := reg(&buildsv1.RegisterRepositoryRequest{Forge: "GitLab", ForgeRepo: "4711", ForgeToken: "glpat-x"})
		if err != nil || r.GetForge() != "gitlab" || r.GetForgeApiUrl() != "https://gitlab.com/api/v4" || r.GetForgeRepo() != "4711" || !r.GetForgeTokenSet() {
			t.Fatalf("gitlab: %v %v", r, err)
		}
		// An update that does not name the forge keeps it and its token.
		r, err = reg(&buildsv1.RegisterRepositoryRequest{DefaultBranch: "trunk"})
		if err != nil || r.GetForge() != "gitlab" || r.GetForgeRepo() != "4711" || !r.GetForgeTokenSet() {
			t.Fatalf("update: %v %v", r, err)
		}
		// A new API URL without a token keeps the stored token.
		r, err = reg(&buildsv1.RegisterRepositoryRequest{Forge: "forgejo", ForgeApiUrl: "https://code.example.org/api/v1/"})
		if err != nil || r.GetForge() != "forgejo" || r.GetForgeApiUrl() != "https://code.example.org/api/v1" || r.GetForgeRepo() != "acme/web" || !r.GetForgeTokenSet() {
			t.Fatalf("forgejo: %v %v", r, err)
		}
		s := &Service{db: db}
		if f, err := s.forgeSettings(ctx, "acme/web"); err != nil || f.token != "glpat-x" {
			t.Errorf("stored token = %q, %v", f.token, err)
		}
		r, err = reg(&buildsv1.RegisterRepositoryRequest{Forge: "none"})
		if err != nil || r.GetForge() != "" || r.GetForgeTokenSet() {
			t.Fatalf("none: %v %v", r, err)
		}
		if f, _ := s.forgeSettings(ctx, "acme/web"); f != (forgeSettings{}) {
			t.Errorf("after none: %+v", f)
		}
	})
}

// TestFinalDescriptions: what each end of a build says on the forge.
func TestFinalDescriptions(t *testing.T) {
	start := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	b := func(st eventsv1.BuildStatus, step, errText string) *buildsv1.Build {
		return &buildsv1.Build{Number: 12, Status: st, FailedStep: step, Error: errText,
			StartedAt: timestamppb.New(start), FinishedAt: timestamppb.New(start.Add(63 * time.Second))}
	}
	for _, tc := range []struct {
		b     *buildsv1.Build
		state string
		desc  string
	}{
		{b(eventsv1.BuildStatus_BUILD_STATUS_SUCCESS, "", ""), "success", "shiploop #12 passed in 1m3s"},
		{b(eventsv1.BuildStatus_BUILD_STATUS_FAILURE, "test", "exit code 1"), "failure", "shiploop #12 failed at step test"},
		{b(eventsv1.BuildStatus_BUILD_STATUS_ERROR, "", ".shiploop.yml:3:5: steps[0].name:\n required"), "error", "shiploop #12 errored: .shiploop.yml:3:5: steps[0].name: required"},
		{b(eventsv1.BuildStatus_BUILD_STATUS_CANCELED, "", "superseded by build #13"), "canceled", "shiploop #12 canceled: superseded by build #13"},
		{b(eventsv1.BuildStatus_BUILD_STATUS_SKIPPED, "", "no step matches this change"), "success", "shiploop #12 skipped: no step matches this change"},
	} {
		state, desc := finalStatus("shiploop #12", tc.b)
		if string(state) != tc.state || desc != tc.desc {
			t.Errorf("%v: %s %q, want %s %q", tc.b.Status, state, desc, tc.state, tc.desc)
		}
	}
	s := &Service{}
	if u := s.buildURL("b1"); u != "" {
		t.Errorf("no public URL: %q", u)
	}
	s.cfg.PublicURL = "https://ci.example.com/shiploop/"
	if u := s.buildURL("b1"); u != "https://ci.example.com/shiploop/builds/b1" {
		t.Errorf("buildURL = %q", u)
	}
}
