package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shiploop/shiploop/pkg/gatepolicy"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	gatesv1 "github.com/shiploop/shiploop/proto/shiploop/gates/v1"
)

func gateCommand() *command {
	var o clientOptions
	c := newCommand("gate", "shiploop gate [flags] show BUILD | shiploop gate [flags] policy [REPOSITORY]",
		"Show a build's quality gate, or the policy a repository gets.",
		`show prints the gate's verdict and a table of its conditions (value, threshold, verdict),
the reports read and the first new findings; BUILD is `+buildRefHelp+`.
policy prints the policy used when a repository's .shiploop.yml has no gate section.
Examples:
  shiploop gate show acme/web#12
  shiploop gate --json show acme/web#12
  shiploop gate policy acme/web`)
	clientFlags(c, &o)
	c.run = func(c *command, args []string) error {
		if len(args) < 1 || (args[0] == "show" && len(args) != 2) || (args[0] == "policy" && len(args) > 2) || (args[0] != "show" && args[0] != "policy") {
			return usagef("want 'gate show BUILD' (%s) or 'gate policy [REPOSITORY]'", buildRefHelp)
		}
		conn, err := o.conn()
		if err != nil {
			return fmt.Errorf("connecting to %s: %w (set --server or SHIPLOOP_SERVER)", o.server, err)
		}
		defer conn.Close()
		cl := gatesv1.NewGateServiceClient(conn)
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), 30*time.Second)
		defer cancel()
		if args[0] == "policy" {
			repo := ""
			if len(args) == 2 {
				repo = args[1]
			}
			resp, err := cl.GetPolicy(ctx, &gatesv1.GetPolicyRequest{Repository: repo})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp)
				return nil
			}
			fmt.Fprintf(c.stdout, "policy (%s)\n", resp.GetSource())
			for _, cond := range resp.GetPolicy().GetConditions() {
				line := fmt.Sprintf("  %s %s %s  %s", cond.GetMetric(), cond.GetOperator(), num(cond.GetThreshold()), cond.GetScope())
				if v := cond.GetOnNoData(); v != "" {
					line += "  " + gatepolicy.OnNoDataKey + ": " + v
				}
				fmt.Fprintln(c.stdout, line)
			}
			if e := resp.GetPolicy().GetExpression(); e != "" {
				fmt.Fprintf(c.stdout, "  expression: %s\n", e)
			}
			onNoData := resp.GetPolicy().GetOnNoData()
			if onNoData == "" {
				onNoData = gatepolicy.OnNoDataFail
			}
			fmt.Fprintf(c.stdout, "  %s: %s\n", gatepolicy.OnNoDataKey, onNoData)
			return nil
		}
		ref, err := buildRequest(args[1])
		if err != nil {
			return err
		}
		req := &gatesv1.GetEvaluationRequest{BuildId: ref.GetId(), Repository: ref.GetRepository(), Number: ref.GetNumber()}
		if ref.GetId() != "" {
			// A chain id names its latest build; a build id stays as it is.
			if req.BuildId, err = resolveBuildID(ctx, buildsv1.NewBuildServiceClient(conn), ref.GetId()); err != nil {
				return err
			}
		}
		resp, err := cl.GetEvaluation(ctx, req)
		if err != nil {
			return err
		}
		if o.json {
			printJSON(c.stdout, resp.GetEvaluation())
			return nil
		}
		printGate(c, resp.GetEvaluation())
		return nil
	}
	return c
}

func printGate(c *command, e *gatesv1.Evaluation) {
	r := e.GetResult()
	st := strings.ToLower(strings.TrimPrefix(r.GetStatus().String(), "GATE_STATUS_"))
	fmt.Fprintf(c.stdout, "%s #%d  %s  %s  gate %s (revision %d, policy from %s)\n", r.GetRepository(), r.GetBuildNumber(), r.GetRef(), short(r.GetCommit()), strings.ToUpper(st), r.GetRevision(), r.GetPolicySource())
	fmt.Fprintf(c.stdout, "%s\n\n", r.GetSummary())
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONDITION\tSCOPE\tVALUE\tTHRESHOLD\tVERDICT")
	for _, cr := range r.GetConditions() {
		name, scope, thr := cr.GetMetric(), cr.GetScope(), cr.GetOperator()+" "+num(cr.GetThreshold())
		if cr.GetExpression() != "" {
			name, scope, thr = cr.GetExpression(), "", "true"
		}
		val := "no data"
		if cr.GetHasValue() {
			val = num(cr.GetValue())
			if m, _ := gatepolicy.Lookup(cr.GetMetric()); m.Unit == "%" {
				val = gatepolicy.FormatPercent(cr.GetValue()) // as coverage is shown everywhere
			}
			if cr.GetExpression() != "" {
				val = strconv.FormatBool(cr.GetValue() == 1)
			}
		}
		verdict := cr.GetVerdict()
		if cr.GetDetail() != "" && cr.GetVerdict() != "passed" && cr.GetVerdict() != "failed" {
			verdict += " (" + cr.GetDetail() + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, scope, val, thr, verdict)
	}
	tw.Flush()
	if len(e.GetReports()) > 0 {
		fmt.Fprintf(c.stdout, "\nreports: %d findings, %d new\n", r.GetIssues(), r.GetNewIssues())
		for _, rep := range e.GetReports() {
			if rep.GetError() != "" {
				fmt.Fprintf(c.stdout, "  %s (%s): ERROR %s\n", rep.GetName(), rep.GetFormat(), rep.GetError())
			} else {
				fmt.Fprintf(c.stdout, "  %s (%s): %d findings\n", rep.GetName(), rep.GetFormat(), rep.GetFindings())
			}
		}
	}
	if len(e.GetNewFindings()) > 0 {
		fmt.Fprintln(c.stdout, "\nnew findings:")
		for _, f := range e.GetNewFindings() {
			fmt.Fprintf(c.stdout, "  %s:%d:%d  %s  %s/%s  %s\n", f.GetPath(), f.GetLine(), f.GetColumn(), f.GetLevel(), f.GetTool(), f.GetRule(), f.GetMessage())
		}
	}
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
