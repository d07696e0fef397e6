package errortrack

import (
	"archive/zip"
	"bytes"
	"container/list"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sourcemap/sourcemap"
)

// JavaScript symbolication, as Sentry's JavaScript processing does it: at
// processing time, before grouping, each frame of a javascript or node
// event whose file has a source map among the uploaded artifact bundles is
// mapped to its original file, line, column and function, with context
// lines from the map's sourcesContent. The minified stack trace is kept
// beside it as raw_stacktrace (Sentry's name). The map is found by the
// frame's debug id (debug_meta.images, which sentry-cli 2.x+ injects),
// else by the frame's URL in the release's bundles (manifest url "~/path"
// matches any host) and the minified file's Sourcemap header or
// sourceMappingURL comment. Only events processed after the upload are
// symbolicated: stored events and their issues are never regrouped.

const (
	// maxSourceMapBytes is the largest source map read (bigger ones are
	// left alone, the frames stay minified).
	maxSourceMapBytes = 50 << 20
	// sourceMapCacheBytes caps the parsed maps kept in memory, counted by
	// the size of their JSON.
	sourceMapCacheBytes = 256 << 20
	// maxManifests caps the bundle manifests kept in memory.
	maxManifests = 512
	// symbolicateTimeout bounds one event's lookups in the Object Store.
	symbolicateTimeout = 20 * time.Second
	contextLines       = 5
	maxContextLine     = 300
)

// bundleFile is one file of an artifact bundle's manifest.json.
type bundleFile struct {
	path, url, typ, debugID, sourcemap string
}

// readBundleManifest reads manifest.json of an artifact bundle (a zip, the
// format of getsentry/symbolic's SourceBundle, which release bundles share).
func readBundleManifest(zr *zip.Reader) ([]bundleFile, error) {
	var m struct {
		Files map[string]struct {
			URL     string            `json:"url"`
			Type    string            `json:"type"`
			Headers map[string]string `json:"headers"`
		} `json:"files"`
	}
	f, err := zr.Open("manifest.json")
	if err != nil {
		return nil, fmt.Errorf("artifact bundle without manifest.json: %w", err)
	}
	defer f.Close()
	if err := json.NewDecoder(io.LimitReader(f, 64<<20)).Decode(&m); err != nil {
		return nil, fmt.Errorf("artifact bundle manifest.json: %w", err)
	}
	out := make([]bundleFile, 0, len(m.Files))
	for p, e := range m.Files {
		bf := bundleFile{path: p, url: e.URL, typ: e.Type}
		for k, v := range e.Headers {
			switch strings.ToLower(k) {
			case "debug-id", "debug_id":
				bf.debugID = normalizeDebugID(v)
			case "sourcemap", "x-sourcemap":
				bf.sourcemap = v
			}
		}
		if bf.typ == "" { // release bundles: no types
			if strings.HasSuffix(bf.url, ".map") {
				bf.typ = "source_map"
			} else {
				bf.typ = "minified_source"
			}
		}
		out = append(out, bf)
	}
	return out, nil
}

func normalizeDebugID(id string) string {
	return strings.ToLower(strings.TrimSpace(id))
}

// indexArtifactBundle records the debug ids a just-assembled bundle holds.
// A bundle that is not a readable zip is kept but never symbolicates.
func (s *Service) indexArtifactBundle(ctx context.Context, q queryer, checksum string, data []byte) error {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil
	}
	files, err := readBundleManifest(zr)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	for _, f := range files {
		if f.debugID == "" || seen[f.debugID] {
			continue
		}
		seen[f.debugID] = true
		if _, err := q.ExecContext(ctx, `INSERT INTO artifact_bundle_debug_ids (debug_id, checksum) VALUES ($1, $2) ON CONFLICT DO NOTHING`, f.debugID, checksum); err != nil {
			return fmt.Errorf("indexing bundle debug ids: %w", err)
		}
	}
	return nil
}

// sourceMapCache keeps parsed source maps, per (bundle, file), least
// recently used out first, and bundle manifests.
type sourceMapCache struct {
	mu        sync.Mutex
	maps      map[string]*list.Element
	lru       list.List
	bytes     int64
	manifests map[string][]bundleFile
}

type cachedMap struct {
	key  string
	c    *sourceMap
	size int64
}

func (c *sourceMapCache) getMap(key string) *sourceMap {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.maps[key]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*cachedMap).c
	}
	return nil
}

