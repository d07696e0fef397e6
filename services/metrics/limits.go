package metrics

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// Defaults of CarbonLimits (and of the shiploop flags that set them).
const (
	// DefaultCarbonMaxSeries: a series costs about 1-1.7 KB of RSS while it
	// is written to (its index entry and in-memory chunks that hold only the
	// slots written, evicted ten minutes after its last point; measured
	// 100,000 series with 10 points each at +104 MiB, 1,000,000 at
	// +1.57 GiB, docs/benchmarks.md "a million series"; it was about 25 KB
	// before chunks grew on demand) and a few hundred bytes of index after
	// that, so 50,000 series all written to at once is about 50-80 MB: what
	// an unauthenticated sender can make the process hold by default.
	// Larger installations raise it.
	DefaultCarbonMaxSeries = 50_000
	// DefaultCarbonMaxNewSeriesPerMinute: carbon-cache's
	// MAX_CREATES_PER_MINUTE (default 50, sized for whisper file creation) and
	// go-carbon's max-creates-per-second are the same idea; a new series here
	// is a database row, so the default is higher.
	DefaultCarbonMaxNewSeriesPerMinute = 10_000
	DefaultCarbonMaxLineLength         = 4096
	DefaultCarbonIdleTimeout           = 2 * time.Minute
	DefaultCarbonMaxConnections        = 1000
)

// CarbonLimits bound what Carbon clients (plaintext TCP and UDP, pickle) can
// make the service hold. A zero field takes its default; a negative one turns
// that limit off (MaxLineLength excepted: a line is always bounded, by 64 KiB
// when it is off).
type CarbonLimits struct {
	// MaxSeries: a point whose series does not exist is dropped once this
	// many series exist (--carbon-max-series). Points of existing series are
	// always stored.
	MaxSeries int
	// MaxNewSeriesPerMinute: series Carbon traffic may create per minute, a
	// token bucket that holds a minute's worth
	// (--carbon-max-new-series-per-minute).
	MaxNewSeriesPerMinute int
	// MaxLineLength: bytes of a plaintext line before its newline
	// (--carbon-max-line-length). A longer line is dropped without being
	// buffered and the connection goes on.
	MaxLineLength int
	// IdleTimeout closes a TCP connection that sends nothing for this long
	// (--carbon-idle-timeout).
	IdleTimeout time.Duration
	// MaxConnections open at once over the plaintext and pickle TCP
	// listeners; a further one is closed as it is accepted
	// (--carbon-max-connections).
	MaxConnections int
}

func (l CarbonLimits) withDefaults() CarbonLimits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxSeries, DefaultCarbonMaxSeries)
	def(&l.MaxNewSeriesPerMinute, DefaultCarbonMaxNewSeriesPerMinute)
	def(&l.MaxLineLength, DefaultCarbonMaxLineLength)
	def(&l.MaxConnections, DefaultCarbonMaxConnections)
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultCarbonIdleTimeout
	}
	if l.MaxLineLength < 0 {
		l.MaxLineLength = 64<<10 - 1
	}
	return l
}

// createBucket is a token bucket of series creations: it holds up to
// perMinute tokens and refills perMinute a minute. Callers serialise.
type createBucket struct {
	perMinute int
	tokens    float64
	last      time.Time
}

func (b *createBucket) take(now time.Time) bool {
	if b.perMinute <= 0 {
		return true
	}
	if b.last.IsZero() {
		b.tokens, b.last = float64(b.perMinute), now
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(b.perMinute), b.tokens+d.Minutes()*float64(b.perMinute))
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// idleConn sets a read deadline before every read, so that a connection that
// sends nothing for the timeout fails its read with os.ErrDeadlineExceeded.
// A reader blocked on Storage.Add is not reading and so is never idle.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c idleConn) Read(p []byte) (int, error) {
	if c.timeout > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Read(p)
}

// refusals are the counts of refused Carbon input, as published under
// shiploop.metrics.ingest.
type refusals struct {
	seriesRefused, rateLimited, linesTooLong, connsRefused, idleClosed int64
}

func (s *Service) refusals() refusals {
	return refusals{
		seriesRefused: s.st.SeriesRefused.Load(),
		rateLimited:   s.st.RateLimited.Load(),
		linesTooLong:  s.in.LinesTooLong.Load(),
		connsRefused:  s.in.ConnsRefused.Load(),
		idleClosed:    s.in.IdleClosed.Load(),
	}
}

// warnRefusals logs one line summarising what Carbon limits refused since
// the last such line, at most once per s.warnEvery, naming the flags to
// raise. It returns whether it logged.
func (s *Service) warnRefusals(now time.Time) bool {
	if !s.lastWarn.IsZero() && now.Sub(s.lastWarn) < s.warnEvery {
		return false
	}
	cur := s.refusals()
	d := refusals{
		seriesRefused: cur.seriesRefused - s.warned.seriesRefused,
		rateLimited:   cur.rateLimited - s.warned.rateLimited,
		linesTooLong:  cur.linesTooLong - s.warned.linesTooLong,
		connsRefused:  cur.connsRefused - s.warned.connsRefused,
		idleClosed:    cur.idleClosed - s.warned.idleClosed,
	}
	if d == (refusals{}) {
		return false
	}
	lim := s.cfg.Carbon
	var raise []string
	attrs := []any{}
	add := func(n int64, key, flag string, val any) {
		if n == 0 {
			return
		}
		attrs = append(attrs, key, n)
		raise = append(raise, fmt.Sprintf("--%s (now %v)", flag, val))
	}
	add(d.seriesRefused, "points_of_new_series_refused", "carbon-max-series", lim.MaxSeries)
	add(d.rateLimited, "points_of_new_series_rate_limited", "carbon-max-new-series-per-minute", lim.MaxNewSeriesPerMinute)
	add(d.linesTooLong, "lines_too_long", "carbon-max-line-length", lim.MaxLineLength)
	add(d.connsRefused, "connections_refused", "carbon-max-connections", lim.MaxConnections)
	add(d.idleClosed, "idle_connections_closed", "carbon-idle-timeout", lim.IdleTimeout)
	since := "start"
	if !s.lastWarn.IsZero() {
		since = now.Sub(s.lastWarn).Round(time.Second).String() + " ago"
	}
	attrs = append(attrs, "since", since, "raise", strings.Join(raise, ", "))
	s.log.Warn("carbon: input refused by limits (counted under shiploop.metrics.ingest.*); raise the named flags if this traffic is wanted", attrs...)
	s.warned, s.lastWarn = cur, now
	return true
}
