package lb

import (
	"net/http"
	"net/netip"
)

// Policy picks a backend for a request. A policy is built for one backend
// set (the factory in policies() runs again on reload) and must be safe for
// concurrent use.
type Policy interface {
	// Pick returns a backend for which s.Usable is true, or nil when none is.
	Pick(s *Selection) *Backend
}

// policyDef names a policy and builds it for a backend set.
type policyDef struct {
	name string
	new  func(backends []*Backend, cfg *PoolConfig) Policy
}

// policies lists every policy. Adding one is a new file plus one line here.
func policies() []policyDef {
	return []policyDef{
		{PolicyRoundRobin, newRoundRobin},
		{PolicyLeastConnections, newLeastConnections},
		{PolicyIPHash, newIPHash},
		{PolicyConsistentHash, newConsistentHash},
		{PolicyP2C, newP2C},
	}
}

func findPolicy(name string) *policyDef {
	for _, p := range policies() {
		if p.name == name {
			return &p
		}
	}
	return nil
}

func policyNames() []string {
	ps := policies()
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.name
	}
	return names
}

// Selection is what a policy sees for one pick: the request, the pool's
// backends, and which of them may be used now. Retries pick again with the
// backends already tried excluded.
type Selection struct {
	// Req is the outbound request.
	Req *http.Request
	// ClientIP is the client as the edge established it (never a forwarded
	// header from an untrusted peer); may be invalid in tests.
	ClientIP netip.Addr
	// Backends is the pool's full backend set in config order; index i of a
	// policy's own tables refers to Backends[i].
	Backends []*Backend

	now       int64 // unix nanos
	slowStart int64 // window in nanos
	rand      func() uint64
	tried     [maxTriesLimit]*Backend
	ntried    int
	checks    int // Usable calls, so tests can bound a policy's work per pick
}

// NewSelection builds a Selection, for policy tests and benchmarks; the
// pool builds its own. now is unix nanos; rand must be safe for concurrent use.
func NewSelection(req *http.Request, backends []*Backend, now int64, rand func() uint64) *Selection {
	return &Selection{Req: req, Backends: backends, now: now, rand: rand}
}

// Usable reports whether Backends[i] may take this request: healthy, not
// ejected, not draining and not already tried.
func (s *Selection) Usable(i int) bool {
	s.checks++
	b := s.Backends[i]
	if !b.usable(s.now) {
		return false
	}
	if s.ntried == 0 {
		return true
	}
	for _, t := range s.tried[:s.ntried] {
		if t == b {
			return false
		}
	}
	return true
}

// anyUsable reports whether some backend is usable.
func (s *Selection) anyUsable() bool {
	for i := range s.Backends {
		if s.Usable(i) {
			return true
		}
	}
	return false
}

// weightScale keeps slow-start fractions in integer weights.
const weightScale = 1000

// Weight is Backends[i]'s effective weight (configured weight scaled by
// weightScale, reduced during slow start), or 0 when it is not usable.
func (s *Selection) Weight(i int) int64 {
	if !s.Usable(i) {
		return 0
	}
	b := s.Backends[i]
	w := b.weight.Load() * weightScale
	if s.slowStart == 0 {
		return w
	}
	if f := b.rampFactor(s.now, s.slowStart); f < 1 {
		w = int64(float64(w) * f)
		if w < 1 {
			w = 1
		}
	}
	return w
}

// Ramp is Backends[i]'s slow-start share in (0, 1]; hash policies skip a
// ramping backend with probability 1-Ramp.
func (s *Selection) Ramp(i int) float64 {
	return s.Backends[i].rampFactor(s.now, s.slowStart)
}

// Rand returns a uniformly random uint64.
func (s *Selection) Rand() uint64 { return s.rand() }

// RandN returns a uniformly random int in [0, n); n > 0.
func (s *Selection) RandN(n int) int { return int(s.rand() % uint64(n)) }

// exclude marks b as tried.
func (s *Selection) exclude(b *Backend) {
	if s.ntried < len(s.tried) {
		s.tried[s.ntried] = b
		s.ntried++
	}
}

// skipRamping reports whether a hash policy should pass over Backends[i]
// because it is still in slow start.
func (s *Selection) skipRamping(i int) bool {
	f := s.Ramp(i)
	if f >= 1 {
		return false
	}
	return float64(s.rand()>>11)/(1<<53) >= f
}
