package lb

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/internal/units"
)

// TestPassNotPassable: pools whose picks read the request (consistent
// hashing, sticky cookies) or that reach a backend without the synchronous
// HTTP/1.1 transport refuse pass-lane requests before sending anything, so
// the caller serves them the usual way; a reload that changes that is
// followed.
func TestPassNotPassable(t *testing.T) {
	b := startBackend(t, "b0", nil)
	for _, tc := range []struct {
		name string
		edit func(*PoolConfig)
		want bool
	}{
		{"round robin", func(*PoolConfig) {}, true},
		{"ip_hash", func(c *PoolConfig) { c.Policy = PolicyIPHash }, true},
		{"consistent_hash", func(c *PoolConfig) { c.Policy = PolicyConsistentHash }, true},
		{"sticky", func(c *PoolConfig) {
			c.Sticky = StickyConfig{Enabled: true, Cookie: "pin", Lifetime: units.Duration(time.Hour)}
		}, true},
		{"connection limit", func(c *PoolConfig) { c.Transport.MaxConnsPerBackend = 4 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := poolConfig(PolicyRoundRobin, b)
			tc.edit(&cfg)
			p := newTestPool(t, cfg, Options{})
			if got := p.Passable(); got != tc.want {
				t.Fatalf("Passable() = %v, want %v", got, tc.want)
			}
			hits := b.hits.Load()
			_, _, err := passFetch(p, "/x")
			switch {
			case tc.want && err != nil:
				t.Fatalf("pass: %v", err)
			case !tc.want && !errors.Is(err, ErrNotPassable):
				t.Fatalf("pass: %v, want ErrNotPassable", err)
			case !tc.want && b.hits.Load() != hits:
				t.Fatal("a refused pass reached the backend")
			}
		})
	}
	// A reload to a connection limit takes the lane away; back again, it
	// returns.
	cfg := poolConfig(PolicyRoundRobin, b)
	p := newTestPool(t, cfg, Options{})
	limited := cfg
	limited.Transport.MaxConnsPerBackend = 4
	if err := p.Update(limited); err != nil || p.Passable() {
		t.Fatalf("after a reload to a connection limit: passable %v, %v", p.Passable(), err)
	}
	if err := p.Update(cfg); err != nil || !p.Passable() {
		t.Fatalf("after a reload back: passable %v, %v", p.Passable(), err)
	}
}

// TestPassWatch: a pass request with a Watch is watched only once its
// backend is slow to answer — never for a fast one — and then the end of
// its context aborts the backend request without blaming the backend.
func TestPassWatch(t *testing.T) {
	gone := make(chan bool, 1)
	b := startBackend(t, "b0", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/pause":
			time.Sleep(300 * time.Millisecond)
		case "/hang":
			select {
			case <-r.Context().Done():
				gone <- true
			case <-time.After(20 * time.Second):
				gone <- false
			}
			return
		}
		io.WriteString(w, "ok")
	})
	m := NewMetrics(prometheus.NewRegistry())
	p := newTestPool(t, poolConfig(PolicyRoundRobin, b), Options{Metrics: m})
	pass := func(path string, ctx context.Context) (watched int, err error) {
		pr := &PassRequest{Method: http.MethodGet, Target: path, Ctx: ctx, Watch: func() { watched++ },
			WriteFields: func(bw *bufio.Writer) { bw.WriteString("Host: pool.test\r\n\r\n") }}
		err = p.Pass(pr, func(res *http.Response) error {
			_, err := io.ReadAll(res.Body)
			return err
		})
		return watched, err
	}
	for _, tc := range []struct {
		path string
		want int
	}{{"/fast", 0}, {"/pause", 1}} {
		if n, err := pass(tc.path, t.Context()); err != nil || n != tc.want {
			t.Fatalf("%s: watched %d times (err %v), want %d", tc.path, n, err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	watched := make(chan struct{})
	go func() {
		pr := &PassRequest{Method: http.MethodGet, Target: "/hang", Ctx: ctx, Watch: func() { close(watched) },
			WriteFields: func(bw *bufio.Writer) { bw.WriteString("Host: pool.test\r\n\r\n") }}
		done <- p.Pass(pr, func(*http.Response) error { return errors.New("relayed") })
	}()
	<-watched
	cancel() // what the watch does when the client hangs up
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("pass: %v, want the context's end", err)
	}
	if !<-gone {
		t.Fatal("the backend request ran on after the context ended")
	}
	if st := backendStatus(p, "b0"); st.Failures != 0 || st.Ejections != 0 {
		t.Fatalf("the backend was blamed: %+v", st)
	}
}

// TestPassReusedResponse: a connection's pass-lane responses share one
// response and header map, so nothing of one may show in the next: each
// relay sees only its own response's fields.
func TestPassReusedResponse(t *testing.T) {
	var mu sync.Mutex
	peers := map[string]bool{}
	b := startBackend(t, "b0", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		peers[r.RemoteAddr] = true
		mu.Unlock()
		if r.URL.Path == "/one" {
			w.Header().Set("X-One", "1")
			w.Header().Add("X-Many", "a")
			w.Header().Add("X-Many", "b")
		}
		io.WriteString(w, r.URL.Path)
	})
	cfg := poolConfig(PolicyRoundRobin, b)
	p := newTestPool(t, cfg, Options{})
	for i, want := range []struct {
		path string
		hdr  http.Header
	}{
		{"/one", http.Header{"X-One": {"1"}, "X-Many": {"a", "b"}}},
		{"/two", http.Header{}},
		{"/one", http.Header{"X-One": {"1"}, "X-Many": {"a", "b"}}},
		{"/two", http.Header{}},
	} {
		pr := &PassRequest{Method: http.MethodGet, Target: want.path,
			WriteFields: func(bw *bufio.Writer) { bw.WriteString("Host: pool.test\r\n\r\n") }}
		var got http.Header
		var body string
		err := p.Pass(pr, func(res *http.Response) error {
			got = http.Header{}
			for _, k := range []string{"X-One", "X-Many"} {
				if v := res.Header[k]; v != nil {
					got[k] = slices.Clone(v)
				}
			}
			bb, err := io.ReadAll(res.Body)
			body = string(bb)
			return err
		})
		if err != nil || body != want.path || !reflect.DeepEqual(got, want.hdr) {
			t.Fatalf("request %d (%s): fields %v, body %q, err %v; want %v", i, want.path, got, body, err, want.hdr)
		}
	}
	if len(peers) != 1 {
		t.Fatalf("%d backend connections, want the one reused", len(peers))
	}
}
