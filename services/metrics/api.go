package metrics

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shiploop/shiploop/services/metrics/render"
)

// Version is what /version answers: graphite-web's, 1.1.8, whose API this
// one is (1.1 or later makes Grafana use tags and /functions).
const Version = "1.1.8"

// Routes registers the Graphite API under /graphite/, each with and without
// a trailing slash.
func (s *Service) Routes(mux *http.ServeMux) {
	h := map[string]http.HandlerFunc{
		"render":                   s.handleRender,
		"metrics/find":             s.handleFind,
		"metrics/expand":           s.handleExpand,
		"metrics/index.json":       s.handleIndex,
		"tags":                     s.handleTags,
		"tags/autoComplete/tags":   s.handleAutoTags,
		"tags/autoComplete/values": s.handleAutoValues,
		"tags/findSeries":          s.handleFindSeries,
		"functions":                s.handleFunctions,
		"version":                  s.handleVersion,
		"events":                   s.handleEvents,
		"events/get_data":          s.handleEventsGet,
	}
	for p, f := range h {
		mux.HandleFunc("/graphite/"+p, f)
		mux.HandleFunc("/graphite/"+p+"/", f)
	}
	// /tags/<tag> answers the tag's values.
	mux.HandleFunc("/graphite/tags/{tag}", s.handleTagValues)
}

// params merges the query string and a form body, as graphite-web's
// request.GET + request.POST.
func params(r *http.Request) (map[string][]string, error) {
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(nil, r.Body, 4<<20)
		if err := r.ParseForm(); err != nil {
			return nil, fmt.Errorf("reading the form: %w", err)
		}
		return r.Form, nil
	}
	return r.URL.Query(), nil
}

