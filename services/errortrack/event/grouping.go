package event

import (
	"crypto/sha256"
	"encoding/hex"
	"path"
	"regexp"
	"strings"
)

// GroupingVersion is the grouping algorithm this package implements. A
// project keeps the version it was created with; a new version would be
// added beside this one, not in its place.
const GroupingVersion = 1

// Grouping is the result of grouping one event.
type Grouping struct {
	// Hashes, most specific first: the app hash (in-app frames only), then
	// the system hash (all frames); one hash when they are equal or when a
	// fingerprint decides. An event joins the issue of any of them.
	Hashes []string
	// Basis says what decided: fingerprint, stacktrace, exception, message.
	Basis   string
	Title   string
	Culprit string
	// Files are the in-app source files of the stack, for suspect commits.
	Files []string
}

// Group computes an event's grouping with GroupingVersion.
func Group(ev *Event) Grouping {
	g := Grouping{Title: Title(ev), Culprit: Culprit(ev), Files: inAppFiles(ev)}
	app, system, basis := defaultComponents(ev)
	if fp := ev.Fingerprint; len(fp) > 0 && !(len(fp) == 1 && isDefault(fp[0])) {
		hasDefault := false
		parts := make([]string, 0, len(fp))
		for _, p := range fp {
			if isDefault(p) {
				hasDefault = true
				parts = append(parts, "{{default}}")
				continue
			}
			parts = append(parts, "fp:"+substitute(ev, p))
		}
		g.Basis = "fingerprint"
		if !hasDefault {
			g.Hashes = []string{hash(parts)}
			return g
		}
		// {{ default }} subdivides: one hash per default variant.
		for _, variant := range [][]string{app, system} {
			if variant == nil {
				continue
			}
			var full []string
			for _, p := range parts {
				if p == "{{default}}" {
					full = append(full, variant...)
				} else {
					full = append(full, p)
				}
			}
			g.Hashes = appendUnique(g.Hashes, hash(full))
		}
		return g
	}
	g.Basis = basis
	if app != nil {
		g.Hashes = append(g.Hashes, hash(app))
	}
	g.Hashes = appendUnique(g.Hashes, hash(system))
	return g
}

func isDefault(p string) bool {
	p = strings.ReplaceAll(strings.ToLower(p), " ", "")
	return p == "{{default}}"
}

func appendUnique(list []string, h string) []string {
	for _, x := range list {
		if x == h {
			return list
		}
	}
	return append(list, h)
}

