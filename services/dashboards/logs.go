package dashboards

import (
	"context"
	"sync"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// storedLog reads a job's log from the Object Store: nil when there is none
// yet. A finished log (its end marker read) is kept in memory for the next
// page views; callers must not modify the lines.
func (s *Service) storedLog(ctx context.Context, jobID string) []*eventsv1.LogLine {
	if lines, ok := s.logs.get(jobID); ok {
		return lines
	}
	lines, _ := s.bus.StoredLog(ctx, jobID)
	if n := len(lines); n > 0 && lines[n-1].GetStream() == "end" {
		s.logs.put(jobID, lines)
	}
	return lines
}

// logCache holds recently read finished logs, up to logCacheLines lines
// in all, the least recently read dropped first. The zero value is ready.
type logCache struct {
	mu    sync.Mutex
	tick  uint64
	lines int
	m     map[string]*cachedLog
}

type cachedLog struct {
	lines []*eventsv1.LogLine
	used  uint64
}

const logCacheLines = 200_000

func (c *logCache) get(jobID string) ([]*eventsv1.LogLine, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[jobID]
	if !ok {
		return nil, false
	}
	c.tick++
	e.used = c.tick
	return e.lines, true
}

func (c *logCache) put(jobID string, lines []*eventsv1.LogLine) {
	if len(lines) > logCacheLines/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*cachedLog{}
	}
	if _, ok := c.m[jobID]; ok {
		return
	}
	for c.lines+len(lines) > logCacheLines && len(c.m) > 0 {
		var oldest string
		var at uint64
		for id, e := range c.m {
			if oldest == "" || e.used < at {
				oldest, at = id, e.used
			}
		}
		c.lines -= len(c.m[oldest].lines)
		delete(c.m, oldest)
	}
	c.tick++
	c.m[jobID] = &cachedLog{lines: lines, used: c.tick}
	c.lines += len(lines)
}

// followLog sends a job's lines numbered after `after`, in order and each
// once, until the end marker or ctx ends (bus.FollowLog).
func (s *Service) followLog(ctx context.Context, jobID string, after uint64, send func(*eventsv1.LogLine) error) error {
	return s.bus.FollowLog(ctx, jobID, after, true, send)
}
