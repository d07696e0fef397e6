package metrics

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/bus"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
	"github.com/shiploop/shiploop/services/metrics/carbon"
)

// The requests Grafana's Graphite data source (public/app/plugins/
// datasource/graphite, Grafana 12, browser mode) sends, as it builds them:
//
//   - setup: GET /version, GET /functions, and "Save & test", a /render of
//     constantLine(100) over -1h with maxDataPoints=300;
//   - the visual editor: POST /metrics/find?from=&until= with the body
//     query=<segments so far>.<*prefix*> (unencoded), and for the first
//     segment GET /tags/autoComplete/tags; the tag editor of seriesByTag:
//     GET /tags/autoComplete/tags?expr=… and /tags/autoComplete/values?
//     expr=…&tag=…[&valuePrefix=] (expr repeated, the tag being edited left
//     out, no time range);
//   - variables: /metrics/find as above, expand(q) as GET /metrics/expand?
//     query=&from=&until=, tag_values(tag, expr…) and tags(expr…) as the
//     autocomplete calls with limit=10000 and the range;
//   - panels: POST /render, form-encoded: each target wrapped in
//     aliasSub(T, "(^.*$)", "\1 <refId>") (Grafana 12; one backslash; #B
//     references expanded from the unwrapped targets; '5m' intervals
//     written '5min'), then from, until, format=json, maxDataPoints.
//     "now-6h" is sent as "-6h", an absolute time as unix seconds (one
//     second earlier for from and later for until when not on a whole
//     minute);
//   - annotations: GET /events/get_data?from=&until=&tags=<space-separated>,
//     or a target rendered with maxDataPoints=100 whose non-null, non-zero
//     points are the annotations.
//
// graphite-web names a wrapped series "<name> <refId>"; Grafana splits the
// name at its last space to find the refId, and the legend is the rest.
type grafanaReq struct {
	what   string // what the user did
	kind   string // render, find, expand, tags, events, functions, version
	method string
	path   string // under the Graphite root
	query  string // raw, as Grafana writes it
	body   string // form body, raw
	// want checks the answer as a Grafana user would see it, with the
	// values graphite-web 1.1.8 answered for this data set.
	want func(t *testing.T, body []byte)
	// hideTagged: Grafana drops graphite-web's _tagged directory from the
	// first segment's list.
	hideTagged bool
	// check: not a request Grafana sends, a check of graphite-web's
	// behaviour counted apart from the replay.
	check bool
}

// replaySet is the replay's data: a 60 s step over the 8 hours up to end.
type replaySet struct {
	start, end, step int64
	series           map[string][]float64
}

func replayData(end int64) replaySet {
	const step = 60
	start := end - 8*3600
	n := int((end - start) / step)
	set := replaySet{start: start, end: end, step: step, series: map[string][]float64{}}
	add := func(name string, f func(i int64) float64) {
		v := make([]float64, n)
		for i := range v {
			v[i] = f((start + int64(i)*step) / step)
		}
		set.series[name] = v
	}
	// i is the minute since the epoch: values are the same for everyone
	// at the same minute.
	add("grafana.web1.cpu", func(i int64) float64 { return float64(10 + i%10) })
	add("grafana.web2.cpu", func(i int64) float64 {
		if i%17 == 0 {
			return math.NaN()
		}
		return float64(20 + i%10)
	})
	add("grafana.db1.cpu", func(i int64) float64 { return float64(30 + i%10) })
	add("grafana.web1.requests.count", func(i int64) float64 { return float64(5 * (i % 1000)) })
	add("grafana.web2.requests.count", func(i int64) float64 { return float64(3 * (i % 1000)) })
	add("disk.used;dc=east;host=web1", func(i int64) float64 { return 100 })
	add("disk.used;dc=east;host=web2", func(i int64) float64 { return 200 })
	add("disk.used;dc=west;host=db1", func(i int64) float64 { return 300 })
	add("net.rx;dc=east;host=web1", func(i int64) float64 { return float64(7 + i%3) })
	return set
}

// replayEvent is one annotation: deploys come through the platform's
// deploy.succeeded events, the others through POST /events.
type replayEvent struct {
	ago              int64 // seconds before now
	repo, rel, env   string
	what, tags, data string
}

// replayGWEvent is an event as graphite-web's POST /events/ takes it.
type replayGWEvent struct {
	What string   `json:"what"`
	Tags []string `json:"tags"`
	When int64    `json:"when"`
	Data string   `json:"data"`
}

var replayEvents = []replayEvent{
	{ago: 3 * 3600, what: "incident", tags: "incident api", data: "pager"},
	{ago: 2 * 3600, repo: "acme/api", rel: "v1.2.0", env: "prod"},
	{ago: 3600, repo: "acme/web", rel: "v3.1", env: "staging"},
	{ago: 1800 + 17, repo: "acme/api", rel: "v1.2.1", env: "staging"},
	{ago: 9 * 3600, what: "old", tags: "deploy", data: "out of range"},
}

