package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
	"github.com/shiploop/shiploop/services/errortrack"
)

// errorsCommand is the error tracker's CLI: projects and keys, issues.
func errorsCommand() *command {
	var o clientOptions
	var (
		ingestURL, repo, status, release, env, project, inRelease string
		rate, quota                                               int64
		nextRelease, revokeOthers, allFrames, raw                 bool
		limit                                                     int
	)
	c := newCommand("errors", "shiploop errors <project|key|ls|show|event|resolve|ignore|unresolve|deploy|releases|transactions> ...",
		"Error tracking: Sentry-compatible projects, their DSNs, and the issues they report.",
		`  errors project create NAME      make a project; prints a DSN for any Sentry SDK
  errors project ls | show P      list projects / show one with keys and counters
  errors project limit P --rate-limit N --quota N
  errors key rotate P [--revoke-others] | errors key revoke KEY
  errors ls [--project P] [--status unresolved|resolved|ignored] [--release R] [--env E]
  errors show ISSUE [--all-frames] [--raw]   an issue as Sentry's page shows it: counts, releases,
                                  suspect commits, and its latest event (exception chain with in-app
                                  frames and context lines, tags, user, request, breadcrumbs);
                                  JavaScript frames symbolicated with uploaded source maps, --raw
                                  for the minified frames as sent
  errors event EVENT_ID [--project P] [--all-frames] [--raw]   one event by id, read the same way
  errors resolve ISSUE [--next-release | --in-release R]
  errors ignore ISSUE | errors unresolve ISSUE
  errors deploy P --release R [--env E]   record which release runs where
  errors releases P               releases per environment: events, errors, transactions, sessions,
                                  crash-free rate; then transactions by name with p50/p95
  errors transactions P [--release R] [--env E]   transactions by name with counts and p50/p95
Flags may come before or after the arguments.`)
	clientFlags(c, &o)
	c.commonFlags()
	c.flags.StringVar(&ingestURL, "ingest-url", "", "the URL SDKs reach shiploop's HTTP listener at, for the DSN (when the server does not know it)")
	c.flags.StringVar(&repo, "repo", "", "repository whose deploys tell which release runs where (project create)")
	c.flags.Int64Var(&rate, "rate-limit", -1, "events per minute a project accepts, 0 for no limit")
	c.flags.Int64Var(&quota, "quota", -1, "events per hour a project accepts, 0 for no quota")
	c.flags.StringVar(&project, "project", "", "project id or name (ls, event)")
	c.flags.StringVar(&status, "status", "", "issue status: unresolved, resolved, resolved_in_next_release, ignored (ls)")
	c.flags.StringVar(&release, "release", "", "release (ls, deploy, transactions)")
	c.flags.StringVar(&env, "env", "", "environment (ls, deploy, transactions)")
	c.flags.StringVar(&inRelease, "in-release", "", "the release the fix is in (resolve)")
	c.flags.BoolVar(&nextRelease, "next-release", false, "resolve in the next release (resolve)")
	c.flags.BoolVar(&revokeOthers, "revoke-others", false, "revoke the project's other keys (key rotate)")
	c.flags.BoolVar(&allFrames, "all-frames", false, "show system frames too, not only in-app ones (show, event)")
	c.flags.BoolVar(&raw, "raw", false, "stack traces as sent, not symbolicated with source maps (show, event)")
	c.flags.IntVar(&limit, "limit", 50, "how many issues to list")
	// Each subcommand's own flags (subflags.go): anything else is refused.
	c.sub("project create|projects create", "ingest-url", "repo", "rate-limit", "quota")
	c.sub("project limit|projects limit", "repo", "rate-limit", "quota")
	c.sub("project|projects")
	c.sub("key rotate|keys rotate", "ingest-url", "revoke-others")
	c.sub("key|keys")
	c.sub("ls|list", "project", "status", "release", "env", "limit")
	c.sub("show", "all-frames", "raw")
	c.sub("event", "project", "all-frames", "raw")
	c.sub("resolve", "next-release", "in-release")
	c.sub("ignore|unresolve|releases")
	c.sub("deploy|transactions", "release", "env")
	c.run = func(c *command, args []string) error {
		args, err := interleaved(c.flags, args)
		if err != nil {
			return usageError{err.Error()}
		}
		if len(args) == 0 {
			return usagef("say what: project, key, ls, show, event, resolve, ignore, unresolve, deploy, releases or transactions")
		}
		conn, err := o.conn()
		if err != nil {
			return fmt.Errorf("connecting to %s: %w (set --server or SHIPLOOP_SERVER)", o.server, err)
		}
		defer conn.Close()
		cl := errortrackv1.NewErrorServiceClient(conn)
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), 30*time.Second)
		defer cancel()
		dsn := func(k *errortrackv1.ProjectKey, projectID int64) string {
			if ingestURL != "" {
				return errortrack.DSN(ingestURL, k.GetPublicKey(), projectID)
			}
			if k.GetDsn() != "" {
				return k.GetDsn()
			}
			return fmt.Sprintf("(server does not know its public URL: pass --ingest-url http://HOST:PORT) key %s, project %d", k.GetPublicKey(), projectID)
		}
		issueID := func() (int64, error) {
			if len(args) != 2 {
				return 0, usagef("%s takes one ISSUE id", args[0])
			}
			id, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil {
				if len(strings.Trim(strings.ReplaceAll(args[1], "-", ""), "0123456789abcdefABCDEF")) == 0 && len(args[1]) >= 32 {
					return 0, usagef("%q is an event id: shiploop errors event %s", args[1], args[1])
				}
				return 0, usagef("issue id %q is not a number", args[1])
			}
			return id, nil
		}
		switch args[0] {
		case "project", "projects":
			sub := "ls"
			if len(args) > 1 {
				sub = args[1]
			}
			switch {
			case sub == "create" && len(args) == 3:
				resp, err := cl.CreateProject(ctx, &errortrackv1.CreateProjectRequest{Name: args[2], RateLimitPerMinute: max(rate, 0), QuotaPerHour: max(quota, 0), Repository: repo})
				if err != nil {
					return err
				}
				if o.json {
					printJSON(c.stdout, resp)
					return nil
				}
				fmt.Fprintf(c.stdout, "created project %s (id %d)\nDSN: %s\n", resp.GetProject().GetName(), resp.GetProject().GetId(), dsn(resp.GetKey(), resp.GetProject().GetId()))
				return nil
			case sub == "ls" || sub == "list":
				resp, err := cl.ListProjects(ctx, &errortrackv1.ListProjectsRequest{})
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				if !o.json {
					fmt.Fprintln(tw, "ID\tNAME\tRATE/MIN\tQUOTA/H\tKEYS\tREPOSITORY")
				}
				for _, p := range resp.GetProjects() {
					if o.json {
						printJSON(c.stdout, p)
						continue
					}
					active := 0
					for _, k := range p.GetKeys() {
						if !k.GetRevoked() {
							active++
						}
					}
					fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%s\n", p.GetId(), p.GetName(), p.GetRateLimitPerMinute(), p.GetQuotaPerHour(), active, p.GetRepository())
				}
				return tw.Flush()
			case sub == "show" && len(args) == 3:
				resp, err := cl.GetProject(ctx, &errortrackv1.GetProjectRequest{Project: args[2]})
				if err != nil {
					return err
				}
				p := resp.GetProject()
				if o.json {
					printJSON(c.stdout, p)
					return nil
				}
				fmt.Fprintf(c.stdout, "project %s (id %d)  rate %d/min  quota %d/h  grouping v%d\n", p.GetName(), p.GetId(), p.GetRateLimitPerMinute(), p.GetQuotaPerHour(), p.GetGroupingVersion())
				for _, k := range p.GetKeys() {
					state := "active"
					if k.GetRevoked() {
						state = "revoked"
					}
					fmt.Fprintf(c.stdout, "  key %s  %s  %s\n", k.GetPublicKey(), state, dsn(k, p.GetId()))
				}
				for n, v := range p.GetCounters() {
					fmt.Fprintf(c.stdout, "  %s = %d\n", n, v)
				}
				return nil
			case sub == "limit" && len(args) == 3:
				resp, err := cl.UpdateProject(ctx, &errortrackv1.UpdateProjectRequest{Project: args[2], RateLimitPerMinute: rate, QuotaPerHour: quota, Repository: repo})
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "project %s: rate %d/min, quota %d/h\n", resp.GetProject().GetName(), resp.GetProject().GetRateLimitPerMinute(), resp.GetProject().GetQuotaPerHour())
				return nil
			}
			return usagef("errors project create NAME | ls | show P | limit P")
		case "key", "keys":
			switch {
			case len(args) == 3 && args[1] == "rotate":
				resp, err := cl.RotateKey(ctx, &errortrackv1.RotateKeyRequest{Project: args[2], RevokeOthers: revokeOthers})
				if err != nil {
					return err
				}
				p, err := cl.GetProject(ctx, &errortrackv1.GetProjectRequest{Project: args[2]})
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "new key %s\nDSN: %s\n", resp.GetKey().GetPublicKey(), dsn(resp.GetKey(), p.GetProject().GetId()))
				return nil
			case len(args) == 3 && args[1] == "revoke":
				if _, err := cl.RevokeKey(ctx, &errortrackv1.RevokeKeyRequest{PublicKey: args[2]}); err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "revoked key %s\n", args[2])
				return nil
			}
			return usagef("errors key rotate PROJECT | errors key revoke KEY")
		case "ls", "list":
			st, err := parseIssueStatus(status)
			if err != nil {
				return usageError{err.Error()}
			}
			resp, err := cl.ListIssues(ctx, &errortrackv1.ListIssuesRequest{Project: project, Status: st, Release: release, Environment: env, PageSize: int32(limit)})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			if !o.json {
				fmt.Fprintln(tw, "ID\tPROJECT\tSTATUS\tEVENTS\tUSERS\tLAST SEEN\tRELEASE\tTITLE")
			}
			for _, is := range resp.GetIssues() {
				if o.json {
					printJSON(c.stdout, is)
					continue
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", is.GetId(), is.GetProject(), issueStatusWord(is), is.GetTimesSeen(), is.GetUsers(),
					is.GetLastSeen().AsTime().Local().Format(time.DateTime), is.GetLastRelease(), is.GetTitle())
			}
			return tw.Flush()
		case "show":
			id, err := issueID()
			if err != nil {
				return err
			}
			resp, err := cl.GetIssue(ctx, &errortrackv1.GetIssueRequest{Id: id})
			if err != nil {
				return err
			}
			is := resp.GetIssue()
			evs, err := cl.ListIssueEvents(ctx, &errortrackv1.ListIssueEventsRequest{IssueId: id, PageSize: 5})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, is)
				for _, e := range evs.GetEvents() {
					printJSON(c.stdout, e)
				}
				return nil
			}
			var latest *errortrackv1.ErrorEvent
			if len(evs.GetEvents()) > 0 {
				latest = evs.GetEvents()[0]
				if raw {
					r, err := cl.GetEvent(ctx, &errortrackv1.GetEventRequest{EventId: latest.GetEventId(), Project: strconv.FormatInt(is.GetProjectId(), 10), Raw: true})
					if err != nil {
						return err
					}
					latest = r.GetEvent()
				}
			}
			printIssue(c.stdout, is, latest, allFrames)
			if len(evs.GetEvents()) > 1 {
				fmt.Fprintln(c.stdout, "\nrecent events")
				for _, e := range evs.GetEvents() {
					fmt.Fprintf(c.stdout, "  %s  %s  %s  %s\n", e.GetEventId(), stamp(e.GetTimestamp().AsTime()), orDefault(e.GetRelease(), "(no release)"), e.GetTitle())
				}
			}
			return nil
		case "event":
			if len(args) != 2 {
				return usagef("errors event EVENT_ID [--project P]")
			}
			resp, err := cl.GetEvent(ctx, &errortrackv1.GetEventRequest{EventId: args[1], Project: project, Raw: raw})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			printEvent(c.stdout, resp.GetEvent(), resp.GetIssue(), allFrames)
			return nil
		case "transactions":
			if len(args) != 2 {
				return usagef("errors transactions PROJECT [--release R] [--env E]")
			}
			resp, err := cl.ListTransactions(ctx, &errortrackv1.ListTransactionsRequest{Project: args[1], Release: release, Environment: env})
			if err != nil {
				return err
			}
			if o.json {
				for _, t := range resp.GetTransactions() {
					printJSON(c.stdout, t)
				}
				return nil
			}
			return printTransactions(c.stdout, resp.GetTransactions())
		case "resolve", "ignore", "unresolve":
			id, err := issueID()
			if err != nil {
				return err
			}
			var is *errortrackv1.Issue
			switch args[0] {
			case "resolve":
				resp, err := cl.ResolveIssue(ctx, &errortrackv1.ResolveIssueRequest{Id: id, InNextRelease: nextRelease, InRelease: inRelease})
				if err != nil {
					return err
				}
				is = resp.GetIssue()
			case "ignore":
				resp, err := cl.IgnoreIssue(ctx, &errortrackv1.IgnoreIssueRequest{Id: id})
				if err != nil {
					return err
				}
				is = resp.GetIssue()
			default:
				resp, err := cl.UnresolveIssue(ctx, &errortrackv1.UnresolveIssueRequest{Id: id})
				if err != nil {
					return err
				}
				is = resp.GetIssue()
			}
			if o.json {
				printJSON(c.stdout, is)
				return nil
			}
			fmt.Fprintf(c.stdout, "issue %d is %s", is.GetId(), issueStatusWord(is))
			if is.GetResolvedInRelease() != "" {
				fmt.Fprintf(c.stdout, " (release %s)", is.GetResolvedInRelease())
			}
			fmt.Fprintln(c.stdout)
			return nil
		case "deploy":
			if len(args) != 2 || release == "" {
				return usagef("errors deploy PROJECT --release R [--env E]")
			}
			resp, err := cl.RecordDeploy(ctx, &errortrackv1.RecordDeployRequest{Project: args[1], Release: release, Environment: env})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "deploy %s: %s to %s\n", resp.GetDeploy().GetId(), resp.GetDeploy().GetRelease(), resp.GetDeploy().GetEnvironment())
			return nil
		case "releases":
			if len(args) != 2 {
				return usagef("errors releases PROJECT")
			}
			resp, err := cl.ListReleases(ctx, &errortrackv1.ListReleasesRequest{Project: args[1]})
			if err != nil {
				return err
			}
			if o.json {
				for _, r := range resp.GetReleases() {
					printJSON(c.stdout, r)
				}
				return nil
			}
			return printReleases(c.stdout, resp.GetReleases())
		}
		return usagef("unknown errors action %q", args[0])
	}
	return c
}

// interleaved parses flags that follow positional arguments too.
func interleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if strings.HasPrefix(args[0], "-") && args[0] != "-" {
			if err := fs.Parse(args); err != nil {
				return nil, err
			}
			args = fs.Args()
			continue
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return pos, nil
}

func parseIssueStatus(s string) (errortrackv1.IssueStatus, error) {
	if s == "" || s == "any" || s == "all" {
		return errortrackv1.IssueStatus_ISSUE_STATUS_UNSPECIFIED, nil
	}
	v, ok := errortrackv1.IssueStatus_value["ISSUE_STATUS_"+strings.ToUpper(s)]
	if !ok {
		return 0, fmt.Errorf("--status %q: want unresolved, resolved, resolved_in_next_release or ignored", s)
	}
	return errortrackv1.IssueStatus(v), nil
}

func issueStatusWord(is *errortrackv1.Issue) string {
	w := strings.ToLower(strings.TrimPrefix(is.GetStatus().String(), "ISSUE_STATUS_"))
	if is.GetRegressed() && is.GetStatus() == errortrackv1.IssueStatus_ISSUE_STATUS_UNRESOLVED {
		w += " (regressed)"
	}
	return w
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
