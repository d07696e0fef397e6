package metrics

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/services/metrics/carbon"
)

// TestGraphiteWebOracle holds shiploop's /render against a running
// graphite-web (scripts/graphite-web-oracle.sh) on generated compositions
// over one generated data set with gaps, negatives and counter resets, at
// relative and absolute times, and reports the agreement figure.
//
//	GRAPHITE_WEB_URL=http://127.0.0.1:8181
//	GRAPHITE_WEB_WHISPER_DIR=/tmp/graphite-oracle/whisper (what it reads)
//	GRAPHITE_ORACLE_CASES=300 GRAPHITE_ORACLE_SEED=1
//	GRAPHITE_ORACLE_MIN_AGREED=0.9 (fails under this share; unset: report only)
func TestGraphiteWebOracle(t *testing.T) {
	gw := os.Getenv("GRAPHITE_WEB_URL")
	if gw == "" {
		t.Skip("GRAPHITE_WEB_URL is unset: no graphite-web to compare with (start one with scripts/graphite-web-oracle.sh)")
	}
	dir := os.Getenv("GRAPHITE_WEB_WHISPER_DIR")
	if dir == "" {
		t.Fatal("GRAPHITE_WEB_WHISPER_DIR must name the whisper directory the graphite-web at GRAPHITE_WEB_URL reads")
	}
	n := envInt("GRAPHITE_ORACLE_CASES", 300)
	seed := uint64(envInt("GRAPHITE_ORACLE_SEED", 1))

	const step, keep = 60, 3 * 24 * 3600
	ret, _ := ParseRetentions("60s:3d")
	svc, srv := compatServer(t, []Schema{{Name: "oracle", Pattern: regexp.MustCompile(`.*`), Archives: ret, Aggregation: "average"}})
	now := time.Now().Unix()
	end := now - now%step
	data := oracleData(rand.New(rand.NewPCG(seed, 7)), end-2*24*3600, end, step)
	if err := os.RemoveAll(filepath.Join(dir, "oracle")); err != nil {
		t.Fatal(err)
	}
	var pts []carbon.Point
	for name, vals := range data.series {
		if err := writeWhisper(filepath.Join(dir, strings.ReplaceAll(name, ".", "/")+".wsp"), data.start, step, keep/step, vals); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if !math.IsNaN(v) {
				pts = append(pts, carbon.Point{Name: name, Value: v, Timestamp: data.start + int64(i)*step})
			}
		}
	}
	if err := svc.st.Add(context.Background(), pts); err != nil {
		t.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(seed, 11))
	var agreed, differed, failed int
	byFunc := map[string][]string{}
	for i := 0; i < n; i++ {
		target := genTarget(rng, 0)
		q := url.Values{"target": {target}, "format": {"json"}}
		switch rng.IntN(4) {
		case 0, 1: // relative to now
			q.Set("from", []string{"-1h", "-6h", "-90min", "-1d", "-2d", "-3h"}[rng.IntN(6)])
			if rng.IntN(3) == 0 {
				q.Set("until", "-20min")
			}
		case 2: // absolute, aligned to the step
			from := end - int64(rng.IntN(2*24*60))*step
			q.Set("from", fmt.Sprint(from))
			q.Set("until", fmt.Sprint(min(end, from+int64(30+rng.IntN(600))*step)))
		default: // absolute, anywhere
			from := end - int64(rng.IntN(2*24*3600))
			q.Set("from", fmt.Sprint(from))
			q.Set("until", fmt.Sprint(min(now, from+int64(1800+rng.IntN(36000)))))
		}
		if rng.IntN(4) == 0 {
			q.Set("maxDataPoints", fmt.Sprint([]int{1, 10, 50, 100, 333}[rng.IntN(5)]))
		}
		// Both must see the same now: not astride a step boundary.
		for time.Now().Unix()%step > step-3 {
			time.Sleep(500 * time.Millisecond)
		}
		gcode, gbody := oracleGet(t, gw+"/render?"+q.Encode())
		scode, sbody := oracleGet(t, srv.URL+"/graphite/render?"+q.Encode())
		fn := target[:max(0, strings.IndexByte(target, '('))]
		switch {
		case gcode != 200 && scode != 200:
			agreed++
		case gcode != 200 || scode != 200:
			failed++
			byFunc[fn] = append(byFunc[fn], fmt.Sprintf("FAILED %s: graphite-web %d, shiploop %d %.200s", q.Encode(), gcode, scode, sbody))
		default:
			if msg := diffRender(gbody, sbody); msg != "" {
				differed++
				byFunc[fn] = append(byFunc[fn], fmt.Sprintf("DIFFERED %s: %s", q.Encode(), msg))
			} else {
				agreed++
			}
		}
	}
	keys := make([]string, 0, len(byFunc))
	for k := range byFunc {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(byFunc[keys[i]]) > len(byFunc[keys[j]]) })
	for _, k := range keys {
		t.Logf("%s: %d", k, len(byFunc[k]))
		for _, m := range byFunc[k][:min(3, len(byFunc[k]))] {
			t.Logf("    %s", m)
		}
	}
	t.Logf("graphite-web oracle (seed %d): %d cases, %d agreed, %d differed, %d failed", seed, n, agreed, differed, failed)
	if v := os.Getenv("GRAPHITE_ORACLE_MIN_AGREED"); v != "" {
		if want, _ := strconv.ParseFloat(v, 64); float64(agreed) < want*float64(n) {
			t.Errorf("agreed on %d of %d, under %s", agreed, n, v)
		}
	}
}

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil && n > 0 {
		return n
	}
	return def
}

