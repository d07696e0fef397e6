package dashboards

import (
	"testing"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

func TestLogCacheEvictsLeastRecentlyRead(t *testing.T) {
	var c logCache
	log := func(n int) []*eventsv1.LogLine { return make([]*eventsv1.LogLine, n) }
	c.put("a", log(logCacheLines/4))
	c.put("b", log(logCacheLines/4))
	c.put("c", log(logCacheLines/4))
	c.get("a") // b is now the least recently read
	c.put("d", log(logCacheLines/4))
	c.put("e", log(10))
	if _, ok := c.get("b"); ok {
		t.Error("b kept")
	}
	for _, id := range []string{"a", "c", "d", "e"} {
		if _, ok := c.get(id); !ok {
			t.Errorf("%s dropped", id)
		}
	}
	if c.lines > logCacheLines {
		t.Errorf("%d lines held", c.lines)
	}
	c.put("huge", log(logCacheLines/4+1))
	if _, ok := c.get("huge"); ok {
		t.Error("a log over the cap was kept")
	}
}
