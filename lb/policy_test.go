package lb

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"
)

// lockedRand is a deterministic, concurrency-safe rand for tests.
func lockedRand(seed uint64) func() uint64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Uint64()
	}
}

// fakeBackends builds healthy backends b0, b1, ... with the given weights,
// for policy unit tests.
func fakeBackends(weights ...int) []*Backend {
	bs := make([]*Backend, len(weights))
	for i, w := range weights {
		id := fmt.Sprintf("b%d", i)
		b := &Backend{id: id, rawURL: "http://" + id, url: &url.URL{Scheme: "http", Host: id}}
		b.weight.Store(int64(w))
		b.state.Store(stateHealthy)
		bs[i] = b
	}
	return bs
}

func newPolicy(t testing.TB, name string, bs []*Backend, hashKey string) Policy {
	t.Helper()
	d := findPolicy(name)
	if d == nil {
		t.Fatalf("no policy %q", name)
	}
	return d.new(bs, &PoolConfig{Policy: name, HashKey: hashKey})
}

const testNow = int64(1_000_000_000_000)

func count(t *testing.T, p Policy, bs []*Backend, n int, mk func(i int) *Selection) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		b := p.Pick(mk(i))
		if b == nil {
			t.Fatalf("pick %d: nil", i)
		}
		got[b.id]++
	}
	return got
}

// TestDistribution checks each policy spreads an idle pool by weight within
// statistical bounds.
func TestDistribution(t *testing.T) {
	const n = 30000
	for _, tc := range []struct {
		policy  string
		weights []int
		tol     float64 // allowed relative deviation from the weighted share
	}{
		{PolicyRoundRobin, []int{1, 1, 1}, 0.001},
		{PolicyRoundRobin, []int{1, 2, 3}, 0.001},
		{PolicyLeastConnections, []int{1, 1, 1}, 0.05},
		{PolicyLeastConnections, []int{1, 2, 3}, 0.05},
		{PolicyP2C, []int{1, 1, 1}, 0.05},
		{PolicyIPHash, []int{1, 1, 1}, 0.15},
		{PolicyIPHash, []int{1, 2, 3}, 0.15},
		{PolicyConsistentHash, []int{1, 1, 1}, 0.15},
		{PolicyConsistentHash, []int{1, 1, 2}, 0.15},
	} {
		t.Run(fmt.Sprintf("%s/%v", tc.policy, tc.weights), func(t *testing.T) {
			bs := fakeBackends(tc.weights...)
			p := newPolicy(t, tc.policy, bs, "")
			rnd := lockedRand(1)
			got := count(t, p, bs, n, func(i int) *Selection {
				req := &http.Request{URL: &url.URL{Path: fmt.Sprintf("/obj/%d", i)}}
				s := NewSelection(req, bs, testNow, rnd)
				s.ClientIP = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				return s
			})
			var sum int
			for _, w := range tc.weights {
				sum += w
			}
			for i, b := range bs {
				want := float64(n) * float64(tc.weights[i]) / float64(sum)
				if dev := math.Abs(float64(got[b.id])-want) / want; dev > tc.tol {
					t.Errorf("%s got %d, want %.0f ± %.0f%% (all: %v)", b.id, got[b.id], want, tc.tol*100, got)
				}
			}
		})
	}
}

func TestRoundRobinSmooth(t *testing.T) {
	bs := fakeBackends(5, 1, 1)
	p := newPolicy(t, PolicyRoundRobin, bs, "")
	var seq string
	for range 7 {
		seq += p.Pick(NewSelection(nil, bs, testNow, lockedRand(1))).id[1:]
	}
	if seq != "0010200" {
		t.Errorf("sequence %q, want smooth 0010200", seq)
	}
}

