package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shiploop/shiploop/cmd/shiploop/internal/cliparse"
	flagsv1 "github.com/shiploop/shiploop/proto/shiploop/flags/v1"
)

func flagsCommand() *command {
	var o clientOptions
	var env, def, rollout, desc, by string
	var variants, rules listRawFlag
	var disabled bool
	c := newCommand("flags", "shiploop flags [flags] set KEY | get KEY | ls | rm KEY",
		"Manage feature flags per environment; evaluate them over OFREP.",
		`A flag has named variants (JSON values), a default variant, targeting
rules tried in order ("ATTR OP VALUE[,VALUE] -> VARIANT"; OP is eq, neq,
in, not_in, starts_with, ends_with or contains; ATTR may be dotted:
user.plan) and an optional rollout ("PERCENT:VARIANT", stable per
targetingKey). Every change is a flag.changed event. Applications read flags
with any OpenFeature SDK and its OFREP provider pointed at the HTTP address,
passing "environment" in the evaluation context.
Exit status: 0 done, 1 refused (unknown flag, invalid definition), 2 usage.
Examples:
  shiploop flags set checkout.new-flow --env staging --variant on=true --variant off=false \
      --default off --rule 'email ends_with @acme.com -> on' --rollout 10:on
  shiploop flags set ui.color --env production --variant blue='"blue"' --variant green='"green"' --default green
  shiploop flags ls --env staging
  shiploop flags get checkout.new-flow --env staging --json
  shiploop flags rm ui.color --env production`)
	clientFlags(c, &o)
	c.commonFlags()
	c.flags.StringVar(&env, "env", "", "environment (required for set, get, rm)")
	c.flags.Var(&variants, "variant", "set: NAME=JSON variant (repeatable), e.g. on=true")
	c.flags.StringVar(&def, "default", "", "set: default variant")
	c.flags.Var(&rules, "rule", "set: targeting rule 'ATTR OP VALUES -> VARIANT' (repeatable, in order)")
	c.flags.StringVar(&rollout, "rollout", "", "set: PERCENT:VARIANT share of targeting keys")
	c.flags.BoolVar(&disabled, "disabled", false, "set: store the flag switched off (evaluates to the caller's default)")
	c.flags.StringVar(&desc, "description", "", "set: what the flag is for")
	c.flags.StringVar(&by, "by", "", "set, rm: who makes the change (recorded in the event)")
	// Each subcommand's own flags (subflags.go): anything else is refused.
	c.sub("set", "env", "variant", "default", "rule", "rollout", "disabled", "description", "by")
	c.sub("get|ls", "env")
	c.sub("rm", "env", "by")
	c.run = func(c *command, args []string) error {
		if len(args) == 0 {
			return usagef("want 'flags set KEY', 'flags get KEY', 'flags ls' or 'flags rm KEY'")
		}
		verb := args[0]
		switch {
		case verb == "ls" && len(args) != 1:
			return usagef("'flags ls' takes no arguments (filter with --env)")
		case (verb == "set" || verb == "get" || verb == "rm") && len(args) != 2:
			return usagef("'flags %s' takes one KEY", verb)
		case verb != "set" && verb != "get" && verb != "rm" && verb != "ls":
			return usagef("unknown 'flags %s': want set, get, ls or rm", verb)
		case verb != "ls" && env == "":
			return usagef("'flags %s' needs --env", verb)
		}
		var f *flagsv1.Flag
		if verb == "set" {
			var err error
			if f, err = buildFlag(args[1], env, variants, def, rules, rollout, !disabled, desc); err != nil {
				return usagef("%v", err)
			}
		}
		conn, err := o.conn()
		if err != nil {
			return fmt.Errorf("connecting to %s: %w (set --server or SHIPLOOP_SERVER)", o.server, err)
		}
		defer conn.Close()
		cl := flagsv1.NewFlagServiceClient(conn)
		ctx, cancel := context.WithTimeout(o.ctx(context.Background()), 30*time.Second)
		defer cancel()
		switch verb {
		case "set":
			resp, err := cl.SetFlag(ctx, &flagsv1.SetFlagRequest{Flag: f, By: by})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp.GetFlag())
				return nil
			}
			fmt.Fprintf(c.stdout, "flag %s in %s: version %d\n", resp.GetFlag().GetKey(), resp.GetFlag().GetEnvironment(), resp.GetFlag().GetVersion())
		case "get":
			resp, err := cl.GetFlag(ctx, &flagsv1.GetFlagRequest{Key: args[1], Environment: env})
			if err != nil {
				return err
			}
			if o.json {
				printJSON(c.stdout, resp.GetFlag())
				return nil
			}
			printFlags(c, []*flagsv1.Flag{resp.GetFlag()})
		case "rm":
			if _, err := cl.DeleteFlag(ctx, &flagsv1.DeleteFlagRequest{Key: args[1], Environment: env, By: by}); err != nil {
				return err
			}
			if !o.json {
				fmt.Fprintf(c.stdout, "flag %s removed from %s\n", args[1], env)
			}
		default:
			resp, err := cl.ListFlags(ctx, &flagsv1.ListFlagsRequest{Environment: env})
			if err != nil {
				return err
			}
			if o.json {
				for _, f := range resp.GetFlags() {
					printJSON(c.stdout, f)
				}
				return nil
			}
			printFlags(c, resp.GetFlags())
		}
		return nil
	}
	return c
}

