package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestOpsEndpointsUnderToken holds what docs/security.md says of the
// operations endpoints: with `up --token`, /metrics, /livez, /readyz and
// /healthz answer without a token (Prometheus and probes send none), while
// a page does not; and after a build of a repository, neither /metrics nor
// /readyz names the repository or the commit.
func TestOpsEndpointsUnderToken(t *testing.T) {
	const admin = "ops-admin-token-5c1e"
	inst := startUp(t, "--token", admin)
	repo := newRepo(t, map[string]string{".shiploop.yml": goodConfig, "src/app.txt": "v1\n"})
	sha := repo.git("rev-parse", "HEAD")
	reg, err := inst.client.RegisterRepository(bearerCtx(admin), &buildsv1.RegisterRepositoryRequest{Name: "acme/private-name", CloneUrl: repo.dir, DefaultBranch: "main"})
	if err != nil {
		t.Fatal(err)
	}
	inst.push(t, "acme/private-name", reg.GetWebhookSecret(), "refs/heads/main", zero, sha)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := inst.client.ListBuilds(bearerCtx(admin), &buildsv1.ListBuildsRequest{Repository: "acme/private-name"})
		if err == nil && len(resp.GetBuilds()) > 0 && resp.GetBuilds()[0].GetStatus() == eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful build in 60s: %v %v", resp, err)
		}
	}
	get := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, inst.HTTPURL+path, nil)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/metrics", "/livez", "/readyz", "/healthz"} {
		code, body := get(p)
		if code != http.StatusOK && !(p == "/readyz" && code == http.StatusServiceUnavailable) {
			t.Errorf("GET %s without a token: %d, want it open", p, code)
		}
		if strings.Contains(body, "private-name") || strings.Contains(body, sha[:12]) {
			t.Errorf("GET %s without a token shows the repository or the commit", p)
		}
	}
	if code, _ := get("/"); code == http.StatusOK {
		t.Errorf("GET / without a token: %d, want it refused", code)
	}
}
