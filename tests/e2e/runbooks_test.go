package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// runbooksConfig: two environments whose DATABASE_URL variables name two
// PostgreSQL databases, a data runbook copying production's into staging
// (FROM_DATABASE_URL, TO_DATABASE_URL) and anonymising it, and a task
// runbook with an enum option.
func runbooksConfig(prodURL, stagingURL string) string {
	return fmt.Sprintf(`steps:
  - {name: build, commands: [echo build]}
environments:
  - name: production
    variables: {DATABASE_URL: %q}
    steps: [{name: deploy, commands: [echo deploy]}]
  - name: staging
    variables: {DATABASE_URL: %q}
    steps: [{name: deploy, commands: [echo deploy]}]
runbooks:
  - name: refresh-staging
    kind: data
    from: production
    to: staging
    steps:
      - name: copy
        commands: ['pg_dump --no-owner --no-privileges "$FROM_DATABASE_URL" | psql -q -v ON_ERROR_STOP=1 "$TO_DATABASE_URL"']
      - name: anonymise
        commands: ['psql -v ON_ERROR_STOP=1 "$TO_DATABASE_URL" -c "UPDATE users SET email = md5(email) || ''@example.invalid''"']
  - name: restart
    environment: production
    options:
      - {name: tier, type: enum, values: [web, worker], required: true}
    steps:
      - {name: restart, commands: ['echo "restarting $OPTION_TIER in $SHIPLOOP_ENVIRONMENT"']}
  - name: note
    options:
      - {name: text, type: string, required: true}
    steps:
      - {name: say, commands: ['printf "note: %%s\n" "$OPTION_TEXT"']}
`, prodURL, stagingURL)
}

// runbookDatabase creates an empty database (createDatabase: dropped at the
// end) for a runbook to copy from or into, checks pg_dump and psql are
// here, and returns its URL and a connection to it.
func runbookDatabase(t *testing.T) (string, *sql.DB) {
	t.Helper()
	for _, tool := range []string{"pg_dump", "psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			needService(t, "the runbooks test runs "+tool+": "+err.Error())
		}
	}
	dbURL := createDatabase(t)
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // before createDatabase's drop
	return dbURL, db
}

