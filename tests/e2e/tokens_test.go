package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
)

// bearerCtx is a context whose gRPC calls carry token.
func bearerCtx(token string) context.Context {
	if token == "" {
		return context.Background()
	}
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// cli runs the shiploop binary and returns stdout, failing on error.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("shiploop %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

func TestTokenScopes(t *testing.T) {
	const admin = "e2e-admin"
	inst := startUp(t, "--token", admin)
	create := func(name, scope string) string {
		var resp struct{ Secret string }
		out := cli(t, "token", "create", "--server", inst.GRPCAddr, "--token", admin, "--scope", scope, "--json", name)
		if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Secret == "" {
			t.Fatalf("token create: %q %v", out, err)
		}
		return resp.Secret
	}
	ro, rw := create("grafana", "read"), create("ci", "write")
	if out := cli(t, "token", "ls", "--server", inst.GRPCAddr, "--token", admin); !strings.Contains(out, "grafana") || !strings.Contains(out, "ci") || strings.Contains(out, ro) {
		t.Fatalf("token ls:\n%s", out)
	}

	repo := newRepo(t, map[string]string{".shiploop.yml": goodConfig})
	reg := &buildsv1.RegisterRepositoryRequest{Name: "acme/tok", CloneUrl: repo.dir, DefaultBranch: "main"}
	for _, c := range []struct {
		token string
		want  codes.Code
	}{{"", codes.Unauthenticated}, {"slp_wrong", codes.Unauthenticated}, {ro, codes.PermissionDenied}} {
		if _, err := inst.client.RegisterRepository(bearerCtx(c.token), reg); status.Code(err) != c.want {
			t.Fatalf("RegisterRepository with %.8q: %v, want %v", c.token, err, c.want)
		}
	}
	// Refused calls left no trace.
	list, err := inst.client.ListRepositories(bearerCtx(ro), &buildsv1.ListRepositoriesRequest{})
	if err != nil {
		t.Fatalf("ListRepositories with a read token: %v", err)
	}
	if len(list.GetRepositories()) != 0 {
		t.Fatalf("refused calls registered %v", list.GetRepositories())
	}
	if _, err := inst.client.RegisterRepository(bearerCtx(rw), reg); err != nil {
		t.Fatalf("RegisterRepository with a write token: %v", err)
	}

	// Mutating HTTP routes use the same scopes.
	req, _ := http.NewRequest(http.MethodPost, inst.HTTPURL+"/cdevents", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+ro)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST /cdevents with a read token: %d, want 403", resp.StatusCode)
	}

	// Every other mutating route too (a Graphite event here); reads stay open.
	for tok, want := range map[string]int{"": 401, ro: 403, rw: 200} {
		req, _ := http.NewRequest(http.MethodPost, inst.HTTPURL+"/graphite/events", strings.NewReader(`{"what":"deploy","tags":["e2e"]}`))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST /graphite/events with %.8q: %d, want %d", tok, resp.StatusCode, want)
		}
	}
	if resp, err := http.Get(inst.HTTPURL + "/graphite/events"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /graphite/events without a token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Token management needs admin; a revoked token stops working.
	if err := exec.Command(binary, "token", "ls", "--server", inst.GRPCAddr, "--token", rw).Run(); err == nil {
		t.Fatal("token ls with a write token succeeded")
	}
	cli(t, "token", "revoke", "--server", inst.GRPCAddr, "--token", admin, "grafana")
	if _, err := inst.client.ListRepositories(bearerCtx(ro), &buildsv1.ListRepositoriesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked token: %v, want Unauthenticated", err)
	}
}
