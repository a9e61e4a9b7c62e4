package gateway

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// policy is one resolved rate limit: the GCRA parameters plus the
// precomputed RateLimit-Policy field value.
type policy struct {
	name      string        // policy identifier in the RateLimit fields
	interval  time.Duration // emission interval T = window / requests
	burst     int           // requests allowed at once
	keyPrefix string        // limiter key namespace (route- or tier-scoped)
	header    string        // RateLimit-Policy value
	rlPrefix  string        // start of the RateLimit value: `"name";r=`
}

func newPolicy(name, keyPrefix string, l RateLimit) *policy {
	burst := l.Burst
	if burst == 0 {
		burst = l.Requests
	}
	win := l.Window.D()
	if win == 0 {
		win = time.Minute
	}
	return &policy{
		name: name,
		// At least 1µs, the Redis script's resolution: a finer rate would
		// round to a zero interval and GCRA divides by it.
		interval:  max(win/time.Duration(l.Requests), time.Microsecond),
		burst:     burst,
		keyPrefix: keyPrefix,
		header:    sfString(name) + ";q=" + strconv.Itoa(l.Requests) + ";w=" + strconv.FormatInt(int64(win/time.Second), 10),
		rlPrefix:  sfString(name) + ";r=",
	}
}

// sfString serialises s as a structured-field string (RFC 9651 §3.3.3):
// printable ASCII with only '"' and '\' escaped. Other bytes (UTF-8,
// controls) and '%' are percent-encoded, so any tier or route name gives
// a field clients can parse; strconv.Quote wrote UTF-8 as is and
// controls as , both invalid there.
func sfString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '%' || c < 0x20 || c > 0x7e:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Decision is one limiter answer.
type Decision struct {
	Allowed    bool
	Remaining  int           // requests that could still be made right now
	Reset      time.Duration // until the full burst is available again
	RetryAfter time.Duration // when refused: until one request would be allowed
}

// Limiter decides whether a request under key may pass. Implementations:
// localLimiter (in memory) and redisLimiter (global, Lua GCRA).
type Limiter interface {
	Allow(ctx context.Context, key string, p *policy) (Decision, error)
}

var (
	_ Limiter = (*localLimiter)(nil)
	_ Limiter = (*redisLimiter)(nil)
)

// gcra applies the generic cell rate algorithm to the theoretical arrival
// time tat (nanoseconds; 0 = never seen) at now. It returns the new tat to
// store and the decision. A refused request does not move tat, so
// hammering while refused does not extend the wait.
func gcra(tat, now int64, interval time.Duration, burst int) (int64, Decision) {
	t := int64(interval)
	if tat < now {
		tat = now
	}
	newTat := tat + t
	allowAt := newTat - t*int64(burst)
	if now < allowAt {
		return tat, Decision{Reset: time.Duration(tat - now), RetryAfter: time.Duration(allowAt - now)}
	}
	return newTat, Decision{
		Allowed:   true,
		Remaining: int((now - allowAt) / t),
		Reset:     time.Duration(newTat - now),
	}
}

const localShards = 64

// localLimiter keeps GCRA state in memory, sharded to keep lock hold
// times short under concurrency. It is long-lived (part of State).
type localLimiter struct {
	now    func() time.Time
	shards [localShards]limShard
}

type limShard struct {
	mu      sync.Mutex // guards tats and sweepAt
	tats    map[string]int64
	sweepAt int // sweep expired entries when the map grows past this
}

func newLocalLimiter(now func() time.Time) *localLimiter {
	l := &localLimiter{now: now}
	for i := range l.shards {
		l.shards[i].tats = map[string]int64{}
		l.shards[i].sweepAt = 1024
	}
	return l
}

// Allow never fails; the error is for the Limiter interface.
func (l *localLimiter) Allow(_ context.Context, key string, p *policy) (Decision, error) {
	return l.allow(key, p), nil
}

func (l *localLimiter) allow(key string, p *policy) Decision {
	now := l.now().UnixNano()
	s := &l.shards[fnv32(key)%localShards]
	s.mu.Lock()
	newTat, d := gcra(s.tats[key], now, p.interval, p.burst)
	if d.Allowed {
		if _, ok := s.tats[key]; !ok && len(s.tats) >= s.sweepAt {
			s.sweep(now)
		}
		s.tats[key] = newTat
	}
	s.mu.Unlock()
	return d
}

// peek reports the decision allow would make, without recording anything.
func (l *localLimiter) peek(key string, p *policy) Decision {
	now := l.now().UnixNano()
	s := &l.shards[fnv32(key)%localShards]
	s.mu.Lock()
	_, d := gcra(s.tats[key], now, p.interval, p.burst)
	s.mu.Unlock()
	return d
}

// sweep drops entries whose bucket is full again (tat in the past): they
// are indistinguishable from unseen keys. s.mu must be held. The threshold
// doubles relative to live entries, so sweeping stays amortised O(1).
func (s *limShard) sweep(now int64) {
	for k, tat := range s.tats {
		if tat <= now {
			delete(s.tats, k)
		}
	}
	s.sweepAt = max(1024, 2*len(s.tats))
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
