// Parse: from bytes to a validated Config, and YAML syntax errors.

package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits that keep a hostile file from costing much. A real .shiploop.yml is
// a few kilobytes.
const (
	maxFileSize   = 1 << 20 // bytes
	maxNodes      = 100_000 // YAML nodes visited, counting each alias expansion
	maxErrors     = 50      // problems reported; the rest are summarised
	maxMatrixJobs = 256     // combinations of a matrix (Tekton's default limit)
	maxShards     = 64
	maxNameLen    = 63
)

// Parse reads a .shiploop.yml. file is the name used in error messages
// (usually ".shiploop.yml"). On any problem it returns a *ValidationError
// listing every problem it found, each with its line, column and field path.
// Parse never panics, whatever data holds.
func Parse(file string, data []byte) (cfg *Config, err error) {
	d := &decoder{file: file, pos: map[string]Position{}, stepPaths: map[string][]string{}}
	defer func() {
		if r := recover(); r != nil {
			cfg = nil
			msg := fmt.Sprintf("cannot read YAML: %v", r)
			if r == errTooManyNodes {
				msg = fmt.Sprintf("too many YAML nodes (more than %d, counting alias expansions)", maxNodes)
			}
			err = &ValidationError{File: file, Errors: []*FieldError{{File: file, Msg: msg}}}
		}
	}()
	if len(data) > maxFileSize {
		d.errs = append(d.errs, &FieldError{File: file, Msg: fmt.Sprintf("file is larger than %d bytes", maxFileSize)})
		return nil, d.result()
	}
	root := d.load(data)
	if root == nil {
		return nil, d.result()
	}
	c := d.config(root)
	validate(d, c)
	if len(d.errs) > 0 {
		return nil, d.result()
	}
	c.file, c.pos, c.stepPaths = file, d.pos, d.stepPaths
	return c, nil
}

var errTooManyNodes = errors.New("too many nodes")

type decoder struct {
	file      string
	errs      []*FieldError
	pos       map[string]Position // field path -> position of its value
	stepPaths map[string][]string // steps field -> field path of each decoded step
	nodes     int                 // nodes visited, against maxNodes
	deploy    bool                // decoding an environment's steps (detach is allowed)
	// runbookNames: the runbooks of the file, for schedules that name one.
	runbookNames map[string]bool
}

func (d *decoder) result() error {
	if len(d.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.errs, func(a, b *FieldError) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	errs := d.errs
	if len(errs) > maxErrors {
		more := len(errs) - maxErrors
		errs = append(errs[:maxErrors:maxErrors], &FieldError{File: d.file, Msg: fmt.Sprintf("%d more problems not shown", more)})
	}
	return &ValidationError{File: d.file, Errors: errs}
}

// errAt records a problem at node n.
func (d *decoder) errAt(n *yaml.Node, field, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Line: n.Line, Column: n.Column, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// load parses the YAML text into the root mapping node.
func (d *decoder) load(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			d.errs = append(d.errs, &FieldError{File: d.file, Line: 1, Column: 1, Msg: "file is empty; it needs at least steps"})
		} else {
			d.yamlError(err, data)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == io.EOF:
	case err != nil:
		d.yamlError(err, data)
		return nil
	case len(extra.Content) == 1 && extra.Content[0].ShortTag() == "!!null":
		// A trailing "---" with nothing after it.
	default:
		d.errAt(&extra, "", "a second YAML document; the file holds exactly one")
		return nil
	}
	if len(doc.Content) != 1 {
		d.errs = append(d.errs, &FieldError{File: d.file, Line: 1, Column: 1, Msg: "file is empty; it needs at least steps"})
		return nil
	}
	root := d.resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		d.errAt(root, "", "the file must be a mapping of fields (version, steps, ...), not %s", describe(root))
		return nil
	}
	return root
}

var yamlLineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns a YAML syntax error into a FieldError. The parser gives
// only a line, and for tabs sometimes the line before; a tab in indentation is
// the most common mistake, so it is located exactly.
func (d *decoder) yamlError(err error, data []byte) {
	msg := err.Error()
	fe := &FieldError{File: d.file, Msg: strings.TrimPrefix(msg, "yaml: ")}
	if m := yamlLineError.FindStringSubmatch(msg); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = m[2]
	}
	if strings.Contains(msg, "tab") || strings.Contains(msg, "cannot start any token") {
		if line, col := findIndentTab(data, fe.Line); line > 0 {
			fe.Line, fe.Column = line, col
			fe.Msg = "tab character in indentation; indent YAML with spaces"
		}
	}
	d.errs = append(d.errs, fe)
}

// findIndentTab returns the line and column of the first tab in the leading
// whitespace of a line at or after from (1-based), or 0, 0.
func findIndentTab(data []byte, from int) (line, col int) {
	for i, l := range strings.Split(string(data), "\n") {
		if i+1 < from {
			continue
		}
		for j, r := range l {
			if r == '\t' {
				return i + 1, j + 1
			}
			if r != ' ' {
				break
			}
		}
		if i+1 > from+1 {
			break
		}
	}
	return 0, 0
}

// resolve follows aliases and counts the node against the budget; every
// node the decoder looks at goes through here.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for {
		d.nodes++
		if d.nodes > maxNodes {
			panic(errTooManyNodes)
		}
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			return n
		}
		n = n.Alias
	}
}