func (c *sourceMapCache) putMap(key string, m *sourceMap, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.maps == nil {
		c.maps = map[string]*list.Element{}
	}
	if _, ok := c.maps[key]; ok || size > sourceMapCacheBytes {
		return
	}
	c.maps[key] = c.lru.PushFront(&cachedMap{key: key, c: m, size: size})
	c.bytes += size
	for c.bytes > sourceMapCacheBytes {
		el := c.lru.Back()
		cm := el.Value.(*cachedMap)
		c.lru.Remove(el)
		delete(c.maps, cm.key)
		c.bytes -= cm.size
	}
}

func (c *sourceMapCache) manifest(checksum string) ([]bundleFile, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.manifests[checksum]
	return m, ok
}

func (c *sourceMapCache) putManifest(checksum string, files []bundleFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.manifests == nil {
		c.manifests = map[string][]bundleFile{}
	}
	if len(c.manifests) >= maxManifests {
		for k := range c.manifests { // any one out: manifests are cheap to reread
			delete(c.manifests, k)
			break
		}
	}
	c.manifests[checksum] = files
}

// jsEvent symbolicates one event's frames.
type jsEvent struct {
	s         *Service
	ctx       context.Context
	q         queryer
	projectID int64
	release   string
	dist      string
	debugIDs  map[string]string // abs_path -> debug id
	bundles   []string          // the release's bundles, newest first
	listed    bool
	zips      map[string]*zip.Reader
	resolved  map[string]*resolvedMap // by abs_path; nil: no map
}

type resolvedMap struct {
	c   *sourceMap
	url string // where the map is, to resolve its sources against
}

// symbolicate returns the event payload with its JavaScript frames mapped
// through uploaded source maps, and whether any frame changed.
func (s *Service) symbolicate(ctx context.Context, q queryer, projectID int64, payload []byte) ([]byte, bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(payload, &top) != nil {
		return nil, false
	}
	switch jsonString(top["platform"]) {
	case "javascript", "node":
	default:
		return nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, symbolicateTimeout)
	defer cancel()
	j := &jsEvent{s: s, ctx: ctx, q: q, projectID: projectID, release: jsonString(top["release"]), dist: jsonString(top["dist"]),
		debugIDs: map[string]string{}, zips: map[string]*zip.Reader{}, resolved: map[string]*resolvedMap{}}
	var meta struct {
		Images []struct {
			Type     string `json:"type"`
			CodeFile string `json:"code_file"`
			DebugID  string `json:"debug_id"`
		} `json:"images"`
	}
	if len(top["debug_meta"]) > 0 && json.Unmarshal(top["debug_meta"], &meta) == nil {
		for _, im := range meta.Images {
			if im.Type == "sourcemap" && im.CodeFile != "" && im.DebugID != "" {
				j.debugIDs[im.CodeFile] = normalizeDebugID(im.DebugID)
			}
		}
	}
	if j.release == "" && len(j.debugIDs) == 0 {
		return nil, false
	}
	changed := false
	// exception.values[].stacktrace, threads.values[].stacktrace, stacktrace.
	for _, key := range []string{"exception", "threads"} {
		raw := top[key]
		if out, ok := j.values(raw); ok {
			top[key], changed = out, true
		}
	}
	if st := top["stacktrace"]; len(st) > 0 {
		if out, ok := j.stack(st); ok {
			top["raw_stacktrace"], top["stacktrace"], changed = st, out, true
		}
	}
	if !changed {
		return nil, false
	}
	out, err := json.Marshal(top)
	if err != nil {
		return nil, false
	}
	return out, true
}

// values rewrites the stack traces of {"values": [...]} or a bare list.
func (j *jsEvent) values(raw json.RawMessage) (json.RawMessage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false
	}
	var wrapper map[string]json.RawMessage
	list := raw
	if raw[0] == '{' {
		if json.Unmarshal(raw, &wrapper) != nil || len(wrapper["values"]) == 0 {
			return nil, false
		}
		list = wrapper["values"]
	}
	var items []map[string]json.RawMessage
	if json.Unmarshal(list, &items) != nil {
		return nil, false
	}
	changed := false
	for _, it := range items {
		st := it["stacktrace"]
		if len(st) == 0 {
			continue
		}
		if out, ok := j.stack(st); ok {
			it["raw_stacktrace"], it["stacktrace"], changed = st, out, true
		}
	}
	if !changed {
		return nil, false
	}
	b, err := json.Marshal(items)
	if err != nil {
		return nil, false
	}
	if wrapper == nil {
		return b, true
	}
	wrapper["values"] = b
	if b, err = json.Marshal(wrapper); err != nil {
		return nil, false
	}
	return b, true
}

