package lb

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outpost-edge/outpost/internal/units"
)

// TestReloadZoneChangeKeepsBackend: a reload that only relabels a backend's
// zone keeps the backend (health, counters, connections) instead of
// replacing it with a new one that waits for `rise` checks.
func TestReloadZoneChangeKeepsBackend(t *testing.T) {
	a := startBackend(t, "a", nil)
	cfg := poolConfig(PolicyRoundRobin, a)
	cfg.Health = fastHealth()
	cfg.Health.Interval = units.Duration(time.Hour) // a second check never comes
	cfg.Health.Jitter = 0
	p := newTestPool(t, cfg, Options{})
	before := p.Backends()[0]
	cfg2 := poolConfig(PolicyRoundRobin, a)
	cfg2.Health = cfg.Health
	cfg2.Backends[0].Zone = "eu"
	if err := p.Update(cfg2); err != nil {
		t.Fatal(err)
	}
	if p.Backends()[0] != before {
		t.Errorf("zone change replaced the backend")
	}
	st := backendStatus(p, "a")
	if st.Health != "healthy" || st.Zone != "eu" {
		t.Errorf("after zone change: health %q zone %q, want healthy eu", st.Health, st.Zone)
	}
	if id, err := get(t, p, "/"); err != nil || id != "a" {
		t.Errorf("request after zone change: %q %v", id, err)
	}
}

// TestP2CLatencySampleAfterDecay: a new latency sample outweighs an
// estimate that has faded, so a backend that was slow once, idled and then
// answered fast is not thrown back to its old latency.
func TestP2CLatencySampleAfterDecay(t *testing.T) {
	for _, tc := range []struct {
		name   string
		idle   time.Duration
		sample time.Duration
		min    float64 // seconds
		max    float64
	}{
		// 2 ms + 0.75 × e^-6 × (0.5 s - 2 ms) ≈ 2.9 ms, not 375 ms.
		{"long idle, fast sample", time.Minute, 2 * time.Millisecond, 0.002, 0.004},
		{"10 s idle", 10 * time.Second, 2 * time.Millisecond, 0.13, 0.14},
		{"no idle", 0, 2 * time.Millisecond, 0.375, 0.376},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := fakeBackends(1)[0]
			b.observeLatency(500*time.Millisecond, testNow)
			later := testNow + int64(tc.idle)
			b.observeLatency(tc.sample, later)
			got := b.latencyAt(later)
			if got < tc.min || got > tc.max {
				t.Errorf("estimate %.4fs, want in [%.4f, %.4f]", got, tc.min, tc.max)
			}
		})
	}
}

// TestRingAllUnusableNoSpin: with every backend down, a hash pick returns
// nil after looking at each backend, not after walking all 2^18 ring points.
func TestRingAllUnusableNoSpin(t *testing.T) {
	for _, name := range []string{PolicyIPHash, PolicyConsistentHash} {
		t.Run(name, func(t *testing.T) {
			ws := make([]int, 100)
			for i := range ws {
				ws[i] = 1000
			}
			bs := fakeBackends(ws...)
			p := newPolicy(t, name, bs, "uri")
			for _, b := range bs {
				b.state.Store(stateUnhealthy)
			}
			rnd := lockedRand(11)
			req := &http.Request{URL: &url.URL{Path: "/x"}}
			const picks = 500
			for i := range picks {
				s := NewSelection(req, bs, testNow, rnd)
				s.ClientIP = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
				if b := p.Pick(s); b != nil {
					t.Fatalf("picked %s", b.id)
				}
				// Each backend is looked at about twice (the walk, then
				// the one check that any is usable), not once per point.
				if s.checks > 3*len(bs) {
					t.Fatalf("pick %d checked backends %d times with %d backends", i, s.checks, len(bs))
				}
			}
			// One usable backend is still found.
			bs[57].state.Store(stateHealthy)
			for i := range 50 {
				s := NewSelection(&http.Request{URL: &url.URL{Path: fmt.Sprint("/", i)}}, bs, testNow, rnd)
				s.ClientIP = netip.AddrFrom4([4]byte{10, 1, 0, byte(i)})
				if b := p.Pick(s); b != bs[57] {
					t.Fatalf("picked %v, want b57", b)
				}
			}
		})
	}
}

