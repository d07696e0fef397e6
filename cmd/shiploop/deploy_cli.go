package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// deployCommand is the deploys service's CLI.
func deployCommand() *command {
	var o clientOptions
	var release, comment, reason, by, from, until string
	var force, follow bool
	c := newCommand("deploy", "shiploop deploy <status|show|promote|approve|rollback|lock|unlock|freeze|logs> ...",
		"Deploys: environments, promotion, approvals, locks, freeze windows, rollback and logs.",
		`  deploy status REPO [ENV]              environments (what runs, since when, by whom, locks) or ENV's deployments
  deploy show DEPLOY                    one deployment: approvals, verification checks, tickets
  deploy promote REPO ENV [--release R] [--force] [--comment C]
  deploy approve DEPLOY [--comment C]   one approval (or accept an inconclusive verification)
  deploy rollback REPO ENV [--release R] [--reason C]
  deploy lock REPO ENV --reason C | deploy unlock REPO ENV
  deploy freeze REPO [ENV] --until T [--from T] --reason C   (T: RFC 3339 or a duration from now, e.g. 2h)
  deploy logs [-f] DEPLOY               the deploy job's log
--by defaults to $USER. Flags may come before or after the arguments.`)
	clientFlags(c, &o)
	c.commonFlags()
	c.flags.StringVar(&release, "release", "", "the release (version) to deploy or roll back to")
	c.flags.StringVar(&comment, "comment", "", "a comment kept with the promotion or approval")
	c.flags.StringVar(&reason, "reason", "", "why (lock, rollback, freeze)")
	c.flags.StringVar(&by, "by", os.Getenv("USER"), "who does it, for the audit trail")
	c.flags.StringVar(&from, "from", "", "freeze start (default now)")
	c.flags.StringVar(&until, "until", "", "freeze end")
	c.flags.BoolVar(&force, "force", false, "promote inside a freeze window (recorded as forced)")
	c.flags.BoolVar(&follow, "follow", false, "logs: keep printing until the deploy job ends")
	c.flags.BoolVar(&follow, "f", false, "short for --follow")
	// Each subcommand's own flags (subflags.go): anything else is refused.
	c.sub("status|ls|show|get")
	c.sub("promote", "release", "force", "by", "comment")
	c.sub("approve", "by", "comment")
	c.sub("rollback", "release", "by", "reason")
	c.sub("lock", "reason", "by")
	c.sub("unlock", "by")
	c.sub("freeze", "from", "until", "reason", "by")
	c.sub("logs", "follow", "f")
	c.run = func(c *command, args []string) error {
		args, err := interleaved(c.flags, args)
		if err != nil {
			return usageError{err.Error()}
		}
		if len(args) == 0 {
			return usagef("say what: status, show, promote, approve, rollback, lock, unlock, freeze or logs")
		}
		conn, err := o.conn()
		if err != nil {
			return fmt.Errorf("connecting to %s: %w (set --server or SHIPLOOP_SERVER)", o.server, err)
		}
		defer conn.Close()
		cl := deploysv1.NewDeployServiceClient(conn)
		base, stop := signalContext()
		defer stop()
		ctx := o.ctx(base)
		if args[0] != "logs" {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
		}
		nargs := func(min, max int, what string) error {
			if n := len(args) - 1; n < min || n > max {
				return usagef("deploy %s takes %s", args[0], what)
			}
			return nil
		}
		printDeploy := func(d *deploysv1.Deployment) {
			if o.json {
				printJSON(c.stdout, d)
				return
			}
			describeDeployment(c.stdout, d)
		}
		switch args[0] {
		case "status", "ls":
			if err := nargs(1, 2, "REPO [ENV]"); err != nil {
				return err
			}
			if len(args) == 3 {
				resp, err := cl.ListDeployments(ctx, &deploysv1.ListDeploymentsRequest{Repository: args[1], Environment: args[2], PageSize: 20})
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				if !o.json {
					fmt.Fprintln(tw, "ID\tKIND\tRELEASE\tSTATUS\tBY\tCREATED\tREASON")
				}
				for _, d := range resp.GetDeployments() {
					if o.json {
						printJSON(c.stdout, d)
						continue
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.GetId(), d.GetKind(), d.GetRelease(), deployWord(d.GetStatus()), d.GetTriggeredBy(),
						d.GetCreatedAt().AsTime().Local().Format("2006-01-02 15:04:05"), d.GetReason())
				}
				return tw.Flush()
			}
			resp, err := cl.ListEnvironments(ctx, &deploysv1.ListEnvironmentsRequest{Repository: args[1]})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			if !o.json {
				fmt.Fprintln(tw, "ENVIRONMENT\tRELEASE\tSINCE\tBY\tAPPROVED BY\tLOCK\tPENDING\tHOW")
			}
			for _, e := range resp.GetEnvironments() {
				if o.json {
					printJSON(c.stdout, e)
					continue
				}
				since, lock, pending := "-", "-", "-"
				if e.GetSince() != nil {
					since = e.GetSince().AsTime().Local().Format("2006-01-02 15:04:05")
				}
				if e.GetLockedBy() != "" {
					lock = e.GetLockedBy() + ": " + e.GetLockReason()
				}
				if e.GetPendingDeployId() != "" {
					pending = deployWord(e.GetPendingStatus()) + " " + e.GetPendingDeployId()
				}
				name := e.GetName()
				if e.GetPreview() {
					name += fmt.Sprintf(" (preview of #%d)", e.GetPullRequest())
				}
				for _, f := range e.GetFreezes() {
					lock += fmt.Sprintf(" [freeze #%d %s..%s: %s]", f.GetId(), f.GetStartsAt().AsTime().Local().Format("01-02 15:04"), f.GetEndsAt().AsTime().Local().Format("01-02 15:04"), f.GetReason())
				}
				release, how := envHow(e)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, release, since, orDash(e.GetDeployedBy()), orDash(strings.Join(e.GetApprovedBy(), ", ")), lock, pending, how)
			}
			if err := tw.Flush(); err != nil || o.json {
				return err
			}
			return printEnvImages(c.stdout, resp.GetEnvironments())
		case "show", "get":
			if err := nargs(1, 1, "one DEPLOY id"); err != nil {
				return err
			}
			resp, err := cl.GetDeployment(ctx, &deploysv1.GetDeploymentRequest{Id: args[1]})
			if err != nil {
				return err
			}
			printDeploy(resp.GetDeployment())
		case "promote":
			if err := nargs(2, 2, "REPO ENV"); err != nil {
				return err
			}
			resp, err := cl.Promote(ctx, &deploysv1.PromoteRequest{Repository: args[1], Environment: args[2], Release: release, Force: force, By: by, Comment: comment})
			if err != nil {
				return err
			}
			printDeploy(resp.GetDeployment())
		case "approve":
			if err := nargs(1, 1, "one DEPLOY id"); err != nil {
				return err
			}
			resp, err := cl.Approve(ctx, &deploysv1.ApproveRequest{DeployId: args[1], Approver: by, Comment: comment})
			if err != nil {
				return err
			}
			printDeploy(resp.GetDeployment())
		case "rollback":
			if err := nargs(2, 2, "REPO ENV"); err != nil {
				return err
			}
			resp, err := cl.Rollback(ctx, &deploysv1.RollbackRequest{Repository: args[1], Environment: args[2], Release: release, By: by, Reason: reason})
			if err != nil {
				return err
			}
			printDeploy(resp.GetDeployment())
		case "lock", "unlock":
			if err := nargs(2, 2, "REPO ENV"); err != nil {
				return err
			}
			var env *deploysv1.Environment
			if args[0] == "lock" {
				if reason == "" {
					return usagef("deploy lock needs --reason: others see it")
				}
				resp, err := cl.Lock(ctx, &deploysv1.LockRequest{Repository: args[1], Environment: args[2], Reason: reason, By: by})
				if err != nil {
					return err
				}
				env = resp.GetEnvironment()
			} else {
				resp, err := cl.Unlock(ctx, &deploysv1.UnlockRequest{Repository: args[1], Environment: args[2], By: by})
				if err != nil {
					return err
				}
				env = resp.GetEnvironment()
			}
			if o.json {
				printJSON(c.stdout, env)
				return nil
			}
			if env.GetLockedBy() != "" {
				fmt.Fprintf(c.stdout, "%s of %s locked by %s: %s\n", env.GetName(), env.GetRepository(), env.GetLockedBy(), env.GetLockReason())
			} else {
				fmt.Fprintf(c.stdout, "%s of %s unlocked\n", env.GetName(), env.GetRepository())
			}
		case "freeze":
			if err := nargs(1, 2, "REPO [ENV]"); err != nil {
				return err
			}
			if until == "" || reason == "" {
				return usagef("deploy freeze needs --until and --reason")
			}
			req := &deploysv1.FreezeRequest{Repository: args[1], Reason: reason, By: by}
			if len(args) == 3 {
				req.Environment = args[2]
			}
			if from != "" {
				t, err := parseWhen(from)
				if err != nil {
					return usagef("--from: %v", err)
				}
				req.StartsAt = timestamppb.New(t)
			}
			t, err := parseWhen(until)
			if err != nil {
				return usagef("--until: %v", err)
			}
			req.EndsAt = timestamppb.New(t)
			resp, err := cl.Freeze(ctx, req)
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp.GetFreeze())
				return nil
			}
			f := resp.GetFreeze()
			fmt.Fprintf(c.stdout, "freeze #%d on %s %s from %s until %s: %s\n", f.GetId(), f.GetRepository(), orDash(f.GetEnvironment()),
				f.GetStartsAt().AsTime().Local().Format(time.RFC3339), f.GetEndsAt().AsTime().Local().Format(time.RFC3339), f.GetReason())
		case "logs":
			if err := nargs(1, 1, "one DEPLOY id"); err != nil {
				return err
			}
			st, err := cl.StreamLogs(ctx, &deploysv1.StreamLogsRequest{DeployId: args[1], Follow: follow})
			if err != nil {
				return err
			}
			step := "\x00"
			for {
				resp, err := st.Recv()
				if err != nil {
					if errors.Is(err, io.EOF) || base.Err() != nil {
						return nil
					}
					return err
				}
				l := resp.GetLine()
				if o.json {
					printJSON(c.stdout, l)
					continue
				}
				if l.GetStep() != step {
					step = l.GetStep()
					if step != "" {
						fmt.Fprintf(c.stdout, "--- step %s\n", step)
					}
				}
				fmt.Fprintf(c.stdout, "%s %s\n", l.GetTime().AsTime().Local().Format("15:04:05.000"), l.GetText())
			}
		default:
			return usagef("unknown deploy command %q: status, show, promote, approve, rollback, lock, unlock, freeze or logs", args[0])
		}
		return nil
	}
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func deployWord(s eventsv1.DeployStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "DEPLOY_STATUS_"))
}

