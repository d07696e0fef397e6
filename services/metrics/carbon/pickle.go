package carbon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
)

// MaxPickleFrame bounds one pickle frame, as go-carbon's max-message-size.
const MaxPickleFrame = 64 << 20

// DecodePickle decodes one pickle payload (without its length prefix) of the
// shape carbon clients send: a list of (path, (timestamp, value)) tuples. It
// is a small stack machine over the opcodes that shape needs (protocols 0-4:
// lists, tuples, strings, ints, longs, floats, None, memo) and refuses every
// other opcode, so it can never build an object or call anything.
// Points with a None or non-numeric value are skipped and counted in bad.
func DecodePickle(data []byte, now int64) (points []Point, bad int, err error) {
	d := pickleDecoder{data: data}
	top, err := d.run()
	if err != nil {
		return nil, 0, err
	}
	list, ok := top.(*[]any)
	if !ok {
		return nil, 0, errors.New("pickle: top-level object is not a list")
	}
	for _, it := range *list {
		tup, ok := it.([]any)
		if !ok || len(tup) != 2 {
			bad++
			continue
		}
		name, ok := tup[0].(string)
		pair, ok2 := tup[1].([]any)
		if !ok || !ok2 || len(pair) != 2 {
			bad++
			continue
		}
		ts, ok := number(pair[0])
		v, ok2 := number(pair[1])
		if !ok || !ok2 || math.IsNaN(v) || math.IsNaN(ts) || math.IsInf(ts, 0) {
			bad++
			continue
		}
		p := Point{Value: v, Timestamp: int64(ts)}
		if p.Timestamp == -1 {
			p.Timestamp = now
		}
		if p.Name, err = NormalizeName(name); err != nil {
			bad++
			continue
		}
		points = append(points, p)
	}
	return points, bad, nil
}

// ReadFrameLen decodes a frame's 4-byte big-endian length and checks it.
func ReadFrameLen(hdr [4]byte) (int, error) {
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxPickleFrame {
		return 0, fmt.Errorf("pickle: frame of %d bytes is over the %d-byte limit", n, MaxPickleFrame)
	}
	return int(n), nil
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case *big.Int:
		f, _ := new(big.Float).SetInt(x).Float64()
		return f, true
	case string: // protocol 0 clients sometimes send numbers as text
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}

type mark struct{}

type pickleDecoder struct {
	data  []byte
	pos   int
	stack []any
	memo  map[uint32]any
}

const maxPickleDepth = 1 << 20

var errTruncated = errors.New("pickle: truncated")

