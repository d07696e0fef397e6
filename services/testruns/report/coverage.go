// Coverage in one shape whatever the tool: per-file line hits with
// repository-relative paths, plus the raw totals in the tool's own unit.

package report

import (
	"maps"
	"path"
	"slices"
	"strings"
)

// Unit is what a tool counts when it reports coverage.
type Unit string

const (
	UnitLines        Unit = "lines"
	UnitStatements   Unit = "statements"   // Go
	UnitInstructions Unit = "instructions" // JaCoCo bytecode instructions
	UnitBranches     Unit = "branches"
)

// Counter is a covered/total pair in a unit.
type Counter struct {
	Unit    Unit
	Covered int64
	Total   int64
}

// Percent is 100·Covered/Total, or 0 for an empty counter.
func (c Counter) Percent() float64 {
	if c.Total <= 0 {
		return 0
	}
	return 100 * float64(c.Covered) / float64(c.Total)
}

// FileCoverage is the coverage of one source file.
type FileCoverage struct {
	Path string // repository-relative, slash-separated
	// Lines maps a line number to its hit count; every instrumented line is
	// present (0 hits = not covered).
	Lines map[int]int64
	// Branches, when the format has them (Cobertura condition-coverage,
	// LCOV BRDA, JaCoCo mb/cb).
	BranchesCovered, BranchesTotal int64
}

// LineCounter counts the file's instrumented and covered lines.
func (f *FileCoverage) LineCounter() Counter {
	c := Counter{Unit: UnitLines, Total: int64(len(f.Lines))}
	for _, h := range f.Lines {
		if h > 0 {
			c.Covered++
		}
	}
	return c
}

// Coverage is one parsed coverage report.
type Coverage struct {
	Format string // cobertura, lcov, gocover, jacoco
	// Raw is the report's own headline figure in its own unit: statements
	// for Go, instructions for JaCoCo, lines for Cobertura and LCOV.
	Raw Counter
	// Counters are every figure the report gives (JaCoCo: instructions,
	// branches, lines, …), Raw first.
	Counters []Counter
	Files    []FileCoverage // sorted by Path
}

// Lines is the line coverage over all files, computed from the line maps.
func (c *Coverage) Lines() Counter {
	t := Counter{Unit: UnitLines}
	for i := range c.Files {
		fc := c.Files[i].LineCounter()
		t.Covered += fc.Covered
		t.Total += fc.Total
	}
	return t
}

// Merge adds another report into c (several shards or formats): line hits
// of the same file are summed, raw counters of the same unit added.
func (c *Coverage) Merge(o *Coverage) {
	byPath := map[string]int{}
	for i := range c.Files {
		byPath[c.Files[i].Path] = i
	}
	for _, f := range o.Files {
		i, ok := byPath[f.Path]
		if !ok {
			c.Files = append(c.Files, FileCoverage{Path: f.Path, Lines: maps.Clone(f.Lines),
				BranchesCovered: f.BranchesCovered, BranchesTotal: f.BranchesTotal})
			byPath[f.Path] = len(c.Files) - 1
			continue
		}
		dst := &c.Files[i]
		for l, h := range f.Lines {
			dst.Lines[l] = satAdd(dst.Lines[l], h)
		}
		dst.BranchesCovered += f.BranchesCovered
		dst.BranchesTotal += f.BranchesTotal
	}
	slices.SortFunc(c.Files, func(a, b FileCoverage) int { return strings.Compare(a.Path, b.Path) })
	if c.Raw.Unit == o.Raw.Unit {
		c.Raw.Covered += o.Raw.Covered
		c.Raw.Total += o.Raw.Total
	}
	if c.Format != o.Format {
		c.Format = "mixed"
	}
}

func satAdd(a, b int64) int64 {
	if s := a + b; s >= a == (b >= 0) {
		return s
	}
	if b > 0 {
		return 1<<63 - 1
	}
	return -1 << 63
}

// Paths maps the paths a coverage tool wrote to repository-relative ones.
type Paths struct {
	// Prefixes are stripped from the front of a path, longest first: the
	// agent's workspace directory, a Go module path, Cobertura <source>
	// entries are added by the parser.
	Prefixes []string
	// RepoFiles, when given, are the repository's files: a path that is not
	// one of them becomes the file it is the longest suffix of (the way
	// Codecov fixes paths from another machine), if there is exactly one.
	RepoFiles []string
}

// Resolve turns p into a clean, slash-separated, repository-relative path.
func (m *Paths) Resolve(p string, extra ...string) string {
	p = strings.ReplaceAll(p, "\\", "/")
	prefixes := append(slices.Clone(m.Prefixes), extra...)
	slices.SortFunc(prefixes, func(a, b string) int { return len(b) - len(a) })
	for _, pre := range prefixes {
		pre = strings.TrimRight(strings.ReplaceAll(pre, "\\", "/"), "/")
		if pre == "" || pre == "." {
			continue
		}
		if strings.HasPrefix(p, pre+"/") {
			p = p[len(pre)+1:]
			break
		}
	}
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if len(m.RepoFiles) == 0 || slices.Contains(m.RepoFiles, p) {
		return p
	}
	var match string
	n := 0
	for _, f := range m.RepoFiles {
		if f == p || strings.HasSuffix(f, "/"+p) || strings.HasSuffix(p, "/"+f) {
			if n == 0 || len(f) > len(match) {
				match = f
			}
			n++
		}
	}
	if n == 1 {
		return match
	}
	return p
}

// coverageBuilder collects line hits per file while a parser runs.
type coverageBuilder struct {
	files map[string]*FileCoverage
}

func (b *coverageBuilder) file(p string) *FileCoverage {
	if b.files == nil {
		b.files = map[string]*FileCoverage{}
	}
	f := b.files[p]
	if f == nil {
		f = &FileCoverage{Path: p, Lines: map[int]int64{}}
		b.files[p] = f
	}
	return f
}

// hit records hits on a line; a line listed twice (Go methods duplicated in
// a Cobertura class, overlapping blocks) keeps its highest count.
func (b *coverageBuilder) hit(f *FileCoverage, line int, hits int64) {
	if line <= 0 {
		return
	}
	if hits < 0 {
		hits = 0
	}
	if old, ok := f.Lines[line]; !ok || hits > old {
		f.Lines[line] = hits
	}
}

func (b *coverageBuilder) done() []FileCoverage {
	out := make([]FileCoverage, 0, len(b.files))
	for _, f := range b.files {
		out = append(out, *f)
	}
	slices.SortFunc(out, func(a, b FileCoverage) int { return strings.Compare(a.Path, b.Path) })
	return out
}
