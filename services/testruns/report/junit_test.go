package report

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// junitData is the shared JUnit fixture tree (see its README.txt).
const junitData = "../../../../shared/testdata/junit"

func parseFile(t *testing.T, path string) (*Result, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return ParseJUnit(f, Options{File: filepath.Base(path)})
}

// junitDeviations are EnricoMi cases where shiploop deliberately differs
// from the .results file, with the totals it gives instead.
var junitDeviations = map[string]struct {
	reason string
	totals Totals
}{
	// .results drops <testcase/> elements without a name (cases=[]), while
	// its .results.json still counts 1 pass, 1 skip, 1 fail, 1 error. A
	// nameless error must still fail the run, so the cases are kept: the
	// totals are those of .results.json.
	"enricomi/junit-xml/no-attributes.xml": {
		reason: "nameless cases are kept (the .results.json counts)",
		totals: Totals{Tests: 4, Passed: 1, Skipped: 1, Failed: 1, Errors: 1},
	},
	// .results.json takes its 6 tests from the suite counters of a suite
	// with no <testcase>; counters are not trusted, so there are none.
	"enricomi/junit-xml/no-cases-but-tests.xml": {
		reason: "suite counters are not trusted: no testcase, no test",
		totals: Totals{},
	},
}

var enricoStatus = map[string]Status{
	"success":  StatusPassed,
	"failure":  StatusFailed,
	"error":    StatusError,
	"skipped":  StatusSkipped,
	"disabled": StatusDisabled,
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// TestJUnitEnricoMi checks every EnricoMi case with expectations: the
// per-case result, message, content and time of <stem>.results, the
// test/run counts of <stem>.results.json, and <stem>.exception inputs fail.
func TestJUnitEnricoMi(t *testing.T) {
	var xmls []string
	err := filepath.WalkDir(filepath.Join(junitData, "enricomi"), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".xml") {
			xmls = append(xmls, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(xmls) < 30 {
		t.Fatalf("found %d EnricoMi inputs, want the whole set", len(xmls))
	}
	for _, path := range xmls {
		stem := strings.TrimSuffix(path, ".xml")
		name, _ := filepath.Rel(junitData, path)
		t.Run(name, func(t *testing.T) {
			res, perr := parseFile(t, path)
			if _, err := os.Stat(stem + ".exception"); err == nil {
				if perr == nil {
					t.Fatalf("parsed, want an error (%s.exception)", stem)
				}
				var pe *ParseError
				if !errors.As(perr, &pe) || !strings.HasPrefix(perr.Error(), filepath.Base(path)) {
					t.Errorf("error %q: want a *ParseError naming the file", perr)
				}
				t.Logf("error as expected: %v", perr)
				// non-junit.xml also has .results with an error and no cases.
				return
			}
			if perr != nil {
				t.Fatal(perr)
			}
			if why, ok := junitDeviations[name]; ok {
				tot := res.Totals()
				if tot != why.totals {
					t.Errorf("totals %+v, want %+v", tot, why.totals)
				}
				t.Logf("deliberate deviation from .results: %s", why.reason)
				return
			}
			raw, err := os.ReadFile(stem + ".results")
			if err != nil {
				t.Fatal(err)
			}
			v, err := parsePyRepr(string(raw))
			if err != nil {
				t.Fatalf("%s.results: %v", stem, err)
			}
			want := v.(*pyObj)
			cases, _ := want.KW["cases"].([]any)
			if len(res.Cases) != len(cases) {
				t.Fatalf("%d cases, want %d", len(res.Cases), len(cases))
			}
			for i, wc := range cases {
				w := wc.(*pyObj).KW
				g := res.Cases[i]
				id := g.Class + " / " + g.Name
				if g.Name != str(w["test_name"]) || g.Class != str(w["class_name"]) {
					t.Errorf("case %d: %q / %q, want %q / %q", i, g.Class, g.Name, w["class_name"], w["test_name"])
				}
				if ws := enricoStatus[str(w["result"])]; g.Status != ws {
					t.Errorf("%s: status %s, want %s", id, g.Status, ws)
				}
				if g.Message != str(w["message"]) {
					t.Errorf("%s: message %q, want %q", id, g.Message, w["message"])
				}
				if g.Details != str(w["content"]) {
					t.Errorf("%s: details %q, want %q", id, g.Details, w["content"])
				}
				if g.File != str(w["test_file"]) {
					t.Errorf("%s: file %q, want %q", id, g.File, w["test_file"])
				}
				wt, _ := w["time"].(float64)
				if math.Abs(g.Duration.Seconds()-wt) > 1e-6 {
					t.Errorf("%s: time %v, want %vs", id, g.Duration, wt)
				}
			}
			if n, _ := want.KW["suites"].(float64); int(n) != len(res.Suites) {
				t.Errorf("%d suites, want %v", len(res.Suites), n)
			}
			// The action's stats: tests are identities, runs are cases.
			var js struct {
				Stats struct {
					Tests, TestsSucc, TestsSkip, TestsFail, TestsError int
					Runs                                               int
				} `json:"stats"`
			}
			b, err := os.ReadFile(stem + ".results.json")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &js); err != nil {
				t.Fatal(err)
			}
			if js.Stats.Runs != len(res.Cases) {
				t.Errorf("runs %d, want %d", len(res.Cases), js.Stats.Runs)
			}
			tests := Summarize(res.Cases)
			if len(tests.Tests) != js.Stats.Tests {
				t.Errorf("tests %d, want %d", len(tests.Tests), js.Stats.Tests)
			}
		})
	}
}
