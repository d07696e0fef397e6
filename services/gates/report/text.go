package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

func asErr[T error](err error, target *T) bool { return errors.As(err, target) }

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// flake8: "path:row:col: CODE text" (default) or "path:row: [CODE] text"
// (pylint format). The code prefix is not a severity; the syntax-error and
// undefined-name codes flake8 users treat as fatal are errors.
var (
	flake8Default = regexp.MustCompile(`^(.+?):(\d+):(\d+): ([A-Z]+[0-9]+) (.*)$`)
	flake8Pylint  = regexp.MustCompile(`^(.+?):(\d+): \[([A-Z]+[0-9]+)\] (.*)$`)
)

func flake8Level(code string) string {
	for _, p := range []string{"E9", "F63", "F7", "F82"} {
		if strings.HasPrefix(code, p) {
			return LevelError
		}
	}
	return LevelWarning
}

func parseFlake8(data []byte) ([]Finding, error) {
	out := []Finding{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(ansi.ReplaceAllString(line, ""), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := Finding{Tool: "flake8"}
		if m := flake8Default.FindStringSubmatch(line); m != nil {
			f.Path, f.Rule, f.Message = strings.TrimPrefix(m[1], "./"), m[4], m[5]
			f.Line, _ = strconv.Atoi(m[2])
			f.Column, _ = strconv.Atoi(m[3])
		} else if m := flake8Pylint.FindStringSubmatch(line); m != nil {
			f.Path, f.Rule, f.Message = strings.TrimPrefix(m[1], "./"), m[3], m[4]
			f.Line, _ = strconv.Atoi(m[2])
		} else {
			return nil, fmt.Errorf("line %d: %q is not flake8 output (want path:row:col: CODE text)", i+1, truncate(line, 80))
		}
		f.Level = flake8Level(f.Rule)
		out = append(out, f)
	}
	return out, nil
}

// Checkstyle XML: <checkstyle><file name><error line column severity
// message source/></file></checkstyle>; <error> may also sit directly under
// <checkstyle>, a file may be listed twice, <exception> elements are skipped.
type checkstyleError struct {
	Line     string `xml:"line,attr"`
	Column   string `xml:"column,attr"`
	Severity string `xml:"severity,attr"`
	Message  string `xml:"message,attr"`
	Source   string `xml:"source,attr"`
}

func parseCheckstyle(data []byte) ([]Finding, error) {
	var doc struct {
		XMLName xml.Name `xml:"checkstyle"`
		Files   []struct {
			Name   string            `xml:"name,attr"`
			Errors []checkstyleError `xml:"error"`
		} `xml:"file"`
		Errors []checkstyleError `xml:"error"`
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	if err := d.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("empty file: want a <checkstyle> document")
		}
		line, _ := d.InputPos()
		return nil, fmt.Errorf("line %d: invalid Checkstyle XML: %v", line, err)
	}
	out := []Finding{}
	add := func(path string, e checkstyleError) error {
		f := Finding{Tool: "checkstyle", Path: strings.TrimPrefix(path, "./"), Message: e.Message}
		// "twCheck#com.x.Check": the module id is not part of the rule.
		f.Rule = e.Source
		if i := strings.LastIndexByte(f.Rule, '#'); i >= 0 {
			f.Rule = f.Rule[i+1:]
		}
		switch strings.ToLower(e.Severity) {
		case "ignore":
			return errSkip
		case "error", "":
			f.Level = LevelError
		case "warning":
			f.Level = LevelWarning
		case "info":
			f.Level = LevelNote
		default:
			return fmt.Errorf("file %q: severity %q (want error, warning, info or ignore)", path, e.Severity)
		}
		f.Line, _ = strconv.Atoi(e.Line)
		f.Column, _ = strconv.Atoi(e.Column)
		out = append(out, f)
		return nil
	}
	for _, e := range doc.Errors {
		if err := add("", e); err != nil && err != errSkip {
			return nil, err
		}
	}
	for _, file := range doc.Files {
		for _, e := range file.Errors {
			if err := add(file.Name, e); err != nil && err != errSkip {
				return nil, err
			}
		}
	}
	return out, nil
}

var errSkip = errors.New("skip")

// golangci-lint: the JSON printer ({"Issues":[…],"Report":{…}}), or the
// default text output "path:line:col: text (linter)" followed by source
// lines and a caret.
func parseGolangci(data []byte) ([]Finding, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var doc struct {
			Issues *[]struct {
				FromLinter  string
				Text        string
				Severity    string
				SourceLines []string
				Pos         struct {
					Filename     string
					Line, Column int
				}
			}
		}
		if err := json.Unmarshal(trimmed, &doc); err != nil {
			return nil, jsonError(trimmed, err)
		}
		if doc.Issues == nil {
			return nil, fmt.Errorf("Issues: missing; is this golangci-lint --output.json.path output?")
		}
		out := make([]Finding, 0, len(*doc.Issues))
		for _, is := range *doc.Issues {
			f := Finding{Tool: "golangci-lint", Rule: is.FromLinter, Message: is.Text, Path: is.Pos.Filename, Line: is.Pos.Line, Column: is.Pos.Column}
			switch strings.ToLower(is.Severity) {
			case "warning":
				f.Level = LevelWarning
			case "info", "note":
				f.Level = LevelNote
			default:
				f.Level = LevelError // as golangci-lint's SARIF printer does for unknown or empty
			}
			if len(is.SourceLines) > 0 {
				f.Snippet = is.SourceLines[0]
			}
			out = append(out, f)
		}
		return out, nil
	}
	out := []Finding{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(ansi.ReplaceAllString(line, ""), "\r")
		m := golangciText.FindStringSubmatch(line)
		if m == nil {
			if len(out) > 0 && out[len(out)-1].Snippet == "" && strings.TrimSpace(line) != "" && strings.Trim(line, " \t^") != "" {
				out[len(out)-1].Snippet = line // the source line under a finding
			}
			continue
		}
		f := Finding{Tool: "golangci-lint", Path: m[1], Message: m[4], Rule: m[5], Level: LevelError}
		f.Line, _ = strconv.Atoi(m[2])
		f.Column, _ = strconv.Atoi(m[3])
		out = append(out, f)
	}
	if len(out) == 0 && len(trimmed) > 0 {
		return nil, fmt.Errorf("no findings in %d bytes of text: want golangci-lint JSON or path:line:col: text (linter) lines", len(trimmed))
	}
	return out, nil
}

var golangciText = regexp.MustCompile(`^([^\s:][^:]*):(\d+):(?:(\d+):)? (.*) \(([A-Za-z0-9_-]+)\)$`)

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
