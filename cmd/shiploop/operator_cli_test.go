package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/shiploop/shiploop/pkg/server"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SHIPLOOP_CONFIG", p)
	return p
}

func parseClient(t *testing.T, args ...string) (clientOptions, error) {
	t.Helper()
	var o clientOptions
	c := newCommand("x", "x", "x", "")
	clientFlags(c, &o)
	err := c.parse(args)
	return o, err
}

func TestConfigFile(t *testing.T) {
	writeConfig(t, "server: cfg.example:9090\ntoken: from-config\n")
	o, err := parseClient(t)
	if err != nil || o.server != "cfg.example:9090" || o.token != "from-config" {
		t.Fatalf("config not applied: %+v %v", o, err)
	}
	t.Setenv("SHIPLOOP_TOKEN", "from-env")
	o, _ = parseClient(t, "--server", "flag:1")
	if o.server != "flag:1" || o.token != "from-env" {
		t.Fatalf("flags and SHIPLOOP_* must win over the file: %+v", o)
	}

	// Server commands never read it: `up --token` is the admin token.
	code, out, _ := runCLI(t, "serve", "--dry-run", "--nats-url", "nats://x:4222", "builds")
	if code != 0 || strings.Contains(out, "from-config") {
		t.Fatalf("serve picked the client config: %d %q", code, out)
	}

	p := writeConfig(t, "server: a:1\nsevrer: typo\n")
	if _, err := parseClient(t); err == nil || !strings.Contains(err.Error(), p+":2") || !strings.Contains(err.Error(), "sevrer") {
		t.Fatalf("unknown key: %v, want the file, line 2 and the key", err)
	}
	writeConfig(t, "- a\n")
	if _, err := parseClient(t); err == nil {
		t.Fatal("a list as config was accepted")
	}
	writeConfig(t, "")
	if _, err := parseClient(t); err != nil {
		t.Fatalf("empty config: %v", err)
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		code, out, errOut := runCLI(t, "completion", sh)
		if code != 0 || !strings.Contains(out, "watch") || !strings.Contains(out, "chain") || !strings.Contains(out, "token") {
			t.Fatalf("completion %s: %d %s", sh, code, errOut)
		}
		if sh == "bash" {
			if _, err := exec.LookPath("bash"); err == nil {
				cmd := exec.Command("bash", "-n")
				cmd.Stdin = strings.NewReader(out)
				if b, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("bash -n: %v\n%s", err, b)
				}
			}
		}
	}
	if code, _, _ := runCLI(t, "completion", "tcsh"); code != 2 {
		t.Fatalf("unknown shell exit %d, want 2", code)
	}
}

func TestWatchFilters(t *testing.T) {
	mk := func(typ, chain string, payload *anypb.Any) *eventsv1.Event {
		return &eventsv1.Event{Type: "dev.shiploop." + typ + ".v1", ChainId: chain, Id: "e-" + typ, Data: payload}
	}
	fin, _ := anypb.New(&eventsv1.DeployFinished{Deploy: &eventsv1.DeployRef{Environment: "production"}, Status: eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED})
	env, _ := anypb.New(&eventsv1.EnvironmentChanged{Environment: "staging"})
	build, _ := anypb.New(&eventsv1.BuildFinished{Status: eventsv1.BuildStatus_BUILD_STATUS_FAILURE})
	evs := []*eventsv1.Event{mk("deploy.finished", "c1", fin), mk("environment.locked", "c2", env), mk("build.finished", "c1", build)}

	w := watchFilters{chain: "c1"}
	var got []string
	for _, ev := range evs {
		if w.match(ev) {
			got = append(got, ev.GetType())
		}
	}
	if len(got) != 2 {
		t.Fatalf("--chain c1 kept %v", got)
	}
	w = watchFilters{env: "staging"}
	if w.match(evs[0]) || !w.match(evs[1]) || w.match(evs[2]) {
		t.Fatal("--env staging matched the wrong events")
	}
	if w := (watchFilters{env: "production"}); !w.match(evs[0]) {
		t.Fatal("--env production missed a deploy to production")
	}

	// Colour: never when piped (a buffer), escape codes when forced.
	var buf bytes.Buffer
	c := newCommand("watch", "", "", "")
	c.stdout = &buf
	var since time.Time
	auto := watchFilters{color: "auto"}
	if err := auto.prepare(c, &since); err != nil || auto.colour {
		t.Fatalf("auto colour on a pipe: %v %v", auto.colour, err)
	}
	on := watchFilters{color: "always"}
	_ = on.prepare(c, &since)
	if line := on.paint(evs[2], formatEvent(evs[2])); !strings.HasPrefix(line, "\x1b[31m") {
		t.Fatalf("a failed build is not red: %q", line)
	}
	if line := auto.paint(evs[2], "x"); line != "x" {
		t.Fatalf("plain output changed: %q", line)
	}
	if err := (&watchFilters{color: "sometimes"}).prepare(c, &since); err == nil {
		t.Fatal("--color sometimes accepted")
	}

	// --chain replays from the change's own time (UUIDv7).
	chain := "0199a8c0-7a1e-7c4e-9f00-1c2d3e4f5a6b"
	ch := watchFilters{chain: chain, color: "never"}
	since = time.Time{}
	if err := ch.prepare(c, &since); err != nil || since.IsZero() || since.After(time.Now()) {
		t.Fatalf("--chain since = %v, %v", since, err)
	}
	if err := (&watchFilters{chain: "nope"}).prepare(c, &time.Time{}); err == nil || !strings.Contains(err.Error(), "change.*") {
		t.Fatalf("bad chain id: %v", err)
	}
}