func first(p map[string][]string, k string) string {
	if v := p[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Service) timeRange(p map[string][]string) (int64, int64, error) {
	now := s.st.now()
	from, until := now.Add(-24*time.Hour), now
	var err error
	if v := first(p, "from"); v != "" {
		if from, err = render.ParseTime(v, now, time.UTC); err != nil {
			return 0, 0, fmt.Errorf("from: %w", err)
		}
	}
	if v := first(p, "until"); v != "" {
		if until, err = render.ParseTime(v, now, time.UTC); err != nil {
			return 0, 0, fmt.Errorf("until: %w", err)
		}
	}
	if !until.After(from) {
		return 0, 0, fmt.Errorf("until (%s) must be after from (%s)", until.UTC().Format(time.RFC3339), from.UTC().Format(time.RFC3339))
	}
	return from.Unix(), until.Unix(), nil
}

// Query evaluates targets over [from, until): the one path the HTTP API and
// gRPC share.
func (s *Service) Query(ctx context.Context, targets []string, from, until int64) ([]*render.Series, error) {
	return s.query(ctx, targets, from, until, 0)
}

// query is Query with the render request's xFilesFactor.
func (s *Service) query(ctx context.Context, targets []string, from, until int64, xff float64) ([]*render.Series, error) {
	var out []*render.Series
	now := s.st.now().Unix()
	f := fetcher{st: s.st, maxSeries: s.cfg.MaxSeries, maxPoints: int64(s.cfg.MaxPoints), now: now, events: s.eventTimes, ctx: ctx}
	req := render.Request{From: from, Until: until, Now: now, Fetch: f, XFilesFactor: xff,
		Limits: render.Limits{MaxSeries: s.cfg.MaxSeries, MaxPoints: s.cfg.MaxPoints}}
	// Every target is costed before any is evaluated.
	exprs, kept, err := s.parseTargets(ctx, req, f, targets)
	if err != nil {
		return nil, err
	}
	for i, e := range exprs {
		list, err := render.Eval(ctx, req, e)
		if err != nil {
			return nil, fmt.Errorf("target %q: %w", kept[i], err)
		}
		out = append(out, list...)
	}
	return out, nil
}

func (s *Service) handleRender(w http.ResponseWriter, r *http.Request) {
	p, err := params(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	from, until, err := s.timeRange(p)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	targets := p["target"]
	mdp := 0
	if v := first(p, "maxDataPoints"); v != "" {
		// 1e9 is a number too; anything over the limit is the limit.
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || math.IsNaN(f) {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("maxDataPoints %q must be a positive integer", v))
			return
		}
		mdp = s.clampMaxDataPoints(int64(min(f, math.MaxInt32)))
	}
	var xff float64
	if v := first(p, "xFilesFactor"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("xFilesFactor %q must be a number", v))
			return
		}
		xff = f
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	data, err := s.query(ctx, targets, from, until, xff)
	if err != nil {
		switch {
		case render.IsBadRequest(err):
			httpError(w, http.StatusBadRequest, err.Error())
		case errors.Is(err, context.DeadlineExceeded):
			httpError(w, http.StatusServiceUnavailable, s.timedOut())
		default:
			s.log.Error("render failed", "targets", targets, "err", err)
			httpError(w, http.StatusInternalServerError, "render failed: "+err.Error())
		}
		return
	}
	_, noNull := p["noNullPoints"]
	switch format := first(p, "format"); format {
	case "", "json":
		w.Header().Set("Content-Type", "application/json")
		writeRenderJSON(w, data, mdp, noNull)
	case "csv":
		w.Header().Set("Content-Type", "text/csv")
		for _, sr := range data {
			vals := sr.Points()
			for i, v := range vals {
				ts := time.Unix(sr.Start+int64(i)*sr.Step*int64(max(1, sr.ValuesPerPoint)), 0).UTC().Format("2006-01-02 15:04:05")
				val := ""
				if !math.IsNaN(v) {
					val = pyFloat(v)
				}
				fmt.Fprintf(w, "%s,%s,%s\n", sr.Name, ts, val)
			}
		}
	case "raw":
		w.Header().Set("Content-Type", "text/plain")
		for _, sr := range data {
			vals := sr.Points()
			parts := make([]string, len(vals))
			for i, v := range vals {
				if math.IsNaN(v) {
					parts[i] = "None"
				} else {
					parts[i] = pyFloat(v)
				}
			}
			fmt.Fprintf(w, "%s,%d,%d,%d|%s\n", sr.Name, sr.Start, sr.Stop, sr.Step, strings.Join(parts, ","))
		}
	case "pickle":
		w.Header().Set("Content-Type", "application/pickle")
		_ = writeRenderPickle(w, data)
	default:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("format %q is not supported (json, csv, raw or pickle)", format))
	}
}

// consolidateForMaxPoints applies graphite-web's maxDataPoints rule,
// including its "nudge" that aligns buckets across refreshes.
func consolidateForMaxPoints(data []*render.Series, mdp int) {
	if mdp <= 0 || len(data) == 0 {
		return
	}
	start, end := data[0].Start, data[0].Stop
	for _, sr := range data {
		start, end = min(start, sr.Start), max(end, sr.Stop)
	}
	timeRange := end - start
	for _, sr := range data {
		if sr.Step <= 0 {
			continue
		}
		if mdp == 1 {
			sr.ValuesPerPoint = max(1, len(sr.Values))
			continue
		}
		n := float64(timeRange) / float64(sr.Step)
		if float64(mdp) >= n {
			continue
		}
		vpp := int(math.Ceil(n / float64(mdp)))
		spp := int64(vpp) * sr.Step
		nudge := spp + mod(sr.Start, sr.Step) - mod(sr.Start, spp)
		sr.Start += nudge
		lose := int(nudge / sr.Step)
		for i := 1; i < lose && len(sr.Values) > 0; i++ {
			sr.Values = sr.Values[1:]
		}
		sr.ValuesPerPoint = vpp
	}
}

