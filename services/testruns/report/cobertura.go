// Cobertura XML (coverage.py, gocover-cobertura, istanbul, …).

package report

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

var conditionCoverage = regexp.MustCompile(`\((\d+)/(\d+)\)`)

// ParseCobertura reads a Cobertura XML report. Raw is the root's
// lines-covered/lines-valid when present, else computed from the lines.
// Class filenames are relative to one of the <source> entries (absolute
// paths of the build machine): those are stripped, then paths resolved.
func ParseCobertura(r io.Reader, paths Paths, opt Options) (*Coverage, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if err := skipBOM(br); err != nil {
		return nil, err
	}
	d := newXMLDecoder(br)
	x := &xmlWalk{d: d, file: opt.File}
	root, err := x.root("coverage")
	if err != nil {
		return nil, err
	}
	cov := &Coverage{Format: "cobertura"}
	raw := Counter{Unit: UnitLines, Covered: -1, Total: -1}
	if v, ok := attr(root, "lines-covered"); ok {
		raw.Covered, _ = strconv.ParseInt(v, 10, 64)
	}
	if v, ok := attr(root, "lines-valid"); ok {
		raw.Total, _ = strconv.ParseInt(v, 10, 64)
	}
	var b coverageBuilder
	var sources []string
	var stack []string
	var cur *FileCoverage
	for {
		t, err := x.token()
		if err != nil {
			return nil, err
		}
		switch t := t.(type) {
		case xml.StartElement:
			stack = append(stack, t.Name.Local)
			switch t.Name.Local {
			case "source":
				var s textBuf
				s.max = 4096
				if err := x.text(&s); err != nil {
					return nil, err
				}
				stack = stack[:len(stack)-1]
				sources = append(sources, strings.TrimSpace(s.String()))
			case "class":
				fn, _ := attr(t, "filename")
				if fn == "" {
					fn, _ = attr(t, "name")
				}
				cur = b.file(paths.Resolve(fn, sources...))
			case "line":
				if cur == nil {
					continue
				}
				n, err := strconv.Atoi(attrOr(t, "number"))
				if err != nil {
					return nil, x.errAt(fmt.Sprintf("<line number=%q>: not a line number", attrOr(t, "number")))
				}
				hits := parseCount(attrOr(t, "hits"))
				b.hit(cur, n, hits)
				// Branches only from the class's own <lines>: methods repeat them.
				if len(stack) >= 3 && stack[len(stack)-3] == "class" {
					if m := conditionCoverage.FindStringSubmatch(attrOr(t, "condition-coverage")); m != nil {
						c, _ := strconv.ParseInt(m[1], 10, 64)
						tot, _ := strconv.ParseInt(m[2], 10, 64)
						cur.BranchesCovered += c
						cur.BranchesTotal += tot
					}
				}
			}
		case xml.EndElement:
			if len(stack) == 0 {
				// The root's end.
				cov.Files = b.done()
				lines := cov.Lines()
				if raw.Covered < 0 || raw.Total < 0 {
					raw = lines
				}
				cov.Raw = raw
				cov.Counters = []Counter{raw}
				var br Counter
				br.Unit = UnitBranches
				for _, f := range cov.Files {
					br.Covered += f.BranchesCovered
					br.Total += f.BranchesTotal
				}
				if br.Total > 0 {
					cov.Counters = append(cov.Counters, br)
				}
				return cov, x.rest()
			}
			if stack[len(stack)-1] == "class" {
				cur = nil
			}
			stack = stack[:len(stack)-1]
		}
	}
}

func attrOr(se xml.StartElement, name string) string {
	v, _ := attr(se, name)
	return v
}

// parseCount reads a hit count as tools write them: integers, floats
// ("1.0e+19"), negatives (treated as 0); saturated at MaxInt64.
func parseCount(s string) int64 {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return max(n, 0)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != f || f <= 0 {
		return 0
	}
	if f >= 9.2e18 {
		return 1<<63 - 1
	}
	return int64(f)
}

// xmlWalk is the shared streaming helper of the XML coverage parsers.
type xmlWalk struct {
	d    *xml.Decoder
	file string
}

func (x *xmlWalk) errAt(msg string) *ParseError {
	line, col := x.d.InputPos()
	return &ParseError{File: x.file, Line: line, Column: col, Msg: msg}
}

func (x *xmlWalk) token() (xml.Token, error) {
	t, err := x.d.Token()
	if err != nil {
		return nil, x.wrap(err)
	}
	return t, nil
}

func (x *xmlWalk) wrap(err error) error {
	{
		if se, ok := err.(*xml.SyntaxError); ok {
			msg := se.Msg
			if msg == "unexpected EOF" {
				msg = "unexpected end of file (truncated report?)"
			}
			return &ParseError{File: x.file, Line: se.Line, Msg: "invalid XML: " + msg}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return x.errAt("invalid XML: unexpected end of file (truncated report?)")
		}
		return x.errAt("invalid XML: " + err.Error())
	}
}

// root reads up to the root element and checks its name.
func (x *xmlWalk) root(want string) (xml.StartElement, error) {
	for {
		t, err := x.d.Token()
		if err == io.EOF {
			return xml.StartElement{}, x.errAt("file is empty")
		}
		if err != nil {
			return xml.StartElement{}, x.wrap(err)
		}
		if cd, ok := t.(xml.CharData); ok && strings.TrimSpace(string(cd)) != "" {
			return xml.StartElement{}, x.errAt("not XML: text where the root element should be")
		}
		if se, ok := t.(xml.StartElement); ok {
			if se.Name.Local != want {
				return se, x.errAt(fmt.Sprintf("root element is <%s>, want <%s>", se.Name.Local, want))
			}
			return se, nil
		}
	}
}

func (x *xmlWalk) text(buf *textBuf) error {
	depth := 1
	for depth > 0 {
		t, err := x.token()
		if err != nil {
			return err
		}
		switch t := t.(type) {
		case xml.CharData:
			buf.write(t)
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		}
	}
	return nil
}

// rest checks that only comments and space follow the root.
func (x *xmlWalk) rest() error {
	for {
		_, err := x.d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return x.wrap(err)
		}
	}
}
