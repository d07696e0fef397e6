// JUnit XML in all its dialects: pytest, Surefire (with flaky and rerun
// attempts), Jest, Mocha, xUnit.net conversions, Bazel, CTest, tst, PHPUnit
// and go-junit-report.

package report

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ParseJUnit reads a JUnit XML report. The document is streamed token by
// token: memory grows with the number of cases, not with the file, and every
// text field is capped (Options.MaxText). Nested <testsuite> elements are
// flattened; a <testsuite> root is accepted like <testsuites>.
//
// Entities: only the five predefined XML entities and character references
// are understood. A DOCTYPE is skipped, so external entities are never
// fetched and declared entities are never expanded (a reference to one is an
// error), which also rules out "billion laughs".
func ParseJUnit(r io.Reader, opt Options) (*Result, error) {
	res := &Result{Format: FormatJUnit}
	_, err := streamJUnit(r, opt, res, func(c Case) error {
		res.Cases = append(res.Cases, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// StreamJUnit reads a JUnit XML report like ParseJUnit, but hands each case
// to emit as soon as its element ends instead of keeping it, so memory
// stays flat however many cases the report holds. The Result has the suites
// and no cases. An error from emit ends the parse and is returned as is.
func StreamJUnit(r io.Reader, opt Options, emit func(Case) error) (*Result, error) {
	return streamJUnit(r, opt, &Result{Format: FormatJUnit}, emit)
}

func streamJUnit(r io.Reader, opt Options, res *Result, emit func(Case) error) (*Result, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if err := skipBOM(br); err != nil {
		return nil, err
	}
	if _, err := br.Peek(1); err == io.EOF {
		return nil, &ParseError{File: opt.File, Msg: "file is empty"}
	}
	norm := &attrNormalizer{r: br}
	p := &junitParser{opt: opt, d: newXMLDecoder(norm), norm: norm, res: res, emit: emit}
	if err := p.parse(); err != nil {
		return nil, err
	}
	return p.res, nil
}

func newXMLDecoder(r io.Reader) *xml.Decoder {
	d := xml.NewDecoder(r)
	d.Strict = true
	d.CharsetReader = charsetReader
	return d
}

// skipBOM drops a UTF-8 byte order mark (xUnit.net writes one).
func skipBOM(br *bufio.Reader) error {
	b, err := br.Peek(3)
	if err == nil && bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
		_, err = br.Discard(3)
		return err
	}
	return nil
}

// charsetReader accepts the declarations producers write for what is, in
// practice, UTF-8 or Latin-1 text.
func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return in, nil
	case "iso-8859-1", "latin1", "latin-1", "windows-1252", "cp1252":
		return &latin1Reader{r: bufio.NewReader(in)}, nil
	}
	return nil, fmt.Errorf("unsupported encoding %q", label)
}

type latin1Reader struct {
	r   *bufio.Reader
	buf []byte
}

func (l *latin1Reader) Read(p []byte) (int, error) {
	for len(l.buf) < len(p) {
		c, err := l.r.ReadByte()
		if err != nil {
			if len(l.buf) > 0 {
				break
			}
			return 0, err
		}
		if c < 0x80 {
			l.buf = append(l.buf, c)
		} else {
			l.buf = append(l.buf, 0xC0|c>>6, 0x80|c&0x3F)
		}
	}
	n := copy(p, l.buf)
	l.buf = l.buf[n:]
	return n, nil
}

type junitParser struct {
	opt    Options
	d      *xml.Decoder
	norm   *attrNormalizer
	res    *Result
	emit   func(Case) error
	cases  int
	suites []string // open <testsuite> names, outermost first
	// hasCases counts direct cases of each open suite.
	hasCases []int
	suiteAt  []Suite
}

func (p *junitParser) errAt(msg string) *ParseError {
	line, col := p.d.InputPos()
	return &ParseError{File: p.opt.File, Line: line + p.norm.linesBefore(p.d.InputOffset()), Column: col, Msg: msg}
}

func (p *junitParser) wrap(err error) error {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		_, col := p.d.InputPos()
		msg := se.Msg
		if msg == "unexpected EOF" {
			msg = "unexpected end of file (truncated report?)"
		}
		return &ParseError{File: p.opt.File, Line: se.Line + p.norm.linesBefore(p.d.InputOffset()), Column: col, Msg: "invalid XML: " + msg}
	}
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return p.errAt("invalid XML: unexpected end of file")
	}
	return p.errAt("invalid XML: " + err.Error())
}

