package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// vmHWM is a process's peak resident set (VmHWM in /proc/PID/status).
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the process status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// The reviewer's hostile Graphite queries, each a single unauthenticated
// GET that took the process past 3 GB, are answered (400 with the reason,
// before anything is read) and the shiploop process's peak RSS stays under
// 300 MiB through all of them; a legitimate query still answers 200.
func TestGraphiteHostileQueriesBoundedMemory(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the process's peak RSS")
	}
	const limit = 300 << 20
	carbon := freeTCPUDP(t)
	p := startProcess(t, "shiploop up", binary, "up", "--json", "--data-dir", t.TempDir(), "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0",
		"--carbon-listen", carbon, "--pickle-listen", "127.0.0.1:0")
	var inst instance
	line := p.waitLine(t, p.stdout, "its ready line", func(string) bool { return true }, 30*time.Second)
	if err := json.Unmarshal([]byte(line), &inst); err != nil {
		t.Fatalf("ready line %q: %v", line, err)
	}
	pid := p.cmd.Process.Pid
	t.Logf("VmHWM after start: %d MiB", vmHWM(t, pid)>>20)

	// A few series matching a.*.*.*, a point every 10 s for the last hour.
	c, err := net.Dial("tcp", carbon)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	var b strings.Builder
	for _, n := range []string{"a.b.c.d", "a.x.y.z", "a.q.r.s", "a.e.f.g"} {
		for ts := now - 3600; ts <= now; ts += 10 {
			fmt.Fprintf(&b, "%s %d %d\n", n, ts%97, ts)
		}
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	client := &http.Client{Timeout: 60 * time.Second}
	get := func(q string) (int, string, time.Duration) {
		start := time.Now()
		resp, err := client.Get(inst.HTTPURL + "/graphite/render?" + q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), time.Since(start)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body, _ := get("target=a.*.*.*&from=-10min&format=json")
		if code == 200 && strings.Count(body, `"target"`) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the four series never answered: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}

	nest := strings.Repeat("movingAverage(", 60) + "a.*.*.*" + strings.Repeat(",2)", 60)
	for _, c := range []struct {
		name, query string
		want        string // in a 400's body
	}{
		{"absolute huge until", "target=a.b.c.d&from=0&until=9999999999999", "the query reads 2777777777 points (limit 20000000)"},
		{"moving window of 1e8 points", "target=" + url.QueryEscape("movingAverage(a.*.*.*,100000000)"), "movingAverage window of 100000000 points"},
		{"hitcount 1s over 20y", "target=" + url.QueryEscape(`hitcount(a.*.*.*,"1s")`) + "&from=-20y", `hitcount bucket "1s" over 20y gives`},
		{"summarize 1s over 100y, maxDataPoints 1e9", "target=" + url.QueryEscape(`summarize(a.*.*.*,"1s","sum")`) + "&from=-100y&maxDataPoints=1e9", `summarize bucket "1s" over 100y gives`},
		{"movingAverage nested 60 deep over a year", "target=" + url.QueryEscape(nest) + "&from=-1y", "nests function calls 60 deep (limit 32)"},
	} {
		code, body, took := get(c.query)
		hwm := vmHWM(t, pid)
		t.Logf("%s: %d in %s, VmHWM %d MiB: %.200s", c.name, code, took.Round(time.Millisecond), hwm>>20, strings.TrimSpace(body))
		if code != http.StatusBadRequest || !strings.Contains(body, "query too expensive") || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %.300s, want 400 saying %q", c.name, code, body, c.want)
		}
		if hwm >= limit {
			t.Errorf("%s: peak RSS %d MiB, want under %d MiB", c.name, hwm>>20, limit>>20)
		}
	}
	// The legitimate parts of the same shapes answer, quickly.
	for _, q := range []string{
		"target=a.b.c.d&from=-1h&until=now",
		"target=" + url.QueryEscape("movingAverage(a.*.*.*,10)") + "&from=-1h",
		"target=" + url.QueryEscape(`hitcount(a.*.*.*,"1min")`) + "&from=-1d",
		"target=" + url.QueryEscape(`summarize(a.*.*.*,"1h","sum")`) + "&from=-1y&maxDataPoints=1e9",
		"target=" + url.QueryEscape(strings.Repeat("movingAverage(", 30)+"a.*.*.*"+strings.Repeat(`,"1min")`, 30)) + "&from=-1y",
	} {
		code, body, took := get(q)
		hwm := vmHWM(t, pid)
		t.Logf("%s: %d in %s, VmHWM %d MiB", q, code, took.Round(time.Millisecond), hwm>>20)
		if code != 200 || !strings.Contains(body, `"datapoints"`) || took > 5*time.Second {
			t.Errorf("%s: %d after %s: %.300s, want 200 with series", q, code, took, body)
		}
		if hwm >= limit {
			t.Errorf("%s: peak RSS %d MiB, want under %d MiB", q, hwm>>20, limit>>20)
		}
	}
}
