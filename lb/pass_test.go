package lb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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
			reportGone(r, gone)
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

// TestPassWatchBody: the watch that a fast head left due starts when the
// body keeps the request waiting past it — a stream paused for 300 ms —
// and not for a body that comes in pieces quickly; the pause does not
// break the body (the cut's timeout is not an error of the chunked
// reader's), and the connection is reused after it. A body_timeout
// shorter than the cut still ends a stalled body, unwatched. And a body
// stalled for good is aborted by the context's end, the backend not
// blamed.
func TestPassWatchBody(t *testing.T) {
	gone := make(chan bool, 1)
	var peers connSet
	b := startBackend(t, "b0", func(w http.ResponseWriter, r *http.Request) {
		peers.add(r)
		f := w.(http.Flusher)
		var pause time.Duration
		switch r.URL.Path {
		case "/pieces":
			pause = 10 * time.Millisecond
		case "/paused":
			pause = 300 * time.Millisecond
		case "/stalled":
			io.WriteString(w, "first;")
			f.Flush()
			reportGone(r, gone)
			return
		}
		for i := range 3 { // chunked: no Content-Length, flushed
			fmt.Fprintf(w, "part%d;", i)
			f.Flush()
			if i < 2 {
				time.Sleep(pause)
			}
		}
	})
	m := NewMetrics(prometheus.NewRegistry())
	p := newTestPool(t, poolConfig(PolicyRoundRobin, b), Options{Metrics: m})
	pass := func(path string, ctx context.Context, bodyTimeout time.Duration) (watched int, body string, err error) {
		pr := &PassRequest{Method: http.MethodGet, Target: path, Ctx: ctx, Watch: func() { watched++ }, BodyTimeout: bodyTimeout,
			WriteFields: func(bw *bufio.Writer) { bw.WriteString("Host: pool.test\r\n\r\n") }}
		err = p.Pass(pr, func(res *http.Response) error {
			b, err := io.ReadAll(res.Body)
			body = string(b)
			return err
		})
		return watched, body, err
	}
	for _, tc := range []struct {
		path        string
		bodyTimeout time.Duration
		watched     int
	}{{"/pieces", time.Minute, 0}, {"/paused", time.Minute, 1}, {"/paused", 0, 1}, {"/pieces", time.Minute, 0}} {
		n, body, err := pass(tc.path, t.Context(), tc.bodyTimeout)
		if err != nil || body != "part0;part1;part2;" || n != tc.watched {
			t.Fatalf("%s (body_timeout %s): body %q, watched %d times, err %v; want the whole body, watched %d times",
				tc.path, tc.bodyTimeout, body, n, err, tc.watched)
		}
	}
	if n := peers.len(); n != 1 {
		t.Errorf("%d backend connections for four requests in turn: a paused body cost its connection", n)
	}
	if n, _, err := pass("/paused", t.Context(), 50*time.Millisecond); err == nil || n != 0 {
		t.Fatalf("a 300 ms pause under a 50 ms body_timeout: watched %d times, err %v; want a timeout, unwatched", n, err)
	}
	before := backendStatus(p, "b0").Failures // the timeout above was the backend's
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	watched := make(chan struct{})
	read := make(chan string, 1)
	go func() {
		pr := &PassRequest{Method: http.MethodGet, Target: "/stalled", Ctx: ctx, Watch: func() { close(watched) }, BodyTimeout: time.Minute,
			WriteFields: func(bw *bufio.Writer) { bw.WriteString("Host: pool.test\r\n\r\n") }}
		done <- p.Pass(pr, func(res *http.Response) error {
			buf := make([]byte, 64)
			n, _ := res.Body.Read(buf)
			read <- string(buf[:n])
			_, err := io.ReadAll(res.Body)
			return err
		})
	}()
	if got := <-read; got != "first;" {
		t.Fatalf("first read %q", got)
	}
	<-watched
	cancel() // what the watch does when the client hangs up
	if err := <-done; err == nil {
		t.Fatal("a body aborted mid-way relayed whole")
	}
	if !<-gone {
		t.Fatal("the backend request ran on after the context ended")
	}
	if st := backendStatus(p, "b0"); st.Failures != before || st.Ejections != 0 {
		t.Fatalf("the backend was blamed: %+v", st)
	}
}

// TestPassReusedResponse: a connection's pass-lane responses share one
// response and header map, so nothing of one may show in the next: each
// relay sees only its own response's fields.
func TestPassReusedResponse(t *testing.T) {
	var peers connSet
	b := startBackend(t, "b0", func(w http.ResponseWriter, r *http.Request) {
		peers.add(r)
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
			if res.Header != nil {
				t.Errorf("request %d: a plain head came as a map, not as the connection's list", i)
			}
			got = http.Header{}
			for _, k := range []string{"X-One", "X-Many"} {
				if v := passHeader(pr, res)[k]; v != nil {
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
	if n := peers.len(); n != 1 {
		t.Fatalf("%d backend connections, want the one reused", n)
	}
}

// reportGone waits for r's end, up to 20 s, and says whether it came.
func reportGone(r *http.Request, gone chan<- bool) {
	select {
	case <-r.Context().Done():
		gone <- true
	case <-time.After(20 * time.Second):
		gone <- false
	}
}

// connSet is the set of client connections a backend saw.
type connSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (c *connSet) add(r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]bool{}
	}
	c.m[r.RemoteAddr] = true
}

func (c *connSet) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
