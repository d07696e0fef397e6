package dashboards

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"
)

// ANSI SGR → HTML for log lines: colours and text attributes become
// <span class="ansi-…"> (256-colour and 24-bit colours an inline color
// style computed from the numbers), every other escape sequence is
// dropped, and all text is HTML-escaped.

// ansiState is the SGR attributes in force.
type ansiState struct {
	bold, dim, italic, underline, inverse, strike bool
	// fg, bg: "" (default), a class name ("red", "bright-blue") or a CSS
	// colour ("#5f87af") for 256-colour and 24-bit ones.
	fg, bg string
}

var ansiNames = [8]string{"black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"}

func (s ansiState) zero() bool { return s == ansiState{} }

// attrs renders the span's class and style attributes.
func (s ansiState) attrs() string {
	var cls []string
	var style []string
	add := func(on bool, c string) {
		if on {
			cls = append(cls, c)
		}
	}
	add(s.bold, "ansi-bold")
	add(s.dim, "ansi-dim")
	add(s.italic, "ansi-italic")
	add(s.underline, "ansi-underline")
	add(s.inverse, "ansi-inverse")
	add(s.strike, "ansi-strike")
	colour := func(v, prefix, prop string) {
		switch {
		case v == "":
		case v[0] == '#':
			style = append(style, prop+":"+v)
		default:
			cls = append(cls, prefix+v)
		}
	}
	colour(s.fg, "ansi-fg-", "color")
	colour(s.bg, "ansi-bg-", "background-color")
	var b strings.Builder
	if len(cls) > 0 {
		b.WriteString(` class="` + strings.Join(cls, " ") + `"`)
	}
	if len(style) > 0 {
		b.WriteString(` style="` + strings.Join(style, ";") + `"`)
	}
	return b.String()
}

// xterm256 is the CSS colour (or basic class name) of a 256-colour index.
func xterm256(n int) string {
	switch {
	case n < 8:
		return ansiNames[n]
	case n < 16:
		return "bright-" + ansiNames[n-8]
	case n < 232:
		n -= 16
		level := func(v int) int {
			if v == 0 {
				return 0
			}
			return 55 + 40*v
		}
		return fmt.Sprintf("#%02x%02x%02x", level(n/36), level(n/6%6), level(n%6))
	case n < 256:
		g := 8 + 10*(n-232)
		return fmt.Sprintf("#%02x%02x%02x", g, g, g)
	}
	return ""
}

// apply folds one SGR parameter list into s.
func (s *ansiState) apply(params []int) {
	if len(params) == 0 {
		*s = ansiState{}
		return
	}
	for i := 0; i < len(params); i++ {
		p := params[i]
		switch {
		case p == 0:
			*s = ansiState{}
		case p == 1:
			s.bold = true
		case p == 2:
			s.dim = true
		case p == 3:
			s.italic = true
		case p == 4:
			s.underline = true
		case p == 7:
			s.inverse = true
		case p == 9:
			s.strike = true
		case p == 21 || p == 22:
			s.bold, s.dim = false, false
		case p == 23:
			s.italic = false
		case p == 24:
			s.underline = false
		case p == 27:
			s.inverse = false
		case p == 29:
			s.strike = false
		case p >= 30 && p <= 37:
			s.fg = ansiNames[p-30]
		case p == 39:
			s.fg = ""
		case p >= 40 && p <= 47:
			s.bg = ansiNames[p-40]
		case p == 49:
			s.bg = ""
		case p >= 90 && p <= 97:
			s.fg = "bright-" + ansiNames[p-90]
		case p >= 100 && p <= 107:
			s.bg = "bright-" + ansiNames[p-100]
		case p == 38 || p == 48:
			// 38;5;n or 38;2;r;g;b (and 48 for the background).
			var c string
			switch {
			case i+2 < len(params) && params[i+1] == 5:
				c = xterm256(params[i+2])
				i += 2
			case i+4 < len(params) && params[i+1] == 2:
				r, g, b := params[i+2], params[i+3], params[i+4]
				if r <= 255 && g <= 255 && b <= 255 {
					c = fmt.Sprintf("#%02x%02x%02x", r, g, b)
				}
				i += 4
			default:
				i = len(params) // malformed: ignore the rest
				continue
			}
			if p == 38 {
				s.fg = c
			} else {
				s.bg = c
			}
		}
	}
}

