package version

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Mercurial versions follow the git rules with hg's own numbers:
//
//	changeset tagged v1.4.0 (a tag build)        -> 1.4.0
//	3 changesets since v1.4.0                    -> 1.4.1-dev.3+h1a2b3c4d5e6f
//	2 changesets since 2.0.0-rc.1                -> 2.0.0-rc.1.dev.2+h1a2b3c4d5e6f
//	no SemVer tag, 12 ancestors (itself included) -> 0.0.1-dev.12+h1a2b3c4d5e6f
//
// The distance is hg's changessincelatesttag: the changesets that are
// ancestors of the one built and not of the tagged one, as git describe
// counts. `hg tag` commits the tag to .hgtags, so that commit counts too:
// the changeset right after `hg tag v1.4.0` is 1.4.1-dev.1. The tag used is
// hg's latest SemVer tag (the nearest by longest path, which on a linear
// history is git's nearest by count); among several tags of that changeset
// the highest wins. Build metadata is "h" and the 12-digit short node, as
// `hg log -T {node|short}` shows it, so a version names its changeset.

// hgSemverPattern selects SemVer-looking tags in hg's latesttag().
const hgSemverPattern = `re:^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`

// FromTagDistance is the version n changesets after tag ("" for none) with
// build metadata meta; count is used only without a tag (the number of
// ancestors, the changeset itself included). Like FromDescribe, n = 0 (a
// push of the tagged changeset itself) is still a development version: only
// a tag build gets the tag's version.
func FromTagDistance(tag string, n, count int, meta string) (string, error) {
	if tag == "" {
		if count < 1 {
			return "", fmt.Errorf("no tag and %d ancestors", count)
		}
		return fmt.Sprintf("0.0.1-dev.%d+%s", count, meta), nil
	}
	v, ok := FromTag(tag)
	if !ok {
		return "", fmt.Errorf("tag %q is not a semver version", tag)
	}
	core, pre, isPre := strings.Cut(v, "-")
	if isPre {
		return fmt.Sprintf("%s-%s.dev.%d+%s", core, pre, n, meta), nil
	}
	parts := strings.Split(core, ".")
	patch, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil || patch == ^uint64(0) {
		return "", fmt.Errorf("tag %q: patch version %s is too large", tag, parts[2])
	}
	return fmt.Sprintf("%s.%s.%d-dev.%d+%s", parts[0], parts[1], patch+1, n, meta), nil
}

// ComputeHg returns the version of changeset node in the Mercurial
// repository at dir, using the hg command. tag is the tag being built for
// a tag build ("refs/tags/" allowed in front): a SemVer tag must name node
// and gives its version exactly.
func ComputeHg(ctx context.Context, dir, node, tag string) (string, error) {
	if node == "" || strings.HasPrefix(node, "-") {
		return "", fmt.Errorf("version: invalid changeset %q", node)
	}
	out, err := hgRun(ctx, dir, "log", "-r", node, "-T",
		`{node}\n{node|short}\n{revset("ancestors(%d)", rev)|count}\n{latesttag(r'`+hgSemverPattern+`') % "{tag} {changes}\n"}`)
	if err != nil {
		return "", fmt.Errorf("version: changeset %s: %w", node, err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 4 {
		return "", fmt.Errorf("version: changeset %s: unexpected hg output %q", node, out)
	}
	full, short := lines[0], lines[1]
	count, err := strconv.Atoi(lines[2])
	if err != nil {
		return "", fmt.Errorf("version: changeset %s: unexpected ancestor count %q", node, lines[2])
	}
	if name := strings.TrimPrefix(tag, "refs/tags/"); name != "" {
		if v, ok := FromTag(name); ok {
			target, err := hgRun(ctx, dir, "log", "-r", "tag(r're:^"+regexpQuote(name)+"$')", "-T", "{node}")
			switch {
			case err != nil || target == "":
				return "", fmt.Errorf("version: tag %s for changeset %s is not in the repository", name, node)
			case target != full:
				return "", fmt.Errorf("version: tag %s names %s, not changeset %s", name, target, node)
			}
			return v, nil
		}
	}
	best, changes := "", 0
	for _, l := range lines[3:] {
		name, n, ok := strings.Cut(l, " ")
		if !ok || name == "null" {
			continue
		}
		if _, ok := FromTag(name); !ok {
			continue
		}
		c, err := strconv.Atoi(n)
		if err != nil {
			return "", fmt.Errorf("version: changeset %s: unexpected distance %q", node, n)
		}
		if best == "" || compare(name, best) > 0 {
			best, changes = name, c
		}
	}
	v, err := FromTagDistance(best, changes, count, "h"+short)
	if err != nil {
		return "", fmt.Errorf("version: changeset %s: %w", node, err)
	}
	return v, nil
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func hgRun(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "hg", append([]string{"--cwd", dir, "--noninteractive"}, args...)...)
	cmd.Env = append(os.Environ(), "HGPLAIN=1", "LC_ALL=C")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hg %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}
