package dns

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// rrlAction is what response rate limiting does with one UDP response.
type rrlAction uint8

const (
	rrlPass rrlAction = iota
	rrlDrop
	rrlSlip // send an empty truncated answer so real clients retry on TCP

	rrlUnchecked rrlAction = 255 // not decided yet
)

// rrlShards spreads buckets over independent locks.
const rrlShards = 64

// rrlMaxPerShard bounds memory under a spoofed-source flood: a full shard
// first drops idle buckets, then starts over.
const rrlMaxPerShard = 8192

// rrl is response rate limiting per client prefix, as in BIND and Knot:
// a token bucket of responses per second for each /24 (IPv4) or /56 (IPv6).
// Buckets are long-lived; configure swaps the settings.
type rrl struct {
	now      func() time.Time
	settings atomic.Pointer[rrlSettings]
	shards   [rrlShards]rrlShard
}

type rrlSettings struct {
	disabled bool
	rate     float64 // tokens per second
	burst    float64
	slip     int
	v4, v6   int
	exempt   []netip.Prefix
}

type rrlShard struct {
	mu      sync.Mutex // guards buckets
	buckets map[netip.Addr]*rrlBucket
}

type rrlBucket struct {
	tokens  float64
	last    int64  // unix nanos of the last refill
	limited uint32 // limited responses so far, for the slip ratio
}

func newRRL(cfg RRLConfig, now func() time.Time) *rrl {
	r := &rrl{now: now}
	for i := range r.shards {
		r.shards[i].buckets = map[netip.Addr]*rrlBucket{}
	}
	r.configure(cfg)
	return r
}

func (r *rrl) configure(cfg RRLConfig) {
	st := &rrlSettings{
		disabled: cfg.Disabled, rate: float64(cfg.ResponsesPerSecond), burst: float64(cfg.Burst),
		slip: cfg.Slip, v4: cfg.IPv4Prefix, v6: cfg.IPv6Prefix,
	}
	for _, e := range cfg.Exempt {
		if p, err := netip.ParsePrefix(e); err == nil {
			st.exempt = append(st.exempt, p.Masked())
		}
	}
	if st.rate <= 0 {
		st.disabled = true
	}
	st.burst = max(st.burst, 1)
	r.settings.Store(st)
}

// check charges one response to addr's prefix.
func (r *rrl) check(addr netip.Addr) rrlAction {
	st := r.settings.Load()
	if st.disabled || !addr.IsValid() {
		return rrlPass
	}
	for _, p := range st.exempt {
		if p.Contains(addr) {
			return rrlPass
		}
	}
	bits := st.v4
	if !addr.Is4() {
		bits = st.v6
	}
	key, err := addr.Prefix(bits)
	if err != nil {
		return rrlPass
	}
	k := key.Addr()
	sh := &r.shards[shardOf(k)]
	now := r.now().UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[k]
	if b == nil {
		if len(sh.buckets) >= rrlMaxPerShard {
			sh.sweep(now, st)
		}
		b = &rrlBucket{tokens: st.burst, last: now}
		sh.buckets[k] = b
	}
	if el := now - b.last; el > 0 {
		b.tokens = min(st.burst, b.tokens+float64(el)/1e9*st.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return rrlPass
	}
	b.limited++
	if st.slip > 0 && b.limited%uint32(st.slip) == 0 {
		return rrlSlip
	}
	return rrlDrop
}

// sweep drops buckets that have refilled (idle clients); if the shard is
// still full, it starts over, which at worst lets a flood's sources burst
// once more.
func (sh *rrlShard) sweep(now int64, st *rrlSettings) {
	full := int64(st.burst / st.rate * 1e9)
	for k, b := range sh.buckets {
		if now-b.last >= full {
			delete(sh.buckets, k)
		}
	}
	if len(sh.buckets) >= rrlMaxPerShard {
		clear(sh.buckets)
	}
}

func shardOf(a netip.Addr) int {
	b := a.As16()
	var h uint32 = 2166136261
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return int(h % rrlShards)
}
