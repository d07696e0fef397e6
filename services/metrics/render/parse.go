// Package render evaluates Graphite render targets: the target grammar of
// graphite-web (calls, path expressions with globs, strings, numbers,
// booleans, keyword arguments, pipes), its series model (start, step, values
// with nulls) and the render functions, following graphite-web 1.1.8 where it
// and carbonapi differ.
package render

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind is what an expression is.
type Kind int

// Expression kinds.
const (
	KindPath Kind = iota
	KindCall
	KindString
	KindNumber
	KindBool
	KindNone
)

// Expr is one parsed node of a target.
type Expr struct {
	Kind Kind
	// Pos is the byte offset of the node in the target.
	Pos int
	// Name is the function name (KindCall) or the path expression (KindPath).
	Name   string
	Str    string
	Num    float64
	IsInt  bool
	Bool   bool
	Args   []*Expr
	Kwargs []Kwarg
	// Raw is the node's text as written (calls: from the name to ")").
	Raw string
}

// Kwarg is one name=value argument.
type Kwarg struct {
	Name  string
	Value *Expr
}

// ParseError is a malformed target: Pos is the byte offset of the problem.
type ParseError struct {
	Target string
	Pos    int
	Msg    string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("invalid target at position %d: %s (target %q)", e.Pos, e.Msg, e.Target)
}

// MaxTargetLen bounds a target's length; MaxDepth bounds call nesting.
const (
	MaxTargetLen = 64 << 10
	MaxDepth     = 64
)

// Parse parses one target.
func Parse(target string) (*Expr, error) {
	if len(target) > MaxTargetLen {
		return nil, &ParseError{Target: target[:64] + "…", Pos: MaxTargetLen, Msg: fmt.Sprintf("target longer than %d bytes", MaxTargetLen)}
	}
	p := &parser{s: target}
	p.ws()
	if p.pos >= len(p.s) {
		return nil, p.errf(p.pos, "empty target")
	}
	e, err := p.expression(0)
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.pos < len(p.s) {
		return nil, p.errf(p.pos, "unexpected %q after the expression", p.rest())
	}
	return e, nil
}

type parser struct {
	s   string
	pos int
}

func (p *parser) errf(pos int, format string, a ...any) error {
	return &ParseError{Target: p.s, Pos: pos, Msg: fmt.Sprintf(format, a...)}
}

func (p *parser) rest() string {
	r := p.s[p.pos:]
	if len(r) > 20 {
		r = r[:20] + "…"
	}
	return r
}

func (p *parser) ws() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t' || p.s[p.pos] == '\n' || p.s[p.pos] == '\r') {
		p.pos++
	}
}

func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdent(c byte) bool      { return isIdentStart(c) || (c >= '0' && c <= '9') }

// expression: (call | path) { '|' call }.
func (p *parser) expression(depth int) (*Expr, error) {
	if depth > MaxDepth {
		return nil, p.errf(p.pos, "expression nested deeper than %d calls", MaxDepth)
	}
	e, err := p.primary(depth)
	if err != nil {
		return nil, err
	}
	for {
		save := p.pos
		p.ws()
		if p.pos >= len(p.s) || p.s[p.pos] != '|' {
			p.pos = save
			return e, nil
		}
		p.pos++
		p.ws()
		start := p.pos
		c, err := p.primary(depth)
		if err != nil {
			return nil, err
		}
		if c.Kind != KindCall {
			return nil, p.errf(start, "a pipe must be followed by a function call")
		}
		c.Args = append([]*Expr{e}, c.Args...)
		e = c
	}
}

func (p *parser) primary(depth int) (*Expr, error) {
	start := p.pos
	// funcname '(' ?
	i := p.pos
	if i < len(p.s) && isIdentStart(p.s[i]) {
		for i < len(p.s) && isIdent(p.s[i]) {
			i++
		}
		j := i
		for j < len(p.s) && p.s[j] == ' ' {
			j++
		}
		if j < len(p.s) && p.s[j] == '(' {
			name := p.s[start:i]
			p.pos = j + 1
			e := &Expr{Kind: KindCall, Pos: start, Name: name}
			if err := p.arguments(e, depth); err != nil {
				return nil, err
			}
			e.Raw = p.s[start:p.pos]
			return e, nil
		}
	}
	return p.path()
}

