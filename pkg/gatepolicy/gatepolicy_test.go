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
