package mask_test

import (
	"testing"

	"github.com/shiploop/shiploop/services/agent/backend/mask"
)

func TestMask(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{"no secrets", nil, "token=abc123", "token=abc123"},
		{"one occurrence", []string{"abc123"}, "token=abc123", "token=********"},
		{"every occurrence", []string{"abc123"}, "abc123 and abc123!", "******** and ********!"},
		{"longest first", []string{"pass", "password1"}, "x password1 pass", "x ******** ********"},
		{"overlapping secrets leave no fragment", []string{"abcdef", "defghi"}, "-abcdefghi-", "-********-"},
		{"back to back", []string{"secret"}, "secretsecret", "********"},
		{"self-overlapping", []string{"aaa"}, "aaaa b", "******** b"},
		{"empty and short secrets ignored", []string{"", "ab", " "}, "ab cd", "ab cd"},
		{"three bytes masked", []string{"xyz"}, "a xyz b", "a ******** b"},
		{"trailing newline trimmed", []string{"hunter22\n"}, "pw hunter22", "pw ********"},
		{"multi-line secret masked per line", []string{"-----BEGIN KEY-----\nMIIBOgIBAAJBAK\n-----END KEY-----"}, "MIIBOgIBAAJBAK", "********"},
		{"duplicates", []string{"dup-secret", "dup-secret"}, "dup-secret", "********"},
		{"unicode", []string{"pässwörd"}, "→pässwörd←", "→********←"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mask.New(tt.secrets...).Mask(tt.in); got != tt.want {
				t.Errorf("Mask(%q) with %q = %q, want %q", tt.in, tt.secrets, got, tt.want)
			}
		})
	}
}

func TestNilMasker(t *testing.T) {
	var m *mask.Masker
	if got := m.Mask("abc"); got != "abc" {
		t.Errorf("nil Masker changed text: %q", got)
	}
}

func BenchmarkMask(b *testing.B) {
	m := mask.New("ghp_0123456789abcdefghijklmnopqrstuvwxyz", "AKIAIOSFODNN7EXAMPLE", "hunter2hunter2", "postgres://u:p@db/x")
	line := "2026-01-01T00:00:00Z INFO building package github.com/shiploop/shiploop/services/agent with go1.26 ok"
	for b.Loop() {
		m.Mask(line)
	}
}
