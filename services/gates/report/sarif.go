package report

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// SARIF 2.1.0, the parts a gate needs. Absent and null differ for results
// (§3.14.23: null or absent = the tool did not run; [] = it ran and found
// nothing), so results is a raw message.
type sarifLog struct {
	Version *string    `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool *struct {
		Driver *sarifComponent `json:"driver"`
	} `json:"tool"`
	Results   json.RawMessage `json:"results"`
	Artifacts []struct {
		Location *sarifArtifactLocation `json:"location"`
	} `json:"artifacts"`
	Invocations []struct {
		ExecutionSuccessful *bool `json:"executionSuccessful"`
	} `json:"invocations"`
}

type sarifComponent struct {
	Name  *string     `json:"name"`
	Rules []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID                   string `json:"id"`
	DefaultConfiguration *struct {
		Level string `json:"level"`
	} `json:"defaultConfiguration"`
	MessageStrings map[string]struct {
		Text string `json:"text"`
	} `json:"messageStrings"`
}

type sarifMessage struct {
	Text      *string  `json:"text"`
	ID        string   `json:"id"`
	Arguments []string `json:"arguments"`
}

type sarifArtifactLocation struct {
	URI   string `json:"uri"`
	Index *int   `json:"index"`
}

type sarifResult struct {
	RuleID    string `json:"ruleId"`
	RuleIndex *int   `json:"ruleIndex"`
	Rule      *struct {
		ID    string `json:"id"`
		Index *int   `json:"index"`
	} `json:"rule"`
	Kind      string        `json:"kind"`
	Level     string        `json:"level"`
	Message   *sarifMessage `json:"message"`
	Locations []struct {
		PhysicalLocation *struct {
			ArtifactLocation *sarifArtifactLocation `json:"artifactLocation"`
			Region           *struct {
				StartLine   int `json:"startLine"`
				StartColumn int `json:"startColumn"`
				Snippet     *struct {
					Text string `json:"text"`
				} `json:"snippet"`
			} `json:"region"`
		} `json:"physicalLocation"`
	} `json:"locations"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
	Suppressions        []struct {
		Status string `json:"status"`
	} `json:"suppressions"`
}