// TestGrafanaReplay replays Grafana's Graphite requests against shiploop,
// checks what a Grafana user sees, and, with GRAPHITE_WEB_URL (and
// GRAPHITE_WEB_WHISPER_DIR, GRAPHITE_WEB_DB: graphite-web's database,
// by default graphite.db beside the whisper directory), compares every
// answer with graphite-web's for the same data and annotations.
func TestGrafanaReplay(t *testing.T) {
	gw := os.Getenv("GRAPHITE_WEB_URL")
	ret, _ := ParseRetentions("60s:3d")
	svc, srv := compatServer(t, []Schema{{Name: "replay", Pattern: regexp.MustCompile(`.*`), Archives: ret, Aggregation: "average"}})
	ctx := context.Background()
	// Not astride a minute: both sides must see the same now.
	for time.Now().Unix()%60 > 40 {
		time.Sleep(time.Second)
	}
	now := time.Now().Unix()
	end := now - now%60
	data := replayData(end)
	var pts []carbon.Point
	for name, vals := range data.series {
		for i, v := range vals {
			if !math.IsNaN(v) {
				pts = append(pts, carbon.Point{Name: name, Value: v, Timestamp: data.start + int64(i)*data.step})
			}
		}
	}
	if err := svc.st.Add(ctx, pts); err != nil {
		t.Fatal(err)
	}

	// Annotations: deploys as the platform's events, the rest by the API.
	ob := bus.NewOutbox(svc.db, nil, nil)
	var gwEvents []replayGWEvent
	for _, e := range replayEvents {
		at := now - e.ago
		if e.repo == "" {
			b, _ := json.Marshal(map[string]any{"what": e.what, "tags": e.tags, "when": at, "data": e.data})
			resp, err := http.Post(srv.URL+"/graphite/events", "application/json", strings.NewReader(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("POST /events: %d", resp.StatusCode)
			}
			gwEvents = append(gwEvents, replayGWEvent{e.what, strings.Fields(e.tags), at, e.data})
			continue
		}
		ev := bus.NewEvent("deploy.succeeded", e.repo, e.rel, &eventsv1.DeployFinished{Status: eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED})
		ev.Time = time.Unix(at, 0)
		ev.Header = map[string][]string{}
		ev.Header.Set("ce-environment", e.env)
		if err := ob.InTx(ctx, func(tx *bus.Tx) error { return svc.handleEvent(ctx, tx, ev) }); err != nil {
			t.Fatal(err)
		}
		evs, err := svc.Events(ctx, at, at, nil, false)
		if err != nil || len(evs) != 1 {
			t.Fatalf("the deploy at %d left %d events (%v), want one annotation", at, len(evs), err)
		}
		gwEvents = append(gwEvents, replayGWEvent{evs[0].What, evs[0].Tags, at, evs[0].Data})
	}

	if gw != "" {
		replayFeedGraphiteWeb(t, svc, gw, data, gwEvents)
	}

	reqs := grafanaRequests(now, end)
	var agreed, differed, checks []string
	for _, r := range reqs {
		sbody := replayDo(t, srv.URL+"/graphite", r)
		t.Run(r.what, func(t *testing.T) { r.want(t, sbody) })
		if gw == "" {
			continue
		}
		gbody := replayDo(t, gw, r)
		if os.Getenv("GRAPHITE_REPLAY_DUMP") != "" {
			t.Logf("%s\n  graphite-web: %.600s\n  shiploop:     %.600s", r.what, gbody, sbody)
		}
		if r.hideTagged {
			gbody = dropTagged(gbody)
		}
		msg := replayDiff(r.kind, gbody, sbody)
		switch {
		case r.check && msg != "":
			checks = append(checks, "differed")
			differed = append(differed, fmt.Sprintf("%s (%s %s?%s %s): %s", r.what, r.method, r.path, r.query, r.body, msg))
		case r.check:
			checks = append(checks, "agreed")
		case msg != "":
			differed = append(differed, fmt.Sprintf("%s (%s %s?%s %s): %s", r.what, r.method, r.path, r.query, r.body, msg))
		default:
			agreed = append(agreed, r.what)
		}
	}
	if gw != "" {
		for _, d := range differed {
			t.Logf("DIFFERED %s", d)
		}
		n := len(reqs) - len(checks)
		t.Logf("Grafana replay against graphite-web: %d requests, %d agreed, %d differed; checks beside it: %v", n, len(agreed), n-len(agreed), checks)
	}
}

func replayDo(t *testing.T, base string, r grafanaReq) []byte {
	t.Helper()
	u := base + r.path
	if r.query != "" {
		u += "?" + r.query
	}
	req, err := http.NewRequest(r.method, u, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	c := http.Client{Timeout: 60 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", r.what, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return []byte(fmt.Sprintf("HTTP %d: %s", resp.StatusCode, b))
	}
	return b
}

// grafanaTarget is a panel target as Grafana 12 sends it. datasource.ts
// builds it with the template literal
// `aliasSub(${target.target}, "(^.*$)", "\\1 ${formattedRefId}")`, in
// which \\ is one backslash: the request holds "\1 A" (one backslash),
// which re.sub reads as group 1, so graphite-web names the series
// "<name> A" and Grafana takes the refId from after the last space.
func grafanaTarget(target, refID string) string {
	return fmt.Sprintf(`aliasSub(%s, "(^.*$)", "\1 %s")`, target, refID)
}

// grafanaRender is the body of Grafana's POST /render.
func grafanaRender(from, until string, mdp int, targets ...string) string {
	var parts []string
	for _, t := range targets {
		parts = append(parts, "target="+jsEncodeURIComponent(t))
	}
	parts = append(parts, "from="+jsEncodeURIComponent(from), "until="+jsEncodeURIComponent(until), "format=json")
	if mdp > 0 {
		parts = append(parts, "maxDataPoints="+strconv.Itoa(mdp))
	}
	return strings.Join(parts, "&")
}

// jsEncodeURIComponent escapes as JavaScript's encodeURIComponent.
func jsEncodeURIComponent(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// params as Grafana's backend_srv writes them: keys in order, arrays
// repeated.
func grafanaParams(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, jsEncodeURIComponent(kv[i])+"="+jsEncodeURIComponent(kv[i+1]))
	}
	return strings.Join(parts, "&")
}

type replaySeries struct {
	Target     string            `json:"target"`
	Tags       map[string]any    `json:"tags"`
	Datapoints [][2]*json.Number `json:"datapoints"`
}

func decodeRender(t *testing.T, body []byte) []replaySeries {
	t.Helper()
	var out []replaySeries
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("render answer %.300s: %v", body, err)
	}
	return out
}