// TestHashStability removes one of N backends and checks only the keys on it
// move, about 1/N of them.
func TestHashStability(t *testing.T) {
	const keys = 20000
	for _, tc := range []struct {
		policy, hashKey string
		n               int
	}{
		{PolicyIPHash, "", 4},
		{PolicyIPHash, "", 10},
		{PolicyConsistentHash, "uri", 5},
		{PolicyConsistentHash, "header:X-Tenant", 5},
		{PolicyConsistentHash, "cookie:sid", 5},
	} {
		t.Run(fmt.Sprintf("%s/%s/%d", tc.policy, tc.hashKey, tc.n), func(t *testing.T) {
			weights := make([]int, tc.n)
			for i := range weights {
				weights[i] = 1
			}
			all := fakeBackends(weights...)
			fewer := append([]*Backend(nil), all[:tc.n-1]...) // last one removed by "reload"
			pAll := newPolicy(t, tc.policy, all, tc.hashKey)
			pFewer := newPolicy(t, tc.policy, fewer, tc.hashKey)
			rnd := lockedRand(2)
			moved, onRemoved := 0, 0
			for i := 0; i < keys; i++ {
				req := &http.Request{URL: &url.URL{Path: fmt.Sprintf("/k/%d", i)}, Header: http.Header{}}
				req.Header.Set("X-Tenant", fmt.Sprintf("tenant-%d", i))
				req.Header.Set("Cookie", fmt.Sprintf("sid=s%d", i))
				ip := netip.AddrFrom4([4]byte{192, byte(i >> 16), byte(i >> 8), byte(i)})
				s1 := NewSelection(req, all, testNow, rnd)
				s1.ClientIP = ip
				s2 := NewSelection(req, fewer, testNow, rnd)
				s2.ClientIP = ip
				a, b := pAll.Pick(s1), pFewer.Pick(s2)
				if a == all[tc.n-1] {
					onRemoved++
				}
				if a != b {
					moved++
					if a != all[tc.n-1] {
						t.Fatalf("key %d moved from %s to %s though its backend stayed", i, a.id, b.id)
					}
				}
			}
			share := float64(moved) / keys
			want := 1 / float64(tc.n)
			if math.Abs(share-want) > want*0.25 {
				t.Errorf("remapped share %.3f, want ≈ %.3f", share, want)
			}
			if moved != onRemoved {
				t.Errorf("moved %d keys, but %d were on the removed backend", moved, onRemoved)
			}
		})
	}
}

// TestHashUnavailable: keys of an unhealthy backend spread over the others
// and come back when it recovers; the other keys never move.
func TestHashUnavailable(t *testing.T) {
	bs := fakeBackends(1, 1, 1, 1)
	p := newPolicy(t, PolicyIPHash, bs, "")
	rnd := lockedRand(3)
	pick := func(i int) *Backend {
		s := NewSelection(nil, bs, testNow, rnd)
		s.ClientIP = netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})
		return p.Pick(s)
	}
	before := make([]*Backend, 2000)
	for i := range before {
		before[i] = pick(i)
	}
	bs[2].state.Store(stateUnhealthy)
	for i := range before {
		got := pick(i)
		if got == bs[2] {
			t.Fatalf("unhealthy backend picked")
		}
		if before[i] != bs[2] && got != before[i] {
			t.Fatalf("key %d moved off a healthy backend", i)
		}
	}
	bs[2].state.Store(stateHealthy)
	for i := range before {
		if pick(i) != before[i] {
			t.Fatalf("key %d did not return", i)
		}
	}
}

func TestConsistentHashKeys(t *testing.T) {
	bs := fakeBackends(1, 1, 1, 1, 1)
	rnd := lockedRand(4)
	for _, tc := range []struct {
		key  string
		a, b func(*http.Request) // two requests that must map alike
	}{
		{"uri", func(r *http.Request) { r.URL.Path = "/x"; r.Header.Set("X-T", "1") }, func(r *http.Request) { r.URL.Path = "/x"; r.Header.Set("X-T", "2") }},
		{"header:x-t", func(r *http.Request) { r.URL.Path = "/a"; r.Header.Set("X-T", "7") }, func(r *http.Request) { r.URL.Path = "/b"; r.Header.Set("X-T", "7") }},
		{"cookie:sid", func(r *http.Request) { r.URL.Path = "/a"; r.Header.Set("Cookie", "sid=q") }, func(r *http.Request) { r.URL.Path = "/b"; r.Header.Set("Cookie", "x=1; sid=q") }},
	} {
		t.Run(tc.key, func(t *testing.T) {
			p := newPolicy(t, PolicyConsistentHash, bs, tc.key)
			for i := 0; i < 50; i++ {
				ra := &http.Request{URL: &url.URL{RawQuery: fmt.Sprint(i)}, Header: http.Header{}}
				rb := &http.Request{URL: &url.URL{RawQuery: fmt.Sprint(i)}, Header: http.Header{}}
				tc.a(ra)
				tc.b(rb)
				if tc.key != "uri" {
					ra.URL.RawQuery, rb.URL.RawQuery = "", ""
				}
				if x, y := p.Pick(NewSelection(ra, bs, testNow, rnd)), p.Pick(NewSelection(rb, bs, testNow, rnd)); x != y {
					t.Fatalf("same key mapped to %s and %s", x.id, y.id)
				}
			}
		})
	}
}

