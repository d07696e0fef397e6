package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/getsentry/sentry-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// The cross-service queries of split mode, each between two processes
// that find one another only through the addresses advertised in NATS
// (discovery): gates -> builds (forge settings) is
// TestSplitCommitStatusThroughDiscovery; deploys -> metrics (graphite()
// checks), dashboards -> errortrack (the issue page), dashboards ->
// deploys (the environment page's forms) and dashboards -> testruns (a
// build's tests page) are here.

// splitProc is the process of startSplit named name ("serve metrics") and
// its ready line.
func splitProc(t *testing.T, procs []*killable, name string) (*killable, splitReadyLine) {
	t.Helper()
	for _, p := range procs {
		if p.name != name {
			continue
		}
		p.mu.Lock()
		stdout := p.stdout
		p.mu.Unlock()
		line, _, _ := stdout.find(func(string) bool { return true })
		var r splitReadyLine
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s ready line %q: %v", name, line, err)
		}
		return p, r
	}
	t.Fatalf("no process %q", name)
	return nil, splitReadyLine{}
}

type splitReadyLine struct {
	HTTPURL   string            `json:"http_url"`
	GRPCAddr  string            `json:"grpc_addr"`
	Addresses map[string]string `json:"addresses"`
}

func dialInsecure(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestSplitGraphiteVerification: `serve deploys` runs with no
// --graphite-url and `serve metrics` in another process. A graphite()
// verification check over a metric sent to that process's Carbon port is
// answered by it: deploys found metrics' HTTP address in NATS.
func TestSplitGraphiteVerification(t *testing.T) {
	natsURL := startNATSServer(t, natsServerBinary(t))
	procs, httpAddr, grpcAddr := startSplit(t, natsURL, createDatabase(t), "deploys", "metrics")
	deploysProc, deploysReady := splitProc(t, procs, "serve deploys")
	_, metricsReady := splitProc(t, procs, "serve metrics")
	carbon := metricsReady.Addresses["carbon"]
	if carbon == "" {
		t.Fatalf("serve metrics announces no carbon address: %v", metricsReady.Addresses)
	}
	// The metric, a point every 200ms until the test ends.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if c, err := net.Dial("tcp", carbon); err == nil {
				fmt.Fprintf(c, "app.splitverify.errors 3 %d\n", time.Now().Unix())
				c.Close()
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()

	repo := newRepo(t, map[string]string{".shiploop.yml": `steps:
  - name: build
    commands: [echo building $SHIPLOOP_VERSION]
environments:
  - name: acceptance
    auto: true
    steps:
      - {name: deploy, commands: [echo deploying $SHIPLOOP_VERSION]}
    verify:
      window: 2s
      conditions:
        - {metric: "graphite(app.splitverify.errors)", operator: "<", threshold: 5}
`})
	sha := repo.git("rev-parse", "HEAD")
	secret := registerRepo(t, dialInsecure(t, grpcAddr), "acme/split-graphite", repo.dir)
	pushAll(t, httpAddr, []push{{repo: "acme/split-graphite", secret: secret, ref: "refs/heads/main", sha: sha}}, nil)

	cl := deploysv1.NewDeployServiceClient(dialInsecure(t, deploysReady.GRPCAddr))
	done := waitDeployment(t, cl, "acme/split-graphite", "acceptance", "the acceptance deploy finished", func(d *deploysv1.Deployment) bool {
		switch d.GetStatus() {
		case eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED, eventsv1.DeployStatus_DEPLOY_STATUS_FAILED, eventsv1.DeployStatus_DEPLOY_STATUS_ROLLED_BACK,
			eventsv1.DeployStatus_DEPLOY_STATUS_PAUSED: // paused: an inconclusive check
			return true
		}
		return false
	})
	var graphite *eventsv1.CheckResult
	for _, c := range done.GetChecks() {
		if strings.Contains(c.GetCheck(), "graphite(") {
			graphite = c
		}
	}
	if done.GetStatus() != eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED || graphite == nil || graphite.GetValue() != 3 ||
		!strings.Contains(graphite.GetReason(), "app.splitverify.errors = 3") {
		t.Fatalf("deploy %s (%s), graphite check %v; serve deploys stderr:\n%s", done.GetStatus(), done.GetReason(), graphite, deploysProc.stderr)
	}
}

// TestSplitIssuePage: `serve dashboards` and `serve errortrack` in
// processes of their own. An event sent with sentry-go to errortrack is
// read by dashboards' issue page over errortrack's gRPC API, found in NATS.
func TestSplitIssuePage(t *testing.T) {
	natsURL := startNATSServer(t, natsServerBinary(t))
	procs, _, _ := startSplit(t, natsURL, createDatabase(t), "errortrack", "dashboards")
	_, etReady := splitProc(t, procs, "serve errortrack")
	dashProc, dashReady := splitProc(t, procs, "serve dashboards")

	out := shiploopCLI(t, "errors", "project", "create", "splitshop", "--server", etReady.GRPCAddr)
	// The process listens on a port chosen at start (--http-listen
	// 127.0.0.1:0), so it prints the project's key and id without a DSN:
	// the DSN's host is that of its ready line.
	m := regexp.MustCompile(`key ([0-9a-f]+), project (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no key and project id in:\n%s", out)
	}
	dsn := fmt.Sprintf("http://%s@%s/%s", m[1], strings.TrimPrefix(etReady.HTTPURL, "http://"), m[2])
	client, err := sentry.NewClient(sentry.ClientOptions{Dsn: dsn, Release: "splitshop@1.0.0", AttachStacktrace: true})
	if err != nil {
		t.Fatal(err)
	}
	hub := sentry.NewHub(client, sentry.NewScope())
	payOrder(hub, 7)
	if !hub.Flush(15 * time.Second) {
		t.Fatal("sentry-go did not flush")
	}
	issues := waitErrorIssues(t, errortrackv1.NewErrorServiceClient(dialInsecure(t, etReady.GRPCAddr)), "splitshop", "the payment issue",
		func(is []*errortrackv1.Issue) bool { return len(is) == 1 })
	id := issues[0].GetId()
	var status int
	var page []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("%s/errors/%d", dashReady.HTTPURL, id))
		if err != nil {
			t.Fatal(err)
		}
		page, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		if status == http.StatusOK && strings.Contains(string(page), "payOrder") && strings.Contains(string(page), "cannot be paid") {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Fatalf("dashboards' /errors/%d: %d, no frame payOrder:\n%s\nserve dashboards stderr:\n%s", id, status, page, dashProc.stderr)
}

// TestSplitEnvironmentForm: `serve dashboards` and `serve deploys` in
// processes of their own. The environment page's lock form, posted to
// dashboards, calls DeployService.Lock in the deploys process, found in
// NATS.
func TestSplitEnvironmentForm(t *testing.T) {
	natsURL := startNATSServer(t, natsServerBinary(t))
	procs, _, _ := startSplit(t, natsURL, createDatabase(t), "deploys", "dashboards")
	_, deploysReady := splitProc(t, procs, "serve deploys")
	dashProc, dashReady := splitProc(t, procs, "serve dashboards")

	const reason = "split maintenance"
	form := url.Values{"action": {"lock"}, "reason": {reason}}
	req, err := http.NewRequest(http.MethodPost, dashReady.HTTPURL+"/environments/acme/split-form/production", strings.NewReader(form.Encode()))
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
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "?done=") {
		t.Fatalf("lock form: %d, Location %q, %s\nserve dashboards stderr:\n%s", resp.StatusCode, loc, body, dashProc.stderr)
	}
	// The lock is the deploys process's: a second one is refused, naming it.
	cl := deploysv1.NewDeployServiceClient(dialInsecure(t, deploysReady.GRPCAddr))
	_, err = cl.Lock(context.Background(), &deploysv1.LockRequest{Repository: "acme/split-form", Environment: "production", Reason: "again", By: "test"})
	if err == nil || !strings.Contains(err.Error(), reason) {
		t.Fatalf("locking again after the form's lock: %v (want the form's lock, %q)", err, reason)
	}
}

// TestSplitTestsPage: `serve dashboards` and `serve testruns` in processes
// of their own. A build's test job reports a failing JUnit test to
// testruns; dashboards' /builds/{id}/tests reads it over TestRunService,
// found in NATS.
func TestSplitTestsPage(t *testing.T) {
	natsURL := startNATSServer(t, natsServerBinary(t))
	procs, httpAddr, grpcAddr := startSplit(t, natsURL, createDatabase(t), "testruns", "dashboards")
	dashProc, dashReady := splitProc(t, procs, "serve dashboards")
	repo := newRepo(t, map[string]string{".shiploop.yml": `steps:
  - name: build
    commands: ["true"]
test:
  steps:
    - name: unit
      commands:
        - mkdir -p reports
        - printf '<testsuite name="calc"><testcase classname="calc" name="TestAdd"/><testcase classname="calc" name="TestSplitSub"><failure message="2-1 != 3"/></testcase></testsuite>' > reports/TEST-calc.xml
  reports: {junit: ["reports/*.xml"]}
`})
	sha := repo.git("rev-parse", "HEAD")
	conn := dialInsecure(t, grpcAddr)
	secret := registerRepo(t, conn, "acme/split-tests", repo.dir)
	pushAll(t, httpAddr, []push{{repo: "acme/split-tests", secret: secret, ref: "refs/heads/main", sha: sha}}, nil)
	var build string
	for deadline := time.Now().Add(60 * time.Second); build == ""; time.Sleep(200 * time.Millisecond) {
		list, _ := buildsv1.NewBuildServiceClient(conn).ListBuilds(context.Background(), &buildsv1.ListBuildsRequest{Repository: "acme/split-tests"})
		if bs := list.GetBuilds(); len(bs) > 0 {
			build = bs[0].GetId()
		}
		if time.Now().After(deadline) {
			t.Fatal("no build within 60s")
		}
	}
	var status int
	var page []byte
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("%s/builds/%s/tests", dashReady.HTTPURL, build))
		if err != nil {
			t.Fatal(err)
		}
		page, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		if status == http.StatusOK && strings.Contains(string(page), "TestSplitSub") && strings.Contains(string(page), "2-1 != 3") {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Fatalf("dashboards' /builds/%s/tests: %d, no failing TestSplitSub:\n%s\nserve dashboards stderr:\n%s", build, status, page, dashProc.stderr)
}

// TestSplitRunbookForm: `serve dashboards` and `serve deploys` in
// processes of their own. The environment page lists the runbooks it reads
// from RunbookService.ListRunbooks in the deploys process, found in NATS;
// its form runs one (RunRunbook), and an agent runs it to success.
func TestSplitRunbookForm(t *testing.T) {
	natsURL := startNATSServer(t, natsServerBinary(t))
	procs, httpAddr, grpcAddr := startSplit(t, natsURL, createDatabase(t), "deploys", "dashboards")
	_, deploysReady := splitProc(t, procs, "serve deploys")
	dashProc, dashReady := splitProc(t, procs, "serve dashboards")
	repo := newRepo(t, map[string]string{".shiploop.yml": `steps:
  - {name: build, commands: ["true"]}
environments:
  - {name: staging, auto: true, steps: [{name: deploy, commands: [echo deployed]}]}
runbooks:
  - name: say
    environment: staging
    options: [{name: word, type: enum, values: [hello, bye], required: true}]
    steps: [{name: say, commands: ['echo "said $OPTION_WORD"']}]
`})
	conn := dialInsecure(t, grpcAddr)
	secret := registerRepo(t, conn, "acme/split-runbook", repo.dir)
	pushAll(t, httpAddr, []push{{repo: "acme/split-runbook", secret: secret, ref: "refs/heads/main", sha: repo.git("rev-parse", "HEAD")}}, nil)
	page := dashReady.HTTPURL + "/environments/acme/split-runbook/staging"
	var body []byte
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		resp, err := http.Get(page)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `id="runbook-say"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no runbook form on %s within 120 s:\n%s\nserve dashboards stderr:\n%s", page, body, dashProc.stderr)
		}
	}
	if !strings.Contains(string(body), `<select name="option.word" required><option>hello</option><option>bye</option></select>`) {
		t.Errorf("the form lacks the enum option's select:\n%s", body)
	}
	form := url.Values{"action": {"runbook"}, "runbook": {"say"}, "option.word": {"bye"}}
	req, err := http.NewRequest(http.MethodPost, page, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", dashReady.HTTPURL)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "done=anonymous+ran+runbook+say") {
		t.Fatalf("runbook form: %d, Location %q\nserve dashboards stderr:\n%s", resp.StatusCode, loc, dashProc.stderr)
	}
	rb := deploysv1.NewRunbookServiceClient(dialInsecure(t, deploysReady.GRPCAddr))
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		ls, err := rb.ListRunbookRuns(context.Background(), &deploysv1.ListRunbookRunsRequest{Repository: "acme/split-runbook"})
		if err != nil {
			t.Fatal(err)
		}
		if runs := ls.GetRuns(); len(runs) == 1 && runs[0].GetStatus() == "succeeded" {
			if runs[0].GetOptions()["word"] != "bye" || runs[0].GetBy() != "anonymous" {
				t.Errorf("run %v", runs[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the form's run did not succeed within 120 s: %v", ls.GetRuns())
		}
	}
}
