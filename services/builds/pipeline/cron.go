// Cron expressions of schedules: parsing and the slots they name.

package pipeline

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Cron is a parsed standard 5-field cron expression: minute, hour, day of
// month, month, day of week. Each field is "*", a value, a range "a-b", a
// step "*/n" or "a-b/n" or "a/n", or a comma-separated list of those;
// months and days of week also take names (jan–dec, sun–sat), and 7 is
// Sunday as 0 is. The descriptors @yearly (@annually), @monthly, @weekly,
// @daily (@midnight) and @hourly stand for their usual expressions.
//
// As in Vixie cron, when both day of month and day of week are restricted
// (neither starts with "*"), a day matches when either does.
//
// Slots are wall-clock times in the schedule's time zone. Across daylight
// saving time changes: a wall-clock time that does not exist that day (the
// hour skipped in spring) has no slot that day, and one that happens twice
// (the hour repeated in autumn) has one slot, the first.
type Cron struct {
	expr                          string
	minute, hour, dom, month, dow uint64 // bit i set: value i matches
	domStar, dowStar              bool
}

type cronField struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i
}

var cronFields = []cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{name: "day of week", min: 0, max: 7, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

var cronDescriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// ParseCron parses a cron expression (see Cron). It also rejects one that
// never names a time, such as "0 0 30 2 *".
func ParseCron(expr string) (*Cron, error) {
	text := strings.TrimSpace(expr)
	if strings.HasPrefix(text, "@") {
		d, ok := cronDescriptors[strings.ToLower(text)]
		if !ok {
			return nil, fmt.Errorf("unknown descriptor %q (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)", text)
		}
		text = d
	}
	parts := strings.Fields(text)
	if len(parts) != 5 {
		return nil, fmt.Errorf("%q has %d fields; want 5: minute hour day-of-month month day-of-week", expr, len(parts))
	}
	c := &Cron{expr: strings.TrimSpace(expr)}
	bits := []*uint64{&c.minute, &c.hour, &c.dom, &c.month, &c.dow}
	for i, p := range parts {
		b, err := cronFields[i].parse(p)
		if err != nil {
			return nil, err
		}
		*bits[i] = b
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday
		c.dow |= 1
	}
	c.domStar, c.dowStar = strings.HasPrefix(parts[2], "*"), strings.HasPrefix(parts[4], "*")
	if c.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("%q never fires (no such day)", expr)
	}
	return c, nil
}

// String is the expression as written.
func (c *Cron) String() string { return c.expr }

func (f cronField) value(s string) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < f.min || v > f.max {
		return 0, fmt.Errorf("%s %q: want %d–%d%s", f.name, s, f.min, f.max, f.nameHint())
	}
	return v, nil
}

func (f cronField) nameHint() string {
	if len(f.names) == 0 {
		return ""
	}
	return " or " + f.names[0] + "–" + f.names[len(f.names)-1]
}

func (f cronField) parse(s string) (uint64, error) {
	var bits uint64
	for item := range strings.SplitSeq(s, ",") {
		rng, stepText, hasStep := strings.Cut(item, "/")
		lo, hi, step := f.min, f.max, 1
		if f.name == "day of week" {
			hi = 6 // "*" is 0–6; 7 only as a value
		}
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 || n > f.max {
				return 0, fmt.Errorf("%s %q: step %q must be a number from 1 to %d", f.name, item, stepText, f.max)
			}
			step = n
		}
		switch {
		case rng == "*":
		case rng == "":
			return 0, fmt.Errorf("%s: empty item in %q", f.name, s)
		default:
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = f.value(a); err != nil {
				return 0, err
			}
			hi = lo
			if isRange {
				if hi, err = f.value(b); err != nil {
					return 0, err
				}
				if hi < lo {
					return 0, fmt.Errorf("%s %q: range goes backwards", f.name, item)
				}
			} else if hasStep {
				hi = f.max // "a/n": from a to the end
				if f.name == "day of week" {
					hi = 6
				}
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << v
		}
	}
	return bits, nil
}

func (c *Cron) dayMatches(t time.Time) bool {
	dom := c.dom&(1<<t.Day()) != 0
	dow := c.dow&(1<<int(t.Weekday())) != 0
	if !c.domStar && !c.dowStar {
		return dom || dow
	}
	return dom && dow
}

// cronHorizon bounds the search for a slot.
const cronHorizon = 5 * 366 * 24 * time.Hour

// Next returns the first slot strictly after t, in t's location (use
// t.In(loc) for a schedule's time zone), or the zero time when there is none
// within five years.
func (c *Cron) Next(t time.Time) time.Time {
	loc := t.Location()
	end := t.Add(cronHorizon)
	t = t.Truncate(time.Minute).Add(time.Minute)
	for t.Before(end) {
		y, mo, d := t.Date()
		h, mi := t.Hour(), t.Minute()
		var next time.Time
		switch {
		case c.month&(1<<int(mo)) == 0:
			next = time.Date(y, mo+1, 1, 0, 0, 0, 0, loc)
		case !c.dayMatches(t):
			next = time.Date(y, mo, d+1, 0, 0, 0, 0, loc)
		case c.hour&(1<<h) == 0:
			// To the next hour on the clock, in elapsed time: time.Date
			// could pick the second of a repeated hour.
			next = t.Add(time.Duration(60-mi) * time.Minute)
		case c.minute&(1<<mi) == 0:
			next = t.Add(time.Minute)
		case repeatedWallTime(t):
			next = t.Add(time.Minute)
		default:
			return t
		}
		if !next.After(t) { // a time zone change made the wall clock step back
			next = t.Add(time.Minute)
		}
		t = next
	}
	return time.Time{}
}

// repeatedWallTime reports whether t's wall-clock time already happened a
// little earlier (the repeated hour when clocks go back).
func repeatedWallTime(t time.Time) bool {
	_, off := t.Zone()
	_, before := t.Add(-3 * time.Hour).Zone()
	if before <= off {
		return false
	}
	e := t.Add(-time.Duration(before-off) * time.Second)
	y1, m1, d1 := t.Date()
	y2, m2, d2 := e.Date()
	return y1 == y2 && m1 == m2 && d1 == d2 && t.Hour() == e.Hour() && t.Minute() == e.Minute()
}

// Latest returns the last slot in (after, now], or the zero time when there
// is none: the one slot to fire for a schedule that missed some.
func (c *Cron) Latest(after, now time.Time) time.Time {
	if !now.After(after) {
		return time.Time{}
	}
	// Look back over growing windows: the latest slot of the smallest window
	// that holds one is the latest of all, and a frequent schedule is found
	// in a few steps even after a long time down.
	for _, w := range []time.Duration{time.Hour, 25 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour, cronHorizon} {
		start := now.Add(-w)
		if start.Before(after) {
			start = after
		}
		var last time.Time
		for s := c.Next(start); !s.IsZero() && !s.After(now); s = c.Next(s) {
			last = s
		}
		if !last.IsZero() || !start.After(after) {
			return last
		}
	}
	return time.Time{}
}
