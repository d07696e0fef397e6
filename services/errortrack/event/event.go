// Package event reads the Sentry event payload as SDKs send it, in all its
// historical shapes, into one normalised form, and computes its grouping:
// the hashes that decide which issue an event belongs to, its title and its
// culprit.
package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Event is the part of a Sentry event shiploop reads.
type Event struct {
	EventID     string
	Type        string // "error", "default" (a message) or "transaction"
	Timestamp   time.Time
	Level       string
	Platform    string
	Logger      string
	Transaction string
	Release     string
	Environment string
	ServerName  string
	Culprit     string
	Message     string      // the message template (logentry.message) or text
	Formatted   string      // the formatted message, when it differs
	Exceptions  []Exception // oldest cause first, as SDKs send them
	Threads     []Stacktrace
	Stacktrace  *Stacktrace
	Fingerprint []string
	Tags        map[string]string
	User        User
	SDKName     string
}

// Exception is one exception of a chain.
type Exception struct {
	Type       string
	Value      string
	Module     string
	Synthetic  bool
	Stacktrace *Stacktrace
}

// Stacktrace is a list of frames, outermost (caller) first.
type Stacktrace struct {
	Frames []Frame
}

// Frame is one stack frame.
type Frame struct {
	Function    string
	Module      string
	Filename    string
	AbsPath     string
	Package     string
	Lineno      int
	ContextLine string
	InApp       *bool
	Platform    string
}

// User is who saw the error.
type User struct {
	ID, Email, Username, IPAddress string
}

// Key identifies the user for counting: id, else email, username, IP.
func (u User) Key() string {
	switch {
	case u.ID != "":
		return "id:" + u.ID
	case u.Email != "":
		return "email:" + u.Email
	case u.Username != "":
		return "username:" + u.Username
	case u.IPAddress != "":
		return "ip:" + u.IPAddress
	}
	return ""
}

// wire is the JSON as SDKs send it; polymorphic fields stay raw.
type wire struct {
	EventID     string          `json:"event_id"`
	Type        string          `json:"type"`
	Timestamp   json.RawMessage `json:"timestamp"`
	Level       string          `json:"level"`
	Platform    string          `json:"platform"`
	Logger      string          `json:"logger"`
	Transaction string          `json:"transaction"`
	Release     json.RawMessage `json:"release"`
	Environment string          `json:"environment"`
	ServerName  string          `json:"server_name"`
	Culprit     string          `json:"culprit"`
	Message     json.RawMessage `json:"message"`
	LogEntry    json.RawMessage `json:"logentry"`
	LogEntryOld json.RawMessage `json:"sentry.interfaces.Message"`
	Exception   json.RawMessage `json:"exception"`
	ExcOld      json.RawMessage `json:"sentry.interfaces.Exception"`
	Threads     json.RawMessage `json:"threads"`
	Stacktrace  json.RawMessage `json:"stacktrace"`
	Fingerprint []any           `json:"fingerprint"`
	Tags        json.RawMessage `json:"tags"`
	User        json.RawMessage `json:"user"`
	SDK         struct {
		Name string `json:"name"`
	} `json:"sdk"`
}

type wireException struct {
	Type       string          `json:"type"`
	Value      json.RawMessage `json:"value"`
	Module     string          `json:"module"`
	Stacktrace *wireStack      `json:"stacktrace"`
	Mechanism  *struct {
		Type      string `json:"type"`
		Synthetic bool   `json:"synthetic"`
	} `json:"mechanism"`
}

type wireStack struct {
	Frames []wireFrame `json:"frames"`
}

type wireFrame struct {
	Function    string          `json:"function"`
	Module      string          `json:"module"`
	Filename    string          `json:"filename"`
	AbsPath     string          `json:"abs_path"`
	Package     string          `json:"package"`
	Lineno      json.RawMessage `json:"lineno"`
	ContextLine string          `json:"context_line"`
	InApp       *bool           `json:"in_app"`
	Platform    string          `json:"platform"`
}

