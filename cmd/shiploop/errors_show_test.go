package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// fakeErrors answers the errors CLI with one issue, its event, a release.
type fakeErrors struct {
	errortrackv1.UnimplementedErrorServiceServer
	event *errortrackv1.ErrorEvent
	issue *errortrackv1.Issue
}

func (f *fakeErrors) GetIssue(context.Context, *errortrackv1.GetIssueRequest) (*errortrackv1.GetIssueResponse, error) {
	return &errortrackv1.GetIssueResponse{Issue: f.issue}, nil
}

func (f *fakeErrors) ListIssueEvents(context.Context, *errortrackv1.ListIssueEventsRequest) (*errortrackv1.ListIssueEventsResponse, error) {
	return &errortrackv1.ListIssueEventsResponse{Events: []*errortrackv1.ErrorEvent{f.event}}, nil
}

func (f *fakeErrors) GetEvent(_ context.Context, req *errortrackv1.GetEventRequest) (*errortrackv1.GetEventResponse, error) {
	return &errortrackv1.GetEventResponse{Event: f.event, Issue: f.issue}, nil
}

func (f *fakeErrors) ListReleases(context.Context, *errortrackv1.ListReleasesRequest) (*errortrackv1.ListReleasesResponse, error) {
	tn := []*errortrackv1.TransactionSummary{{Release: "1.1.0", Environment: "production", Name: "POST /api/cart", Count: 1, P50Ms: 120, P95Ms: 120}}
	return &errortrackv1.ListReleasesResponse{Releases: []*errortrackv1.Release{{Version: "1.1.0", Events: 11, Errors: 11, Transactions: 1, Sessions: 4,
		Health: []*errortrackv1.ReleaseHealth{
			{Environment: "production", Events: 11, Errors: 11, Transactions: 1, CrashFreeRate: 1},
			{Environment: "staging", Sessions: 4, Crashed: 1, CrashFreeRate: 0.75},
		}, TransactionNames: tn}}}, nil
}

func (f *fakeErrors) ListTransactions(_ context.Context, req *errortrackv1.ListTransactionsRequest) (*errortrackv1.ListTransactionsResponse, error) {
	return &errortrackv1.ListTransactionsResponse{Transactions: []*errortrackv1.TransactionSummary{
		{Release: req.GetRelease(), Environment: "production", Name: "GET /", Count: 20, P50Ms: 12.5, P95Ms: 340}}}, nil
}

func runErrors(t *testing.T, addr string, args ...string) string {
	t.Helper()
	var buf bytes.Buffer
	c := errorsCommand()
	c.stdout = &buf
	if err := c.parse(append([]string{"--server", addr}, args...)); err != nil {
		t.Fatal(err)
	}
	if err := c.run(c, c.args); err != nil {
		t.Fatalf("errors %v: %v", args, err)
	}
	return buf.String()
}