func (p *parser) arguments(call *Expr, depth int) error {
	p.ws()
	if p.pos < len(p.s) && p.s[p.pos] == ')' {
		p.pos++
		return nil
	}
	for {
		p.ws()
		if p.pos >= len(p.s) {
			return p.errf(p.pos, "missing ')' to close %s( opened at position %d", call.Name, call.Pos)
		}
		// name=value ?
		kw := ""
		if isIdentStart(p.s[p.pos]) {
			i := p.pos
			for i < len(p.s) && isIdent(p.s[i]) {
				i++
			}
			j := i
			for j < len(p.s) && p.s[j] == ' ' {
				j++
			}
			if j < len(p.s) && p.s[j] == '=' {
				kw = p.s[p.pos:i]
				p.pos = j + 1
				p.ws()
			}
		}
		argPos := p.pos
		a, err := p.arg(depth + 1)
		if err != nil {
			return err
		}
		if kw != "" {
			call.Kwargs = append(call.Kwargs, Kwarg{Name: kw, Value: a})
		} else {
			if len(call.Kwargs) > 0 {
				return p.errf(argPos, "positional argument after a keyword argument")
			}
			call.Args = append(call.Args, a)
		}
		p.ws()
		if p.pos >= len(p.s) {
			return p.errf(p.pos, "missing ')' to close %s( opened at position %d", call.Name, call.Pos)
		}
		switch p.s[p.pos] {
		case ',':
			p.pos++
		case ')':
			p.pos++
			return nil
		default:
			return p.errf(p.pos, "expected ',' or ')' in the arguments of %s, found %q", call.Name, p.rest())
		}
	}
}

// followedByEnd reports whether, after spaces, the next byte ends an argument.
func (p *parser) followedByEnd(i int) bool {
	for i < len(p.s) && p.s[i] == ' ' {
		i++
	}
	return i >= len(p.s) || p.s[i] == ',' || p.s[i] == ')'
}

func (p *parser) arg(depth int) (*Expr, error) {
	start := p.pos
	if p.pos >= len(p.s) {
		return nil, p.errf(p.pos, "missing argument")
	}
	c := p.s[p.pos]
	if c == '"' || c == '\'' {
		return p.str()
	}
	// keyword literals: true, false, none, inf (caseless, whole word)
	if isIdentStart(c) {
		i := p.pos
		for i < len(p.s) && isIdent(p.s[i]) {
			i++
		}
		if p.followedByEnd(i) || i >= len(p.s) || !isPathChar(p.s[i]) {
			switch strings.ToLower(p.s[p.pos:i]) {
			case "true", "false":
				p.pos = i
				return &Expr{Kind: KindBool, Pos: start, Bool: strings.EqualFold(p.s[start:i], "true"), Raw: p.s[start:i]}, nil
			case "none":
				p.pos = i
				return &Expr{Kind: KindNone, Pos: start, Raw: p.s[start:i]}, nil
			case "inf":
				p.pos = i
				return &Expr{Kind: KindNumber, Pos: start, Num: posInf, Raw: p.s[start:i]}, nil
			}
		}
	}
	// number followed by , or ) or end
	if c == '-' || (c >= '0' && c <= '9') {
		i := p.pos
		if p.s[i] == '-' {
			i++
		}
		d := i
		for i < len(p.s) && p.s[i] >= '0' && p.s[i] <= '9' {
			i++
		}
		if i > d {
			isInt := true
			if i+1 < len(p.s) && p.s[i] == '.' && p.s[i+1] >= '0' && p.s[i+1] <= '9' {
				isInt = false
				i++
				for i < len(p.s) && p.s[i] >= '0' && p.s[i] <= '9' {
					i++
				}
			}
			if i < len(p.s) && (p.s[i] == 'e' || p.s[i] == 'E') {
				j := i + 1
				if j < len(p.s) && p.s[j] == '-' {
					j++
				}
				k := j
				for k < len(p.s) && p.s[k] >= '0' && p.s[k] <= '9' {
					k++
				}
				if k > j {
					i = k
					isInt = false
				}
			}
			if p.followedByEnd(i) {
				f, err := strconv.ParseFloat(p.s[p.pos:i], 64)
				if err == nil {
					p.pos = i
					return &Expr{Kind: KindNumber, Pos: start, Num: f, IsInt: isInt, Raw: p.s[start:i]}, nil
				}
			}
		}
	}
	return p.expression(depth)
}

