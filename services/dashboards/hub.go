package dashboards

import "sync"

// hub fans the read models' version out to the open live pages.
type hub struct {
	mu   sync.Mutex
	subs map[chan int64]struct{}
}

func newHub() *hub { return &hub{subs: map[chan int64]struct{}{}} }

func (h *hub) subscribe() (<-chan int64, func()) {
	ch := make(chan int64, 1)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// broadcast never blocks: a slow page gets the newest version only.
func (h *hub) broadcast(v int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case <-ch:
		default:
		}
		ch <- v
	}
}
