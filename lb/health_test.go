package lb

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testclock"
	"github.com/outpost-edge/outpost/internal/units"
)

// fakeClock is the shared manual test clock.
type fakeClock = testclock.Clock

func newFakeClock() *fakeClock { return testclock.New(time.Unix(1_700_000_000, 0)) }

func TestActiveHealthRiseFall(t *testing.T) {
	b := startBackend(t, "a", nil)
	other := startBackend(t, "b", nil)
	cfg := poolConfig(PolicyRoundRobin, b, other)
	cfg.Health = fastHealth()
	cfg.Health.Host = "health.internal"
	p := newTestPool(t, cfg, Options{})
	b.sick.Store(true)
	eventually(t, "a unhealthy", func() bool { return backendStatus(p, "a").Health == "unhealthy" })
	if got := backendStatus(p, "a").LastCheck; got != "status 503" {
		t.Errorf("last check %q", got)
	}
	for range 10 {
		if id, _ := get(t, p, "/"); id != "b" {
			t.Fatalf("unhealthy backend served")
		}
	}
	b.sick.Store(false)
	eventually(t, "a healthy", func() bool { return backendStatus(p, "a").Health == "healthy" })
	if _, ok := b.hosts.Load("health.internal"); !ok {
		t.Errorf("custom Host header not sent")
	}
}

func TestActiveHealthBody(t *testing.T) {
	b := startBackend(t, "a", nil)
	cfg := poolConfig(PolicyRoundRobin, b)
	cfg.Health = fastHealth()
	cfg.Health.ExpectBody = "all good"
	cfg.Health.ExpectStatus = "200"
	p := newTestPool(t, cfg, Options{})
	eventually(t, "body mismatch", func() bool { return backendStatus(p, "a").LastCheck == "body mismatch" })
	eventually(t, "a unhealthy", func() bool { return backendStatus(p, "a").Health == "unhealthy" })
}

// TestNewBackendNeedsRise: a backend added by a reload takes no traffic
// until its checks pass; with checks failing it never does.
func TestNewBackendNeedsRise(t *testing.T) {
	a := startBackend(t, "a", nil)
	n := startBackend(t, "n", nil)
	n.sick.Store(true)
	cfg := poolConfig(PolicyRoundRobin, a)
	cfg.Health = fastHealth()
	p := newTestPool(t, cfg, Options{})
	cfg2 := poolConfig(PolicyRoundRobin, a, n)
	cfg2.Health = fastHealth()
	if err := p.Update(cfg2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n checked", func() bool { return backendStatus(p, "n").LastCheck != "" })
	for range 10 {
		if id, _ := get(t, p, "/"); id != "a" {
			t.Fatalf("unchecked backend served")
		}
	}
	n.sick.Store(false)
	eventually(t, "n healthy", func() bool { return backendStatus(p, "n").Health == "healthy" })
}

// TestOutlierEjection uses an injected clock: ejection after consecutive
// failures, doubling on repeat, a cap on the ejected share, and return
// without active checks once the time is up.
func TestOutlierEjection(t *testing.T) {
	clk := newFakeClock()
	cfg := PoolConfig{Backends: []BackendConfig{
		{URL: "http://127.0.0.1:1", ID: "a"}, {URL: "http://127.0.0.1:2", ID: "b"},
		{URL: "http://127.0.0.1:3", ID: "c"}, {URL: "http://127.0.0.1:4", ID: "d"},
	}}
	cfg.Outlier = OutlierConfig{ConsecutiveFailures: 3, BaseEjectionTime: units.Duration(10 * time.Second),
		MaxEjectionTime: units.Duration(time.Minute), MaxEjectedPercent: 50}
	cfg.Health.SlowStart = units.Duration(10 * time.Second)
	p := newTestPool(t, cfg, Options{Now: clk.Now})
	st := p.state.Load()
	a, b, c := st.backends[0], st.backends[1], st.backends[2]
	fail := func(bk *Backend, n int) {
		for range n {
			p.recordOutcome(st, bk, true)
		}
	}
	fail(a, 2)
	p.recordOutcome(st, a, false) // a success resets the streak
	fail(a, 2)
	if a.ejectedUntil.Load() != 0 {
		t.Fatalf("ejected without 3 consecutive failures")
	}
	fail(a, 1)
	now := clk.Now().UnixNano()
	if got := a.ejectedUntil.Load() - now; got != int64(10*time.Second) {
		t.Fatalf("first ejection %v", time.Duration(got))
	}
	fail(b, 3)
	fail(c, 3)
	if b.ejectedUntil.Load() == 0 || c.ejectedUntil.Load() != 0 {
		t.Fatalf("max share: b %d c %d, want only a and b ejected", b.ejectedUntil.Load(), c.ejectedUntil.Load())
	}
	if p.Status().Healthy != 2 {
		t.Errorf("healthy count %d", p.Status().Healthy)
	}
	clk.Advance(11 * time.Second)
	if !a.usable(clk.Now().UnixNano()) {
		t.Fatalf("a not back after its ejection time")
	}
	if f := a.rampFactor(clk.Now().UnixNano(), int64(10*time.Second)); f >= 0.5 {
		t.Errorf("no slow start after ejection: %v", f)
	}
	fail(a, 3)
	if got := a.ejectedUntil.Load() - clk.Now().UnixNano(); got != int64(20*time.Second) {
		t.Fatalf("second ejection %v, want doubled", time.Duration(got))
	}
	// After a long clean stretch the doubling starts over.
	clk.Advance(3 * time.Minute)
	fail(a, 3)
	if got := a.ejectedUntil.Load() - clk.Now().UnixNano(); got != int64(10*time.Second) {
		t.Fatalf("ejection after recovery %v, want base", time.Duration(got))
	}
	if a.ejections.Load() != 3 {
		t.Errorf("ejections %d", a.ejections.Load())
	}
}

// TestEjectionReturnsThroughActiveCheck: with checks on, an ejected backend
// comes back only via `rise` passing checks after its ejection time.
func TestEjectionReturnsThroughActiveCheck(t *testing.T) {
	failing := true
	var mu sync.Mutex
	a := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := failing
		mu.Unlock()
		if f {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "a")
	})
	b := startBackend(t, "b", nil)
	cfg := poolConfig(PolicyRoundRobin, a, b)
	cfg.Health = fastHealth()
	cfg.Outlier.ConsecutiveFailures = 2
	cfg.Outlier.BaseEjectionTime = units.Duration(50 * time.Millisecond)
	p := newTestPool(t, cfg, Options{})
	for range 6 {
		req, _ := http.NewRequest(http.MethodGet, "http://pool/", nil)
		if _, _, err := send(t, p, req); err != nil {
			t.Fatal(err) // a 500 is a response, not an error
		}
	}
	st := backendStatus(p, "a")
	if st.Ejections != 1 || st.Health == "healthy" {
		t.Fatalf("a not ejected after 5xx: %+v", st)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	eventually(t, "a back", func() bool { return backendStatus(p, "a").Health == "healthy" })
}

