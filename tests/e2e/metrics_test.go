package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// metricsUp starts `shiploop up` with Carbon on free ports it chose.
func metricsUp(t *testing.T) (inst *instance, carbon, pickle string) {
	t.Helper()
	carbon, pickle = freeTCPUDP(t), freeTCPUDP(t)
	inst = startUp(t, "--carbon-listen", carbon, "--pickle-listen", pickle)
	return inst, carbon, pickle
}

// freeTCPUDP returns a loopback address whose port is free for TCP and UDP.
func freeTCPUDP(t *testing.T) string {
	t.Helper()
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free TCP+UDP port")
	return ""
}

func graphiteGet(t *testing.T, inst *instance, path string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(inst.HTTPURL + "/graphite" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func graphitePost(t *testing.T, inst *instance, path string, form url.Values) (int, string) {
	t.Helper()
	resp, err := http.PostForm(inst.HTTPURL+"/graphite"+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type grafanaSeries struct {
	Target     string            `json:"target"`
	Tags       map[string]string `json:"tags"`
	Datapoints [][2]*float64     `json:"datapoints"`
}

// TestMetricsGrafanaReplay feeds Carbon plaintext over TCP and UDP, then
// replays the requests Grafana's Graphite data source sends (Grafana 12:
// refIds wrapped in aliasSub, form-encoded POST /render, POST /metrics/find,
// tag autocompletion, /functions, annotations from /events/get_data) and
// checks the response shapes Grafana parses.
func TestMetricsGrafanaReplay(t *testing.T) {
	inst, carbon, _ := metricsUp(t)
	now := time.Now().Unix()
	base := now - now%10 - 300
	c, err := net.Dial("tcp", carbon)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var feed strings.Builder
	for i := 0; i < 30; i++ {
		ts := base + int64(i)*10
		fmt.Fprintf(&feed, "servers.web01.cpu.user %d %d\nservers.web02.cpu.user %d %d\n", i, ts, 2*i, ts)
		fmt.Fprintf(&feed, "disk.used;server=web01;datacenter=dc1 %d %d\n", 50+i, ts)
	}
	feed.WriteString("garbage without numbers\n")
	if _, err := io.WriteString(c, feed.String()); err != nil {
		t.Fatal(err)
	}
	u, err := net.Dial("udp", carbon)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(u, "servers.db01.cpu.user 9 %d\n", base)
	u.Close()

	// A new series is findable within a second of its first point.
	deadline := time.Now().Add(time.Second)
	for {
		code, body := graphitePost(t, inst, "/metrics/find?from=-1h&until=now", url.Values{"query": {"servers.*"}})
		if code == 200 && strings.Contains(body, `"text":"web01"`) && strings.Contains(body, `"text":"db01"`) {
			var nodes []map[string]any
			if err := json.Unmarshal([]byte(body), &nodes); err != nil || nodes[0]["expandable"] != float64(1) || nodes[0]["id"] != "servers.db01" {
				t.Fatalf("find treejson: %s (%v)", body, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("servers.* not findable within 1s: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Grafana's health check, then a panel query as Grafana 12 sends it.
	code, body := graphitePost(t, inst, "/render", url.Values{"target": {"constantLine(100)"}, "from": {"-1h"}, "until": {"now"}, "format": {"json"}, "maxDataPoints": {"300"}})
	if code != 200 || !strings.Contains(body, `"target": "100.0"`) { // graphite-web names it str(float)
		t.Fatalf("constantLine health check: %d %s", code, body)
	}
	form := url.Values{
		// Grafana 12 wraps each target so: its source's template literal
		// "\\1 A" sends one backslash.
		"target":        {`aliasSub(sumSeries(servers.web0*.cpu.user), "(^.*$)", "\1 A")`, `aliasSub(seriesByTag('name=disk.used', 'datacenter=dc1'), "(^.*$)", "\1 B")`},
		"from":          {fmt.Sprint(base - 1)},
		"until":         {fmt.Sprint(base + 300)},
		"format":        {"json"},
		"maxDataPoints": {"10"},
	}
	code, body = graphitePost(t, inst, "/render", form)
	var got []grafanaSeries
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil || len(got) != 2 {
		t.Fatalf("render: %d %s", code, body)
	}
	if got[0].Target != "sumSeries(servers.web0*.cpu.user) A" || got[0].Tags["name"] == "" {
		t.Errorf("series A: target %q tags %v", got[0].Target, got[0].Tags)
	}
	if got[1].Target != "disk.used;datacenter=dc1;server=web01 B" || got[1].Tags["name"] != "disk.used" || got[1].Tags["server"] != "web01" {
		t.Errorf("series B: target %q tags %v", got[1].Target, got[1].Tags)
	}
	if n := len(got[0].Datapoints); n > 10 || n < 5 {
		t.Errorf("maxDataPoints=10 gave %d points", n)
	}
	for _, p := range got[0].Datapoints {
		if p[1] == nil {
			t.Fatalf("a datapoint without a timestamp: %v", got[0].Datapoints)
		}
	}

	// noNullPoints drops nulls and empty series; csv has graphite's shape.
	code, body = graphitePost(t, inst, "/render", url.Values{"target": {"servers.db01.cpu.user", "servers.nothing.here"}, "from": {fmt.Sprint(base - 60)}, "until": {fmt.Sprint(base + 60)}, "noNullPoints": {"1"}})
	if code != 200 || !strings.Contains(body, fmt.Sprintf("[[9.0, %d]]", base)) {
		t.Errorf("noNullPoints: %d %s", code, body)
	}
	code, _, body = graphiteGet(t, inst, fmt.Sprintf("/render/?target=servers.web01.cpu.user&from=%d&until=%d&format=csv", base-1, base+20))
	if code != 200 || !strings.HasPrefix(body, "servers.web01.cpu.user,"+time.Unix(base, 0).UTC().Format("2006-01-02 15:04:05")+",0.0\n") {
		t.Errorf("csv: %d %q", code, body)
	}

	// Variables and the tag editor.
	if code, _, body := graphiteGet(t, inst, "/metrics/expand?query=servers.*.cpu.user"); code != 200 || !strings.Contains(body, `"results":["servers.db01.cpu.user","servers.web01.cpu.user","servers.web02.cpu.user"]`) {
		t.Errorf("expand: %d %s", code, body)
	}
	if code, _, body := graphiteGet(t, inst, "/tags/autoComplete/tags?expr=name%3Ddisk.used&limit=10000"); code != 200 || !strings.Contains(body, `"datacenter"`) || !strings.Contains(body, `"server"`) {
		t.Errorf("autoComplete/tags: %d %s", code, body)
	}
	if code, _, body := graphiteGet(t, inst, "/tags/autoComplete/values?tag=server&expr=datacenter%3Ddc1"); code != 200 || strings.TrimSpace(body) != `["web01"]` {
		t.Errorf("autoComplete/values: %d %s", code, body)
	}
	code, _, body = graphiteGet(t, inst, "/functions")
	var funcs map[string]struct {
		Name   string           `json:"name"`
		Group  string           `json:"group"`
		Params []map[string]any `json:"params"`
	}
	// keepLastValue's default is 1e9999 (infinity), as graphite-web writes
	// it: a float64 cannot hold it, a json.Number can.
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	if code != 200 || dec.Decode(&funcs) != nil || funcs["aliasSub"].Name != "aliasSub" || len(funcs["aliasSub"].Params) != 3 || funcs["constantLine"].Group == "" {
		t.Errorf("functions: %d %.300s", code, body)
	}
	if code, _, body := graphiteGet(t, inst, "/version"); code != 200 || !strings.HasPrefix(body, "1.1") {
		t.Errorf("version: %d %q", code, body)
	}

	// Annotations: POST /events/ then get_data with tags, union and intersection.
	post := func(body string) {
		resp, err := http.Post(inst.HTTPURL+"/graphite/events/", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST /events/: %d", resp.StatusCode)
		}
	}
	post(fmt.Sprintf(`{"what": "deploy api v1.2.3", "tags": ["deploy", "api", "prod"], "when": %d, "data": "commit abc123"}`, base))
	post(fmt.Sprintf(`{"what": "deploy web", "tags": "deploy web", "when": %d}`, base+10))
	// graphite-web needs every tag unless set=union.
	code, _, body = graphiteGet(t, inst, fmt.Sprintf("/events/get_data?from=%d&until=%d&tags=deploy%%20prod&set=union", base-10, base+100))
	var evs []struct {
		When int64    `json:"when"`
		What string   `json:"what"`
		Tags []string `json:"tags"`
		Data string   `json:"data"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &evs) != nil || len(evs) != 2 || evs[0].When != base || evs[0].Data != "commit abc123" || len(evs[1].Tags) != 2 {
		t.Errorf("events union: %d %s", code, body)
	}
	for _, set := range []string{"&set=intersection", ""} {
		code, _, body = graphiteGet(t, inst, fmt.Sprintf("/events/get_data?from=%d&until=%d&tags=deploy%%20prod%s", base-10, base+100, set))
		if code != 200 || json.Unmarshal([]byte(body), &evs) != nil || len(evs) != 1 {
			t.Errorf("events intersection (%q): %d %s", set, code, body)
		}
	}

	// Bad input: position, unknown function.
	if code, _, body := graphiteGet(t, inst, "/render?target=sumSeries(servers.*"); code != 400 || !strings.Contains(body, "position") {
		t.Errorf("malformed target: %d %s", code, body)
	}
	if code, _, body := graphiteGet(t, inst, "/render?target=noSuchFunction(servers.*)"); code != 400 || !strings.Contains(body, "noSuchFunction") {
		t.Errorf("unknown function: %d %s", code, body)
	}

	// The CLI asks MetricsService over gRPC.
	out, err := exec.Command(binary, "metrics", "--server", inst.GRPCAddr, "--from", fmt.Sprint(base-1), "--until", fmt.Sprint(base+20), "query", "sumSeries(servers.web0*.cpu.user)").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sumSeries(servers.web0*.cpu.user)") || !strings.Contains(string(out), "  3\n") {
		t.Errorf("shiploop metrics query: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "metrics", "--server", inst.GRPCAddr, "find", "servers.*").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "servers.web02\tbranch") {
		t.Errorf("shiploop metrics find: %v\n%s", err, out)
	}
}

// TestMetricsGrafanaProvisioning checks the provisioning files point a
// Graphite data source at shiploop's /graphite and that the dashboard uses it.
func TestMetricsGrafanaProvisioning(t *testing.T) {
	root := filepath.Join("..", "..", "deploy", "grafana")
	b, err := os.ReadFile(filepath.Join(root, "provisioning", "datasources", "shiploop.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Datasources []struct {
			Type, URL, UID string
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(b, &ds); err != nil || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "graphite" || !strings.HasSuffix(ds.Datasources[0].URL, "/graphite") {
		t.Fatalf("data source: %+v %v", ds, err)
	}
	b, err = os.ReadFile(filepath.Join(root, "dashboards", "shiploop-delivery.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Datasource struct{ UID string } `json:"datasource"`
			Targets    []struct{ Target string }
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil || len(dash.Panels) == 0 {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		if p.Datasource.UID != ds.Datasources[0].UID {
			t.Errorf("panel uses data source %q, want %q", p.Datasource.UID, ds.Datasources[0].UID)
		}
	}
}
