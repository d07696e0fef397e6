package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// subcommand is one subcommand's own flag set: the flags it takes besides
// the ones every subcommand of the command takes (the client flags). The
// flags are the command's own *flag.Flag values (one variable each), so a
// flag parsed on the command's set is the subcommand's.
type subcommand struct {
	path  string // the words after the command: "ls", "project create"
	flags *flag.FlagSet
	// label: the paths declared together ("ls|list"), shown once in help.
	label string
}

// sub declares that subcommand path (one or more words, or several paths
// separated by "|": "ignore|unresolve") takes the command's flags named,
// besides the common ones (see common). Every name must be a flag of the
// command already (a typo panics at start-up, which the tests catch).
// Once a command declares subcommands, a flag given on the command line
// that its subcommand does not take is an error naming the subcommand's
// flags: `errors ls --rate-limit 5` is refused, not ignored.
func (c *command) sub(paths string, names ...string) {
	for _, path := range strings.Split(paths, "|") {
		path = strings.Join(strings.Fields(path), " ")
		fs := flag.NewFlagSet(c.name+" "+path, flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		for _, n := range append(append([]string(nil), c.common...), names...) {
			f := c.flags.Lookup(n)
			if f == nil {
				panic(fmt.Sprintf("%s %s: no flag --%s", c.name, path, n))
			}
			fs.Var(f.Value, f.Name, f.Usage)
		}
		c.subs = append(c.subs, subcommand{path: path, flags: fs, label: paths})
	}
}

// commonFlags names the flags every subcommand of c takes: those defined
// so far (call it after clientFlags, before the command's own flags).
func (c *command) commonFlags() {
	c.common = nil
	c.flags.VisitAll(func(f *flag.Flag) { c.common = append(c.common, f.Name) })
}

// subFor is the subcommand args name: the longest declared path that
// args begin with.
func (c *command) subFor(args []string) *subcommand {
	var best *subcommand
	bestLen := 0
	for i := range c.subs {
		words := strings.Fields(c.subs[i].path)
		if len(words) > len(args) || len(words) <= bestLen {
			continue
		}
		match := true
		for j, w := range words {
			if args[j] != w {
				match = false
				break
			}
		}
		if match {
			best, bestLen = &c.subs[i], len(words)
		}
	}
	return best
}

// checkSubFlags refuses the flags set on the command line (set) that the
// subcommand c.args names does not take. An undeclared subcommand (a
// typo, none) is left to the command, which says what it wants.
func (c *command) checkSubFlags(set map[string]bool) error {
	if len(c.subs) == 0 {
		return nil
	}
	s := c.subFor(c.args)
	if s == nil {
		return nil
	}
	var bad []string
	for n := range set {
		if s.flags.Lookup(n) == nil {
			bad = append(bad, "--"+n)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("%s %s does not take %s; it takes %s", c.name, s.path, strings.Join(bad, ", "), c.subFlagList(s, true))
}

// subFlagList words a subcommand's flags: its own, then (with common)
// the common ones.
func (c *command) subFlagList(s *subcommand, common bool) string {
	var own []string
	isCommon := map[string]bool{}
	for _, n := range c.common {
		isCommon[n] = true
	}
	s.flags.VisitAll(func(f *flag.Flag) {
		if !isCommon[f.Name] {
			own = append(own, "--"+f.Name)
		}
	})
	out := "no flags of its own"
	if len(own) > 0 {
		out = strings.Join(own, ", ")
	}
	if common && len(c.common) > 0 {
		out += " (and " + strings.Join(prefixed(c.common), ", ") + ")"
	}
	return out
}

func prefixed(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "--" + n
	}
	return out
}

// printSubFlags lists, in --help, which flags each subcommand takes.
func (c *command) printSubFlags(w io.Writer) {
	if len(c.subs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nFlags by subcommand (every one also takes %s):\n", strings.Join(prefixed(c.common), ", "))
	for i := range c.subs {
		if i > 0 && c.subs[i].label == c.subs[i-1].label {
			continue
		}
		fmt.Fprintf(w, "  %s: %s\n", strings.ReplaceAll(c.subs[i].label, "|", " | "), c.subFlagList(&c.subs[i], false))
	}
}
