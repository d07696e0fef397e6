package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestWebUIToken: with `up --token` the web UI, its streams and artifact
// downloads need a read-scope token (bearer or the /login cookie), the
// same rule as gRPC; badges stay public; every response carries the
// security headers.
func TestWebUIToken(t *testing.T) {
	const admin = "e2e-web-admin"
	inst := startUp(t, "--token", admin)
	var created struct{ Secret string }
	out := cli(t, "token", "create", "--server", inst.GRPCAddr, "--token", admin, "--scope", "read", "--json", "viewer")
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Secret == "" {
		t.Fatalf("token create: %q %v", out, err)
	}
	ro := created.Secret

	// A build with an artifact, registered and read with the admin token.
	repo := newRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: package\n    commands: [mkdir -p dist, printf 'app-binary' > dist/app.bin]\n    artifacts: [\"dist/**\"]\n"})
	reg, err := inst.client.RegisterRepository(bearerCtx(admin), &buildsv1.RegisterRepositoryRequest{Name: "acme/web", CloneUrl: repo.dir, DefaultBranch: "main"})
	if err != nil {
		t.Fatal(err)
	}
	inst.push(t, "acme/web", reg.GetWebhookSecret(), "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))
	var build *buildsv1.Build
	deadline := time.Now().Add(60 * time.Second)
	for build == nil && time.Now().Before(deadline) {
		resp, err := inst.client.ListBuilds(bearerCtx(ro), &buildsv1.ListBuildsRequest{Repository: "acme/web"})
		if err != nil {
			t.Fatal(err)
		}
		if bs := resp.GetBuilds(); len(bs) > 0 && bs[0].GetStatus() == eventsv1.BuildStatus_BUILD_STATUS_SUCCESS && len(bs[0].GetArtifacts()) > 0 {
			build = bs[0]
		}
		time.Sleep(200 * time.Millisecond)
	}
	if build == nil {
		t.Fatal("no successful build with an artifact in 60s")
	}
	artifact := "/builds/" + build.GetId() + "/artifacts/dist/app.bin"

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(c *http.Client, path, token, accept string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", inst.HTTPURL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			return resp, ""
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	for _, p := range []string{"/", "/changes/" + build.GetChainId(), "/environments", "/errors", "/dora", artifact} {
		if resp, _ := get(noRedirect, p, "", "text/html"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=") {
			t.Errorf("browser without a token, %s: %d %q", p, resp.StatusCode, resp.Header.Get("Location"))
		}
		if resp, _ := get(noRedirect, p, "", ""); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("client without a token, %s: %d", p, resp.StatusCode)
		}
		for _, tok := range []string{admin, ro} {
			if resp, body := get(noRedirect, p, tok, "text/html"); resp.StatusCode != 200 {
				t.Errorf("%s with a token: %d %s", p, resp.StatusCode, body)
			}
		}
	}
	if resp, body := get(noRedirect, artifact, ro, ""); resp.StatusCode != 200 || body != "app-binary" {
		t.Errorf("artifact with a read token: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(noRedirect, "/events", "", "text/event-stream"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/events without a token: %d", resp.StatusCode)
	}
	if resp, _ := get(noRedirect, "/badges/acme/web/build.svg", "", ""); resp.StatusCode != 200 {
		t.Errorf("badge without a token: %d", resp.StatusCode)
	}
	resp, _ := get(noRedirect, "/", ro, "text/html")
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy", "X-Content-Type-Options"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("no %s on /", h)
		}
	}

	// A browser logs in with the read token; its cookie opens the pages and
	// the artifact, until the token is revoked.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	login, err := browser.PostForm(inst.HTTPURL+"/login", url.Values{"token": {ro}, "next": {"/environments"}})
	if err != nil {
		t.Fatal(err)
	}
	login.Body.Close()
	if login.StatusCode != 200 || login.Request.URL.Path != "/environments" {
		t.Fatalf("login: %d at %s", login.StatusCode, login.Request.URL)
	}
	if resp, body := get(browser, artifact, "", "text/html"); resp.StatusCode != 200 || body != "app-binary" {
		t.Errorf("artifact with the login cookie: %d %q", resp.StatusCode, body)
	}
	cli(t, "token", "revoke", "--server", inst.GRPCAddr, "--token", admin, "viewer")
	deadline = time.Now().Add(10 * time.Second)
	for {
		resp, _ := get(browser, "/dora", "", "text/html")
		if resp.Request.URL.Path == "/login" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked token's cookie still opens /dora: %d at %s", resp.StatusCode, resp.Request.URL)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
