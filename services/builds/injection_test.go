package builds

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/bus/bustest"
	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
)

// marker is a file an injected command would create; the tests check that
// it never appears.
func marker(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "pwned")
}

func assertNoMarker(t *testing.T, mark string) {
	t.Helper()
	if _, err := os.Stat(mark); err == nil {
		t.Fatalf("%s exists: an injected command ran", mark)
	}
}

// signedGeneric posts a generic webhook signed with secret.
func signedGeneric(t *testing.T, url, secret string, payload map[string]any) (int, hookReply) {
	t.Helper()
	body, _ := json.Marshal(payload)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	req, _ := http.NewRequest(http.MethodPost, url+"/hooks/generic", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Shiploop-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r hookReply
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r
}

// TestGitInjection: the reviewer's command executions through git, each
// refused with the reason and none of them running anything. A signed
// generic push whose commit is an --upload-pack option, and clone URLs that
// are options or remote helpers (ext::), given to RegisterRepository.
// Behind the checks, the argument builders end git's options
// (--end-of-options) so an option-shaped value that got through would
// still be no option: that is checked by calling them directly.
func TestGitInjection(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		mark := marker(t)
		evil := "--upload-pack=touch " + mark + ";git-upload-pack"

		for _, u := range []string{evil, "ext::sh -c touch% " + mark, "-oProxyCommand=touch " + mark, "ssh://-oProxyCommand=touch%20" + mark + "/x", "fd::17"} {
			_, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/evil", CloneUrl: u})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "clone_url") {
				t.Errorf("RegisterRepository(clone_url %q) = %v, want InvalidArgument naming clone_url", u, err)
			}
		}

		src, sha := gitRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: a\n    commands: [true]\n"})
		resp, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/web", CloneUrl: src})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		h.svc.Routes(mux)
		web := httptest.NewServer(mux)
		defer web.Close()
		for _, c := range []struct {
			name    string
			payload map[string]any
			want    string
		}{
			{"commit as an option", map[string]any{"repository": "acme/web", "ref": "refs/heads/main", "commit": evil}, "after: commit"},
			{"before as an option", map[string]any{"repository": "acme/web", "ref": "refs/heads/main", "commit": sha, "before": evil}, "before: commit"},
			{"ref with ..", map[string]any{"repository": "acme/web", "ref": "refs/heads/a..b", "commit": sha}, `ref: ref "refs/heads/a..b": contains ".."`},
			{"ref with a control character", map[string]any{"repository": "acme/web", "ref": "refs/heads/a\x01", "commit": sha}, "control character"},
		} {
			code, r := signedGeneric(t, web.URL, resp.GetWebhookSecret(), c.payload)
			if code != http.StatusBadRequest || !strings.Contains(r.Error, c.want) {
				t.Errorf("%s: %d %q, want 400 naming %q", c.name, code, r.Error, c.want)
			}
		}
		// The same push with its real commit is accepted.
		if code, r := signedGeneric(t, web.URL, resp.GetWebhookSecret(), map[string]any{"repository": "acme/web", "ref": "refs/heads/main", "commit": sha}); code != http.StatusAccepted {
			t.Fatalf("good push: %d %v", code, r)
		}

		// TriggerBuild's ref is a ref, never an option.
		if _, err := h.api.TriggerBuild(ctx, &buildsv1.TriggerBuildRequest{Repository: "acme/web", Ref: "--output=" + mark}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("TriggerBuild(ref --output=…) = %v, want InvalidArgument", err)
		}

		// The mirror refuses the same values when a caller skips the checks...
		if _, err := h.svc.mirrors.ensure(ctx, "acme/web", src, evil); err == nil {
			t.Error("ensure accepted an option as a commit")
		}
		if _, err := h.svc.mirrors.ensure(ctx, "acme/web", evil, ""); err == nil {
			t.Error("ensure accepted an option as a clone URL")
		}
		// ...and git itself, through the argument builders, reads them as
		// positional arguments.
		dir, err := h.svc.mirrors.ensure(ctx, "acme/web", src, sha)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.mirrors.git(ctx, dir, fetchCommitArgs(src, evil)...); err == nil {
			t.Error("git fetch of an option-shaped commit succeeded")
		}
		if _, err := h.svc.mirrors.git(ctx, dir, fetchAllArgs(evil)...); err == nil {
			t.Error("git fetch of an option-shaped URL succeeded")
		}
		if _, err := resolve(ctx, dir, "--output="+mark); err == nil {
			t.Error("resolve accepted an option")
		}
		if _, err := h.svc.mirrors.git(ctx, dir, fetchRefArgs(evil, "refs/heads/main")...); err == nil {
			t.Error("git fetch of a ref from an option-shaped URL succeeded")
		}
		if _, err := h.svc.mirrors.ensureRef(ctx, "acme/web", src, "--upload-pack="+mark, sha); err != nil {
			t.Errorf("ensureRef with an option-shaped ref (ignored; the commit is there): %v", err)
		}
		// The cat-file process takes one question a line: a name with a
		// line break would smuggle in a second command (flush, contents of
		// anything), so it is refused before it is written.
		for _, name := range []string{sha + "\ncontents HEAD", "HEAD", "--batch", sha + "\x00"} {
			if _, err := h.svc.mirrors.readFile(dir, name, ConfigFile); err == nil || errors.Is(err, errNoFile) {
				t.Errorf("readFile(commit %q) = %v, want it refused", name, err)
			}
			if _, err := h.svc.mirrors.hasCommit(dir, name); err == nil {
				t.Errorf("hasCommit(%q) accepted", name)
			}
		}
		if _, err := h.svc.mirrors.readFile(dir, sha, ".shiploop.yml\ncontents "+sha+":secret"); err == nil || errors.Is(err, errNoFile) {
			t.Errorf("readFile(path with a line break) = %v, want it refused", err)
		}
		if data, err := h.svc.mirrors.readFile(dir, sha, ConfigFile); err != nil || len(data) == 0 {
			t.Errorf("readFile(%s:%s) = %q, %v", sha, ConfigFile, data, err)
		}
		if _, err := h.svc.mirrors.readFile(dir, sha, "no/such/file"); !errors.Is(err, errNoFile) {
			t.Errorf("readFile(missing file) = %v, want errNoFile", err)
		}
		assertNoMarker(t, mark)
	})
}

