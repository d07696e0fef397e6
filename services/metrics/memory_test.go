package metrics

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/store/storetest"
	"github.com/shiploop/shiploop/services/metrics/carbon"
)

// TestSeriesMemory reports the heap a series holds after 10 points and a
// flush (SHIPLOOP_MEMORY_SERIES series, default 20,000). It reports; it
// asserts nothing about size.
func TestSeriesMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SHIPLOOP_MEMORY_SERIES"))
	if n == 0 {
		t.Skip("set SHIPLOOP_MEMORY_SERIES to measure the heap per series")
	}
	ctx := context.Background()
	db := storetest.OpenSQLite(t, "metrics")
	if err := db.Migrate(ctx, Migrations()...); err != nil {
		t.Fatal(err)
	}
	st, err := NewStorage(ctx, StorageConfig{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	now := time.Now().Unix()
	base := now - now%10 - 100
	pts := make([]carbon.Point, 0, 512)
	for p := 0; p < 10; p++ {
		for i := 0; i < n; i++ {
			pts = append(pts, carbon.Point{Name: fmt.Sprintf("bench.c%d.host%d.m%d", i%4, i/100, i), Timestamp: base + int64(p)*10, Value: 1})
			if len(pts) == cap(pts) {
				st.Add(ctx, pts)
				pts = pts[:0]
			}
		}
	}
	st.Add(ctx, pts)
	written := heap()
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	flushed := heap()
	t.Logf("%d series: %.0f B/series written, %.0f B/series after the flush", n,
		float64(written-before)/float64(n), float64(flushed-before)/float64(n))
	runtime.KeepAlive(st)
}
