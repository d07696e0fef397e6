package report

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func seed(f *testing.F, globs ...string) {
	for _, g := range globs {
		files, _ := filepath.Glob(g)
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err == nil && len(b) < 64<<10 {
				f.Add(b)
			}
		}
	}
}

// The parsers never panic, and what they return is consistent.
func FuzzJUnit(f *testing.F) {
	seed(f, junitData+"/enricomi/junit-xml/*.xml", junitData+"/surefire/*.xml", junitData+"/go-junit-report/*.xml")
	f.Add([]byte(`<testsuites><testsuite><testcase name="a"><failure/><error/></testcase></testsuite></testsuites>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := ParseJUnit(bytes.NewReader(b), Options{MaxText: 256})
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %T %v, want *ParseError", err, err)
			}
			return
		}
		for _, c := range res.Cases {
			if c.Status == "" || len(c.Message) > 2*256+len(truncMark)+1 && !strings.Contains(c.Message, "\n") {
				t.Fatalf("case %+v", c)
			}
		}
	})
}

func FuzzGoTest(f *testing.F) {
	seed(f, junitData+"/go-junit-report/*.gojson.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseGoTest(bytes.NewReader(b), Options{MaxText: 256})
	})
}

func FuzzCoverage(f *testing.F) {
	seed(f, coverageData+"/*/*")
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, parse := range []func() (*Coverage, error){
			func() (*Coverage, error) { return ParseCobertura(bytes.NewReader(b), Paths{}, Options{}) },
			func() (*Coverage, error) { return ParseLCOV(bytes.NewReader(b), Paths{}, Options{}) },
			func() (*Coverage, error) { return ParseGoCover(bytes.NewReader(b), Paths{}, Options{}) },
			func() (*Coverage, error) { return ParseJaCoCo(bytes.NewReader(b), Paths{}, Options{}) },
		} {
			cov, err := parse()
			if err == nil {
				l := cov.Lines()
				if l.Covered > l.Total {
					t.Fatalf("covered %d > total %d", l.Covered, l.Total)
				}
			}
		}
	})
}

func FuzzAddedLines(f *testing.F) {
	f.Add([]byte("--- a/x\n+++ b/x\n@@ -1,2 +1,3 @@\n a\n+b\n c\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = AddedLines(bytes.NewReader(b))
	})
}
