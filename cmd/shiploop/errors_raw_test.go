package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// rawFakeErrors answers GetEvent with the minified frame when asked raw.
type rawFakeErrors struct {
	fakeErrors
	raw *errortrackv1.ErrorEvent
}

func (f *rawFakeErrors) GetEvent(_ context.Context, req *errortrackv1.GetEventRequest) (*errortrackv1.GetEventResponse, error) {
	if req.GetRaw() {
		return &errortrackv1.GetEventResponse{Event: f.raw, Issue: f.issue}, nil
	}
	return &errortrackv1.GetEventResponse{Event: f.event, Issue: f.issue}, nil
}

// TestErrorsShowRaw: errors show and errors event print the symbolicated
// JavaScript frame; --raw asks for the frames as sent.
func TestErrorsShowRaw(t *testing.T) {
	at := timestamppb.New(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	ev := func(f *errortrackv1.StackFrame) *errortrackv1.ErrorEvent {
		return &errortrackv1.ErrorEvent{EventId: "0123456789abcdef0123456789abcdef", IssueId: 7, Title: "Error: too expensive", Level: "error", Release: "web@1.0.0",
			Platform: "javascript", Timestamp: at, ReceivedAt: at,
			Detail: &errortrackv1.EventDetail{Exceptions: []*errortrackv1.ExceptionValue{{Type: "Error", Value: "too expensive", Frames: []*errortrackv1.StackFrame{f}}}}}
	}
	f := &rawFakeErrors{
		fakeErrors: fakeErrors{issue: &errortrackv1.Issue{Id: 7, ProjectId: 1, Project: "web", Title: "Error: too expensive", Level: "error", FirstSeen: at, LastSeen: at},
			event: ev(&errortrackv1.StackFrame{Filename: "/src/cart.js", Function: "computeTotal", Lineno: 6, Colno: 20, InApp: true, ContextLine: `  if (total > 100) throw new Error("too expensive");`})},
		raw: ev(&errortrackv1.StackFrame{Filename: "https://shop.example/dist/app.min.js", Function: "a", Lineno: 1, Colno: 61, InApp: true}),
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
	for _, args := range [][]string{{"show", "7"}, {"event", "0123456789abcdef0123456789abcdef"}} {
		out := runErrors(t, addr, args...)
		if !strings.Contains(out, "computeTotal") || !strings.Contains(out, "/src/cart.js") || strings.Contains(out, "app.min.js") {
			t.Errorf("errors %v:\n%s", args, out)
		}
		out = runErrors(t, addr, append(args, "--raw")...)
		if !strings.Contains(out, "app.min.js") || strings.Contains(out, "computeTotal") {
			t.Errorf("errors %v --raw:\n%s", args, out)
		}
	}
}
