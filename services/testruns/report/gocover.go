// Go coverprofiles (`go test -coverprofile`, `go tool covdata textfmt`).

package report

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

type goBlock struct {
	file                   string
	l1, c1, l2, c2, nstmts int
}

// ParseGoCover reads a Go coverprofile. Identical blocks (concatenated
// profiles, -coverpkg) are merged: OR in set mode, a sum otherwise; the same
// block with a different statement count is an error. Raw counts statements,
// as `go test -cover` does; the line map gives each line of a block the
// block's count (the highest where blocks overlap). File names are import
// paths: give the module path in paths.Prefixes to make them
// repository-relative.
func ParseGoCover(r io.Reader, paths Paths, opt Options) (*Coverage, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	lineNo := 0
	mode := ""
	type entry struct {
		nstmts int
		count  int64
	}
	counts := map[goBlock]*entry{}
	var order []goBlock
	bad := func(msg string) error {
		return &ParseError{File: opt.File, Line: lineNo, Msg: msg}
	}
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "mode: ") {
			m := strings.TrimSpace(strings.TrimPrefix(line, "mode: "))
			if m != "set" && m != "count" && m != "atomic" {
				return nil, bad(fmt.Sprintf("unknown mode %q (want set, count or atomic)", m))
			}
			if mode != "" && m != mode {
				return nil, bad(fmt.Sprintf("mode %q after mode %q", m, mode))
			}
			mode = m
			continue
		}
		if mode == "" {
			return nil, bad(`not a Go coverprofile: the first line must be "mode: set|count|atomic"`)
		}
		blk, cnt, err := parseGoBlock(line)
		if err != nil {
			return nil, bad(err.Error())
		}
		key := blk
		key.nstmts = 0
		if old, ok := counts[key]; ok {
			if old.nstmts != blk.nstmts {
				return nil, bad(fmt.Sprintf("%s:%d.%d,%d.%d: %d statements here, %d before", blk.file, blk.l1, blk.c1, blk.l2, blk.c2, blk.nstmts, old.nstmts))
			}
			if mode == "set" {
				if cnt > 0 {
					old.count = 1
				}
			} else {
				old.count = satAdd(old.count, cnt)
			}
			continue
		}
		counts[key] = &entry{blk.nstmts, cnt}
		order = append(order, blk)
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{File: opt.File, Line: lineNo + 1, Msg: "reading: " + err.Error()}
	}
	if mode == "" {
		return nil, &ParseError{File: opt.File, Msg: "not a Go coverprofile: no mode line"}
	}
	var b coverageBuilder
	raw := Counter{Unit: UnitStatements}
	for _, blk := range order {
		key := blk
		key.nstmts = 0
		cnt := counts[key].count
		raw.Total += int64(blk.nstmts)
		if cnt > 0 {
			raw.Covered += int64(blk.nstmts)
		}
		f := b.file(paths.Resolve(blk.file))
		for l := blk.l1; l <= blk.l2; l++ {
			b.hit(f, l, cnt)
		}
	}
	cov := &Coverage{Format: "gocover", Raw: raw, Counters: []Counter{raw}, Files: b.done()}
	return cov, nil
}

// parseGoBlock reads "name.go:line.column,line.column numberOfStatements count".
func parseGoBlock(line string) (goBlock, int64, error) {
	var b goBlock
	sp := strings.LastIndexByte(line, ' ')
	if sp < 0 {
		return b, 0, fmt.Errorf("bad block %q", cut(line, 80))
	}
	cnt, err := strconv.ParseInt(line[sp+1:], 10, 64)
	if err != nil || cnt < 0 {
		return b, 0, fmt.Errorf("bad count in %q", cut(line, 80))
	}
	rest := line[:sp]
	sp = strings.LastIndexByte(rest, ' ')
	if sp < 0 {
		return b, 0, fmt.Errorf("bad block %q", cut(line, 80))
	}
	b.nstmts, err = strconv.Atoi(rest[sp+1:])
	if err != nil || b.nstmts < 0 {
		return b, 0, fmt.Errorf("bad statement count in %q", cut(line, 80))
	}
	rest = rest[:sp]
	colon := strings.LastIndexByte(rest, ':')
	if colon <= 0 {
		return b, 0, fmt.Errorf("bad block %q", cut(line, 80))
	}
	b.file = rest[:colon]
	if _, err := fmt.Sscanf(rest[colon+1:], "%d.%d,%d.%d", &b.l1, &b.c1, &b.l2, &b.c2); err != nil {
		return b, 0, fmt.Errorf("bad position in %q", cut(line, 80))
	}
	if b.l1 <= 0 || b.l2 < b.l1 || b.l2-b.l1 > 1_000_000 {
		return b, 0, fmt.Errorf("bad line range in %q", cut(line, 80))
	}
	return b, cnt, nil
}