// token returns the next token, or an error that names the position.
func (p *junitParser) token() (xml.Token, error) {
	t, err := p.d.Token()
	if err != nil {
		return nil, p.wrap(err)
	}
	return t, nil
}

func (p *junitParser) parse() error {
	// Find the root element.
	for {
		t, err := p.d.Token()
		if err == io.EOF {
			return p.errAt("no XML element: file is empty or only a prolog")
		}
		if err != nil {
			return p.wrap(err)
		}
		if cd, ok := t.(xml.CharData); ok && len(bytes.TrimSpace(cd)) > 0 {
			return p.errAt("not XML: text where the root element should be")
		}
		se, ok := t.(xml.StartElement)
		if !ok {
			continue
		}
		switch se.Name.Local {
		case "testsuites":
			if err := p.suiteBody(se, false); err != nil {
				return err
			}
		case "testsuite":
			if err := p.suite(se); err != nil {
				return err
			}
		default:
			return p.errAt(fmt.Sprintf("not a JUnit report: root element is <%s>, want <testsuites> or <testsuite>", se.Name.Local))
		}
		break
	}
	// Anything after the root must be well-formed too (comments, spaces).
	for {
		_, err := p.d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return p.wrap(err)
		}
	}
}

func attr(se xml.StartElement, name string) (string, bool) {
	for _, a := range se.Attr {
		if a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

func attrFloat(se xml.StartElement, name string) float64 {
	v, _ := attr(se, name)
	f, err := strconv.ParseFloat(strings.ReplaceAll(strings.TrimSpace(v), ",", ""), 64)
	if err != nil {
		return 0
	}
	return f
}

func (p *junitParser) suite(se xml.StartElement) error {
	name, _ := attr(se, "name")
	tests := -1
	if v, ok := attr(se, "tests"); ok {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
			tests = n
		}
	}
	p.suites = append(p.suites, name)
	p.hasCases = append(p.hasCases, 0)
	p.suiteAt = append(p.suiteAt, Suite{Name: name, Tests: tests, Duration: secondsToDuration(attrFloat(se, "time"))})
	nested := 0
	err := p.suiteBodyCount(se, true, &nested)
	last := len(p.suites) - 1
	// Leaf suites (or suites with direct cases) are the suites of the report.
	if nested == 0 || p.hasCases[last] > 0 {
		p.res.Suites = append(p.res.Suites, p.suiteAt[last])
	}
	p.suites, p.hasCases, p.suiteAt = p.suites[:last], p.hasCases[:last], p.suiteAt[:last]
	return err
}

func (p *junitParser) suiteBody(se xml.StartElement, inSuite bool) error {
	var n int
	return p.suiteBodyCount(se, inSuite, &n)
}

// suiteBodyCount reads the children of <testsuites> or <testsuite> up to
// its end tag, counting nested suites.
func (p *junitParser) suiteBodyCount(_ xml.StartElement, inSuite bool, nested *int) error {
	for {
		t, err := p.token()
		if err != nil {
			return err
		}
		switch t := t.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "testsuite":
				*nested++
				if err := p.suite(t); err != nil {
					return err
				}
			case "testcase":
				if p.cases >= p.opt.maxCases() {
					return p.errAt(fmt.Sprintf("more than %d test cases", p.opt.maxCases()))
				}
				c, err := p.testcase(t)
				if err != nil {
					return err
				}
				if len(p.suites) > 0 {
					c.Suite = p.suites[len(p.suites)-1]
					p.hasCases[len(p.hasCases)-1]++
				}
				p.cases++
				if err := p.emit(c); err != nil {
					return err
				}
			default:
				if err := p.d.Skip(); err != nil {
					return p.wrap(err)
				}
			}
		case xml.EndElement:
			return nil
		}
	}
}

// result is one result element inside a testcase.
type result struct {
	status        Status
	message, typ  string
	text          string
	hasMsg        bool
	stdout, stder string
}