// parseWhen reads RFC 3339 or a duration from now.
func parseWhen(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-12-24T18:00:00Z) or a duration from now (2h)", s)
	}
	return t, nil
}

func describeDeployment(w io.Writer, d *deploysv1.Deployment) {
	fmt.Fprintf(w, "deployment %s: %s of %s to %s — %s\n", d.GetId(), d.GetKind(), d.GetRelease(), d.GetEnvironment(), deployWord(d.GetStatus()))
	if d.GetReason() != "" {
		fmt.Fprintf(w, "  reason     %s\n", d.GetReason())
	}
	fmt.Fprintf(w, "  by         %s", d.GetTriggeredBy())
	if d.GetForced() {
		fmt.Fprint(w, " (forced)")
	}
	fmt.Fprintln(w)
	if d.GetPreviousRelease() != "" {
		fmt.Fprintf(w, "  previous   %s\n", d.GetPreviousRelease())
	}
	if d.GetCause() != "" {
		fmt.Fprintf(w, "  cause      %s\n", d.GetCause())
	}
	if d.GetJobId() != "" {
		fmt.Fprintf(w, "  job        %s (shiploop deploy logs %s)\n", d.GetJobId(), d.GetId())
	}
	if d.GetApprovalsRequired() > 0 || len(d.GetApprovals()) > 0 {
		fmt.Fprintf(w, "  approvals  %d of %d\n", len(d.GetApprovals()), d.GetApprovalsRequired())
		for _, a := range d.GetApprovals() {
			fmt.Fprintf(w, "    %s by %s: %s\n", a.GetAt().AsTime().Local().Format("2006-01-02 15:04:05"), a.GetApprover(), a.GetComment())
		}
	}
	for _, ch := range d.GetChecks() {
		fmt.Fprintf(w, "  check      %-12s %s — %s\n", strings.ToLower(strings.TrimPrefix(ch.GetStatus().String(), "CHECK_STATUS_")), ch.GetCheck(), ch.GetReason())
	}
	if len(d.GetTickets()) > 0 {
		fmt.Fprintf(w, "  tickets    %s\n", strings.Join(d.GetTickets(), ", "))
	}
	describeImages(w, d.GetImages())
}

// envHow is what deploy status says of e's current release: the release
// (with "(rollback)" when a rollback put it there) and how it got there:
// the rollback's cause ("rolled back from 1.1.0: verification failed: …"),
// or the kind of deploy ("deploy", "redeploy").
func envHow(e *deploysv1.Environment) (release, how string) {
	release = orDash(e.GetCurrentRelease())
	switch {
	case e.GetCurrentRelease() == "":
		return release, "-"
	case e.GetCurrentByRollback():
		return release + " (rollback)", orDash(e.GetCurrentCause())
	}
	return release, orDash(e.GetCurrentKind())
}
