package report

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/shiploop/shiploop/pkg/testfixture"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// lintDir holds the shared fixtures (never copied into the repository).
const lintDir = "../../../../shared/testdata/lint"

// fixtures maps each fixture to its format; native inputs of the sarif-sdk
// converters (Pylint JSON, plist XML, CSV) and the schema are not reports.
func fixtures(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	sarifs, _ := filepath.Glob(filepath.Join(lintDir, "sarif", "*"))
	for _, p := range sarifs {
		b := filepath.Base(p)
		if strings.HasSuffix(b, ".sarif") || (strings.HasSuffix(b, ".json") && !strings.HasPrefix(b, "sarif-schema") && !strings.HasPrefix(b, "sarif-sdk_")) {
			out[p] = "sarif"
		}
	}
	flakes, _ := filepath.Glob(filepath.Join(lintDir, "flake8", "*.txt"))
	for _, p := range flakes {
		out[p] = "flake8"
	}
	out[filepath.Join(lintDir, "errorformat", "flake8.in")] = "flake8"
	out[filepath.Join(lintDir, "errorformat", "pep8.in")] = "flake8"
	out[filepath.Join(lintDir, "errorformat", "golangci-lint.in")] = "golangci_lint"
	if len(out) < 10 {
		testfixture.Missing(t, "fixtures not found under %s", lintDir)
	}
	return out
}

func render(fs []Finding, err error) string {
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d findings\n", len(fs))
	for _, f := range fs {
		fmt.Fprintf(&b, "%s|%d col %d %s %s %s| %s %s\n", f.Path, f.Line, f.Column, f.Level, f.Tool, f.Rule, strings.ReplaceAll(f.Message, "\n", `\n`), f.FingerprintHex())
	}
	return b.String()
}

func TestGolden(t *testing.T) {
	for path, format := range fixtures(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got := render(Parse(format, filepath.Base(path), data))
			golden := filepath.Join("testdata", "golden", filepath.Base(path)+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s:\n%s", path, golden, got)
			}
		})
	}
}

// TestErrorformatAgreement checks the text parsers against reviewdog's
// expected parses (file|line col TYPE NUM| message).
func TestErrorformatAgreement(t *testing.T) {
	okLine := regexp.MustCompile(`^(.*)\|(\d+) col (\d+)[^|]*\| (.*)$`)
	for name, format := range map[string]string{"flake8": "flake8", "pep8": "flake8", "golangci-lint": "golangci_lint"} {
		in, err := os.ReadFile(filepath.Join(lintDir, "errorformat", name+".in"))
		if err != nil {
			testfixture.Missing(t, "%v", err)
		}
		ok, err := os.ReadFile(filepath.Join(lintDir, "errorformat", name+".ok"))
		if err != nil {
			t.Fatal(err)
		}
		fs, err := Parse(format, name+".in", in)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(ok)), "\n")
		if len(lines) != len(fs) {
			t.Fatalf("%s: %d findings, reviewdog has %d", name, len(fs), len(lines))
		}
		for i, l := range lines {
			m := okLine.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("%s.ok line %d: %q", name, i+1, l)
			}
			f := fs[i]
			msg := f.Message
			switch name {
			case "golangci-lint":
				msg += " (" + f.Rule + ")"
			case "pep8": // errorformat keeps pycodestyle's code in the text
				msg = f.Rule + " " + msg
			}
			if strings.TrimPrefix(m[1], "./") != f.Path || m[2] != strconv.Itoa(f.Line) || m[3] != strconv.Itoa(f.Column) || m[4] != msg {
				t.Errorf("%s finding %d = %s:%d:%d %q, reviewdog: %q", name, i, f.Path, f.Line, f.Column, msg, l)
			}
		}
	}
}