// ansiSegment is a run of text under one set of attributes.
type ansiSegment struct {
	st   ansiState
	text string
}

// parseANSI splits a line into styled segments, dropping every escape
// sequence and keeping only what follows the last carriage return
// (progress bars redraw the line).
func parseANSI(line string) []ansiSegment {
	line = strings.TrimRight(line, "\r\n")
	if i := strings.LastIndexByte(line, '\r'); i >= 0 {
		// The state set before the \r still holds: keep the escapes.
		line = keepEscapes(line[:i]) + line[i+1:]
	}
	var segs []ansiSegment
	var st ansiState
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			segs = append(segs, ansiSegment{st: st, text: text.String()})
			text.Reset()
		}
	}
	for i := 0; i < len(line); {
		c := line[i]
		if c != 0x1b {
			if c < 0x20 && c != '\t' {
				i++ // other control characters are not shown
				continue
			}
			text.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(line) {
			break
		}
		switch line[i+1] {
		case '[': // CSI: parameters, intermediates, a final byte
			j := i + 2
			for j < len(line) && line[j] >= 0x30 && line[j] <= 0x3f {
				j++
			}
			for j < len(line) && line[j] >= 0x20 && line[j] <= 0x2f {
				j++
			}
			if j >= len(line) {
				i = len(line)
				continue
			}
			if line[j] == 'm' {
				flush()
				st.apply(sgrParams(line[i+2 : j]))
			}
			i = j + 1
		case ']': // OSC: up to BEL or ST
			j := i + 2
			for j < len(line) && line[j] != 0x07 && !(line[j] == 0x1b && j+1 < len(line) && line[j+1] == '\\') {
				j++
			}
			if j < len(line) && line[j] == 0x1b {
				j++
			}
			i = j + 1
		default: // a two-byte escape
			i += 2
		}
	}
	flush()
	return segs
}

// keepEscapes is s with only its escape sequences (so that the attributes
// they set survive a carriage return).
func keepEscapes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != 0x1b || i+1 >= len(s) || s[i+1] != '[' {
			continue
		}
		j := i + 2
		for j < len(s) && s[j] >= 0x20 && s[j] <= 0x3f {
			j++
		}
		if j < len(s) && s[j] == 'm' {
			b.WriteString(s[i : j+1])
		}
		i = j
	}
	return b.String()
}

func sgrParams(s string) []int {
	if s == "" {
		return nil
	}
	var out []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ':' }) {
		n, err := strconv.Atoi(f)
		if err != nil {
			n = 0
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return []int{0}
	}
	return out
}

// ansiStrip is the line's text without escape sequences.
func ansiStrip(line string) string {
	var b strings.Builder
	for _, s := range parseANSI(line) {
		b.WriteString(s.text)
	}
	return b.String()
}

// ansiHTML renders a log line: escaped text in spans for its SGR
// attributes, each case-insensitive occurrence of q (when not "") in a
// <mark>.
func ansiHTML(line, q string) template.HTML {
	var b strings.Builder
	for _, s := range parseANSI(line) {
		attrs := s.st.attrs()
		if attrs != "" {
			b.WriteString("<span" + attrs + ">")
		}
		writeMarked(&b, s.text, q)
		if attrs != "" {
			b.WriteString("</span>")
		}
	}
	return template.HTML(b.String())
}

// writeMarked writes text escaped, with q's occurrences marked.
func writeMarked(b *strings.Builder, text, q string) {
	if q == "" {
		b.WriteString(template.HTMLEscapeString(text))
		return
	}
	lower, lq := strings.ToLower(text), strings.ToLower(q)
	if len(lower) != len(text) { // case folding changed lengths: no marks
		b.WriteString(template.HTMLEscapeString(text))
		return
	}
	for {
		i := strings.Index(lower, lq)
		if i < 0 {
			break
		}
		b.WriteString(template.HTMLEscapeString(text[:i]))
		b.WriteString(`<mark>` + template.HTMLEscapeString(text[i:i+len(lq)]) + `</mark>`)
		text, lower = text[i+len(lq):], lower[i+len(lq):]
	}
	b.WriteString(template.HTMLEscapeString(text))
}
