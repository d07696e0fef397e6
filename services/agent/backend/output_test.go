package backend

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestScanLines(t *testing.T) {
	long := strings.Repeat("x", MaxLineBytes)
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"lines", "a\nb\n", []string{"a", "b"}},
		{"last line without newline", "a\nb", []string{"a", "b"}},
		{"CRLF", "a\r\nb\r\n", []string{"a", "b"}},
		{"empty lines", "\n\n", []string{"", ""}},
		{"exactly max", long + "\n", []string{long}},
		{"one over max", long + "y\n", []string{long, "y"}},
		// A 2-byte rune straddling the cut moves to the next chunk whole.
		{"rune at cut", long[1:] + "é\n", []string{long[1:], "é"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			scanLines(strings.NewReader(tt.in), func(s string) { got = append(got, s) })
			if len(got) != len(tt.want) {
				t.Fatalf("got %d lines, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("line %d: got %d bytes %.20q, want %d bytes %.20q", i, len(got[i]), got[i], len(tt.want[i]), tt.want[i])
				}
				if !utf8.ValidString(got[i]) {
					t.Errorf("line %d is not valid UTF-8", i)
				}
			}
		})
	}
}
