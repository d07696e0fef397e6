package envelope

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/shiploop/shiploop/pkg/testfixture"
)

// fixtures is the shared Sentry test data, read in place.
const fixtures = "../../../../shared/testdata/sentry"

func readFixture(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, rel))
	if err != nil {
		testfixture.Missing(t, "shared Sentry fixtures not found (%v): they live in ../shared/testdata/sentry beside the repo", err)
	}
	return b
}

// TestFixturesParse: every captured and third-party envelope parses, with
// explicit and implicit item lengths.
func TestFixturesParse(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(fixtures, "*", "*", "*.envelope"))
	more, _ := filepath.Glob(filepath.Join(fixtures, "*", "*.envelope"))
	files = append(files, more...)
	if len(files) < 20 {
		testfixture.Missing(t, "shared Sentry fixtures not found in %s", fixtures)
	}
	for _, f := range files {
		t.Run(strings.TrimPrefix(f, fixtures+"/"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			env, err := Parse(data, Limits{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(env.Items) == 0 {
				t.Fatalf("no items")
			}
			for _, it := range env.Items {
				if it.Type != "attachment" && !json.Valid(it.Payload) {
					t.Errorf("item %s: payload is not JSON: %q", it.Type, it.Payload)
				}
			}
			// Re-encoding (explicit lengths everywhere) gives the same items.
			again, err := Parse(Encode(env.Header.Raw, env.Items), Limits{})
			if err != nil || len(again.Items) != len(env.Items) {
				t.Fatalf("round trip: %v", err)
			}
			for i := range env.Items {
				if !bytes.Equal(again.Items[i].Payload, env.Items[i].Payload) {
					t.Errorf("item %d payload changed in the round trip", i)
				}
			}
		})
	}
}

// TestGlitchtipEnvelopes: GlitchTip keeps its envelopes as JSON arrays.
func TestGlitchtipEnvelopes(t *testing.T) {
	for _, name := range []string{"envelopes/django_message.json", "envelopes/js_angular_message.json", "misc/transaction_django_simple.json"} {
		raw := readFixture(t, "glitchtip/"+name)
		var parts []json.RawMessage
		if err := json.Unmarshal(raw, &parts); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		for _, p := range parts {
			var c bytes.Buffer
			_ = json.Compact(&c, p)
			b.Write(c.Bytes())
			b.WriteByte('\n')
		}
		env, err := Parse(b.Bytes(), Limits{})
		if err != nil || env.EventItem() == nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestEncodedFixtures(t *testing.T) {
	for _, c := range []struct{ file, enc string }{
		{"captured/encoded/node_big_event.envelope.gz", "gzip"},
		{"captured/encoded/go_error_chained.envelope.gz", "x-gzip"},
		{"captured/encoded/go_error_chained.envelope.deflate", "deflate"},
	} {
		body := readFixture(t, c.file)
		data, err := Decode(bytes.NewReader(body), c.enc, 20<<20)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if _, err := Parse(data, Limits{}); err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
	}
}

func compress(t testing.TB, enc string, data []byte) []byte {
	var b bytes.Buffer
	switch enc {
	case "gzip":
		w := gzip.NewWriter(&b)
		w.Write(data)
		w.Close()
	case "deflate":
		w := zlib.NewWriter(&b)
		w.Write(data)
		w.Close()
	case "br":
		w := brotli.NewWriter(&b)
		w.Write(data)
		w.Close()
	case "zstd":
		w, _ := zstd.NewWriter(&b)
		w.Write(data)
		w.Close()
	default:
		return data
	}
	return b.Bytes()
}

// TestDecode: each encoding round-trips, and a bomb stops at the cap.
func TestDecode(t *testing.T) {
	plain := []byte("{}\n{\"type\":\"event\"}\n{\"message\":\"x\"}\n")
	bomb := bytes.Repeat([]byte{'a'}, 64<<20)
	for _, enc := range []string{"", "gzip", "deflate", "br", "zstd"} {
		got, err := Decode(bytes.NewReader(compress(t, enc, plain)), enc, 1<<20)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: %q, %v", enc, got, err)
		}
		if enc == "" {
			continue
		}
		packed := compress(t, enc, bomb)
		if len(packed) > 1<<20 {
			t.Fatalf("%s: bomb is %d bytes compressed", enc, len(packed))
		}
		_, err = Decode(bytes.NewReader(packed), enc, 1<<20)
		if !IsTooLarge(err) {
			t.Errorf("%s bomb (%d bytes → 64 MiB): %v, want a size-limit error", enc, len(packed), err)
		}
	}
	if _, err := Decode(strings.NewReader("not gzip"), "gzip", 1<<20); err == nil || IsTooLarge(err) {
		t.Errorf("corrupt gzip: %v", err)
	}
}

// TestParseErrors: each malformed envelope gets a clear error, and sizes
// beyond a limit are marked too large.
func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, body, want string
		tooLarge         bool
	}{
		{"empty", "", "missing", false},
		{"header not JSON", "nope\n", "invalid JSON", false},
		{"header an array", "[1]\n", "invalid JSON", false},
		{"item header not JSON", "{}\n{type:event}\n{}\n", "item 1 header: invalid JSON", false},
		{"item without type", "{}\n{\"length\":2}\n{}\n", "missing type", false},
		{"length past the end", "{}\n{\"type\":\"event\",\"length\":100}\n{}\n", "runs past the end", false},
		{"length too short", "{}\n{\"type\":\"event\",\"length\":1}\n{}\n", "not followed by a newline", false},
		{"negative length", "{}\n{\"type\":\"event\",\"length\":-1}\n{}\n", "negative length", false},
		{"header only item", "{}\n{\"type\":\"event\"}", "header without a payload", false},
		{"two events", "{}\n{\"type\":\"event\"}\n{}\n{\"type\":\"event\"}\n{}\n", "at most one", false},
		{"event and transaction", "{}\n{\"type\":\"event\"}\n{}\n{\"type\":\"transaction\"}\n{}\n", "both", false},
		{"event too big", "{}\n{\"type\":\"event\"}\n{\"m\":\"" + strings.Repeat("x", 2<<20) + "\"}\n", "limit", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.body), Limits{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
			if IsTooLarge(err) != c.tooLarge {
				t.Errorf("IsTooLarge = %v", IsTooLarge(err))
			}
		})
	}
	// Valid edge cases.
	for _, ok := range []string{"{}", "{}\n", "{}\n{\"type\":\"session\"}\n{}", "{\"event_id\":\"x\"}\n{\"type\":\"attachment\",\"length\":0}\n\n", "{}\n{\"type\":\"whatever\"}\n\r\n"} {
		if _, err := Parse([]byte(ok), Limits{}); err != nil {
			t.Errorf("Parse(%q): %v", ok, err)
		}
	}
}

