package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	dashboardsv1 "github.com/shiploop/shiploop/proto/shiploop/dashboards/v1"
)

func dashboardsClient(o clientOptions) (dashboardsv1.DashboardServiceClient, func(), error) {
	conn, err := o.conn()
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w (set --server or SHIPLOOP_SERVER)", o.server, err)
	}
	return dashboardsv1.NewDashboardServiceClient(conn), func() { conn.Close() }, nil
}

func doraCommand() *command {
	var o clientOptions
	var repo, period, profile string
	c := newCommand("dora", "shiploop dora [flags] [REPOSITORY]",
		"Print the DORA metrics with their bucket.",
		`Deployment frequency, lead time for changes, change failure rate, time to
restore and rework rate of the production environment, for one repository
or all, over a period ending now, rated by a threshold profile.
Examples:
  shiploop dora
  shiploop dora --period 90d --profile fourkeys acme/web
  shiploop dora --json`)
	clientFlags(c, &o)
	c.flags.StringVar(&period, "period", "30d", "period ending now: 7d, 12w, 3m, 1y")
	c.flags.StringVar(&profile, "profile", "devlake_2023", "thresholds: devlake_2023, devlake_2021 or fourkeys")
	c.run = func(c *command, args []string) error {
		if len(args) > 1 {
			return usagef("at most one repository")
		}
		if len(args) == 1 {
			repo = args[0]
		}
		cl, done, err := dashboardsClient(o)
		if err != nil {
			return err
		}
		defer done()
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), time.Minute)
		defer cancel()
		resp, err := cl.Dora(ctx, &dashboardsv1.DoraRequest{Repository: repo, Period: period, Profile: profile})
		if err != nil {
			return fmt.Errorf("%w (is the dashboards service running at %s?)", err, o.server)
		}
		if o.json {
			printJSON(c.stdout, resp)
			return nil
		}
		scope := repo
		if scope == "" {
			scope = "all repositories"
		}
		fmt.Fprintf(c.stdout, "%s, %s to %s (%s): %d production deploys, %d failed\n", scope,
			resp.GetFrom().AsTime().Local().Format(time.DateOnly), resp.GetTo().AsTime().Local().Format(time.DateOnly),
			resp.GetProfile(), resp.GetDeploys(), resp.GetFailedDeploys())
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		for _, m := range resp.GetMetrics() {
			bucket := m.GetBucket()
			if bucket == "" {
				bucket = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", m.GetName(), m.GetDisplay(), bucket)
		}
		return tw.Flush()
	}
	return c
}

func dashboardsCommand() *command {
	var o clientOptions
	c := newCommand("dashboards", "shiploop dashboards [flags] rebuild",
		"Maintain the dashboards' read models.",
		`rebuild drops the read models and replays the EVENTS stream from its
start (what the stream still holds: 30 days by default); pages fill
again as it goes, and it returns when the replay reached the end.`)
	clientFlags(c, &o)
	c.run = func(c *command, args []string) error {
		if len(args) != 1 || args[0] != "rebuild" {
			return usagef("want 'dashboards rebuild'")
		}
		cl, done, err := dashboardsClient(o)
		if err != nil {
			return err
		}
		defer done()
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), 30*time.Minute)
		defer cancel()
		resp, err := cl.Rebuild(ctx, &dashboardsv1.RebuildRequest{})
		if err != nil {
			return fmt.Errorf("%w (is the dashboards service running at %s?)", err, o.server)
		}
		if o.json {
			printJSON(c.stdout, resp)
			return nil
		}
		fmt.Fprintf(c.stdout, "replayed %d events in %s\n", resp.GetEvents(), time.Duration(resp.GetDurationMs())*time.Millisecond)
		return nil
	}
	return c
}
