package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcraScript is GCRA in one atomic round trip. It uses the Redis clock
// (TIME) so that nodes with skewed clocks still share one schedule.
// Times are microseconds, which a Lua double holds exactly.
//
// KEYS[1] = limiter key; ARGV[1] = emission interval (µs), ARGV[2] = burst.
// Returns {allowed (0/1), remaining, reset (µs), retry_after (µs)}.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.floor((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval), new_tat - now, 0}
`)

// errCircuitOpen means Redis is not asked right now; decide locally.
var errCircuitOpen = errors.New("redis limiter: circuit open")

// redisLimiter is the global limiter. A circuit breaker sits in front of
// Redis: after a failure, decisions go local for the cooldown, then one
// request probes Redis; success closes the circuit. So a dead Redis costs
// one timed-out call per cooldown, not one per request. Long-lived (State).
type redisLimiter struct {
	client  redis.UniversalClient
	now     func() time.Time
	log     *slog.Logger
	metrics *Metrics

	// Per-config knobs, swapped atomically by each config generation.
	prefix   atomic.Pointer[string]
	timeout  atomic.Int64 // nanoseconds
	cooldown atomic.Int64 // nanoseconds

	openUntil atomic.Int64 // unix nanos; 0 = closed (Redis in use)
	probing   atomic.Bool  // one half-open probe in flight
}

func newRedisLimiter(c redis.UniversalClient, now func() time.Time, log *slog.Logger, m *Metrics) *redisLimiter {
	l := &redisLimiter{client: c, now: now, log: log, metrics: m}
	l.configure(RedisConfig{KeyPrefix: "outpost:rl:", Timeout: 50e6, Cooldown: 2e9})
	m.redisUp.Set(1)
	return l
}

func (l *redisLimiter) configure(c RedisConfig) {
	p := c.KeyPrefix
	l.prefix.Store(&p)
	l.timeout.Store(int64(c.Timeout))
	l.cooldown.Store(int64(c.Cooldown))
}

// Allow asks Redis. It fails fast with errCircuitOpen while the circuit
// is open; any error means the caller must decide locally.
func (l *redisLimiter) Allow(ctx context.Context, key string, p *policy) (Decision, error) {
	probe := false
	if until := l.openUntil.Load(); until != 0 {
		if l.now().UnixNano() < until || !l.probing.CompareAndSwap(false, true) {
			return Decision{}, errCircuitOpen
		}
		probe = true
	}
	callCtx, cancel := context.WithTimeout(ctx, time.Duration(l.timeout.Load()))
	d, err := l.eval(callCtx, key, p)
	cancel()
	if probe {
		l.probing.Store(false)
	}
	if err != nil {
		if ctx.Err() != nil {
			// The client went away; that says nothing about Redis.
			return Decision{}, err
		}
		l.trip(err)
		return Decision{}, err
	}
	if l.openUntil.Swap(0) != 0 {
		l.metrics.redisUp.Set(1)
		l.log.Info("redis rate limiter recovered; limits are global again")
	}
	return d, nil
}

func (l *redisLimiter) trip(err error) {
	until := l.now().Add(time.Duration(l.cooldown.Load())).UnixNano()
	if l.openUntil.Swap(until) == 0 {
		l.metrics.redisUp.Set(0)
		l.log.Warn("redis rate limiter unavailable; falling back to local limits", "err", err)
	}
}

func (l *redisLimiter) eval(ctx context.Context, key string, p *policy) (Decision, error) {
	interval := max(int64(p.interval/time.Microsecond), 1)
	res, err := gcraScript.Run(ctx, l.client, []string{*l.prefix.Load() + key}, interval, p.burst).Int64Slice()
	if err != nil {
		return Decision{}, err
	}
	if len(res) != 4 {
		return Decision{}, fmt.Errorf("redis limiter: unexpected reply of %d values", len(res))
	}
	return Decision{
		Allowed:    res[0] == 1,
		Remaining:  int(res[1]),
		Reset:      time.Duration(res[2]) * time.Microsecond,
		RetryAfter: time.Duration(res[3]) * time.Microsecond,
	}, nil
}