func (d *pickleDecoder) take(n int) ([]byte, error) {
	if n < 0 || d.pos+n > len(d.data) || d.pos+n < d.pos {
		return nil, errTruncated
	}
	b := d.data[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

func (d *pickleDecoder) line() ([]byte, error) {
	for i := d.pos; i < len(d.data); i++ {
		if d.data[i] == '\n' {
			b := d.data[d.pos:i]
			d.pos = i + 1
			return b, nil
		}
	}
	return nil, errTruncated
}

func (d *pickleDecoder) push(v any) error {
	if len(d.stack) >= maxPickleDepth {
		return errors.New("pickle: too many objects")
	}
	d.stack = append(d.stack, v)
	return nil
}

func (d *pickleDecoder) pop() (any, error) {
	if len(d.stack) == 0 {
		return nil, errors.New("pickle: stack underflow")
	}
	v := d.stack[len(d.stack)-1]
	d.stack = d.stack[:len(d.stack)-1]
	return v, nil
}

// popMark pops everything down to the last mark.
func (d *pickleDecoder) popMark() ([]any, error) {
	for i := len(d.stack) - 1; i >= 0; i-- {
		if _, ok := d.stack[i].(mark); ok {
			items := append([]any(nil), d.stack[i+1:]...)
			d.stack = d.stack[:i]
			return items, nil
		}
	}
	return nil, errors.New("pickle: no mark on the stack")
}

func (d *pickleDecoder) top() (any, error) {
	if len(d.stack) == 0 {
		return nil, errors.New("pickle: stack underflow")
	}
	return d.stack[len(d.stack)-1], nil
}

func (d *pickleDecoder) appendTo(items ...any) error {
	t, err := d.top()
	if err != nil {
		return err
	}
	l, ok := t.(*[]any)
	if !ok {
		return errors.New("pickle: append to a non-list")
	}
	*l = append(*l, items...)
	return nil
}

func (d *pickleDecoder) memoPut(k uint32) error {
	t, err := d.top()
	if err != nil {
		return err
	}
	if d.memo == nil {
		d.memo = map[uint32]any{}
	}
	if len(d.memo) > maxPickleDepth {
		return errors.New("pickle: memo too large")
	}
	d.memo[k] = t
	return nil
}

func (d *pickleDecoder) memoGet(k uint32) error {
	v, ok := d.memo[k]
	if !ok {
		return fmt.Errorf("pickle: memo key %d not set", k)
	}
	return d.push(v)
}

func (d *pickleDecoder) run() (any, error) {
	for {
		if d.pos >= len(d.data) {
			return nil, errTruncated
		}
		op := d.data[d.pos]
		d.pos++
		var err error
		switch op {
		case 0x80: // PROTO
			_, err = d.take(1)
		case 0x95: // FRAME
			_, err = d.take(8)
		case '.': // STOP
			return d.pop()
		case '(': // MARK
			err = d.push(mark{})
		case ']': // EMPTY_LIST
			err = d.push(&[]any{})
		case 'l': // LIST
			var items []any
			if items, err = d.popMark(); err == nil {
				err = d.push(&items)
			}
		case ')': // EMPTY_TUPLE
			err = d.push([]any{})
		case 't': // TUPLE
			var items []any
			if items, err = d.popMark(); err == nil {
				err = d.push(items)
			}
		case 0x85, 0x86, 0x87: // TUPLE1..3
			n := int(op - 0x84)
			if len(d.stack) < n {
				return nil, errors.New("pickle: stack underflow")
			}
			items := append([]any(nil), d.stack[len(d.stack)-n:]...)
			for _, it := range items {
				if _, ok := it.(mark); ok {
					return nil, errors.New("pickle: mark inside a tuple")
				}
			}
			d.stack = d.stack[:len(d.stack)-n]
			err = d.push(items)
		case 'a': // APPEND
			var v any
			if v, err = d.pop(); err == nil {
				err = d.appendTo(v)
			}
		case 'e': // APPENDS
			var items []any
			if items, err = d.popMark(); err == nil {
				err = d.appendTo(items...)
			}
		case 'N':
			err = d.push(nil)
		case 0x88:
			err = d.push(true)
		case 0x89:
			err = d.push(false)
		case 'K': // BININT1
			var b []byte
			if b, err = d.take(1); err == nil {
				err = d.push(int64(b[0]))
			}
		case 'M': // BININT2
			var b []byte
			if b, err = d.take(2); err == nil {
				err = d.push(int64(binary.LittleEndian.Uint16(b)))
			}
		case 'J': // BININT
			var b []byte
			if b, err = d.take(4); err == nil {
				err = d.push(int64(int32(binary.LittleEndian.Uint32(b))))
			}
		case 'I', 'L': // INT, LONG (text)
			var b []byte
			if b, err = d.line(); err == nil {
				s := string(b)
				switch {
				case s == "00":
					err = d.push(false)
				case s == "01":
					err = d.push(true)
				default:
					if len(s) > 0 && s[len(s)-1] == 'L' {
						s = s[:len(s)-1]
					}
					n, ok := new(big.Int).SetString(s, 10)
					if !ok {
						return nil, fmt.Errorf("pickle: bad integer %q", s)
					}
					if n.IsInt64() {
						err = d.push(n.Int64())
					} else {
						err = d.push(n)
					}
				}
			}
		case 0x8a, 0x8b: // LONG1, LONG4
			var b []byte
			var n int
			if op == 0x8a {
				if b, err = d.take(1); err == nil {
					n = int(b[0])
				}
			} else if b, err = d.take(4); err == nil {
				n = int(int32(binary.LittleEndian.Uint32(b)))
			}
			if err == nil {
				if n > 64 || n < 0 {
					return nil, errors.New("pickle: integer too long for a timestamp or value")
				}
				if b, err = d.take(n); err == nil {
					err = d.push(decodeLong(b))
				}
			}
		case 'G': // BINFLOAT
			var b []byte
			if b, err = d.take(8); err == nil {
				err = d.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
			}
		case 'F': // FLOAT (text)
			var b []byte
			if b, err = d.line(); err == nil {
				f, perr := strconv.ParseFloat(string(b), 64)
				if perr != nil {
					return nil, fmt.Errorf("pickle: bad float %q", b)
				}
				err = d.push(f)
			}
		case 'S': // STRING (quoted repr)
			var b []byte
			if b, err = d.line(); err == nil {
				s, uerr := strconv.Unquote(pyQuote(string(b)))
				if uerr != nil {
					return nil, fmt.Errorf("pickle: bad string %q", b)
				}
				err = d.push(s)
			}
		case 'V': // UNICODE (raw-unicode-escape, one line)
			var b []byte
			if b, err = d.line(); err == nil {
				err = d.push(string(b))
			}
		case 'U', 0x8c, 'C': // SHORT_BINSTRING, SHORT_BINUNICODE, SHORT_BINBYTES
			var b []byte
			if b, err = d.take(1); err == nil {
				if b, err = d.take(int(b[0])); err == nil {
					err = d.push(string(b))
				}
			}
		case 'T', 'X', 'B': // BINSTRING, BINUNICODE, BINBYTES
			var b []byte
			if b, err = d.take(4); err == nil {
				n := int(binary.LittleEndian.Uint32(b))
				if b, err = d.take(n); err == nil {
					err = d.push(string(b))
				}
			}
		case 'q': // BINPUT
			var b []byte
			if b, err = d.take(1); err == nil {
				err = d.memoPut(uint32(b[0]))
			}
		case 'r': // LONG_BINPUT
			var b []byte
			if b, err = d.take(4); err == nil {
				err = d.memoPut(binary.LittleEndian.Uint32(b))
			}
		case 'p': // PUT
			var b []byte
			if b, err = d.line(); err == nil {
				k, perr := strconv.ParseUint(string(b), 10, 32)
				if perr != nil {
					return nil, fmt.Errorf("pickle: bad memo key %q", b)
				}
				err = d.memoPut(uint32(k))
			}
		case 0x94: // MEMOIZE
			err = d.memoPut(uint32(len(d.memo)))
		case 'h': // BINGET
			var b []byte
			if b, err = d.take(1); err == nil {
				err = d.memoGet(uint32(b[0]))
			}
		case 'j': // LONG_BINGET
			var b []byte
			if b, err = d.take(4); err == nil {
				err = d.memoGet(binary.LittleEndian.Uint32(b))
			}
		case 'g': // GET
			var b []byte
			if b, err = d.line(); err == nil {
				k, perr := strconv.ParseUint(string(b), 10, 32)
				if perr != nil {
					return nil, fmt.Errorf("pickle: bad memo key %q", b)
				}
				err = d.memoGet(uint32(k))
			}
		default:
			return nil, fmt.Errorf("pickle: opcode 0x%02x at byte %d is not allowed (only lists of (path, (timestamp, value)) tuples)", op, d.pos-1)
		}
		if err != nil {
			return nil, err
		}
	}
}

// decodeLong decodes a little-endian two's-complement integer.
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var u uint64
		for i := len(b) - 1; i >= 0; i-- {
			u = u<<8 | uint64(b[i])
		}
		if b[len(b)-1]&0x80 != 0 && len(b) < 8 {
			u |= ^uint64(0) << (8 * len(b))
		}
		return int64(u)
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	n := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return n
}

// pyQuote turns a Python repr string ('abc' or "abc") into a Go-quotable one.
func pyQuote(s string) string {
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		inner := s[1 : len(s)-1]
		out := make([]byte, 0, len(inner)+2)
		out = append(out, '"')
		for i := 0; i < len(inner); i++ {
			c := inner[i]
			if c == '\\' && i+1 < len(inner) && inner[i+1] == '\'' {
				out = append(out, '\'')
				i++
				continue
			}
			if c == '"' {
				out = append(out, '\\', '"')
				continue
			}
			out = append(out, c)
		}
		return string(append(out, '"'))
	}
	return s
}