func TestRetryBudget(t *testing.T) {
	clk := newFakeClock()
	b := newRetryBudget(clk.Now)
	b.configure(RetryConfig{BudgetRatio: 0.2, MinRetriesPerSecond: 0})
	if b.withdraw() {
		t.Fatal("retry allowed with an empty budget")
	}
	for range 10 {
		b.deposit()
	}
	var got []bool
	for range 3 {
		got = append(got, b.withdraw())
	}
	if !got[0] || !got[1] || got[2] {
		t.Fatalf("withdrawals %v: want exactly two retries for ten requests at 20%%", got)
	}
	b.configure(RetryConfig{BudgetRatio: 0.2, MinRetriesPerSecond: 5})
	clk.Advance(time.Second)
	n := 0
	for b.withdraw() {
		n++
	}
	if n != 5 {
		t.Fatalf("%d retries after a quiet second, want 5", n)
	}
}

// TestRetryBudgetStopsStorm: with every backend failing, retries stay
// within the budget.
func TestRetryBudgetStopsStorm(t *testing.T) {
	var hits [2]*testBackend
	for i := range hits {
		hits[i] = startBackend(t, "x"+string(rune('0'+i)), hijackAfterBody)
	}
	cfg := poolConfig(PolicyRoundRobin, hits[0], hits[1])
	cfg.Retries = RetryConfig{MaxTries: 2, BudgetRatio: 0.1, MinRetriesPerSecond: 1}
	cfg.Outlier.Disabled = true
	p := newTestPool(t, cfg, Options{Now: newFakeClock().Now})
	const requests = 100
	for range requests {
		_, _ = get(t, p, "/")
	}
	total := hits[0].hits.Load() + hits[1].hits.Load()
	if extra := total - requests; extra > requests/10+1 {
		t.Errorf("%d retries for %d requests, want at most %d", extra, requests, requests/10+1)
	}
}

func TestIdempotencyKeyAllowsRetry(t *testing.T) {
	bad := startBackend(t, "bad", hijackAfterBody)
	good := startBackend(t, "good", nil)
	p := newTestPool(t, poolConfig(PolicyRoundRobin, bad, good), Options{})
	req, _ := http.NewRequest(http.MethodPost, "http://pool/", strings.NewReader("x"))
	req.Header.Set("Idempotency-Key", "k1")
	if resp, _, err := send(t, p, req); err != nil || resp.Header.Get("X-Backend") != "good" {
		t.Fatalf("POST with Idempotency-Key not retried: %v", err)
	}
}