func writeRenderJSON(w io.Writer, data []*render.Series, mdp int, noNull bool) {
	consolidateForMaxPoints(data, mdp)
	// Written as it goes, not built whole first: a 20M-point answer is
	// 500 MB of JSON.
	b := bufio.NewWriterSize(w, 64<<10)
	defer b.Flush()
	b.WriteByte('[')
	firstSeries := true
	for _, sr := range data {
		vals := sr.Points()
		step := sr.Step * int64(max(1, sr.ValuesPerPoint))
		var pts bytes.Buffer
		n := 0
		for i, v := range vals {
			ts := sr.Start + int64(i)*step
			if ts > sr.Stop {
				break
			}
			if noNull && math.IsNaN(v) {
				continue
			}
			if n > 0 {
				pts.WriteString(", ")
			}
			n++
			pts.WriteByte('[')
			pts.WriteString(jsonFloat(v))
			pts.WriteString(", ")
			pts.WriteString(strconv.FormatInt(ts, 10))
			pts.WriteByte(']')
		}
		if noNull && n == 0 {
			continue
		}
		if !firstSeries {
			b.WriteString(", ")
		}
		firstSeries = false
		name, _ := json.Marshal(sr.Name)
		tags := sr.Tags
		if tags == nil || tags["name"] == "" {
			tags = map[string]string{"name": sr.Name}
			for k, v := range sr.Tags {
				if v != "" {
					tags[k] = v
				}
			}
		}
		tj, _ := json.Marshal(tags)
		fmt.Fprintf(b, `{"target": %s, "tags": %s, "datapoints": [%s]}`, name, tj, pts.Bytes())
	}
	b.WriteByte(']')
}

// jsonFloat writes null for NaN and 1e9999 for infinity, as graphite-web.
func jsonFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "null"
	case math.IsInf(v, 1):
		return "1e9999"
	case math.IsInf(v, -1):
		return "-1e9999"
	}
	return pyFloat(v)
}

// pyFloat prints a float like Python's repr (2.0, 0.1, 1e+20).
func pyFloat(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e16 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// intParam reads an integer flag as graphite-web's queryParamAsInt and
// int() do: absent or unparsable is def.
func intParam(p map[string][]string, k string, def int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(first(p, k))); err == nil {
		return n
	}
	return def
}