// Parse reads an event payload. It fails only when the payload is not a
// JSON object; odd fields are read leniently, as Relay does.
func Parse(data []byte) (*Event, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, fmt.Errorf("event: not a JSON object")
	}
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		cleaned, ok := cleanNonFinite(data)
		if !ok {
			return nil, fmt.Errorf("event: invalid JSON: %v", err)
		}
		if err2 := json.Unmarshal(cleaned, &w); err2 != nil {
			return nil, fmt.Errorf("event: invalid JSON: %v", err)
		}
	}
	ev := &Event{
		EventID: w.EventID, Level: strings.ToLower(w.Level), Platform: w.Platform, Logger: w.Logger,
		Transaction: w.Transaction, Environment: w.Environment, ServerName: w.ServerName, Culprit: w.Culprit,
		SDKName: w.SDK.Name,
	}
	ev.Release = scalarString(w.Release)
	ev.Timestamp = parseTime(w.Timestamp)
	if ev.Level == "" {
		ev.Level = "error"
	}
	if ev.Platform == "" {
		ev.Platform = "other"
	}
	// message: a string, or an object like logentry.
	for _, raw := range []json.RawMessage{w.LogEntry, w.LogEntryOld, w.Message} {
		if ev.Message != "" {
			break
		}
		ev.Message, ev.Formatted = readMessage(raw)
	}
	excRaw := w.Exception
	if len(excRaw) == 0 {
		excRaw = w.ExcOld
	}
	for _, we := range readValues[wireException](excRaw) {
		ex := Exception{Type: we.Type, Value: scalarString(we.Value), Module: we.Module}
		if we.Mechanism != nil {
			ex.Synthetic = we.Mechanism.Synthetic
		}
		ex.Stacktrace = convertStack(we.Stacktrace)
		ev.Exceptions = append(ev.Exceptions, ex)
	}
	type wireThread struct {
		Stacktrace *wireStack `json:"stacktrace"`
		Current    bool       `json:"current"`
		Crashed    bool       `json:"crashed"`
	}
	for _, th := range readValues[wireThread](w.Threads) {
		if st := convertStack(th.Stacktrace); st != nil {
			if th.Current || th.Crashed {
				ev.Threads = append([]Stacktrace{*st}, ev.Threads...)
			} else {
				ev.Threads = append(ev.Threads, *st)
			}
		}
	}
	if len(w.Stacktrace) > 0 && w.Stacktrace[0] == '{' {
		var ws wireStack
		if json.Unmarshal(w.Stacktrace, &ws) == nil {
			ev.Stacktrace = convertStack(&ws)
		}
	}
	for _, f := range w.Fingerprint {
		switch v := f.(type) {
		case string:
			ev.Fingerprint = append(ev.Fingerprint, v)
		case float64:
			ev.Fingerprint = append(ev.Fingerprint, strconv.FormatFloat(v, 'f', -1, 64))
		case bool:
			ev.Fingerprint = append(ev.Fingerprint, strconv.FormatBool(v))
		}
	}
	ev.Tags = readTags(w.Tags)
	if len(w.User) > 0 && w.User[0] == '{' {
		var u struct {
			ID        json.RawMessage `json:"id"`
			Email     string          `json:"email"`
			Username  string          `json:"username"`
			IPAddress string          `json:"ip_address"`
		}
		if json.Unmarshal(w.User, &u) == nil {
			ev.User = User{ID: scalarString(u.ID), Email: u.Email, Username: u.Username, IPAddress: u.IPAddress}
		}
	}
	switch {
	case w.Type == "transaction":
		ev.Type = "transaction"
	case len(ev.Exceptions) > 0:
		ev.Type = "error"
	case w.Type == "csp" || w.Type == "expectct" || w.Type == "hpkp":
		ev.Type = w.Type
	default:
		ev.Type = "default"
	}
	return ev, nil
}

