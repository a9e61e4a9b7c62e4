package lb

import (
	"math"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Health states of a backend.
const (
	stateUnknown   int32 = iota // added by a reload, not yet checked
	stateHealthy                // takes traffic
	stateUnhealthy              // failed active checks, or ejected and waiting for checks
)

// Backend is one instance of a pool. Its health, ejection and load counters
// are atomics read on every pick; transitions take mu.
type Backend struct {
	id     string
	rawURL string
	url    *url.URL               // scheme, host and path prefix; never modified
	zone   atomic.Pointer[string] // a label; a reload may change it
	weight atomic.Int64

	transport atomic.Pointer[h1Transport]
	metrics   backendMetrics

	state        atomic.Int32
	draining     atomic.Bool
	ejectedUntil atomic.Int64 // unix nanos; 0 = not ejected
	// returning is set from an ejection (with active checks) until the
	// backend is healthy again: after its ejection time it waits for `rise`
	// passing checks, and until then still counts toward
	// max_ejected_percent.
	returning  atomic.Bool
	upSince    atomic.Int64 // unix nanos of the latest return to service; 0 = no slow start
	inflight   atomic.Int64
	consecFail atomic.Int32
	ewma       atomic.Uint64 // float64 bits: latency to response headers, seconds
	lastObs    atomic.Int64  // unix nanos of the latest latency sample
	requests   atomic.Uint64
	failures   atomic.Uint64
	ejections  atomic.Uint64 // total, for the admin API

	// mu guards the transition fields below (health checks and ejection).
	mu          sync.Mutex
	checkOK     int   // consecutive successful active checks
	checkFail   int   // consecutive failed active checks
	ejectStreak int   // ejections in a row, for doubling
	lastEject   int64 // unix nanos of the latest ejection's end
	lastCheck   string
}

// ID is the backend's stable name.
func (b *Backend) ID() string { return b.id }

// URL is the configured backend URL.
func (b *Backend) URL() string { return b.rawURL }

// Addr is the backend's host:port, as logged in the upstream field.
func (b *Backend) Addr() string { return b.url.Host }

// Zone is the configured zone label.
func (b *Backend) Zone() string {
	if z := b.zone.Load(); z != nil {
		return *z
	}
	return ""
}

// Weight is the configured weight.
func (b *Backend) Weight() int { return int(b.weight.Load()) }

// InFlight is the number of requests in progress, until their response
// bodies are closed.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// Latency is the moving average of time to response headers.
func (b *Backend) Latency() time.Duration {
	return time.Duration(math.Float64frombits(b.ewma.Load()) * float64(time.Second))
}

// usable reports whether the backend may take a new request at now (unix
// nanos): healthy, not ejected, not draining.
func (b *Backend) usable(now int64) bool {
	return b.state.Load() == stateHealthy && !b.draining.Load() && b.ejectedUntil.Load() <= now
}

// slowStartFloor is the share of its weight a backend gets when it has
// just returned to service.
const slowStartFloor = 0.05

// rampFactor is the slow-start share of the backend's weight at now, in
// (0, 1].
func (b *Backend) rampFactor(now, window int64) float64 {
	if window <= 0 {
		return 1
	}
	up := b.upSince.Load()
	if up == 0 || now-up >= window {
		return 1
	}
	f := float64(now-up) / float64(window)
	if f < slowStartFloor {
		f = slowStartFloor
	}
	return f
}

// ewmaAlpha weighs the newest latency sample.
const ewmaAlpha = 0.25

// latencyDecay is the time constant with which an unrefreshed latency
// estimate fades toward zero when read, so a backend that was slow once and
// then got no traffic is tried again (as in Finagle's and tower's Peak EWMA).
const latencyDecay = 10 * time.Second

// latencyAt is the latency estimate in seconds at now, decayed since the
// latest sample; 0 when never measured.
func (b *Backend) latencyAt(now int64) float64 {
	v := math.Float64frombits(b.ewma.Load())
	if v == 0 {
		return 0
	}
	if age := now - b.lastObs.Load(); age > 0 {
		v *= math.Exp(-float64(age) / float64(latencyDecay))
	}
	return v
}

// observeLatency blends a sample into the estimate. The old estimate keeps
// its usual share (1-ewmaAlpha) only while fresh: it counts for as much as
// it has decayed since its latest sample, so after a long idle spell the new
// sample is most of the estimate, as a first sample is. Otherwise one slow
// answer long ago would still outweigh a fast one now (0.5 s then, 2 ms now:
// 375 ms), and the backend would be starved again.
func (b *Backend) observeLatency(d time.Duration, now int64) {
	keep := 1 - ewmaAlpha
	if age := now - b.lastObs.Swap(now); age > 0 {
		keep *= math.Exp(-float64(age) / float64(latencyDecay))
	}
	s := d.Seconds()
	for {
		old := b.ewma.Load()
		v := s
		if o := math.Float64frombits(old); o != 0 {
			v += keep * (o - s)
		}
		if b.ewma.CompareAndSwap(old, math.Float64bits(v)) {
			return
		}
	}
}

// healthLabel is the health shown in the admin API.
func (b *Backend) healthLabel(now int64) string {
	switch {
	case b.ejectedUntil.Load() > now:
		return "ejected"
	case b.state.Load() == stateHealthy:
		return "healthy"
	case b.state.Load() == stateUnknown:
		return "unknown"
	}
	return "unhealthy"
}

// BackendStatus is a backend's state in the admin API.
type BackendStatus struct {
	ID        string  `json:"id"`
	URL       string  `json:"url"`
	Zone      string  `json:"zone,omitempty"`
	Weight    int     `json:"weight"`
	Health    string  `json:"health"` // healthy, unhealthy, unknown, ejected
	Draining  bool    `json:"draining"`
	InFlight  int64   `json:"in_flight"`
	Requests  uint64  `json:"requests"`
	Failures  uint64  `json:"failures"`
	Ejections uint64  `json:"ejections"`
	LatencyMS float64 `json:"latency_ms"` // moving average to response headers
	// EjectedUntil is set while the backend is passively ejected.
	EjectedUntil *time.Time `json:"ejected_until,omitempty"`
	// SlowStart is the share of weight during slow start, below 1.
	SlowStart float64 `json:"slow_start,omitempty"`
	LastCheck string  `json:"last_check,omitempty"` // latest active check failure reason, "ok", or ""
}

func (b *Backend) status(now int64, window int64) BackendStatus {
	st := BackendStatus{
		ID:        b.id,
		URL:       b.rawURL,
		Zone:      b.Zone(),
		Weight:    b.Weight(),
		Health:    b.healthLabel(now),
		Draining:  b.draining.Load(),
		InFlight:  b.inflight.Load(),
		Requests:  b.requests.Load(),
		Failures:  b.failures.Load(),
		Ejections: b.ejections.Load(),
		LatencyMS: math.Round(b.Latency().Seconds()*1e6) / 1e3,
	}
	if u := b.ejectedUntil.Load(); u > now {
		t := time.Unix(0, u).UTC()
		st.EjectedUntil = &t
	}
	if f := b.rampFactor(now, window); f < 1 && b.usable(now) {
		st.SlowStart = math.Round(f*100) / 100
	}
	b.mu.Lock()
	st.LastCheck = b.lastCheck
	b.mu.Unlock()
	return st
}
