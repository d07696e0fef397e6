package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/testfixture"
)

// sentryCLIVersion is the @sentry/cli npm package the test installs; npm
// brings the platform binary from its optional dependency
// @sentry/cli-linux-x64 (an npm package, so the registry is all it needs).
const sentryCLIVersion = "3.8.0"

// installSentryCLI installs @sentry/cli into a temporary directory and
// returns the binary. Without npm, or when the install fails, the test
// skips, except under CI=true (.ci/run provides npm and warms the cache).
func installSentryCLI(t *testing.T) string {
	t.Helper()
	dir := npmPackageDir(t, "@sentry/cli", sentryCLIVersion)
	bin := filepath.Join(dir, "node_modules", ".bin", "sentry-cli")
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sentry-cli") {
		testfixture.Missing(t, "@sentry/cli installed no working binary: %v\n%s", err, out)
	}
	t.Logf("running %s", strings.TrimSpace(string(out)))
	return bin
}

// TestSentryCLI runs the real sentry-cli against `shiploop up` with a
// shiploop API token: releases new, set-commits --commit, finalize,
// deploys new, sourcemaps upload, releases list; then checks through the
// web API that the release, its commit, its deploy and the bundle are
// there, and that a read-only token cannot create a release.
func TestSentryCLI(t *testing.T) {
	sentryCLI := installSentryCLI(t)
	const admin = "e2e-sentry-admin"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	inst := startUp(t, "--http-listen", addr, "--token", admin)
	token := func(name, scope string) string {
		var resp struct{ Secret string }
		out := cli(t, "token", "create", "--server", inst.GRPCAddr, "--token", admin, "--scope", scope, "--json", name)
		if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Secret == "" {
			t.Fatalf("token create: %q %v", out, err)
		}
		return resp.Secret
	}
	write, read := token("sentry-cli", "write"), token("sentry-cli-ro", "read")
	created := cli(t, "errors", "project", "create", "web", "--repo", "acme/web", "--server", inst.GRPCAddr, "--token", admin)

	home := t.TempDir() // no ~/.sentryclirc of the machine's
	maps := filepath.Join(t.TempDir(), "dist")
	if err := os.MkdirAll(maps, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"app.js":     "function a(){throw new Error(\"boom\")}a();\n//# sourceMappingURL=app.js.map\n",
		"app.js.map": `{"version":3,"file":"app.js","sources":["src/app.ts"],"sourcesContent":["function a() { throw new Error('boom') }\na()\n"],"names":["a"],"mappings":"AAAA,SAASA"}`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(maps, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(tok string, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, sentryCLI, args...)
		cmd.Env = append(os.Environ(), "HOME="+home, "SENTRY_URL="+inst.HTTPURL+"/", "SENTRY_AUTH_TOKEN="+tok,
			"SENTRY_ORG=shiploop", "SENTRY_PROJECT=web", "SENTRY_LOAD_DOTENV=0", "SENTRY_DISABLE_UPDATE_CHECK=true")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(want string, args ...string) {
		t.Helper()
		out, err := run(write, args...)
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("sentry-cli %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	must("Created release web@1.0.0", "releases", "new", "web@1.0.0")
	must("abc123", "releases", "set-commits", "web@1.0.0", "--commit", "acme/web@abc123")
	must("Finalized release web@1.0.0", "releases", "finalize", "web@1.0.0")
	must("Created new deploy", "deploys", "new", "--release", "web@1.0.0", "-e", "production", "-n", "e2e")
	must("File processing complete", "sourcemaps", "upload", "--release", "web@1.0.0", maps)
	must("web@1.0.0", "releases", "list")
	if out, err := run(read, "releases", "new", "web@2.0.0"); err == nil || !strings.Contains(out, "403") {
		t.Fatalf("releases new with a read token: %v\n%s", err, out)
	}
	if out, err := run("not-a-token", "releases", "list"); err == nil || !strings.Contains(out, "Invalid token") {
		t.Fatalf("releases list with a wrong token: %v\n%s", err, out)
	}

	get := func(path string, v any) {
		t.Helper()
		req, _ := http.NewRequest("GET", inst.HTTPURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+read)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	var rel struct {
		Version      string  `json:"version"`
		DateReleased *string `json:"dateReleased"`
		DeployCount  int     `json:"deployCount"`
		LastCommit   struct {
			ID string `json:"id"`
		} `json:"lastCommit"`
		LastDeploy struct {
			Environment string `json:"environment"`
			Name        string `json:"name"`
		} `json:"lastDeploy"`
	}
	get("/api/0/organizations/shiploop/releases/web@1.0.0/", &rel)
	if rel.DateReleased == nil || rel.DeployCount != 1 || rel.LastCommit.ID != "abc123" || rel.LastDeploy.Environment != "production" || rel.LastDeploy.Name != "e2e" {
		t.Fatalf("release after sentry-cli = %+v", rel)
	}

	// A browser error in the uploaded app.js (the throw at line 1, column
	// 14) comes out symbolicated: src/app.ts line 1 with its source line;
	// --raw shows the frame as sent.
	m := dsnLine.FindStringSubmatch(created)
	if m == nil {
		t.Fatalf("no DSN in:\n%s", created)
	}
	key, pid := dsnParts(t, m[1])
	const eventID = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"
	payload := `{"event_id":"` + eventID + `","platform":"javascript","level":"error","release":"web@1.0.0","exception":{"values":[{"type":"Error","value":"boom",` +
		`"stacktrace":{"frames":[{"filename":"https://web.example/app.js","abs_path":"https://web.example/app.js","function":"a","lineno":1,"colno":14,"in_app":true}]}}]}}`
	envelope := "{\"event_id\":\"" + eventID + "\"}\n{\"type\":\"event\"}\n" + payload + "\n"
	resp, err := http.Post(inst.HTTPURL+"/api/"+pid+"/envelope/?sentry_key="+key, "application/x-sentry-envelope", strings.NewReader(envelope))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("envelope: %d", resp.StatusCode)
	}
	var shown string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err := exec.Command(binary, "errors", "event", eventID, "--server", inst.GRPCAddr, "--token", admin).Output()
		if err == nil {
			shown = string(out)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("errors event %s: %v", eventID, err)
		}
	}
	if !strings.Contains(shown, "src/app.ts:1") || !strings.Contains(shown, "function a() { throw new Error('boom') }") || strings.Contains(shown, "web.example/app.js") {
		t.Fatalf("errors event, symbolicated:\n%s", shown)
	}
	if raw := cli(t, "errors", "event", eventID, "--raw", "--server", inst.GRPCAddr, "--token", admin); !strings.Contains(raw, "app.js:1") || strings.Contains(raw, "src/app.ts") {
		t.Fatalf("errors event --raw:\n%s", raw)
	}
}
