// Patch coverage: how many of the lines a change adds are covered.

package report

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// AddedLines reads a unified diff (git diff base...head) and returns, per
// new file path, the line numbers the change adds. Deleted files, binary
// files and pure renames add nothing.
func AddedLines(r io.Reader) (map[string][]int, error) {
	out := map[string][]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var file string
	newLine, remainNew, remainOld := 0, 0, 0
	lineNo := 0
	for sc.Scan() {
		lineNo++
		l := sc.Text()
		if remainNew > 0 || remainOld > 0 {
			switch {
			case strings.HasPrefix(l, "+"):
				if file != "" {
					out[file] = append(out[file], newLine)
				}
				newLine++
				remainNew--
				continue
			case strings.HasPrefix(l, "-"):
				remainOld--
				continue
			case strings.HasPrefix(l, " ") || l == "":
				newLine++
				remainNew--
				remainOld--
				continue
			case strings.HasPrefix(l, `\`): // "\ No newline at end of file"
				continue
			}
			// Anything else ends the hunk early (a malformed count).
			remainNew, remainOld = 0, 0
		}
		switch {
		case strings.HasPrefix(l, "diff --git "):
			file = ""
		case strings.HasPrefix(l, "+++ "):
			p := strings.TrimPrefix(l, "+++ ")
			if i := strings.IndexByte(p, '\t'); i >= 0 {
				p = p[:i]
			}
			p = strings.Trim(p, `"`)
			if p == "/dev/null" {
				file = ""
			} else {
				file = strings.TrimPrefix(p, "b/")
			}
		case strings.HasPrefix(l, "@@ "):
			// @@ -a,b +c,d @@
			f := strings.Fields(l)
			if len(f) < 3 || !strings.HasPrefix(f[1], "-") || !strings.HasPrefix(f[2], "+") {
				return nil, fmt.Errorf("diff line %d: bad hunk header %q", lineNo, cut(l, 80))
			}
			start, n, err := hunkRange(f[2][1:])
			if err != nil {
				return nil, fmt.Errorf("diff line %d: %v", lineNo, err)
			}
			_, o, err := hunkRange(f[1][1:])
			if err != nil {
				return nil, fmt.Errorf("diff line %d: %v", lineNo, err)
			}
			newLine, remainNew, remainOld = start, n, o
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading diff: %w", err)
	}
	return out, nil
}

func hunkRange(s string) (start, n int, err error) {
	a, b, ok := strings.Cut(s, ",")
	start, err = strconv.Atoi(a)
	if err != nil {
		return 0, 0, fmt.Errorf("bad hunk range %q", s)
	}
	n = 1
	if ok {
		n, err = strconv.Atoi(b)
		if err != nil {
			return 0, 0, fmt.Errorf("bad hunk range %q", s)
		}
	}
	return start, n, nil
}

// FilePatch is the patch coverage of one file.
type FilePatch struct {
	Path    string
	Covered int64
	Total   int64 // added lines the coverage report instruments
	Missed  []int // added, instrumented, not covered
}

// PatchCoverage is Codecov's patch figure: of the added lines that a
// coverage report instruments, the share with hits. Added lines the report
// does not know (comments, blank lines, files without coverage) do not
// count.
type PatchCoverage struct {
	Counter
	Files []FilePatch // files with at least one instrumented added line
}

// Patch computes patch coverage from the added lines of a diff.
func Patch(cov *Coverage, added map[string][]int) PatchCoverage {
	pc := PatchCoverage{Counter: Counter{Unit: UnitLines}}
	for i := range cov.Files {
		f := &cov.Files[i]
		lines := added[f.Path]
		if len(lines) == 0 {
			continue
		}
		fp := FilePatch{Path: f.Path}
		for _, l := range lines {
			h, ok := f.Lines[l]
			if !ok {
				continue
			}
			fp.Total++
			if h > 0 {
				fp.Covered++
			} else {
				fp.Missed = append(fp.Missed, l)
			}
		}
		if fp.Total > 0 {
			slices.Sort(fp.Missed)
			pc.Files = append(pc.Files, fp)
			pc.Covered += fp.Covered
			pc.Total += fp.Total
		}
	}
	return pc
}
