package main

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
)

// scheduleServer plays builds with one schedule, acme/web nightly.
type scheduleServer struct {
	buildsv1.UnimplementedBuildServiceServer
	paused bool
}

func (s *scheduleServer) sched() *buildsv1.Schedule {
	sc := &buildsv1.Schedule{Repository: "acme/web", Name: "nightly", Cron: "0 3 * * *", Timezone: "Europe/Paris", Paused: s.paused,
		LastRun: timestamppb.New(time.Date(2026, 1, 2, 2, 0, 0, 0, time.UTC))}
	if !s.paused {
		sc.NextRun = timestamppb.New(time.Date(2026, 1, 3, 2, 0, 0, 0, time.UTC))
	}
	return sc
}

func (s *scheduleServer) ListSchedules(_ context.Context, req *buildsv1.ListSchedulesRequest) (*buildsv1.ListSchedulesResponse, error) {
	if req.GetRepository() != "" && req.GetRepository() != "acme/web" {
		return &buildsv1.ListSchedulesResponse{}, nil
	}
	return &buildsv1.ListSchedulesResponse{Schedules: []*buildsv1.Schedule{s.sched()}}, nil
}

func (s *scheduleServer) SetSchedulePaused(_ context.Context, req *buildsv1.SetSchedulePausedRequest) (*buildsv1.SetSchedulePausedResponse, error) {
	if req.GetRepository() != "acme/web" || req.GetName() != "nightly" {
		return nil, status.Error(codes.NotFound, "schedule not found")
	}
	s.paused = req.GetPaused()
	return &buildsv1.SetSchedulePausedResponse{Schedule: s.sched()}, nil
}

func TestSchedulesCLI(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := &scheduleServer{}
	buildsv1.RegisterBuildServiceServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	addr := lis.Addr().String()

	code, out, errOut := runCLI(t, "schedules", "--server", addr, "ls")
	if code != 0 || !strings.Contains(out, "acme/web") || !strings.Contains(out, "2026-01-03 03:00 CET") || !strings.Contains(out, "active") {
		t.Errorf("ls: exit %d, %q %q", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "schedules", "--server", addr, "--json", "ls", "acme/web"); code != 0 || !strings.Contains(out, `"nightly"`) {
		t.Errorf("ls --json: exit %d, %q", code, out)
	}
	if code, out, _ := runCLI(t, "schedules", "--server", addr, "pause", "acme/web", "nightly"); code != 0 || out != "paused nightly of acme/web\n" || !fake.paused {
		t.Errorf("pause: exit %d, %q", code, out)
	}
	if code, out, _ := runCLI(t, "schedules", "--server", addr, "ls", "acme/web"); code != 0 || !strings.Contains(out, "paused") {
		t.Errorf("ls paused: exit %d, %q", code, out)
	}
	if code, out, _ := runCLI(t, "schedules", "--server", addr, "resume", "acme/web", "nightly"); code != 0 || !strings.Contains(out, "resumed nightly of acme/web; next run 2026-01-03 03:00 CET") || fake.paused {
		t.Errorf("resume: exit %d, %q", code, out)
	}
	if code, _, errOut := runCLI(t, "schedules", "--server", addr, "pause", "acme/web", "nope"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("pause unknown: exit %d, %q", code, errOut)
	}
	if code, _, _ := runCLI(t, "schedules", "--server", addr, "pause", "acme/web"); code == 0 {
		t.Error("pause without NAME succeeded")
	}
}

func TestLintSchedules(t *testing.T) {
	f := t.TempDir() + "/s.yml"
	if err := os.WriteFile(f, []byte("schedules:\n  - {name: nightly, cron: '0 3 * * *', timezone: Europe/Paris}\n  - {name: weekly, cron: '@weekly', branch: release}\nsteps: {a: {commands: make}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "lint", f)
	if code != 0 || !strings.Contains(out, ", 2 schedules (nightly: 0 3 * * * Europe/Paris; weekly: @weekly UTC on release)\n") {
		t.Errorf("lint: exit %d, %q", code, out)
	}
	if err := os.WriteFile(f, []byte("schedules:\n  - {name: nightly, cron: '0 25 * * *'}\nsteps: {a: {commands: make}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCLI(t, "lint", f); code == 0 || !strings.Contains(out, `s.yml:2:27: schedules[0].cron: invalid cron expression: hour "25"`) {
		t.Errorf("lint bad cron: exit %d, %q", code, out)
	}
}
