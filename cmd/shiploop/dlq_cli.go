package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	dlqv1 "github.com/shiploop/shiploop/proto/shiploop/dlq/v1"
)

func dlqCommand() *command {
	var o clientOptions
	var consumer string
	var limit int
	c := newCommand("dlq", "shiploop dlq [flags] ls | show SEQ | replay SEQ...",
		"List, show and replay dead letters.",
		`An event a consumer could not handle after its bounded retries (or that it
refused for good) is stored in the DLQ stream with the reason; the events
behind it keep flowing. ls lists them (SEQ, consumer, event, deliveries,
reason); show prints one with its headers and payload; replay republishes the
original event to its subject once the cause is fixed and removes it from
the DLQ. Consumers that handled the event already skip it.
Examples:
  shiploop dlq ls --consumer builds-changes
  shiploop dlq show 12
  shiploop dlq replay 12 13`)
	clientFlags(c, &o)
	c.commonFlags()
	c.flags.StringVar(&consumer, "consumer", "", "only this consumer's dead letters (ls)")
	c.flags.IntVar(&limit, "limit", 100, "at most this many (ls)")
	// Each subcommand's own flags (subflags.go): anything else is refused.
	c.sub("ls", "consumer", "limit")
	c.sub("show|replay")
	c.run = func(c *command, args []string) error {
		if len(args) == 0 || (args[0] != "ls" && args[0] != "show" && args[0] != "replay") {
			return usagef("want 'dlq ls', 'dlq show SEQ' or 'dlq replay SEQ...'")
		}
		var seqs []uint64
		for _, a := range args[1:] {
			n, err := strconv.ParseUint(a, 10, 64)
			if err != nil || n == 0 {
				return usagef("%q is not a DLQ sequence: use the SEQ column of 'shiploop dlq ls'", a)
			}
			seqs = append(seqs, n)
		}
		switch {
		case args[0] == "ls" && len(seqs) != 0:
			return usagef("'dlq ls' takes no arguments (filter with --consumer)")
		case args[0] == "show" && len(seqs) != 1:
			return usagef("'dlq show' takes one SEQ")
		case args[0] == "replay" && len(seqs) == 0:
			return usagef("'dlq replay' takes at least one SEQ")
		}
		conn, err := o.conn()
		if err != nil {
			return fmt.Errorf("connecting to %s: %w (set --server or SHIPLOOP_SERVER)", o.server, err)
		}
		defer conn.Close()
		cl := dlqv1.NewDLQServiceClient(conn)
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), time.Minute)
		defer cancel()
		switch args[0] {
		case "ls":
			resp, err := cl.ListDeadLetters(ctx, &dlqv1.ListDeadLettersRequest{Consumer: consumer, Limit: int32(limit)})
			if err != nil {
				return err
			}
			if o.json {
				for _, d := range resp.GetDeadLetters() {
					printJSON(c.stdout, d)
				}
				return nil
			}
			if len(resp.GetDeadLetters()) == 0 {
				fmt.Fprintln(c.stdout, "no dead letters")
				return nil
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tCONSUMER\tEVENT\tTYPE\tDELIVERIES\tREASON")
			for _, d := range resp.GetDeadLetters() {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", d.GetSeq(), d.GetTime().AsTime().Local().Format(time.DateTime),
					d.GetConsumer(), short8(d.GetEventId()), d.GetEventType(), d.GetDeliveries(), oneLine(d.GetReason(), 100))
			}
			return tw.Flush()
		case "show":
			resp, err := cl.GetDeadLetter(ctx, &dlqv1.GetDeadLetterRequest{Seq: seqs[0]})
			if err != nil {
				return err
			}
			d := resp.GetDeadLetter()
			if o.json {
				printJSON(c.stdout, d)
				return nil
			}
			fmt.Fprintf(c.stdout, "seq:         %d\nkind:        %s\nconsumer:    %s\nreason:      %s\ndeliveries:  %d\noriginal:    %s seq %d on %s\nevent:       %s %s\ntime:        %s\n",
				d.GetSeq(), d.GetKind(), d.GetConsumer(), d.GetReason(), d.GetDeliveries(), d.GetStream(), d.GetStreamSeq(), d.GetSubject(),
				d.GetEventId(), d.GetEventType(), d.GetTime().AsTime().Local().Format(time.RFC3339))
			keys := make([]string, 0, len(d.GetHeaders()))
			for k := range d.GetHeaders() {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			fmt.Fprintln(c.stdout, "headers:")
			for _, k := range keys {
				fmt.Fprintf(c.stdout, "  %s: %s\n", k, d.GetHeaders()[k])
			}
			fmt.Fprintf(c.stdout, "payload:     %d bytes\n", len(d.GetData()))
			return nil
		default:
			for _, s := range seqs {
				resp, err := cl.ReplayDeadLetter(ctx, &dlqv1.ReplayDeadLetterRequest{Seq: s})
				if err != nil {
					return fmt.Errorf("replaying %d: %w", s, err)
				}
				if o.json {
					printJSON(c.stdout, resp)
					continue
				}
				fmt.Fprintf(c.stdout, "replayed %d to %s (stream seq %d)\n", s, resp.GetSubject(), resp.GetStreamSeq())
			}
			return nil
		}
	}
	return c
}

func oneLine(s string, n int) string {
	b := []rune(s)
	for i, r := range b {
		if r == '\n' || r == '\t' {
			b[i] = ' '
		}
	}
	if len(b) > n {
		return string(b[:n-1]) + "…"
	}
	return string(b)
}
