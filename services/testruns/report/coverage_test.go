package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const coverageData = "../../../../shared/testdata/coverage"

type covParser func(f *os.File, paths Paths, opt Options) (*Coverage, error)

func openCov(t *testing.T, rel string, parse func(r *os.File) (*Coverage, error)) *Coverage {
	t.Helper()
	f, err := os.Open(filepath.Join(coverageData, rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cov, err := parse(f)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return cov
}

func counterIs(t *testing.T, what string, c Counter, unit Unit, covered, total int64) {
	t.Helper()
	if c.Unit != unit || c.Covered != covered || c.Total != total {
		t.Errorf("%s: %d/%d %s, want %d/%d %s", what, c.Covered, c.Total, c.Unit, covered, total, unit)
	}
}

// TestCoverageExpected checks the totals the README of testdata/coverage
// gives for each format.
func TestCoverageExpected(t *testing.T) {
	mod := Paths{Prefixes: []string{"github.com/gorilla/mux"}}
	t.Run("gocover mux", func(t *testing.T) {
		cov := openCov(t, "go-coverprofile/mux_v1.8.1.coverage.txt", func(f *os.File) (*Coverage, error) {
			return ParseGoCover(f, mod, Options{File: "mux"})
		})
		// `go test -cover` says 87.59 %: 515 of 588 statements.
		counterIs(t, "raw", cov.Raw, UnitStatements, 515, 588)
		if p := cov.Raw.Percent(); p < 87.58 || p > 87.59 {
			t.Errorf("percent %.3f", p)
		}
		if cov.Files[0].Path != "doc.go" && !strings.HasSuffix(cov.Files[0].Path, ".go") || strings.Contains(cov.Files[0].Path, "github.com") {
			t.Errorf("path %q not repository-relative", cov.Files[0].Path)
		}
	})
	t.Run("cobertura mux golden", func(t *testing.T) {
		cov := openCov(t, "cobertura/gocover-cobertura_mux_v1.8.1.golden.xml", func(f *os.File) (*Coverage, error) {
			return ParseCobertura(f, Paths{}, Options{File: "mux.xml"})
		})
		// line-rate 0.8435518 = 798/946 lines.
		counterIs(t, "raw", cov.Raw, UnitLines, 798, 946)
		t.Logf("line map: %+v", cov.Lines())
	})
	t.Run("cobertura coverage.py branch", func(t *testing.T) {
		cov := openCov(t, "cobertura/coveragepy_y_xml_branch.coverage.xml", func(f *os.File) (*Coverage, error) {
			return ParseCobertura(f, Paths{}, Options{})
		})
		counterIs(t, "raw", cov.Raw, UnitLines, 4, 5)
		counterIs(t, "lines", cov.Lines(), UnitLines, 4, 5)
		if len(cov.Counters) != 2 {
			t.Fatalf("counters %+v", cov.Counters)
		}
		counterIs(t, "branches", cov.Counters[1], UnitBranches, 1, 2)
		if len(cov.Files) != 1 || cov.Files[0].Path != "y.py" {
			t.Errorf("files %+v", cov.Files)
		}
	})
	t.Run("cobertura coverage.py", func(t *testing.T) {
		cov := openCov(t, "cobertura/coveragepy_x_xml.coverage.xml", func(f *os.File) (*Coverage, error) {
			return ParseCobertura(f, Paths{}, Options{})
		})
		if l := cov.Lines(); l != cov.Raw {
			t.Errorf("line map %+v disagrees with the root counters %+v", l, cov.Raw)
		}
	})
	t.Run("lcov-parse parts", func(t *testing.T) {
		cov := openCov(t, "lcov/lcov-parse_parts.info", func(f *os.File) (*Coverage, error) {
			return ParseLCOV(f, Paths{}, Options{})
		})
		want := map[string][2]int64{ // path: hit, found
			"anim-base/anim-base-coverage.js":     {143, 181},
			"anim-easing/anim-easing-coverage.js": {70, 76},
			"javascript/common.js":                {5, 6},
		}
		if len(cov.Files) != 3 {
			t.Fatalf("%d files, want 3", len(cov.Files))
		}
		for _, f := range cov.Files {
			w, ok := want[f.Path]
			if !ok {
				t.Errorf("unexpected file %q", f.Path)
				continue
			}
			counterIs(t, f.Path, f.LineCounter(), UnitLines, w[0], w[1])
		}
		counterIs(t, "raw", cov.Raw, UnitLines, 143+70+5, 181+76+6)
		// Branches: record 2 found 23 hit 22, record 3 none.
		for _, f := range cov.Files {
			if f.Path == "anim-easing/anim-easing-coverage.js" && (f.BranchesTotal != 23 || f.BranchesCovered != 22) {
				t.Errorf("branches %d/%d, want 22/23", f.BranchesCovered, f.BranchesTotal)
			}
		}
	})
	t.Run("jacoco report", func(t *testing.T) {
		cov := openCov(t, "jacoco/madrapps_report.xml", func(f *os.File) (*Coverage, error) {
			return ParseJaCoCo(f, Paths{}, Options{})
		})
		// 35.25 %: INSTRUCTION missed 79 covered 43.
		counterIs(t, "raw", cov.Raw, UnitInstructions, 43, 122)
		if p := cov.Raw.Percent(); p < 35.24 || p > 35.255 {
			t.Errorf("percent %.3f, want 35.25", p)
		}
		got := map[Unit]Counter{}
		for _, c := range cov.Counters {
			got[c.Unit] = c
		}
		counterIs(t, "branch", got[UnitBranches], UnitBranches, 2, 6)
		counterIs(t, "line", got[UnitLines], UnitLines, 12, 27)
		counterIs(t, "complexity", got["complexity"], "complexity", 10, 25)
		counterIs(t, "method", got["methods"], "methods", 10, 22)
		counterIs(t, "class", got["classes"], "classes", 3, 3)
		// The per-line detail agrees with the LINE counter.
		counterIs(t, "line map", cov.Lines(), UnitLines, 12, 27)
	})
	t.Run("jacoco others parse", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(coverageData, "jacoco/madrapps_*.xml"))
		for _, p := range files {
			rel, _ := filepath.Rel(coverageData, p)
			cov := openCov(t, rel, func(f *os.File) (*Coverage, error) {
				return ParseJaCoCo(f, Paths{}, Options{File: rel})
			})
			t.Logf("%s: %+v, %d files", rel, cov.Raw, len(cov.Files))
		}
	})
	t.Run("gocover others", func(t *testing.T) {
		for rel, want := range map[string][2]int64{
			"go-coverprofile/go-approval-tests_v1.9.1.coverage.txt": {-1, -1},
			"go-coverprofile/gocover-cobertura_testdata_set.txt":    {-1, -1},
			// Two identical blocks merged (set: OR), two more distinct.
			"go-coverprofile/gocover-cobertura_testdata_overlap.txt": {3, 4},
			"go-coverprofile/gocover-cobertura_testdata_varfunc.txt": {-1, -1},
		} {
			cov := openCov(t, rel, func(f *os.File) (*Coverage, error) {
				return ParseGoCover(f, Paths{}, Options{File: rel})
			})
			if want[0] >= 0 {
				counterIs(t, rel, cov.Raw, UnitStatements, want[0], want[1])
			}
		}
	})
}

