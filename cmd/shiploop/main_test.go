package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpListsEveryCommandAndFlag(t *testing.T) {
	code, out, _ := runCLI(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for name, c := range commands() {
		if !strings.Contains(out, "  "+name+" ") {
			t.Errorf("top-level help lacks %s:\n%s", name, out)
		}
		code, _, help := runCLI(t, name, "--help")
		if code != 0 {
			t.Errorf("%s --help exit %d", name, code)
		}
		c.flags.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(help, "--"+f.Name+"\n") || !strings.Contains(help, "[$"+envName(f.Name)+"]") {
				t.Errorf("%s --help lacks --%s or $%s:\n%s", name, f.Name, envName(f.Name), help)
			}
		})
	}
}

func TestFlagsReadEnvironment(t *testing.T) {
	t.Setenv("SHIPLOOP_NATS_URL", "nats://from-env:4222")
	t.Setenv("SHIPLOOP_DATABASE_URL", "postgres://db.invalid/x")
	code, out, errOut := runCLI(t, "serve", "--dry-run", "builds")
	if code != 0 || !strings.Contains(out, "nats://from-env:4222") || !strings.Contains(out, "postgres://db.invalid/x") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// A flag on the command line wins over the variable.
	_, out, _ = runCLI(t, "serve", "--dry-run", "--nats-url", "nats://flag:4222", "builds")
	if !strings.Contains(out, "nats://flag:4222") {
		t.Errorf("flag did not win over the environment: %q", out)
	}
}

func TestBadInputNamesTheFix(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"unknown command", nil, []string{"bogus"}, 2, `unknown command "bogus"`},
		{"serve needs nats", nil, []string{"serve", "builds"}, 2, "--nats-url is required"},
		{"serve needs a service", nil, []string{"serve", "--nats-url", "nats://x:1"}, 2, "name at least one service"},
		{"unknown service", nil, []string{"serve", "--dry-run", "--nats-url", "nats://x:1", "bulids"}, 2, `unknown service "bulids"`},
		{"bad env value", map[string]string{"SHIPLOOP_AGENTS": "many"}, []string{"up"}, 2, `SHIPLOOP_AGENTS="many"`},
		{"bad since", nil, []string{"watch", "--since", "yesterday"}, 2, "RFC 3339"},
		{"up takes no args", nil, []string{"up", "extra"}, 2, "up takes no arguments"},
		{"agent needs nats", nil, []string{"agent"}, 2, "--nats-url is required"},
		{"build usage", nil, []string{"build", "trigger"}, 2, "say trigger REPO [REF], cancel ID or retry ID"},
		{"secret usage", nil, []string{"secret", "set", "acme/web"}, 2, "secret set takes REPO NAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, _, errOut := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tt.code, tt.want)
			}
		})
	}
}

func TestFormatEvent(t *testing.T) {
	data, _ := anypb.New(&eventsv1.BuildFinished{
		Number: 12, Status: eventsv1.BuildStatus_BUILD_STATUS_FAILURE, Version: "1.2.4-dev.3+gabcdef0",
		FailedStep: "test", Duration: durationpb.New(1234 * time.Millisecond),
	})
	ev := &eventsv1.Event{Type: "dev.shiploop.build.finished.v1", Repository: "acme/web", Time: timestamppb.Now(), Data: data}
	line := formatEvent(ev)
	re := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3}  build\.finished\s+acme/web\s+#12 failure version=1\.2\.4-dev\.3\+gabcdef0 in 1\.234s failed_step=test$`)
	if !re.MatchString(line) {
		t.Errorf("formatEvent = %q", line)
	}
}

func TestLint(t *testing.T) {
	dir := t.TempDir()
	good := dir + "/good.yml"
	bad := dir + "/bad.yml"
	if err := os.WriteFile(good, []byte("steps:\n  - name: a\n    commands: [make]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("steps:\n  - name: a\n    commands: [make]\n    depends_on: [b]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "lint", good)
	if code != 0 || !strings.Contains(out, "good.yml: ok: 1 build step, no test stage, no gate section (the repository's or installation's policy applies), no environments\n") {
		t.Errorf("lint good: exit %d, %q", code, out)
	}
	// A full file: lint says what it found, in text and JSON.
	full := dir + "/full.yml"
	if err := os.WriteFile(full, []byte(`steps:
  - name: build
    commands: [make]
test:
  steps:
    - name: unit
      commands: [pytest]
  shards: 2
  reports:
    junit: [report.xml, "junit/*.xml"]
    coverage: [coverage.xml]
gate:
  conditions:
    - {metric: tests_failed, operator: "==", threshold: 0}
    - {metric: coverage, operator: ">=", threshold: 50, on_no_data: pass}
    - {metric: issues, operator: "==", threshold: 0, scope: new_code}
environments:
  - name: staging
    steps: [{name: deploy, commands: [./deploy staging]}]
  - name: production
    steps: [{name: deploy, commands: [./deploy production]}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	wantSummary := "1 build step, test stage (1 step, 2 shards, 2 JUnit globs, 1 coverage glob), gate with 3 conditions (no data fails but for 1 condition with on_no_data: pass), 2 environments (staging → production)"
	code, out, errOut := runCLI(t, "lint", full)
	if code != 0 || out != full+": ok: "+wantSummary+"\n" {
		t.Errorf("lint full: exit %d, %q %s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "lint", "--json", full)
	var fr lintResult
	if code != 0 || json.Unmarshal([]byte(out), &fr) != nil || fr.Summary != wantSummary || fr.Test == nil || fr.Test.Shards != 2 || fr.Test.JUnitGlobs != 2 ||
		fr.Gate == nil || fr.Gate.Conditions != 3 || fr.Gate.OnNoData != "fail" || strings.Join(fr.Environments, ",") != "staging,production" {
		t.Errorf("lint --json full: exit %d, %q", code, out)
	}
	code, out, errOut = runCLI(t, "lint", good, bad)
	if code != 1 || !regexp.MustCompile(`bad\.yml:4:\d+: steps\[0\]\.depends_on\[0\]: .*"b"`).MatchString(out) || !strings.Contains(errOut, "1 of 2 files have problems") {
		t.Errorf("lint bad: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = runCLI(t, "lint", "--json", bad)
	var res lintResult
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || res.Valid || len(res.Problems) != 1 || res.Problems[0].Line != 4 || res.Problems[0].Field != "steps[0].depends_on[0]" {
		t.Errorf("lint --json: exit %d, %q", code, out)
	}
}

func TestFlagsAfterArguments(t *testing.T) {
	c := newCommand("x", "x", "x", "")
	asJSON := c.flags.Bool("json", false, "")
	server := c.flags.String("server", "", "")
	if err := c.parse([]string{"get", "acme/web#3", "--json", "--server", "h:1", "--", "--literal"}); err != nil {
		t.Fatal(err)
	}
	if !*asJSON || *server != "h:1" || strings.Join(c.args, " ") != "get acme/web#3 --literal" {
		t.Errorf("json %v server %q args %q", *asJSON, *server, c.args)
	}
}

func TestEveryCommandHasExamples(t *testing.T) {
	for name := range commands() {
		_, _, help := runCLI(t, name, "--help")
		if n := strings.Count(help, "\nExamples:\n"); n != 1 {
			t.Errorf("%s --help has %d Examples sections, want 1:\n%s", name, n, help)
		}
	}
}
