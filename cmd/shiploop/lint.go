package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/shiploop/shiploop/services/builds/pipeline"
)

type lintProblem struct {
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

type lintResult struct {
	File     string        `json:"file"`
	Valid    bool          `json:"valid"`
	Steps    int           `json:"steps,omitempty"`
	Problems []lintProblem `json:"problems,omitempty"`
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
				fmt.Fprintf(c.stdout, "%s: ok (%d build steps)\n", file, res.Steps)
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
	return res
}
