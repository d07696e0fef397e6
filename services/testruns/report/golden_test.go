package report

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestJUnitSurefire follows surefire/EXPECTED.md (shouldParseFlakes) and
// the tests="1" counter that the two testcases contradict.
func TestJUnitSurefire(t *testing.T) {
	res, err := parseFile(t, filepath.Join(junitData, "surefire/TEST-org.acme.FlakyTest.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Suites) != 1 || len(res.Cases) != 2 {
		t.Fatalf("%d suites, %d cases; want 1, 2", len(res.Suites), len(res.Cases))
	}
	flaky, stable := res.Cases[0], res.Cases[1]
	if flaky.Name != "testFlaky" || flaky.Status != StatusPassed || !flaky.Flaky || flaky.Duration.Seconds() != 0.034 {
		t.Errorf("testFlaky = %s %s flaky=%v %v", flaky.Name, flaky.Status, flaky.Flaky, flaky.Duration)
	}
	var fails, errs int
	for _, a := range flaky.Attempts {
		switch a.Status {
		case StatusFailed:
			fails++
		case StatusError:
			errs++
		}
		if !strings.HasPrefix(a.Message, "expected: <") || !strings.Contains(a.Details, "FlakyTest.java:18") && a.Status == StatusFailed {
			t.Errorf("attempt %+v", a)
		}
	}
	if fails != 3 || errs != 1 {
		t.Errorf("flaky attempts: %d failures, %d errors; want 3, 1", fails, errs)
	}
	if flaky.Attempts[0].Type != "org.opentest4j.AssertionFailedError" {
		t.Errorf("type %q", flaky.Attempts[0].Type)
	}
	if stable.Name != "testStable" || stable.Flaky || stable.Status != StatusPassed || len(stable.Attempts) != 0 {
		t.Errorf("testStable = %+v", stable)
	}
	tot := res.Totals()
	if tot.Tests != 2 || tot.Flaky != 1 || tot.Failed+tot.Errors != 0 {
		t.Errorf("totals %+v", tot)
	}

	// The other Surefire fixtures parse; counts are those of <testcase>.
	for file, n := range map[string]int{
		"TEST-NoTimeTestCaseTest.xml":                         8,
		"TEST-classWithNoTests.NoMethodsTestCase.xml":         0,
		"TEST-org.apache.maven.surefire.test.FailingTest.xml": 2,
		"TEST-surefire.MyTest-enclosed.xml":                   1,
		"TEST-surefire.MyTest-nestedClass.xml":                1,
		"TEST-surefire.MyTest.xml":                            1,
	} {
		res, err := parseFile(t, filepath.Join(junitData, "surefire", file))
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if len(res.Cases) != n {
			t.Errorf("%s: %d cases, want %d", file, len(res.Cases), n)
		}
	}
}

// TestJUnitJenkinsRerun follows jenkins-junit-plugin/EXPECTED.md (gh-237).
func TestJUnitJenkinsRerun(t *testing.T) {
	dir := filepath.Join(junitData, "jenkins-junit-plugin")
	flaky, err := parseFile(t, filepath.Join(dir, "TEST-io.olamy.FlakyTest.xml"))
	if err != nil {
		t.Fatal(err)
	}
	always, err := parseFile(t, filepath.Join(dir, "TEST-io.olamy.AlwaysFailTest.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(flaky.Cases)+len(always.Cases) != 2 || len(flaky.Suites)+len(always.Suites) != 2 {
		t.Fatalf("cases %d+%d, want 1+1", len(flaky.Cases), len(always.Cases))
	}
	f := flaky.Cases[0]
	if f.Class != "io.olamy.FlakyTest" || f.Name != "testApp" || f.Status != StatusPassed || !f.Flaky || len(f.Attempts) != 2 {
		t.Errorf("FlakyTest.testApp = %s %s flaky=%v attempts=%d", f.Class, f.Status, f.Flaky, len(f.Attempts))
	}
	if a := f.Attempts[0]; a.Type != "junit.framework.AssertionFailedError" || a.Message != "obvious fail" ||
		!strings.Contains(a.Details, "at io.olamy.FlakyTest.testApp(FlakyTest.java:27)") {
		t.Errorf("flaky attempt 0 = %+v", a)
	}
	a := always.Cases[0]
	if a.Status != StatusFailed || a.Flaky || len(a.Attempts) != 3 {
		t.Errorf("AlwaysFailTest.testApp = %s flaky=%v attempts=%d, want failed, not flaky, 3 reruns", a.Status, a.Flaky, len(a.Attempts))
	}
	if r := a.Attempts[0]; r.Type != "junit.framework.AssertionFailedError" || r.Message != "built to fail" ||
		!strings.Contains(r.Details, "at io.olamy.AlwaysFailTest.testApp(AlwaysFailTest.java:23)") {
		t.Errorf("rerun 0 = %+v", r)
	}
}

var (
	snapExport = regexp.MustCompile("(?s)exports\\[`([^`]*)`\\] = `(.*?)\n`;")
	snapPath   = regexp.MustCompile(`(?m)^  "path": "([^"]+)"`)
	snapResult = regexp.MustCompile(`"result": "(success|failed|skipped)"`)
)

// TestJUnitDorny compares the number of successful, failed and skipped
// tests with every dorny/test-reporter snapshot whose fixture is here.
func TestJUnitDorny(t *testing.T) {
	dir := filepath.Join(junitData, "dorny")
	snaps, _ := filepath.Glob(filepath.Join(dir, "__snapshots__", "*"))
	checked := 0
	for _, snap := range snaps {
		b, err := os.ReadFile(snap)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range snapExport.FindAllStringSubmatch(string(b), -1) {
			title, body := m[1], m[2]
			pm := snapPath.FindStringSubmatch(body)
			if pm == nil {
				continue
			}
			fixture := filepath.Join(dir, pm[1])
			if _, err := os.Stat(fixture); err != nil {
				t.Logf("%s: fixture %s not saved, skipped", title, pm[1])
				continue
			}
			want := map[string]int{}
			for _, r := range snapResult.FindAllStringSubmatch(body, -1) {
				want[r[1]]++
			}
			t.Run(title, func(t *testing.T) {
				f, err := os.Open(fixture)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				var res *Result
				if strings.HasSuffix(fixture, ".json") {
					res, err = ParseGoTest(f, Options{File: pm[1]})
				} else {
					res, err = ParseJUnit(f, Options{File: pm[1]})
				}
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]int{}
				for _, c := range res.Cases {
					switch c.Status {
					case StatusPassed:
						got["success"]++
					case StatusFailed, StatusError:
						got["failed"]++
					default:
						got["skipped"]++
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s: got %v, want %v", pm[1], got, want)
				}
			})
			checked++
		}
	}
	if checked < 15 {
		t.Errorf("checked %d snapshots, want at least 15", checked)
	}
	// Empty reports are fine: zero tests.
	empties, _ := filepath.Glob(filepath.Join(dir, "fixtures/empty/*.xml"))
	for _, e := range empties {
		res, err := parseFile(t, e)
		if err != nil {
			t.Errorf("%s: %v", e, err)
		} else if len(res.Cases) != 0 {
			t.Errorf("%s: %d cases, want 0", e, len(res.Cases))
		}
	}
}

type caseKey struct {
	Class, Name string
	Status      Status
}

func keys(r *Result) []caseKey {
	var out []caseKey
	for _, c := range r.Cases {
		out = append(out, caseKey{c.Class, c.Name, c.Status})
	}
	return out
}

// TestGoTestJSON reads each `go test -json` input of go-junit-report and
// compares its cases (class, name, status) with the expected report.xml.
func TestGoTestJSON(t *testing.T) {
	dir := filepath.Join(junitData, "go-junit-report")
	inputs, _ := filepath.Glob(filepath.Join(dir, "*.gojson.txt"))
	if len(inputs) < 8 {
		t.Fatalf("found %d inputs", len(inputs))
	}
	for _, in := range inputs {
		base := filepath.Base(in)
		t.Run(base, func(t *testing.T) {
			f, err := os.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ParseGoTest(f, Options{File: base})
			if err != nil {
				t.Fatal(err)
			}
			want, err := parseFile(t, filepath.Join(dir, base[:3]+"-report.xml"))
			if err != nil {
				t.Fatal(err)
			}
			if g, w := keys(got), keys(want); !slices.Equal(g, w) {
				t.Errorf("cases\n got %v\nwant %v", g, w)
			}
			for i, c := range got.Cases {
				if w := want.Cases[i]; c.Status.Bad() && c.Message != w.Message {
					t.Errorf("%s: message %q, want %q", c.Name, c.Message, w.Message)
				}
			}
		})
	}
}

// TestGoJUnitReportXML reads go-junit-report's own JUnit output: build
// failures and panics are errors, repeated names stay separate cases.
func TestGoJUnitReportXML(t *testing.T) {
	dir := filepath.Join(junitData, "go-junit-report")
	for file, want := range map[string]Totals{
		"001-report.xml": {Tests: 5, Passed: 2, Failed: 1, Skipped: 2},
		"012-report.xml": {Tests: 11, Passed: 6, Failed: 4, Skipped: 1},
		"013-report.xml": {Tests: 5, Passed: 2, Errors: 3},
		"014-report.xml": {Tests: 2, Errors: 2},
		"016-report.xml": {Tests: 3, Passed: 3},
	} {
		res, err := parseFile(t, filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		tot := res.Totals()
		tot.Duration = 0
		if tot != want {
			t.Errorf("%s: %+v, want %+v", file, tot, want)
		}
	}
}
