package errortrack

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// cartSource is the original file; cartMin is it minified by hand.
const cartSource = `function computeTotal(items) {
  let total = 0;
  for (const item of items) {
    total += item.price;
  }
  if (total > 100) throw new Error("too expensive");
  return total;
}

function checkout(cart) {
  return computeTotal(cart.items);
}
`

const cartMin = `function a(b){let c=0;for(const d of b)c+=d.price;if(c>100)throw new Error("too expensive");return c}function e(f){return a(f.items)}
//# sourceMappingURL=app.min.js.map
`

// vlq is the source map base64 VLQ encoding of one value.
func vlq(v int) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	n := v << 1
	if v < 0 {
		n = (-v << 1) | 1
	}
	var sb strings.Builder
	for {
		d := n & 31
		n >>= 5
		if n > 0 {
			d |= 32
		}
		sb.WriteByte(chars[d])
		if n == 0 {
			return sb.String()
		}
	}
}

// cartMap writes a v3 source map of cartMin: each segment is [generated
// column, original line, original column, name or -1], all on line 1.
func cartMap() []byte {
	src := strings.Split(cartSource, "\n")
	col := func(line int, s string) int { return strings.Index(src[line], s) }
	segs := [][4]int{
		{0, 0, 0, -1},
		{strings.Index(cartMin, "if(c>100)"), 5, col(5, "if"), -1},
		{strings.Index(cartMin, "throw"), 5, col(5, "throw"), -1},
		{strings.Index(cartMin, "function e"), 9, 0, -1},
		{strings.Index(cartMin, "a(f.items)"), 10, col(10, "computeTotal"), 0},
	}
	var parts []string
	pc, pl, pcol, pn := 0, 0, 0, 0
	for _, s := range segs {
		seg := vlq(s[0]-pc) + vlq(0) + vlq(s[1]-pl) + vlq(s[2]-pcol)
		if s[3] >= 0 {
			seg += vlq(s[3] - pn)
			pn = s[3]
		}
		pc, pl, pcol = s[0], s[1], s[2]
		parts = append(parts, seg)
	}
	m, _ := json.Marshal(map[string]any{"version": 3, "file": "app.min.js", "sources": []string{"../src/cart.js"},
		"sourcesContent": []string{cartSource}, "names": []string{"computeTotal"}, "mappings": strings.Join(parts, ",")})
	return m
}

const cartDebugID = "c0ffee00-1234-4abc-8def-0123456789ab"

