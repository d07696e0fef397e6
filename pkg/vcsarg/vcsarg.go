// Package vcsarg checks the values that reach a git or hg command line from
// outside: commit ids and refs from webhooks and the API, clone URLs from the
// API and configuration. A value that passes can still only ever be a
// positional argument (callers put --end-of-options or -- before it); these
// checks make sure it is also what it claims to be, so that no value from a
// webhook, the API or .shiploop.yml is read by git or hg as an option, a
// remote helper or a transport the operator did not allow.
package vcsarg

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// Commit checks a full commit id: 40 hexadecimal digits (git SHA-1, a
// Mercurial node) or 64 (git SHA-256). Upper case is accepted; callers
// that store the id should lower it (strings.ToLower).
func Commit(s string) error {
	if len(s) != 40 && len(s) != 64 {
		return fmt.Errorf("commit %s: want a full id of 40 or 64 hexadecimal digits, got %d characters", quote(s), len(s))
	}
	if !isHex(s) {
		return fmt.Errorf("commit %s: not hexadecimal", quote(s))
	}
	return nil
}

// CommitOrPrefix checks a commit id that may be abbreviated, as Bitbucket
// Cloud sends in pull request payloads (12 digits): 7 to 64 hexadecimal
// digits. The mirror resolves it to a full id before anything else uses it.
func CommitOrPrefix(s string) error {
	if len(s) < 7 || len(s) > 64 {
		return fmt.Errorf("commit %s: want 7 to 64 hexadecimal digits, got %d characters", quote(s), len(s))
	}
	if !isHex(s) {
		return fmt.Errorf("commit %s: not hexadecimal", quote(s))
	}
	return nil
}

func isHex(s string) bool {
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Ref checks a git ref name by git's own rules (git-check-ref-format(1)), a
// full name such as refs/heads/main or a short one such as main or
// release/1.2. Unlike git it also refuses a leading '-', which git allows
// in the middle of a full name but never as the first character of what it
// reads as an argument.
func Ref(s string) error {
	bad := func(why string) error { return fmt.Errorf("ref %s: %s", quote(s), why) }
	switch {
	case s == "":
		return bad("empty")
	case len(s) > 1024:
		return bad("longer than 1024 bytes")
	case s == "@":
		return bad(`"@" alone is not a ref name`)
	case strings.HasPrefix(s, "-"):
		return bad("starts with '-'")
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/"):
		return bad("starts or ends with '/'")
	case strings.HasSuffix(s, "."):
		return bad("ends with '.'")
	case strings.Contains(s, ".."):
		return bad(`contains ".."`)
	case strings.Contains(s, "//"):
		return bad(`contains "//"`)
	case strings.Contains(s, "@{"):
		return bad(`contains "@{"`)
	case !utf8.ValidString(s):
		return bad("not valid UTF-8")
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return bad("contains a control character")
		}
		if strings.ContainsRune(" ~^:?*[\\", c) {
			return bad(fmt.Sprintf("contains %q", c))
		}
	}
	for _, part := range strings.Split(s, "/") {
		if strings.HasPrefix(part, ".") {
			return bad("a component starts with '.'")
		}
		if strings.HasSuffix(part, ".lock") {
			return bad(`a component ends with ".lock"`)
		}
	}
	return nil
}

// HgName checks a Mercurial branch, bookmark or tag name from a webhook or
// the API. Mercurial allows nearly any text, so this refuses only what could
// be read as an option or break a command line or a revset: a leading '-',
// control characters and newlines, and more than 1024 bytes.
func HgName(s string) error {
	bad := func(why string) error { return fmt.Errorf("name %s: %s", quote(s), why) }
	switch {
	case s == "":
		return bad("empty")
	case len(s) > 1024:
		return bad("longer than 1024 bytes")
	case strings.HasPrefix(s, "-"):
		return bad("starts with '-'")
	case !utf8.ValidString(s):
		return bad("not valid UTF-8")
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return bad("contains a control character")
		}
	}
	return nil
}

// The transports a clone URL can name.
const (
	HTTPS = "https"
	HTTP  = "http"
	SSH   = "ssh"
	Git   = "git"
	File  = "file"
)

// AllTransports are the transports Transports can allow, in the order help
// texts list them.
var AllTransports = []string{HTTPS, HTTP, SSH, Git, File}

// DefaultTransports are allowed unless the operator says otherwise: local
// paths (file) only when enabled, plain http never by default.
const DefaultTransports = "https,ssh,git"

// Transports is the set of transports an operator allows for clone URLs
// (--allowed-transports).
type Transports struct{ allowed []string }

// ParseTransports reads a comma-separated list such as "https,ssh,file".
func ParseTransports(s string) (Transports, error) {
	var t Transports
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		if !slices.Contains(AllTransports, f) {
			return Transports{}, fmt.Errorf("unknown transport %q (known: %s)", f, strings.Join(AllTransports, ", "))
		}
		if !slices.Contains(t.allowed, f) {
			t.allowed = append(t.allowed, f)
		}
	}
	if len(t.allowed) == 0 {
		return Transports{}, fmt.Errorf("no transport allowed: name at least one of %s", strings.Join(AllTransports, ", "))
	}
	return t, nil
}

// MustTransports is ParseTransports for constants.
func MustTransports(s string) Transports {
	t, err := ParseTransports(s)
	if err != nil {
		panic(err)
	}
	return t
}