// legend is what Grafana shows: the name before the last space (the
// refId after it).
func legend(s replaySeries) (string, string) {
	i := strings.LastIndexByte(s.Target, ' ')
	if i < 0 {
		return s.Target, ""
	}
	return s.Target[:i], s.Target[i+1:]
}

func seriesNames(l []replaySeries) []string {
	var n []string
	for _, s := range l {
		n = append(n, s.Target)
	}
	return n
}

// values are the series' values (NaN for null) and its first and last
// timestamps.
func values(s replaySeries) (vals []float64, first, last int64) {
	for i, p := range s.Datapoints {
		ts, _ := strconv.ParseInt(p[1].String(), 10, 64)
		if i == 0 {
			first = ts
		}
		last = ts
		v := math.NaN()
		if p[0] != nil {
			v, _ = strconv.ParseFloat(p[0].String(), 64)
		}
		vals = append(vals, v)
	}
	return
}

func wantJSON(want string) func(t *testing.T, body []byte) {
	return func(t *testing.T, body []byte) {
		t.Helper()
		var g, w any
		if err := json.Unmarshal(body, &g); err != nil {
			t.Fatalf("answer %.300s: %v", body, err)
		}
		if err := json.Unmarshal([]byte(want), &w); err != nil {
			t.Fatalf("expectation %s: %v", want, err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("answer %s\nwant    %s", body, want)
		}
	}
}

// wantSeries checks the names as sent (Grafana 12 legends are the part
// before the refId), the name tags, the point count (-1: not checked) and every value
// through f of the name tag and time (nil: not checked).
func wantSeries(targets, nameTags []string, points int, f func(name string, ts int64) float64) func(t *testing.T, body []byte) {
	return func(t *testing.T, body []byte) {
		t.Helper()
		got := decodeRender(t, body)
		var tags []string
		for _, s := range got {
			tags = append(tags, fmt.Sprint(s.Tags["name"]))
		}
		if !reflect.DeepEqual(seriesNames(got), targets) || !reflect.DeepEqual(tags, nameTags) {
			t.Fatalf("series %q named %q, want %q named %q", seriesNames(got), tags, targets, nameTags)
		}
		for _, s := range got {
			vals, first, _ := values(s)
			if points >= 0 && len(vals) != points {
				t.Errorf("%s: %d points, want %d", s.Target, len(vals), points)
			}
			if f == nil || len(vals) < 2 {
				continue
			}
			step, _ := strconv.ParseInt(s.Datapoints[1][1].String(), 10, 64)
			step -= first
			name := fmt.Sprint(s.Tags["name"])
			for i, v := range vals {
				ts := first + int64(i)*step
				w := f(name, ts)
				if !(math.IsNaN(w) && math.IsNaN(v)) && math.Abs(w-v) > 1e-6*math.Max(1, math.Abs(w)) {
					t.Errorf("%s (%s) at %d: %v, want %v", s.Target, name, ts, v, w)
					break
				}
			}
		}
	}
}

// wantEvents checks /events/get_data: the annotations' times (seconds
// before now), titles and tags; data is the deploy event's id or the
// posted text.
func wantEvents(now int64, want ...replayEvent) func(t *testing.T, body []byte) {
	return func(t *testing.T, body []byte) {
		t.Helper()
		var got []GraphiteEvent
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("events %.300s: %v", body, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d events, want %d: %s", len(got), len(want), body)
		}
		for i, w := range want {
			g := got[i]
			what, tags := w.what, w.tags
			if w.repo != "" {
				what = "deploy " + w.repo + " " + w.rel
				tags = "deploy " + strings.ReplaceAll(w.repo, "/", "_") + " " + w.env
			}
			if g.When != now-w.ago || g.What != what || strings.Join(g.Tags, " ") != tags || g.Data == "" || (w.repo == "" && g.Data != w.data) {
				t.Errorf("event %d: %+v, want %q tagged %q at now-%ds", i, g, what, tags, w.ago)
			}
		}
	}
}

func cpu(host string, ts int64) float64 {
	i := ts / 60
	switch host {
	case "web1":
		return float64(10 + i%10)
	case "web2":
		if i%17 == 0 {
			return math.NaN()
		}
		return float64(20 + i%10)
	case "db1":
		return float64(30 + i%10)
	}
	return math.NaN()
}

func grafanaRequests(now, end int64) []grafanaReq {
	find := func(what, q, want string) grafanaReq {
		return grafanaReq{what: what, kind: "find", method: "POST", path: "/metrics/find", query: "from=-6h&until=now", body: "query=" + q, want: wantJSON(want)}
	}
	get := func(what, kind, path, query, want string) grafanaReq {
		return grafanaReq{what: what, kind: kind, method: "GET", path: path, query: query, want: wantJSON(want)}
	}
	render := func(what string, body string, want func(*testing.T, []byte)) grafanaReq {
		return grafanaReq{what: what, kind: "render", method: "POST", path: "/render", body: body, want: want}
	}
	events := func(what, query string, want ...replayEvent) grafanaReq {
		return grafanaReq{what: what, kind: "events", method: "GET", path: "/events/get_data", query: query, want: wantEvents(now, want...)}
	}
	host := func(name string) string { return strings.Split(name, ".")[1] }
	byHost := func(n string, ts int64) float64 { return cpu(host(n), ts) }
	const six = 360 // points over -6h at 60 s
	ev := replayEvents
	editorFirst := find("editor: first segment", "*", `[{"text":"grafana","id":"grafana","allowChildren":1,"expandable":1,"leaf":0},{"text":"shiploop","id":"shiploop","allowChildren":1,"expandable":1,"leaf":0}]`)
	editorFirst.hideTagged = true
	return []grafanaReq{
		// Data source setup and "Save & test".
		{what: "version", kind: "version", method: "GET", path: "/version", want: func(t *testing.T, b []byte) {
			if string(b) != "1.1.8\n" {
				t.Errorf("version %q, want graphite-web's 1.1.8 (Grafana needs 1.1 or later for tags and /functions)", b)
			}
		}},
		{what: "functions", kind: "functions", method: "GET", path: "/functions", want: func(t *testing.T, b []byte) {
			defs := grafanaFuncDefs(t, b)
			for _, f := range []string{"aliasSub", "seriesByTag", "events", "groupByTags", "aliasByTags", "summarize"} {
				if _, ok := defs[f]; !ok {
					t.Errorf("/functions lacks %s", f)
				}
			}
			if _, ok := defs["color"]; ok {
				t.Errorf("Grafana leaves out Graph functions, yet color is there")
			}
			// The editor's dropdowns: options, else suggestions.
			if p := defs["movingAverage"].Params; len(p) < 2 || !p[1].IsSug || strings.Join(p[1].Options, ",") != "5,7,10,1min,5min,10min,30min,1hour" {
				t.Errorf("movingAverage's windowSize: %+v", p)
			}
			if p := defs["timeShift"].Params; len(p) < 2 || strings.Join(p[1].Options, ",") != "1h,6h,12h,1d,2d,7d,14d,30d" {
				t.Errorf("timeShift's timeShift: %+v", p)
			}
		}},
		render("save & test", grafanaRender("-1h", "now", 300, grafanaTarget("constantLine(100)", "A")),
			// re.sub's "\1 A": group 1 (the whole name), a space, the refId.
			wantSeries([]string{"100.0 A"}, []string{"100.0"}, 3, func(string, int64) float64 { return 100 })),

		// The visual editor: segment completion and tags for the first one.
		editorFirst,
		get("editor: tags beside the first segment", "tags", "/tags/autoComplete/tags", "", `["dc","host","name"]`),
		find("editor: second segment", "grafana.*", `[{"text":"db1","id":"grafana.db1","allowChildren":1,"expandable":1,"leaf":0},{"text":"web1","id":"grafana.web1","allowChildren":1,"expandable":1,"leaf":0},{"text":"web2","id":"grafana.web2","allowChildren":1,"expandable":1,"leaf":0}]`),
		find("editor: second segment typed 'we'", "grafana.*we*", `[{"text":"web1","id":"grafana.web1","allowChildren":1,"expandable":1,"leaf":0},{"text":"web2","id":"grafana.web2","allowChildren":1,"expandable":1,"leaf":0}]`),
		find("editor: third segment", "grafana.web1.*", `[{"text":"requests","id":"grafana.web1.requests","allowChildren":1,"expandable":1,"leaf":0},{"text":"cpu","id":"grafana.web1.cpu","allowChildren":0,"expandable":0,"leaf":1}]`),
		find("editor: segment after a variable", "grafana.{web1,web2}.*", `[{"text":"requests","id":"grafana.{web1,web2}.requests","allowChildren":1,"expandable":1,"leaf":0},{"text":"cpu","id":"grafana.{web1,web2}.cpu","allowChildren":0,"expandable":0,"leaf":1}]`),
		get("tag editor: tags for seriesByTag('name=disk.used')", "tags", "/tags/autoComplete/tags", grafanaParams("expr", "name=disk.used"), `["dc","host"]`),
		get("tag editor: tags typed 'h'", "tags", "/tags/autoComplete/tags", grafanaParams("expr", "name=disk.used", "tagPrefix", "h"), `["host"]`),
		get("tag editor: values of dc", "tags", "/tags/autoComplete/values", grafanaParams("expr", "name=disk.used", "tag", "dc"), `["east","west"]`),
		get("tag editor: values of host with dc=east", "tags", "/tags/autoComplete/values", grafanaParams("expr", "name=disk.used", "expr", "dc=east", "tag", "host"), `["web1","web2"]`),
		get("tag editor: values of host typed 'w'", "tags", "/tags/autoComplete/values", grafanaParams("expr", "name=disk.used", "tag", "host", "valuePrefix", "w"), `["web1","web2"]`),
		get("tag editor: names", "tags", "/tags/autoComplete/values", grafanaParams("expr", "dc=east", "tag", "name"), `["disk.used","net.rx"]`),

		// Template variables.
		find("variable: grafana.*", "grafana.*", `[{"text":"db1","id":"grafana.db1","allowChildren":1,"expandable":1,"leaf":0},{"text":"web1","id":"grafana.web1","allowChildren":1,"expandable":1,"leaf":0},{"text":"web2","id":"grafana.web2","allowChildren":1,"expandable":1,"leaf":0}]`),
		get("variable: expand(grafana.*.cpu)", "expand", "/metrics/expand", grafanaParams("query", "grafana.*.cpu", "from", "-6h", "until", "now"), `{"results":["grafana.db1.cpu","grafana.web1.cpu","grafana.web2.cpu"]}`),
		get("variable: tag_values(host, dc=east)", "tags", "/tags/autoComplete/values", grafanaParams("expr", "dc=east", "tag", "host", "limit", "10000", "from", "-6h", "until", "now"), `["web1","web2"]`),
		get("variable: tag_values(dc)", "tags", "/tags/autoComplete/values", grafanaParams("tag", "dc", "limit", "10000", "from", "-6h", "until", "now"), `["east","west"]`),
		get("variable: tags(name=net.rx)", "tags", "/tags/autoComplete/tags", grafanaParams("expr", "name=net.rx", "limit", "10000", "from", "-6h", "until", "now"), `["dc","host"]`),
		render("variable of type metric name: highestAverage(grafana.*.cpu, 2)", grafanaRender("-6h", "now", 0, grafanaTarget("highestAverage(grafana.*.cpu, 2)", "A")),
			wantSeries([]string{"grafana.db1.cpu A", "grafana.web2.cpu A"}, []string{"grafana.db1.cpu", "grafana.web2.cpu"}, six, byHost)),

		// Panels.
		render("panel: grafana.*.cpu and sumSeries(#A)", grafanaRender("-6h", "now", 1227, grafanaTarget("grafana.*.cpu", "A"), grafanaTarget("sumSeries(grafana.*.cpu)", "B")),
			wantSeries([]string{"grafana.db1.cpu A", "grafana.web1.cpu A", "grafana.web2.cpu A", "sumSeries(grafana.*.cpu) B"}, []string{"grafana.db1.cpu", "grafana.web1.cpu", "grafana.web2.cpu", "sumSeries(grafana.*.cpu)"}, six, func(n string, ts int64) float64 {
				if strings.HasPrefix(n, "sumSeries") {
					s := cpu("web1", ts) + cpu("db1", ts)
					if w := cpu("web2", ts); !math.IsNaN(w) {
						s += w
					}
					return s
				}
				return cpu(host(n), ts)
			})),
		render("panel: a multi-value variable", grafanaRender("-6h", "now", 1227, grafanaTarget("aliasByNode(grafana.{web1,web2}.cpu, 1)", "A")),
			wantSeries([]string{"web1 A", "web2 A"}, []string{"grafana.web1.cpu", "grafana.web2.cpu"}, six, byHost)),
		render("panel: maxDataPoints under the points", grafanaRender("-6h", "now", 100, grafanaTarget("grafana.web1.cpu", "A")),
			// 360 points over 100: 4 a point, averaged; the first band
			// nudged away: 90 points.
			wantSeries([]string{"grafana.web1.cpu A"}, []string{"grafana.web1.cpu"}, 90, nil)),
		render("panel: summarize with '1h', movingAverage with '10m'", grafanaRender("-6h", "now", 1227, grafanaTarget("summarize(grafana.web1.cpu, '1h', 'sum')", "A"), grafanaTarget("movingAverage(grafana.web1.cpu, '10min')", "B")),
			wantSeries([]string{`summarize(grafana.web1.cpu, "1h", "sum") A`, `movingAverage(grafana.web1.cpu,"10min") B`}, []string{"grafana.web1.cpu", "grafana.web1.cpu"}, -1, nil)),
		render("panel: counters per second", grafanaRender("-6h", "now", 1227, grafanaTarget("perSecond(grafana.*.requests.count)", "A")),
			wantSeries([]string{"perSecond(grafana.web1.requests.count) A", "perSecond(grafana.web2.requests.count) A"}, []string{"grafana.web1.requests.count", "grafana.web2.requests.count"}, six, func(n string, ts int64) float64 {
				if ts/60%1000 == 0 || ts <= end-6*3600+60 {
					return math.NaN() // the reset, and the first point
				}
				if strings.Contains(n, "web1") {
					return 5.0 / 60
				}
				return 3.0 / 60
			})),
		render("panel: absolute range", grafanaRender(fmt.Sprint(end-3*3600), fmt.Sprint(end-3600), 1227, grafanaTarget("grafana.db1.cpu", "A")),
			wantSeries([]string{"grafana.db1.cpu A"}, []string{"grafana.db1.cpu"}, 120, byHost)),
		render("panel: seriesByTag aliased by host", grafanaRender("-6h", "now", 1227, grafanaTarget("aliasByTags(seriesByTag('name=disk.used', 'dc=east'), 'host')", "A")),
			wantSeries([]string{"web1 A", "web2 A"}, []string{"disk.used", "disk.used"}, six, nil)),
		render("panel: groupByTags(seriesByTag('name=disk.used'), 'sum', 'dc')", grafanaRender("-6h", "now", 1227, grafanaTarget("groupByTags(seriesByTag('name=disk.used'), 'sum', 'dc')", "A")),
			wantSeries([]string{"disk.used;dc=east A", "disk.used;dc=west A"}, []string{"disk.used", "disk.used"}, six, func(string, int64) float64 { return 300 })),
		render("panel: seriesByTag with a regex", grafanaRender("-6h", "now", 1227, grafanaTarget("seriesByTag('name=~disk.*', 'host!=web2')", "A")),
			wantSeries([]string{"disk.used;dc=east;host=web1 A", "disk.used;dc=west;host=db1 A"}, []string{"disk.used", "disk.used"}, six, nil)),
		render("panel: Grafana 11 and earlier (no aliasSub)", grafanaRender("-6h", "now", 1227, "aliasByNode(grafana.{web1,web2}.cpu, 1)", "sumSeries(grafana.*.cpu)", "aliasByTags(seriesByTag('name=disk.used', 'dc=east'), 'host')", "groupByTags(seriesByTag('name=disk.used'), 'sum', 'dc')"),
			wantSeries([]string{"web1", "web2", "sumSeries(grafana.*.cpu)", "web1", "web2", "disk.used;dc=east", "disk.used;dc=west"},
				[]string{"grafana.web1.cpu", "grafana.web2.cpu", "sumSeries(grafana.*.cpu)", "disk.used", "disk.used", "disk.used", "disk.used"}, six, nil)),
		// Not Grafana's request: the wrapper with two backslashes, as a
		// reader of datasource.ts may take it. re.sub reads "\\1" as a
		// backslash and a 1, so graphite-web names every series \1 A.
		{what: "check, not sent by Grafana: aliasSub with two backslashes", kind: "render", method: "POST", path: "/render", check: true,
			body: grafanaRender("-6h", "now", 1227, `aliasSub(grafana.*.cpu, "(^.*$)", "\\1 A")`, `aliasSub(sumSeries(grafana.*.cpu), "(^.*$)", "\\1 B")`),
			want: wantSeries([]string{`\1 A`, `\1 A`, `\1 A`, `\1 B`}, []string{"grafana.db1.cpu", "grafana.web1.cpu", "grafana.web2.cpu", "sumSeries(grafana.*.cpu)"}, six, nil)},

		// Annotations.
		events("annotation: tags deploy", "from=-6h&until=now&tags=deploy", ev[1], ev[2], ev[3]),
		events("annotation: tags deploy staging (every tag)", "from=-6h&until=now&tags=deploy%20staging", ev[2], ev[3]),
		events("annotation: no tags", "from=-6h&until=now", ev[0], ev[1], ev[2], ev[3]),
		render("annotation: events('deploy') as a target", grafanaRender("-6h", "now", 100, grafanaTarget(`events("deploy")`, "A")),
			func(t *testing.T, b []byte) {
				// 21600 one-second points summed 216 a point: 100 points,
				// a 1 in the band of each deploy in range.
				wantSeries([]string{`events("deploy") A`}, []string{`events("deploy")`}, 100, nil)(t, b)
				got := decodeRender(t, b)
				if len(got) != 1 {
					return
				}
				vals, first, _ := values(got[0])
				var at []int64
				for i, v := range vals {
					if !math.IsNaN(v) {
						if v != 1 {
							t.Errorf("%v events at %d, want 1", v, first+int64(i)*216)
						}
						at = append(at, first+int64(i)*216)
					}
				}
				if len(at) != 3 {
					t.Fatalf("annotations at %v, want the 3 deploys", at)
				}
				for i, e := range ev[1:4] {
					if w := now - e.ago; w < at[i] || w >= at[i]+216 {
						t.Errorf("annotation %d in the band at %d, the deploy is at %d", i, at[i], w)
					}
				}
			}),
	}
}

type grafanaFuncDef struct {
	Group  string
	Params []grafanaParam
}

type grafanaParam struct {
	Name, Type        string
	Required, Multi   bool
	Options           []string
	Default           string
	HasDefault, IsSug bool
}

// grafanaFuncDefs reads /functions as Grafana's parseFuncDefs does:
// Infinity defaults made 1e9999, Graph functions left out, options or
// else suggestions as strings.
func grafanaFuncDefs(t *testing.T, b []byte) map[string]grafanaFuncDef {
	t.Helper()
	fixed := regexp.MustCompile(`"default": ?Infinity`).ReplaceAll(b, []byte(`"default": 1e9999`))
	var raw map[string]struct {
		Group  string `json:"group"`
		Params []struct {
			Name        string `json:"name"`
			Type        string `json:"type"`
			Required    bool   `json:"required"`
			Multiple    bool   `json:"multiple"`
			Options     []any  `json:"options"`
			Suggestions []any  `json:"suggestions"`
			Default     any    `json:"default"`
		} `json:"params"`
	}
	d := json.NewDecoder(strings.NewReader(string(fixed)))
	d.UseNumber()
	if err := d.Decode(&raw); err != nil {
		t.Fatalf("/functions: %v in %.200s", err, b)
	}
	str := func(v any) string {
		switch x := v.(type) {
		case json.Number:
			f, err := x.Float64()
			if err == nil {
				return strconv.FormatFloat(f, 'g', -1, 64)
			}
			return "Infinity"
		case nil:
			return "null"
		}
		return fmt.Sprint(v)
	}
	out := map[string]grafanaFuncDef{}
	for name, f := range raw {
		if f.Group == "Graph" {
			continue
		}
		def := grafanaFuncDef{Group: f.Group}
		for _, p := range f.Params {
			gp := grafanaParam{Name: p.Name, Type: p.Type, Required: p.Required, Multi: p.Multiple, HasDefault: p.Default != nil}
			if p.Default != nil {
				gp.Default = str(p.Default)
			}
			opts := p.Options
			if len(opts) == 0 {
				opts, gp.IsSug = p.Suggestions, len(p.Suggestions) > 0
			}
			for _, o := range opts {
				gp.Options = append(gp.Options, str(o))
			}
			def.Params = append(def.Params, gp)
		}
		out[name] = def
	}
	return out
}

// replayDiff compares graphite-web's answer with shiploop's as Grafana
// reads it; "" when the same.
func replayDiff(kind string, g, s []byte) string {
	gerr, serr := strings.HasPrefix(string(g), "HTTP "), strings.HasPrefix(string(s), "HTTP ")
	switch {
	case gerr && serr:
		return ""
	case gerr || serr:
		return fmt.Sprintf("graphite-web %.200s, shiploop %.200s", g, s)
	}
	switch kind {
	case "render":
		return diffRender(g, s)
	case "version":
		if string(g) != string(s) {
			return fmt.Sprintf("version %q, graphite-web %q", s, g)
		}
		return ""
	case "functions":
		var t testing.T
		gd, sd := grafanaFuncDefs(&t, g), grafanaFuncDefs(&t, s)
		var d []string
		for name, f := range gd {
			sf, ok := sd[name]
			if !ok {
				d = append(d, name+" missing")
				continue
			}
			if !reflect.DeepEqual(f, sf) {
				d = append(d, fmt.Sprintf("%s: %+v, graphite-web %+v", name, sf, f))
			}
		}
		for name := range sd {
			if _, ok := gd[name]; !ok {
				d = append(d, name+" not in graphite-web")
			}
		}
		sort.Strings(d)
		if len(d) > 0 {
			return fmt.Sprintf("%d functions differ: %s", len(d), strings.Join(d[:min(len(d), 8)], "; "))
		}
		return ""
	case "events":
		var gv, sv []map[string]any
		if err := json.Unmarshal(g, &gv); err != nil {
			return "graphite-web: " + err.Error()
		}
		if err := json.Unmarshal(s, &sv); err != nil {
			return "shiploop: " + err.Error()
		}
		// Row ids are each database's own; Grafana does not read them.
		for _, l := range [][]map[string]any{gv, sv} {
			for _, e := range l {
				delete(e, "id")
			}
		}
		if !reflect.DeepEqual(gv, sv) {
			return fmt.Sprintf("%s, graphite-web %s", s, g)
		}
		return ""
	}
	var gv, sv any
	if json.Unmarshal(g, &gv) != nil || json.Unmarshal(s, &sv) != nil || !reflect.DeepEqual(gv, sv) {
		return fmt.Sprintf("%s, graphite-web %s", s, g)
	}
	return ""
}

// dropTagged leaves _tagged out of a /metrics/find answer, as Grafana's
// editor does.
func dropTagged(b []byte) []byte {
	var l []map[string]any
	if json.Unmarshal(b, &l) != nil {
		return b
	}
	out := []map[string]any{}
	for _, e := range l {
		if e["text"] != "_tagged" {
			out = append(out, e)
		}
	}
	nb, _ := json.Marshal(out)
	return nb
}

// replayFeedGraphiteWeb gives graphite-web what shiploop holds: every
// series as a whisper file (tagged ones where its finder looks, registered
// in its tag database) and the same events (its events table emptied
// first).
func replayFeedGraphiteWeb(t *testing.T, svc *Service, gw string, data replaySet, events []replayGWEvent) {
	t.Helper()
	dir := os.Getenv("GRAPHITE_WEB_WHISPER_DIR")
	if dir == "" {
		t.Fatal("GRAPHITE_WEB_WHISPER_DIR must name the whisper directory the graphite-web at GRAPHITE_WEB_URL reads")
	}
	for _, d := range []string{"oracle", "grafana", "disk", "net", "shiploop", "_tagged"} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	const keep = 3 * 24 * 3600
	var tagged url.Values = url.Values{}
	for _, name := range svc.st.Names() {
		s, err := svc.st.Read(ctx, name, data.start-data.step, data.end)
		if err != nil || s == nil {
			t.Fatalf("reading %s back: %v", name, err)
		}
		path := filepath.Join(dir, strings.ReplaceAll(name, ".", "/")+".wsp")
		if strings.Contains(name, ";") {
			h := sha256.Sum256([]byte(name))
			x := hex.EncodeToString(h[:])
			path = filepath.Join(dir, "_tagged", x[:3], x[3:6], strings.ReplaceAll(name, ".", "_DOT_")+".wsp")
			tagged.Add("path", name)
		}
		if err := writeWhisper(path, s.Start, s.Step, keep/s.Step, s.Values); err != nil {
			t.Fatal(err)
		}
	}
	if len(tagged) > 0 {
		resp, err := http.PostForm(gw+"/tags/tagMultiSeries", tagged)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("graphite-web tagMultiSeries: %d %s", resp.StatusCode, b)
		}
	}
	dbPath := os.Getenv("GRAPHITE_WEB_DB")
	if dbPath == "" {
		dbPath = filepath.Join(filepath.Dir(filepath.Clean(dir)), "graphite.db")
	}
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{`DELETE FROM events_event`, `DELETE FROM tagging_taggeditem`} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("emptying graphite-web's events (%s): %v", dbPath, err)
		}
	}
	for _, e := range events {
		b, _ := json.Marshal(e)
		resp, err := http.Post(gw+"/events/", "application/json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("graphite-web POST /events/: %d %s", resp.StatusCode, rb)
		}
	}
}
