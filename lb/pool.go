package lb

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Options are the pool's injected dependencies.
type Options struct {
	// Metrics shared by all pools; nil records nothing.
	Metrics *Metrics
	// Logger for health transitions and ejections; nil discards.
	Logger *slog.Logger
	// Now is the clock for health windows, ejections, slow start and the
	// retry budget; default time.Now.
	Now func() time.Time
	// Rand returns uniform uint64s and must be safe for concurrent use;
	// default math/rand/v2.Uint64.
	Rand func() uint64
}

// Errors returned by Pool. Timeouts also satisfy
// errors.Is(err, context.DeadlineExceeded) and net.Error's Timeout.
var (
	// ErrNoBackend means no backend is healthy (or all were tried): 503.
	ErrNoBackend = errors.New("lb: no healthy backend")
	// ErrTimeout means the total or a per-try timeout expired: 504.
	ErrTimeout error = timeoutError{}
	// ErrUnknownBackend is returned by Drain and Enable.
	ErrUnknownBackend = errors.New("lb: unknown backend")
	// ErrClosed is returned by a closed pool.
	ErrClosed = errors.New("lb: pool closed")
)

type timeoutError struct{}

func (timeoutError) Error() string        { return "lb: timeout" }
func (timeoutError) Timeout() bool        { return true }
func (timeoutError) Temporary() bool      { return true }
func (timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Pool balances requests over a set of backends. It is long-lived: create it
// once with New, call Update on config reload and Close when the pool is
// removed from the config.
type Pool struct {
	name    string
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	wallNow bool // now is time.Now: its readings serve as the wall clock
	rand    func() uint64
	budget  *retryBudget
	// stickyKey is the random HMAC key used when the config has no secret;
	// it lives as long as the pool so reloads keep cookies valid.
	stickyKey []byte

	state      atomic.Pointer[poolState]
	closedFlag atomic.Bool // set by Close; read per request

	// mu serializes Update, Close, Drain/Enable and ejection decisions, and
	// guards checkers and closed.
	mu       sync.Mutex
	checkers map[*Backend]context.CancelFunc
	wg       sync.WaitGroup
	closed   bool
}

// poolState is one immutable config generation; RoundTrip loads it once per
// request.
type poolState struct {
	cfg       PoolConfig
	backends  []*Backend
	byID      map[string]*Backend
	policy    Policy
	statusLo  int // active check: accepted status range
	statusHi  int
	slowStart int64 // nanos
	sticky    *sticky
	pass      bool // the pass lane may use it (see passable)
}

// New creates a pool from a config that SetDefaults and Validate accept
// (New applies SetDefaults itself). Its initial backends start healthy, so
// a node that restarts serves at once; active checks and passive ejection
// take failing ones out.
func New(name string, cfg PoolConfig, opts Options) (*Pool, error) {
	p := &Pool{
		name:     name,
		log:      opts.Logger,
		metrics:  opts.Metrics,
		now:      opts.Now,
		rand:     opts.Rand,
		checkers: make(map[*Backend]context.CancelFunc),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "lb", "pool", name)
	if p.metrics == nil {
		p.metrics = NewMetrics(nil)
	}
	if p.now == nil {
		p.now, p.wallNow = time.Now, true
	}
	if p.rand == nil {
		p.rand = mrand.Uint64
	}
	p.stickyKey = make([]byte, 32)
	if _, err := rand.Read(p.stickyKey); err != nil {
		return nil, fmt.Errorf("lb: sticky key: %w", err)
	}
	p.budget = newRetryBudget(p.now)
	if err := p.update(cfg, true); err != nil {
		return nil, err
	}
	return p, nil
}

// Name is the pool's name.
func (p *Pool) Name() string { return p.name }

// Update applies a new config. Backends whose id and URL are unchanged keep
// their health state, counters and connections (their weight and zone
// follow the new config); removed backends finish
// their in-flight requests; added backends take traffic once healthy.
func (p *Pool) Update(cfg PoolConfig) error { return p.update(cfg, false) }

func (p *Pool) update(cfg PoolConfig, initial bool) error {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("lb: pool %q: %w", p.name, err)
	}
	lo, hi, _ := parseStatusRange(cfg.Health.ExpectStatus)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	old := p.state.Load()
	st := &poolState{
		cfg:       cfg,
		byID:      make(map[string]*Backend, len(cfg.Backends)),
		statusLo:  lo,
		statusHi:  hi,
		slowStart: int64(cfg.Health.SlowStart),
	}
	key := p.stickyKey
	if cfg.Sticky.Secret != "" {
		key = []byte(cfg.Sticky.Secret)
	}
	st.sticky = newSticky(p.name, cfg.Sticky, key)

	transportChanged := old == nil || old.cfg.Transport != cfg.Transport ||
		old.cfg.Timeouts.Connect != cfg.Timeouts.Connect || old.cfg.Timeouts.Try != cfg.Timeouts.Try
	// Checkers hold the check config and the transport's TLS settings.
	healthChanged := old == nil || old.cfg.Health != cfg.Health ||
		old.cfg.Transport.TLSServerName != cfg.Transport.TLSServerName ||
		old.cfg.Transport.InsecureSkipVerify != cfg.Transport.InsecureSkipVerify
	now := p.now().UnixNano()
	kept := make(map[*Backend]bool)
	for _, bc := range cfg.Backends {
		var b *Backend
		if old != nil {
			if ob := old.byID[bc.ID]; ob != nil && ob.rawURL == bc.URL {
				b = ob
				kept[b] = true
				b.weight.Store(int64(bc.Weight))
				if zone := bc.Zone; zone != b.Zone() {
					b.zone.Store(&zone)
				}
				if transportChanged {
					prev := b.transport.Swap(newTransport(&cfg))
					prev.retire()
				}
			}
		}
		if b == nil {
			b = p.newBackend(bc, &cfg, initial, now)
			if old != nil {
				if ob := old.byID[bc.ID]; ob != nil && ob.draining.Load() {
					b.draining.Store(true)
				}
			}
		}
		st.backends = append(st.backends, b)
		st.byID[b.id] = b
	}
	st.policy = findPolicy(cfg.Policy).new(st.backends, &cfg)
	st.pass = st.passable()
	p.budget.configure(cfg.Retries)
	p.state.Store(st)

	// Health checkers: stop those of removed backends (and all when the
	// check config changed), start the missing ones.
	for b, stop := range p.checkers {
		if !kept[b] || healthChanged {
			stop()
			delete(p.checkers, b)
		}
	}
	if old != nil {
		for _, b := range old.backends {
			if !kept[b] {
				// In-flight requests hold their own connections; only idle
				// ones are closed.
				b.transport.Load().retire()
				if st.byID[b.id] == nil { // the id may live on with a new URL
					p.metrics.forget(p.name, b.id)
				}
			}
		}
	}
	if cfg.Health.Path != "" {
		for _, b := range st.backends {
			if _, ok := p.checkers[b]; !ok {
				p.startChecker(b, st)
			}
		}
	} else {
		// Checks were turned off: nothing will ever mark these healthy.
		for _, b := range st.backends {
			if b.state.Load() != stateHealthy {
				p.setHealthy(b, true, now)
			}
		}
	}
	return nil
}

