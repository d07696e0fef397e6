package dashboards

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// fakeErrortrack is errortrack's API with issue 7 and two events.
type fakeErrortrack struct {
	errortrackv1.UnimplementedErrorServiceServer
	issue  *errortrackv1.Issue
	events []*errortrackv1.ErrorEvent
}

func (f *fakeErrortrack) GetIssue(_ context.Context, req *errortrackv1.GetIssueRequest) (*errortrackv1.GetIssueResponse, error) {
	if req.GetId() != f.issue.GetId() {
		return nil, status.Error(codes.NotFound, "no such issue")
	}
	return &errortrackv1.GetIssueResponse{Issue: f.issue}, nil
}

func (f *fakeErrortrack) ListIssueEvents(context.Context, *errortrackv1.ListIssueEventsRequest) (*errortrackv1.ListIssueEventsResponse, error) {
	return &errortrackv1.ListIssueEventsResponse{Events: f.events}, nil
}

func (f *fakeErrortrack) GetEvent(_ context.Context, req *errortrackv1.GetEventRequest) (*errortrackv1.GetEventResponse, error) {
	for _, e := range f.events {
		if e.GetEventId() == req.GetEventId() {
			return &errortrackv1.GetEventResponse{Event: e, Issue: f.issue}, nil
		}
	}
	return nil, status.Error(codes.NotFound, "no such event")
}

