package errortrack

import (
	"math"
	"sync"
	"time"
)

// limiter applies per-project rate limits (a token bucket refilled per
// minute) and hourly quotas (a fixed window). It is per process: with N
// intake replicas a project may get up to N times its limit; the stream's
// byte bound is the global backstop.
type limiter struct {
	mu      sync.Mutex
	buckets map[int64]*bucket
}

type bucket struct {
	tokens   float64
	last     time.Time
	hour     int64 // unix hour of the quota window
	hourUsed int64
}

func newLimiter() *limiter { return &limiter{buckets: map[int64]*bucket{}} }

// limitReason says why a request was refused.
type limitReason struct {
	retryAfter time.Duration
	code       string // Sentry reason code: project_rate_limit, project_quota
}

// take asks for one unit of project p at now; it returns nil when allowed.
func (l *limiter) take(p project, now time.Time) *limitReason {
	if p.ratePerMinute <= 0 && p.quotaPerHour <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[p.id]
	if b == nil {
		b = &bucket{tokens: float64(p.ratePerMinute), last: now}
		l.buckets[p.id] = b
	}
	if p.ratePerMinute > 0 {
		perSec := float64(p.ratePerMinute) / 60
		b.tokens = math.Min(float64(p.ratePerMinute), b.tokens+now.Sub(b.last).Seconds()*perSec)
		b.last = now
		if b.tokens < 1 {
			wait := time.Duration((1 - b.tokens) / perSec * float64(time.Second))
			return &limitReason{retryAfter: wait, code: "project_rate_limit"}
		}
	}
	if p.quotaPerHour > 0 {
		hour := now.Unix() / 3600
		if hour != b.hour {
			b.hour, b.hourUsed = hour, 0
		}
		if b.hourUsed >= p.quotaPerHour {
			next := time.Unix((hour+1)*3600, 0)
			return &limitReason{retryAfter: next.Sub(now), code: "project_quota"}
		}
		b.hourUsed++
	}
	if p.ratePerMinute > 0 {
		b.tokens--
	}
	return nil
}

// reset forgets a project's state (its limits changed).
func (l *limiter) reset(projectID int64) {
	l.mu.Lock()
	delete(l.buckets, projectID)
	l.mu.Unlock()
}