// cartBundle is an artifact bundle as sentry-cli writes it: manifest.json
// with the minified file (its Sourcemap header left out, so the comment is
// read) and its map, both under ~/dist/ with debug ids.
func cartBundle(t *testing.T, release string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	manifest := map[string]any{"org": "shiploop", "release": release, "files": map[string]any{
		"files/_/_/dist/app.min.js":     map[string]any{"url": "~/dist/app.min.js", "type": "minified_source", "headers": map[string]string{"debug-id": cartDebugID}},
		"files/_/_/dist/app.min.js.map": map[string]any{"url": "~/dist/app.min.js.map", "type": "source_map", "headers": map[string]string{"debug-id": cartDebugID}},
	}}
	for name, data := range map[string][]byte{
		"manifest.json":                 func() []byte { b, _ := json.Marshal(manifest); return b }(),
		"files/_/_/dist/app.min.js":     []byte(cartMin),
		"files/_/_/dist/app.min.js.map": cartMap(),
	} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// uploadBundle sends a bundle as `sentry-cli sourcemaps upload` does:
// assemble (missing chunks), chunk upload, assemble until ok.
func (h *harness) uploadBundle(project, release string, bundle []byte) {
	h.t.Helper()
	const org = "/api/0/organizations/shiploop"
	sum := sha1.Sum(bundle)
	checksum := hex.EncodeToString(sum[:])
	req := map[string]any{"checksum": checksum, "chunks": []string{checksum}, "projects": []string{project}, "version": release}
	if got := h.apiOK("POST", org+"/artifactbundle/assemble/", 200, req); field(got, "state") != "not_found" {
		h.t.Fatalf("assemble before upload = %v", got)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, _ := mw.CreateFormFile("file", checksum)
	part.Write(bundle)
	mw.Close()
	r, _ := http.NewRequest("POST", h.srv.URL+org+"/chunk-upload/", &body)
	r.Header.Set("Content-Type", mw.FormDataContentType())
	r.Header.Set("Authorization", "Bearer "+webWrite)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		h.t.Fatalf("chunk upload = %d", resp.StatusCode)
	}
	if got := h.apiOK("POST", org+"/artifactbundle/assemble/", 200, req); field(got, "state") != "ok" {
		h.t.Fatalf("assemble = %v", got)
	}
}

// jsEventPayload is a browser SDK event: checkout -> computeTotal, thrown
// in app.min.js at the minified positions.
func jsEventPayload(id, release, absPath string, debugMeta bool) string {
	line1 := cartMin[:strings.IndexByte(cartMin, '\n')]
	throwCol := strings.Index(line1, "throw") + 1
	callCol := strings.Index(line1, "a(f.items)") + 1
	ev := map[string]any{"event_id": id, "platform": "javascript", "level": "error", "timestamp": "2026-12-01T10:00:00Z",
		"exception": map[string]any{"values": []any{map[string]any{"type": "Error", "value": "too expensive", "stacktrace": map[string]any{"frames": []any{
			map[string]any{"filename": absPath, "abs_path": absPath, "function": "e", "lineno": 1, "colno": callCol, "in_app": true},
			map[string]any{"filename": absPath, "abs_path": absPath, "function": "a", "lineno": 1, "colno": throwCol, "in_app": true},
		}}}}}}
	if release != "" {
		ev["release"] = release
	}
	if debugMeta {
		ev["debug_meta"] = map[string]any{"images": []any{map[string]any{"type": "sourcemap", "code_file": absPath, "debug_id": cartDebugID}}}
	}
	b, _ := json.Marshal(ev)
	return string(b)
}

// TestSymbolicateSourceMaps: a bundle uploaded through the web API's chunk
// upload and assemble; a JavaScript event of its release (matched by URL,
// any host) and one without a release but with the debug id come out with
// the original file, line, column, function and context lines, the
// minified frames kept as raw_stacktrace; an event of a release without
// maps stays as sent. Both symbolicated events group into one issue.
func TestSymbolicateSourceMaps(t *testing.T) {
	storetest.Engines(t, "errortrack", nil, func(t *testing.T, db *store.DB) {
		h := newWebHarness(t, db)
		ctx := context.Background()
		p, k := h.project("web", 0)
		h.uploadBundle("web", "web@1.0.0", cartBundle(t, "web@1.0.0"))
		if n := h.count(`SELECT COUNT(*) FROM artifact_bundle_debug_ids WHERE debug_id = $1`, cartDebugID); n != 1 {
			t.Fatalf("debug ids indexed = %d", n)
		}
		path := fmt.Sprintf("/api/%d/envelope/?sentry_key=%s", p.GetId(), k.GetPublicKey())
		send := func(id, payload string) {
			t.Helper()
			body := fmt.Sprintf("{\"event_id\":%q}\n{\"type\":\"event\"}\n%s\n", id, payload)
			if r, b := h.post(path, "", nil, []byte(body)); r.StatusCode != 200 {
				t.Fatalf("envelope %s: %d %s", id, r.StatusCode, b)
			}
		}
		get := func(id string) *errortrackv1.GetEventResponse {
			t.Helper()
			deadline := time.Now().Add(20 * time.Second)
			for {
				resp, err := h.api.GetEvent(ctx, &errortrackv1.GetEventRequest{EventId: id})
				if err == nil {
					return resp
				}
				if time.Now().After(deadline) {
					t.Fatalf("event %s: %v", id, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		byURL, byDebugID, noMaps := fmt.Sprintf("%032x", 1), fmt.Sprintf("%032x", 2), fmt.Sprintf("%032x", 3)
		send(byURL, jsEventPayload(byURL, "web@1.0.0", "https://shop.example/dist/app.min.js?v=3", false))
		send(byDebugID, jsEventPayload(byDebugID, "", "app:///bundle/main.js", true))
		send(noMaps, jsEventPayload(noMaps, "web@2.0.0", "https://shop.example/dist/app.min.js", false))

		for _, id := range []string{byURL, byDebugID} {
			resp := get(id)
			frames := resp.GetEvent().GetDetail().GetExceptions()[0].GetFrames()
			if len(frames) != 2 {
				t.Fatalf("%s: frames = %v", id, frames)
			}
			inner, outer := frames[1], frames[0]
			if inner.GetFilename() != "/src/cart.js" || inner.GetAbsPath() != "~/src/cart.js" || inner.GetLineno() != 6 || inner.GetColno() != 20 ||
				inner.GetFunction() != "computeTotal" || inner.GetContextLine() != `  if (total > 100) throw new Error("too expensive");` {
				t.Errorf("%s: inner frame = %v", id, inner)
			}
			if got := strings.Join(inner.GetPreContext(), "|"); got != "function computeTotal(items) {|  let total = 0;|  for (const item of items) {|    total += item.price;|  }" {
				t.Errorf("%s: pre_context = %q", id, got)
			}
			if got := strings.Join(inner.GetPostContext(), "|"); got != "  return total;|}||function checkout(cart) {|  return computeTotal(cart.items);" {
				t.Errorf("%s: post_context = %q", id, got)
			}
			if outer.GetLineno() != 11 || outer.GetColno() != 10 || outer.GetFunction() != "e" || outer.GetContextLine() != "  return computeTotal(cart.items);" {
				t.Errorf("%s: outer frame = %v", id, outer)
			}
			// The minified frames are kept.
			var stored struct {
				Exception struct {
					Values []struct {
						Raw struct {
							Frames []struct {
								AbsPath string `json:"abs_path"`
								Lineno  int    `json:"lineno"`
							} `json:"frames"`
						} `json:"raw_stacktrace"`
					} `json:"values"`
				} `json:"exception"`
			}
			if err := json.Unmarshal([]byte(resp.GetEvent().GetJson()), &stored); err != nil || len(stored.Exception.Values) != 1 ||
				len(stored.Exception.Values[0].Raw.Frames) != 2 || stored.Exception.Values[0].Raw.Frames[1].Lineno != 1 {
				t.Errorf("%s: raw_stacktrace not kept: %v %s", id, err, resp.GetEvent().GetJson())
			}
			raw, err := h.api.GetEvent(ctx, &errortrackv1.GetEventRequest{EventId: id, Raw: true})
			if err != nil {
				t.Fatal(err)
			}
			if f := raw.GetEvent().GetDetail().GetExceptions()[0].GetFrames()[1]; f.GetLineno() != 1 || f.GetFunction() != "a" || !strings.Contains(f.GetAbsPath(), "/") || strings.Contains(f.GetAbsPath(), "cart.js") {
				t.Errorf("%s: raw frame = %v, want the minified one", id, f)
			}
			if resp.GetIssue().GetCulprit() == "" {
				t.Errorf("%s: no culprit", id)
			}
		}
		if a, b := get(byURL).GetEvent().GetIssueId(), get(byDebugID).GetEvent().GetIssueId(); a != b {
			t.Errorf("symbolicated events in issues %d and %d, want one", a, b)
		}
		frames := get(noMaps).GetEvent().GetDetail().GetExceptions()[0].GetFrames()
		if f := frames[1]; f.GetAbsPath() != "https://shop.example/dist/app.min.js" || f.GetLineno() != 1 || f.GetFunction() != "a" {
			t.Errorf("event without maps: frame = %v, want it as sent", f)
		}
		if strings.Contains(get(noMaps).GetEvent().GetJson(), "raw_stacktrace") {
			t.Errorf("event without maps got a raw_stacktrace")
		}
	})
}

// TestSourceMapSections: an index map's section starting mid-line takes
// the columns from its offset on, its column offset applying on its first
// line only; the earlier section keeps the columns before.
func TestSourceMapSections(t *testing.T) {
	one := `{"version":3,"sources":["a.js"],"sourcesContent":["let a = 1;\n"],"names":[],"mappings":"AAAA"}`
	// b.js: generated line 1 column 0 -> b.js 1:0; generated line 2 column 4 -> b.js 3:2.
	two := `{"version":3,"sources":["b.js"],"sourcesContent":["x\ny\n  z\n"],"names":[],"mappings":"AAAA;IAEE"}`
	idx := `{"version":3,"sections":[{"offset":{"line":0,"column":0},"map":` + one + `},{"offset":{"line":0,"column":20},"map":` + two + `}]}`
	m, err := parseSourceMap([]byte(idx))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		line, col   int
		src         string
		oline, ocol int
	}{
		{1, 5, "a.js", 1, 0},
		{1, 25, "b.js", 1, 0},
		{2, 4, "b.js", 3, 2},
	} {
		src, _, l, col, ok := m.Source(c.line, c.col)
		if !ok || src != c.src || l != c.oline || col != c.ocol {
			t.Errorf("Source(%d, %d) = %s %d:%d %v, want %s %d:%d", c.line, c.col, src, l, col, ok, c.src, c.oline, c.ocol)
		}
	}
	if got := m.SourceContent("b.js"); got != "x\ny\n  z\n" {
		t.Errorf("SourceContent(b.js) = %q", got)
	}
}

// TestSourceURLs: the manifest URLs a frame matches and how map and
// source references resolve.
func TestSourceURLs(t *testing.T) {
	got := urlCandidates("https://shop.example/dist/app.min.js?v=3")
	for _, want := range []string{"https://shop.example/dist/app.min.js?v=3", "https://shop.example/dist/app.min.js", "~/dist/app.min.js", "~/dist/app.min.js?v=3"} {
		if !got[want] {
			t.Errorf("candidates lack %s: %v", want, got)
		}
	}
	if !urlCandidates("app:///main.js")["~/main.js"] || !urlCandidates("/static/main.js")["~/static/main.js"] {
		t.Errorf("app:/// and bare paths must match ~/")
	}
	for _, c := range [][3]string{
		{"~/dist/app.min.js", "app.min.js.map", "~/dist/app.min.js.map"},
		{"~/dist/app.min.js", "../maps/app.map", "~/maps/app.map"},
		{"~/dist/app.min.js", "/maps/app.map", "~/maps/app.map"},
		{"https://cdn.example/js/app.js", "app.js.map", "https://cdn.example/js/app.js.map"},
		{"~/dist/app.min.js.map", "webpack://shop/./src/a.js", "webpack://shop/./src/a.js"},
	} {
		if got := resolveURL(c[0], c[1]); got != c[2] {
			t.Errorf("resolveURL(%s, %s) = %s, want %s", c[0], c[1], got, c[2])
		}
	}
	if got := sourceFilename("webpack://shop/./src/a.js"); got != "./src/a.js" {
		t.Errorf("sourceFilename(webpack) = %s", got)
	}
}