func oracleGet(t *testing.T, u string) (int, []byte) {
	t.Helper()
	c := http.Client{Timeout: 60 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 599, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type oracleSet struct {
	start  int64
	series map[string][]float64
}

// oracleData makes the data set: gauges with gaps and negatives, counters
// with resets, sparse series, all under oracle.*.
func oracleData(rng *rand.Rand, start, end, step int64) oracleSet {
	n := int((end - start) / step)
	set := oracleSet{start: start, series: map[string][]float64{}}
	gap := func(vals []float64, p float64) {
		for i := 1; i < len(vals); i++ {
			if rng.Float64() < p {
				for j := i; j < min(len(vals), i+1+rng.IntN(20)); j++ {
					vals[j] = math.NaN()
				}
			}
		}
	}
	for _, host := range []string{"web1", "web2", "web3", "db1"} {
		cpu := make([]float64, n)
		lat := make([]float64, n)
		cnt := make([]float64, n)
		temp := make([]float64, n)
		c := 0.0
		for i := range cpu {
			cpu[i] = math.Round((50+40*math.Sin(float64(i)/90)+rng.NormFloat64()*5)*100) / 100
			lat[i] = math.Round(rng.ExpFloat64()*200) / 10
			if rng.IntN(500) == 0 {
				c = 0 // reset
			}
			c += float64(rng.IntN(100))
			cnt[i] = c
			temp[i] = math.Round(rng.NormFloat64()*1000) / 100 // negatives
		}
		gap(cpu, 0.01)
		gap(lat, 0.03)
		gap(cnt, 0.005)
		gap(temp, 0.02)
		set.series["oracle."+host+".cpu"] = cpu
		set.series["oracle."+host+".latency"] = lat
		set.series["oracle."+host+".requests.count"] = cnt
		set.series["oracle."+host+".temp"] = temp
	}
	sparse := make([]float64, n)
	for i := range sparse {
		sparse[i] = math.NaN()
		if i == 0 || rng.IntN(30) == 0 {
			sparse[i] = float64(rng.IntN(10))
		}
	}
	set.series["oracle.batch.jobs"] = sparse
	for name, vals := range set.series {
		if math.IsNaN(vals[0]) {
			vals[0] = 0 // whisper finds its base from the first slot
		}
		_ = name
	}
	return set
}

// writeWhisper writes a one-archive whisper file holding vals from start.
func writeWhisper(path string, start, step, points int64, vals []float64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	buf := make([]byte, 16+12+12*points)
	be := binary.BigEndian
	be.PutUint32(buf[0:], 1) // average
	be.PutUint32(buf[4:], uint32(step*points))
	be.PutUint32(buf[8:], math.Float32bits(0))
	be.PutUint32(buf[12:], 1)
	be.PutUint32(buf[16:], 28)
	be.PutUint32(buf[20:], uint32(step))
	be.PutUint32(buf[24:], uint32(points))
	for i, v := range vals {
		if math.IsNaN(v) {
			continue
		}
		slot := int64(i) % points
		o := 28 + 12*slot
		be.PutUint32(buf[o:], uint32(start+int64(i)*step))
		be.PutUint64(buf[o+4:], math.Float64bits(v))
	}
	return os.WriteFile(path, buf, 0o644)
}

var (
	oracleSources = []string{"oracle.web1.cpu", "oracle.*.cpu", "oracle.web*.latency", "oracle.{web1,db1}.temp", "oracle.web[1-2].requests.count", "oracle.*.requests.count", "oracle.batch.jobs", "oracle.db1.temp"}
	oracleFuncs   = []func(r *rand.Rand, in string) string{
		func(r *rand.Rand, in string) string {
			f := []string{"movingAverage", "movingSum", "movingMin", "movingMax", "movingMedian"}[r.IntN(5)]
			w := []string{"5", "10", "'10min'", "'1h'", "'3min'"}[r.IntN(5)]
			if r.IntN(4) == 0 {
				return fmt.Sprintf("%s(%s,%s,0.%d)", f, in, w, 1+r.IntN(9))
			}
			return fmt.Sprintf("%s(%s,%s)", f, in, w)
		},
		func(r *rand.Rand, in string) string {
			return fmt.Sprintf("%s(%s)", []string{"sumSeries", "averageSeries", "maxSeries", "minSeries", "countSeries", "stddevSeries", "rangeOfSeries", "multiplySeries", "diffSeries"}[r.IntN(9)], in)
		},
		func(r *rand.Rand, in string) string {
			return fmt.Sprintf("%s(%s)", []string{"nonNegativeDerivative", "derivative", "perSecond", "integral", "absolute", "keepLastValue", "transformNull", "changed", "isNonNull", "invert", "squareRoot", "minMax", "offsetToZero", "cumulative"}[r.IntN(14)], in)
		},
		func(r *rand.Rand, in string) string {
			return fmt.Sprintf("%s(%s,%s)", []string{"scale", "offset", "pow", "removeBelowValue", "removeAboveValue", "keepLastValue", "transformNull", "highestMax", "lowestAverage", "limit", "currentAbove", "averageBelow"}[r.IntN(12)], in, []string{"2", "-1", "0.5", "10", "3"}[r.IntN(5)])
		},
		func(r *rand.Rand, in string) string {
			return fmt.Sprintf("summarize(%s,'%s','%s'%s)", in, []string{"5min", "10min", "1h", "90s"}[r.IntN(4)], []string{"sum", "avg", "max", "min", "last", "median", "count"}[r.IntN(7)], []string{"", ",true", ",false"}[r.IntN(3)])
		},
		func(r *rand.Rand, in string) string {
			return fmt.Sprintf("timeShift(%s,'%s')", in, []string{"1h", "-1h", "+20min", "1d", "30min"}[r.IntN(5)])
		},
		func(r *rand.Rand, in string) string {
			return fmt.Sprintf("aggregate(%s,'%s')", in, []string{"sum", "average", "max", "min", "median", "count", "last"}[r.IntN(7)])
		},
		func(r *rand.Rand, in string) string {
			return fmt.Sprintf("consolidateBy(%s,'%s')", in, []string{"sum", "max", "min", "average", "first", "last"}[r.IntN(6)])
		},
		func(r *rand.Rand, in string) string {
			return fmt.Sprintf("%s(%s)", []string{"sortByMaxima", "sortByName", "sortByTotal", "sortByMinima"}[r.IntN(4)], in)
		},
		func(r *rand.Rand, in string) string {
			return fmt.Sprintf("groupByNode(%s,1,'%s')", in, []string{"sum", "average", "max"}[r.IntN(3)])
		},
		func(r *rand.Rand, in string) string {
			switch r.IntN(4) {
			case 0:
				return fmt.Sprintf("aliasByNode(%s,1)", in)
			case 1:
				return fmt.Sprintf("alias(%s,'x')", in)
			case 2:
				return fmt.Sprintf("asPercent(%s)", in)
			}
			return fmt.Sprintf("percentileOfSeries(%s,%d)", in, []int{50, 90, 95}[r.IntN(3)])
		},
		func(r *rand.Rand, in string) string {
			return fmt.Sprintf("%s(%s,%d)", []string{"hitcount", "stdev", "exponentialMovingAverage", "delay", "nPercentile"}[r.IntN(5)], in, 3+r.IntN(8))
		},
		func(r *rand.Rand, in string) string {
			return fmt.Sprintf("hitcount(%s,'%s')", in, []string{"5min", "1h", "10min"}[r.IntN(3)])
		},
	}
)

func genTarget(r *rand.Rand, depth int) string {
	if depth >= 3 || (depth > 0 && r.IntN(3) == 0) {
		return oracleSources[r.IntN(len(oracleSources))]
	}
	return oracleFuncs[r.IntN(len(oracleFuncs))](r, genTarget(r, depth+1))
}

type oracleSeries struct {
	Target     string            `json:"target"`
	Tags       map[string]any    `json:"tags"`
	Datapoints [][2]*json.Number `json:"datapoints"`
}

// diffRender compares two JSON render answers: names, tags, timestamps and
// values (1e-6 relative tolerance for float noise); series in the order
// given, unless both sides hold the same names in another order.
func diffRender(gwBody, slBody []byte) string {
	var g, s []oracleSeries
	if err := json.Unmarshal(gwBody, &g); err != nil {
		return "graphite-web JSON: " + err.Error()
	}
	if err := json.Unmarshal(slBody, &s); err != nil {
		return "shiploop JSON: " + err.Error()
	}
	if len(g) != len(s) {
		return fmt.Sprintf("%d series, graphite-web %d (%s vs %s)", len(s), len(g), names(s), names(g))
	}
	for i := range g {
		if g[i].Target != s[i].Target {
			return fmt.Sprintf("series %d named %q, graphite-web %q", i, s[i].Target, g[i].Target)
		}
		gt, st := fmt.Sprint(strTags(g[i].Tags)), fmt.Sprint(strTags(s[i].Tags))
		if gt != st {
			return fmt.Sprintf("%s: tags %s, graphite-web %s", g[i].Target, st, gt)
		}
		gp, sp := g[i].Datapoints, s[i].Datapoints
		if len(gp) != len(sp) {
			first := func(p [][2]*json.Number) string {
				if len(p) == 0 {
					return "-"
				}
				return p[0][1].String()
			}
			return fmt.Sprintf("%s: %d points from %s, graphite-web %d from %s", g[i].Target, len(sp), first(sp), len(gp), first(gp))
		}
		for j := range gp {
			if gp[j][1].String() != sp[j][1].String() {
				return fmt.Sprintf("%s: point %d at %s, graphite-web at %s", g[i].Target, j, sp[j][1], gp[j][1])
			}
			if !sameNumber(gp[j][0], sp[j][0]) {
				return fmt.Sprintf("%s: at %s %s, graphite-web %s", g[i].Target, gp[j][1], numStr(sp[j][0]), numStr(gp[j][0]))
			}
		}
	}
	return ""
}

func names(l []oracleSeries) string {
	var n []string
	for _, s := range l {
		n = append(n, s.Target)
	}
	return strings.Join(n, ",")
}

func strTags(t map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range t {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func numStr(n *json.Number) string {
	if n == nil {
		return "null"
	}
	return n.String()
}

func sameNumber(a, b *json.Number) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	x, err1 := strconv.ParseFloat(a.String(), 64)
	y, err2 := strconv.ParseFloat(b.String(), 64)
	if err1 != nil || err2 != nil {
		return a.String() == b.String()
	}
	if math.IsInf(x, 0) || math.IsInf(y, 0) || x == y {
		return x == y
	}
	return math.Abs(x-y) <= 1e-6*math.Max(1, math.Max(math.Abs(x), math.Abs(y)))
}
