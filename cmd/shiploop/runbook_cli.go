package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/status"

	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// optionFlag is --option name=value, repeatable (values may hold commas).
type optionFlag map[string]string

func (o optionFlag) String() string {
	var out []string
	for k, v := range o {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func (o optionFlag) Set(v string) error {
	name, val, ok := strings.Cut(v, "=")
	if name = strings.TrimSpace(name); !ok || name == "" {
		return fmt.Errorf("want name=value, got %q", v)
	}
	o[name] = val
	return nil
}

// runbookCommand: runbooks of .shiploop.yml (runbooks:) run by hand, and
// their audit trail.
func runbookCommand() *command {
	var o clientOptions
	var env string
	var follow bool
	var limit int
	opts := optionFlag{}
	c := newCommand("runbook", "shiploop runbook <ls|run|history|show|logs> ...",
		"Runbooks: the named operational jobs and data copies of .shiploop.yml, run by hand or on a schedule, with who ran what.",
		`  runbook ls REPO [--env ENV]          the runbooks of the default branch's file, with their options
  runbook run REPO NAME [--env ENV] [--option k=v ...] [--follow]   run it (needs a write token); prints the run id and state
  runbook history REPO [NAME]          who ran what, when, with which options, and the result
  runbook show RUN_ID                  one run
  runbook logs [-f] RUN_ID             the run's job log
A schedule with runbook: NAME runs it at its slots, recorded as "schedule <name>".
Options reach the runbook's steps only as OPTION_<NAME> variables. With --follow,
run prints the log and exits 1 unless the run succeeded. Flags may come before
or after the arguments.`)
	clientFlags(c, &o)
	c.flags.StringVar(&env, "env", "", "run: the environment, instead of the runbook's (task runbooks); ls: only the runbooks against, from or to it")
	c.flags.Var(opts, "option", "run: an option as name=value (repeat for more)")
	c.flags.BoolVar(&follow, "follow", false, "run, logs: print the log until the run ends")
	c.flags.BoolVar(&follow, "f", false, "short for --follow")
	c.flags.IntVar(&limit, "limit", 50, "history: at most this many runs")
	c.run = func(c *command, args []string) error {
		args, err := interleaved(c.flags, args)
		if err != nil {
			return usageError{err.Error()}
		}
		if len(args) == 0 {
			return usagef("say what: ls, run, history, show or logs")
		}
		nargs := func(min, max int, what string) error {
			if n := len(args) - 1; n < min || n > max {
				return usagef("runbook %s takes %s", args[0], what)
			}
			return nil
		}
		switch args[0] {
		case "run":
			err = nargs(2, 2, "REPO NAME")
		case "ls":
			err = nargs(1, 1, "one REPO")
		case "history":
			err = nargs(1, 2, "REPO [NAME]")
		case "show":
			err = nargs(1, 1, "one RUN_ID")
		case "logs":
			err = nargs(1, 1, "one RUN_ID")
		default:
			return usagef("unknown runbook command %q: ls, run, history, show or logs", args[0])
		}
		if err != nil {
			return err
		}
		conn, err := o.conn()
		if err != nil {
			return fmt.Errorf("connecting to %s: %w (set --server or SHIPLOOP_SERVER)", o.server, err)
		}
		defer conn.Close()
		cl := deploysv1.NewRunbookServiceClient(conn)
		dl := deploysv1.NewDeployServiceClient(conn)
		base, stop := signalContext()
		defer stop()
		ctx, cancel := context.WithTimeout(o.ctx(base), 30*time.Second)
		defer cancel()
		switch args[0] {
		case "run":
			resp, err := cl.RunRunbook(ctx, &deploysv1.RunRunbookRequest{Repository: args[1], Runbook: args[2], Environment: env, Options: opts})
			if err != nil {
				return plainStatus(err)
			}
			r := resp.GetRun()
			if o.json {
				printJSON(c.stdout, r)
			} else {
				fmt.Fprintf(c.stdout, "run %s %s%s\n", r.GetRunId(), r.GetStatus(), reasonSuffix(r.GetReason()))
			}
			if !follow {
				return nil
			}
			return followRun(o.ctx(base), c.stdout, cl, dl, r, o.json)
		case "ls":
			resp, err := cl.ListRunbooks(ctx, &deploysv1.ListRunbooksRequest{Repository: args[1], Environment: env})
			if err != nil {
				return plainStatus(err)
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			printRunbooks(c.stdout, resp)
		case "history":
			req := &deploysv1.ListRunbookRunsRequest{Repository: args[1], Limit: int32(limit)}
			if len(args) == 3 {
				req.Runbook = args[2]
			}
			resp, err := cl.ListRunbookRuns(ctx, req)
			if err != nil {
				return plainStatus(err)
			}
			if o.json {
				for _, r := range resp.GetRuns() {
					printJSON(c.stdout, r)
				}
				return nil
			}
			printRunbookRuns(c.stdout, resp.GetRuns())
		case "show":
			resp, err := cl.GetRunbookRun(ctx, &deploysv1.GetRunbookRunRequest{RunId: args[1]})
			if err != nil {
				return plainStatus(err)
			}
			if o.json {
				printJSON(c.stdout, resp.GetRun())
				return nil
			}
			describeRunbookRun(c.stdout, resp.GetRun())
		case "logs":
			cancel() // a followed log may outlast 30 s
			return runLogs(o.ctx(base), c.stdout, dl, args[1], follow, o.json)
		}
		return nil
	}
	return c
}

// printRunbooks lists runbooks as a table, then each one's options.
func printRunbooks(w io.Writer, resp *deploysv1.ListRunbooksResponse) {
	if len(resp.GetRunbooks()) == 0 {
		fmt.Fprintf(w, "no runbooks in the .shiploop.yml of %s\n", resp.GetVersion())
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tENVIRONMENT\tSTEPS\tOPTIONS")
	for _, r := range resp.GetRunbooks() {
		where := r.GetEnvironment()
		if r.GetKind() == "data" {
			where = r.GetFromEnvironment() + " -> " + r.GetToEnvironment()
		}
		if where == "" {
			where = "-"
		}
		var opts []string
		for _, o := range r.GetOptions() {
			d := o.GetName() + ":" + o.GetType()
			if o.GetType() == "enum" {
				d += "(" + strings.Join(o.GetValues(), "|") + ")"
			}
			if o.GetRequired() {
				d += " required"
			}
			if o.GetHasDefault() {
				d += " =" + o.GetDefault()
			}
			opts = append(opts, d)
		}
		if len(opts) == 0 {
			opts = []string{"-"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.GetName(), r.GetKind(), where, strings.Join(r.GetSteps(), ","), strings.Join(opts, ", "))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "from the .shiploop.yml of %s (build %s)\n", resp.GetVersion(), resp.GetBuildId())
}

// plainStatus turns a gRPC error into its message: a refused option reads
// as the server wrote it ("option tier: "db" is not one of web, worker").
func plainStatus(err error) error {
	if s, ok := status.FromError(err); ok && s.Message() != "" {
		return errors.New(s.Message())
	}
	return err
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

func runDone(s string) bool { return s == "succeeded" || s == "failed" || s == "canceled" }

// followRun waits for r's job (a run behind a lock waits), prints its log
// to the end, then waits for the run's result: an error unless it
// succeeded.
func followRun(ctx context.Context, w io.Writer, cl deploysv1.RunbookServiceClient, dl deploysv1.DeployServiceClient, r *eventsv1.RunbookRun, asJSON bool) error {
	reason := r.GetReason()
	for r.GetJobId() == "" && !runDone(r.GetStatus()) {
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return err
		}
		resp, err := cl.GetRunbookRun(ctx, &deploysv1.GetRunbookRunRequest{RunId: r.GetRunId()})
		if err != nil {
			return plainStatus(err)
		}
		r = resp.GetRun()
		if !asJSON && r.GetReason() != reason && r.GetReason() != "" {
			fmt.Fprintf(w, "run %s %s (%s)\n", r.GetRunId(), r.GetStatus(), r.GetReason())
		}
		reason = r.GetReason()
	}
	if r.GetJobId() != "" {
		if err := runLogs(ctx, w, dl, r.GetRunId(), true, asJSON); err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "shiploop runbook: reading the log: %v\n", err)
		}
	}
	// The job's end reaches deploys a moment after its log's end marker.
	for !runDone(r.GetStatus()) {
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
		resp, err := cl.GetRunbookRun(ctx, &deploysv1.GetRunbookRunRequest{RunId: r.GetRunId()})
		if err != nil {
			return plainStatus(err)
		}
		r = resp.GetRun()
	}
	if asJSON {
		printJSON(w, r)
	} else {
		fmt.Fprintf(w, "run %s %s%s\n", r.GetRunId(), r.GetStatus(), reasonSuffix(r.GetReason()))
	}
	if r.GetStatus() != "succeeded" {
		return fmt.Errorf("runbook %s run %s %s%s", r.GetRunbook(), r.GetRunId(), r.GetStatus(), reasonSuffix(r.GetReason()))
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// runLogs prints a run's job log (deploys' StreamLogs takes a run id).
func runLogs(ctx context.Context, w io.Writer, dl deploysv1.DeployServiceClient, id string, follow, asJSON bool) error {
	st, err := dl.StreamLogs(ctx, &deploysv1.StreamLogsRequest{DeployId: id, Follow: follow})
	if err != nil {
		return plainStatus(err)
	}
	step := "\x00"
	for {
		resp, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return plainStatus(err)
		}
		l := resp.GetLine()
		if asJSON {
			printJSON(w, l)
			continue
		}
		if l.GetStep() != step {
			step = l.GetStep()
			if step != "" {
				fmt.Fprintf(w, "--- step %s\n", step)
			}
		}
		fmt.Fprintf(w, "%s %s\n", l.GetTime().AsTime().Local().Format("15:04:05.000"), l.GetText())
	}
}

func runbookRunOptions(r *eventsv1.RunbookRun) string {
	var out []string
	for k, v := range r.GetOptions() {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, " ")
}

func runWhere(r *eventsv1.RunbookRun) string {
	if r.GetKind() == "data" {
		return r.GetFromEnvironment() + " -> " + r.GetEnvironment()
	}
	return orDash(r.GetEnvironment())
}

func printRunbookRuns(w io.Writer, runs []*eventsv1.RunbookRun) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tRUNBOOK\tENVIRONMENT\tBY\tWHEN\tOPTIONS\tRESULT")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.GetRunId(), r.GetRunbook(), runWhere(r), r.GetBy(),
			r.GetCreatedAt().AsTime().Local().Format("2006-01-02 15:04:05"), runbookRunOptions(r), r.GetStatus()+reasonSuffix(r.GetReason()))
	}
	_ = tw.Flush()
}

func describeRunbookRun(w io.Writer, r *eventsv1.RunbookRun) {
	at := func(name string, t interface{ AsTime() time.Time }, set bool) {
		if set {
			fmt.Fprintf(w, "%-12s %s\n", name+":", t.AsTime().Local().Format(time.RFC3339))
		}
	}
	fmt.Fprintf(w, "run %s: runbook %s of %s (%s)\n", r.GetRunId(), r.GetRunbook(), r.GetRepository(), r.GetKind())
	fmt.Fprintf(w, "%-12s %s\n", "environment:", runWhere(r))
	fmt.Fprintf(w, "%-12s %s\n", "by:", r.GetBy())
	fmt.Fprintf(w, "%-12s %s\n", "options:", runbookRunOptions(r))
	fmt.Fprintf(w, "%-12s %s%s\n", "result:", r.GetStatus(), reasonSuffix(r.GetReason()))
	at("created", r.GetCreatedAt(), r.GetCreatedAt() != nil)
	at("started", r.GetStartedAt(), r.GetStartedAt() != nil)
	at("finished", r.GetFinishedAt(), r.GetFinishedAt() != nil)
	fmt.Fprintf(w, "%-12s %s (build %s)\n", "commit:", orDash(r.GetCommit()), orDash(r.GetBuildId()))
	fmt.Fprintf(w, "%-12s %s\n", "job:", orDash(r.GetJobId()))
}
