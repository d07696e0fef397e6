package report

import (
	"strings"
	"testing"
)

func TestJUnitBadInput(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"truncated": {"<testsuites>\n<testsuite name=\"s\">\n<testcase name=\"a\">", "r.xml:3:"},
		"external entity": {`<?xml version="1.0"?>
<!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<testsuites><testsuite><testcase name="&x;"/></testsuite></testsuites>`, "r.xml:3:"},
		"billion laughs": {`<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>
<testsuites><testsuite><testcase name="&lol2;"/></testsuite></testsuites>`, "invalid XML"},
		"not junit":          {"<html><body/></html>", "not a JUnit report"},
		"empty":              {"", "file is empty"},
		"only spaces":        {"  \n", "no XML element"},
		"garbage after root": {"<testsuite/><x", "invalid XML"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseJUnit(strings.NewReader(tc.in), Options{File: "r.xml"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestJUnitLimits(t *testing.T) {
	long := strings.Repeat("é", 100)
	in := `<testsuite name="s"><testcase name="a"><failure message="m">` + long + `</failure></testcase><testcase name="b"/></testsuite>`
	res, err := ParseJUnit(strings.NewReader(in), Options{MaxText: 51})
	if err != nil {
		t.Fatal(err)
	}
	d := res.Cases[0].Details
	if !strings.HasSuffix(d, truncMark) || len(d) > 51+len(truncMark) {
		t.Errorf("details %q not capped", d)
	}
	if _, err := ParseJUnit(strings.NewReader(in), Options{MaxCases: 1}); err == nil || !strings.Contains(err.Error(), "more than 1 test cases") {
		t.Errorf("MaxCases: %v", err)
	}
	// Multi-line attributes are normalised; the error line still counts them.
	in = "<testsuite>\n<testcase name=\"a\n b\"/>\n<testcase name=\"c\">\n"
	_, err = ParseJUnit(strings.NewReader(in), Options{File: "f"})
	if err == nil || !strings.HasPrefix(err.Error(), "f:5") {
		t.Errorf("error %v, want at f:5", err)
	}
	res, err = ParseJUnit(strings.NewReader("<testsuite><testcase name=\"a&#10;b\nc\"/></testsuite>"), Options{})
	if err != nil || res.Cases[0].Name != "a\nb c" {
		t.Errorf("name %q, err %v", res.Cases[0].Name, err)
	}
}