func TestLeastConnectionsPrefersIdle(t *testing.T) {
	bs := fakeBackends(1, 1, 2)
	p := newPolicy(t, PolicyLeastConnections, bs, "")
	bs[0].inflight.Store(3)
	bs[1].inflight.Store(1)
	bs[2].inflight.Store(4) // 4/2 = 2 per unit of weight
	for range 20 {
		if b := p.Pick(NewSelection(nil, bs, testNow, lockedRand(5))); b != bs[1] {
			t.Fatalf("picked %s, want b1", b.id)
		}
	}
}

func TestP2CPrefersLessLoaded(t *testing.T) {
	bs := fakeBackends(1, 1)
	p := newPolicy(t, PolicyP2C, bs, "")
	bs[0].inflight.Store(10)
	bs[1].observeLatency(2*time.Millisecond, testNow)
	bs[0].observeLatency(2*time.Millisecond, testNow)
	for range 20 {
		if b := p.Pick(NewSelection(nil, bs, testNow, lockedRand(6))); b != bs[1] {
			t.Fatalf("picked %s, want b1", b.id)
		}
	}
	// A slow backend loses even when idle.
	bs[0].inflight.Store(0)
	bs[0].ewma.Store(math.Float64bits(0.5))
	if b := p.Pick(NewSelection(nil, bs, testNow, lockedRand(7))); b != bs[1] {
		t.Fatalf("picked slow %s", b.id)
	}
	// A minute without samples fades the slow estimate (0.5 s × e^-6 ≈
	// 1.2 ms) below the busy one's fresh 2 ms: the idle backend is tried again.
	later := testNow + int64(time.Minute)
	bs[1].observeLatency(2*time.Millisecond, later)
	if b := p.Pick(NewSelection(nil, bs, later, lockedRand(7))); b != bs[0] {
		t.Fatalf("long-idle backend not retried: picked %s", b.id)
	}
}

// TestUnusableSkipped: every policy skips unhealthy, ejected, draining and
// already-tried backends, and returns nil when none is left.
func TestUnusableSkipped(t *testing.T) {
	for _, name := range policyNames() {
		t.Run(name, func(t *testing.T) {
			bs := fakeBackends(1, 1, 1, 1, 1)
			p := newPolicy(t, name, bs, "")
			bs[0].state.Store(stateUnhealthy)
			bs[1].ejectedUntil.Store(testNow + 1)
			bs[2].draining.Store(true)
			bs[3].state.Store(stateUnknown)
			rnd := lockedRand(8)
			for i := 0; i < 200; i++ {
				s := NewSelection(&http.Request{URL: &url.URL{Path: fmt.Sprint(i)}}, bs, testNow, rnd)
				s.ClientIP = netip.AddrFrom4([4]byte{1, 2, byte(i >> 8), byte(i)})
				if b := p.Pick(s); b != bs[4] {
					t.Fatalf("picked %v, want b4", b)
				}
				s.exclude(bs[4])
				if b := p.Pick(s); b != nil {
					t.Fatalf("picked %s after all were tried", b.id)
				}
			}
		})
	}
}

// TestSlowStart: a backend that just became healthy gets a small share that
// grows over the window; the clock is injected through Selection.now.
func TestSlowStart(t *testing.T) {
	window := int64(10 * time.Second)
	for _, name := range policyNames() {
		t.Run(name, func(t *testing.T) {
			bs := fakeBackends(1, 1, 1, 1)
			bs[3].upSince.Store(testNow)
			p := newPolicy(t, name, bs, "")
			rnd := lockedRand(9)
			share := func(now int64) float64 {
				const n = 8000
				hits := 0
				for i := 0; i < n; i++ {
					s := NewSelection(&http.Request{URL: &url.URL{Path: fmt.Sprint(i)}}, bs, now, rnd)
					s.slowStart = window
					s.ClientIP = netip.AddrFrom4([4]byte{9, 9, byte(i >> 8), byte(i)})
					if p.Pick(s) == bs[3] {
						hits++
					}
				}
				return float64(hits) / n
			}
			early, mid, late := share(testNow), share(testNow+window/2), share(testNow+window)
			if name == PolicyP2C || name == PolicyLeastConnections {
				// Idle load-based policies only see weight at ties or in the cost.
				if !(early < late) {
					t.Errorf("shares early %.3f late %.3f: want growth", early, late)
				}
				return
			}
			if early > 0.05 || !(early < mid && mid < late) || late < 0.18 {
				t.Errorf("shares early %.3f mid %.3f late %.3f: want ~0.013 → ~0.14 → 0.25", early, mid, late)
			}
		})
	}
}