func TestNewVsBase(t *testing.T) {
	base, _ := Parse("flake8", "base", []byte("a.py:1:1: F401 'os' imported but unused\na.py:9:80: E501 line too long (82 > 79 characters)\n"))
	// The same findings moved down three lines, one twin added, the long
	// line longer: only the twin is new.
	head, _ := Parse("flake8", "head", []byte("a.py:4:1: F401 'os' imported but unused\na.py:5:1: F401 'os' imported but unused\na.py:12:80: E501 line too long (90 > 79 characters)\n"))
	fps := make([]uint64, len(base))
	for i := range base {
		fps[i] = base[i].Fingerprint
	}
	b := NewBase(fps)
	var fresh []string
	for i := range head {
		if b.IsNew(&head[i]) {
			fresh = append(fresh, fmt.Sprintf("%s:%d", head[i].Rule, head[i].Line))
		}
	}
	if strings.Join(fresh, ",") != "F401:5" {
		t.Errorf("new = %v, want [F401:5]", fresh)
	}
	packed, err := DecodeFingerprints(EncodeFingerprints(head))
	if err != nil || len(packed) != 3 || packed[0].Fingerprint != head[0].Fingerprint || packed[0].Level != LevelWarning {
		t.Errorf("round trip: %v %v", packed, err)
	}
}

func TestBadReports(t *testing.T) {
	for _, c := range []struct{ format, data, want string }{
		{"sarif", `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}}}]}`, "lint.sarif: runs[0].results: missing; SARIF says the tool did not run (an empty list means it found nothing)"},
		{"sarif", `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},"results":null}]}`, "lint.sarif: runs[0].results: null; SARIF says the tool did not run (an empty list means it found nothing)"},
		{"sarif", "{\"version\":\"2.1.0\",\n\"runs\":[}", "lint.sarif: line 2, column 9: invalid JSON: invalid character '}' looking for beginning of value"},
		{"sarif", `{"runs":[]}`, `lint.sarif: version: missing (want "2.1.0"); is this a SARIF file?`},
		{"sarif", `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x","rules":[]}},"results":[{"ruleIndex":3,"message":{"text":"m"}}]}]}`, "lint.sarif: runs[0].results[0].ruleIndex: 3 is out of range (0 rules)"},
		{"flake8", "a.py:1:1: F401 x\nnonsense\n", `lint.sarif: line 2: "nonsense" is not flake8 output (want path:row:col: CODE text)`},
		{"checkstyle", "<checkstyle><file name='a'><error line='1' severity='fatal' message='m'/></file></checkstyle>", `lint.sarif: file "a": severity "fatal" (want error, warning, info or ignore)`},
		{"checkstyle", "<checkstyle><file", "lint.sarif: line 1: invalid Checkstyle XML: XML syntax error on line 1: unexpected EOF"},
		{"golangci_lint", `{"Report":{}}`, "lint.sarif: Issues: missing; is this golangci-lint --output.json.path output?"},
	} {
		_, err := Parse(c.format, "lint.sarif", []byte(c.data))
		if err == nil || err.Error() != c.want {
			t.Errorf("%s %q:\n got %v\nwant %s", c.format, c.data, err, c.want)
		}
	}
}

func TestSARIFLevels(t *testing.T) {
	data := `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"t","rules":[{"id":"R1","defaultConfiguration":{"level":"error"},"messageStrings":{"m":{"text":"bad {0}"}}}]}},
	"artifacts":[{"location":{"uri":"src/a.go"}}],
	"results":[
	 {"ruleId":"R1","message":{"id":"m","arguments":["x"]},"locations":[{"physicalLocation":{"artifactLocation":{"index":0},"region":{"startLine":3}}}]},
	 {"ruleId":"R2","message":{"text":"plain"}},
	 {"ruleId":"R1","kind":"pass","message":{"text":"fine"}},
	 {"ruleId":"R1","level":"note","message":{"text":"quiet"},"suppressions":[{"kind":"inSource"}]}
	]}]}`
	got := render(Parse("sarif", "x", []byte(data)))
	want := "2 findings\nsrc/a.go|3 col 1 error t R1| bad x "
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "|0 col 0 warning t R2| plain") {
		t.Errorf("got\n%s", got)
	}
}
