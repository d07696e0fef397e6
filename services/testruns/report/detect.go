// Telling formats apart.

package report

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Formats this package reads.
const (
	FormatJUnit     = "junit"
	FormatGoTest    = "gotest"
	FormatCobertura = "cobertura"
	FormatLCOV      = "lcov"
	FormatGoCover   = "gocover"
	FormatJaCoCo    = "jacoco"
	FormatDiff      = "diff"
)

// IsCoverage reports whether format is a coverage format.
func IsCoverage(format string) bool {
	switch format {
	case FormatCobertura, FormatLCOV, FormatGoCover, FormatJaCoCo:
		return true
	}
	return false
}

// Detect guesses a report's format from its first bytes (about 4 KiB are
// enough), or returns "" when it cannot tell.
func Detect(head []byte) string {
	head = bytes.TrimPrefix(head, []byte{0xEF, 0xBB, 0xBF})
	t := bytes.TrimLeft(head, " \t\r\n")
	switch {
	case bytes.HasPrefix(t, []byte("mode:")):
		return FormatGoCover
	case bytes.HasPrefix(t, []byte("diff --git")) || bytes.HasPrefix(t, []byte("--- ")):
		return FormatDiff
	case bytes.HasPrefix(t, []byte("{")) && bytes.Contains(t, []byte(`"Action"`)):
		return FormatGoTest
	case bytes.HasPrefix(t, []byte("TN:")) || bytes.HasPrefix(t, []byte("SF:")):
		return FormatLCOV
	case bytes.HasPrefix(t, []byte("<")):
		s := string(t)
		for {
			i := strings.Index(s, "<")
			if i < 0 {
				return ""
			}
			s = s[i+1:]
			if strings.HasPrefix(s, "?") || strings.HasPrefix(s, "!") {
				continue
			}
			name := s
			if j := strings.IndexAny(s, " \t\r\n/>"); j >= 0 {
				name = s[:j]
			}
			switch name {
			case "testsuites", "testsuite":
				return FormatJUnit
			case "coverage":
				return FormatCobertura
			case "report":
				return FormatJaCoCo
			}
			return ""
		}
	}
	return ""
}

// Parsed is what Parse read: a test result, coverage, or added lines.
type Parsed struct {
	Format   string
	Tests    *Result
	Coverage *Coverage
	Added    map[string][]int
}

// Parse reads a report in the given format ("" to detect it).
func Parse(r io.Reader, format string, paths Paths, opt Options) (*Parsed, error) {
	return ParseStream(r, format, paths, opt, nil)
}

// ParseStream is Parse for reports too large to hold: with emit set, the
// cases of a test report go to emit one by one, in report order, instead
// of into Parsed.Tests.Cases. JUnit XML is streamed (see StreamJUnit); a
// `go test -json` report is read whole first, since a test's outcome may
// come after other packages' output. Coverage and diffs are returned as
// Parse returns them. An error from emit ends the parse and is returned as
// is.
func ParseStream(r io.Reader, format string, paths Paths, opt Options, emit func(Case) error) (*Parsed, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if format == "" {
		head, _ := br.Peek(4096)
		format = Detect(head)
		if format == "" {
			if len(bytes.TrimSpace(head)) == 0 {
				return nil, &ParseError{File: opt.File, Msg: "file is empty"}
			}
			return nil, &ParseError{File: opt.File, Msg: "unknown report format (want JUnit XML, go test -json, Cobertura, LCOV, a Go coverprofile, JaCoCo or a diff)"}
		}
	}
	p := &Parsed{Format: format}
	var err error
	switch format {
	case FormatJUnit:
		if emit != nil {
			p.Tests, err = StreamJUnit(br, opt, emit)
		} else {
			p.Tests, err = ParseJUnit(br, opt)
		}
	case FormatGoTest:
		p.Tests, err = ParseGoTest(br, opt)
		if err == nil && emit != nil {
			cases := p.Tests.Cases
			p.Tests.Cases = nil
			for _, c := range cases {
				if err := emit(c); err != nil {
					return nil, err
				}
			}
		}
	case FormatCobertura:
		p.Coverage, err = ParseCobertura(br, paths, opt)
	case FormatLCOV:
		p.Coverage, err = ParseLCOV(br, paths, opt)
	case FormatGoCover:
		p.Coverage, err = ParseGoCover(br, paths, opt)
	case FormatJaCoCo:
		p.Coverage, err = ParseJaCoCo(br, paths, opt)
	case FormatDiff:
		p.Added, err = AddedLines(br)
		if err != nil {
			err = &ParseError{File: opt.File, Msg: err.Error()}
		}
	default:
		return nil, fmt.Errorf("unknown report format %q", format)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}
