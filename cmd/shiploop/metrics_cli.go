package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	metricsv1 "github.com/shiploop/shiploop/proto/shiploop/metrics/v1"
)

func metricsCommand() *command {
	var o clientOptions
	var from, until string
	var maxPoints int
	c := newCommand("metrics", "shiploop metrics [flags] query TARGET... | shiploop metrics [flags] find QUERY",
		"Evaluate Graphite targets or search the series index.",
		`query prints each series' points (time, value); find lists the nodes a glob matches.
Examples:
  shiploop metrics --from -1h query 'sumSeries(servers.*.cpu.user)'
  shiploop metrics find 'shiploop.builds.*'`)
	clientFlags(c, &o)
	c.commonFlags()
	c.flags.StringVar(&from, "from", "-1h", "start: -1h, -7d, unix seconds, HH:MM_YYYYMMDD (query)")
	c.flags.StringVar(&until, "until", "now", "end (query)")
	c.flags.IntVar(&maxPoints, "max-points", 0, "consolidate each series to at most this many points (query)")
	// Each subcommand's own flags (subflags.go): anything else is refused.
	c.sub("query", "from", "until", "max-points")
	c.sub("find")
	c.run = func(c *command, args []string) error {
		if len(args) < 2 || (args[0] != "query" && args[0] != "find") {
			return usagef("want 'metrics query TARGET...' or 'metrics find QUERY'")
		}
		conn, err := o.conn()
		if err != nil {
			return fmt.Errorf("connecting to %s: %w (set --server or SHIPLOOP_SERVER)", o.server, err)
		}
		defer conn.Close()
		cl := metricsv1.NewMetricsServiceClient(conn)
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), time.Minute)
		defer cancel()
		if args[0] == "find" {
			resp, err := cl.FindSeries(ctx, &metricsv1.FindSeriesRequest{Query: args[1]})
			if err != nil {
				return err
			}
			for _, n := range resp.GetNodes() {
				if o.json {
					printJSON(c.stdout, n)
					continue
				}
				kind := "leaf"
				if n.GetHasChildren() {
					kind = "branch"
					if n.GetLeaf() {
						kind = "branch+leaf"
					}
				}
				fmt.Fprintf(c.stdout, "%s\t%s\n", n.GetPath(), kind)
			}
			return nil
		}
		resp, err := cl.Query(ctx, &metricsv1.QueryRequest{Targets: args[1:], From: from, Until: until, MaxDataPoints: int32(maxPoints)})
		if err != nil {
			return err
		}
		for _, s := range resp.GetSeries() {
			if o.json {
				printJSON(c.stdout, s)
				continue
			}
			fmt.Fprintf(c.stdout, "%s\n", s.GetName())
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			for i, v := range s.GetValues() {
				t := time.Unix(s.GetStart()+int64(i)*s.GetStep(), 0).Local().Format(time.DateTime)
				val := "null"
				if !(i < len(s.GetNulls()) && s.GetNulls()[i]) && !math.IsNaN(v) {
					val = strings.TrimSuffix(fmt.Sprintf("%g", v), ".0")
				}
				fmt.Fprintf(tw, "  %s\t%s\n", t, val)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		return nil
	}
	return c
}
