// Package report reads static-analysis reports (SARIF 2.1.0, flake8 text,
// Checkstyle XML, golangci-lint JSON or text) into findings with stable
// fingerprints, and tells new findings from those of a base analysis.
//
// A fingerprint ignores line numbers, so moving code does not make its
// findings new: it hashes the tool, the rule, the file, the message with
// digits folded, the source line when the report gives it, and the
// finding's rank among identical ones in its file. SARIF partialFingerprints
// replace all of that when a tool provides them.
package report

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Levels of a finding.
const (
	LevelError   = "error"
	LevelWarning = "warning"
	LevelNote    = "note"
)

// Finding is one result of a static-analysis tool.
type Finding struct {
	Tool    string `json:"tool"`
	Rule    string `json:"rule,omitempty"`
	Level   string `json:"level"`
	Path    string `json:"path,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Message string `json:"message"`
	// Snippet is the source line, when the report carries it.
	Snippet string `json:"-"`
	// Partial are SARIF partialFingerprints, when present.
	Partial map[string]string `json:"-"`
	// Fingerprint is set by Fingerprint.
	Fingerprint uint64 `json:"-"`
}

// FingerprintHex is the fingerprint as 16 hex digits.
func (f *Finding) FingerprintHex() string { return fmt.Sprintf("%016x", f.Fingerprint) }

// Formats this package reads.
var Formats = []string{"sarif", "flake8", "checkstyle", "golangci_lint"}

// Error is a report that cannot be read: it names the file and, where it
// can, the place in it.
type Error struct {
	File string
	Msg  string
}

func (e *Error) Error() string { return e.File + ": " + e.Msg }

// MaxSize bounds a report (64 MiB).
const MaxSize = 64 << 20

// Parse reads a report of a format; name is the file's name for errors.
// The findings come back fingerprinted.
func Parse(format, name string, data []byte) ([]Finding, error) {
	if len(data) > MaxSize {
		return nil, &Error{File: name, Msg: fmt.Sprintf("report of %d bytes is over the %d MiB limit", len(data), MaxSize>>20)}
	}
	data, err := toUTF8(data)
	if err != nil {
		return nil, &Error{File: name, Msg: err.Error()}
	}
	var fs []Finding
	switch format {
	case "sarif":
		fs, err = parseSARIF(data)
	case "flake8":
		fs, err = parseFlake8(data)
	case "checkstyle":
		fs, err = parseCheckstyle(data)
	case "golangci_lint":
		fs, err = parseGolangci(data)
	default:
		return nil, &Error{File: name, Msg: fmt.Sprintf("unknown report format %q (want %s)", format, strings.Join(Formats, ", "))}
	}
	if err != nil {
		return nil, &Error{File: name, Msg: err.Error()}
	}
	Fingerprint(fs)
	return fs, nil
}

// toUTF8 strips a UTF-8 byte order mark and decodes UTF-16 with one (some
// Windows tools write it).
func toUTF8(data []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(data, []byte{0xEF, 0xBB, 0xBF}):
		return data[3:], nil
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}), bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		var order binary.ByteOrder = binary.LittleEndian
		if data[0] == 0xFE {
			order = binary.BigEndian
		}
		data = data[2:]
		if len(data)%2 != 0 {
			return nil, fmt.Errorf("UTF-16 text with an odd number of bytes")
		}
		u := make([]uint16, len(data)/2)
		for i := range u {
			u[i] = order.Uint16(data[2*i:])
		}
		return []byte(string(utf16.Decode(u))), nil
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("not UTF-8 text (nor UTF-16 with a byte order mark)")
	}
	return data, nil
}

// Fingerprint sets every finding's fingerprint (see the package comment).
func Fingerprint(fs []Finding) {
	type keyed struct {
		key  string
		line int
		i    int
	}
	ks := make([]keyed, len(fs))
	var b strings.Builder
	for i := range fs {
		f := &fs[i]
		b.Reset()
		b.WriteString(f.Tool)
		b.WriteByte(0)
		b.WriteString(f.Rule)
		b.WriteByte(0)
		if len(f.Partial) > 0 {
			for _, k := range sortedKeys(f.Partial) {
				b.WriteString(k)
				b.WriteByte('=')
				b.WriteString(f.Partial[k])
				b.WriteByte(0)
			}
		} else {
			b.WriteString(f.Path)
			b.WriteByte(0)
			foldDigits(&b, f.Message)
			b.WriteByte(0)
			b.WriteString(strings.Join(strings.Fields(f.Snippet), " "))
		}
		ks[i] = keyed{key: b.String(), line: f.Line, i: i}
	}
	// The rank among identical keys, in line order, tells twins apart.
	order := make([]int, len(ks))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if c := strings.Compare(ks[a].key, ks[b].key); c != 0 {
			return c
		}
		return ks[a].line - ks[b].line
	})
	rank := 0
	for j, i := range order {
		if j > 0 && ks[order[j-1]].key == ks[i].key {
			rank++
		} else {
			rank = 0
		}
		h := fnv.New64a()
		h.Write([]byte(ks[i].key))
		var r [4]byte
		binary.LittleEndian.PutUint32(r[:], uint32(rank))
		h.Write(r[:])
		fs[i].Fingerprint = h.Sum64()
	}
}

func foldDigits(b *strings.Builder, s string) {
	inDigits := false
	for _, r := range strings.Join(strings.Fields(s), " ") {
		if r >= '0' && r <= '9' {
			if !inDigits {
				b.WriteByte('#')
			}
			inDigits = true
			continue
		}
		inDigits = false
		b.WriteRune(r)
	}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Base is the set of fingerprints of a base analysis.
type Base map[uint64]struct{}

// NewBase makes a base from fingerprints.
func NewBase(fps []uint64) Base {
	b := make(Base, len(fps))
	for _, fp := range fps {
		b[fp] = struct{}{}
	}
	return b
}

// IsNew says whether a finding is absent from the base.
func (b Base) IsNew(f *Finding) bool {
	_, ok := b[f.Fingerprint]
	return !ok
}

// EncodeFingerprints packs fingerprints and levels for storage: 9 bytes a
// finding (8 of fingerprint, 1 of level).
func EncodeFingerprints(fs []Finding) []byte {
	out := make([]byte, 0, 9*len(fs))
	for i := range fs {
		out = binary.LittleEndian.AppendUint64(out, fs[i].Fingerprint)
		out = append(out, levelCode(fs[i].Level))
	}
	return out
}

// Packed is one stored finding: fingerprint and level.
type Packed struct {
	Fingerprint uint64
	Level       string
}

// DecodeFingerprints reverses EncodeFingerprints.
func DecodeFingerprints(data []byte) ([]Packed, error) {
	if len(data)%9 != 0 {
		return nil, fmt.Errorf("fingerprints: %d bytes is not a multiple of 9", len(data))
	}
	out := make([]Packed, len(data)/9)
	for i := range out {
		out[i] = Packed{Fingerprint: binary.LittleEndian.Uint64(data[9*i:]), Level: levelName(data[9*i+8])}
	}
	return out, nil
}

func levelCode(l string) byte {
	switch l {
	case LevelError:
		return 1
	case LevelWarning:
		return 2
	}
	return 3
}

func levelName(c byte) string {
	switch c {
	case 1:
		return LevelError
	case 2:
		return LevelWarning
	}
	return LevelNote
}