func TestBuildFlag(t *testing.T) {
	f, err := buildFlag("checkout.new-flow", "staging", []string{"on=true", "off=false", "color=blue"}, "off",
		[]string{"email ends_with @acme.com, @acme.org -> on"}, "10:on", true, "")
	if err != nil {
		t.Fatal(err)
	}
	r := f.GetRules()[0]
	if r.GetAttribute() != "email" || r.GetOp() != "ends_with" || len(r.GetValues()) != 2 || r.GetVariant() != "on" ||
		f.GetRollout().GetPercent() != 10 || f.GetVariants()["color"] != `"blue"` {
		t.Fatalf("buildFlag = %v", f)
	}
	for _, bad := range []struct {
		variants []string
		def      string
		rules    []string
		rollout  string
		want     string
	}{
		{[]string{"=1"}, "on", nil, "", "--variant"},
		{[]string{"on=true"}, "", nil, "", "--default"},
		{[]string{"on=true"}, "on", []string{"email ends_with"}, "", "--rule"},
		{[]string{"on=true"}, "on", nil, "ten:on", "--rollout"},
	} {
		if _, err := buildFlag("k", "e", bad.variants, bad.def, bad.rules, bad.rollout, true, ""); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v, want an error naming %s", bad, err, bad.want)
		}
	}
	if code, _, errOut := runCLI(t, "flags", "get", "k"); code != 2 || !strings.Contains(errOut, "--env") {
		t.Fatalf("flags get without --env: %d %s", code, errOut)
	}
}

func TestGuardMutations(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	reader := func(ctx context.Context, hash string) (server.Principal, error) {
		if hash == server.HashToken("ro") {
			return server.Principal{Name: "ro", Scope: server.ScopeRead}, nil
		}
		return server.Principal{}, server.ErrUnknownToken
	}
	h := guardMutations(&server.Auth{AdminToken: "admin", Lookup: reader}, ok)
	for _, c := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/graphite/events", "", 204},
		{"POST", "/graphite/events", "", 401},
		{"POST", "/graphite/events", "ro", 403},
		{"POST", "/graphite/events", "admin", 204},
		{"POST", "/graphite/render", "", 204},
		{"POST", "/graphite/metrics/find/", "", 204},
		{"POST", "/graphite/tags/delSeries", "ro", 403},
		{"POST", "/hooks/github", "", 204},
		{"POST", "/api/1/envelope/", "", 204},
		{"POST", "/ofrep/v1/evaluate/flags", "", 204},
		{"DELETE", "/anything/new", "", 401},
		// The web login checks the token it is posted; logout clears a cookie.
		{"POST", "/login", "", 204},
		{"POST", "/logout", "", 204},
		{"POST", "/login/other", "", 401},
		// The environment page's forms check themselves (Auth.WebForm).
		{"POST", "/environments/acme/shop/production", "", 204},
		{"POST", "/environments", "", 401},
	} {
		req := httptest.NewRequest(c.method, c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s with %q: %d, want %d", c.method, c.path, c.token, rec.Code, c.want)
		}
	}
	if guardMutations(&server.Auth{}, ok) == nil {
		t.Fatal("nil handler with auth off")
	}
}