// stack maps one stack trace's frames (outermost first). A frame's
// function is the name at its caller's call site, as Sentry's legacy
// JavaScript processing names it; the minified name stays otherwise.
func (j *jsEvent) stack(raw json.RawMessage) (json.RawMessage, bool) {
	var st map[string]json.RawMessage
	if json.Unmarshal(raw, &st) != nil {
		return nil, false
	}
	var frames []map[string]json.RawMessage
	if json.Unmarshal(st["frames"], &frames) != nil || len(frames) == 0 {
		return nil, false
	}
	changed := false
	callee := ""
	for i, f := range frames {
		name := callee
		callee = ""
		abs := jsonString(f["abs_path"])
		if abs == "" {
			abs = jsonString(f["filename"])
		}
		line, col := int(number(f["lineno"])), int(number(f["colno"]))
		if abs == "" || line <= 0 {
			continue
		}
		m := j.mapFor(abs)
		if m == nil {
			continue
		}
		if col > 0 {
			col--
		}
		src, tok, oline, ocol, ok := m.c.Source(line, col)
		if !ok || src == "" || oline <= 0 {
			continue
		}
		callee = tok
		nf := make(map[string]json.RawMessage, len(f)+4)
		for k, v := range f {
			nf[k] = v
		}
		origAbs := resolveSource(m.url, src)
		set := func(k string, v any) { b, _ := json.Marshal(v); nf[k] = b }
		set("abs_path", origAbs)
		set("filename", sourceFilename(origAbs))
		set("lineno", oline)
		set("colno", ocol+1)
		if name != "" {
			set("function", name)
		}
		delete(nf, "pre_context")
		delete(nf, "context_line")
		delete(nf, "post_context")
		if content := m.c.SourceContent(src); content != "" {
			pre, cur, post, ok := contextAround(content, oline)
			if ok {
				set("pre_context", pre)
				set("context_line", cur)
				set("post_context", post)
			}
		}
		if strings.Contains(origAbs, "/node_modules/") {
			set("in_app", false)
		}
		var data map[string]json.RawMessage
		_ = json.Unmarshal(f["data"], &data)
		if data == nil {
			data = map[string]json.RawMessage{}
		}
		b, _ := json.Marshal(m.url)
		data["sourcemap"] = b
		data["symbolicated"] = json.RawMessage("true")
		set("data", data)
		frames[i] = nf
		changed = true
	}
	if !changed {
		return nil, false
	}
	b, err := json.Marshal(frames)
	if err != nil {
		return nil, false
	}
	st["frames"] = b
	out, err := json.Marshal(st)
	if err != nil {
		return nil, false
	}
	return out, true
}

// mapFor finds and parses the source map of the minified file at abs:
// by debug id first, then by URL among the release's bundles.
func (j *jsEvent) mapFor(abs string) *resolvedMap {
	if m, ok := j.resolved[abs]; ok {
		return m
	}
	var m *resolvedMap
	if id := j.debugIDs[abs]; id != "" {
		m = j.byDebugID(id)
	}
	if m == nil && j.release != "" {
		m = j.byURL(abs)
	}
	j.resolved[abs] = m
	return m
}

func (j *jsEvent) byDebugID(id string) *resolvedMap {
	rows, err := j.q.QueryContext(j.ctx, `SELECT b.checksum, b.projects FROM artifact_bundle_debug_ids d JOIN artifact_bundles b ON b.checksum = d.checksum
		WHERE d.debug_id = $1 ORDER BY b.created_at DESC`, id)
	if err != nil {
		j.s.log.Warn("symbolicate: looking up a debug id", "err", err)
		return nil
	}
	sums := j.ownBundles(rows)
	for _, sum := range sums {
		files := j.manifest(sum)
		for _, f := range files {
			if f.typ == "source_map" && f.debugID == id {
				if c := j.parseMap(sum, f.path, nil); c != nil {
					return &resolvedMap{c: c, url: f.url}
				}
			}
		}
	}
	return nil
}

