package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/shiploop/shiploop/pkg/gatepolicy"
	"github.com/shiploop/shiploop/services/builds/pipeline"
)

type lintProblem struct {
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

type lintResult struct {
	File  string `json:"file"`
	Valid bool   `json:"valid"`
	Steps int    `json:"steps,omitempty"`
	// What a valid file defines, beyond its build steps.
	Test         *lintTest `json:"test,omitempty"`
	Gate         *lintGate `json:"gate,omitempty"`
	Environments []string  `json:"environments,omitempty"` // in promotion order
	// Schedules are "name: cron timezone [on branch]", one per schedule.
	Schedules []string `json:"schedules,omitempty"`
	// Summary is the line lint prints for a valid file.
	Summary  string        `json:"summary,omitempty"`
	Problems []lintProblem `json:"problems,omitempty"`
}

// lintTest is what the test section defines.
type lintTest struct {
	Steps         int `json:"steps"`
	Shards        int `json:"shards"`
	JUnitGlobs    int `json:"junit_globs"`
	CoverageGlobs int `json:"coverage_globs"`
}

// lintGate is what the gate section defines.
type lintGate struct {
	Conditions    int    `json:"conditions"`
	HasExpression bool   `json:"expression,omitempty"`
	OnNoData      string `json:"on_no_data"` // "fail" unless the file says pass
	// NoDataPasses counts the conditions whose own on_no_data is pass.
	NoDataPasses int `json:"conditions_on_no_data_pass,omitempty"`
	ReportGlobs  int `json:"report_globs,omitempty"`
}

func lintCommand() *command {
	var asJSON bool
	c := newCommand("lint", "shiploop lint [--json] [FILE...]", "Check .shiploop.yml files; every problem names file, line and field.",
		`FILE defaults to .shiploop.yml. Exit status 1 when a file has problems.
The JSON Schema of the file is docs/shiploop.schema.json.`)
	c.flags.BoolVar(&asJSON, "json", false, "print one JSON object per file")
	c.run = func(c *command, args []string) error {
		if len(args) == 0 {
			args = []string{".shiploop.yml"}
		}
		bad := 0
		for _, file := range args {
			res := lintFile(file)
			if !res.Valid {
				bad++
			}
			if asJSON {
				b, _ := json.Marshal(res)
				fmt.Fprintln(c.stdout, string(b))
				continue
			}
			if res.Valid {
				fmt.Fprintf(c.stdout, "%s: ok: %s\n", file, res.Summary)
				continue
			}
			for _, p := range res.Problems {
				fe := pipeline.FieldError{File: file, Line: p.Line, Column: p.Column, Field: p.Field, Msg: p.Message}
				fmt.Fprintln(c.stdout, fe.Error())
			}
		}
		if bad > 0 {
			return fmt.Errorf("%d of %d files have problems", bad, len(args))
		}
		return nil
	}
	return c
}

func lintFile(file string) lintResult {
	res := lintResult{File: file}
	data, err := os.ReadFile(file)
	if err != nil {
		res.Problems = []lintProblem{{Message: err.Error()}}
		return res
	}
	cfg, err := pipeline.Parse(file, data)
	if err != nil {
		var ve *pipeline.ValidationError
		if errors.As(err, &ve) {
			for _, fe := range ve.Errors {
				res.Problems = append(res.Problems, lintProblem{Line: fe.Line, Column: fe.Column, Field: fe.Field, Message: fe.Msg})
			}
		} else {
			res.Problems = []lintProblem{{Message: err.Error()}}
		}
		return res
	}
	res.Valid, res.Steps = true, len(cfg.Steps)
	if t := cfg.Test; t != nil {
		res.Test = &lintTest{Steps: len(t.Steps), Shards: max(t.Shards, 1), JUnitGlobs: len(t.Reports.JUnit), CoverageGlobs: len(t.Reports.Coverage)}
	}
	if g := cfg.Gate; g != nil {
		res.Gate = &lintGate{Conditions: len(g.Conditions), HasExpression: g.Expression != "", OnNoData: g.OnNoData}
		if res.Gate.OnNoData == "" {
			res.Gate.OnNoData = gatepolicy.OnNoDataFail
		}
		for _, c := range g.Conditions {
			if c.OnNoData == gatepolicy.OnNoDataPass {
				res.Gate.NoDataPasses++
			}
		}
		for _, globs := range g.Reports {
			res.Gate.ReportGlobs += len(globs)
		}
	}
	for _, e := range cfg.Environments {
		res.Environments = append(res.Environments, e.Name)
	}
	for _, s := range cfg.Schedules {
		line := fmt.Sprintf("%s: %s %s", s.Name, s.Cron, s.Timezone)
		if s.Branch != "" {
			line += " on " + s.Branch
		}
		res.Schedules = append(res.Schedules, line)
	}
	res.Summary = lintSummary(res)
	return res
}

// lintSummary says what a valid file defines: "1 build step, test stage
// (1 step, 2 shards, 1 JUnit glob, 1 coverage glob), gate with 3 conditions
// (no data fails), 2 environments (staging → production)".
func lintSummary(r lintResult) string {
	parts := []string{plural(r.Steps, "build step")}
	if t := r.Test; t != nil {
		parts = append(parts, fmt.Sprintf("test stage (%s, %s, %s, %s)", plural(t.Steps, "step"), plural(t.Shards, "shard"),
			plural(t.JUnitGlobs, "JUnit glob"), plural(t.CoverageGlobs, "coverage glob")))
	} else {
		parts = append(parts, "no test stage")
	}
	if g := r.Gate; g != nil {
		s := "gate with " + plural(g.Conditions, "condition")
		if g.HasExpression {
			s += " and an expression"
		}
		if g.ReportGlobs > 0 {
			s += ", " + plural(g.ReportGlobs, "report glob")
		}
		if g.OnNoData == gatepolicy.OnNoDataPass {
			s += " (no data passes: " + gatepolicy.OnNoDataKey + ": " + gatepolicy.OnNoDataPass + ")"
		} else if g.NoDataPasses > 0 {
			s += fmt.Sprintf(" (no data fails but for %s with %s: %s)", plural(g.NoDataPasses, "condition"), gatepolicy.OnNoDataKey, gatepolicy.OnNoDataPass)
		} else {
			s += " (no data fails)"
		}
		parts = append(parts, s)
	} else {
		parts = append(parts, "no gate section (the repository's or installation's policy applies)")
	}
	if len(r.Environments) > 0 {
		parts = append(parts, plural(len(r.Environments), "environment")+" ("+strings.Join(r.Environments, " → ")+")")
	} else {
		parts = append(parts, "no environments")
	}
	if len(r.Schedules) > 0 {
		parts = append(parts, plural(len(r.Schedules), "schedule")+" ("+strings.Join(r.Schedules, "; ")+")")
	}
	return strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