// handleFind answers /metrics/find as graphite-web 1.1.8's find_view:
// matches sorted by name; treejson names each node once (branches, then
// leaves) with an id built from the query's prefix ("app.db.*.*" gives
// "app.db.*.cpu"), plus a "*" node with wildcards=1; leavesOnly drops
// branches; completer and nodelist formats.
func (s *Service) handleFind(w http.ResponseWriter, r *http.Request) {
	p, err := params(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	q := first(p, "query")
	if q == "" {
		httpError(w, http.StatusBadRequest, "missing parameter query (e.g. query=servers.*)")
		return
	}
	format := first(p, "format")
	if format == "" {
		format = "treejson"
	}
	leavesOnly := intParam(p, "leavesOnly", 0) != 0
	wildcards := intParam(p, "wildcards", 0) != 0
	basePath := ""
	if i := strings.LastIndexByte(q, '.'); i >= 0 {
		basePath = q[:i+1]
	}
	if format == "completer" {
		q = strings.ReplaceAll(q, "..", "*.")
		if !strings.HasSuffix(q, "*") {
			q += "*"
		}
	}
	res, err := s.st.Find(q, s.cfg.MaxSeries)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	// One node per (path, kind), as graphite-web's finder yields them: a
	// path that is both a series and a prefix of others is two nodes.
	type findNode struct {
		path, name string
		leaf       bool
	}
	var nodes []findNode
	for _, f := range res {
		if f.Branch && !leavesOnly {
			nodes = append(nodes, findNode{f.Path, f.Name, false})
		}
		if f.Leaf {
			nodes = append(nodes, findNode{f.Path, f.Name, true})
		}
	}
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].name < nodes[j].name })
	type tree struct {
		Text          string `json:"text"`
		ID            string `json:"id"`
		AllowChildren int    `json:"allowChildren"`
		Expandable    int    `json:"expandable"`
		Leaf          int    `json:"leaf"`
	}
	switch format {
	case "completer":
		type m struct {
			Path   string `json:"path,omitempty"`
			Name   string `json:"name"`
			IsLeaf string `json:"is_leaf,omitempty"`
		}
		out := []m{}
		for _, n := range nodes {
			if n.leaf {
				out = append(out, m{n.path, n.name, "1"})
			} else {
				out = append(out, m{n.path + ".", n.name, "0"})
			}
		}
		if len(out) > 1 && wildcards {
			out = append(out, m{Name: "*"})
		}
		writeJSON(w, map[string]any{"metrics": out})
	case "nodelist":
		pos := intParam(p, "position", -1)
		set := map[string]bool{}
		for _, n := range nodes {
			parts := strings.Split(n.path, ".")
			i := pos
			if i < 0 {
				i += len(parts)
			}
			if i < 0 || i >= len(parts) {
				httpError(w, http.StatusBadRequest, fmt.Sprintf("position %d is outside %s", pos, n.path))
				return
			}
			set[parts[i]] = true
		}
		out := []string{}
		for k := range set {
			out = append(out, k)
		}
		sort.Strings(out)
		writeJSON(w, map[string]any{"nodes": out})
	case "treejson":
		out := []tree{}
		if len(nodes) > 1 && wildcards {
			wc := tree{"*", basePath + "*", 0, 0, 1}
			for _, n := range nodes {
				if !n.leaf {
					wc = tree{"*", basePath + "*", 1, 1, 0}
					break
				}
			}
			out = append(out, wc)
		}
		// graphite-web keeps the first node of each name; where a name is
		// both a branch and a leaf its pick is random (the finder's
		// results are shuffled): shiploop lists such a name as both, so
		// that it can be both expanded and graphed.
		seen := map[string]bool{}
		var branches, leaves []tree
		for _, n := range nodes {
			k := n.name
			if n.leaf {
				k += "\x00leaf"
			}
			if seen[k] {
				continue
			}
			seen[k] = true
			if n.leaf {
				leaves = append(leaves, tree{n.name, basePath + n.name, 0, 0, 1})
			} else {
				branches = append(branches, tree{n.name, basePath + n.name, 1, 1, 0})
			}
		}
		out = append(append(out, branches...), leaves...)
		writeJSON(w, out)
	default:
		httpError(w, http.StatusBadRequest, "Invalid value for 'format' parameter")
	}
}

