package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// watchFilters are `shiploop watch`'s client-side filters and colouring.
type watchFilters struct {
	chain  string
	env    string
	color  string
	colour bool
}

func (w *watchFilters) flags(c *command) {
	c.flags.StringVar(&w.chain, "chain", "", "only events of this change (its chain id, the id of the change.* event)")
	c.flags.StringVar(&w.env, "env", "", "only events about this environment (deploys, environments, issues)")
	c.flags.StringVar(&w.color, "color", "auto", "colour: auto (when stdout is a terminal), always or never")
}

// prepare checks the flags, decides on colour and, for --chain without
// --since, replays from the change's own time (chain ids are UUIDv7, which
// carry it).
func (w *watchFilters) prepare(c *command, since *time.Time) error {
	switch w.color {
	case "always":
		w.colour = true
	case "never":
		w.colour = false
	case "auto", "":
		w.colour = isTerminal(c.stdout) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
	default:
		return usagef("--color %q: want auto, always or never", w.color)
	}
	if w.chain != "" && since.IsZero() {
		id, err := uuid.Parse(w.chain)
		if err != nil {
			return usagef("--chain %q is not an event id: use the id of a change.* event (shiploop watch --json shows it)", w.chain)
		}
		if id.Version() == 7 {
			sec, nsec := id.Time().UnixTime()
			*since = time.Unix(sec, nsec).Add(-time.Second)
		} else {
			*since = time.Now().Add(-30 * 24 * time.Hour) // the EVENTS retention
		}
	}
	return nil
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (w *watchFilters) match(ev *eventsv1.Event) bool {
	if w.chain != "" && ev.GetChainId() != w.chain && ev.GetId() != w.chain {
		return false
	}
	if w.env != "" && eventEnvironment(ev) != w.env {
		return false
	}
	return true
}

// eventEnvironment finds the environment an event is about: a string field
// "environment" at the top of the payload or in its "deploy" reference.
func eventEnvironment(ev *eventsv1.Event) string {
	if ev.GetData() == nil {
		return ""
	}
	m, err := ev.GetData().UnmarshalNew()
	if err != nil {
		return ""
	}
	return envField(m, 0)
}

func envField(m proto.Message, depth int) string {
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	if f := fields.ByName("environment"); f != nil && f.Kind() == protoreflect.StringKind && !f.IsList() {
		if v := r.Get(f).String(); v != "" {
			return v
		}
	}
	if depth > 0 {
		return ""
	}
	for _, name := range []protoreflect.Name{"deploy", "deployment"} {
		if f := fields.ByName(name); f != nil && f.Kind() == protoreflect.MessageKind && !f.IsList() && r.Has(f) {
			if v := envField(r.Get(f).Message().Interface(), depth+1); v != "" {
				return v
			}
		}
	}
	return ""
}

// paint colours a line by what the event says: red for failures, green for
// successes, yellow for starts and waits.
func (w *watchFilters) paint(ev *eventsv1.Event, line string) string {
	if !w.colour {
		return line
	}
	typ := strings.TrimSuffix(strings.TrimPrefix(ev.GetType(), "dev.shiploop."), ".v1")
	lower := strings.ToLower(line)
	code := ""
	switch {
	case strings.Contains(lower, "fail") || strings.Contains(lower, "error") || strings.Contains(typ, "rolled_back") || strings.Contains(typ, "regressed") || strings.Contains(typ, "issue.opened"):
		code = "31"
	case strings.Contains(lower, "success") || strings.Contains(lower, "passed") || strings.Contains(lower, "succeeded") || strings.Contains(typ, "resolved"):
		code = "32"
	case strings.HasSuffix(typ, ".started") || strings.HasSuffix(typ, ".queued") || strings.HasSuffix(typ, ".pending") || strings.HasSuffix(typ, ".created"):
		code = "33"
	case strings.HasPrefix(typ, "change."):
		code = "36"
	}
	if code == "" {
		return line
	}
	return fmt.Sprintf("\x1b[%sm%s\x1b[0m", code, line)
}
