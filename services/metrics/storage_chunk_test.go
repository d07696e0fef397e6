package metrics

import (
	"context"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	"github.com/shiploop/shiploop/services/metrics/carbon"
)

func TestChunkEncoding(t *testing.T) {
	full := nanSlice(360)
	full[3], full[10], full[11] = 1.5, 2, math.Inf(1)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"trimmed, with offset", encodeChunk(0, full)},
		{"held run", encodeChunk(3, full[3:12])},
		{"held run with empty ends", encodeChunk(1, full[1:200])},
	} {
		if len(tc.b) != 4+8*9 {
			t.Errorf("%s: %d bytes, want %d (offset and slots 3-11)", tc.name, len(tc.b), 4+8*9)
		}
		got := decodeChunk(tc.b, 360)
		for i := range full {
			if !same(got[i], full[i]) {
				t.Fatalf("%s: slot %d = %g, want %g", tc.name, i, got[i], full[i])
			}
		}
	}
	// Chunks written before the offset header: every slot from 0, 8 bytes
	// each, possibly fewer than the chunk's slots.
	legacy := make([]byte, 0, 8*360)
	for _, v := range full {
		legacy = binary.LittleEndian.AppendUint64(legacy, math.Float64bits(v))
	}
	for _, n := range []int{360, 12} {
		got := decodeChunk(legacy[:8*n], 360)
		for i := range full {
			if !same(got[i], full[i]) {
				t.Fatalf("legacy %d slots: slot %d = %g, want %g", n, i, got[i], full[i])
			}
		}
	}
	if b := encodeChunk(5, []float64{math.NaN()}); len(b) != 0 || len(decodeChunk(b, 4)) != 4 {
		t.Errorf("an empty chunk encodes to %d bytes", len(b))
	}
	if b := encodeChunk(0, []float64{7}); len(b) != 8 {
		t.Errorf("a chunk from slot 0 has a header: %d bytes", len(b))
	}
}

func same(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

func TestChunkGrowsEitherWay(t *testing.T) {
	var c chunk
	want := map[int]float64{}
	for _, j := range []int{100, 103, 98, 40, 359, 0, 101} {
		c.set(j, float64(j))
		want[j] = float64(j)
	}
	for j := 0; j < 360; j++ {
		w, ok := want[j]
		if !ok {
			w = math.NaN()
		}
		if got := c.get(j); !same(got, w) {
			t.Fatalf("slot %d = %g, want %g", j, got, w)
		}
	}
	if int(c.off) != 0 || len(c.vals) != 360 {
		t.Errorf("held run %d+%d, want 0+360", c.off, len(c.vals))
	}
}

// Points out of order, across chunk boundaries, read back from memory, from
// the database after a flush, and after a restart with new points merged
// into the stored chunks; the 1-minute rollups agree.
func TestSparseChunksReadBack(t *testing.T) {
	storetest.Engines(t, "metrics", Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Unix(1_800_000_000, 0)
		clock := func() time.Time { return now }
		st, err := NewStorage(ctx, StorageConfig{DB: db, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		// 10 s chunks span 3,600 s; 1,799,996,400 is a chunk start.
		base := int64(1_799_996_400)
		var pts []carbon.Point
		for _, off := range []int64{3590, 3600, 3610, 30, 0, 10, 3550} {
			pts = append(pts, carbon.Point{Name: "a.b", Timestamp: base + off, Value: float64(off)})
		}
		if err := st.Add(ctx, pts); err != nil {
			t.Fatal(err)
		}
		check := func(st *Storage, what string, extra map[int64]float64) {
			t.Helper()
			s, err := st.Read(ctx, "a.b", base-1, base+3620)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range s.Values {
				ts := s.Start + int64(i)*s.Step
				w, ok := extra[ts-base]
				if !ok {
					w = math.NaN()
					for _, p := range pts {
						if p.Timestamp == ts {
							w = p.Value
						}
					}
				}
				if !same(v, w) {
					t.Fatalf("%s: %d = %g, want %g", what, ts-base, v, w)
				}
			}
		}
		check(st, "in memory", nil)
		// The 1-minute slot of 3,540-3,599 holds 3,550 and 3,590.
		if got := rollupAt(t, st, base+3540); got != (3550+3590)/2.0 {
			t.Errorf("1-minute rollup = %g, want %g", got, (3550+3590)/2.0)
		}
		if err := st.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		// Evict everything: reads come from the database.
		now = now.Add(time.Hour)
		if err := st.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		now = now.Add(-time.Hour)
		check(st, "from the database", nil)
		st2, err := NewStorage(ctx, StorageConfig{DB: db, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		if err := st2.Add(ctx, []carbon.Point{{Name: "a.b", Timestamp: base + 20, Value: -1}, {Name: "a.b", Timestamp: base + 3560, Value: -2}}); err != nil {
			t.Fatal(err)
		}
		extra := map[int64]float64{20: -1, 3560: -2}
		check(st2, "restarted, before the flush", extra)
		if err := st2.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		check(st2, "restarted, merged", extra)
		st3, err := NewStorage(ctx, StorageConfig{DB: db, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		check(st3, "restarted again", extra)
	})
}

func rollupAt(t *testing.T, st *Storage, ts int64) float64 {
	t.Helper()
	st.mu.RLock()
	s := st.byName["a.b"]
	st.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.schema.Archives[1]
	span := a.Step * chunkSlots(s.schema.Archives, 1)
	c := s.find(1, ts-mod(ts, span))
	if c == nil {
		t.Fatal("no 1-minute chunk")
	}
	return c.get(int(mod(ts, span) / a.Step))
}