func (p *parser) str() (*Expr, error) {
	start := p.pos
	q := p.s[p.pos]
	var b strings.Builder
	i := p.pos + 1
	for i < len(p.s) {
		c := p.s[i]
		if c == '\\' && i+1 < len(p.s) {
			// pyparsing's quotedString keeps escapes as written; graphite-web
			// unquotes only the surrounding quotes. Keep the backslash.
			b.WriteByte(c)
			b.WriteByte(p.s[i+1])
			i += 2
			continue
		}
		if c == q {
			p.pos = i + 1
			return &Expr{Kind: KindString, Pos: start, Str: b.String(), Raw: p.s[start:p.pos]}, nil
		}
		b.WriteByte(c)
		i++
	}
	return nil, p.errf(start, "unterminated string")
}

const pathSymbols = "(){},.'\"\\|"

func isPathChar(c byte) bool {
	return c > ' ' && c != 0x7f && strings.IndexByte(pathSymbols, c) < 0
}

// path parses a path expression: elements separated by '.', each made of
// metric characters, escaped symbols and {a,b} groups.
func (p *parser) path() (*Expr, error) {
	start := p.pos
	var b strings.Builder
	for {
		elemStart := p.pos
		if err := p.pathElement(&b); err != nil {
			return nil, err
		}
		if p.pos == elemStart {
			if p.pos >= len(p.s) {
				return nil, p.errf(p.pos, "unexpected end of target, expected a metric path or a function call")
			}
			r, _ := utf8.DecodeRuneInString(p.s[p.pos:])
			return nil, p.errf(p.pos, "unexpected %q, expected a metric path or a function call", r)
		}
		if p.pos < len(p.s) && p.s[p.pos] == '.' {
			b.WriteByte('.')
			p.pos++
			continue
		}
		break
	}
	return &Expr{Kind: KindPath, Pos: start, Name: b.String(), Raw: p.s[start:p.pos]}, nil
}

func (p *parser) pathElement(b *strings.Builder) error {
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == '\\' && p.pos+1 < len(p.s) && (strings.IndexByte(pathSymbols, p.s[p.pos+1]) >= 0 || p.s[p.pos+1] == '='):
			b.WriteByte(p.s[p.pos+1])
			p.pos += 2
		case c == '{':
			open := p.pos
			b.WriteByte('{')
			p.pos++
			for {
				if p.pos >= len(p.s) {
					return p.errf(open, "missing '}' to close the '{' group")
				}
				if p.s[p.pos] == '}' {
					b.WriteByte('}')
					p.pos++
					break
				}
				if p.s[p.pos] == ',' {
					b.WriteByte(',')
					p.pos++
					continue
				}
				n := p.pos
				if err := p.partial(b); err != nil {
					return err
				}
				if p.pos == n {
					return p.errf(p.pos, "unexpected %q inside a '{' group", p.s[p.pos])
				}
			}
		case c >= 0x80:
			r, size := utf8.DecodeRuneInString(p.s[p.pos:])
			if r == utf8.RuneError || !unicode.IsPrint(r) || unicode.IsSpace(r) {
				return nil
			}
			b.WriteString(p.s[p.pos : p.pos+size])
			p.pos += size
		case isPathChar(c):
			b.WriteByte(c)
			p.pos++
		default:
			return nil
		}
	}
	return nil
}

// partial is pathElement without groups (inside a group).
func (p *parser) partial(b *strings.Builder) error {
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == '\\' && p.pos+1 < len(p.s):
			b.WriteByte(p.s[p.pos+1])
			p.pos += 2
		case c >= 0x80:
			r, size := utf8.DecodeRuneInString(p.s[p.pos:])
			if r == utf8.RuneError || !unicode.IsPrint(r) {
				return nil
			}
			b.WriteString(p.s[p.pos : p.pos+size])
			p.pos += size
		case isPathChar(c) && c != '{':
			b.WriteByte(c)
			p.pos++
		default:
			return nil
		}
	}
	return nil
}
