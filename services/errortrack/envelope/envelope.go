// Package envelope reads Sentry envelopes: one JSON header line, then items,
// each a JSON header line and a payload whose length is given by the item
// header's "length" or, without one, runs to the next newline. It also
// undoes the Content-Encodings SDKs use, with a cap on the decoded size.
//
// Format: https://develop.sentry.dev/sdk/data-model/envelopes/ (see
// docs/research/sentry.md §1.4 in the shared docs).
package envelope

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Limits bound an envelope's contents. A zero field takes its default.
type Limits struct {
	// Event bounds an event or transaction item (default 1 MiB, Relay's).
	Event int
	// Attachment bounds one attachment (default 100 MiB, Relay's
	// max_attachment_size).
	Attachment int
	// AttachmentsSize bounds all attachments of one envelope together
	// (default 100 MiB, Relay's max_attachments_size).
	AttachmentsSize int
	// Attachments bounds how many attachments one envelope carries (default 30).
	Attachments int
	// Session bounds a session or sessions item (default 1 MiB).
	Session int
	// Sessions bounds the session updates of one envelope (default 100).
	Sessions int
	// Small bounds check_in and client_report items (default 100 KiB).
	Small int
	// Other bounds any other item (default 10 MiB).
	Other int
}

// DefaultLimits are Relay's defaults (relay-config Limits::default:
// max_event_size 1 MiB, max_attachment_size and max_attachments_size
// 100 MiB, max_session_count 100).
var DefaultLimits = Limits{Event: 1 << 20, Attachment: 100 << 20, AttachmentsSize: 100 << 20, Attachments: 30, Session: 1 << 20, Sessions: 100, Small: 100 << 10, Other: 10 << 20}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.Event > 0 {
		d.Event = l.Event
	}
	if l.Attachment > 0 {
		d.Attachment = l.Attachment
	}
	if l.Attachments > 0 {
		d.Attachments = l.Attachments
	}
	if l.AttachmentsSize > 0 {
		d.AttachmentsSize = l.AttachmentsSize
	}
	if l.Session > 0 {
		d.Session = l.Session
	}
	if l.Sessions > 0 {
		d.Sessions = l.Sessions
	}
	if l.Small > 0 {
		d.Small = l.Small
	}
	if l.Other > 0 {
		d.Other = l.Other
	}
	return d
}

// Header is the envelope header. Unknown attributes are kept in Raw.
type Header struct {
	EventID string `json:"event_id,omitempty"`
	DSN     string `json:"dsn,omitempty"`
	SentAt  string `json:"sent_at,omitempty"`
	SDK     struct {
		Name    string `json:"name,omitempty"`
		Version string `json:"version,omitempty"`
	} `json:"sdk"`
	Raw json.RawMessage `json:"-"`
}

// Item is one item: its header and payload.
type Item struct {
	Type           string `json:"type"`
	Length         *int64 `json:"length,omitempty"`
	Filename       string `json:"filename,omitempty"`
	ContentType    string `json:"content_type,omitempty"`
	AttachmentType string `json:"attachment_type,omitempty"`
	ItemCount      int    `json:"item_count,omitempty"`
	// RawHeader is the header line as sent.
	RawHeader json.RawMessage `json:"-"`
	Payload   []byte          `json:"-"`
}

// Envelope is a parsed envelope.
type Envelope struct {
	Header Header
	Items  []Item
}

// Error is a malformed envelope: the client sent something this server will
// never accept. Too is set when a size limit was passed (HTTP 413).
type Error struct {
	Msg string
	Too bool
}

func (e *Error) Error() string { return e.Msg }

func bad(format string, a ...any) error { return &Error{Msg: fmt.Sprintf(format, a...)} }

func tooBig(format string, a ...any) error {
	return &Error{Msg: fmt.Sprintf(format, a...), Too: true}
}

// IsTooLarge reports whether err is a size-limit error.
func IsTooLarge(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Too
}

// eventIDPattern accepts a UUID with or without dashes (SDKs send both).
var eventIDPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// NormalizeEventID returns the 32 lowercase hex digits of a UUID, or false.
func NormalizeEventID(id string) (string, bool) {
	if !eventIDPattern.MatchString(id) {
		return "", false
	}
	return strings.ToLower(strings.ReplaceAll(id, "-", "")), true
}

// EventID turns an SDK's event id into 32 lowercase hex digits: a UUID as
// is, anything else (some SDKs send "js-event-1") hashed to a stable id,
// so a resent event still deduplicates; "" stays "".
func EventID(id string) string {
	if id == "" {
		return ""
	}
	if n, ok := NormalizeEventID(id); ok {
		return n
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:16])
}

