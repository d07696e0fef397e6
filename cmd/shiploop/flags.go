package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// command is one subcommand: its flags, what it does, and how to run it.
type command struct {
	name    string
	usage   string // "shiploop watch [flags]"
	summary string
	detail  string
	flags   *flag.FlagSet
	run     func(c *command, args []string) error
	stdout  io.Writer
	stderr  io.Writer
	args    []string // positional arguments, flags removed
	// subs: each subcommand's own flag set (subflags.go); common: the
	// flags all of them take.
	subs   []subcommand
	common []string
	// examples are shown at the end of --help (see examples.go).
	examples string
}

func newCommand(name, usage, summary, detail string) *command {
	c := &command{name: name, usage: usage, summary: summary, detail: detail, stdout: os.Stdout, stderr: os.Stderr}
	c.flags = flag.NewFlagSet(name, flag.ContinueOnError)
	c.flags.SetOutput(c.stderr)
	c.flags.Usage = c.printUsage
	return c
}

// envName is the SHIPLOOP_* variable that sets a flag: --nats-url -> SHIPLOOP_NATS_URL.
func envName(flagName string) string {
	return "SHIPLOOP_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (c *command) printUsage() {
	w := c.stderr
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", c.usage, c.summary)
	if c.detail != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.detail))
	}
	defer func() {
		if c.examples != "" {
			fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(c.examples, "\n"))
		}
	}()
	hasFlags := false
	c.flags.VisitAll(func(*flag.Flag) { hasFlags = true })
	if !hasFlags {
		return
	}
	fmt.Fprintf(w, "\nFlags (each also read from the SHIPLOOP_* variable shown):\n")
	c.flags.VisitAll(func(f *flag.Flag) {
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "  --%s\n        %s%s  [$%s]\n", f.Name, f.Usage, def, envName(f.Name))
	})
	c.printSubFlags(w)
}

// parse parses args, then fills every flag not given on the command line
// from its SHIPLOOP_* variable.
func (c *command) parse(args []string) error {
	// Flags may come before, between or after the positional arguments
	// ("shiploop builds get acme/web#3 --json"); "--" ends the flags.
	c.args = nil
	for {
		if err := c.flags.Parse(args); err != nil {
			return err
		}
		rest := c.flags.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			c.args = append(c.args, rest...)
			break
		}
		c.args = append(c.args, rest[0])
		args = rest[1:]
	}
	set := map[string]bool{}
	c.flags.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := c.checkSubFlags(set); err != nil {
		return err
	}
	var err error
	c.flags.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			set[f.Name] = true
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %v", envName(f.Name), v, e)
			}
		}
	})
	if err != nil {
		return err
	}
	return applyConfig(c.flags, set)
}

// listFlag is a repeatable string flag that also splits on commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// sinceFlag takes a duration ago ("10m") or an RFC 3339 time.
type sinceFlag struct{ t time.Time }

func (s *sinceFlag) String() string {
	if s.t.IsZero() {
		return ""
	}
	return s.t.Format(time.RFC3339)
}

func (s *sinceFlag) Set(v string) error {
	if d, err := time.ParseDuration(v); err == nil {
		s.t = time.Now().Add(-d)
		return nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return fmt.Errorf("want a duration ago (10m, 2h) or an RFC 3339 time (2026-11-25T10:00:00Z)")
	}
	s.t = t
	return nil
}

// boolFlag is a bool flag that remembers whether it was given, for fields
// where "unset" keeps what the server has.
type boolFlag struct {
	set, value bool
}

func (b *boolFlag) String() string {
	if !b.set {
		return ""
	}
	return strconv.FormatBool(b.value)
}

func (b *boolFlag) Set(v string) error {
	x, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("want true or false")
	}
	b.set, b.value = true, x
	return nil
}

// IsBoolFlag lets "--public-only" stand for "--public-only=true".
func (b *boolFlag) IsBoolFlag() bool { return true }

func (b *boolFlag) ptr() *bool {
	if !b.set {
		return nil
	}
	return &b.value
}
