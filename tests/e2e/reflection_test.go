package e2e

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// reflectionClient learns services and messages from the server alone, as
// grpcurl does: nothing compiled in.
type reflectionClient struct {
	t      *testing.T
	stream reflectionpb.ServerReflection_ServerReflectionInfoClient
	files  map[string]*descriptorpb.FileDescriptorProto
}

func (r *reflectionClient) ask(req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
	r.t.Helper()
	if err := r.stream.Send(req); err != nil {
		r.t.Fatal(err)
	}
	resp, err := r.stream.Recv()
	if err != nil {
		r.t.Fatal(err)
	}
	if e := resp.GetErrorResponse(); e != nil {
		r.t.Fatalf("reflection: %s", e.GetErrorMessage())
	}
	return resp
}

func (r *reflectionClient) services() []string {
	resp := r.ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}})
	var out []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		out = append(out, s.GetName())
	}
	sort.Strings(out)
	return out
}

func (r *reflectionClient) load(symbol string) {
	resp := r.ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}})
	for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(raw, fd); err != nil {
			r.t.Fatal(err)
		}
		r.files[fd.GetName()] = fd
	}
}

func (r *reflectionClient) registry() *protoregistry.Files {
	r.t.Helper()
	set := &descriptorpb.FileDescriptorSet{}
	for _, fd := range r.files {
		set.File = append(set.File, fd)
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		r.t.Fatalf("descriptors from reflection: %v", err)
	}
	return files
}

// TestReflectionOneCallPerService lists the services over reflection and
// makes one read call to each shiploop service with messages built from the
// reflected descriptors.
func TestReflectionOneCallPerService(t *testing.T) {
	inst := startUp(t)
	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rc := &reflectionClient{t: t, stream: st, files: map[string]*descriptorpb.FileDescriptorProto{}}
	var ours []string
	for _, s := range rc.services() {
		if strings.HasPrefix(s, "shiploop.") {
			ours = append(ours, s)
			rc.load(s)
		}
	}
	for _, want := range []string{"BuildService", "DeployService", "GateService", "TestRunService", "ErrorService", "MetricsService", "DashboardService", "FlagService", "TokenService"} {
		if !strings.Contains(strings.Join(ours, ","), "."+want) {
			t.Errorf("reflection does not list %s; it lists %v", want, ours)
		}
	}
	files := rc.registry()
	for _, name := range ours {
		d, err := files.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			t.Fatal(err)
		}
		sd := d.(protoreflect.ServiceDescriptor)
		// A read: List* first, then other read-only verbs.
		var m protoreflect.MethodDescriptor
		for _, verb := range []string{"List", "Find", "Overview", "Dora", "Query", "Get"} {
			for i := 0; i < sd.Methods().Len() && m == nil; i++ {
				md := sd.Methods().Get(i)
				if strings.HasPrefix(string(md.Name()), verb) && !md.IsStreamingClient() && !md.IsStreamingServer() {
					m = md
				}
			}
		}
		if m == nil {
			t.Errorf("%s has no unary read method", name)
			continue
		}
		req, resp := dynamicpb.NewMessage(m.Input()), dynamicpb.NewMessage(m.Output())
		full := "/" + string(sd.FullName()) + "/" + string(m.Name())
		err = conn.Invoke(ctx, full, req, resp)
		switch status.Code(err) {
		case codes.OK, codes.InvalidArgument, codes.NotFound: // routed and answered (an empty request may lack a required field or name nothing)
			t.Logf("%s: %v", full, status.Code(err))
		default:
			t.Errorf("%s: %v", full, err)
		}
	}
}