// Parse reads a whole envelope and checks it against limits: at most one
// event, event and transaction exclusive, item sizes. An envelope may be
// just its header.
func Parse(data []byte, limits Limits) (*Envelope, error) {
	limits = limits.withDefaults()
	line, rest, _ := bytes.Cut(data, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(bytes.TrimSpace(line)) == 0 {
		return nil, bad("envelope header: missing (the first line must be a JSON object)")
	}
	env := &Envelope{}
	if err := json.Unmarshal(line, &env.Header); err != nil {
		return nil, bad("envelope header: invalid JSON: %v", err)
	}
	if bytes.TrimSpace(line)[0] != '{' {
		return nil, bad("envelope header: must be a JSON object")
	}
	env.Header.Raw = append(json.RawMessage(nil), line...)
	// A non-UUID event_id is kept as sent: the caller decides (see EventID).
	var events, transactions, attachments, sessions, attachmentBytes int
	for n := 1; len(rest) > 0; n++ {
		// Blank lines between items are tolerated (a trailing newline is common).
		if rest[0] == '\n' {
			rest = rest[1:]
			continue
		}
		if rest[0] == '\r' && len(rest) > 1 && rest[1] == '\n' {
			rest = rest[2:]
			continue
		}
		hdr, after, found := bytes.Cut(rest, []byte("\n"))
		if !found {
			return nil, bad("item %d: header without a payload", n)
		}
		var it Item
		if err := json.Unmarshal(hdr, &it); err != nil {
			return nil, bad("item %d header: invalid JSON: %v", n, err)
		}
		if it.Type == "" {
			return nil, bad("item %d header: missing type", n)
		}
		it.RawHeader = append(json.RawMessage(nil), hdr...)
		if it.Length != nil {
			l := *it.Length
			if l < 0 {
				return nil, bad("item %d (%s): negative length %d", n, it.Type, l)
			}
			if l > int64(len(after)) {
				return nil, bad("item %d (%s): length %d runs past the end of the envelope (%d bytes left)", n, it.Type, l, len(after))
			}
			it.Payload = after[:l]
			rest = after[l:]
			if len(rest) > 0 {
				if rest[0] != '\n' {
					return nil, bad("item %d (%s): payload of length %d is not followed by a newline", n, it.Type, l)
				}
				rest = rest[1:]
			}
		} else {
			p, r, _ := bytes.Cut(after, []byte("\n"))
			it.Payload, rest = p, r
		}
		if max := limits.forType(it.Type); len(it.Payload) > max {
			return nil, tooBig("item %d (%s): %d bytes is over the %d byte limit for this type", n, it.Type, len(it.Payload), max)
		}
		switch it.Type {
		case "event":
			events++
		case "transaction":
			transactions++
		case "attachment":
			attachments++
			attachmentBytes += len(it.Payload)
			if it.Filename == "" {
				it.Filename = "attachment"
			}
		case "session":
			sessions++
		}
		env.Items = append(env.Items, it)
	}
	switch {
	case events > 1:
		return nil, bad("envelope has %d event items; at most one is allowed", events)
	case transactions > 1:
		return nil, bad("envelope has %d transaction items; at most one is allowed", transactions)
	case events > 0 && transactions > 0:
		return nil, bad("envelope has both an event and a transaction")
	case attachmentBytes > limits.AttachmentsSize:
		return nil, tooBig("envelope's attachments are %d bytes together; at most %d are allowed", attachmentBytes, limits.AttachmentsSize)
	case attachments > limits.Attachments:
		return nil, tooBig("envelope has %d attachments; at most %d are allowed", attachments, limits.Attachments)
	case sessions > limits.Sessions:
		return nil, tooBig("envelope has %d session updates; at most %d are allowed", sessions, limits.Sessions)
	}
	return env, nil
}

func (l Limits) forType(t string) int {
	switch t {
	case "event", "transaction", "security", "raw_security", "user_report", "feedback":
		return l.Event
	case "attachment":
		return l.Attachment
	case "session", "sessions":
		return l.Session
	case "check_in", "client_report":
		return l.Small
	}
	return l.Other
}

// Encode writes an envelope back in the wire format, every item with an
// explicit length.
func Encode(header []byte, items []Item) []byte {
	var b bytes.Buffer
	if len(header) == 0 {
		header = []byte("{}")
	}
	b.Write(header)
	b.WriteByte('\n')
	for _, it := range items {
		h := map[string]any{}
		if len(it.RawHeader) > 0 {
			_ = json.Unmarshal(it.RawHeader, &h)
		}
		h["type"] = it.Type
		h["length"] = len(it.Payload)
		hb, _ := json.Marshal(h)
		b.Write(hb)
		b.WriteByte('\n')
		b.Write(it.Payload)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// EventItem returns the envelope's event or transaction item, or nil.
func (e *Envelope) EventItem() *Item {
	for i := range e.Items {
		if t := e.Items[i].Type; t == "event" || t == "transaction" {
			return &e.Items[i]
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
