// `go test -json` (test2json) read natively: subtests, panics, package and
// build failures.

package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// goEvent is one test2json event (cmd/test2json).
type goEvent struct {
	Action      string
	Package     string
	Test        string
	Elapsed     *float64
	Output      string
	ImportPath  string // build-output, build-fail
	FailedBuild string // on a package's fail since Go 1.24
}

type goTest struct {
	pkg, name string
	status    Status
	elapsed   float64
	out       textBuf
}

type goPkg struct {
	name      string
	order     []*goTest
	tests     map[string]*goTest
	failed    bool
	done      bool
	elapsed   float64
	out       textBuf // package-level output (panics after the tests, TestMain)
	buildOut  textBuf
	buildFail bool
}

// ParseGoTest reads the output of `go test -json` (several packages, in any
// interleaving). Each test and subtest becomes a case whose suite and class
// are the package's import path (as go-junit-report names them). A package
// that failed without a failing test gets a case of its own: "[build
// failed]" (error "Build error") when it did not compile, otherwise
// "Failure" (error "Runtime error" after a panic, else "Package failed").
// Lines that are not JSON, as old Go versions wrote build errors, are
// understood the same way.
func ParseGoTest(r io.Reader, opt Options) (*Result, error) {
	pkgs := map[string]*goPkg{}
	var order []*goPkg
	pkg := func(name string) *goPkg {
		p := pkgs[name]
		if p == nil {
			p = &goPkg{name: name, tests: map[string]*goTest{}}
			p.out.max, p.buildOut.max = opt.maxText(), opt.maxText()
			pkgs[name] = p
			order = append(order, p)
		}
		return p
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	lineNo := 0
	events := 0
	var building *goPkg // the package whose plain-text build errors follow
	cases := 0
	for sc.Scan() {
		lineNo++
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if line[0] != '{' {
			// go vet / build output outside JSON: "# pkg [pkg.test]", the
			// errors, then "FAIL\tpkg [build failed]".
			s := string(line)
			switch {
			case strings.HasPrefix(s, "# "):
				name, _, _ := strings.Cut(strings.TrimPrefix(s, "# "), " ")
				building = pkg(name)
			case strings.HasPrefix(s, "FAIL\t") && strings.HasSuffix(s, " [build failed]"):
				name := strings.TrimSuffix(strings.TrimPrefix(s, "FAIL\t"), " [build failed]")
				p := pkg(name)
				p.buildFail, p.failed, p.done = true, true, true
				building = nil
			case building != nil:
				building.buildOut.write([]byte(s + "\n"))
			}
			continue
		}
		var ev goEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return nil, &ParseError{File: opt.File, Line: lineNo, Msg: "invalid go test -json event: " + err.Error()}
		}
		events++
		switch ev.Action {
		case "build-output":
			p := pkg(strings.Fields(ev.ImportPath + " ")[0])
			if !strings.HasPrefix(ev.Output, "# ") {
				p.buildOut.write([]byte(ev.Output))
			}
			continue
		case "build-fail":
			p := pkg(strings.Fields(ev.ImportPath + " ")[0])
			p.buildFail = true
			continue
		}
		if ev.Package == "" {
			continue
		}
		p := pkg(ev.Package)
		if ev.Test == "" {
			switch ev.Action {
			case "output":
				p.out.write([]byte(ev.Output))
			case "pass", "skip":
				p.done = true
			case "fail":
				p.done, p.failed = true, true
				if ev.FailedBuild != "" {
					p.buildFail = true
				}
			}
			if ev.Elapsed != nil {
				p.elapsed = *ev.Elapsed
			}
			continue
		}
		t := p.tests[ev.Test]
		if t == nil {
			if cases >= opt.maxCases() {
				return nil, &ParseError{File: opt.File, Line: lineNo, Msg: fmt.Sprintf("more than %d test cases", opt.maxCases())}
			}
			cases++
			t = &goTest{pkg: p.name, name: ev.Test}
			t.out.max = opt.maxText()
			p.tests[ev.Test] = t
			p.order = append(p.order, t)
		}
		switch ev.Action {
		case "output":
			// The framing lines carry no information the events do not.
			o := strings.TrimLeft(ev.Output, " ")
			if strings.HasPrefix(o, "=== ") || strings.HasPrefix(o, "--- PASS") ||
				strings.HasPrefix(o, "--- FAIL") || strings.HasPrefix(o, "--- SKIP") {
				continue
			}
			t.out.write([]byte(ev.Output))
		case "pass":
			t.status = StatusPassed
		case "fail":
			t.status = StatusFailed
		case "skip":
			t.status = StatusSkipped
		}
		if ev.Elapsed != nil && (ev.Action == "pass" || ev.Action == "fail" || ev.Action == "skip") {
			t.elapsed = *ev.Elapsed
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{File: opt.File, Line: lineNo + 1, Msg: "reading go test -json output: " + err.Error()}
	}
	if events == 0 && len(order) == 0 {
		return nil, &ParseError{File: opt.File, Msg: "not go test -json output: no test events"}
	}
	res := &Result{Format: "gotest"}
	for _, p := range order {
		res.Suites = append(res.Suites, Suite{Name: p.name, Tests: -1, Duration: secondsToDuration(p.elapsed)})
		anyBad := false
		for _, t := range p.order {
			c := Case{Suite: p.name, Class: p.name, Name: t.name, Status: t.status, Duration: secondsToDuration(t.elapsed)}
			out := t.out.String()
			switch t.status {
			case "":
				// Never finished: the package died while it ran (a panic,
				// a timeout).
				c.Status = StatusError
				c.Message = "Test did not finish"
				c.Details = out
				if pan := panicText(p.out.String()); pan != "" {
					c.Message = "Runtime error"
					c.Details = pan
				}
			case StatusFailed:
				c.Message = "Failed"
				c.Details = out
				if strings.Contains(out, "panic: ") {
					c.Status, c.Message = StatusError, "Runtime error"
				}
			case StatusSkipped:
				c.Message = "Skipped"
				c.Details = out
			default:
				c.Stdout = out
			}
			if c.Status.Bad() {
				anyBad = true
			}
			res.Cases = append(res.Cases, c)
		}
		switch {
		case p.buildFail:
			res.Cases = append(res.Cases, Case{Suite: p.name, Class: p.name, Name: "[build failed]",
				Status: StatusError, Message: "Build error", Details: strings.TrimRight(p.buildOut.String(), "\n")})
		case p.failed && !anyBad:
			c := Case{Suite: p.name, Class: p.name, Name: "Failure", Status: StatusError, Message: "Package failed",
				Details: strings.TrimRight(p.out.String(), "\n")}
			if pan := panicText(p.out.String()); pan != "" {
				c.Message, c.Details = "Runtime error", pan
			}
			res.Cases = append(res.Cases, c)
		}
	}
	return res, nil
}

// panicText is the output from a "panic:" line on, without the final
// FAIL summary line.
func panicText(out string) string {
	i := strings.Index(out, "panic: ")
	if i < 0 {
		return ""
	}
	out = out[i:]
	if j := strings.LastIndex(out, "\nFAIL\t"); j >= 0 {
		out = out[:j]
	}
	return strings.TrimRight(out, "\n")
}
