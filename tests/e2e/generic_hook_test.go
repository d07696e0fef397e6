package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestGenericHookDocumentedSignature runs the README's generic-hook example
// (printf %s "$body" | openssl dgst -sha256 -hmac "$secret", then curl)
// against a running server, with a registered repository's secret and
// commit: the documented signature is the one the server checks, 202.
func TestGenericHookDocumentedSignature(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	_, section, ok := strings.Cut(readme, "### Webhooks: the generic hook")
	if !ok {
		t.Fatal("README has no \"Webhooks: the generic hook\" section")
	}
	_, block, ok := strings.Cut(section, "```sh\n")
	if ok {
		block, _, ok = strings.Cut(block, "```")
	}
	if !ok {
		t.Fatal("the generic hook section has no sh example")
	}
	for _, want := range []string{`printf %s "$body" | openssl dgst -sha256 -hmac "$secret"`, "X-Shiploop-Signature: sha256=$sig", "/hooks/generic"} {
		if !strings.Contains(block, want) {
			t.Fatalf("the example lacks %q:\n%s", want, block)
		}
	}
	for _, tool := range []string{"bash", "openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: the example cannot run here", tool)
		}
	}

	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: hello\n    commands: [\"echo hello\"]\n"})
	sha := repo.git("rev-parse", "HEAD")
	secret := inst.register(t, "acme/web", repo)

	// The example as written, but for this server, secret and commit.
	var script []string
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		switch {
		case strings.HasPrefix(line, "secret="):
			line = `secret="$SECRET"`
		case strings.HasPrefix(line, "body="):
			line = strings.Replace(line, "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b", sha, 1)
		}
		line = strings.Replace(line, "http://127.0.0.1:8080", inst.HTTPURL, 1)
		line = strings.Replace(line, "curl -sS", `curl -sS -w '\n%{http_code}'`, 1)
		script = append(script, line)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", strings.Join(script, "\n"))
	cmd.Env = append(os.Environ(), "SECRET="+secret)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the example failed: %v\n%s\n---\n%s", err, out, strings.Join(script, "\n"))
	}
	if !strings.HasSuffix(strings.TrimSpace(string(out)), "\n202") {
		t.Fatalf("the example's POST did not answer 202:\n%s", out)
	}

	// A wrong secret is refused: the signature is what let it in.
	cmd = exec.Command("bash", "-euo", "pipefail", "-c", strings.Join(script, "\n"))
	cmd.Env = append(os.Environ(), "SECRET=not-"+secret)
	out, _ = cmd.CombinedOutput()
	if !strings.HasSuffix(strings.TrimSpace(string(out)), "\n401") {
		t.Fatalf("a wrong secret's signature did not answer 401:\n%s", out)
	}
}
