package main

import (
	"flag"
	"strings"
	"testing"
)

// TestSubcommandFlags: a flag the subcommand does not take is refused
// (exit 2) with a message naming the subcommand and the flags it does
// take, not ignored; a flag it takes passes the check.
func TestSubcommandFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"errors", "ls", "--rate-limit", "5"}, []string{"errors ls does not take --rate-limit; it takes --env, --limit, --project, --release, --status (and --json, --server,"}},
		{[]string{"errors", "--rate-limit", "5", "list"}, []string{"errors list does not take --rate-limit"}},
		{[]string{"errors", "project", "create", "web", "--status", "resolved"}, []string{"errors project create does not take --status; it takes --ingest-url, --quota, --rate-limit, --repo"}},
		{[]string{"errors", "resolve", "7", "--env", "prod", "--limit", "3"}, []string{"errors resolve does not take --env, --limit; it takes --in-release, --next-release"}},
		{[]string{"deploy", "lock", "acme/web", "prod", "--release", "1.0"}, []string{"deploy lock does not take --release; it takes --by, --reason"}},
		{[]string{"deploy", "status", "acme/web", "--force"}, []string{"deploy status does not take --force; it takes no flags of its own"}},
		{[]string{"tests", "ls", "--suite", "x"}, []string{"tests ls does not take --suite; it takes --limit, --repo"}},
		{[]string{"monitor", "unsilence", "3", "--for", "2h"}, []string{"monitor unsilence does not take --for; it takes --by"}},
		{[]string{"token", "revoke", "ci", "--scope", "admin"}, []string{"token revoke does not take --scope"}},
		{[]string{"dlq", "show", "4", "--consumer", "x"}, []string{"dlq show does not take --consumer"}},
		{[]string{"metrics", "find", "a.*", "--from", "-2h"}, []string{"metrics find does not take --from"}},
		{[]string{"flags", "get", "k", "--env", "prod", "--rule", "a eq b -> on"}, []string{"flags get does not take --rule; it takes --env"}},
		{[]string{"repo", "list", "--clone-url", "x"}, []string{"repo list does not take --clone-url"}},
	} {
		code, _, errOut := runCLI(t, c.args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", c.args, code, errOut)
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%q: stderr lacks %q:\n%s", c.args, w, errOut)
			}
		}
	}
	// Flags the subcommand takes pass the check (the call then fails to
	// connect: exit 1, not a usage error).
	for _, args := range [][]string{
		{"errors", "ls", "--project", "web", "--status", "resolved", "--server", "127.0.0.1:1"},
		{"deploy", "promote", "acme/web", "prod", "--release", "1.0", "--force", "--server", "127.0.0.1:1"},
		{"tests", "history", "TestX", "--repo", "acme/web", "--suite", "s", "--server", "127.0.0.1:1"},
	} {
		if code, _, errOut := runCLI(t, args...); code == 2 || strings.Contains(errOut, "does not take") {
			t.Errorf("%q: exit %d: %s", args, code, errOut)
		}
	}
}

// TestSubcommandFlagsInHelp: --help lists each subcommand's flags, and
// every flag a subcommand declares is one of its command's (listed in
// help and completion as before).
func TestSubcommandFlagsInHelp(t *testing.T) {
	_, _, help := runCLI(t, "errors", "--help")
	for _, w := range []string{"Flags by subcommand", "  ls | list: --env, --limit, --project, --release, --status\n", "  project create | projects create: --ingest-url, --quota, --rate-limit, --repo\n"} {
		if !strings.Contains(help, w) {
			t.Errorf("errors --help lacks %q:\n%s", w, help)
		}
	}
	for name, c := range commands() {
		for _, s := range c.subs {
			s.flags.VisitAll(func(f *flag.Flag) {
				if c.flags.Lookup(f.Name) == nil {
					t.Errorf("%s %s: --%s is not a flag of %s", name, s.path, f.Name, name)
				}
			})
		}
	}
	for _, name := range []string{"errors", "deploy", "tests", "monitor", "token", "dlq", "metrics", "flags", "repo"} {
		if len(commands()[name].subs) == 0 {
			t.Errorf("%s declares no subcommand flags", name)
		}
	}
}
