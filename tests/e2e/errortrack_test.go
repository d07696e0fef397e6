package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getsentry/sentry-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shiploop/shiploop/pkg/testfixture"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// sentryFixtures is the shared Sentry test data, read in place.
const sentryFixtures = "../../../shared/testdata/sentry"

// errortrackUp starts `shiploop up` with the HTTP listener on a fixed free
// port, so the DSNs it prints work as they are.
func errortrackUp(t *testing.T) (*instance, errortrackv1.ErrorServiceClient) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	inst := startUp(t, "--http-listen", addr)
	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return inst, errortrackv1.NewErrorServiceClient(conn)
}

func shiploopCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("shiploop %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var dsnLine = regexp.MustCompile(`(?m)^DSN: (\S+)$`)

// createErrorProject runs `shiploop errors project create` and returns the
// DSN it printed.
func createErrorProject(t *testing.T, inst *instance, name string) string {
	t.Helper()
	out := shiploopCLI(t, "errors", "project", "create", name, "--server", inst.GRPCAddr)
	m := dsnLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no DSN in:\n%s", out)
	}
	return m[1]
}

func waitErrorIssues(t *testing.T, cl errortrackv1.ErrorServiceClient, project, what string, ok func([]*errortrackv1.Issue) bool) []*errortrackv1.Issue {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := cl.ListIssues(context.Background(), &errortrackv1.ListIssuesRequest{Project: project})
		if err == nil && ok(resp.GetIssues()) {
			return resp.GetIssues()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s (last %v, %v)", what, resp.GetIssues(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func totalSeen(is []*errortrackv1.Issue) int64 {
	var n int64
	for _, i := range is {
		n += i.GetTimesSeen()
	}
	return n
}

type e2eError struct{ order int }

func (e *e2eError) Error() string { return fmt.Sprintf("order %d cannot be paid", e.order) }

func payOrder(hub *sentry.Hub, order int) {
	hub.CaptureException(fmt.Errorf("paying: %w", &e2eError{order}))
}

// TestErrortrackSentryGo: a project made with the CLI, the real sentry-go
// SDK on its printed DSN sending errors, messages, a transaction, an
// attachment and a check-in; sessions as @sentry/node sends them; the
// issues, counts, releases and health asserted over gRPC; resolve,
// regression and the CLI views.
func TestErrortrackSentryGo(t *testing.T) {
	inst, cl := errortrackUp(t)
	ctx := context.Background()
	dsn := createErrorProject(t, inst, "shop")
	if !strings.HasPrefix(dsn, "http://") || !strings.Contains(dsn, "@"+strings.TrimPrefix(inst.HTTPURL, "http://")+"/") {
		t.Fatalf("DSN %q does not point at %s", dsn, inst.HTTPURL)
	}
	client, err := sentry.NewClient(sentry.ClientOptions{Dsn: dsn, Release: "shop@1.0.0", Environment: "e2e", AttachStacktrace: true, EnableTracing: true, TracesSampleRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	hub := sentry.NewHub(client, sentry.NewScope())
	hub.Scope().SetUser(sentry.User{ID: "alice"})
	payOrder(hub, 1)
	payOrder(hub, 2)
	hub.CaptureMessage("inventory low for sku 1234")
	hub.WithScope(func(scope *sentry.Scope) {
		scope.AddAttachment(&sentry.Attachment{Filename: "cart.json", ContentType: "application/json", Payload: []byte(`{"items":3}`)})
		hub.CaptureMessage("checkout with attachment")
	})
	span := sentry.StartTransaction(sentry.SetHubOnContext(ctx, hub), "GET /checkout")
	span.Finish()
	hub.CaptureCheckIn(&sentry.CheckIn{MonitorSlug: "nightly", Status: sentry.CheckInStatusOK}, nil)
	if !hub.Flush(15 * time.Second) {
		t.Fatal("sentry-go did not flush")
	}
	issues := waitErrorIssues(t, cl, "shop", "3 issues from 4 events", func(is []*errortrackv1.Issue) bool { return len(is) == 3 && totalSeen(is) == 4 })
	var pay *errortrackv1.Issue
	for _, is := range issues {
		if strings.Contains(is.GetTitle(), "cannot be paid") {
			pay = is
		}
	}
	if pay == nil || pay.GetTimesSeen() != 2 || pay.GetUsers() != 1 || pay.GetFirstRelease() != "shop@1.0.0" || pay.GetStatus() != errortrackv1.IssueStatus_ISSUE_STATUS_UNRESOLVED {
		t.Fatalf("payment issue = %v", pay)
	}
	// The issue page (dashboards) reads the latest event from errortrack:
	// its in-app frames, by function, with the exception.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("%s/errors/%d", inst.HTTPURL, pay.GetId()))
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.Contains(string(page), "payOrder") && strings.Contains(string(page), "cannot be paid") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("issue page /errors/%d: %d, no frame payOrder:\n%s", pay.GetId(), resp.StatusCode, page)
		}
	}
	// Sessions as @sentry/node sends them (sentry-go has none), crash-free per release.
	for _, f := range []string{"005_session.envelope", "004_sessions.envelope"} {
		body, err := os.ReadFile(filepath.Join(sentryFixtures, "captured/sentry-node-11.12.0", f))
		if err != nil {
			testfixture.Missing(t, "shared fixtures: %v", err)
		}
		key, pid := dsnParts(t, dsn)
		resp, err := http.Post(fmt.Sprintf("%s/api/%s/envelope/?sentry_key=%s", inst.HTTPURL, pid, key), "", bytes.NewReader(body))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("posting %s: %v %v", f, resp, err)
		}
		resp.Body.Close()
	}
	var health *errortrackv1.ReleaseHealth
	deadline := time.Now().Add(30 * time.Second)
	for health == nil || health.GetSessions() < 2 {
		rel, err := cl.ListReleases(ctx, &errortrackv1.ListReleasesRequest{Project: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rel.GetReleases() {
			if r.GetVersion() == "myapp@1.2.3" && len(r.GetHealth()) > 0 {
				health = r.GetHealth()[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session health within 30s: %v", rel)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if health.GetEnvironment() != "test" || health.GetCrashFreeRate() != 1 || health.GetErrored() != 1 {
		t.Errorf("health = %v", health)
	}
	proj, err := cl.GetProject(ctx, &errortrackv1.GetProjectRequest{Project: "shop"})
	if err != nil || proj.GetProject().GetCounters()["check_in"] != 1 {
		t.Errorf("project counters = %v, %v", proj.GetProject().GetCounters(), err)
	}
	// The transaction and the attachment are stored.
	for _, is := range issues {
		if is.GetTitle() != "checkout with attachment" {
			continue
		}
		evs, err := cl.ListIssueEvents(ctx, &errortrackv1.ListIssueEventsRequest{IssueId: is.GetId()})
		if err != nil || len(evs.GetEvents()) != 1 || len(evs.GetEvents()[0].GetAttachments()) != 1 || evs.GetEvents()[0].GetAttachments()[0].GetFilename() != "cart.json" {
			t.Errorf("attachment event = %v, %v", evs, err)
		}
	}

	// CLI: list, resolve in the next release, show.
	if out := shiploopCLI(t, "errors", "ls", "--server", inst.GRPCAddr, "--project", "shop"); !strings.Contains(out, "cannot be paid") {
		t.Errorf("errors ls:\n%s", out)
	}
	id := strconv.FormatInt(pay.GetId(), 10)
	if out := shiploopCLI(t, "errors", "resolve", id, "--next-release", "--server", inst.GRPCAddr); !strings.Contains(out, "resolved_in_next_release (release shop@1.0.0)") {
		t.Errorf("errors resolve:\n%s", out)
	}
	// The same release again: no regression. A newer one: regression.
	payOrder(hub, 3)
	hub.Flush(10 * time.Second)
	newer, _ := sentry.NewClient(sentry.ClientOptions{Dsn: dsn, Release: "shop@1.1.0", Environment: "e2e"})
	nhub := sentry.NewHub(newer, sentry.NewScope())
	waitErrorIssues(t, cl, "shop", "1.0.0 event counted", func(is []*errortrackv1.Issue) bool {
		for _, i := range is {
			if i.GetId() == pay.GetId() {
				return i.GetTimesSeen() == 3 && i.GetStatus() == errortrackv1.IssueStatus_ISSUE_STATUS_RESOLVED_IN_NEXT_RELEASE
			}
		}
		return false
	})
	payOrder(nhub, 4)
	nhub.Flush(10 * time.Second)
	waitErrorIssues(t, cl, "shop", "regression in 1.1.0", func(is []*errortrackv1.Issue) bool {
		for _, i := range is {
			if i.GetId() == pay.GetId() {
				return i.GetRegressed() && i.GetStatus() == errortrackv1.IssueStatus_ISSUE_STATUS_UNRESOLVED && i.GetLastRelease() == "shop@1.1.0"
			}
		}
		return false
	})
	// errors show prints what Sentry's issue page shows: status, the
	// release rows, the latest event's frames with their context lines.
	out := shiploopCLI(t, "errors", "show", id, "--server", inst.GRPCAddr)
	for _, want := range []*regexp.Regexp{regexp.MustCompile(`unresolved \(regressed\)`), regexp.MustCompile(`shop@1\.1\.0\s+e2e\s+1 events`),
		regexp.MustCompile(`at payOrder in \S+errortrack_test\.go:\d+`), regexp.MustCompile(`>\s+\d+ \|\s+hub\.CaptureException`), regexp.MustCompile(`caused by\s+\*e2e\.e2eError: order 4 cannot be paid`)} {
		if !want.MatchString(out) {
			t.Errorf("errors show lacks %s:\n%s", want, out)
		}
	}
}

// dsnParts returns the key and project id of a DSN.
func dsnParts(t *testing.T, dsn string) (key, project string) {
	t.Helper()
	rest := strings.TrimPrefix(dsn, "http://")
	key, rest, _ = strings.Cut(rest, "@")
	return key, rest[strings.LastIndexByte(rest, '/')+1:]
}

// TestErrortrackRejects: the documented answers for bad requests against
// the built binary, and a revoked key stops working at once.
func TestErrortrackRejects(t *testing.T) {
	inst, cl := errortrackUp(t)
	dsn := createErrorProject(t, inst, "strict")
	key, pid := dsnParts(t, dsn)
	post := func(path, enc string, body []byte) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, inst.HTTPURL+path, bytes.NewReader(body))
		if enc != "" {
			req.Header.Set("Content-Encoding", enc)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	env := []byte("{}\n{\"type\":\"event\"}\n{\"message\":\"hi\"}\n")
	q := "?sentry_key=" + key
	for _, c := range []struct {
		name, path string
		body       []byte
		status     int
	}{
		{"no key", "/api/" + pid + "/envelope/", env, 401},
		{"wrong key", "/api/" + pid + "/envelope/?sentry_key=wrong", env, 403},
		{"unknown project", "/api/424242/envelope/" + q, env, 403},
		{"invalid JSON", "/api/" + pid + "/envelope/" + q, []byte("{}\n{\"type\":\"event\"}\n{oops\n"), 400},
		{"broken length", "/api/" + pid + "/envelope/" + q, []byte("{}\n{\"type\":\"event\",\"length\":99}\n{}\n"), 400},
		{"good", "/api/" + pid + "/envelope" + q, env, 200},
	} {
		if st, body := post(c.path, "", c.body); st != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, st, body, c.status)
		}
	}
	if _, err := cl.RevokeKey(context.Background(), &errortrackv1.RevokeKeyRequest{PublicKey: key}); err != nil {
		t.Fatal(err)
	}
	if st, body := post("/api/"+pid+"/envelope/"+q, "", env); st != 403 || !strings.Contains(body, "revoked") {
		t.Errorf("revoked key: %d %s", st, body)
	}
	waitErrorIssues(t, cl, "strict", "the one good event", func(is []*errortrackv1.Issue) bool { return len(is) == 1 && totalSeen(is) == 1 })
}

// TestErrortrackSentryNode runs @sentry/node (npm) under node against the
// binary. Without node/npm or the package it skips, except with CI=true.
func TestErrortrackSentryNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		testfixture.Missing(t, "node is not installed: the @sentry/node test needs node >= 20.19 and npm")
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "client.js"} {
		b, err := os.ReadFile(filepath.Join("testdata/sentry-node", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	npmInstall(t, dir, "@sentry/node")
	inst, cl := errortrackUp(t)
	dsn := createErrorProject(t, inst, "node-app")
	run := exec.Command(node, "client.js")
	run.Dir = dir
	run.Env = append(os.Environ(), "SENTRY_DSN="+dsn)
	out, err := run.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "flushed") {
		t.Fatalf("node client: %v\n%s", err, out)
	}
	issues := waitErrorIssues(t, cl, "node-app", "node issues", func(is []*errortrackv1.Issue) bool { return len(is) == 3 && totalSeen(is) == 4 })
	for _, is := range issues {
		if strings.HasPrefix(is.GetTitle(), "Error: checkout failed") {
			if is.GetTimesSeen() != 2 || is.GetFirstRelease() != "node-app@2.0.0" {
				t.Errorf("checkout issue = %v", is)
			}
			return
		}
	}
	t.Errorf("no checkout issue in %v", issues)
}

// TestErrortrackDSNPathPrefix: a DSN with a path before the project id (a
// proxy's /sentry, an old DSN kept as it was) works unchanged: sentry-go
// posts to /sentry/errors/api/{id}/envelope/ and the event becomes an issue.
func TestErrortrackDSNPathPrefix(t *testing.T) {
	inst, cl := errortrackUp(t)
	dsn := createErrorProject(t, inst, "prefixed")
	i := strings.LastIndex(dsn, "/")
	prefixed := dsn[:i] + "/sentry/errors" + dsn[i:]
	client, err := sentry.NewClient(sentry.ClientOptions{Dsn: prefixed, Release: "prefixed@1.0.0", Environment: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	hub := sentry.NewHub(client, sentry.NewScope())
	hub.CaptureMessage("checkout failed for order 17")
	if !hub.Flush(10 * time.Second) {
		t.Fatal("sentry-go did not flush")
	}
	waitErrorIssues(t, cl, "prefixed", "the message sent to the prefixed DSN", func(is []*errortrackv1.Issue) bool {
		return len(is) == 1 && is[0].GetTimesSeen() == 1
	})
	// The prefix does not open other routes: a prefixed path that is not
	// the intake is still unknown.
	resp, err := http.Post(inst.HTTPURL+"/sentry/errors/api/1/other/", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /sentry/errors/api/1/other/: %d, want 404", resp.StatusCode)
	}
}