// ownBundles reads (checksum, projects) rows, keeping the bundles of this
// project (a bundle naming no project is the organization's).
func (j *jsEvent) ownBundles(rows interface {
	Next() bool
	Scan(...any) error
	Close() error
	Err() error
}) []string {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var sum, projects string
		if rows.Scan(&sum, &projects) != nil {
			continue
		}
		var ids []int64
		_ = json.Unmarshal([]byte(projects), &ids)
		mine := len(ids) == 0
		for _, id := range ids {
			mine = mine || id == j.projectID
		}
		if mine {
			out = append(out, sum)
		}
	}
	return out
}

func (j *jsEvent) byURL(abs string) *resolvedMap {
	if !j.listed {
		j.listed = true
		rows, err := j.q.QueryContext(j.ctx, `SELECT checksum, projects FROM artifact_bundles WHERE release = $1 AND (dist = $2 OR dist = '')
			ORDER BY CASE WHEN dist = $2 THEN 0 ELSE 1 END, created_at DESC`, j.release, j.dist)
		if err != nil {
			j.s.log.Warn("symbolicate: listing the release's bundles", "err", err)
			return nil
		}
		j.bundles = j.ownBundles(rows)
	}
	cands := urlCandidates(abs)
	for _, sum := range j.bundles {
		files := j.manifest(sum)
		for _, f := range files {
			if f.typ == "source_map" || !cands[f.url] {
				continue
			}
			ref := f.sourcemap
			var inline []byte
			if ref == "" {
				ref = j.sourceMappingURL(sum, f.path)
			}
			if ref == "" {
				continue
			}
			if rest, ok := strings.CutPrefix(ref, "data:"); ok {
				if i := strings.Index(rest, ";base64,"); i >= 0 {
					inline, _ = base64.StdEncoding.DecodeString(rest[i+len(";base64,"):])
				}
				if c := j.parseMap(sum, f.path+"#inline", inline); c != nil {
					return &resolvedMap{c: c, url: f.url}
				}
				continue
			}
			mapURL := resolveURL(f.url, ref)
			mc := urlCandidates(mapURL)
			// The map in the same bundle first, then in the release's others.
			for _, s2 := range append([]string{sum}, j.bundles...) {
				for _, g := range j.manifest(s2) {
					if g.typ == "source_map" && mc[g.url] {
						if c := j.parseMap(s2, g.path, nil); c != nil {
							return &resolvedMap{c: c, url: g.url}
						}
					}
				}
			}
		}
	}
	return nil
}

// zipOf opens a bundle from the Object Store, once an event.
func (j *jsEvent) zipOf(sum string) *zip.Reader {
	if zr, ok := j.zips[sum]; ok {
		return zr
	}
	j.zips[sum] = nil
	_, bundles, err := j.s.objectStores(j.ctx)
	if err != nil {
		j.s.log.Warn("symbolicate: opening the bundle store", "err", err)
		return nil
	}
	data, err := bundles.GetBytes(j.ctx, sum)
	if err != nil {
		j.s.log.Warn("symbolicate: reading a bundle", "bundle", sum, "err", err)
		return nil
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil
	}
	j.zips[sum] = zr
	return zr
}

func (j *jsEvent) manifest(sum string) []bundleFile {
	if m, ok := j.s.sourceMaps.manifest(sum); ok {
		return m
	}
	zr := j.zipOf(sum)
	if zr == nil {
		return nil
	}
	files, err := readBundleManifest(zr)
	if err != nil {
		files = nil
	}
	j.s.sourceMaps.putManifest(sum, files)
	return files
}

// readFile reads a bundle's file, at most limit bytes (nil when larger).
func (j *jsEvent) readFile(sum, name string, limit int64) []byte {
	zr := j.zipOf(sum)
	if zr == nil {
		return nil
	}
	for _, zf := range zr.File {
		if zf.Name != name {
			continue
		}
		if zf.UncompressedSize64 > uint64(limit) {
			return nil
		}
		rc, err := zf.Open()
		if err != nil {
			return nil
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, limit+1))
		if err != nil || int64(len(b)) > limit {
			return nil
		}
		return b
	}
	return nil
}

