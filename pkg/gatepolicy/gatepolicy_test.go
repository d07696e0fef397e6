package gatepolicy

import "testing"

func TestCheckMetric(t *testing.T) {
	for _, c := range []struct{ name, scope, want string }{
		{"coverage", ScopeNewCode, ""},
		{"custom.loc", ScopeOverall, ""},
		{"coverge", ScopeOverall, `unknown metric "coverge" (did you mean "coverage"?)`},
		{"tests_failed", ScopeNewCode, `metric "tests_failed" has no new_code scope`},
		{"custom.Bad-Name", ScopeOverall, `invalid custom metric "custom.Bad-Name": use custom.<name> with lowercase letters, digits and _`},
	} {
		if got := CheckMetric(c.name, c.scope); got != c.want {
			t.Errorf("CheckMetric(%q, %q) = %q, want %q", c.name, c.scope, got, c.want)
		}
	}
	if got := CheckOperator("=>"); got == "" {
		t.Error("=> accepted")
	}
	for _, c := range Default() {
		if msg := CheckMetric(c.Metric, c.Scope) + CheckOperator(c.Operator); msg != "" {
			t.Errorf("default policy: %s", msg)
		}
	}
}

func TestOnNoData(t *testing.T) {
	if CheckOnNoData("") != "" || CheckOnNoData("pass") != "" || CheckOnNoData("fail") != "" {
		t.Error("valid on_no_data refused")
	}
	if got := CheckOnNoData("skip"); got != `unknown on_no_data "skip" (want fail or pass)` {
		t.Errorf("CheckOnNoData(skip) = %q", got)
	}
	for _, c := range []struct {
		cond, gate string
		want       bool
	}{{"", "", false}, {"", "pass", true}, {"fail", "pass", false}, {"pass", "", true}, {"pass", "fail", true}} {
		if got := NoDataPasses(c.cond, c.gate); got != c.want {
			t.Errorf("NoDataPasses(%q, %q) = %v (no data must fail unless a policy says pass)", c.cond, c.gate, got)
		}
	}
}

func TestFormatPercent(t *testing.T) {
	for v, want := range map[float64]string{49.96: "50.0%", 50: "50.0%", 67.34: "67.3%", 100: "100.0%", 0: "0.0%"} {
		if got := FormatPercent(v); got != want {
			t.Errorf("FormatPercent(%v) = %q, want %q", v, got, want)
		}
	}
}