func (p *Pool) newBackend(bc BackendConfig, cfg *PoolConfig, initial bool, now int64) *Backend {
	u, _ := parseBackendURL(bc.URL) // validated
	b := &Backend{id: bc.ID, rawURL: bc.URL, url: u}
	zone := bc.Zone
	b.zone.Store(&zone)
	b.weight.Store(int64(bc.Weight))
	b.transport.Store(newTransport(cfg))
	b.metrics = p.metrics.forBackend(p.name, bc.ID)
	switch {
	case initial:
		b.state.Store(stateHealthy)
	case cfg.Health.Path != "":
		b.state.Store(stateUnknown) // admitted after `rise` checks
	default:
		b.state.Store(stateHealthy)
		b.upSince.Store(now)
	}
	// The series may be an earlier backend's under the same id (a new URL).
	if b.state.Load() == stateHealthy {
		b.metrics.healthy.Set(1)
	} else {
		b.metrics.healthy.Set(0)
	}
	return b
}

// newTransport is one backend's connection pool. HTTP/1.1 unless http2 is
// set; compression untouched, since the proxy passes encodings through.
func newTransport(cfg *PoolConfig) *h1Transport {
	t := cfg.Transport
	d := &net.Dialer{Timeout: cfg.Timeouts.Connect.D(), KeepAlive: 30 * time.Second}
	return newH1Transport(&http.Transport{
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   cfg.Timeouts.Connect.D(),
		TLSClientConfig:       &tls.Config{ServerName: t.TLSServerName, InsecureSkipVerify: t.InsecureSkipVerify}, //nolint:gosec // opt-in, documented as testing only
		ForceAttemptHTTP2:     t.HTTP2,
		MaxIdleConnsPerHost:   t.MaxIdlePerBackend,
		MaxConnsPerHost:       t.MaxConnsPerBackend,
		IdleConnTimeout:       t.IdleTimeout.D(),
		ResponseHeaderTimeout: cfg.Timeouts.Try.D(),
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		// As on the h1 path (Go's default is 10MiB).
		MaxResponseHeaderBytes: maxResponseHeader,
	}, d, t.MaxIdlePerBackend, t.IdleTimeout.D(), cfg.Timeouts.Try.D())
}

