package dashboards

import "testing"

// TestTestsBadge: the tests badge is never green without a passing test:
// a run that ran none is grey "no tests", a run in error red.
func TestTestsBadge(t *testing.T) {
	for _, c := range []struct {
		status                  string
		passed, failed, skipped int64
		msg, color              string
	}{
		{"passed", 41, 0, 0, "41 passed", "brightgreen"},
		{"failed", 41, 1, 2, "41 passed, 1 failed, 2 skipped", "red"},
		{"passed", 0, 0, 0, "no tests", "lightgrey"},
		{"error", 0, 0, 0, "error, no tests", "red"},
		{"error", 3, 0, 0, "3 passed, error", "red"},
		{"passed", 0, 0, 4, "0 passed, 4 skipped", "lightgrey"},
	} {
		if msg, color := testsBadge(c.status, c.passed, c.failed, c.skipped); msg != c.msg || color != c.color {
			t.Errorf("testsBadge(%s, %d, %d, %d) = %q %s, want %q %s", c.status, c.passed, c.failed, c.skipped, msg, color, c.msg, c.color)
		}
	}
}
