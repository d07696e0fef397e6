package bench

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// docPath is where the figures go. SHIPLOOP_BENCH_DOC names another file,
// or "off" to write nothing (for profiling runs).
func docPath() string {
	if p := os.Getenv("SHIPLOOP_BENCH_DOC"); p != "" {
		if p == "off" {
			return ""
		}
		return p
	}
	return filepath.Join("..", "..", "docs", "benchmarks.md")
}

// writeSection replaces the text between <!-- bench:NAME --> and
// <!-- /bench:NAME --> in the benchmarks document (appending the pair when
// missing) and refreshes the machine section, so the hand-written notes
// around the markers survive a re-run.
func writeSection(name, body string) error {
	path := docPath()
	if path == "" {
		return nil
	}
	doc, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc = replaceSection(doc, "machine", machineInfo())
	doc = replaceSection(doc, name, body)
	return os.WriteFile(path, doc, 0o644)
}

func replaceSection(doc []byte, name, body string) []byte {
	begin, end := "<!-- bench:"+name+" -->", "<!-- /bench:"+name+" -->"
	block := begin + "\n" + strings.TrimRight(body, "\n") + "\n" + end
	i := bytes.Index(doc, []byte(begin))
	j := bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		if len(doc) > 0 && !bytes.HasSuffix(doc, []byte("\n")) {
			doc = append(doc, '\n')
		}
		return append(doc, []byte("\n"+block+"\n")...)
	}
	out := append([]byte{}, doc[:i]...)
	out = append(out, block...)
	return append(out, doc[j+len(end):]...)
}

func machineInfo() string {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	nproc := "?"
	if out, err := exec.Command("nproc").Output(); err == nil {
		nproc = strings.TrimSpace(string(out))
	}
	kernel := "?"
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		kernel = strings.TrimSpace(string(out))
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "MemTotal:")), "%d", &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return fmt.Sprintf(`| | |
|---|---|
| last run | %s |
| CPU | %s |
| `+"`nproc`"+` | %s (GOMAXPROCS %d) |
| memory | %s |
| kernel | %s |
| Go | %s %s/%s |
| nats-server (embedded) | v%s |
| SQLite | modernc.org/sqlite (pure Go) |`,
		time.Now().UTC().Format("2006-01-02 15:04 MST"), cpu, nproc, runtime.GOMAXPROCS(0), mem, kernel,
		runtime.Version(), runtime.GOOS, runtime.GOARCH, server.VERSION)
}

// stats summarises latency samples with nearest-rank percentiles.
type stats struct {
	n                          int
	min, median, p90, p99, max time.Duration
	mean                       time.Duration
}

func summarize(samples []time.Duration) stats {
	s := slices.Clone(samples)
	slices.Sort(s)
	if len(s) == 0 {
		return stats{}
	}
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return stats{n: len(s), min: s[0], median: rank(0.5), p90: rank(0.9), p99: rank(0.99), max: s[len(s)-1], mean: sum / time.Duration(len(s))}
}

// ms formats a duration in milliseconds with one decimal.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// num formats a rate with thousands separators.
func num(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	var out []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	return string(out)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// cpuWindow measures how much CPU other processes used while a benchmark
// ran: all CPUs' busy time from /proc/stat minus this process's and its
// waited-for children's (and any still running process named to end).
// On a shared machine this says whether a figure can be trusted.
type cpuWindow struct {
	start time.Time
	busy  time.Duration
	ours  time.Duration
}

func startCPU() cpuWindow {
	return cpuWindow{start: time.Now(), busy: machineBusy(), ours: ownCPU()}
}

// others returns the average number of CPUs other processes kept busy;
// extra is CPU time of our processes not yet waited for.
func (w cpuWindow) others(extra time.Duration) float64 {
	wall := time.Since(w.start)
	other := (machineBusy() - w.busy) - (ownCPU() - w.ours) - extra
	return max(0, float64(other)/float64(wall))
}

// machineBusy is the CPU time all CPUs spent not idle, from /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

func ownCPU() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// procCPU is a running process's CPU time with its waited-for children's.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 on
	var sum int64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime (fields 14-17)
		n, _ := strconv.ParseInt(f[i], 10, 64)
		sum += n
	}
	return time.Duration(sum) * time.Second / 100
}

// measured says when, and how busy other processes kept the machine.
func measured(w cpuWindow, extra time.Duration) string {
	return fmt.Sprintf("Measured %s; other processes kept %.2f of the %d CPUs busy meanwhile",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), w.others(extra), runtime.NumCPU())
}
