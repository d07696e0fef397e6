package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
)

func schedulesCommand() *command {
	var o clientOptions
	c := newCommand("schedules", "shiploop schedules ls [REPO] [--json] | schedules pause REPO NAME | schedules resume REPO NAME",
		"List, pause and resume scheduled pipelines.",
		`Schedules are declared in the default branch's .shiploop.yml (schedules:
name, cron, timezone, branch) and stored by the builds service on each push
of that branch. At each slot the branch head is built with the event cron.
A paused schedule does not fire; resuming it does not fire the slots missed
while paused.`)
	clientFlags(c, &o)
	c.run = func(c *command, args []string) error {
		if len(args) < 1 {
			return usagef("say ls [REPO], pause REPO NAME or resume REPO NAME")
		}
		cl, closeFn, err := o.dial()
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), 30*time.Second)
		defer cancel()
		switch args[0] {
		case "ls":
			if len(args) > 2 {
				return usagef("schedules ls takes at most REPO")
			}
			req := &buildsv1.ListSchedulesRequest{}
			if len(args) == 2 {
				req.Repository = args[1]
			}
			resp, err := cl.ListSchedules(ctx, req)
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REPOSITORY\tNAME\tCRON\tTIMEZONE\tRUNS\tSTATE\tNEXT\tLAST")
			for _, s := range resp.GetSchedules() {
				state, branch := "active", "pipeline on "+s.GetBranch()
				if s.GetPaused() {
					state = "paused"
				}
				switch {
				case s.GetRunbook() != "":
					branch = "runbook " + s.GetRunbook()
					if s.GetEnvironment() != "" {
						branch += " on " + s.GetEnvironment()
					}
				case s.GetBranch() == "":
					branch = "pipeline on the default branch"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.GetRepository(), s.GetName(), s.GetCron(), s.GetTimezone(), branch, state,
					scheduleTime(s.GetNextRun(), s.GetTimezone()), scheduleTime(s.GetLastRun(), s.GetTimezone()))
			}
			return tw.Flush()
		case "pause", "resume":
			if len(args) != 3 {
				return usagef("schedules %s takes REPO NAME", args[0])
			}
			resp, err := cl.SetSchedulePaused(ctx, &buildsv1.SetSchedulePausedRequest{Repository: args[1], Name: args[2], Paused: args[0] == "pause"})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			if args[0] == "pause" {
				fmt.Fprintf(c.stdout, "paused %s of %s\n", args[2], args[1])
			} else {
				fmt.Fprintf(c.stdout, "resumed %s of %s; next run %s\n", args[2], args[1], scheduleTime(resp.GetSchedule().GetNextRun(), resp.GetSchedule().GetTimezone()))
			}
		default:
			return usagef("unknown schedules action %q (ls, pause or resume)", args[0])
		}
		return nil
	}
	return c
}

// scheduleTime shows a slot in the schedule's time zone, "-" for none.
func scheduleTime(ts *timestamppb.Timestamp, tz string) string {
	if ts == nil {
		return "-"
	}
	t := ts.AsTime()
	if loc, err := time.LoadLocation(tz); err == nil {
		t = t.In(loc)
	}
	return t.Format("2006-01-02 15:04 MST")
}
