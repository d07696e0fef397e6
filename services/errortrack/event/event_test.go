package event

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shiploop/shiploop/pkg/testfixture"
	"github.com/shiploop/shiploop/services/errortrack/envelope"
)

const fixtures = "../../../../shared/testdata/sentry"

// TestFixtureEvents: every event fixture parses into something with a
// title and at least one hash.
func TestFixtureEvents(t *testing.T) {
	var files []string
	for _, g := range []string{"glitchtip/incoming_events/*.json", "glitchtip/oss_sentry_events/*.json", "glitchtip/misc/*.json", "sentry-go/json/event/*.json", "sentry-go/json/transaction/*.json", "relay/*.json"} {
		m, _ := filepath.Glob(filepath.Join(fixtures, g))
		files = append(files, m...)
	}
	if len(files) < 10 {
		testfixture.Missing(t, "shared Sentry fixtures not found in %s", fixtures)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "transaction_django_simple.json") {
			continue // an envelope as a JSON array: see the envelope tests
		}
		t.Run(strings.TrimPrefix(f, fixtures+"/"), func(t *testing.T) {
			data, _ := os.ReadFile(f)
			ev, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			g := Group(ev)
			if g.Title == "" || len(g.Hashes) == 0 {
				t.Errorf("title %q hashes %v", g.Title, g.Hashes)
			}
		})
	}
}

