package conduit

import (
	"context"
	"fmt"
	"strings"
)

// Harbormaster message types a build target accepts (HarbormasterMessageType).
const (
	Pass = "pass"
	Fail = "fail"
	Work = "work"
)

// Unit test results (ArcanistUnitTestResult).
const (
	UnitPass    = "pass"
	UnitFail    = "fail"
	UnitSkip    = "skip"
	UnitBroken  = "broken"
	UnitUnsound = "unsound"
)

// Lint severities (ArcanistLintSeverity).
const (
	SeverityAdvice   = "advice"
	SeverityAutofix  = "autofix"
	SeverityWarning  = "warning"
	SeverityError    = "error"
	SeverityDisabled = "disabled"
)

// Unit is one test result (HarbormasterBuildUnitMessage::getParameterSpec).
type Unit struct {
	Name      string `json:"name"`
	Result    string `json:"result"`
	Namespace string `json:"namespace,omitempty"`
	Engine    string `json:"engine,omitempty"`
	// Duration in seconds.
	Duration float64 `json:"duration,omitempty"`
	Path     string  `json:"path,omitempty"`
	Details  string  `json:"details,omitempty"`
	// Format of Details: "text" (the default) or "remarkup"; older releases
	// ignore details and format.
	Format string `json:"format,omitempty"`
}

// Lint is one lint message (HarbormasterBuildLintMessage::getParameterSpec).
type Lint struct {
	Name        string `json:"name"`
	Code        string `json:"code"`
	Severity    string `json:"severity"`
	Path        string `json:"path"`
	Line        int    `json:"line,omitempty"`
	Char        int    `json:"char,omitempty"`
	Description string `json:"description,omitempty"`
}

// Message is a harbormaster.sendmessage call to a build target.
type Message struct {
	// BuildTargetPHID is the target ("PHID-HMBT-…") the "Make HTTP Request"
	// step passed as ${target.phid}.
	BuildTargetPHID string
	Type            string
	Unit            []Unit
	Lint            []Lint
}

// Params are the call's parameters. The target goes in buildTargetPHID,
// which every release accepts (newer ones call it deprecated in favour of
// receiver, and refuse a call giving both).
func (m Message) Params() (map[string]any, error) {
	if !strings.HasPrefix(m.BuildTargetPHID, "PHID-") {
		return nil, &ParamError{fmt.Sprintf("harbormaster.sendmessage: build target %q is not a PHID", m.BuildTargetPHID)}
	}
	switch m.Type {
	case Pass, Fail, Work:
	default:
		return nil, &ParamError{fmt.Sprintf("harbormaster.sendmessage: type %q: want pass, fail or work", m.Type)}
	}
	p := map[string]any{"buildTargetPHID": m.BuildTargetPHID, "type": m.Type}
	if len(m.Unit) > 0 {
		p["unit"] = m.Unit
	}
	if len(m.Lint) > 0 {
		p["lint"] = m.Lint
	}
	return p, nil
}

// ParamError is a call shiploop refuses to send: retrying cannot fix it.
type ParamError struct{ Msg string }

func (e *ParamError) Error() string { return e.Msg }

// SendMessage reports to a Harbormaster build target.
func (c *Client) SendMessage(ctx context.Context, m Message) error {
	p, err := m.Params()
	if err != nil {
		return err
	}
	_, err = c.Call(ctx, "harbormaster.sendmessage", p)
	return err
}
