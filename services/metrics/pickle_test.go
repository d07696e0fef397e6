package metrics

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/shiploop/shiploop/services/metrics/render"
)

// format=pickle is graphite-web's list of series dicts; Python's own
// unpickler reads it back (skipped only when /usr/bin/python3 is absent and
// not in CI).
func TestRenderPickleReadsBackInPython(t *testing.T) {
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3 is needed in CI: %v", err)
		}
		t.Skip("no /usr/bin/python3")
	}
	a := render.NewSeries("app.é.cpu", 1700000000, 60, []float64{1.5, math.NaN(), -2, 1e300})
	a.XFilesFactor = 0.5
	b := render.NewSeries("scale(app.db.cpu,2)", 1700000060, 60, nil)
	b.PathExpression = "app.*.cpu"
	b.ConsolidationFunc = "sum"
	b.ValuesPerPoint = 3
	c := render.NewSeries("big", 5000000000, 1, []float64{0})
	var buf bytes.Buffer
	if err := writeRenderPickle(&buf, []*render.Series{a, b, c}); err != nil {
		t.Fatal(err)
	}
	if got := buf.Bytes()[:2]; !bytes.Equal(got, []byte{0x80, 2}) {
		t.Errorf("protocol header % x, want 80 02", got)
	}
	cmd := exec.Command(py, "-c", `import pickle,sys
for d in pickle.load(sys.stdin.buffer):
    print(sorted(d.items()))`)
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v: %s", err, out)
	}
	want := strings.Join([]string{
		`[('consolidationFunc', 'average'), ('end', 1700000240), ('name', 'app.é.cpu'), ('pathExpression', 'app.é.cpu'), ('start', 1700000000), ('step', 60), ('values', [1.5, None, -2.0, 1e+300]), ('valuesPerPoint', 1), ('xFilesFactor', 0.5)]`,
		`[('consolidationFunc', 'sum'), ('end', 1700000060), ('name', 'scale(app.db.cpu,2)'), ('pathExpression', 'app.*.cpu'), ('start', 1700000060), ('step', 60), ('values', []), ('valuesPerPoint', 3), ('xFilesFactor', 0.0)]`,
		`[('consolidationFunc', 'average'), ('end', 5000000001), ('name', 'big'), ('pathExpression', 'big'), ('start', 5000000000), ('step', 1), ('values', [0.0]), ('valuesPerPoint', 1), ('xFilesFactor', 0.0)]`,
	}, "\n") + "\n"
	if string(out) != want {
		t.Errorf("python3 read\n%s\nwant\n%s", out, want)
	}
	// An empty answer is an empty list.
	buf.Reset()
	_ = writeRenderPickle(&buf, nil)
	out, err = exec.Command(py, "-c", `import pickle,sys; print(pickle.loads(bytes.fromhex(sys.argv[1])))`, strings.TrimSpace(hexOf(buf.Bytes()))).CombinedOutput()
	if err != nil || string(out) != "[]\n" {
		t.Errorf("empty pickle read as %q (%v)", out, err)
	}
}

func hexOf(b []byte) string {
	const d = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(d[c>>4])
		s.WriteByte(d[c&15])
	}
	return s.String()
}