// Close stops health checks, closes idle connections and drops the pool's
// metric series. In-flight requests finish; new ones fail with ErrClosed.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.closedFlag.Store(true)
	for b, stop := range p.checkers {
		stop()
		delete(p.checkers, b)
	}
	p.mu.Unlock()
	p.wg.Wait()
	if st := p.state.Load(); st != nil {
		for _, b := range st.backends {
			b.transport.Load().retire()
		}
	}
	// In-flight requests keep counting into their detached children.
	p.metrics.forget(p.name, "")
}

// Drain stops new requests to backend id; in-flight ones finish. Sticky
// clients are re-pinned. The flag survives reloads.
func (p *Pool) Drain(id string) error { return p.setDraining(id, true) }

// Enable undoes Drain.
func (p *Pool) Enable(id string) error { return p.setDraining(id, false) }

func (p *Pool) setDraining(id string, on bool) error {
	// Under p.mu, so a reload that replaces the backend (same id, new URL)
	// copies the flag from the backend that got it.
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.state.Load().byID[id]
	if b == nil {
		return ErrUnknownBackend
	}
	if b.draining.Swap(on) != on {
		p.log.Info("backend draining changed", "backend", id, "draining", on)
		if !on && b.state.Load() == stateHealthy {
			// Back from a drain (often a restart behind it, caches
			// cold), it ramps up over slow_start as a recovered backend
			// does, like HAProxy's slowstart after maintenance.
			b.upSince.Store(p.now().UnixNano())
		}
	}
	return nil
}

// Backends returns the current backends in config order.
func (p *Pool) Backends() []*Backend {
	return append([]*Backend(nil), p.state.Load().backends...)
}

// PoolStatus is a pool's state in the admin API.
type PoolStatus struct {
	Name     string          `json:"name"`
	Policy   string          `json:"policy"`
	Healthy  int             `json:"healthy"` // backends taking new requests
	Backends []BackendStatus `json:"backends"`
}

// Status reports the pool and its backends.
func (p *Pool) Status() PoolStatus {
	st := p.state.Load()
	now := p.now().UnixNano()
	ps := PoolStatus{Name: p.name, Policy: st.cfg.Policy, Backends: make([]BackendStatus, 0, len(st.backends))}
	for _, b := range st.backends {
		if b.usable(now) {
			ps.Healthy++
		}
		ps.Backends = append(ps.Backends, b.status(now, st.slowStart))
	}
	return ps
}

