package backend

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"unicode/utf8"
)

// scanLines reads r line by line and calls emit with each line's text: no
// trailing "\n" or "\r\n", at most MaxLineBytes long (longer lines are cut,
// preferably on a rune boundary), and a last line without newline included.
// It returns when r returns EOF or an error.
func scanLines(r io.Reader, emit func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineBytes+2)
	sc.Split(splitLines)
	for sc.Scan() {
		emit(string(sc.Bytes()))
	}
}

func splitLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		if line := bytes.TrimSuffix(data[:i], []byte{'\r'}); len(line) <= MaxLineBytes {
			return i + 1, line, nil
		}
		return cutLine(data)
	}
	// The buffer holds MaxLineBytes+2: enough to see the "\r\n" after a
	// line of exactly MaxLineBytes.
	if len(data) >= MaxLineBytes+2 || atEOF && len(data) > MaxLineBytes {
		return cutLine(data)
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// cutLine returns the first MaxLineBytes of an overlong line, or less if that
// would cut a rune in half.
func cutLine(data []byte) (advance int, token []byte, err error) {
	cut := MaxLineBytes
	for j := cut - 1; j >= cut-utf8.UTFMax+1; j-- {
		if utf8.RuneStart(data[j]) {
			if !utf8.FullRune(data[j:cut]) {
				cut = j
			}
			break
		}
	}
	return cut, data[:cut], nil
}

// cleanText makes a masked line safe to send: valid UTF-8.
func cleanText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
