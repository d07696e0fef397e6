package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

func completionCommand() *command {
	c := newCommand("completion", "shiploop completion bash|zsh|fish",
		"Print a shell completion script for commands and their flags.",
		`Examples:
  source <(shiploop completion bash)                  # bash, this shell
  shiploop completion bash > /etc/bash_completion.d/shiploop
  shiploop completion zsh > "${fpath[1]}/_shiploop"   # zsh
  shiploop completion fish > ~/.config/fish/completions/shiploop.fish`)
	c.run = func(c *command, args []string) error {
		if len(args) != 1 {
			return usagef("want one shell: bash, zsh or fish")
		}
		spec := completionSpec()
		switch args[0] {
		case "bash":
			writeBash(c.stdout, spec)
		case "zsh":
			fmt.Fprintln(c.stdout, "#compdef shiploop\nautoload -U +X bashcompinit && bashcompinit")
			writeBash(c.stdout, spec)
		case "fish":
			writeFish(c.stdout, spec)
		default:
			return usagef("unknown shell %q: want bash, zsh or fish", args[0])
		}
		return nil
	}
	return c
}

type completionCmd struct {
	name, summary string
	flags         []*flag.Flag
}

func completionSpec() []completionCmd {
	var out []completionCmd
	for name, c := range commands() {
		if name == "completion" {
			continue
		}
		cc := completionCmd{name: name, summary: c.summary}
		c.flags.VisitAll(func(f *flag.Flag) { cc.flags = append(cc.flags, f) })
		out = append(out, cc)
	}
	out = append(out, completionCmd{name: "completion", summary: "Print a shell completion script"})
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func writeBash(w io.Writer, spec []completionCmd) {
	var names []string
	for _, c := range spec {
		names = append(names, c.name)
	}
	fmt.Fprintf(w, `# bash completion for shiploop
_shiploop() {
  local cur cmd
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W %q -- "$cur") )
    return
  fi
  cmd="${COMP_WORDS[1]}"
  case "$cmd" in
`, strings.Join(names, " "))
	for _, c := range spec {
		var words []string
		for _, f := range c.flags {
			words = append(words, "--"+f.Name)
		}
		switch c.name {
		case "completion":
			words = append(words, "bash", "zsh", "fish")
		case "token":
			words = append(words, "create", "revoke", "ls")
		}
		fmt.Fprintf(w, "    %s) COMPREPLY=( $(compgen -W %q -- \"$cur\") ) ;;\n", c.name, strings.Join(words, " "))
	}
	fmt.Fprint(w, `  esac
}
complete -o default -F _shiploop shiploop
`)
}

func writeFish(w io.Writer, spec []completionCmd) {
	fmt.Fprintln(w, "# fish completion for shiploop")
	fmt.Fprintln(w, "complete -c shiploop -f")
	for _, c := range spec {
		fmt.Fprintf(w, "complete -c shiploop -n __fish_use_subcommand -a %s -d %s\n", c.name, fishQuote(c.summary))
		for _, f := range c.flags {
			fmt.Fprintf(w, "complete -c shiploop -n '__fish_seen_subcommand_from %s' -l %s -d %s\n", c.name, f.Name, fishQuote(f.Usage))
		}
	}
	fmt.Fprintln(w, "complete -c shiploop -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'")
	fmt.Fprintln(w, "complete -c shiploop -n '__fish_seen_subcommand_from token' -a 'create revoke ls'")
}

func fishQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}