// TestErrorIssuePage: /errors/{issue} shows what Sentry's issue page does
// (title, culprit, counts, releases, suspect commits, the latest event's
// exception chain with in-app frames and context lines, tags, user,
// request without credentials, breadcrumbs), ?frames=all adds system
// frames, ?event= picks an event; the /errors list links to it; without
// errortrack the page shows what the read model holds; no inline script.
func TestErrorIssuePage(t *testing.T) {
	storetest.Engines(t, "dashboards", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db, time.Time{})
		at := timestamppb.New(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
		ev := func(id, value string) *errortrackv1.ErrorEvent {
			return &errortrackv1.ErrorEvent{EventId: id, IssueId: 7, Title: "ValueError: " + value, Release: "1.1.0", Environment: "production", Timestamp: at,
				Detail: &errortrackv1.EventDetail{
					Exceptions: []*errortrackv1.ExceptionValue{
						{Type: "KeyError", Value: "'sku'", Frames: []*errortrackv1.StackFrame{{Filename: "app/cart.py", Function: "lookup", Lineno: 10, InApp: true, ContextLine: "return items['sku']"}}},
						{Type: "ValueError", Value: value, Mechanism: "django", Unhandled: true, Frames: []*errortrackv1.StackFrame{
							{Filename: "django/core/handlers.py", Function: "inner", Lineno: 55},
							{Filename: "app/views.py", Function: "checkout", Lineno: 27, InApp: true, PreContext: []string{"def checkout(request):"}, ContextLine: "total = cart.total()", PostContext: []string{"return total"}},
						}},
					},
					Tags:        []*errortrackv1.KeyValue{{Key: "region", Value: "eu"}},
					User:        &errortrackv1.EventUser{Id: "42", Email: "ann@example.com"},
					Request:     &errortrackv1.EventRequest{Method: "POST", Url: "https://shop.example/api/cart", Headers: []*errortrackv1.KeyValue{{Key: "Content-Type", Value: "application/json"}}},
					Breadcrumbs: []*errortrackv1.Breadcrumb{{Timestamp: at, Category: "http", Level: "info", Message: "GET /api/cart"}},
				}}
		}
		f := &fakeErrortrack{
			issue: &errortrackv1.Issue{Id: 7, ProjectId: 1, Project: "shop", Title: "ValueError: bad cart", Culprit: "app.views in checkout", Level: "error",
				Status: errortrackv1.IssueStatus_ISSUE_STATUS_UNRESOLVED, TimesSeen: 3, Users: 2, FirstSeen: at, LastSeen: at, FirstRelease: "1.1.0", LastRelease: "1.1.0",
				Releases:       []*errortrackv1.IssueRelease{{Release: "1.1.0", Environment: "production", TimesSeen: 3, FirstSeen: at, LastSeen: at}},
				SuspectCommits: []*errortrackv1.SuspectCommit{{Sha: "b1c2d3e4f5", Message: "touch views", Author: "Bo <bo@example.com>", MatchedFiles: []string{"app/views.py"}}}},
			events: []*errortrackv1.ErrorEvent{ev("0123456789abcdef0123456789abcdef", "bad cart"), ev("fedcba9876543210fedcba9876543210", "older cart")},
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		errortrackv1.RegisterErrorServiceServer(srv, f)
		go func() { _ = srv.Serve(lis) }()
		t.Cleanup(srv.Stop)
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })

		// The /errors list links the issue the bus told about.
		h.publish(t, "errortrack.issue.opened", repo, "", at.AsTime(), &errortrackv1.IssueOpened{
			Issue: &errortrackv1.IssueRef{IssueId: 7, Project: "shop", Title: "ValueError: bad cart", Level: "error"}, Release: "1.1.0", Environment: "production"})
		until(t, "the issue on /errors", func() bool {
			_, _, body := h.get(t, "/errors")
			return strings.Contains(body, `<a href="/errors/7">ValueError: bad cart</a>`)
		})
		// Without errortrack: the read model's record, and why no stack.
		code, _, body := h.get(t, "/errors/7")
		if code != 200 || !strings.Contains(body, "ValueError: bad cart") || !strings.Contains(body, "does not reach") {
			t.Fatalf("/errors/7 without errortrack: %d\n%s", code, body)
		}

		h.svc.cfg.Errors = errortrackv1.NewErrorServiceClient(conn)
		code, _, body = h.get(t, "/errors/7")
		if code != 200 {
			t.Fatalf("/errors/7: %d\n%s", code, body)
		}
		for _, want := range []string{
			`<h1 class="issue-title">ValueError: bad cart</h1>`,
			`<code>app.views in checkout</code>`, `>unresolved<`,
			`<div class="v">3</div>`, `<div class="v">2</div>`,
			`<td><code>b1c2d3e</code></td><td>touch views</td><td>Bo &lt;bo@example.com&gt;</td><td class="muted">app/views.py</td>`,
			`<h3><code>ValueError</code>: bad cart <span class="muted">(django, unhandled)</span></h3>`,
			`1 system frame(s) not in app`,
			`<code>checkout</code> in <code>app/views.py:27</code>`,
			`<span class="line">     26 | def checkout(request):</span>`,
			`<span class="line current">&gt;    27 | total = cart.total()</span>`,
			`<p class="muted">caused by</p>`, `<code>KeyError</code>: &#39;sku&#39;`,
			`<tr><th>region</th><td>eu</td></tr>`, `<tr><th>email</th><td>ann@example.com</td></tr>`,
			`<code>POST https://shop.example/api/cart</code>`, `<tr><th>Content-Type</th><td>application/json</td></tr>`,
			`<td>http</td><td>info</td><td>GET /api/cart</td>`,
			`<a href="/errors/7?event=fedcba9876543210fedcba9876543210">`,
			`<a href="?event=0123456789abcdef0123456789abcdef&amp;frames=all">Show all frames</a>`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/errors/7 lacks %s", want)
			}
		}
		if strings.Contains(body, "handlers.py") || strings.Contains(body, "<script>") || strings.Contains(body, "onclick") {
			t.Errorf("/errors/7 shows a system frame or an inline script:\n%s", body)
		}
		if _, _, all := h.get(t, "/errors/7?frames=all"); !strings.Contains(all, `<code>inner</code> in <code>django/core/handlers.py:55</code>`) {
			t.Errorf("?frames=all lacks the system frame")
		}
		if _, _, older := h.get(t, "/errors/7?event=fedcba9876543210fedcba9876543210"); !strings.Contains(older, `<code>ValueError</code>: older cart`) {
			t.Errorf("?event= does not show that event")
		}
		if code, _, _ := h.get(t, "/errors/8"); code != 404 {
			t.Errorf("/errors/8: %d, want 404", code)
		}
		if code, _, _ := h.get(t, "/errors/7?event=00000000000000000000000000000009"); code != 404 {
			t.Errorf("unknown event: %d, want 404", code)
		}
		if code, _, _ := h.get(t, "/errors/x"); code != 400 {
			t.Errorf("/errors/x: %d, want 400", code)
		}
	})
}