// TestDrainRacesReload: a drain that races a reload replacing the backend
// (same id, new URL) is not lost.
func TestDrainRacesReload(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	cfgFor := func(u string) PoolConfig {
		cfg := poolConfig(PolicyRoundRobin, a)
		cfg.Backends = append(cfg.Backends, BackendConfig{ID: "x", URL: u})
		return cfg
	}
	p := newTestPool(t, cfgFor(a.url()+"/x0"), Options{})
	for i := range 2000 {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := p.Drain("x"); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if err := p.Update(cfgFor(fmt.Sprintf("%s/x%d", b.url(), i+1))); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		if !backendStatus(p, "x").Draining {
			t.Fatalf("iteration %d: drain lost to a concurrent reload", i)
		}
		if err := p.Enable("x"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReloadTLSRestartsChecks: active checks use the transport's TLS
// settings, so a reload that only fixes them (here: the certificate trust)
// must restart the checkers; before, they kept failing with the old
// settings and the backend stayed unhealthy while requests would succeed.
func TestReloadTLSRestartsChecks(t *testing.T) {
	s, _ := tlsBackend(t, false)
	cfg := PoolConfig{Backends: []BackendConfig{{URL: s.URL, ID: "tls"}}}
	cfg.Health = fastHealth()
	p := newTestPool(t, cfg, Options{})
	eventually(t, "tls unhealthy", func() bool { return backendStatus(p, "tls").Health == "unhealthy" })
	cfg.Transport.InsecureSkipVerify = true
	if err := p.Update(cfg); err != nil {
		t.Fatal(err)
	}
	eventually(t, "tls healthy after the TLS fix", func() bool { return backendStatus(p, "tls").Health == "healthy" })
	if id, err := get(t, p, "/"); err != nil || id != "" {
		t.Errorf("request: %q %v", id, err)
	}
}

// TestEjectedShareCountsBackendsAwaitingRise: with active checks, an
// ejected backend stays out after its ejection time until `rise` checks
// pass; until then it still counts toward max_ejected_percent, so the
// other backend of a pair is not ejected too (leaving none).
func TestEjectedShareCountsBackendsAwaitingRise(t *testing.T) {
	clk := newFakeClock()
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	cfg := poolConfig(PolicyRoundRobin, a, b)
	cfg.Health = fastHealth()
	cfg.Health.Interval = units.Duration(time.Hour)
	cfg.Outlier.ConsecutiveFailures = 1
	cfg.Outlier.BaseEjectionTime = units.Duration(10 * time.Second)
	cfg.Outlier.MaxEjectionTime = units.Duration(time.Minute)
	cfg.Outlier.MaxEjectedPercent = 50
	p := newTestPool(t, cfg, Options{Now: clk.Now})
	for _, id := range []string{"a", "b"} {
		eventually(t, id+" checked", func() bool { return backendStatus(p, id).LastCheck == "ok" })
	}
	st := p.state.Load()
	ba, bb := st.byID["a"], st.byID["b"]
	p.recordOutcome(st, ba, true)
	if got := backendStatus(p, "a").Health; got != "ejected" {
		t.Fatalf("a %s, want ejected", got)
	}
	clk.Advance(11 * time.Second) // a's time is up; it waits for rise checks
	p.recordOutcome(st, bb, true)
	if got := backendStatus(p, "b").Health; got != "healthy" {
		t.Fatalf("b %s while a awaits its checks: over the 50%% share", got)
	}
	p.applyCheck(ba, st.cfg.Health, "")
	p.applyCheck(ba, st.cfg.Health, "")
	if got := backendStatus(p, "a").Health; got != "healthy" {
		t.Fatalf("a %s after rise checks", got)
	}
	p.recordOutcome(st, bb, true)
	if got := backendStatus(p, "b").Health; got != "ejected" {
		t.Errorf("b %s once a returned, want ejected", got)
	}
}

// TestClientGoneDuringBackoff: a client that goes away while the pool waits
// to retry gets the context's error (documented: "client went away | the
// context's error, unwrapped"), not the failed try's connect error, so the
// proxy does not log a backend failure (502) for it.
func TestClientGoneDuringBackoff(t *testing.T) {
	cfg := PoolConfig{Backends: []BackendConfig{{URL: refusedURL(t), ID: "r1"}, {URL: refusedURL(t), ID: "r2"}}}
	cfg.Retries = RetryConfig{MaxTries: 2, Backoff: units.Duration(time.Second), MaxBackoff: units.Duration(time.Second)}
	cfg.Outlier.Disabled = true
	p := newTestPool(t, cfg, Options{Rand: func() uint64 { return uint64(900 * time.Millisecond) }})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://pool/", nil)
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := p.RoundTrip(req)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

// TestReplacedBackendHealthGauge: a reload that moves an id to a new URL
// starts a new, unchecked backend; outpost_lb_backend_healthy follows it
// (0 until its `rise` checks pass) instead of keeping the old backend's 1.
func TestReplacedBackendHealthGauge(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	m := NewMetrics(nil)
	cfg := PoolConfig{Backends: []BackendConfig{{URL: a.url(), ID: "x"}}}
	cfg.Health = fastHealth()
	cfg.Health.Interval = units.Duration(time.Hour)
	p := newTestPool(t, cfg, Options{Metrics: m})
	gauge := func() float64 { return testutil.ToFloat64(m.healthy.WithLabelValues("test", "x")) }
	if g := gauge(); g != 1 {
		t.Fatalf("gauge %v at start", g)
	}
	cfg.Backends[0].URL = b.url()
	if err := p.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if h := backendStatus(p, "x").Health; h == "healthy" {
		t.Fatalf("replaced backend healthy before its checks")
	}
	if g := gauge(); g != 0 {
		t.Errorf("gauge %v for a backend not yet checked, want 0", g)
	}
}

// TestHashStabilityLargeWeights: with large weights the ring is capped at
// 2^18 points; removing a backend or changing one's weight must still move
// only keys to or from that backend, not rescale every backend's share of
// the ring (which moved 7-10% of keys between unchanged backends).
func TestHashStabilityLargeWeights(t *testing.T) {
	thousands := func(n int) []int {
		ws := make([]int, n)
		for i := range ws {
			ws[i] = 1000
		}
		return ws
	}
	for _, tc := range []struct {
		name          string
		before, after []int // after: one backend fewer, or one weight changed
	}{
		{"remove 1 of 4", thousands(4), thousands(3)},
		{"remove 1 of 10", thousands(10), thousands(9)},
		{"weight 1000 to 900 of 4", thousands(4), []int{1000, 1000, 1000, 900}},
		{"weight 1000 to 600 of 10", thousands(10), append(thousands(9), 600)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := fakeBackends(tc.before...)
			changed := all[len(all)-1]
			var after []*Backend
			if len(tc.after) < len(tc.before) {
				after = all[:len(tc.after)]
			} else {
				after = fakeBackends(tc.after...) // same ids, new weights
			}
			p1, p2 := newPolicy(t, PolicyIPHash, all, ""), newPolicy(t, PolicyIPHash, after, "")
			rnd := lockedRand(12)
			between := 0
			const keys = 20000
			for i := range keys {
				ip := netip.AddrFrom4([4]byte{192, byte(i >> 16), byte(i >> 8), byte(i)})
				s1 := NewSelection(nil, all, testNow, rnd)
				s1.ClientIP = ip
				s2 := NewSelection(nil, after, testNow, rnd)
				s2.ClientIP = ip
				a, b := p1.Pick(s1), p2.Pick(s2)
				if a.id != b.id && a.id != changed.id && b.id != changed.id {
					between++
				}
			}
			if between != 0 {
				t.Errorf("%d of %d keys moved between unchanged backends", between, keys)
			}
		})
	}
}

// TestConsistentHashCookieNoAlloc: hashing on a cookie reads it without
// parsing every cookie of the request into a slice (r.Cookie allocates per
// pick), and agrees with r.Cookie on which value it hashes.
func TestConsistentHashCookieNoAlloc(t *testing.T) {
	bs := fakeBackends(1, 1, 1)
	p := newPolicy(t, PolicyConsistentHash, bs, "cookie:sid")
	req := &http.Request{URL: &url.URL{Path: "/"}, Header: http.Header{}}
	req.Header.Add("Cookie", "a=1; theme=dark; sid=abc123; z=2")
	s := NewSelection(req, bs, testNow, lockedRand(13))
	if n := testing.AllocsPerRun(100, func() { p.Pick(s) }); n != 0 {
		t.Errorf("%v allocations per pick", n)
	}
	for _, tc := range []struct {
		cookies []string
		want    string // "" = no usable cookie
	}{
		{[]string{"sid=abc123"}, "abc123"},
		{[]string{"a=1;sid=x;sid=y"}, "x"},
		{[]string{"a=1", " sid = v "}, " v"},
		{[]string{`sid=a\b; sid=ok`}, "ok"}, // an invalid value is skipped
		{[]string{"a=1", "sid=v2"}, "v2"},
		{[]string{`sid="q"`}, "q"},
		{[]string{"sidx=1; xsid=2"}, ""},
		{[]string{"sid="}, ""},
		{nil, ""},
	} {
		r := &http.Request{Header: http.Header{"Cookie": tc.cookies}}
		want := ""
		if c, err := r.Cookie("sid"); err == nil {
			want = c.Value
		}
		if want != tc.want {
			t.Fatalf("%q: r.Cookie gives %q, table says %q", tc.cookies, want, tc.want)
		}
		if got := cookieValue(r.Header, "sid"); got != want {
			t.Errorf("%q: cookieValue %q, r.Cookie %q", tc.cookies, got, want)
		}
	}
}

// TestCloseForgetsSeries: a pool that leaves the config (Close) drops its
// backends' series, as a reload drops a removed backend's; before, a removed
// pool kept reporting outpost_lb_backend_healthy 1 forever.
func TestCloseForgetsSeries(t *testing.T) {
	a := startBackend(t, "a", nil)
	m := NewMetrics(nil)
	keep := newTestPool(t, poolConfig(PolicyRoundRobin, a), Options{Metrics: m})
	p, err := New("gone", poolConfig(PolicyRoundRobin, a), Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	for _, pl := range []*Pool{keep, p} {
		if _, err := get(t, pl, "/"); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	for name, c := range map[string]prometheus.Collector{"requests": m.requests, "healthy": m.healthy, "latency": m.latency} {
		if n := testutil.CollectAndCount(c); n != 1 {
			t.Errorf("%s: %d series after Close, want 1 (the other pool's)", name, n)
		}
	}
}

// TestIPv6BackendDefaultID: a backend URL with an IPv6 literal and no id
// gets the default id host:port ("[::1]:9001"), which validation accepted
// only for IPv4 and names; it must also pin through the sticky cookie.
func TestIPv6BackendDefaultID(t *testing.T) {
	for _, u := range []string{"http://[::1]:9001", "http://[2001:db8::7]:80/api", "http://10.0.0.1:9001"} {
		// With a lifetime the cookie is "ID.TS.SIG", and these ids hold
		// dots and colons of their own.
		for _, life := range []time.Duration{0, time.Hour} {
			cfg := PoolConfig{Backends: []BackendConfig{{URL: u}}, Sticky: StickyConfig{Enabled: true, Lifetime: units.Duration(life)}}
			cfg.SetDefaults()
			if err := cfg.Validate(); err != nil {
				t.Errorf("%s: %v", u, err)
				continue
			}
			id := cfg.Backends[0].ID
			b := &Backend{id: id}
			s := newSticky("p", cfg.Sticky, []byte("0123456789abcdef"))
			resp := &http.Response{Header: http.Header{"Set-Cookie": {s.cookie(b, false, 1000)}}}
			req := &http.Request{Header: http.Header{}}
			for _, c := range resp.Cookies() {
				req.AddCookie(c)
			}
			if got, refresh := s.lookup(req, map[string]*Backend{id: b}, 1000); got != b || refresh {
				t.Errorf("%s, lifetime %v: sticky cookie %q does not pin id %q (or asks for a refresh at once)", u, life, resp.Header.Get("Set-Cookie"), id)
			}
		}
	}
}

// TestAdminDrainIPv6ID: the admin API drains a backend whose id is an IPv6
// host:port.
func TestAdminDrainIPv6ID(t *testing.T) {
	cfg := PoolConfig{Backends: []BackendConfig{{URL: "http://[::1]:9"}, {URL: "http://127.0.0.1:9"}}}
	p := newTestPool(t, cfg, Options{})
	h := AdminHandler(func() map[string]*Pool { return map[string]*Pool{"test": p} })
	if rec := adminDo(t, h, http.MethodPost, "/v1/pools/test/backends/[::1]:9/drain"); rec.Code != http.StatusOK {
		t.Fatalf("drain: %d %s", rec.Code, rec.Body)
	}
	if !backendStatus(p, "[::1]:9").Draining {
		t.Errorf("not draining")
	}
}