func hash(parts []string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// defaultComponents returns what the default algorithm hashes: app (nil
// when no frame is in-app or there are no frames) and system components.
func defaultComponents(ev *Event) (app, system []string, basis string) {
	var stacks []*Stacktrace
	var types []string
	for i := range ev.Exceptions {
		ex := &ev.Exceptions[i]
		typ := ex.Type
		if ex.Synthetic {
			typ = ""
		}
		stacks = append(stacks, ex.Stacktrace)
		types = append(types, typ)
	}
	if len(ev.Exceptions) == 0 {
		switch {
		case ev.Stacktrace != nil:
			stacks, types = []*Stacktrace{ev.Stacktrace}, []string{""}
		case len(ev.Threads) > 0:
			stacks, types = []*Stacktrace{&ev.Threads[0]}, []string{""}
		}
	}
	hasFrames, hasApp := false, false
	for i, st := range stacks {
		if st == nil {
			continue
		}
		var a, s []string
		for _, f := range st.Frames {
			c, ok := frameComponent(ev.Platform, f)
			if !ok {
				continue
			}
			s = append(s, c)
			if isInApp(f) {
				a = append(a, c)
			}
		}
		if len(s) == 0 {
			continue
		}
		hasFrames = true
		t := "type:" + types[i]
		system = append(system, t)
		system = append(system, s...)
		if len(a) > 0 {
			hasApp = true
			app = append(app, t)
			app = append(app, a...)
		}
	}
	if hasFrames {
		if !hasApp {
			app = nil
		}
		return app, system, "stacktrace"
	}
	// No frames: exception type and normalised value, for each exception.
	var exc []string
	for _, ex := range ev.Exceptions {
		if ex.Synthetic {
			continue
		}
		exc = append(exc, "type:"+ex.Type, "value:"+NormalizeMessage(firstLines(ex.Value, 2)))
	}
	if len(exc) > 0 {
		return nil, exc, "exception"
	}
	msg := ev.Message
	if msg == "" {
		msg = ev.Formatted
	}
	if msg == "" && len(ev.Exceptions) > 0 {
		msg = ev.Exceptions[len(ev.Exceptions)-1].Value
	}
	return nil, []string{"message:" + NormalizeMessage(firstLines(msg, 2))}, "message"
}

// contextPlatforms are the platforms whose frames group by source line too.
var contextPlatforms = map[string]bool{"javascript": true, "node": true, "python": true, "php": true, "ruby": true}

// lowQualityJS are frames JavaScript grouping skips.
var lowQualityJS = map[string]bool{"?": true, "<anonymous>": true, "eval": true, "[native code]": true, "": true}

// frameComponent is what one frame contributes: module or normalised file,
// plus function (and the context line on dynamic platforms).
func frameComponent(platform string, f Frame) (string, bool) {
	p := f.Platform
	if p == "" {
		p = platform
	}
	js := p == "javascript" || p == "node"
	fn := f.Function
	if js {
		if i := strings.LastIndexByte(fn, '.'); i >= 0 {
			fn = fn[i+1:]
		}
		if i := strings.IndexByte(fn, ' '); i >= 0 {
			fn = fn[:i]
		}
		if lowQualityJS[fn] && f.ContextLine == "" {
			return "", false
		}
	}
	where := f.Module
	if where == "" || js {
		file := f.Filename
		if file == "" {
			file = f.AbsPath
		}
		if js {
			file = strings.ToLower(path.Base(file))
		}
		if where == "" || file != "" {
			where = file
		}
	}
	if strings.Contains(fn, "0x") {
		fn = trimAddress.ReplaceAllString(fn, "")
	}
	if where == "" && fn == "" {
		return "", false
	}
	c := "frame:" + where + ":" + fn
	if contextPlatforms[p] && f.ContextLine != "" && len(f.ContextLine) <= 120 {
		c += ":" + strings.TrimSpace(f.ContextLine)
	}
	return c, true
}

var trimAddress = regexp.MustCompile(`0x[0-9a-fA-F]+`)

// isInApp: the SDK's in_app flag, with Go's module cache and standard
// library always out of app (Sentry's built-in rule).
func isInApp(f Frame) bool {
	p := f.AbsPath
	if p == "" {
		p = f.Filename
	}
	if strings.Contains(p, "/go/pkg/mod/") || strings.Contains(p, "/usr/local/go/src/") || strings.Contains(p, "/node_modules/") {
		return false
	}
	return f.InApp != nil && *f.InApp
}

func inAppFiles(ev *Event) []string {
	seen := map[string]bool{}
	var out []string
	add := func(st *Stacktrace) {
		if st == nil {
			return
		}
		for _, f := range st.Frames {
			p := f.AbsPath
			if p == "" {
				p = f.Filename
			}
			if p == "" || !isInApp(f) || seen[p] {
				continue
			}
			seen[p] = true
			out = append(out, p)
		}
	}
	for i := range ev.Exceptions {
		add(ev.Exceptions[i].Stacktrace)
	}
	add(ev.Stacktrace)
	if len(ev.Threads) > 0 {
		add(&ev.Threads[0])
	}
	return out
}

// Title is the issue title: "Type: value" of the outermost exception, or
// the message.
func Title(ev *Event) string {
	if ev.Type == "transaction" {
		return Clean(orText(ev.Transaction, "<unnamed transaction>"), 200)
	}
	if n := len(ev.Exceptions); n > 0 {
		// SDKs list the cause first; the last exception is what was raised.
		ex := ev.Exceptions[n-1]
		val := firstLines(ex.Value, 1)
		switch {
		case ex.Synthetic || ex.Type == "":
			if ev.Message != "" {
				return Clean(firstLines(messageText(ev), 1), 200)
			}
			return Clean(orText(val, "<unlabeled event>"), 200)
		case val == "":
			return Clean(ex.Type, 200)
		}
		return Clean(ex.Type+": "+val, 200)
	}
	if m := messageText(ev); m != "" {
		return Clean(firstLines(m, 1), 200)
	}
	return "<unlabeled event>"
}

func messageText(ev *Event) string {
	if ev.Formatted != "" {
		return ev.Formatted
	}
	return ev.Message
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Culprit is where it happened: the event's culprit or transaction, else
// the innermost in-app frame.
func Culprit(ev *Event) string {
	if ev.Culprit != "" {
		return Clean(ev.Culprit, 200)
	}
	if ev.Transaction != "" {
		return Clean(ev.Transaction, 200)
	}
	var st *Stacktrace
	if n := len(ev.Exceptions); n > 0 {
		st = ev.Exceptions[n-1].Stacktrace
	}
	if st == nil {
		st = ev.Stacktrace
	}
	if st == nil && len(ev.Threads) > 0 {
		st = &ev.Threads[0]
	}
	if st == nil {
		return ""
	}
	for i := len(st.Frames) - 1; i >= 0; i-- {
		f := st.Frames[i]
		if isInApp(f) {
			where := f.Module
			if where == "" {
				where = f.Filename
			}
			return Clean(where+" in "+f.Function, 200)
		}
	}
	return ""
}

func firstLines(s string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
			if len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// substitute fills fingerprint variables from the event.
func substitute(ev *Event, part string) string {
	if !strings.Contains(part, "{{") {
		return part
	}
	return fpVar.ReplaceAllStringFunc(part, func(m string) string {
		name := strings.ToLower(strings.TrimSpace(m[2 : len(m)-2]))
		var last *Exception
		if n := len(ev.Exceptions); n > 0 {
			last = &ev.Exceptions[n-1]
		}
		frame := func() *Frame {
			for _, st := range []*Stacktrace{stackOf(last), ev.Stacktrace} {
				if st == nil {
					continue
				}
				for i := len(st.Frames) - 1; i >= 0; i-- {
					if isInApp(st.Frames[i]) {
						return &st.Frames[i]
					}
				}
				if len(st.Frames) > 0 {
					return &st.Frames[len(st.Frames)-1]
				}
			}
			return &Frame{}
		}
		switch {
		case name == "transaction":
			return ev.Transaction
		case name == "type" || name == "error.type":
			if last != nil {
				return last.Type
			}
		case name == "error.value":
			if last != nil {
				return last.Value
			}
		case name == "message":
			return messageText(ev)
		case name == "level":
			return ev.Level
		case name == "logger":
			return ev.Logger
		case name == "stack.function" || name == "function":
			return frame().Function
		case name == "stack.module" || name == "module":
			return frame().Module
		case name == "stack.abs_path":
			return frame().AbsPath
		case name == "stack.filename":
			return frame().Filename
		case name == "stack.package":
			return frame().Package
		case strings.HasPrefix(name, "tags."):
			return ev.Tags[name[len("tags."):]]
		}
		return "<no-value-for-" + name + ">"
	})
}

func stackOf(ex *Exception) *Stacktrace {
	if ex == nil {
		return nil
	}
	return ex.Stacktrace
}

var fpVar = regexp.MustCompile(`\{\{[^}]*\}\}`)

// Message normalisation: the variable parts of a message are replaced, in
// this order, so "user 42 at 10.0.0.1" and "user 7 at 10.0.0.2" group.
// Each normaliser has need, a cheap test its pattern cannot match without
// (what every match contains): a regexp scans the whole message even when it
// matches nothing, and most messages hold few of these parts, so skipping
// them made grouping an event several times faster. need sees the message
// as the earlier normalisers left it, as the pattern would.
var normalizers = []struct {
	re   *regexp.Regexp
	repl string
	need func(string) bool
}{
	{regexp.MustCompile(`[\w.+-]+@[\w-]+(\.[\w-]+)+`), "<email>", func(s string) bool { return has(s, "@") && has(s, ".") }},
	{regexp.MustCompile(`\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'"<>]+`), "<url>", func(s string) bool { return has(s, "://") }},
	{regexp.MustCompile(`(?i)\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b`), "<uuid>", func(s string) bool { return len(s) >= 32 }},
	{regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?\b`), "<date>", func(s string) bool { return has(s, "-") && hasDigit(s) }},
	{regexp.MustCompile(`\b(\d{1,3}\.){3}\d{1,3}(:\d+)?\b`), "<ip>", func(s string) bool { return has(s, ".") && hasDigit(s) }},
	{regexp.MustCompile(`(?i)\b([0-9a-f]{1,4}:){2,7}[0-9a-f]{1,4}\b`), "<ip>", func(s string) bool { return has(s, ":") }},
	{regexp.MustCompile(`(?i)\b0x[0-9a-f]+\b`), "<hex>", func(s string) bool { return has(s, "0x") || has(s, "0X") }},
	{regexp.MustCompile(`(?:[A-Za-z]:)?(?:[\\/][\w.@~-]+){2,}[\\/]?`), "<path>", func(s string) bool { return strings.ContainsAny(s, `/\`) }},
	{regexp.MustCompile(`[-+]?\b\d+\.\d+`), "<float>", func(s string) bool { return has(s, ".") && hasDigit(s) }},
	{regexp.MustCompile(`\b\d+`), "<int>", hasDigit},
}

func has(s, sub string) bool { return strings.Contains(s, sub) }

func hasDigit(s string) bool { return strings.ContainsAny(s, "0123456789") }

// NormalizeMessage replaces numbers, ids, hex, UUIDs, IPs, dates, e-mails,
// URLs and paths in a message with placeholders.
func NormalizeMessage(s string) string {
	for i, n := range normalizers {
		if n.need(s) {
			s = n.re.ReplaceAllString(s, n.repl)
		}
		if i == hexAfter && hasDigit(s) {
			s = hexWord.ReplaceAllStringFunc(s, func(w string) string {
				if hasDigit(w) && strings.ContainsAny(strings.ToLower(w), "abcdef") {
					return "<hex>"
				}
				return w
			})
		}
	}
	return s
}

// hexWord is an id-like hex word (a SHA, an object id): six or more hex
// digits with both digits and letters; plain words and numbers are left.
var hexWord = regexp.MustCompile(`\b[0-9a-fA-F]{6,}\b`)

// hexAfter is the index of the normaliser after which hex words go.
const hexAfter = 6
