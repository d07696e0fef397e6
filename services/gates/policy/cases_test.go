package policy

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shiploop/shiploop/pkg/gatepolicy"
)

// TestCases runs the condition-language scripts in testdata/cases, in the
// manner of Prometheus' promqltest. A script is a sequence of commands:
//
//	load                      measures, one "metric value" a line (new.metric for new code;
//	  coverage 75             new_lines N sets the number of new lines); merged into earlier loads
//	  new.coverage 67.3
//	policy                    replaces the policy: "metric op threshold [new_code] [on_no_data=pass|fail]",
//	  coverage >= 80 new_code "expr CEL…", "min_new_lines N", "on_no_data pass|fail" (the gate's)
//	eval passed|failed|error  evaluates; then one line per result:
//	  coverage >= 80 new_code = 67.3 failed      (value "none" without one; "(detail)" optional;
//	                                              "no_data allowed" when on_no_data lets it pass)
//	compile-error MESSAGE     the last policy must fail to compile with MESSAGE
//	clear                     forgets measures and policy
//
// Lines starting with # are comments.
func TestCases(t *testing.T) {
	files, _ := filepath.Glob("testdata/cases/*.test")
	if len(files) == 0 {
		t.Fatal("no cases")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScript(t, f) })
	}
}

type script struct {
	t        *testing.T
	file     string
	measures Measures
	newLines int
	pol      *Policy
	compErr  error
}

func runScript(t *testing.T, file string) {
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var lines []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	s := &script{t: t, file: file}
	s.reset()
	for i := 0; i < len(lines); i++ {
		cmd := strings.TrimSpace(lines[i])
		if cmd == "" || strings.HasPrefix(cmd, "#") {
			continue
		}
		start := i
		var body []string
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], " ") && strings.TrimSpace(lines[i+1]) != "" {
			i++
			body = append(body, strings.TrimSpace(lines[i]))
		}
		at := fmt.Sprintf("%s:%d", file, start+1)
		word, arg, _ := strings.Cut(cmd, " ")
		switch word {
		case "clear":
			s.reset()
		case "load":
			s.load(at, body)
		case "policy":
			s.policy(at, body)
		case "compile-error":
			if s.compErr == nil || s.compErr.Error() != arg {
				t.Errorf("%s: compile error %v, want %q", at, s.compErr, arg)
			}
		case "eval":
			s.eval(at, arg, body)
		default:
			t.Fatalf("%s: unknown command %q", at, word)
		}
	}
}

func (s *script) reset() {
	s.measures = Measures{Overall: map[string]float64{}, NewCode: map[string]float64{}}
	s.newLines, s.pol, s.compErr = -1, nil, nil
}

func (s *script) load(at string, body []string) {
	for _, l := range body {
		f := strings.Fields(l)
		if len(f) != 2 {
			s.t.Fatalf("%s: load line %q: want metric value", at, l)
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			s.t.Fatalf("%s: %v", at, err)
		}
		switch name, isNew := strings.CutPrefix(f[0], "new."); {
		case f[0] == "new_lines":
			s.newLines = int(v)
			s.measures.Overall["new_lines"] = v
		case isNew:
			s.measures.NewCode[name] = v
		default:
			s.measures.Overall[f[0]] = v
		}
	}
}

func (s *script) policy(at string, body []string) {
	p := &Policy{}
	for n, l := range body {
		if e, ok := strings.CutPrefix(l, "expr "); ok {
			p.Expression = e
			continue
		}
		if v, ok := strings.CutPrefix(l, "min_new_lines "); ok {
			p.MinNewLines, _ = strconv.Atoi(v)
			continue
		}
		if v, ok := strings.CutPrefix(l, "on_no_data "); ok {
			p.OnNoData = v
			continue
		}
		f := strings.Fields(l)
		var onNoData string
		if v, ok := strings.CutPrefix(f[len(f)-1], "on_no_data="); ok {
			onNoData, f = v, f[:len(f)-1]
		}
		if len(f) < 3 || len(f) > 4 {
			s.t.Fatalf("%s: policy line %q", at, l)
		}
		th, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			s.t.Fatalf("%s: %v", at, err)
		}
		c := Condition{Condition: gatepolicy.Condition{Metric: f[0], Operator: f[1], Threshold: th, Scope: gatepolicy.ScopeOverall, OnNoData: onNoData}, File: "policy", Line: n + 1}
		if len(f) == 4 {
			c.Scope = f[3]
		}
		p.Conditions = append(p.Conditions, c)
	}
	s.pol, s.compErr = p, Compile(p, "policy", 0)
}

func (s *script) eval(at, want string, body []string) {
	if s.pol == nil || s.compErr != nil {
		s.t.Fatalf("%s: eval without a compiled policy (%v)", at, s.compErr)
	}
	ev := s.pol.Evaluate(s.measures, s.newLines)
	var got []string
	for _, r := range ev.Results {
		got = append(got, renderResult(r))
	}
	if ev.Status != want || strings.Join(got, "\n") != strings.Join(body, "\n") {
		s.t.Errorf("%s: got\neval %s\n  %s\nwant\neval %s\n  %s", at, ev.Status, strings.Join(got, "\n  "), want, strings.Join(body, "\n  "))
	}
}

func renderResult(r Result) string {
	var b strings.Builder
	if r.Expression != "" {
		b.WriteString("expr " + r.Expression)
	} else {
		b.WriteString(r.Metric + " " + r.Operator + " " + Format(r.Threshold, ""))
		if r.Scope == gatepolicy.ScopeNewCode {
			b.WriteString(" new_code")
		}
	}
	val := "none"
	if r.HasValue {
		val = Format(r.Value, "")
	}
	b.WriteString(" = " + val + " " + r.Verdict)
	if r.NoDataPasses {
		b.WriteString(" allowed")
	}
	if r.Detail != "" && r.Verdict != Error && r.Verdict != NoData {
		b.WriteString(" (" + r.Detail + ")")
	}
	return b.String()
}
