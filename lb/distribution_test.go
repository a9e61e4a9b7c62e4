package lb

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/reqinfo"
)

// getAs sends a GET for path as client ip and returns the backend name.
func getAs(t *testing.T, p *Pool, ip netip.Addr, path string) string {
	t.Helper()
	ctx := reqinfo.With(context.Background(), &reqinfo.Info{ClientIP: ip, PeerIP: ip})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://pool"+path, nil)
	resp, _, err := send(t, p, req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %v %v", path, resp, err)
	}
	return resp.Header.Get("X-Backend")
}

// TestDistributionRealHTTP sends requests through each policy to three real
// backends and checks the shares; weights 1:2:3 where the policy honours
// them when idle.
func TestDistributionRealHTTP(t *testing.T) {
	bs := []*testBackend{startBackend(t, "b0", nil), startBackend(t, "b1", nil), startBackend(t, "b2", nil)}
	const n = 600
	for _, tc := range []struct {
		policy  string
		weights []int
		tol     float64
	}{
		{PolicyRoundRobin, []int{1, 2, 3}, 0.01},
		{PolicyLeastConnections, []int{1, 2, 3}, 0.3},
		{PolicyIPHash, []int{1, 2, 3}, 0.35},
		{PolicyConsistentHash, []int{1, 2, 3}, 0.35},
		// p2c follows measured latency, so sequential requests favour the
		// fastest backend: it is checked under concurrency below.
	} {
		t.Run(tc.policy, func(t *testing.T) {
			cfg := poolConfig(tc.policy, bs...)
			for i, w := range tc.weights {
				cfg.Backends[i].Weight = w
			}
			p := newTestPool(t, cfg, Options{})
			got := map[string]int{}
			for i := range n {
				ip := netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)})
				got[getAs(t, p, ip, fmt.Sprintf("/obj/%d", i))]++
			}
			sum := 0
			for _, w := range tc.weights {
				sum += w
			}
			for i, w := range tc.weights {
				if tc.tol < 0 {
					if got[bs[i].name] < n/10 {
						t.Errorf("%s starved: %v", bs[i].name, got)
					}
					continue
				}
				want := float64(n*w) / float64(sum)
				if dev := math.Abs(float64(got[bs[i].name])-want) / want; dev > tc.tol {
					t.Errorf("%s: %d requests, want %.0f ± %.0f%% (%v)", bs[i].name, got[bs[i].name], want, tc.tol*100, got)
				}
			}
		})
	}
}

// TestIPHashReloadRemap removes one of three backends by reload: only its
// clients move, about a third.
func TestIPHashReloadRemap(t *testing.T) {
	bs := []*testBackend{startBackend(t, "b0", nil), startBackend(t, "b1", nil), startBackend(t, "b2", nil)}
	p := newTestPool(t, poolConfig(PolicyIPHash, bs...), Options{})
	const clients = 300
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}) }
	before := make([]string, clients)
	for i := range before {
		before[i] = getAs(t, p, ip(i), "/")
		if again := getAs(t, p, ip(i), "/other"); again != before[i] {
			t.Fatalf("client %d moved between requests", i)
		}
	}
	if err := p.Update(poolConfig(PolicyIPHash, bs[0], bs[1])); err != nil {
		t.Fatal(err)
	}
	moved := 0
	for i := range before {
		now := getAs(t, p, ip(i), "/")
		if now != before[i] {
			moved++
			if before[i] != "b2" {
				t.Fatalf("client %d moved from %s, which stayed", i, before[i])
			}
		}
	}
	if share := float64(moved) / clients; share < 0.2 || share > 0.47 {
		t.Errorf("remapped share %.2f, want about 1/3", share)
	}
}

// TestP2CRealHTTP: under concurrent load p2c spreads over identical
// backends, since in-flight counts enter its cost.
func TestP2CRealHTTP(t *testing.T) {
	bs := []*testBackend{}
	for i := range 3 {
		bs = append(bs, startBackend(t, fmt.Sprintf("b%d", i), func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(2 * time.Millisecond) // requests overlap
		}))
	}
	p := newTestPool(t, poolConfig(PolicyP2C, bs...), Options{})
	const workers, each = 6, 50
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id, err := get(t, p, fmt.Sprintf("/%d/%d", w, i))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got[id]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, b := range bs {
		if got[b.name] < workers*each/10 {
			t.Errorf("%s starved: %v", b.name, got)
		}
	}
}

// TestP2CWeightsRealHTTP: under concurrent load p2c divides the cost of a
// backend by its weight, so a backend of weight 3 takes clearly more than
// one of weight 1 (about 3x; the bound is loose).
func TestP2CWeightsRealHTTP(t *testing.T) {
	slow := func(w http.ResponseWriter, r *http.Request) { time.Sleep(2 * time.Millisecond) }
	light, heavy := startBackend(t, "light", slow), startBackend(t, "heavy", slow)
	cfg := poolConfig(PolicyP2C, light, heavy)
	cfg.Backends[1].Weight = 3
	p := newTestPool(t, cfg, Options{})
	const workers, each = 6, 60
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := get(t, p, fmt.Sprintf("/%d/%d", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	l, h := light.hits.Load(), heavy.hits.Load()
	if l+h != workers*each || float64(h) < 1.5*float64(l) {
		t.Errorf("weight 3 got %d requests, weight 1 got %d; want more than 1.5x", h, l)
	}
}

// TestConsistentHashReloadRemap removes one of four backends by reload with
// consistent_hash on the URI: only the paths that were on it move, about a
// quarter of them.
func TestConsistentHashReloadRemap(t *testing.T) {
	var bs []*testBackend
	for i := range 4 {
		bs = append(bs, startBackend(t, fmt.Sprintf("b%d", i), nil))
	}
	p := newTestPool(t, poolConfig(PolicyConsistentHash, bs...), Options{})
	const keys = 400
	client := netip.MustParseAddr("198.51.100.7")
	path := func(i int) string { return fmt.Sprintf("/obj/%d?v=%d", i, i%7) }
	before := make([]string, keys)
	seen := map[string]int{}
	for i := range before {
		before[i] = getAs(t, p, client, path(i))
		seen[before[i]]++
		// Another client with the same URI lands on the same backend.
		if again := getAs(t, p, netip.MustParseAddr("192.0.2.1"), path(i)); again != before[i] {
			t.Fatalf("%s moved between clients", path(i))
		}
	}
	if len(seen) != 4 {
		t.Fatalf("keys spread over %v", seen)
	}
	if err := p.Update(poolConfig(PolicyConsistentHash, bs[0], bs[1], bs[3])); err != nil {
		t.Fatal(err)
	}
	moved := 0
	for i := range before {
		now := getAs(t, p, client, path(i))
		if now == "b2" {
			t.Fatalf("%s still on the removed backend", path(i))
		}
		if now != before[i] {
			moved++
			if before[i] != "b2" {
				t.Fatalf("%s moved from %s, which stayed", path(i), before[i])
			}
		}
	}
	if moved != seen["b2"] {
		t.Errorf("%d keys moved, %d were on b2", moved, seen["b2"])
	}
	if share := float64(moved) / keys; share < 0.12 || share > 0.4 {
		t.Errorf("remapped share %.2f, want about 1/4", share)
	}
}
