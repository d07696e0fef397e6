package glob

import "testing"

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"dist/*.tar.gz", "dist/app.tar.gz", true},
		{"dist/*.tar.gz", "dist/sub/app.tar.gz", false},
		{"dist/**", "dist/sub/notes.txt", true},
		{"dist/**", "dist", true},
		{"**/report.xml", "a/b/report.xml", true},
		{"**/report.xml", "report.xml", true},
		{"reports/*.xml", "other/x.xml", false},
		{"a/[bc]/x", "a/c/x", true},
		{"a/[", "a/[", false}, // malformed
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}
