package report

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"testing"
)

// bigJUnit writes n testcases, about 200 bytes each (500k ≈ 100 MB).
func bigJUnit(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><testsuites>`)
	for s := 0; s < n; s += 1000 {
		fmt.Fprintf(&b, `<testsuite name="suite.%d" tests="1000">`, s/1000)
		for i := s; i < s+1000 && i < n; i++ {
			if i%50 == 0 {
				fmt.Fprintf(&b, `<testcase classname="org.acme.pkg%d.SomeLongClassNameTest" name="testSomethingRatherLong_%d" time="0.0123"><failure message="expected 1 but was 2" type="AssertionError">at org.acme.Foo.bar(Foo.java:12)</failure></testcase>`, i%97, i)
			} else {
				fmt.Fprintf(&b, `<testcase classname="org.acme.pkg%d.SomeLongClassNameTest" name="testSomethingRatherLong_%d" time="0.0123"><system-out>some output of the test</system-out></testcase>`, i%97, i)
			}
		}
		b.WriteString(`</testsuite>`)
	}
	b.WriteString(`</testsuites>`)
	return b.Bytes()
}

// BenchmarkParseJUnit500k: the ingest goal is ≤ 10 s and ≤ 500 MB
// for a 100 MB file with 500k cases; run with -benchtime=1x.
func BenchmarkParseJUnit500k(b *testing.B) {
	data := bigJUnit(500_000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		res, err := ParseJUnit(io.NopCloser(bytes.NewReader(data)), Options{})
		if err != nil {
			b.Fatal(err)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(len(data))/(1<<20), "MB-input")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MB-live")
		if len(res.Cases) != 500_000 {
			b.Fatalf("%d cases", len(res.Cases))
		}
	}
}
