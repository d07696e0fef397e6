// JaCoCo XML.

package report

import (
	"bufio"
	"encoding/xml"
	"io"
	"strconv"
	"strings"
)

var jacocoUnits = map[string]Unit{
	"INSTRUCTION": UnitInstructions,
	"BRANCH":      UnitBranches,
	"LINE":        UnitLines,
	"COMPLEXITY":  "complexity",
	"METHOD":      "methods",
	"CLASS":       "classes",
}

// ParseJaCoCo reads a JaCoCo XML report. Raw is the report's INSTRUCTION
// counter (what JaCoCo's own summary and most CI integrations call
// coverage); Counters hold all the report-level counters. Lines come from
// package/sourcefile/line: hits are the covered instructions of the line,
// branches its mb/cb. Paths are package/sourcefile (com/acme/Foo.java),
// which paths.RepoFiles turns into src/main/java/… The DOCTYPE is skipped,
// never loaded.
func ParseJaCoCo(r io.Reader, paths Paths, opt Options) (*Coverage, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if err := skipBOM(br); err != nil {
		return nil, err
	}
	x := &xmlWalk{d: newXMLDecoder(br), file: opt.File}
	if _, err := x.root("report"); err != nil {
		return nil, err
	}
	var b coverageBuilder
	cov := &Coverage{Format: "jacoco"}
	var stack []string
	var pkg string
	var cur *FileCoverage
	counters := map[Unit]*Counter{}
	var order []Unit
	for {
		t, err := x.token()
		if err != nil {
			return nil, err
		}
		switch t := t.(type) {
		case xml.StartElement:
			parent := "report"
			if len(stack) > 0 {
				parent = stack[len(stack)-1]
			}
			stack = append(stack, t.Name.Local)
			switch t.Name.Local {
			case "package":
				pkg = strings.Trim(attrOr(t, "name"), "/")
			case "sourcefile":
				if parent == "package" {
					name := attrOr(t, "name")
					if pkg != "" {
						name = pkg + "/" + name
					}
					cur = b.file(paths.Resolve(name))
				}
			case "line":
				if cur == nil {
					continue
				}
				n, err := strconv.Atoi(attrOr(t, "nr"))
				if err != nil {
					return nil, x.errAt("<line nr=" + strconv.Quote(attrOr(t, "nr")) + ">: not a line number")
				}
				b.hit(cur, n, parseCount(attrOr(t, "ci")))
				mb, cb := parseCount(attrOr(t, "mb")), parseCount(attrOr(t, "cb"))
				cur.BranchesCovered += cb
				cur.BranchesTotal += mb + cb
			case "counter":
				if parent != "report" {
					continue
				}
				u, ok := jacocoUnits[attrOr(t, "type")]
				if !ok {
					u = Unit(strings.ToLower(attrOr(t, "type")))
				}
				c := counters[u]
				if c == nil {
					c = &Counter{Unit: u}
					counters[u] = c
					order = append(order, u)
				}
				missed, covered := parseCount(attrOr(t, "missed")), parseCount(attrOr(t, "covered"))
				c.Covered += covered
				c.Total += missed + covered
			}
		case xml.EndElement:
			if len(stack) == 0 {
				cov.Files = b.done()
				if c := counters[UnitInstructions]; c != nil {
					cov.Raw = *c
				} else {
					// No report-level counters (a hand-cut report): the
					// lines are what there is.
					cov.Raw = cov.Lines()
				}
				cov.Counters = append(cov.Counters, cov.Raw)
				for _, u := range order {
					if u != UnitInstructions {
						cov.Counters = append(cov.Counters, *counters[u])
					}
				}
				return cov, x.rest()
			}
			switch stack[len(stack)-1] {
			case "sourcefile":
				cur = nil
			case "package":
				pkg = ""
			}
			stack = stack[:len(stack)-1]
		}
	}
}