// handleExpand answers /metrics/expand as graphite-web's expand_view: the
// matched paths of all queries, sorted and distinct, or with groupByExpr=1
// each query's own list; leavesOnly=1 keeps series only.
func (s *Service) handleExpand(w http.ResponseWriter, r *http.Request) {
	p, err := params(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	leavesOnly := intParam(p, "leavesOnly", 0) != 0
	groupByExpr := intParam(p, "groupByExpr", 0) != 0
	all := map[string]bool{}
	byQuery := map[string][]string{}
	for _, q := range p["query"] {
		res, err := s.st.Find(q, s.cfg.MaxSeries)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		set := map[string]bool{}
		for _, f := range res {
			if !leavesOnly || f.Leaf {
				set[f.Path] = true
				all[f.Path] = true
			}
		}
		list := make([]string, 0, len(set))
		for k := range set {
			list = append(list, k)
		}
		sort.Strings(list)
		byQuery[q] = list
	}
	if groupByExpr {
		writeJSON(w, map[string]any{"results": byQuery})
		return
	}
	out := []string{}
	for k := range all {
		out = append(out, k)
	}
	sort.Strings(out)
	writeJSON(w, map[string]any{"results": out})
}

func (s *Service) handleIndex(w http.ResponseWriter, r *http.Request) {
	out := []string{}
	for _, n := range s.st.Names() {
		if !strings.Contains(n, ";") {
			out = append(out, n)
		}
	}
	writeJSON(w, out)
}

func limitParam(p map[string][]string, def int) int {
	if n, err := strconv.Atoi(first(p, "limit")); err == nil && n > 0 {
		return n
	}
	return def
}

func (s *Service) handleTags(w http.ResponseWriter, r *http.Request) {
	p, _ := params(r)
	names, err := s.st.TagNames(nil, first(p, "filter"), 0)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	out := []map[string]string{}
	for _, n := range names {
		out = append(out, map[string]string{"tag": n})
	}
	writeJSON(w, out)
}

func (s *Service) handleTagValues(w http.ResponseWriter, r *http.Request) {
	tag := r.PathValue("tag")
	switch tag {
	case "autoComplete", "findSeries", "tagSeries", "tagMultiSeries", "delSeries":
		httpError(w, http.StatusNotFound, "no such endpoint")
		return
	}
	p, _ := params(r)
	vals, counts, err := s.st.TagValues(tag, nil, first(p, "filter"), 0)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	out := []map[string]any{}
	for _, v := range vals {
		out = append(out, map[string]any{"value": v, "count": counts[v]})
	}
	writeJSON(w, map[string]any{"tag": tag, "values": out})
}

func (s *Service) handleAutoTags(w http.ResponseWriter, r *http.Request) {
	p, err := params(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := s.st.TagNames(p["expr"], first(p, "tagPrefix"), limitParam(p, 100))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, out)
}

func (s *Service) handleAutoValues(w http.ResponseWriter, r *http.Request) {
	p, err := params(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	tag := first(p, "tag")
	if tag == "" {
		httpError(w, http.StatusBadRequest, "missing parameter tag")
		return
	}
	out, _, err := s.st.TagValues(tag, p["expr"], first(p, "valuePrefix"), limitParam(p, 100))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, out)
}

func (s *Service) handleFindSeries(w http.ResponseWriter, r *http.Request) {
	p, err := params(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := s.st.FindTagged(p["expr"])
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if out == nil {
		out = []string{}
	}
	writeJSON(w, out)
}

func (s *Service) handleVersion(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, Version+"\n")
}

// handleFunctions answers the shape Grafana's function editor reads, as
// graphite-web 1.1.8 does: {name: {name, function, description, module,
// group, params}}, generated from the render engine's function table. An
// infinite default is written 1e9999, as graphite-web does since its
// "Infinity" was not JSON.
func (s *Service) handleFunctions(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{}
	for _, f := range render.Functions() {
		ps := []map[string]any{}
		sig := []string{}
		for _, p := range f.Params {
			m := map[string]any{"name": p.Name, "type": p.Type}
			if p.Required {
				m["required"] = true
			}
			if p.Multiple {
				m["multiple"] = true
			}
			if p.Default != nil {
				m["default"] = jsonDefault(p.Default)
			}
			if len(p.Options) > 0 {
				m["options"] = p.Options
			}
			if len(p.Suggestions) > 0 {
				m["suggestions"] = p.Suggestions
			}
			ps = append(ps, m)
			sig = append(sig, pySignatureParam(p))
		}
		out[f.Name] = map[string]any{
			"name": f.Name, "function": f.Name + "(" + strings.Join(sig, ", ") + ")", "description": f.Description,
			"module": "shiploop.metrics.render", "group": f.Group, "params": ps,
		}
	}
	writeJSON(w, out)
}

func jsonDefault(v any) any {
	if f, ok := v.(float64); ok && math.IsInf(f, 0) {
		if f > 0 {
			return json.RawMessage("1e9999")
		}
		return json.RawMessage("-1e9999")
	}
	return v
}

// pySignatureParam is a parameter as graphite-web's "function" field
// writes it (the Python signature): *name, name=default, name=None.
func pySignatureParam(p render.ParamInfo) string {
	switch {
	case p.Multiple:
		return "*" + p.Name
	case p.Default != nil:
		switch d := p.Default.(type) {
		case bool:
			if d {
				return p.Name + "=True"
			}
			return p.Name + "=False"
		case string:
			return p.Name + "='" + d + "'"
		case float64:
			if math.IsInf(d, 1) {
				return p.Name + "=inf"
			}
			return p.Name + "=" + strconv.FormatFloat(d, 'g', -1, 64)
		default:
			return fmt.Sprintf("%s=%v", p.Name, d)
		}
	case !p.Required:
		return p.Name + "=None"
	}
	return p.Name
}

// GraphiteEvent is one annotation.
type GraphiteEvent struct {
	ID   int64    `json:"id"`
	When int64    `json:"when"`
	What string   `json:"what"`
	Tags []string `json:"tags"`
	Data string   `json:"data"`
}

func (s *Service) handleEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.handleEventsGet(w, r)
		return
	}
	var in struct {
		What string          `json:"what"`
		Tags json.RawMessage `json:"tags"`
		When *float64        `json:"when"`
		Data string          `json:"data"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(&in); err != nil {
		httpError(w, http.StatusBadRequest, "event body must be JSON {\"what\", \"tags\", \"when\", \"data\"}: "+err.Error())
		return
	}
	if in.What == "" {
		httpError(w, http.StatusBadRequest, "event needs \"what\"")
		return
	}
	var tags []string
	if len(in.Tags) > 0 {
		if err := json.Unmarshal(in.Tags, &tags); err != nil {
			var str string
			if err := json.Unmarshal(in.Tags, &str); err != nil {
				httpError(w, http.StatusBadRequest, "tags must be a list of strings or a space-separated string")
				return
			}
			tags = strings.Fields(str)
		}
	}
	when := s.st.now().Unix()
	if in.When != nil {
		when = int64(*in.When)
	}
	if _, err := s.addEvent(r.Context(), s.db.DB, when, in.What, tags, in.Data, ""); err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

func (s *Service) addEvent(ctx context.Context, db execer, when int64, what string, tags []string, data, eventID string) (sql.Result, error) {
	res, err := db.ExecContext(ctx, `INSERT INTO graphite_events (at, what, tags, data, event_id) VALUES ($1, $2, $3, $4, $5)`,
		when, what, strings.Join(tags, " "), data, eventID)
	if err != nil {
		return nil, fmt.Errorf("storing event: %w", err)
	}
	return res, nil
}

func (s *Service) handleEventsGet(w http.ResponseWriter, r *http.Request) {
	p, err := params(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	// graphite-web reads events from the epoch to now unless told.
	if first(p, "from") == "" {
		p["from"] = []string{"0"}
	}
	from, until, err := s.timeRange(p)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	// Events with every tag unless set=union (graphite-web's with_all;
	// intersection is the same once its unknown-tag matches are dropped).
	evs, err := s.Events(r.Context(), from, until, strings.Fields(strings.Join(p["tags"], " ")), first(p, "set") != "union")
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, evs)
}

// eventTimes are the times of the events in [from, until) with all the
// tags (every event with none), for events().
func (s *Service) eventTimes(ctx context.Context, tags []string, from, until int64) ([]int64, error) {
	evs, err := s.Events(ctx, from, until-1, tags, true)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.When
	}
	return out, nil
}

// Events returns events in [from, until] with any (or, with all, every) of
// tags.
func (s *Service) Events(ctx context.Context, from, until int64, tags []string, all bool) ([]GraphiteEvent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, what, tags, data FROM graphite_events WHERE at >= $1 AND at <= $2 ORDER BY at, id`, from, until)
	if err != nil {
		return nil, fmt.Errorf("reading events: %w", err)
	}
	defer rows.Close()
	out := []GraphiteEvent{}
	for rows.Next() {
		var e GraphiteEvent
		var t string
		if err := rows.Scan(&e.ID, &e.When, &e.What, &t, &e.Data); err != nil {
			return nil, err
		}
		e.Tags = strings.Fields(t)
		if e.Tags == nil {
			e.Tags = []string{}
		}
		if len(tags) > 0 {
			n := 0
			for _, want := range tags {
				for _, have := range e.Tags {
					if have == want {
						n++
						break
					}
				}
			}
			if (all && n < len(tags)) || (!all && n == 0) {
				continue
			}
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