// sourceMappingURL is the minified file's //# sourceMappingURL= comment.
func (j *jsEvent) sourceMappingURL(sum, name string) string {
	b := j.readFile(sum, name, maxSourceMapBytes)
	for len(b) > 0 {
		i := bytes.LastIndexByte(bytes.TrimRight(b, "\r\n\t "), '\n')
		lineStart := i + 1
		line := strings.TrimSpace(string(b[lineStart:]))
		b = b[:max(i, 0)]
		for _, p := range []string{"//# sourceMappingURL=", "//@ sourceMappingURL="} {
			if rest, ok := strings.CutPrefix(line, p); ok {
				return strings.TrimSpace(rest)
			}
		}
		if line != "" && !strings.HasPrefix(line, "//") {
			return "" // the comment comes last
		}
		if i < 0 {
			break
		}
	}
	return ""
}

// parseMap parses (or finds cached) the map at name in bundle sum; data,
// when given, is the map itself (an inline data: URL).
func (j *jsEvent) parseMap(sum, name string, data []byte) *sourceMap {
	key := sum + "\x00" + name
	if c := j.s.sourceMaps.getMap(key); c != nil {
		return c
	}
	if data == nil {
		data = j.readFile(sum, name, maxSourceMapBytes)
	}
	if len(data) == 0 || len(data) > maxSourceMapBytes {
		return nil
	}
	// Maps may start with the XSSI prefix )]}'.
	if bytes.HasPrefix(data, []byte(")]}")) {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	c, err := parseSourceMap(data)
	if err != nil {
		j.s.log.Info("symbolicate: unreadable source map", "bundle", sum, "file", name, "err", err)
		return nil
	}
	j.s.sourceMaps.putMap(key, c, int64(len(data)))
	return c
}

// urlCandidates are the manifest URLs a frame's abs_path matches: itself,
// without query or fragment, and "~/path" (any host).
func urlCandidates(abs string) map[string]bool {
	out := map[string]bool{abs: true}
	bare := abs
	if i := strings.IndexAny(bare, "?#"); i >= 0 {
		bare = bare[:i]
		out[bare] = true
	}
	if strings.HasPrefix(bare, "~/") {
		return out
	}
	if strings.HasPrefix(bare, "/") {
		out["~"+bare] = true
		return out
	}
	if u, err := url.Parse(abs); err == nil && u.Scheme != "" {
		p := u.Path
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		out["~"+p] = true
		if u.RawQuery != "" {
			out["~"+p+"?"+u.RawQuery] = true
		}
	}
	return out
}

// resolveURL resolves ref (a sourceMappingURL or source) against base,
// which may be a "~/path" URL.
func resolveURL(base, ref string) string {
	if u, err := url.Parse(ref); err == nil && u.Scheme != "" {
		return ref
	}
	if rest, ok := strings.CutPrefix(base, "~"); ok {
		if strings.HasPrefix(ref, "/") {
			return "~" + path.Clean(ref)
		}
		return "~" + path.Join(path.Dir(rest), ref)
	}
	b, err := url.Parse(base)
	r, err2 := url.Parse(ref)
	if err != nil || err2 != nil {
		return ref
	}
	return b.ResolveReference(r).String()
}

// resolveSource is a map's source as a URL: absolute ones (webpack://...)
// as they are, others against the map's URL.
func resolveSource(mapURL, src string) string {
	if u, err := url.Parse(src); err == nil && u.Scheme != "" {
		return src
	}
	if mapURL == "" {
		return src
	}
	return resolveURL(mapURL, src)
}

// sourceFilename is what the issue page shows for an original source: its
// path without scheme and host ("webpack://app/./src/a.js" -> "./src/a.js",
// "~/src/a.js" -> "/src/a.js").
func sourceFilename(abs string) string {
	if rest, ok := strings.CutPrefix(abs, "~"); ok {
		return rest
	}
	if u, err := url.Parse(abs); err == nil && u.Scheme != "" {
		p := strings.TrimPrefix(u.Path, "/")
		if u.Scheme == "webpack" || u.Scheme == "app" {
			if p == "" {
				return u.Host
			}
			return p
		}
		return u.Path
	}
	return abs
}

// contextAround is Sentry's context: five lines either side of line
// (1-based), long lines cut.
func contextAround(content string, line int) (pre []string, cur string, post []string, ok bool) {
	lines := strings.Split(content, "\n")
	if line < 1 || line > len(lines) {
		return nil, "", nil, false
	}
	cut := func(s string) string {
		s = strings.TrimSuffix(s, "\r")
		if len(s) > maxContextLine {
			s = strings.ToValidUTF8(s[:maxContextLine], "") + " {snip}"
		}
		return s
	}
	pre = []string{}
	for i := max(0, line-1-contextLines); i < line-1; i++ {
		pre = append(pre, cut(lines[i]))
	}
	post = []string{}
	for i := line; i < len(lines) && i < line+contextLines; i++ {
		post = append(post, cut(lines[i]))
	}
	return pre, cut(lines[line-1]), post, true
}

func jsonString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if n := bytes.TrimSpace(raw); len(n) > 0 && (n[0] == '-' || (n[0] >= '0' && n[0] <= '9')) {
		if _, err := strconv.ParseFloat(string(n), 64); err == nil {
			return string(n)
		}
	}
	return ""
}

