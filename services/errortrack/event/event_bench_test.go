package event

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shiploop/shiploop/pkg/testfixture"
)

// benchInputs: the shared GlitchTip event fixtures up to 8 KiB, the
// inputs FuzzParse starts from.
func benchInputs(b *testing.B) [][]byte {
	var ins [][]byte
	for _, g := range []string{"glitchtip/incoming_events/*.json", "glitchtip/oss_sentry_events/*.json", "glitchtip/misc/*.json"} {
		m, _ := filepath.Glob(filepath.Join(fixtures, g))
		for _, p := range m {
			if d, err := os.ReadFile(p); err == nil && len(d) <= 8<<10 {
				ins = append(ins, d)
			}
		}
	}
	if len(ins) == 0 {
		testfixture.Missing(b, "shared Sentry fixtures not found in %s", fixtures)
	}
	return ins
}

func BenchmarkParse(b *testing.B) {
	ins := benchInputs(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := Parse(ins[i%len(ins)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseInvalid: payloads that are not JSON (one byte of each
// fixture changed), which Parse must refuse.
func BenchmarkParseInvalid(b *testing.B) {
	var ins [][]byte
	for _, d := range benchInputs(b) {
		c := append([]byte(nil), d...)
		c[len(c)/2] = '}'
		ins = append(ins, c)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, _ = Parse(ins[i%len(ins)])
	}
}

func BenchmarkGroup(b *testing.B) {
	var evs []*Event
	for _, d := range benchInputs(b) {
		if ev, err := Parse(d); err == nil {
			evs = append(evs, ev)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if g := Group(evs[i%len(evs)]); len(g.Hashes) == 0 {
			b.Fatal("no hash")
		}
	}
}
