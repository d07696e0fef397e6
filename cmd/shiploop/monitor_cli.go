package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
)

// monitorCommand: the monitors of environments (environments[].monitors)
// and their silences.
func monitorCommand() *command {
	var o clientOptions
	var reason, by string
	var dur time.Duration
	c := newCommand("monitor", "shiploop monitor <ls|silence|unsilence> ...",
		"Monitors: the checks environments keep running between deploys, their state and silences.",
		`  monitor ls REPO [ENV]                                     monitors (state, since, detail) and the silences in force
  monitor silence REPO ENV [MONITOR] --for 2h --reason C   alerts of the monitor (every monitor of ENV without one) are recorded, not sent
  monitor unsilence ID                                      remove a silence
--by defaults to $USER. Flags may come before or after the arguments.`)
	clientFlags(c, &o)
	c.commonFlags()
	c.flags.StringVar(&reason, "reason", "", "why (silence)")
	c.flags.StringVar(&by, "by", os.Getenv("USER"), "who does it, for the audit trail")
	c.flags.DurationVar(&dur, "for", 0, "how long a silence lasts (e.g. 2h)")
	// Each subcommand's own flags (subflags.go): anything else is refused.
	c.sub("ls|status")
	c.sub("silence", "reason", "by", "for")
	c.sub("unsilence", "by")
	c.run = func(c *command, args []string) error {
		args, err := interleaved(c.flags, args)
		if err != nil {
			return usageError{err.Error()}
		}
		if len(args) == 0 {
			return usagef("say what: ls, silence or unsilence")
		}
		nargs := func(min, max int, what string) error {
			if n := len(args) - 1; n < min || n > max {
				return usagef("monitor %s takes %s", args[0], what)
			}
			return nil
		}
		var req any
		switch args[0] {
		case "ls", "status":
			if err := nargs(1, 2, "REPO [ENV]"); err != nil {
				return err
			}
			r := &deploysv1.ListMonitorsRequest{Repository: args[1]}
			if len(args) == 3 {
				r.Environment = args[2]
			}
			req = r
		case "silence":
			if err := nargs(2, 3, "REPO ENV [MONITOR]"); err != nil {
				return err
			}
			if dur <= 0 || reason == "" {
				return usagef("monitor silence needs --for (e.g. 2h) and --reason")
			}
			r := &deploysv1.SilenceRequest{Repository: args[1], Environment: args[2], EndsAt: timestamppb.New(time.Now().Add(dur)), Reason: reason, By: by}
			if len(args) == 4 {
				r.Monitor = args[3]
			}
			req = r
		case "unsilence":
			if err := nargs(1, 1, "one silence ID (monitor ls lists them)"); err != nil {
				return err
			}
			id, err := strconv.ParseInt(strings.TrimPrefix(args[1], "#"), 10, 64)
			if err != nil || id <= 0 {
				return usagef("monitor unsilence takes a silence ID (a number), got %q", args[1])
			}
			req = &deploysv1.UnsilenceRequest{Id: id, By: by}
		default:
			return usagef("unknown monitor command %q: ls, silence or unsilence", args[0])
		}
		conn, err := o.conn()
		if err != nil {
			return fmt.Errorf("connecting to %s: %w (set --server or SHIPLOOP_SERVER)", o.server, err)
		}
		defer conn.Close()
		cl := deploysv1.NewDeployServiceClient(conn)
		base, stop := signalContext()
		defer stop()
		ctx, cancel := context.WithTimeout(o.ctx(base), 30*time.Second)
		defer cancel()
		switch r := req.(type) {
		case *deploysv1.ListMonitorsRequest:
			resp, err := cl.ListMonitors(ctx, r)
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			printMonitors(c.stdout, resp)
		case *deploysv1.SilenceRequest:
			resp, err := cl.Silence(ctx, r)
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp.GetSilence())
				return nil
			}
			s := resp.GetSilence()
			fmt.Fprintf(c.stdout, "silence #%d on %s %s %s until %s: %s\n", s.GetId(), s.GetRepository(), s.GetEnvironment(), orDash(s.GetMonitor()),
				s.GetEndsAt().AsTime().Local().Format(time.RFC3339), s.GetReason())
		case *deploysv1.UnsilenceRequest:
			resp, err := cl.Unsilence(ctx, r)
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp.GetSilence())
				return nil
			}
			fmt.Fprintf(c.stdout, "silence #%d removed\n", resp.GetSilence().GetId())
		}
		return nil
	}
	return c
}

func printMonitors(w io.Writer, resp *deploysv1.ListMonitorsResponse) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tMONITOR\tSTATE\tSINCE\tCHECK\tDETAIL")
	for _, m := range resp.GetMonitors() {
		state := strings.TrimPrefix(m.GetState().String(), "MONITOR_STATE_")
		if m.GetSilenceId() != 0 {
			state += fmt.Sprintf(" (silenced #%d)", m.GetSilenceId())
		}
		if m.GetBlocksPromotion() {
			state += " [blocks promotion]"
		}
		since := "-"
		if m.GetSince() != nil {
			since = m.GetSince().AsTime().Local().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.GetEnvironment(), m.GetName(), state, since, m.GetCheck(), orDash(m.GetDetail()))
	}
	_ = tw.Flush()
	if len(resp.GetSilences()) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SILENCE\tENVIRONMENT\tMONITOR\tUNTIL\tBY\tREASON")
	for _, s := range resp.GetSilences() {
		fmt.Fprintf(tw, "#%d\t%s\t%s\t%s\t%s\t%s\n", s.GetId(), s.GetEnvironment(), orDash(s.GetMonitor()), s.GetEndsAt().AsTime().Local().Format("2006-01-02 15:04:05"), s.GetCreatedBy(), s.GetReason())
	}
	_ = tw.Flush()
}
