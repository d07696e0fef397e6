// Package verifycheck reads the checks of a deploy's verification
// (.shiploop.yml environments[].verify.conditions[].metric): the deploys
// service runs them, the pipeline parser refuses a misspelt one at once.
package verifycheck

import (
	"fmt"
	"regexp"
	"strings"
)

// Check is one parsed verification metric.
type Check struct {
	Kind   string // http_status, http_latency_ms, http_body_match, graphite, errortrack.*
	Target string // the URL or Graphite target
	Arg    string // http_body_match's regular expression
}

// Parse reads a verification metric:
//
//	http_status(URL)               the response's status code
//	http_latency_ms(URL)           the time to the whole response, in ms
//	http_body_match(URL, REGEXP)   1 when the body matches, else 0
//	graphite(TARGET)               the newest value of a Graphite target (max over its series)
//	errortrack.new_issues          issues first seen in this release and environment during the window
//	errortrack.regressed_issues    issues that regressed in this release and environment
//	errortrack.issues              both
//	errortrack.error_rate_ratio    the release's error events per minute in the environment during
//	                               the window ÷ the previous release's there just before the deploy
//	                               (e.g. <= 1.5: at most half as many errors again)
//
// The errortrack.* checks decide on evidence (services/deploys): errors in
// the environment under other releases fail them (release mismatch; the
// condition's on_release_mismatch: ignore relaxes it), and a release that
// sent nothing at all is inconclusive (require_evidence: true fails it,
// false passes it).
func Parse(s string) (Check, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "errortrack.new_issues", "errortrack.regressed_issues", "errortrack.issues", "errortrack.error_rate_ratio":
		return Check{Kind: s}, nil
	}
	open := strings.IndexByte(s, '(')
	if open < 0 || !strings.HasSuffix(s, ")") {
		return Check{}, fmt.Errorf("unknown check %q: use http_status(URL), http_latency_ms(URL), http_body_match(URL, REGEXP), graphite(TARGET) or errortrack.new_issues|regressed_issues|issues|error_rate_ratio", s)
	}
	kind, inner := s[:open], strings.TrimSpace(s[open+1:len(s)-1])
	if inner == "" {
		return Check{}, fmt.Errorf("%s(): the argument is missing", kind)
	}
	switch kind {
	case "http_status", "http_latency_ms":
		return Check{Kind: kind, Target: inner}, checkURL(inner)
	case "http_body_match":
		u, re, ok := strings.Cut(inner, ",")
		u, re = strings.TrimSpace(u), strings.TrimSpace(re)
		if !ok || re == "" {
			return Check{}, fmt.Errorf("http_body_match needs a URL and a regular expression: http_body_match(URL, REGEXP)")
		}
		if _, err := regexp.Compile(re); err != nil {
			return Check{}, fmt.Errorf("http_body_match: %v", err)
		}
		return Check{Kind: kind, Target: u, Arg: re}, checkURL(u)
	case "graphite":
		return Check{Kind: kind, Target: inner}, nil
	}
	return Check{}, fmt.Errorf("unknown check %q: use http_status, http_latency_ms, http_body_match, graphite or errortrack.*", kind)
}

func checkURL(u string) error {
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "${") {
		return fmt.Errorf("probe URL %q must start with http:// or https:// (or a ${VARIABLE})", u)
	}
	return nil
}