func printFlags(c *command, fs []*flagsv1.Flag) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tENV\tON\tDEFAULT\tRULES\tROLLOUT\tVERSION")
	for _, f := range fs {
		ro := "-"
		if f.GetRollout().GetVariant() != "" {
			ro = fmt.Sprintf("%d%%:%s", f.GetRollout().GetPercent(), f.GetRollout().GetVariant())
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\t%s\t%d\n", f.GetKey(), f.GetEnvironment(), f.GetEnabled(), f.GetDefaultVariant(), len(f.GetRules()), ro, f.GetVersion())
	}
	_ = tw.Flush()
}

// listRawFlag is a repeatable flag kept as given (no comma splitting: rule
// values and JSON contain commas).
type listRawFlag []string

func (l *listRawFlag) String() string     { return strings.Join(*l, " ") }
func (l *listRawFlag) Set(v string) error { *l = append(*l, v); return nil }

// buildFlag turns the set flags into a Flag; errors name the flag at fault.
func buildFlag(key, env string, variants []string, def string, rules []string, rollout string, enabled bool, desc string) (*flagsv1.Flag, error) {
	f := &flagsv1.Flag{Key: key, Environment: env, Enabled: enabled, Variants: map[string]string{}, DefaultVariant: def, Description: desc}
	for _, v := range variants {
		name, val, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--variant %q: want NAME=JSON, e.g. on=true or blue='\"blue\"'", v)
		}
		if !json.Valid([]byte(val)) {
			b, _ := json.Marshal(val) // a bare word is a string
			val = string(b)
		}
		f.Variants[name] = val
	}
	for _, r := range rules {
		rule, err := cliparse.Rule(r)
		if err != nil {
			return nil, err
		}
		f.Rules = append(f.Rules, &flagsv1.Rule{Attribute: rule.Attribute, Op: rule.Op, Values: rule.Values, Variant: rule.Variant})
	}
	if rollout != "" {
		p, v, ok := strings.Cut(rollout, ":")
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(p), "%"))
		if !ok || err != nil || v == "" {
			return nil, fmt.Errorf("--rollout %q: want PERCENT:VARIANT, e.g. 10:on", rollout)
		}
		f.Rollout = &flagsv1.Rollout{Percent: int32(n), Variant: strings.TrimSpace(v)}
	}
	if def == "" {
		return nil, fmt.Errorf("--default: required (one of the --variant names)")
	}
	return f, nil
}