func emails(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT email FROM users ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// shiploopRun runs the CLI and returns stdout, stderr and its exit code.
func shiploopRun(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("shiploop %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// TestRunbooksCopyDatabase: a data runbook run with `shiploop runbook run
// --follow` under a named token copies production's PostgreSQL database
// into staging's and anonymises it (production untouched);
// environment.data_copied is published for both environments; `runbook
// history` names the token; the kept log reads back. A task runbook's enum
// option: a bad value is refused naming the option and its values, a good
// one reaches the step as OPTION_TIER; against an environment locked with
// `shiploop deploy lock` the run waits and runs after the unlock.
func TestRunbooksCopyDatabase(t *testing.T) {
	prodURL, prod := runbookDatabase(t)
	stagingURL, staging := runbookDatabase(t)
	if _, err := prod.Exec(`CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);
		INSERT INTO users (email) VALUES ('ada@acme.example'), ('grace@acme.example'), ('linus@acme.example')`); err != nil {
		t.Fatal(err)
	}
	const admin = "e2e-admin"
	inst := startUp(t, "--token", admin)
	var tok struct{ Secret string }
	if out := cli(t, "token", "create", "--server", inst.GRPCAddr, "--token", admin, "--scope", "write", "--json", "ops-oncall"); json.Unmarshal([]byte(out), &tok) != nil || tok.Secret == "" {
		t.Fatalf("token create: %q", out)
	}
	as := func(args ...string) []string { return append(args, "--server", inst.GRPCAddr, "--token", tok.Secret) }

	repo := newRepo(t, map[string]string{".shiploop.yml": runbooksConfig(prodURL, stagingURL)})
	reg, err := inst.client.RegisterRepository(bearerCtx(admin), &buildsv1.RegisterRepositoryRequest{Name: "acme/ops", CloneUrl: repo.dir, DefaultBranch: "main"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bearerCtx(admin))
	t.Cleanup(cancel)
	st, err := inst.client.WatchEvents(ctx, &buildsv1.WatchEventsRequest{Repository: "acme/ops"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Header(); err != nil {
		t.Fatal(err)
	}
	w := &watcher{t: t, events: make(chan *eventsv1.Event, 1024), cancel: cancel}
	go func() {
		defer close(w.events)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			w.events <- r.GetEvent()
		}
	}()
	if res := inst.push(t, "acme/ops", reg.GetWebhookSecret(), "refs/heads/main", strings.Repeat("0", 40), repo.git("rev-parse", "HEAD")); res.Status != 202 {
		t.Fatalf("push: HTTP %d %s", res.Status, res.Raw)
	}
	w.until("build.finished", 60*time.Second)

	// A bad enum value is refused with the server's message (retried while
	// deploys has not seen the build yet).
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, errOut, code := shiploopRun(t, as("runbook", "run", "acme/ops", "restart", "--option", "tier=db")...)
		if code == 1 && strings.Contains(errOut, `option tier: "db" is not one of web, worker`) && !strings.Contains(errOut, "rpc error") {
			break
		}
		if !strings.Contains(errOut, "seen yet") || time.Now().After(deadline) {
			t.Fatalf("a bad option: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The data runbook, followed to its end.
	out, errOut, code := shiploopRun(t, as("runbook", "run", "acme/ops", "refresh-staging", "--follow")...)
	if code != 0 || !strings.Contains(out, "succeeded") {
		t.Fatalf("runbook run refresh-staging: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	first := strings.Fields(strings.SplitN(out, "\n", 2)[0]) // run <id> running
	if len(first) < 3 || first[0] != "run" {
		t.Fatalf("first line of run: %q", out)
	}
	runID := first[1]
	if !strings.Contains(out, "--- step anonymise") || !strings.Contains(out, "UPDATE 3") {
		t.Errorf("followed log:\n%s", out)
	}
	orig := emails(t, prod)
	if strings.Join(orig, ",") != "ada@acme.example,grace@acme.example,linus@acme.example" {
		t.Errorf("production's emails changed: %v", orig)
	}
	copied := emails(t, staging)
	if len(copied) != 3 {
		t.Fatalf("staging has %d users after the copy: %v", len(copied), copied)
	}
	for i, e := range copied {
		if !strings.HasSuffix(e, "@example.invalid") || strings.Contains(e, "acme") || len(e) != 32+len("@example.invalid") {
			t.Errorf("staging user %d: %q is not anonymised", i+1, e)
		}
	}

	// environment.data_copied for both environments, by the token's name.
	got := map[string]string{}
	for len(got) < 2 {
		evs := w.until("environment.data_copied", 30*time.Second)
		d := payload(t, evs[len(evs)-1], &eventsv1.DataCopied{})
		if d.GetRunId() != runID || d.GetFromEnvironment() != "production" || d.GetToEnvironment() != "staging" || d.GetRunbook() != "refresh-staging" {
			t.Errorf("environment.data_copied %v", d)
		}
		got[d.GetEnvironment()] = d.GetBy()
	}
	if got["production"] != "ops-oncall" || got["staging"] != "ops-oncall" {
		t.Errorf("environment.data_copied by environment: %v", got)
	}

	// The audit trail names who ran it; the kept log reads back.
	hist := cli(t, as("runbook", "history", "acme/ops", "refresh-staging")...)
	if !strings.Contains(hist, runID) || !strings.Contains(hist, "ops-oncall") || !strings.Contains(hist, "production -> staging") || !strings.Contains(hist, "succeeded") {
		t.Errorf("runbook history:\n%s", hist)
	}
	var run struct {
		RunID  string `json:"run_id"`
		By     string `json:"by"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(cli(t, as("runbook", "show", runID, "--json")...)), &run); err != nil || run.By != "ops-oncall" || run.Status != "succeeded" {
		t.Errorf("runbook show --json: %+v %v", run, err)
	}
	if logs := cli(t, as("runbook", "logs", runID)...); !strings.Contains(logs, "--- step copy") || !strings.Contains(logs, "UPDATE 3") {
		t.Errorf("runbook logs:\n%s", logs)
	}

	// A good enum value reaches the step as OPTION_TIER.
	out, errOut, code = shiploopRun(t, as("runbook", "run", "acme/ops", "restart", "--option", "tier=worker", "--follow")...)
	if code != 0 || !strings.Contains(out, "restarting worker in production") {
		t.Fatalf("runbook run restart: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	// A read token may look, not run; a string option is data, not shell:
	// it reaches the step as OPTION_TEXT and is never interpreted.
	var ro struct{ Secret string }
	if out := cli(t, "token", "create", "--server", inst.GRPCAddr, "--token", admin, "--scope", "read", "--json", "viewer"); json.Unmarshal([]byte(out), &ro) != nil || ro.Secret == "" {
		t.Fatalf("token create: %q", out)
	}
	if out, errOut, code := shiploopRun(t, "runbook", "run", "acme/ops", "restart", "--option", "tier=web", "--server", inst.GRPCAddr, "--token", ro.Secret); code != 1 || !strings.Contains(errOut, "needs write") {
		t.Errorf("runbook run with a read token: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if out := cli(t, "runbook", "history", "acme/ops", "--server", inst.GRPCAddr, "--token", ro.Secret); strings.Contains(out, "viewer") {
		t.Errorf("a refused run was recorded:\n%s", out)
	}
	marker := filepath.Join(t.TempDir(), "pwned")
	text := "$(touch " + marker + "); `touch " + marker + "`; echo hi"
	out, errOut, code = shiploopRun(t, as("runbook", "run", "acme/ops", "note", "--option", "text="+text, "--follow")...)
	if code != 0 || !strings.Contains(out, "note: "+text) {
		t.Errorf("runbook run note: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("an option's value was run by a shell: %s exists", marker)
	}

	// Against a locked environment the run waits, and runs after the unlock.
	cli(t, as("deploy", "lock", "acme/ops", "staging", "--reason", "maintenance", "--by", "bob")...)
	var follow lockedBuffer
	cmd := exec.Command(binary, as("runbook", "run", "acme/ops", "restart", "--env", "staging", "--option", "tier=web", "--follow")...)
	cmd.Stdout, cmd.Stderr = &follow, &follow
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline = time.Now().Add(15 * time.Second)
	for !strings.Contains(follow.String(), "queued") {
		if time.Now().After(deadline) {
			t.Fatalf("the run behind the lock printed:\n%s", follow.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := follow.String(); !strings.Contains(s, "bob") {
		t.Errorf("the queued run does not name the lock's holder:\n%s", s)
	}
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("the run ended while staging was locked: %v\n%s", err, follow.String())
	default:
	}
	if s := follow.String(); strings.Contains(s, "restarting") {
		t.Fatalf("the run ran while staging was locked:\n%s", s)
	}
	cli(t, as("deploy", "unlock", "acme/ops", "staging", "--by", "bob")...)
	select {
	case err := <-done:
		if s := follow.String(); err != nil || !strings.Contains(s, "restarting web in staging") || !strings.Contains(s, "succeeded") {
			t.Fatalf("after the unlock: %v\n%s", err, s)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the run did not end after the unlock:\n%s", follow.String())
	}
	hist = cli(t, as("runbook", "history", "acme/ops", "restart")...)
	if strings.Count(hist, "ops-oncall") != 2 || !strings.Contains(hist, "tier=web") || !strings.Contains(hist, "tier=worker") {
		t.Errorf("restart's history (the refused run is not recorded):\n%s", hist)
	}
}