// TestErrorsShowReadable: errors show and errors event print the exception
// chain with in-app frames and their context lines (current line marked),
// tags, user, request headers as the server gave them, breadcrumbs and the
// suspect commits; --all-frames adds system frames; releases keep errors,
// transactions and sessions apart and list transactions with p50/p95.
func TestErrorsShowReadable(t *testing.T) {
	at := timestamppb.New(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	f := &fakeErrors{
		issue: &errortrackv1.Issue{Id: 7, Project: "shop", Title: "ValueError: bad cart", Culprit: "app.views in checkout", Level: "error",
			Status: errortrackv1.IssueStatus_ISSUE_STATUS_UNRESOLVED, TimesSeen: 3, Users: 2, FirstSeen: at, LastSeen: at, FirstRelease: "1.1.0", LastRelease: "1.1.0",
			Releases:       []*errortrackv1.IssueRelease{{Release: "1.1.0", Environment: "production", TimesSeen: 3, FirstSeen: at, LastSeen: at}},
			SuspectCommits: []*errortrackv1.SuspectCommit{{Sha: "b1c2d3e4f5", Message: "touch views\n\nbody", Author: "Bo <bo@example.com>", MatchedFiles: []string{"app/views.py"}}}},
		event: &errortrackv1.ErrorEvent{EventId: "0123456789abcdef0123456789abcdef", IssueId: 7, Title: "ValueError: bad cart", Level: "error", Release: "1.1.0",
			Environment: "production", Platform: "python", Timestamp: at, ReceivedAt: at,
			Detail: &errortrackv1.EventDetail{
				Exceptions: []*errortrackv1.ExceptionValue{
					{Type: "KeyError", Value: "'sku'", Frames: []*errortrackv1.StackFrame{{Filename: "app/cart.py", Function: "lookup", Lineno: 10, InApp: true, ContextLine: "    return items['sku']"}}},
					{Type: "ValueError", Value: "bad cart", Mechanism: "django", Unhandled: true, Frames: []*errortrackv1.StackFrame{
						{Filename: "django/core/handlers.py", Function: "inner", Lineno: 55},
						{Filename: "app/views.py", Function: "checkout", Lineno: 27, InApp: true, PreContext: []string{"def checkout(request):"}, ContextLine: "    total = cart.total()", PostContext: []string{"    return total"}},
					}},
				},
				Tags:        []*errortrackv1.KeyValue{{Key: "region", Value: "eu"}},
				User:        &errortrackv1.EventUser{Id: "42", Email: "ann@example.com"},
				Request:     &errortrackv1.EventRequest{Method: "POST", Url: "https://shop.example/api/cart", Headers: []*errortrackv1.KeyValue{{Key: "Content-Type", Value: "application/json"}}},
				Breadcrumbs: []*errortrackv1.Breadcrumb{{Timestamp: at, Category: "http", Level: "info", Message: "GET /api/cart"}},
			}},
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	errortrackv1.RegisterErrorServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	addr := lis.Addr().String()

	out := runErrors(t, addr, "show", "7")
	for _, want := range []string{
		"issue 7  ValueError: bad cart  [unresolved]",
		"culprit     app.views in checkout",
		"events      3   users 2",
		"b1c2d3e  touch views  (Bo <bo@example.com>)  touched app/views.py",
		"ValueError: bad cart  (mechanism django, unhandled)",
		"... 1 system frame(s) (--all-frames shows them)",
		"at checkout in app/views.py:27",
		"        26 | def checkout(request):",
		"      >    27 |     total = cart.total()",
		"        28 |     return total",
		"caused by\n  KeyError: 'sku'",
		"region  eu",
		"email  ann@example.com",
		"request     POST https://shop.example/api/cart",
		"Content-Type  application/json",
		"10:00:00.000  http  info  GET /api/cart",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("errors show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "handlers.py") {
		t.Errorf("system frame shown without --all-frames:\n%s", out)
	}
	if out := runErrors(t, addr, "show", "7", "--all-frames"); !strings.Contains(out, "at inner in django/core/handlers.py:55") {
		t.Errorf("--all-frames lacks the system frame:\n%s", out)
	}
	out = runErrors(t, addr, "event", "0123456789abcdef0123456789abcdef")
	if !strings.Contains(out, "event 0123456789abcdef0123456789abcdef  ValueError: bad cart") || !strings.Contains(out, "issue       7  ValueError: bad cart") ||
		!strings.Contains(out, ">    27 |     total = cart.total()") {
		t.Errorf("errors event:\n%s", out)
	}
	out = runErrors(t, addr, "releases", "shop")
	for _, want := range []string{
		"RELEASE  ENVIRONMENT  EVENTS  ERRORS  TRANSACTIONS  SESSIONS  CRASHED  CRASH-FREE",
		"1.1.0    production   11      11      1             0         0        -",
		"1.1.0    staging      0       0       0             4         1        75.00%",
		"1.1.0    production   POST /api/cart  1      120ms  120ms",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("errors releases lacks %q:\n%s", want, out)
		}
	}
	if out := runErrors(t, addr, "transactions", "shop", "--release", "1.1.0"); !strings.Contains(out, "1.1.0    production   GET /        20     12.5ms  340ms") {
		t.Errorf("errors transactions:\n%s", out)
	}
}