// setHealthy records an active health transition. Caller holds b.mu or
// owns b exclusively.
func (p *Pool) setHealthy(b *Backend, up bool, now int64) {
	if up {
		b.returning.Store(false)
		b.state.Store(stateHealthy)
		b.upSince.Store(now)
		b.metrics.healthy.Set(1)
		b.metrics.becameHealthy.Inc()
		p.log.Info("backend healthy", "backend", b.id)
		return
	}
	b.state.Store(stateUnhealthy)
	b.metrics.healthy.Set(0)
	b.metrics.becameUnhealthy.Inc()
	p.log.Warn("backend unhealthy", "backend", b.id, "reason", b.lastCheck)
}

// recordOutcome feeds passive health: failed is a connect error, timeout or
// 5xx of one try.
func (p *Pool) recordOutcome(st *poolState, b *Backend, failed bool) {
	if !failed {
		if b.consecFail.Load() != 0 {
			b.consecFail.Store(0)
		}
		return
	}
	b.failures.Add(1)
	n := b.consecFail.Add(1)
	if st.cfg.Outlier.Disabled || int(n) < st.cfg.Outlier.ConsecutiveFailures {
		return
	}
	p.eject(st, b)
}

// otherUsable reports whether a backend other than b takes traffic.
func otherUsable(st *poolState, b *Backend, now int64) bool {
	for _, o := range st.backends {
		if o != b && o.usable(now) {
			return true
		}
	}
	return false
}

// eject takes b out of rotation for the base ejection time, doubled per
// repeat, unless that would eject more than the allowed share of the pool.
func (p *Pool) eject(st *poolState, b *Backend) {
	o := st.cfg.Outlier
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now().UnixNano()
	if b.ejectedUntil.Load() > now {
		return
	}
	ejected := 0
	for _, o := range st.backends {
		if o.ejectedUntil.Load() > now || o.returning.Load() {
			ejected++
		}
	}
	allowed := len(st.backends) * o.MaxEjectedPercent / 100
	if allowed == 0 && len(st.backends) > 1 {
		allowed = 1
	}
	if ejected+1 > allowed {
		return
	}
	if o.MaxEjectedPercent < 100 && !otherUsable(st, b, now) {
		// The others are down by their checks, draining or ejected:
		// ejecting b would answer every request 503 instead of the
		// share b still gets right. Only an explicit 100% empties a pool.
		return
	}
	b.mu.Lock()
	if b.lastEject != 0 && now-b.lastEject > int64(o.MaxEjectionTime) {
		b.ejectStreak = 0
	}
	d := o.BaseEjectionTime.D()
	for i := 0; i < b.ejectStreak && d < o.MaxEjectionTime.D(); i++ {
		d *= 2
	}
	d = min(d, o.MaxEjectionTime.D())
	b.ejectStreak++
	until := now + int64(d)
	b.ejectedUntil.Store(until)
	b.lastEject = until
	b.consecFail.Store(0)
	if st.cfg.Health.Path != "" {
		// It returns through the active check: `rise` successes after the
		// ejection time.
		b.checkOK = 0
		b.returning.Store(true)
		if b.state.Load() == stateHealthy {
			b.lastCheck = "ejected"
			p.setHealthy(b, false, now)
		}
	} else {
		b.upSince.Store(until) // slow start from the ejection's end
	}
	b.mu.Unlock()
	b.ejections.Add(1)
	b.metrics.ejections.Inc()
	p.log.Warn("backend ejected", "backend", b.id, "for", d.String())
}

// sortedPools returns pools sorted by name, for the admin API.
func sortedPools(m map[string]*Pool) []*Pool {
	out := make([]*Pool, 0, len(m))
	for _, p := range m {
		if p != nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