// captured returns the event item of a captured envelope.
func captured(t *testing.T, rel string) *Event {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures, "captured", rel))
	if err != nil {
		testfixture.Missing(t, "fixture: %v", err)
	}
	env, err := envelope.Parse(data, envelope.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := Parse(env.EventItem().Payload)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestCapturedShapes(t *testing.T) {
	ev := captured(t, "sentry-go-0.50.0/01_error_chained.envelope")
	g := Group(ev)
	if len(ev.Exceptions) != 2 || g.Title != "*fmt.wrapError: wrapping: my error code 42" || g.Basis != "stacktrace" || ev.Release != "myapp@1.2.3" || ev.User.Key() != "id:u1" {
		t.Errorf("go chained: %+v %+v", ev, g)
	}
	if g.Culprit != "main in main" || len(g.Files) != 1 || g.Files[0] != "/tmp/capture/client/main.go" {
		t.Errorf("culprit %q files %v", g.Culprit, g.Files)
	}
	msg := captured(t, "sentry-go-0.50.0/02_message_attach_stacktrace.envelope")
	if msg.Type != "default" || len(msg.Threads) == 0 || Group(msg).Basis != "stacktrace" {
		t.Errorf("go message: %+v", msg)
	}
	fp := captured(t, "sentry-go-0.50.0/03_error_fingerprint_default.envelope")
	if g := Group(fp); g.Basis != "fingerprint" || len(fp.Fingerprint) != 2 {
		t.Errorf("fingerprint: %+v", g)
	}
	node := captured(t, "sentry-node-11.12.0/010_event_message.envelope")
	if g := Group(node); !node.Exceptions[0].Synthetic || g.Title != "hello from sentry node" {
		t.Errorf("node message: %q", g.Title)
	}
	chained := captured(t, "sentry-node-11.12.0/007_event_chained_exception.envelope")
	if g := Group(chained); len(chained.Exceptions) != 2 || g.Title != "Error: outer wrapper" || len(g.Hashes) != 2 {
		t.Errorf("node chained: %q %v", g.Title, g.Hashes)
	}
}

func mk(json string) *Event {
	ev, err := Parse([]byte(json))
	if err != nil {
		panic(err)
	}
	return ev
}

func same(a, b Grouping) bool {
	for _, x := range a.Hashes {
		for _, y := range b.Hashes {
			if x == y {
				return true
			}
		}
	}
	return false
}

// TestGrouping: what groups together and what splits.
func TestGrouping(t *testing.T) {
	stack := func(fn, value string, inApp bool) string {
		in := "false"
		if inApp {
			in = "true"
		}
		return `{"platform":"go","exception":[{"type":"*errors.errorString","value":"` + value + `","stacktrace":{"frames":[
			{"function":"main","module":"main","abs_path":"/src/main.go","lineno":3,"in_app":true},
			{"function":"` + fn + `","module":"app/store","abs_path":"/src/store/db.go","lineno":10,"in_app":` + in + `},
			{"function":"Query","module":"database/sql","abs_path":"/usr/local/go/src/database/sql/sql.go","lineno":99,"in_app":true}]}}]}`
	}
	cases := []struct {
		name       string
		a, b       string
		wantSame   bool
		wantBasisA string
	}{
		{"same stack, different value", stack("Get", "user 1 missing", true), stack("Get", "user 2 missing", true), true, "stacktrace"},
		{"different in-app function", stack("Get", "x", true), stack("Put", "x", true), false, "stacktrace"},
		{"line numbers do not matter", strings.Replace(stack("Get", "x", true), `"lineno":10`, `"lineno":11`, 1), stack("Get", "x", true), true, "stacktrace"},
		{"value numbers normalised without a stack", `{"exception":{"values":[{"type":"KeyError","value":"id 42 at 10.0.0.1"}]}}`, `{"exception":{"values":[{"type":"KeyError","value":"id 7 at 10.0.0.2"}]}}`, true, "exception"},
		{"different types without a stack", `{"exception":[{"type":"A","value":"v"}]}`, `{"exception":[{"type":"B","value":"v"}]}`, false, "exception"},
		{"messages normalised", `{"message":"timeout after 30s talking to db-7f3a9c1b"}`, `{"logentry":{"message":"timeout after 45s talking to db-e2d4b8a0"}}`, true, "message"},
		{"logentry template groups", `{"logentry":{"message":"user %s failed","formatted":"user bob failed"}}`, `{"logentry":{"message":"user %s failed","formatted":"user alice failed"}}`, true, "message"},
		{"fingerprint replaces", `{"message":"a","fingerprint":["db-down"]}`, `{"message":"b","fingerprint":["db-down"]}`, true, "fingerprint"},
		{"fingerprint with default subdivides", `{"message":"a","fingerprint":["{{ default }}","x"]}`, `{"message":"a","fingerprint":["{{ default }}","y"]}`, false, "fingerprint"},
		{"fingerprint variables", `{"message":"a","fingerprint":["{{ level }}"],"level":"warning"}`, `{"message":"b","fingerprint":["{{ level }}"],"level":"warning"}`, true, "fingerprint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ga, gb := Group(mk(c.a)), Group(mk(c.b))
			if same(ga, gb) != c.wantSame {
				t.Errorf("same = %v, want %v (%v vs %v)", !c.wantSame, c.wantSame, ga.Hashes, gb.Hashes)
			}
			if ga.Basis != c.wantBasisA {
				t.Errorf("basis %q, want %q", ga.Basis, c.wantBasisA)
			}
		})
	}
	// An out-of-app change (a library frame) keeps the app hash, so the
	// event still joins its issue; the system hash differs.
	a, b := Group(mk(stack("Get", "x", true))), Group(mk(strings.Replace(stack("Get", "x", true), `"function":"Query"`, `"function":"QueryContext"`, 1)))
	if a.Hashes[0] != b.Hashes[0] || a.Hashes[1] == b.Hashes[1] {
		t.Errorf("app/system hashes: %v vs %v", a.Hashes, b.Hashes)
	}
}

