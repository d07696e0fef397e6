// LCOV tracefiles (geninfo, istanbul, c8, grcov, …).

package report

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ParseLCOV reads an LCOV tracefile: SF starts a record, DA gives line hits,
// BRDA branches ("-" = never evaluated), LF/LH the tool's line totals,
// end_of_record closes it. Old and new function records are accepted and
// not used; odd counts (negative, "1.0e+19") are clamped. Raw is the sum of
// LH/LF when every record has them, else computed from the DA lines.
func ParseLCOV(r io.Reader, paths Paths, opt Options) (*Coverage, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var b coverageBuilder
	var cur *FileCoverage
	var lf, lh int64
	recs, recsWithTotals := 0, 0
	haveLF, haveLH := false, false
	haveBRF, haveBRH := false, false
	var brf, brh, brCov, brTot int64 // the record's BRF/BRH; the file's branches before it
	lineNo := 0
	records := 0
	bad := func(msg string) error {
		return &ParseError{File: opt.File, Line: lineNo, Msg: msg}
	}
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if lineNo == 1 {
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		if line == "" {
			continue
		}
		if line == "end_of_record" {
			if cur == nil {
				return nil, bad("end_of_record without SF")
			}
			if haveLF && haveLH {
				recsWithTotals++
			}
			// The tool's own branch totals win over the BRDA lines, as its
			// line totals do (they may disagree: lcov-parse parts.info).
			if haveBRF && haveBRH {
				cur.BranchesCovered, cur.BranchesTotal = brCov+brh, brTot+brf
			}
			cur, haveLF, haveLH, haveBRF, haveBRH = nil, false, false, false, false
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil, bad(fmt.Sprintf("not an LCOV record: %q", cut(line, 60)))
		}
		switch key {
		case "BRF", "BRH":
			if cur == nil {
				return nil, bad(key + " outside a record")
			}
			if key == "BRF" {
				brf, haveBRF = parseCount(val), true
			} else {
				brh, haveBRH = parseCount(val), true
			}
		case "TN", "VER", "FN", "FNDA", "FNF", "FNH", "FNL", "FNA", "MCDC", "MCF", "MCH":
			// Names, versions, functions and MC/DC: not used.
		case "SF":
			if cur != nil {
				return nil, bad("SF inside a record (missing end_of_record)")
			}
			if strings.TrimSpace(val) == "" {
				return nil, bad("SF without a file name")
			}
			cur = b.file(paths.Resolve(strings.TrimSpace(val)))
			brCov, brTot = cur.BranchesCovered, cur.BranchesTotal
			recs++
			records++
		case "DA":
			if cur == nil {
				return nil, bad("DA outside a record")
			}
			f := strings.Split(val, ",")
			if len(f) < 2 {
				return nil, bad(fmt.Sprintf("DA %q: want line,count", val))
			}
			n, err := strconv.Atoi(strings.TrimSpace(f[0]))
			if err != nil || n <= 0 {
				return nil, bad(fmt.Sprintf("DA %q: bad line number", val))
			}
			b.hit(cur, n, parseCount(f[1]))
		case "BRDA":
			if cur == nil {
				return nil, bad("BRDA outside a record")
			}
			f := strings.Split(val, ",")
			if len(f) < 4 {
				return nil, bad(fmt.Sprintf("BRDA %q: want line,block,branch,taken", val))
			}
			if _, err := strconv.Atoi(strings.TrimSpace(f[0])); err != nil {
				return nil, bad(fmt.Sprintf("BRDA %q: bad line number", val))
			}
			cur.BranchesTotal++
			// The branch name may contain commas; taken is the last field.
			if t := strings.TrimSpace(f[len(f)-1]); t != "-" && parseCount(t) > 0 {
				cur.BranchesCovered++
			}
		case "LF":
			if cur == nil {
				return nil, bad("LF outside a record")
			}
			lf += parseCount(val)
			haveLF = true
		case "LH":
			if cur == nil {
				return nil, bad("LH outside a record")
			}
			lh += parseCount(val)
			haveLH = true
		default:
			return nil, bad(fmt.Sprintf("unknown LCOV record %q", key))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{File: opt.File, Line: lineNo + 1, Msg: "reading: " + err.Error()}
	}
	if cur != nil {
		return nil, bad("last record has no end_of_record (truncated?)")
	}
	if records == 0 {
		return nil, &ParseError{File: opt.File, Msg: "not an LCOV tracefile: no SF record"}
	}
	cov := &Coverage{Format: "lcov", Files: b.done()}
	cov.Raw = cov.Lines()
	if recsWithTotals == recs {
		cov.Raw = Counter{Unit: UnitLines, Covered: lh, Total: lf}
	}
	cov.Counters = []Counter{cov.Raw}
	var br Counter
	br.Unit = UnitBranches
	for _, f := range cov.Files {
		br.Covered += f.BranchesCovered
		br.Total += f.BranchesTotal
	}
	if br.Total > 0 {
		cov.Counters = append(cov.Counters, br)
	}
	return cov, nil
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
