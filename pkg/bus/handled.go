package bus

import (
	"sync"
	"sync/atomic"
)

// handled counts, per durable consumer, the events this process has
// acknowledged after handling them (or finding them handled already, by
// the inbox): with replicas, how the work spreads over the processes.
var handled sync.Map // consumer name -> *atomic.Int64

func countHandled(consumer string) {
	v, ok := handled.Load(consumer)
	if !ok {
		v, _ = handled.LoadOrStore(consumer, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

// HandledCounts returns, per durable consumer, the events this process
// acknowledged since it started (Prometheus
// shiploop_consumer_handled_total).
func HandledCounts() map[string]int64 {
	out := map[string]int64{}
	handled.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}