// Allowed lists the allowed transports.
func (t Transports) Allowed() []string { return slices.Clone(t.allowed) }

// Allows reports whether a transport is allowed.
func (t Transports) Allows(transport string) bool { return slices.Contains(t.allowed, transport) }

// GitAllowProtocol is the value for GIT_ALLOW_PROTOCOL, so that git itself
// refuses any other protocol, for submodules and redirects too. ext and
// the other remote helpers are never in it.
func (t Transports) GitAllowProtocol() string {
	return strings.Join(t.allowed, ":")
}

// String is the comma-separated list ParseTransports reads.
func (t Transports) String() string { return strings.Join(t.allowed, ",") }

// Transport tells which transport a clone URL uses, or why it is no clone
// URL at all. vcs is "git" or "hg": the two read the same URL forms alike
// except that hg has no scp-like form and git has remote helpers
// ("ext::cmd"), which are always refused.
func Transport(vcs, raw string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("clone URL %s: %s", quote(Redact(raw)), why)
	}
	switch {
	case raw == "":
		return bad("empty")
	case len(raw) > 4096:
		return bad("longer than 4096 bytes")
	case strings.HasPrefix(raw, "-"):
		return bad("starts with '-', which git and hg would read as an option")
	case !utf8.ValidString(raw):
		return bad("not valid UTF-8")
	}
	for _, c := range raw {
		if c < 0x20 || c == 0x7f {
			return bad("contains a control character")
		}
	}
	if i := strings.Index(raw, "::"); i > 0 && !strings.ContainsAny(raw[:i], "/:@") {
		return bad(fmt.Sprintf("names the remote helper %q, which runs a program; use a URL (https://, ssh://, git://) or a path", raw[:i]))
	}
	if scheme, _, ok := strings.Cut(raw, "://"); ok {
		u, err := url.Parse(raw)
		if err != nil {
			return bad(err.Error())
		}
		switch s := strings.ToLower(scheme); s {
		case HTTPS, HTTP, SSH, Git:
			if s == Git && vcs == "hg" {
				return bad("Mercurial has no git:// transport")
			}
			if u.Host == "" {
				return bad("no host")
			}
			if strings.HasPrefix(u.Hostname(), "-") || strings.HasPrefix(u.User.Username(), "-") {
				return bad("the host or user starts with '-', which ssh would read as an option")
			}
			return s, nil
		case "git+ssh", "ssh+git":
			if vcs == "hg" {
				return bad("Mercurial has no " + s + ":// transport")
			}
			if strings.HasPrefix(u.Hostname(), "-") || strings.HasPrefix(u.User.Username(), "-") {
				return bad("the host or user starts with '-', which ssh would read as an option")
			}
			return SSH, nil
		case File:
			if u.Host != "" && u.Host != "localhost" {
				return bad("a file:// URL names a path on this machine (file:///path)")
			}
			return File, nil
		default:
			return bad(fmt.Sprintf("unknown transport %q (known: %s)", scheme, strings.Join(AllTransports, ", ")))
		}
	}
	if filepath.IsAbs(raw) || strings.HasPrefix(raw, "./") || strings.HasPrefix(raw, "../") {
		return File, nil
	}
	if vcs == "hg" {
		if strings.HasPrefix(raw, "file:") {
			return File, nil
		}
		// hg reads "scheme:rest" as a scheme of its own (bundle:, a
		// schemes extension's names): only file: is a path.
		if i := strings.Index(raw, ":"); i > 0 && !strings.Contains(raw[:i], "/") {
			return bad(fmt.Sprintf("unknown transport %q (known: %s)", raw[:i], strings.Join(AllTransports, ", ")))
		}
	}
	// git's scp-like form: [user@]host:path, where no slash comes before the
	// first colon.
	if vcs != "hg" {
		if i := strings.Index(raw, ":"); i > 0 && !strings.Contains(raw[:i], "/") {
			host := raw[:i]
			if at := strings.LastIndex(host, "@"); at >= 0 {
				if strings.HasPrefix(host, "-") {
					return bad("the user starts with '-', which ssh would read as an option")
				}
				host = host[at+1:]
			}
			if host == "" || strings.HasPrefix(host, "-") {
				return bad("the host is empty or starts with '-'")
			}
			return SSH, nil
		}
	}
	// A relative path: git and hg resolve it from their working directory.
	return File, nil
}

// CloneURL checks that raw is a clone URL of an allowed transport.
func (t Transports) CloneURL(vcs, raw string) error {
	tr, err := Transport(vcs, raw)
	if err != nil {
		return err
	}
	if !t.Allows(tr) {
		hint := ""
		if tr == File {
			hint = " (local paths and file:// are off unless enabled: add file to --allowed-transports)"
		}
		return fmt.Errorf("clone URL %s: transport %s is not allowed (allowed: %s)%s", quote(Redact(raw)), tr, t.String(), hint)
	}
	return nil
}

// Redact hides a password in a URL's user info.
func Redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		if u.User != nil {
			return u.Redacted()
		}
		return s
	}
	// Not a URL Go can parse: hide whatever stands between "://" and "@".
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	authority, path, _ := strings.Cut(rest, "/")
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return s
	}
	user, _, hasPass := strings.Cut(authority[:at], ":")
	if !hasPass {
		return s
	}
	return scheme + "://" + user + ":xxxxx@" + authority[at+1:] + "/" + path
}

// quote shows a value in an error, cut to a readable length.
func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", s)
}
