package report

import "testing"

func TestDetect(t *testing.T) {
	for in, want := range map[string]string{
		"<?xml version=\"1.0\"?>\n<testsuites>":               FormatJUnit,
		"\uFEFF<?xml version=\"1.0\"?><testsuite name=\"x\">": FormatJUnit,
		"<?xml?><!DOCTYPE coverage SYSTEM \"x\"><coverage>":   FormatCobertura,
		"<?xml?><!DOCTYPE report PUBLIC \"x\" \"y\"><report":  FormatJaCoCo,
		"mode: set\n":                 FormatGoCover,
		"TN:\nSF:a\n":                 FormatLCOV,
		`{"Time":"x","Action":"run"}`: FormatGoTest,
		"diff --git a/x b/x\n":        FormatDiff,
		"<html>":                      "",
		"hello":                       "",
	} {
		if got := Detect([]byte(in)); got != want {
			t.Errorf("Detect(%q) = %q, want %q", in, got, want)
		}
	}
}