// TestAllowedTransports: with the default transports (https, ssh, git) a
// local path is refused naming the flag that enables it; http and
// unknown schemes are refused too; with file enabled the same path works.
func TestAllowedTransports(t *testing.T) {
	b := bustest.Start(t, bus.Options{Source: "/test"})
	ctx := context.Background()
	svc, err := New(ctx, Config{DB: storetest.OpenSQLite(t, "builds"), Bus: b, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	api := &grpcServer{s: svc}
	src, _ := gitRepo(t, map[string]string{"a": "b"})
	for u, want := range map[string]string{
		src:                             "transport file is not allowed (allowed: https,ssh,git) (local paths and file:// are off unless enabled: add file to --allowed-transports)",
		"file://" + src:                 "transport file is not allowed",
		"http://git.example/acme/web":   "transport http is not allowed",
		"gopher://git.example/acme/web": `unknown transport "gopher"`,
	} {
		_, err := api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/web", CloneUrl: u})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), want) {
			t.Errorf("RegisterRepository(%q) = %v, want InvalidArgument with %q", u, err, want)
		}
	}
	for _, u := range []string{"https://git.example/acme/web.git", "ssh://git@git.example/acme/web.git", "git@git.example:acme/web.git", "git://git.example/acme/web.git"} {
		if _, err := api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/web", CloneUrl: u}); err != nil {
			t.Errorf("RegisterRepository(%q) = %v", u, err)
		}
	}
	if _, err := New(ctx, Config{DB: storetest.OpenSQLite(t, "builds2"), Bus: b, DataDir: t.TempDir(), AllowedTransports: "https,ext"}); err == nil || !strings.Contains(err.Error(), `unknown transport "ext"`) {
		t.Errorf("New with transport ext = %v", err)
	}
}

// TestHgInjection: the same on Mercurial. hg reads --config and other
// options anywhere before "--", and a pre-pull hook is a command.
func TestHgInjection(t *testing.T) {
	requireHg(t)
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		mark := marker(t)
		evil := "--config=hooks.pre-pull=touch " + mark
		for _, u := range []string{evil, "ssh://-oProxyCommand=touch%20" + mark + "/x", "bundle:" + mark} {
			_, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/evil", CloneUrl: u, Vcs: "hg"})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "clone_url") {
				t.Errorf("RegisterRepository(hg, clone_url %q) = %v, want InvalidArgument naming clone_url", u, err)
			}
		}
		src, node := hgSource(t)
		resp, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/hg", CloneUrl: src, Vcs: "hg", DefaultBranch: "default"})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		h.svc.Routes(mux)
		web := httptest.NewServer(mux)
		defer web.Close()
		code, r := signedGeneric(t, web.URL, resp.GetWebhookSecret(), map[string]any{"repository": "acme/hg", "ref": "refs/heads/default", "commit": evil})
		if code != http.StatusBadRequest || !strings.Contains(r.Error, "after: commit") {
			t.Errorf("hg push with an option as commit: %d %q", code, r.Error)
		}
		if _, err := h.api.TriggerBuild(ctx, &buildsv1.TriggerBuildRequest{Repository: "acme/hg", Ref: evil}); err == nil {
			t.Error("TriggerBuild(hg, ref --config=…) accepted")
		}
		if _, err := h.svc.mirrors.ensureHg(ctx, "acme/hg", evil, ""); err == nil {
			t.Error("ensureHg accepted an option as a clone URL")
		}
		if _, err := h.svc.mirrors.ensureHg(ctx, "acme/hg", src, evil); err == nil {
			t.Error("ensureHg accepted an option as a node")
		}
		dir, err := h.svc.mirrors.ensureHg(ctx, "acme/hg", src, node)
		if err != nil {
			t.Fatal(err)
		}
		// Behind the checks: after "--" hg takes the value as a source.
		if _, err := hg(ctx, dir, hgPullArgs(evil, "")...); err == nil {
			t.Error("hg pull of an option-shaped source succeeded")
		}
		assertNoMarker(t, mark)
	})
}
