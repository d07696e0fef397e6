package badge

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/shiploop/shiploop/pkg/testfixture"
)

// testdata finds ../shared/testdata/badges beside the repository root (the
// directory holding go.work).
func testdata(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return filepath.Join(dir, "..", "shared", "testdata", "badges")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			testfixture.Missing(t, "no go.work above the test directory: ../shared/testdata is unavailable")
		}
		dir = parent
	}
}

type golden struct {
	File  string `json:"file"`
	Input struct {
		Style      string   `json:"style"`
		Label      string   `json:"label"`
		Message    string   `json:"message"`
		Color      string   `json:"color"`
		LabelColor string   `json:"labelColor"`
		Links      []string `json:"links"`
	} `json:"input"`
	LabelTextWidth   float64 `json:"labelTextWidth"`
	MessageTextWidth float64 `json:"messageTextWidth"`
}

func goldens(t *testing.T) (string, []golden) {
	dir := filepath.Join(testdata(t), "badge-maker")
	data, err := os.ReadFile(filepath.Join(dir, "golden", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var gs []golden
	if err := json.Unmarshal(data, &gs); err != nil {
		t.Fatal(err)
	}
	if len(gs) < 17 {
		t.Fatalf("index.json lists %d goldens, want at least 17", len(gs))
	}
	return dir, gs
}

// TestGoldens renders every badge-maker 6.0.0 golden from its inputs and
// compares bytes.
func TestGoldens(t *testing.T) {
	dir, gs := goldens(t)
	for _, g := range gs {
		t.Run(filepath.Base(g.File), func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, g.File))
			if err != nil {
				t.Fatal(err)
			}
			b := Badge{Label: g.Input.Label, Message: g.Input.Message, Color: g.Input.Color, LabelColor: g.Input.LabelColor, Style: Style(g.Input.Style)}
			copy(b.Links[:], g.Input.Links)
			got := SVG(b)
			if got != string(bytes.TrimSpace(want)) {
				t.Errorf("SVG differs from %s\n got: %s\nwant: %s", g.File, got, want)
			}
			if g.Input.Style == "flat" {
				if w := TextWidth(g.Input.Label); math.Abs(w-g.LabelTextWidth) > 1e-9 {
					t.Errorf("label width %v, want %v", w, g.LabelTextWidth)
				}
				if w := TextWidth(g.Input.Message); math.Abs(w-g.MessageTextWidth) > 1e-9 {
					t.Errorf("message width %v, want %v", w, g.MessageTextWidth)
				}
			}
		})
	}
}

// TestWidthTable checks the embedded 11px Verdana table against
// anafanafo's JSON, range by range, and against the ASCII summary.
func TestWidthTable(t *testing.T) {
	dir := filepath.Join(testdata(t), "badge-maker")
	data, err := os.ReadFile(filepath.Join(dir, "anafanafo-verdana-11px-normal.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rows [][3]float64
	if err := json.Unmarshal(data, &rows); err != nil {
		t.Fatal(err)
	}
	tab := tables()[verdana11]
	if len(tab) != len(rows) {
		t.Fatalf("embedded table has %d ranges, anafanafo's %d", len(tab), len(rows))
	}
	for i, r := range rows {
		if tab[i].first != uint32(r[0]) || tab[i].last != uint32(r[1]) || tab[i].width != r[2] {
			t.Fatalf("range %d: embedded %+v, anafanafo %v", i, tab[i], r)
		}
	}
	var ascii struct {
		EM     float64            `json:"em_fallback_width_m"`
		Widths map[string]float64 `json:"widths"`
	}
	data, err = os.ReadFile(filepath.Join(dir, "verdana-11px-ascii-widths.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &ascii); err != nil {
		t.Fatal(err)
	}
	for ch, w := range ascii.Widths {
		if got := TextWidth(ch); got != w {
			t.Errorf("width of %q = %v, want %v", ch, got, w)
		}
	}
	if got := TextWidth("\U000F0000"); got != ascii.EM {
		t.Errorf("unknown code point measures %v, want the width of m, %v", got, ascii.EM)
	}
	if got := TextWidth("a\x00\tb"); got != TextWidth("ab") {
		t.Errorf("control characters count: %v", got)
	}
}

// TestEndpointSchema checks our endpoint JSON, for every badge kind the
// service serves, against the JSON Schema of shields' endpoint format, and
// that the schema itself accepts the research's examples.
func TestEndpointSchema(t *testing.T) {
	dir := testdata(t)
	c := jsonschema.NewCompiler()
	f, err := os.Open(filepath.Join(dir, "endpoint-schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("endpoint-schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("endpoint-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	validate := func(data []byte) error {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return err
		}
		return sch.Validate(v)
	}
	ex, err := os.ReadFile(filepath.Join(dir, "endpoint-examples.json"))
	if err != nil {
		t.Fatal(err)
	}
	var examples []json.RawMessage
	if err := json.Unmarshal(ex, &examples); err != nil {
		t.Fatal(err)
	}
	for _, e := range examples {
		if err := validate(e); err != nil {
			t.Errorf("example %s: %v", e, err)
		}
	}
	for _, st := range Styles {
		for _, b := range []Badge{
			{Label: "build", Message: "passing", Color: "brightgreen", Style: st},
			{Label: "deploy production", Message: "v1.2.3", Color: "blue", Style: st},
			{Label: "coverage", Message: "", Color: "lightgrey", Style: st},
		} {
			data := EndpointJSON(b, b.Message == "", 60)
			if err := validate(data); err != nil {
				t.Errorf("%s: %v", data, err)
			}
		}
	}
	if err := validate([]byte(`{"schemaVersion":1,"label":"x","message":"y","bogus":1}`)); err == nil {
		t.Error("the schema accepts unknown keys; the test would prove nothing")
	}
}

func TestParseStyle(t *testing.T) {
	for _, s := range []string{"", "flat", "flat-square", "plastic", "for-the-badge", "social"} {
		if _, err := ParseStyle(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	if _, err := ParseStyle("round"); err == nil || !strings.Contains(err.Error(), "for-the-badge") {
		t.Errorf("bad style: %v", err)
	}
}

// FuzzSVG renders arbitrary text in every style: never a panic, always one
// well-formed svg element with the text escaped.
func FuzzSVG(f *testing.F) {
	f.Add("build", "passing", "brightgreen", "")
	f.Add("", "<a&b>\"q'", "#4c1", "rgb(1,2,3)")
	f.Add("日本", "\x00\uFFFF", "zzz", "fff")
	f.Fuzz(func(t *testing.T, label, message, color, labelColor string) {
		for _, st := range Styles {
			s := SVG(Badge{Label: label, Message: message, Color: color, LabelColor: labelColor, Style: st})
			if !strings.HasPrefix(s, "<svg ") || !strings.HasSuffix(s, "</svg>") {
				t.Fatalf("%s: not an svg: %q", st, s)
			}
			if strings.Count(s, "<svg") != 1 {
				t.Fatalf("%s: text escaped the markup: %q", st, s)
			}
		}
	})
}
