package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	gatesv1 "github.com/shiploop/shiploop/proto/shiploop/gates/v1"
	testrunsv1 "github.com/shiploop/shiploop/proto/shiploop/testruns/v1"
)

// refServer plays builds, testruns and gates: it knows one build, acme/web#7
// with id b-7 and chain c-7, and records the build ids the other calls got.
type refServer struct {
	buildsv1.UnimplementedBuildServiceServer
	testrunsv1.UnimplementedTestRunServiceServer
	gatesv1.UnimplementedGateServiceServer
	mu  sync.Mutex
	got []string
}

func (s *refServer) record(call, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, call+" "+id)
}

func (s *refServer) GetBuild(_ context.Context, req *buildsv1.GetBuildRequest) (*buildsv1.GetBuildResponse, error) {
	if (req.GetRepository() == "acme/web" && req.GetNumber() == 7) || req.GetId() == "b-7" || req.GetId() == "c-7" {
		return &buildsv1.GetBuildResponse{Build: &buildsv1.Build{Id: "b-7", Repository: "acme/web", Number: 7, ChainId: "c-7", JobIds: []string{"j-7"}}}, nil
	}
	return nil, status.Error(codes.NotFound, "build not found")
}

func (s *refServer) RetryBuild(_ context.Context, req *buildsv1.RetryBuildRequest) (*buildsv1.RetryBuildResponse, error) {
	s.record("retry", req.GetId())
	return &buildsv1.RetryBuildResponse{EventId: "e-1"}, nil
}

func (s *refServer) CancelBuild(_ context.Context, req *buildsv1.CancelBuildRequest) (*buildsv1.CancelBuildResponse, error) {
	s.record("cancel", req.GetId())
	return &buildsv1.CancelBuildResponse{Canceled: true}, nil
}

func (s *refServer) GetTestRun(_ context.Context, req *testrunsv1.GetTestRunRequest) (*testrunsv1.GetTestRunResponse, error) {
	s.record("tests", req.GetBuildId())
	return &testrunsv1.GetTestRunResponse{Run: &testrunsv1.TestRun{Id: "r-1", BuildId: req.GetBuildId()}}, nil
}

func (s *refServer) GetEvaluation(_ context.Context, req *gatesv1.GetEvaluationRequest) (*gatesv1.GetEvaluationResponse, error) {
	if req.GetBuildId() != "" {
		s.record("gate", req.GetBuildId())
	} else {
		s.record("gate", fmt.Sprintf("%s#%d", req.GetRepository(), req.GetNumber()))
	}
	return &gatesv1.GetEvaluationResponse{Evaluation: &gatesv1.Evaluation{}}, nil
}

// TestBuildReferencesEverywhere: every command that names a build takes a
// build id, REPO#N or a chain id, and sends the build's id on (gate show
// sends REPO#N as repository and number, which gates resolves itself); a
// REPO#N that does not exist is an error, a malformed one a usage error.
func TestBuildReferencesEverywhere(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := &refServer{}
	buildsv1.RegisterBuildServiceServer(srv, fake)
	testrunsv1.RegisterTestRunServiceServer(srv, fake)
	gatesv1.RegisterGateServiceServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	addr := lis.Addr().String()

	for _, ref := range []string{"acme/web#7", "b-7", "c-7"} {
		fake.got = nil
		for _, args := range [][]string{
			{"tests", "show", "--build", ref, "--server", addr},
			{"build", "--server", addr, "retry", ref},
			{"build", "--server", addr, "cancel", ref},
			{"gate", "--server", addr, "show", ref},
		} {
			if code, _, errOut := runCLI(t, args...); code != 0 {
				t.Errorf("%v: exit %d: %s", args, code, errOut)
			}
		}
		want := "tests b-7,retry b-7,cancel b-7,gate b-7"
		if ref == "acme/web#7" {
			want = "tests b-7,retry b-7,cancel b-7,gate acme/web#7"
		}
		if got := strings.Join(fake.got, ","); got != want {
			t.Errorf("%s: calls %s, want %s", ref, got, want)
		}
		if code, out, errOut := runCLI(t, "builds", "--server", addr, "get", ref); code != 0 || !strings.Contains(out, "build acme/web#7") {
			t.Errorf("builds get %s: exit %d, %q %q", ref, code, out, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "build", "--server", addr, "retry", "acme/web#8"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("retry of a missing REPO#N: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "tests", "show", "--build", "acme/web#x", "--server", addr); code != 2 || !strings.Contains(errOut, "REPOSITORY#NUMBER") {
		t.Errorf("malformed REPO#N: exit %d, %q", code, errOut)
	}
}
