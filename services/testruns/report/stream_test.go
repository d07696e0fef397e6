package report

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// StreamJUnit hands over the cases ParseJUnit returns, in the same order,
// and keeps none itself.
func TestStreamJUnitSameCases(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(junitData, "surefire", "*.xml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no Surefire fixtures under %s: %v", junitData, err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want, werr := parseFile(t, path)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var got []Case
			res, gerr := StreamJUnit(f, Options{File: filepath.Base(path)}, func(c Case) error {
				got = append(got, c)
				return nil
			})
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("ParseJUnit error %v, StreamJUnit error %v", werr, gerr)
			}
			if werr != nil {
				return
			}
			if len(res.Cases) != 0 {
				t.Errorf("StreamJUnit kept %d cases in its Result", len(res.Cases))
			}
			if !reflect.DeepEqual(got, want.Cases) {
				t.Errorf("streamed %d cases, parsed %d; first difference at %d", len(got), len(want.Cases), firstDiff(got, want.Cases))
			}
			if !reflect.DeepEqual(res.Suites, want.Suites) {
				t.Errorf("suites %+v, want %+v", res.Suites, want.Suites)
			}
		})
	}
}

func firstDiff(a, b []Case) int {
	for i := range min(len(a), len(b)) {
		if !reflect.DeepEqual(a[i], b[i]) {
			return i
		}
	}
	return min(len(a), len(b))
}

// An error from emit stops the parse at once and comes back unchanged, so
// a caller can tell its own failure (a database write) from a broken report.
func TestStreamJUnitEmitError(t *testing.T) {
	doc := `<testsuites><testsuite name="s">` + strings.Repeat(`<testcase classname="c" name="t"/>`, 10) + `</testsuite></testsuites>`
	stop := errors.New("disk full")
	n := 0
	_, err := StreamJUnit(strings.NewReader(doc), Options{}, func(Case) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Errorf("error %v, want the emit error itself", err)
	}
	if n != 3 {
		t.Errorf("emit called %d times, want 3 (no case after the error)", n)
	}
	var pe *ParseError
	if errors.As(err, &pe) {
		t.Errorf("emit error wrapped as a ParseError: %v", pe)
	}
}

// ParseStream streams go test -json cases too, and leaves coverage alone.
func TestParseStreamFormats(t *testing.T) {
	gotest := `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.1}
{"Action":"run","Package":"p","Test":"TestB"}
{"Action":"fail","Package":"p","Test":"TestB","Elapsed":0.2}
{"Action":"fail","Package":"p","Elapsed":0.3}
`
	var names []string
	p, err := ParseStream(strings.NewReader(gotest), "", Paths{}, Options{}, func(c Case) error {
		names = append(names, c.Name+":"+string(c.Status))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Format != FormatGoTest || len(p.Tests.Cases) != 0 || strings.Join(names, ",") != "TestA:passed,TestB:failed" {
		t.Errorf("format %q, kept %d cases, streamed %v", p.Format, len(p.Tests.Cases), names)
	}
	called := false
	p, err = ParseStream(strings.NewReader("mode: set\n/ws/a.go:1.1,2.2 1 1\n"), "", Paths{Prefixes: []string{"/ws"}}, Options{}, func(Case) error {
		called = true
		return nil
	})
	if err != nil || p.Coverage == nil || called {
		t.Errorf("coverage through ParseStream: %+v, %v, emit called %v", p, err, called)
	}
}