func TestGoCoverMerge(t *testing.T) {
	in := "mode: count\na.go:1.1,2.2 2 1\na.go:1.1,2.2 2 3\na.go:4.1,4.9 1 0\n"
	cov, err := ParseGoCover(strings.NewReader(in), Paths{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	counterIs(t, "raw", cov.Raw, UnitStatements, 2, 3)
	if h := cov.Files[0].Lines[1]; h != 4 {
		t.Errorf("line 1 hits %d, want 4 (summed)", h)
	}
	_, err = ParseGoCover(strings.NewReader("mode: set\na.go:1.1,2.2 2 1\na.go:1.1,2.2 3 1\n"), Paths{}, Options{File: "c.out"})
	if err == nil || !strings.Contains(err.Error(), "c.out:3:") {
		t.Errorf("mismatched statements: %v", err)
	}
}

func TestCoverageBadInput(t *testing.T) {
	for name, tc := range map[string]struct {
		parse func(string) error
		in    string
		want  string
	}{
		"lcov no end":       {lcov, "SF:a.c\nDA:1,1\n", "no end_of_record"},
		"lcov bad DA":       {lcov, "SF:a.c\nDA:x,1\nend_of_record\n", ":2: DA"},
		"lcov not lcov":     {lcov, "hello world\n", "not an LCOV record"},
		"lcov empty":        {lcov, "", "no SF record"},
		"gocover no mode":   {gocover, "a.go:1.1,2.2 1 1\n", "mode"},
		"gocover bad block": {gocover, "mode: set\na.go:1.1 1 1\n", "bad position"},
		"cobertura root":    {cobertura, "<report/>", "want <coverage>"},
		"cobertura cut":     {cobertura, "<coverage><packages>", "truncated"},
		"jacoco root":       {jacoco, "<coverage/>", "want <report>"},
		"jacoco empty":      {jacoco, "", "empty"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.parse(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func lcov(s string) error {
	_, err := ParseLCOV(strings.NewReader(s), Paths{}, Options{File: "x"})
	return err
}
func gocover(s string) error {
	_, err := ParseGoCover(strings.NewReader(s), Paths{}, Options{File: "x"})
	return err
}
func cobertura(s string) error {
	_, err := ParseCobertura(strings.NewReader(s), Paths{}, Options{File: "x"})
	return err
}
func jacoco(s string) error {
	_, err := ParseJaCoCo(strings.NewReader(s), Paths{}, Options{File: "x"})
	return err
}

func TestPaths(t *testing.T) {
	p := Paths{Prefixes: []string{"/work/ws/", "github.com/acme/app"}, RepoFiles: []string{"src/main/java/com/acme/Foo.java", "pkg/a.go", "a.go"}}
	for in, want := range map[string]string{
		"/work/ws/pkg/a.go":                        "pkg/a.go",
		"github.com/acme/app/a.go":                 "a.go",
		"com/acme/Foo.java":                        "src/main/java/com/acme/Foo.java",
		"./pkg/../pkg/a.go":                        "pkg/a.go",
		`C:\build\src\main\java\com\acme\Foo.java`: "src/main/java/com/acme/Foo.java",
		"unknown/b.go":                             "unknown/b.go",
	} {
		if got := p.Resolve(in); got != want {
			t.Errorf("Resolve(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPatch(t *testing.T) {
	diff := `diff --git a/a.go b/a.go
index 1..2 100644
--- a/a.go
+++ b/a.go
@@ -1,3 +1,5 @@
 package a
+// comment
+func F() {}
 func G() {}
-func H() {}
+func I() {}
diff --git a/gone.go b/gone.go
deleted file mode 100644
--- a/gone.go
+++ /dev/null
@@ -1 +0,0 @@
-package gone
diff --git a/new.go b/new.go
new file mode 100644
--- /dev/null
+++ b/new.go
@@ -0,0 +1,2 @@
+package a
+func N() {}
`
	added, err := AddedLines(strings.NewReader(diff))
	if err != nil {
		t.Fatal(err)
	}
	if got := added["a.go"]; len(got) != 3 || got[0] != 2 || got[1] != 3 || got[2] != 5 {
		t.Errorf("a.go added %v, want [2 3 5]", got)
	}
	if got := added["new.go"]; len(got) != 2 || got[0] != 1 {
		t.Errorf("new.go added %v", got)
	}
	if _, ok := added["gone.go"]; ok {
		t.Error("a deleted file adds lines")
	}
	cov := &Coverage{Files: []FileCoverage{
		{Path: "a.go", Lines: map[int]int64{3: 1, 4: 1, 5: 0}},
		{Path: "new.go", Lines: map[int]int64{2: 7}},
	}}
	pc := Patch(cov, added)
	counterIs(t, "patch", pc.Counter, UnitLines, 2, 3)
	if len(pc.Files) != 2 || len(pc.Files[0].Missed) != 1 || pc.Files[0].Missed[0] != 5 {
		t.Errorf("files %+v", pc.Files)
	}
}