func TestNormalizeMessage(t *testing.T) {
	for in, want := range map[string]string{
		"user 42 not found": "user <int> not found",
		"took 1.5s":         "took <float>s",
		"id 550e8400-e29b-41d4-a716-446655440000 gone":        "id <uuid> gone",
		"connect 10.1.2.3:5432 refused":                       "connect <ip> refused",
		"open /var/lib/app/data.db: no such file":             "open <path>: no such file",
		"sha deadbeef12 and 0xff00":                           "sha <hex> and <hex>",
		"mail bob@example.com at https://x.example/a?b=1 now": "mail <email> at <url> now",
		"plain words stay":                                    "plain words stay",
	} {
		if got := NormalizeMessage(in); got != want {
			t.Errorf("NormalizeMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestNormalizeMessageSkipsOnlyWhatCannotMatch: NormalizeMessage skips a
// pattern when a cheap test says it cannot match; the result must equal
// running every pattern, over messages built from pieces each pattern
// matches or nearly matches, and every message of the shared fixtures.
func TestNormalizeMessageSkipsOnlyWhatCannotMatch(t *testing.T) {
	all := func(s string) string {
		for i, n := range normalizers {
			s = n.re.ReplaceAllString(s, n.repl)
			if i == hexAfter {
				s = hexWord.ReplaceAllStringFunc(s, func(w string) string {
					if strings.ContainsAny(w, "0123456789") && strings.ContainsAny(strings.ToLower(w), "abcdef") {
						return "<hex>"
					}
					return w
				})
			}
		}
		return s
	}
	pieces := []string{"", "user", "42", "1.5", "-3", "0xFF", "0Xab", "x0", "deadbeef12", "abcdef", "ABCDEF0123456789abcdef0123456789",
		"550e8400-e29b-41d4-a716-446655440000", "550E8400E29B41D4A716446655440000", "2026-11-26", "2026-11-26T06:40:01.5+01:00",
		"10.1.2.3:5432", "fe80::1:2", "a:b:c", "/var/lib/x.db", `C:\Users\a`, "a/b", "bob@example.com", "a@b", "https://x.example/a?b=1",
		"s3://b", "é", "\u212a", "ſ", "\x00", "..", "::", "@", "//", `\\`}
	var msgs []string
	for _, a := range pieces {
		for _, b := range pieces {
			for _, sep := range []string{" ", "", ":", "."} {
				msgs = append(msgs, a+sep+b)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(fixtures, "*/*/*.json"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if ev, err := Parse(data); err == nil {
			msgs = append(msgs, ev.Message, ev.Formatted)
			for _, ex := range ev.Exceptions {
				msgs = append(msgs, ex.Value)
			}
		}
	}
	if len(files) == 0 {
		t.Logf("shared fixtures not found in %s: built messages only", fixtures)
	}
	for _, m := range msgs {
		if got, want := NormalizeMessage(m), all(m); got != want {
			t.Errorf("NormalizeMessage(%q) = %q, every pattern gives %q", m, got, want)
		}
	}
}

func TestParseLenient(t *testing.T) {
	ev, err := Parse([]byte(`{"timestamp":1700000000.5,"level":"ERROR","release":123,"tags":[["a","b"]],"user":{"id":7},"extra":{"x":NaN}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Timestamp.Unix() != 1700000000 || ev.Level != "error" || ev.Release != "123" || ev.Tags["a"] != "b" || ev.User.ID != "7" {
		t.Errorf("%+v", ev)
	}
	for _, bad := range []string{"", "[]", "nope", `{"a":`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if s := Clean("a\x00b"+string([]byte{0xff}), 0); bytes.ContainsRune([]byte(s), 0) || s != "ab\uFFFD" {
		t.Errorf("Clean = %q", s)
	}
}

// FuzzParse: an event payload never panics the parser or the grouping,
// and an event it accepts always gets a title and at least one hash (the
// issue it is counted under).
func FuzzParse(f *testing.F) {
	for _, g := range []string{"glitchtip/incoming_events/*.json", "glitchtip/oss_sentry_events/*.json", "glitchtip/misc/*.json"} {
		m, _ := filepath.Glob(filepath.Join(fixtures, g))
		for _, p := range m {
			// Seeds up to 8 KiB (20 of the 45 fixtures): each input costs
			// its size in JSON scanning, and the larger events add depth of
			// the same shapes, not new ones.
			if b, err := os.ReadFile(p); err == nil && len(b) <= 8<<10 {
				f.Add(b)
			}
		}
	}
	f.Add([]byte(`{"exception":{"values":[{"type":"E","value":"v","stacktrace":{"frames":[{"function":"f","in_app":true}]}}]},"timestamp":1.5e9}`))
	f.Add([]byte(`{"message":{"formatted":"a %s","params":["b"]},"fingerprint":["{{ default }}","x"],"tags":[["a","b"]]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := Parse(data)
		if err != nil {
			return
		}
		g := Group(ev)
		if g.Title == "" || len(g.Hashes) == 0 {
			t.Fatalf("accepted %q without a title or hash: %+v", data, g)
		}
	})
}