func parseSARIF(data []byte) ([]Finding, error) {
	var log sarifLog
	if err := json.Unmarshal(data, &log); err != nil {
		return nil, jsonError(data, err)
	}
	switch {
	case log.Version == nil:
		return nil, fmt.Errorf("version: missing (want \"2.1.0\"); is this a SARIF file?")
	case !strings.HasPrefix(*log.Version, "2."):
		return nil, fmt.Errorf("version: %q is not SARIF 2.x (want \"2.1.0\")", *log.Version)
	case log.Runs == nil:
		return nil, fmt.Errorf("runs: missing")
	}
	out := []Finding{}
	for ri, run := range log.Runs {
		at := fmt.Sprintf("runs[%d]", ri)
		if run.Tool == nil || run.Tool.Driver == nil || run.Tool.Driver.Name == nil {
			return nil, fmt.Errorf("%s.tool.driver.name: missing", at)
		}
		tool := *run.Tool.Driver.Name
		for ii, inv := range run.Invocations {
			if inv.ExecutionSuccessful != nil && !*inv.ExecutionSuccessful {
				return nil, fmt.Errorf("%s.invocations[%d].executionSuccessful: %s reports that it did not run successfully", at, ii, tool)
			}
		}
		if len(run.Results) == 0 || string(run.Results) == "null" {
			return nil, fmt.Errorf("%s.results: %s; SARIF says the tool did not run (an empty list means it found nothing)", at, map[bool]string{true: "null", false: "missing"}[string(run.Results) == "null"])
		}
		var results []sarifResult
		if err := json.Unmarshal(run.Results, &results); err != nil {
			return nil, fmt.Errorf("%s.results: %v", at, err)
		}
		rules := run.Tool.Driver.Rules
		byID := make(map[string]int, len(rules))
		for i, r := range rules {
			if _, dup := byID[r.ID]; !dup {
				byID[r.ID] = i
			}
		}
		for i := range results {
			r := &results[i]
			rat := fmt.Sprintf("%s.results[%d]", at, i)
			if r.Kind != "" && r.Kind != "fail" {
				continue // pass, notApplicable, informational, review, open: not a problem found
			}
			if suppressed(r) {
				continue
			}
			if r.Message == nil {
				return nil, fmt.Errorf("%s.message: missing", rat)
			}
			ruleID, rule := r.RuleID, (*sarifRule)(nil)
			idx := r.RuleIndex
			if idx == nil && r.Rule != nil {
				idx = r.Rule.Index
				if ruleID == "" {
					ruleID = r.Rule.ID
				}
			}
			if idx != nil {
				if *idx < 0 || *idx >= len(rules) {
					return nil, fmt.Errorf("%s.ruleIndex: %d is out of range (%d rules)", rat, *idx, len(rules))
				}
				rule = &rules[*idx]
			} else if j, ok := byID[ruleID]; ok && ruleID != "" {
				rule = &rules[j]
			}
			if ruleID == "" && rule != nil {
				ruleID = rule.ID
			}
			f := Finding{Tool: tool, Rule: ruleID, Partial: r.PartialFingerprints}
			f.Level = r.Level
			if f.Level == "" && rule != nil && rule.DefaultConfiguration != nil {
				f.Level = rule.DefaultConfiguration.Level
			}
			switch f.Level {
			case "", LevelWarning:
				f.Level = LevelWarning
			case LevelError, LevelNote:
			case "none":
				f.Level = LevelNote
			default:
				return nil, fmt.Errorf("%s.level: %q (want none, note, warning or error)", rat, f.Level)
			}
			f.Message = messageText(r.Message, rule)
			if len(r.Locations) > 0 && r.Locations[0].PhysicalLocation != nil {
				pl := r.Locations[0].PhysicalLocation
				if al := pl.ArtifactLocation; al != nil {
					uri := al.URI
					if uri == "" && al.Index != nil && *al.Index >= 0 && *al.Index < len(run.Artifacts) && run.Artifacts[*al.Index].Location != nil {
						uri = run.Artifacts[*al.Index].Location.URI
					}
					f.Path = cleanURI(uri)
				}
				if pl.Region != nil {
					f.Line, f.Column = pl.Region.StartLine, pl.Region.StartColumn
					if f.Line > 0 && f.Column <= 0 {
						f.Column = 1 // §3.30.6
					}
					if pl.Region.Snippet != nil {
						f.Snippet = pl.Region.Snippet.Text
					}
				}
			}
			out = append(out, f)
		}
	}
	return out, nil
}

func suppressed(r *sarifResult) bool {
	for _, s := range r.Suppressions {
		if s.Status == "" || s.Status == "accepted" {
			return true
		}
	}
	return false
}

// messageText is the result's text, or its rule's message string with the
// arguments put in ({0}, {1} …).
func messageText(m *sarifMessage, rule *sarifRule) string {
	if m.Text != nil {
		return *m.Text
	}
	if rule != nil && m.ID != "" {
		if ms, ok := rule.MessageStrings[m.ID]; ok {
			text := ms.Text
			for i, a := range m.Arguments {
				text = strings.ReplaceAll(text, "{"+strconv.Itoa(i)+"}", a)
			}
			return text
		}
	}
	return m.ID
}

// cleanURI turns an artifact URI into a slash path relative to the
// repository where it can.
func cleanURI(uri string) string {
	if strings.HasPrefix(uri, "file://") {
		if u, err := url.Parse(uri); err == nil {
			uri = u.Path
		}
	} else if u, err := url.PathUnescape(uri); err == nil {
		uri = u
	}
	uri = strings.ReplaceAll(uri, "\\", "/")
	return strings.TrimPrefix(uri, "./")
}

// jsonError names the line and column of a JSON syntax error.
func jsonError(data []byte, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	off := int64(-1)
	switch {
	case asErr(err, &se):
		off = se.Offset
	case asErr(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(data)) {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	line, col := 1, 1
	if off > 0 {
		off-- // Offset counts the offending byte
	}
	for _, c := range data[:off] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Errorf("line %d, column %d: invalid JSON: %v", line, col, err)
}
