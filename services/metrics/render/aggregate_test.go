package render

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The series-at-a-time aggregation must give what the row-at-a-time one
// gives, bit for bit: NaN, infinities, negative zero, series of different
// lengths and xFilesFactor included.
func TestAggregateBySeriesMatchesByRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() float64 {
		switch rng.IntN(10) {
		case 0, 1, 2:
			return nan
		case 3:
			return math.Inf(1 - 2*rng.IntN(2))
		case 4:
			return math.Copysign(0, -1)
		}
		return rng.NormFloat64() * 1e3
	}
	for _, fn := range []string{"sum", "total", "average", "avg", "min", "max", "count"} {
		for trial := 0; trial < 200; trial++ {
			vals := make([][]float64, rng.IntN(6))
			for j := range vals {
				vals[j] = make([]float64, rng.IntN(8))
				for i := range vals[j] {
					vals[j][i] = pick()
				}
			}
			xff := []float64{0, 0.5, 1}[rng.IntN(3)]
			agg, _ := aggFunc(fn)
			want := aggregateByRow(vals, agg, xff)
			got, ok := aggregateBySeries(vals, fn, xff)
			if !ok {
				t.Fatalf("%s: no series-at-a-time aggregation", fn)
			}
			if len(got) != len(want) {
				t.Fatalf("%s over %v (xff %g): %d values, want %d", fn, vals, xff, len(got), len(want))
			}
			for i := range want {
				if math.Float64bits(got[i]) != math.Float64bits(want[i]) && !(math.IsNaN(got[i]) && math.IsNaN(want[i])) {
					t.Fatalf("%s over %v (xff %g): slot %d is %v, want %v", fn, vals, xff, i, got[i], want[i])
				}
			}
		}
	}
	if _, ok := aggregateBySeries(nil, "median", 0); ok {
		t.Error("median has no series-at-a-time aggregation, yet one was used")
	}
}