// rawStacktraces is an event's JSON with each symbolicated stack trace
// replaced by the raw_stacktrace kept beside it: the frames as sent.
func rawStacktraces(data string) string {
	var top map[string]json.RawMessage
	if json.Unmarshal([]byte(data), &top) != nil {
		return data
	}
	swap := func(m map[string]json.RawMessage) bool {
		if raw := m["raw_stacktrace"]; len(raw) > 0 {
			m["stacktrace"] = raw
			delete(m, "raw_stacktrace")
			return true
		}
		return false
	}
	changed := swap(top)
	for _, key := range []string{"exception", "threads"} {
		raw := bytes.TrimSpace(top[key])
		if len(raw) == 0 {
			continue
		}
		var wrapper map[string]json.RawMessage
		list := raw
		if raw[0] == '{' {
			if json.Unmarshal(raw, &wrapper) != nil {
				continue
			}
			list = wrapper["values"]
		}
		var items []map[string]json.RawMessage
		if json.Unmarshal(list, &items) != nil {
			continue
		}
		swapped := false
		for _, it := range items {
			swapped = swap(it) || swapped
		}
		if !swapped {
			continue
		}
		b, _ := json.Marshal(items)
		if wrapper != nil {
			wrapper["values"] = b
			b, _ = json.Marshal(wrapper)
		}
		top[key], changed = b, true
	}
	if !changed {
		return data
	}
	out, err := json.Marshal(top)
	if err != nil {
		return data
	}
	return string(out)
}

// sourceMap is a parsed source map. An index map's sections are parsed
// one by one and chosen here: go-sourcemap's own section lookup ignores a
// section's column offset on its first line and applies it on every line.
type sourceMap struct {
	sections []mapSection // by offset, last first
}

type mapSection struct {
	line, col int // 0-based offset of the section in the generated file
	c         *sourcemap.Consumer
}

func parseSourceMap(data []byte) (*sourceMap, error) {
	var idx struct {
		Sections []struct {
			Offset struct {
				Line   int `json:"line"`
				Column int `json:"column"`
			} `json:"offset"`
			Map json.RawMessage `json:"map"`
		} `json:"sections"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, err
	}
	if len(idx.Sections) == 0 {
		c, err := sourcemap.Parse("", data)
		if err != nil {
			return nil, err
		}
		return &sourceMap{sections: []mapSection{{c: c}}}, nil
	}
	m := &sourceMap{}
	for i := len(idx.Sections) - 1; i >= 0; i-- {
		sec := idx.Sections[i]
		if len(sec.Map) == 0 || sec.Map[0] != '{' {
			continue // a section by "url" is not supported
		}
		c, err := sourcemap.Parse("", sec.Map)
		if err != nil {
			return nil, err
		}
		m.sections = append(m.sections, mapSection{line: sec.Offset.Line, col: sec.Offset.Column, c: c})
	}
	return m, nil
}

// Source maps a generated position (line 1-based, column 0-based) to the
// original source, name, line (1-based) and column (0-based).
func (m *sourceMap) Source(line, col int) (source, name string, oline, ocol int, ok bool) {
	l0 := line - 1
	for _, s := range m.sections {
		if s.line > l0 || (s.line == l0 && s.col > col) {
			continue
		}
		if s.line == l0 {
			col -= s.col
		}
		return s.c.Source(l0-s.line+1, col)
	}
	return "", "", 0, 0, false
}

// SourceContent is a source's sourcesContent.
func (m *sourceMap) SourceContent(source string) string {
	for _, s := range m.sections {
		if c := s.c.SourceContent(source); c != "" {
			return c
		}
	}
	return ""
}
