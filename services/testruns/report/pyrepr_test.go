package report

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// pyValue is a value read from the Python repr EnricoMi's expectations are
// written in: a call Name(k=v, …) as pyObj, a list, a string, a number, or
// nil for None.
type pyObj struct {
	Name string
	Args []any
	KW   map[string]any
}

// parsePyRepr reads the subset of Python literal syntax the .results files
// use: calls with keyword arguments, lists, strings (adjacent ones
// concatenated), numbers, None, True and False.
func parsePyRepr(s string) (any, error) {
	p := &pyParser{s: s}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("offset %d: trailing data", p.i)
	}
	return v, nil
}

type pyParser struct {
	s string
	i int
}

func (p *pyParser) ws() {
	for p.i < len(p.s) && unicode.IsSpace(rune(p.s[p.i])) {
		p.i++
	}
}

func (p *pyParser) errf(f string, a ...any) error {
	return fmt.Errorf("offset %d: %s", p.i, fmt.Sprintf(f, a...))
}

func (p *pyParser) value() (any, error) {
	p.ws()
	if p.i >= len(p.s) {
		return nil, p.errf("unexpected end")
	}
	c := p.s[p.i]
	switch {
	case c == '\'' || c == '"':
		var b strings.Builder
		for p.i < len(p.s) && (p.s[p.i] == '\'' || p.s[p.i] == '"') {
			s, err := p.str()
			if err != nil {
				return nil, err
			}
			b.WriteString(s)
			p.ws()
		}
		return b.String(), nil
	case c == '(':
		// A parenthesised group of adjacent strings.
		p.i++
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != ')' {
			return nil, p.errf("want )")
		}
		p.i++
		return v, nil
	case c == '[':
		p.i++
		var out []any
		for {
			p.ws()
			if p.i < len(p.s) && p.s[p.i] == ']' {
				p.i++
				return out, nil
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			p.ws()
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
			}
		}
	case c == '-' || c >= '0' && c <= '9':
		j := p.i + 1
		for j < len(p.s) && strings.IndexByte("0123456789.eE+-", p.s[j]) >= 0 {
			j++
		}
		f, err := strconv.ParseFloat(p.s[p.i:j], 64)
		if err != nil {
			return nil, p.errf("number: %v", err)
		}
		p.i = j
		return f, nil
	case c == '_' || unicode.IsLetter(rune(c)):
		j := p.i
		for j < len(p.s) && (p.s[j] == '_' || p.s[j] == '.' || unicode.IsLetter(rune(p.s[j])) || unicode.IsDigit(rune(p.s[j]))) {
			j++
		}
		name := p.s[p.i:j]
		p.i = j
		switch name {
		case "None":
			return nil, nil
		case "True":
			return true, nil
		case "False":
			return false, nil
		}
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != '(' {
			return name, nil
		}
		p.i++
		obj := &pyObj{Name: name, KW: map[string]any{}}
		for {
			p.ws()
			if p.i < len(p.s) && p.s[p.i] == ')' {
				p.i++
				return obj, nil
			}
			// keyword?
			k := p.i
			for k < len(p.s) && (p.s[k] == '_' || unicode.IsLetter(rune(p.s[k])) || unicode.IsDigit(rune(p.s[k]))) {
				k++
			}
			if k > p.i && k < len(p.s) && p.s[k] == '=' {
				key := p.s[p.i:k]
				p.i = k + 1
				v, err := p.value()
				if err != nil {
					return nil, err
				}
				obj.KW[key] = v
			} else {
				v, err := p.value()
				if err != nil {
					return nil, err
				}
				obj.Args = append(obj.Args, v)
			}
			p.ws()
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
			}
		}
	}
	return nil, p.errf("unexpected %q", c)
}

func (p *pyParser) str() (string, error) {
	q := p.s[p.i]
	p.i++
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == q:
			p.i++
			return b.String(), nil
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return "", p.errf("bad escape")
			}
			e := p.s[p.i+1]
			p.i += 2
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\\', '\'', '"':
				b.WriteByte(e)
			case 'x', 'u', 'U':
				n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
				if p.i+n > len(p.s) {
					return "", p.errf("bad escape")
				}
				r, err := strconv.ParseUint(p.s[p.i:p.i+n], 16, 32)
				if err != nil {
					return "", p.errf("bad escape: %v", err)
				}
				b.WriteRune(rune(r))
				p.i += n
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return "", p.errf("unterminated string")
}