func convertStack(ws *wireStack) *Stacktrace {
	if ws == nil || len(ws.Frames) == 0 {
		return nil
	}
	st := &Stacktrace{Frames: make([]Frame, 0, len(ws.Frames))}
	for _, f := range ws.Frames {
		line, _ := strconv.Atoi(strings.Trim(string(f.Lineno), `"`))
		st.Frames = append(st.Frames, Frame{
			Function: f.Function, Module: f.Module, Filename: f.Filename, AbsPath: f.AbsPath, Package: f.Package,
			Lineno: line, ContextLine: f.ContextLine, InApp: f.InApp, Platform: f.Platform,
		})
	}
	return st
}

// readValues reads a list given bare or as {"values": [...]}.
func readValues[T any](raw json.RawMessage) []T {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	var out []T
	switch raw[0] {
	case '[':
		_ = json.Unmarshal(raw, &out)
	case '{':
		var v struct {
			Values []T `json:"values"`
		}
		if json.Unmarshal(raw, &v) == nil && v.Values != nil {
			return v.Values
		}
		// A single object (very old SDKs).
		var one T
		if json.Unmarshal(raw, &one) == nil {
			out = []T{one}
		}
	}
	return out
}

func readMessage(raw json.RawMessage) (msg, formatted string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", ""
	}
	if raw[0] == '"' {
		var s string
		_ = json.Unmarshal(raw, &s)
		return s, ""
	}
	var m struct {
		Message   string `json:"message"`
		Formatted string `json:"formatted"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return "", ""
	}
	if m.Message == "" {
		return m.Formatted, ""
	}
	if m.Formatted == m.Message {
		m.Formatted = ""
	}
	return m.Message, m.Formatted
}

func readTags(raw json.RawMessage) map[string]string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	tags := map[string]string{}
	switch raw[0] {
	case '{':
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) == nil {
			for k, v := range m {
				tags[k] = scalarString(v)
			}
		}
	case '[':
		var pairs [][]json.RawMessage
		if json.Unmarshal(raw, &pairs) == nil {
			for _, p := range pairs {
				if len(p) == 2 {
					tags[scalarString(p[0])] = scalarString(p[1])
				}
			}
		}
	}
	return tags
}

// scalarString turns a JSON string, number or bool into text.
func scalarString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	if raw[0] == '"' {
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	}
	if raw[0] == '{' || raw[0] == '[' {
		return ""
	}
	return string(raw)
}

// parseTime reads an RFC 3339 string or unix seconds (number or string).
func parseTime(raw json.RawMessage) time.Time {
	s := strings.Trim(string(bytes.TrimSpace(raw)), `"`)
	if s == "" || s == "null" {
		return time.Time{}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && f > 0 && f < 1e11 {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC()
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// cleanNonFinite replaces bare NaN, Infinity and -Infinity outside strings
// with null (Python SDKs send them); ok is false when there were none.
func cleanNonFinite(data []byte) ([]byte, bool) {
	// Most invalid payloads hold neither: do not copy them byte by byte.
	if !bytes.Contains(data, []byte("NaN")) && !bytes.Contains(data, []byte("Infinity")) {
		return nil, false
	}
	out := make([]byte, 0, len(data))
	inStr, esc, changed := false, false, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inStr {
			out = append(out, c)
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		if c == '"' {
			inStr = true
		}
		matched := false
		for _, tok := range []string{"-Infinity", "Infinity", "NaN"} {
			if bytes.HasPrefix(data[i:], []byte(tok)) {
				out = append(out, "null"...)
				i += len(tok) - 1
				matched, changed = true, true
				break
			}
		}
		if !matched {
			out = append(out, c)
		}
	}
	return out, changed
}

// Clean makes text safe for storage: valid UTF-8 without NUL bytes
// (PostgreSQL rejects both), at most max bytes.
func Clean(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if max > 0 && len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
