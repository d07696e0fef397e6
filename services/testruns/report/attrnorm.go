// Attribute-value normalisation, which encoding/xml leaves out.

package report

import "io"

// attrNormalizer turns literal tabs, carriage returns and newlines inside
// quoted attribute values into spaces, as XML 1.0 §3.3.3 requires (a
// message attribute that spans lines reads as one line; "&#10;" still gives
// a newline). It passes comments, CDATA sections, processing instructions
// and the DOCTYPE through untouched. It remembers where it replaced a
// newline so that error positions can still name the right line.
type attrNormalizer struct {
	r     io.ByteReader
	off   int64
	state int
	quote byte
	// recent holds the last bytes read, to recognise "<!--" and "<![CDATA[".
	recent [9]byte
	depth  int // '[' nesting inside a DOCTYPE
	// newlines are the offsets of replaced newlines, up to a bound; beyond
	// it only their number is kept.
	newlines []int64
	extra    int
}

const (
	stText = iota
	stTagStart
	stTag
	stQuoted
	stComment
	stCDATA
	stPI
	stDecl
)

func (a *attrNormalizer) remember(c byte) {
	copy(a.recent[:], a.recent[1:])
	a.recent[len(a.recent)-1] = c
}

func (a *attrNormalizer) ends(s string) bool {
	if len(s) > len(a.recent) {
		return false
	}
	return string(a.recent[len(a.recent)-len(s):]) == s
}

func (a *attrNormalizer) ReadByte() (byte, error) {
	c, err := a.r.ReadByte()
	if err != nil {
		return c, err
	}
	pos := a.off
	a.off++
	a.remember(c)
	switch a.state {
	case stText:
		if c == '<' {
			a.state = stTagStart
		}
	case stTagStart:
		switch c {
		case '?':
			a.state = stPI
		case '!':
			a.state = stDecl
			a.depth = 0
		default:
			a.state = stTag
		}
	case stTag:
		switch c {
		case '"', '\'':
			a.state, a.quote = stQuoted, c
		case '>':
			a.state = stText
		}
	case stQuoted:
		switch c {
		case a.quote:
			a.state = stTag
		case '\n':
			if len(a.newlines) < 1<<16 {
				a.newlines = append(a.newlines, pos)
			} else {
				a.extra++
			}
			c = ' '
		case '\r', '\t':
			c = ' '
		}
	case stComment:
		if a.ends("-->") {
			a.state = stText
		}
	case stCDATA:
		if a.ends("]]>") {
			a.state = stText
		}
	case stPI:
		if a.ends("?>") {
			a.state = stText
		}
	case stDecl:
		switch {
		case a.ends("<!--"):
			a.state = stComment
		case a.ends("<![CDATA["):
			a.state = stCDATA
		case c == '[':
			a.depth++
		case c == ']':
			a.depth--
		case c == '>' && a.depth <= 0:
			a.state = stText
		}
	}
	return c, nil
}

func (a *attrNormalizer) Read(p []byte) (int, error) {
	for i := range p {
		c, err := a.ReadByte()
		if err != nil {
			return i, err
		}
		p[i] = c
	}
	return len(p), nil
}

// linesBefore is the number of newlines replaced before offset off.
func (a *attrNormalizer) linesBefore(off int64) int {
	n := 0
	for _, o := range a.newlines {
		if o >= off {
			return n
		}
		n++
	}
	return n + a.extra
}
