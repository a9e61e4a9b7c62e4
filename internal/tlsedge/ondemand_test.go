package tlsedge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/units"
)

func TestOnDemandPolicy(t *testing.T) {
	var (
		mu    sync.Mutex
		asked []string // mu guards asked
	)
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := r.URL.Query().Get("domain")
		mu.Lock()
		asked = append(asked, d)
		mu.Unlock()
		switch d {
		case "yes.example.test":
			w.WriteHeader(http.StatusOK)
		case "slow.example.test":
			time.Sleep(300 * time.Millisecond)
		default:
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer ask.Close()

	withAsk := newOnDemandPolicy(OnDemandConfig{Enabled: true, Allow: []string{"a.example.test", "*.shop.test"},
		Ask: ask.URL + "/check?token=x", AskTimeout: units.Duration(100 * time.Millisecond)}, ask.Client())
	allowOnly := newOnDemandPolicy(OnDemandConfig{Enabled: true, Allow: []string{"a.example.test"}}, http.DefaultClient)

	tests := []struct {
		name    string
		p       *onDemandPolicy
		host    string
		allowed bool
		asked   bool
	}{
		{"exact allow", withAsk, "a.example.test", true, false},
		{"trailing dot and case", withAsk, "A.Example.Test.", true, false},
		{"pattern covers one label", withAsk, "x.shop.test", true, false},
		{"pattern not two labels", withAsk, "x.y.shop.test", false, true},
		{"pattern not the apex", withAsk, "shop.test", false, true},
		{"ask says yes", withAsk, "yes.example.test", true, true},
		{"ask says no", withAsk, "no.example.test", false, true},
		{"ask times out", withAsk, "slow.example.test", false, true},
		{"invalid name never asked", withAsk, "bad_name!.test", false, false},
		{"wildcard SNI never asked", withAsk, "*.example.test", false, false},
		{"no ask: refused", allowOnly, "b.example.test", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			asked = nil
			mu.Unlock()
			err := tc.p.decide(context.Background(), tc.host)
			mu.Lock()
			n := len(asked)
			mu.Unlock()
			if (err == nil) != tc.allowed {
				t.Fatalf("decide(%q) = %v, want allowed=%v", tc.host, err, tc.allowed)
			}
			if (n > 0) != tc.asked {
				t.Fatalf("asked %d times, want asked=%v", n, tc.asked)
			}
			if err != nil && tc.host != "slow.example.test" && !errors.Is(err, errNotAllowed) {
				t.Fatalf("refusal %v does not wrap errNotAllowed", err)
			}
		})
	}
}

// askServer is a real ask endpoint: it allows names starting with "ok.",
// counts requests, tracks how many are in flight, and holds each until
// the gate opens.
type askServer struct {
	srv               *httptest.Server
	requests          atomic.Int64
	inflight, maxSeen atomic.Int64
	gate              chan struct{}
}

func newAskServer(t *testing.T) *askServer {
	a := &askServer{gate: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.requests.Add(1)
		n := a.inflight.Add(1)
		defer a.inflight.Add(-1)
		for {
			m := a.maxSeen.Load()
			if n <= m || a.maxSeen.CompareAndSwap(m, n) {
				break
			}
		}
		<-a.gate
		if len(r.URL.Query().Get("domain")) > 3 && r.URL.Query().Get("domain")[:3] == "ok." {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *askServer) open() { close(a.gate) }

// waitInflight waits until n asks are held by the server.
func (a *askServer) waitInflight(t *testing.T, n int64) {
	t.Helper()
	for i := 0; a.inflight.Load() < n; i++ {
		if i > 2000 {
			t.Fatalf("%d asks in flight, want %d", a.inflight.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOnDemandAskShared: repeated and concurrent handshakes for one name
// make one ask request; the endpoint's answers are remembered (a refusal
// for askDenyTTL, an allowance for askAllowTTL); a transport failure is
// not; and requests to the endpoint in flight never exceed maxAsks, however
// many names arrive at once.
func TestOnDemandAskShared(t *testing.T) {
	a := newAskServer(t)
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	p := newOnDemandPolicy(OnDemandConfig{Ask: a.srv.URL + "/ask", AskTimeout: units.Duration(30 * time.Second)}, a.srv.Client())
	p.now = clock
	ctx := context.Background()

	// 50 handshakes for one refused name at once: one request.
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- p.decide(ctx, "x.shop.test") }()
	}
	a.waitInflight(t, 1)
	a.open()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, errNotAllowed) {
			t.Fatalf("refused name: %v", err)
		}
	}
	if n := a.requests.Load(); n != 1 {
		t.Fatalf("50 concurrent handshakes made %d ask requests, want 1", n)
	}
	// Remembered for askDenyTTL, then asked again.
	if err := p.decide(ctx, "x.shop.test"); !errors.Is(err, errNotAllowed) || a.requests.Load() != 1 {
		t.Fatalf("within the deny TTL: %v, %d requests", err, a.requests.Load())
	}
	advance(askDenyTTL)
	if err := p.decide(ctx, "x.shop.test"); !errors.Is(err, errNotAllowed) || a.requests.Load() != 2 {
		t.Fatalf("after the deny TTL: %v, %d requests", err, a.requests.Load())
	}
	// An allowed name: asked once, remembered for askAllowTTL.
	for range 3 {
		if err := p.decide(ctx, "ok.shop.test"); err != nil {
			t.Fatalf("allowed name: %v", err)
		}
	}
	if n := a.requests.Load(); n != 3 {
		t.Fatalf("allowed name asked %d times in all, want once", n-2)
	}
	advance(askAllowTTL - time.Second)
	if err := p.decide(ctx, "ok.shop.test"); err != nil || a.requests.Load() != 3 {
		t.Fatalf("within the allow TTL: %v, %d requests", err, a.requests.Load())
	}

	// A flood of distinct names: never more than maxAsks in flight, and
	// every one answered once the endpoint catches up.
	b := newAskServer(t)
	q := newOnDemandPolicy(OnDemandConfig{Ask: b.srv.URL + "/ask", AskTimeout: units.Duration(30 * time.Second)}, b.srv.Client())
	const names = 3 * maxAsks
	var fw sync.WaitGroup
	var refused atomic.Int64
	for i := range names {
		fw.Add(1)
		go func() {
			defer fw.Done()
			if errors.Is(q.decide(ctx, fmt.Sprintf("n%d.shop.test", i)), errNotAllowed) {
				refused.Add(1)
			}
		}()
	}
	b.waitInflight(t, maxAsks)
	b.open()
	fw.Wait()
	if m := b.maxSeen.Load(); m != maxAsks {
		t.Fatalf("%d asks in flight at most, want %d", m, maxAsks)
	}
	if n, r := b.requests.Load(), refused.Load(); n != names || r != names {
		t.Fatalf("%d names: %d requests, %d refusals", names, n, r)
	}

	// A transport failure is not remembered: the next handshake asks again.
	c := newAskServer(t)
	r := newOnDemandPolicy(OnDemandConfig{Ask: c.srv.URL + "/ask", AskTimeout: units.Duration(5 * time.Second)}, c.srv.Client())
	c.srv.Close()
	if err := r.decide(ctx, "ok.shop.test"); err == nil || errors.Is(err, errNotAllowed) {
		t.Fatalf("endpoint down: %v, want a transport error", err)
	}
	if _, ok := r.answers["ok.shop.test"]; ok {
		t.Fatal("a transport failure was remembered")
	}
}
