package render

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseInterval parses a graphite time offset such as "1min", "-1h", "2d",
// "1w2d" or "30s" into seconds ("m" is minutes only as the "min" prefix,
// months are 30 days and years 365, as graphite-web).
func ParseInterval(s string) (int64, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	sign := int64(1)
	switch s[0] {
	case '-':
		sign, s = -1, s[1:]
	case '+':
		s = s[1:]
	}
	if s == "" {
		return 0, fmt.Errorf("invalid interval %q", orig)
	}
	var total int64
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("invalid interval %q: expected a number before %q", orig, s)
		}
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || n > 1<<40 {
			return 0, fmt.Errorf("invalid interval %q", orig)
		}
		s = s[i:]
		j := 0
		for j < len(s) && (s[j]|0x20 >= 'a' && s[j]|0x20 <= 'z') {
			j++
		}
		unit := strings.ToLower(s[:j])
		s = s[j:]
		mult, err := unitSeconds(unit)
		if err != nil {
			return 0, fmt.Errorf("invalid interval %q: %w", orig, err)
		}
		if n > (maxInterval-total)/mult {
			return 0, fmt.Errorf("invalid interval %q: longer than 200 years", orig)
		}
		total += n * mult
	}
	return sign * total, nil
}

// maxInterval bounds an interval, in seconds: 200 years is far more than
// any retention, and keeps time.Duration arithmetic on it from overflowing
// (it holds about 292 years).
const maxInterval = 200 * 365 * 86400

func unitSeconds(u string) (int64, error) {
	switch {
	case u == "":
		return 1, nil // a bare number is seconds
	case strings.HasPrefix(u, "s"):
		return 1, nil
	case strings.HasPrefix(u, "min"):
		return 60, nil
	case strings.HasPrefix(u, "h"):
		return 3600, nil
	case strings.HasPrefix(u, "d"):
		return 86400, nil
	case strings.HasPrefix(u, "w"):
		return 7 * 86400, nil
	case strings.HasPrefix(u, "mon"):
		return 30 * 86400, nil
	case strings.HasPrefix(u, "y"):
		return 365 * 86400, nil
	case u == "m":
		return 60, nil // Grafana rewrites 5m to 5min, but accept it
	}
	return 0, fmt.Errorf("unknown unit %q (use s, min, h, d, w, mon, y)", u)
}

var months = []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

// ParseTime parses a render from/until value as graphite-web does: "now",
// unix seconds, relative offsets ("-6h", "-30min"), and at(1)-like forms
// ("HH:MM_YYYYMMDD", "YYYYMMDD", "MM/DD/YY", "noon+yesterday", "jan1").
// Times are in loc.
func ParseTime(s string, now time.Time, loc *time.Location) (time.Time, error) {
	orig := s
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.NewReplacer("_", "", ",", "", " ", "").Replace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty time")
	}
	if isDigits(s) {
		if !(len(s) == 8 && atoi(s[:4]) > 1900 && atoi(s[4:6]) < 13 && atoi(s[6:]) < 32) {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("invalid time %q", orig)
			}
			return time.Unix(n, 0), nil
		}
	}
	ref, offset := s, ""
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		ref, offset = s[:i], s[i:]
	}
	t, err := parseRef(ref, now.In(loc), loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time %q: %w", orig, err)
	}
	if offset != "" {
		d, err := ParseInterval(offset)
		if err != nil {
			return time.Time{}, err
		}
		t = t.Add(time.Duration(d) * time.Second)
	}
	return t, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func parseRef(ref string, now time.Time, loc *time.Location) (time.Time, error) {
	if ref == "" || ref == "now" {
		return now, nil
	}
	hour, minute := 0, 0
	if i := strings.IndexByte(ref, ':'); i > 0 && i < 3 && len(ref) >= i+3 {
		hour, minute = atoi(ref[:i]), atoi(ref[i+1:i+3])
		ref = ref[i+3:]
		if strings.HasPrefix(ref, "am") {
			ref = ref[2:]
		} else if strings.HasPrefix(ref, "pm") {
			hour = (hour + 12) % 24
			ref = ref[2:]
		}
	}
	if i := strings.Index(ref, "am"); i > 0 && i < 3 && isDigits(ref[:i]) {
		hour, ref = atoi(ref[:i]), ref[i+2:]
	}
	if i := strings.Index(ref, "pm"); i > 0 && i < 3 && isDigits(ref[:i]) {
		hour, ref = (atoi(ref[:i])+12)%24, ref[i+2:]
	}
	switch {
	case strings.HasPrefix(ref, "noon"):
		hour, minute, ref = 12, 0, ref[4:]
	case strings.HasPrefix(ref, "midnight"):
		hour, minute, ref = 0, 0, ref[8:]
	case strings.HasPrefix(ref, "teatime"):
		hour, minute, ref = 16, 0, ref[7:]
	}
	d := time.Date(now.Year(), now.Month(), now.Day(), hour, minute, 0, 0, loc)
	switch {
	case ref == "" || ref == "today":
	case ref == "yesterday":
		d = d.AddDate(0, 0, -1)
	case ref == "tomorrow":
		d = d.AddDate(0, 0, 1)
	case strings.Count(ref, "/") == 2:
		p := strings.Split(ref, "/")
		m, dd, y := atoi(p[0]), atoi(p[1]), atoi(p[2])
		if y < 1900 {
			y += 1900
		}
		if y < 1970 {
			y += 100
		}
		d = time.Date(y, time.Month(m), dd, hour, minute, 0, 0, loc)
	case len(ref) == 8 && isDigits(ref):
		d = time.Date(atoi(ref[:4]), time.Month(atoi(ref[4:6])), atoi(ref[6:8]), hour, minute, 0, 0, loc)
	case len(ref) >= 4 && indexOf(months, ref[:3]) >= 0:
		day := ref[3:]
		if !isDigits(day) {
			return time.Time{}, fmt.Errorf("day of month required after month name")
		}
		d = time.Date(now.Year(), time.Month(indexOf(months, ref[:3])+1), atoi(day), hour, minute, 0, 0, loc)
	default:
		return time.Time{}, fmt.Errorf("unknown day reference %q", ref)
	}
	return d, nil
}

func indexOf(l []string, s string) int {
	for i, x := range l {
		if x == s {
			return i
		}
	}
	return -1
}