// TestEjectionNeedsRiseAfterEjection: passing checks during an ejection do
// not count, so the backend needs `rise` of them after the ejection time.
// The checks are applied by hand with an injected clock; the checker's own
// interval is long enough that only its first check runs.
func TestEjectionNeedsRiseAfterEjection(t *testing.T) {
	clk := newFakeClock()
	a := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	other := startBackend(t, "b", nil)
	cfg := poolConfig(PolicyRoundRobin, a, other)
	cfg.Health = fastHealth()
	cfg.Health.Interval = units.Duration(time.Hour)
	cfg.Outlier.ConsecutiveFailures = 1
	cfg.Outlier.BaseEjectionTime = units.Duration(10 * time.Second)
	cfg.Outlier.MaxEjectionTime = units.Duration(time.Minute)
	p := newTestPool(t, cfg, Options{Now: clk.Now})
	eventually(t, "first check", func() bool { return backendStatus(p, "a").LastCheck == "ok" })
	for range 2 {
		if _, err := get(t, p, "/"); err != nil && !strings.Contains(err.Error(), "500") {
			t.Fatal(err)
		}
	}
	if got := backendStatus(p, "a").Health; got != "ejected" {
		t.Fatalf("a %s, want ejected", got)
	}
	ba := p.state.Load().byID["a"]
	h := p.state.Load().cfg.Health
	for range 3 {
		p.applyCheck(ba, h, "")
	}
	clk.Advance(11 * time.Second)
	if got := backendStatus(p, "a").Health; got != "unhealthy" {
		t.Fatalf("a %s after its ejection time, want unhealthy until checks pass", got)
	}
	p.applyCheck(ba, h, "")
	if got := backendStatus(p, "a").Health; got != "unhealthy" {
		t.Fatalf("a %s after one check past the ejection, want rise=2 checks", got)
	}
	p.applyCheck(ba, h, "")
	if got := backendStatus(p, "a").Health; got != "healthy" {
		t.Fatalf("a %s after rise checks", got)
	}
}

// TestOutlierRealHTTP: three of four real backends answer 500. At most
// max_ejected_percent (50%: two) are ejected at once, for the base time;
// one that fails again after its ejection is ejected for twice as long.
func TestOutlierRealHTTP(t *testing.T) {
	clk := newFakeClock()
	const base = 10 * time.Second
	var bs []*testBackend
	failing := map[string]*atomic.Bool{}
	for i := range 4 {
		name := fmt.Sprintf("b%d", i)
		f := new(atomic.Bool)
		f.Store(i < 3)
		failing[name] = f
		bs = append(bs, startBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
			if f.Load() {
				http.Error(w, "boom", http.StatusInternalServerError)
				return
			}
			_, _ = io.WriteString(w, name)
		}))
	}
	cfg := poolConfig(PolicyRoundRobin, bs...)
	cfg.Outlier = OutlierConfig{ConsecutiveFailures: 2, BaseEjectionTime: units.Duration(base),
		MaxEjectionTime: units.Duration(time.Minute), MaxEjectedPercent: 50}
	p := newTestPool(t, cfg, Options{Now: clk.Now})
	load := func(n int) {
		t.Helper()
		for range n {
			if _, err := get(t, p, "/"); err != nil && !strings.Contains(err.Error(), "500") {
				t.Fatal(err)
			}
		}
	}
	ejectedFor := func(id string) time.Duration {
		st := backendStatus(p, id)
		if st.Health != "ejected" || st.EjectedUntil == nil {
			return 0
		}
		return st.EjectedUntil.Sub(clk.Now())
	}

	load(40)
	var ejected, kept []string
	for _, b := range bs[:3] {
		if d := ejectedFor(b.name); d != 0 {
			if d != base {
				t.Errorf("%s ejected for %v, want %v", b.name, d, base)
			}
			ejected = append(ejected, b.name)
		} else {
			kept = append(kept, b.name)
		}
	}
	if len(ejected) != 2 {
		t.Fatalf("ejected %v, want two of the three failing backends", ejected)
	}
	if st := backendStatus(p, kept[0]); st.Failures < 4 || st.Ejections != 0 || st.Health != "healthy" {
		t.Errorf("failing %s beyond the max share: %+v", kept[0], st)
	}
	if h := p.Status().Healthy; h != 2 {
		t.Errorf("%d healthy, want 2", h)
	}

	// All but the first ejected backend recover; the ejections end and
	// that one fails again.
	again := ejected[0]
	for name, f := range failing {
		f.Store(name == again)
	}
	clk.Advance(base + time.Second)
	if h := p.Status().Healthy; h != 4 {
		t.Fatalf("%d healthy after the ejection time, want 4", h)
	}
	load(12)
	if d := ejectedFor(again); d != 2*base {
		t.Errorf("%s ejected again for %v, want %v (doubled)", again, d, 2*base)
	}
	if st := backendStatus(p, again); st.Ejections != 2 {
		t.Errorf("%s ejections %d, want 2", again, st.Ejections)
	}
	if h := p.Status().Healthy; h != 3 {
		t.Errorf("%d healthy, want 3", h)
	}
}