func (p *junitParser) testcase(se xml.StartElement) (Case, error) {
	c := Case{}
	c.Name, _ = attr(se, "name")
	c.Class, _ = attr(se, "classname")
	if c.Class == "" {
		c.Class, _ = attr(se, "class")
	}
	c.File, _ = attr(se, "file")
	if v, ok := attr(se, "line"); ok {
		c.Line, _ = strconv.Atoi(strings.TrimSpace(v))
	}
	c.Duration = secondsToDuration(attrFloat(se, "time"))
	status, _ := attr(se, "status")
	var results []result
	var stdout, stderr textBuf
	stdout.max, stderr.max = p.opt.maxText(), p.opt.maxText()
	for {
		t, err := p.token()
		if err != nil {
			return c, err
		}
		switch t := t.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "failure", "error", "skipped":
				r, err := p.resultElem(t, false)
				if err != nil {
					return c, err
				}
				results = append(results, r)
			case "flakyFailure", "flakyError", "rerunFailure", "rerunError":
				r, err := p.resultElem(t, true)
				if err != nil {
					return c, err
				}
				c.Attempts = append(c.Attempts, Attempt{Status: r.status, Message: r.message, Type: r.typ, Details: r.text})
				if strings.HasPrefix(t.Name.Local, "flaky") {
					c.Flaky = true
				}
			case "system-out":
				if err := p.text(&stdout); err != nil {
					return c, err
				}
			case "system-err":
				if err := p.text(&stderr); err != nil {
					return c, err
				}
			default:
				if err := p.d.Skip(); err != nil {
					return c, p.wrap(err)
				}
			}
		case xml.EndElement:
			c.Stdout, c.Stderr = stdout.String(), stderr.String()
			p.decide(&c, results, status)
			return c, nil
		}
	}
}

// decide picks the most severe result (error > failure > skipped); a case
// without one passed, unless its status attribute says it is disabled.
func (p *junitParser) decide(c *Case, results []result, status string) {
	if len(results) == 0 {
		switch strings.ToLower(status) {
		case "disabled":
			c.Status = StatusDisabled
		case "notrun", "skipped":
			c.Status = StatusSkipped
		default:
			c.Status = StatusPassed
		}
		if c.Status != StatusPassed {
			c.Flaky = false
		}
		return
	}
	win := results[0].status
	for _, r := range results[1:] {
		if r.status.Severity() > win.Severity() {
			win = r.status
		}
	}
	c.Status = win
	var msgs, texts, types []string
	for _, r := range results {
		if r.status != win {
			continue
		}
		if r.message != "" {
			msgs = append(msgs, r.message)
		}
		if r.text != "" {
			texts = append(texts, r.text)
		}
		if r.typ != "" {
			types = append(types, r.typ)
		}
	}
	c.Message = capText(strings.Join(msgs, "\n"), p.opt.maxText())
	c.Details = capText(strings.Join(texts, "\n"), p.opt.maxText())
	c.Type = strings.Join(types, "\n")
	// A flaky test is one whose last run passed; with a primary failure the
	// attempts were reruns that failed too.
	if c.Status != StatusPassed {
		c.Flaky = false
	}
}

func (p *junitParser) resultElem(se xml.StartElement, attempt bool) (result, error) {
	r := result{}
	switch se.Name.Local {
	case "failure", "flakyFailure", "rerunFailure":
		r.status = StatusFailed
	case "error", "flakyError", "rerunError":
		r.status = StatusError
	case "skipped":
		r.status = StatusSkipped
	}
	r.message, r.hasMsg = attr(se, "message")
	r.typ, _ = attr(se, "type")
	var text, stack, junk textBuf
	text.max, stack.max, junk.max = p.opt.maxText(), p.opt.maxText(), 0
	for {
		t, err := p.token()
		if err != nil {
			return r, err
		}
		switch t := t.(type) {
		case xml.CharData:
			text.write(t)
		case xml.StartElement:
			if attempt && t.Name.Local == "stackTrace" {
				if err := p.text(&stack); err != nil {
					return r, err
				}
				continue
			}
			// Other children (system-out of a rerun, markup inside a
			// message) are read for well-formedness and dropped.
			if err := p.text(&junk); err != nil {
				return r, err
			}
		case xml.EndElement:
			r.text = text.String()
			if attempt {
				if s := stack.String(); s != "" {
					r.text = s
				} else {
					r.text = strings.TrimSpace(r.text)
				}
			}
			return r, nil
		}
	}
}

// text reads character data up to the end of the current element,
// including that of nested elements.
func (p *junitParser) text(buf *textBuf) error {
	depth := 1
	for depth > 0 {
		t, err := p.token()
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