func TestEventID(t *testing.T) {
	for in, want := range map[string]string{
		"ebc4a82cdbc040f0a88539b6acca6edf":     "ebc4a82cdbc040f0a88539b6acca6edf",
		"EBC4A82C-DBC0-40F0-A885-39B6ACCA6EDF": "ebc4a82cdbc040f0a88539b6acca6edf",
		"":                                     "",
	} {
		if got := EventID(in); got != want {
			t.Errorf("EventID(%q) = %q", in, got)
		}
	}
	if a, b := EventID("js-event-1"), EventID("js-event-1"); a != b || len(a) != 32 {
		t.Errorf("non-UUID ids must map to one stable id: %q %q", a, b)
	}
}

// FuzzParse: the parser never panics, and what it accepts re-encodes to
// the same items.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixtures, "captured", "*", "*.envelope"))
	for _, fl := range files {
		if b, err := os.ReadFile(fl); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("{}\n{\"type\":\"event\",\"length\":3}\n{}\n"))
	f.Add([]byte("{}\n{\"type\":\"attachment\",\"length\":0}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := Parse(data, Limits{Event: 4096, Other: 4096, Attachment: 4096})
		if err != nil {
			return
		}
		again, err := Parse(Encode(env.Header.Raw, env.Items), Limits{Event: 4096, Other: 4096, Attachment: 4096})
		if err != nil {
			t.Fatalf("re-encoded envelope does not parse: %v", err)
		}
		if len(again.Items) != len(env.Items) {
			t.Fatalf("items %d != %d", len(again.Items), len(env.Items))
		}
	})
}
