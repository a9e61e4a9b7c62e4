package lb

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outpost-edge/outpost/internal/httpwire"
	"github.com/outpost-edge/outpost/internal/reqinfo"
	"github.com/outpost-edge/outpost/internal/units"
)

func TestRoundTripPrefixAndUpstream(t *testing.T) {
	var gotURI atomic.Value
	b := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		gotURI.Store(r.RequestURI)
		_, _ = io.WriteString(w, "hi")
	})
	cfg := poolConfig(PolicyRoundRobin, b)
	cfg.Backends[0].URL = b.url() + "/app/"
	p := newTestPool(t, cfg, Options{})
	info := &reqinfo.Info{}
	req, _ := http.NewRequestWithContext(reqinfo.With(context.Background(), info), http.MethodGet, "http://pool/x/y?q=1", nil)
	resp, body, err := send(t, p, req)
	if err != nil || resp.StatusCode != 200 || body != "hi" {
		t.Fatalf("resp %v %q %v", resp, body, err)
	}
	if got := gotURI.Load(); got != "/app/x/y?q=1" {
		t.Errorf("backend saw %v, want /app/x/y?q=1", got)
	}
	if got := info.Get(reqinfo.FieldUpstream); got != b.addr {
		t.Errorf("upstream field %q, want %q", got, b.addr)
	}
	if n := p.Backends()[0].InFlight(); n != 0 {
		t.Errorf("in-flight %d after body closed", n)
	}
}

// TestKillBackendDuringLoad kills one of three backends while GETs run
// through a reverse proxy: no client request fails, the backend is taken out,
// and after it returns it is re-admitted with slow start.
func TestKillBackendDuringLoad(t *testing.T) {
	t.Run("RoundTrip", func(t *testing.T) { killBackendDuringLoad(t, false) })
	t.Run("Pass", func(t *testing.T) { killBackendDuringLoad(t, true) })
}

// passFetch is a GET of path through p.Pass: the backend that answered
// (X-Backend) and the body, or why it was not a 200.
func passFetch(p *Pool, path string) (backend, body string, err error) {
	pr := &PassRequest{Method: http.MethodGet, Target: path, WriteFields: func(bw *bufio.Writer) {
		bw.WriteString("Host: pool.test\r\n\r\n")
	}}
	err = p.Pass(pr, func(res *http.Response) error {
		b, err := io.ReadAll(res.Body)
		if err == nil && res.StatusCode != 200 {
			err = errors.New(res.Status)
		}
		backend, body = passHeader(pr, res).Get("X-Backend"), string(b)
		return err
	})
	return backend, body, err
}

// passHeader is the header of a response Pass relays: its map, or the
// fields a plain head came with (PassRequest.Head).
func passHeader(pr *PassRequest, res *http.Response) http.Header {
	if res.Header != nil {
		return res.Header
	}
	return httpwire.Header(pr.Head)
}

// killBackendDuringLoad: one of three backends dies under a load loop of
// GETs (through RoundTrip, or on the pass lane): no client request fails,
// the backend is ejected, and after it returns it is re-admitted with
// slow start.
func killBackendDuringLoad(t *testing.T, pass bool) {
	bs := []*testBackend{startBackend(t, "b0", nil), startBackend(t, "b1", nil), startBackend(t, "b2", nil)}
	cfg := poolConfig(PolicyRoundRobin, bs...)
	cfg.Health = fastHealth()
	// Slower checks than passive detection, so the load loop's failures
	// eject b2 before its checks fail.
	cfg.Health.Interval = units.Duration(100 * time.Millisecond)
	cfg.Health.SlowStart = units.Duration(time.Minute)
	cfg.Outlier.ConsecutiveFailures = 3
	m := NewMetrics(prometheus.NewRegistry())
	p := newTestPool(t, cfg, Options{Metrics: m})
	fe := frontend(t, p)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if pass {
					_, _, err = passFetch(p, "/item")
				} else {
					var resp *http.Response
					resp, err = client.Get(fe.URL + "/item")
					if err == nil {
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err == nil && resp.StatusCode != 200 {
							err = errors.New(resp.Status)
						}
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	waitOK := func(n int64) {
		target := ok.Load() + n
		eventually(t, "load progress", func() bool { return ok.Load() >= target })
	}
	waitOK(100)
	bs[2].kill()
	eventually(t, "b2 out of rotation", func() bool { return backendStatus(p, "b2").Health != "healthy" })
	waitOK(200)
	bs[2].start()
	eventually(t, "b2 re-admitted", func() bool { return backendStatus(p, "b2").Health == "healthy" })
	waitOK(100)
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d client requests failed; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	st := backendStatus(p, "b2")
	if st.SlowStart <= 0 || st.SlowStart >= 0.5 {
		t.Errorf("b2 slow start share %v, want ramping", st.SlowStart)
	}
	if st.Failures == 0 || st.Ejections == 0 {
		t.Errorf("b2: %d failures, %d ejections; want it ejected", st.Failures, st.Ejections)
	}
	// The same story in the metrics. Retries are counted on the backend
	// retried on, so b2's failed tries show up on b0 and b1.
	val := func(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
	connErrs := val(m.errors.WithLabelValues("test", "b2", "connect"))
	retried := val(m.retries.WithLabelValues("test", "b0")) + val(m.retries.WithLabelValues("test", "b1"))
	for what, v := range map[string]float64{
		"b2 connect errors":           connErrs,
		"retries on b0 and b1":        retried,
		"b2 ejections":                val(m.ejections.WithLabelValues("test", "b2")),
		"b2 transitions to unhealthy": val(m.transitions.WithLabelValues("test", "b2", "unhealthy")),
		"b2 transitions to healthy":   val(m.transitions.WithLabelValues("test", "b2", "healthy")),
		"b2 healthy gauge":            val(m.healthy.WithLabelValues("test", "b2")),
	} {
		if v <= 0 {
			t.Errorf("%s = %v, want > 0", what, v)
		}
	}
	if retried < connErrs {
		t.Errorf("%v retries for %v connect errors of b2; every failed try was retried", retried, connErrs)
	}
	if got := val(m.retries.WithLabelValues("test", "b2")); got != 0 {
		t.Errorf("%v retries on b2, whose peers never failed", got)
	}
	// While ramping b2 gets a small share of round robin.
	before := [3]int64{bs[0].hits.Load(), bs[1].hits.Load(), bs[2].hits.Load()}
	for range 300 {
		if _, err := get(t, p, "/x"); err != nil {
			t.Fatal(err)
		}
	}
	d0, d2 := bs[0].hits.Load()-before[0], bs[2].hits.Load()-before[2]
	if d2 == 0 || d2 > d0/4 {
		t.Errorf("ramping b2 got %d requests vs %d for b0", d2, d0)
	}
}

// hijackAfterBody reads the whole request body and then drops the
// connection without a response.
func hijackAfterBody(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func TestRetryAfterBodySent(t *testing.T) {
	for _, tc := range []struct {
		method    string
		wantRetry bool
	}{
		{http.MethodPost, false},
		{http.MethodGet, true},
		{http.MethodPut, true}, // idempotent, and GetBody replays its body
	} {
		t.Run(tc.method, func(t *testing.T) {
			bad := startBackend(t, "bad", hijackAfterBody)
			var gotBody atomic.Value
			good := startBackend(t, "good", func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				gotBody.Store(string(b))
			})
			p := newTestPool(t, poolConfig(PolicyRoundRobin, bad, good), Options{})
			req, _ := http.NewRequest(tc.method, "http://pool/op", strings.NewReader("payload"))
			resp, _, err := send(t, p, req)
			if tc.wantRetry {
				if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "good" {
					t.Fatalf("want a retried success, got %v %v", resp, err)
				}
				if got := gotBody.Load(); got != "payload" {
					t.Errorf("retried body %q", got)
				}
			} else {
				if err == nil {
					t.Fatalf("POST succeeded via %s; want the error", resp.Header.Get("X-Backend"))
				}
				if good.hits.Load() != 0 {
					t.Errorf("POST was retried on good")
				}
			}
			if bad.hits.Load() != 1 {
				t.Errorf("bad got %d requests, want 1", bad.hits.Load())
			}
		})
	}
}

// TestRetryBodiless: bodiless requests take the synchronous h1 path. A
// connect failure is retried on another backend whatever the method; a
// connection closed before any response byte is retried for a GET, not for
// a POST, which the backend may have acted on.
func TestRetryBodiless(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		refused      bool // else the backend reads the request and hangs up
		wantRetry    bool
	}{
		{"refused/GET", http.MethodGet, true, true},
		{"refused/POST", http.MethodPost, true, true},
		{"closed/GET", http.MethodGet, false, true},
		{"closed/POST", http.MethodPost, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := startBackend(t, "bad", hijackAfterBody)
			good := startBackend(t, "good", nil)
			cfg := poolConfig(PolicyRoundRobin, bad, good)
			if tc.refused {
				cfg.Backends[0].URL = refusedURL(t)
			}
			p := newTestPool(t, cfg, Options{})
			req, _ := http.NewRequest(tc.method, "http://pool/op", nil)
			if !p.Backends()[0].transport.Load().fast(req) {
				t.Fatalf("%s without body does not take the h1 path", tc.method)
			}
			resp, _, err := send(t, p, req)
			if tc.wantRetry {
				if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "good" {
					t.Fatalf("want a retried success, got %v %v", resp, err)
				}
			} else {
				if err == nil {
					t.Fatalf("%s succeeded via %s; want the error", tc.method, resp.Header.Get("X-Backend"))
				}
				if good.hits.Load() != 0 {
					t.Errorf("%s was retried on good", tc.method)
				}
			}
			if st := backendStatus(p, "bad"); st.Requests != 1 || st.Failures != 1 {
				t.Errorf("bad: %d tries, %d failures; want it tried first, once", st.Requests, st.Failures)
			}
			if !tc.refused && bad.hits.Load() != 1 {
				t.Errorf("bad received %d requests, want 1", bad.hits.Load())
			}
		})
	}
}

// TestPostRetriedAfterConnectFailure: a POST whose backend refuses the
// connection is retried elsewhere with the same, streamed, body.
func TestPostRetriedAfterConnectFailure(t *testing.T) {
	good := startBackend(t, "good", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		_, _ = io.Copy(h, r.Body)
		_, _ = io.WriteString(w, hex.EncodeToString(h.Sum(nil)))
	})
	cfg := poolConfig(PolicyRoundRobin, good)
	cfg.Backends = append([]BackendConfig{{URL: refusedURL(t), ID: "dead"}}, cfg.Backends...)
	p := newTestPool(t, cfg, Options{})
	pr, pw := io.Pipe()
	want := sha256.New()
	go func() {
		chunk := []byte(strings.Repeat("0123456789abcdef", 4096))
		for range 16 { // 1 MiB, never held in memory whole
			want.Write(chunk)
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, "http://pool/upload", io.NopCloser(pr))
	resp, body, err := send(t, p, req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST after connect failure: %v %v", resp, err)
	}
	if body != hex.EncodeToString(want.Sum(nil)) {
		t.Errorf("body digest mismatch")
	}
	if st := backendStatus(p, "dead"); st.Failures != 1 {
		t.Errorf("dead failures %d", st.Failures)
	}
}

func TestStickySessions(t *testing.T) {
	bs := []*testBackend{startBackend(t, "b0", nil), startBackend(t, "b1", nil), startBackend(t, "b2", nil)}
	cfg := poolConfig(PolicyRoundRobin, bs...)
	cfg.Sticky = StickyConfig{Enabled: true, Cookie: "pin", Lifetime: units.Duration(time.Hour), Secret: "0123456789abcdef-secret"}
	cfg.Health = fastHealth()
	p := newTestPool(t, cfg, Options{})

	do := func(cookie string, tls bool) (*http.Response, string) {
		t.Helper()
		ctx := reqinfo.With(context.Background(), &reqinfo.Info{TLS: tls})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://pool/s", nil)
		if cookie != "" {
			req.Header.Set("Cookie", "other=1; pin="+cookie)
		}
		resp, _, err := send(t, p, req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request: %v %v", resp, err)
		}
		return resp, resp.Header.Get("X-Backend")
	}

	resp, first := do("", false)
	c := isSetCookie(resp, "pin")
	if c == nil || !c.HttpOnly || c.Secure || c.SameSite != http.SameSiteLaxMode || c.MaxAge != 3600 || c.Path != "/" {
		t.Fatalf("cookie %+v", c)
	}
	for range 10 {
		resp, got := do(c.Value, false)
		if got != first {
			t.Fatalf("pinned to %s, served by %s", first, got)
		}
		if isSetCookie(resp, "pin") != nil {
			t.Fatalf("cookie re-set while pinned")
		}
	}
	if resp, _ := do("", true); !hasAttr(resp, "; Secure") {
		t.Errorf("no Secure attribute under TLS: %v", resp.Header.Values("Set-Cookie"))
	}

	// Forged cookies: wrong signature, or a signature from another secret.
	other := newSticky("test", StickyConfig{Cookie: "pin"}, []byte("another-secret-of-16b"))
	for _, forged := range []string{"b2.AAAAAAAAAAAAAAAAAAAAAA", other.value("b2", 0), "b2", "garbage.!!", "." + strings.Repeat("x", 22)} {
		seen := map[string]bool{}
		for range 6 {
			resp, got := do(forged, false)
			seen[got] = true
			if isSetCookie(resp, "pin") == nil {
				t.Fatalf("forged cookie %q: no new cookie", forged)
			}
		}
		if len(seen) < 2 {
			t.Errorf("forged cookie %q pinned requests to %v", forged, seen)
		}
	}

	// The pinned backend dies: the client is re-pinned transparently.
	var pinned *testBackend
	for _, b := range bs {
		if b.name == first {
			pinned = b
		}
	}
	pinned.kill()
	resp, got := do(c.Value, false)
	nc := isSetCookie(resp, "pin")
	if got == first || nc == nil || nc.Value == c.Value {
		t.Fatalf("after kill: served by %s, cookie %v", got, nc)
	}
	for range 5 {
		if _, again := do(nc.Value, false); again != got {
			t.Fatalf("re-pinned to %s, served by %s", got, again)
		}
	}
	// Draining re-pins too.
	if err := p.Drain(got); err != nil {
		t.Fatal(err)
	}
	resp, third := do(nc.Value, false)
	if third == got || third == first || isSetCookie(resp, "pin") == nil {
		t.Fatalf("after drain: served by %s", third)
	}
}

// TestDrainInFlight drains a backend holding a long request through the
// admin API: the request completes, counted in flight until its body is
// done, and no new request reaches the backend. Through RoundTrip and on
// the pass lane.
func TestDrainInFlight(t *testing.T) {
	t.Run("RoundTrip", func(t *testing.T) {
		drainInFlight(t, func(p *Pool, path string) (string, string, error) {
			req, _ := http.NewRequest(http.MethodGet, "http://pool"+path, nil)
			resp, body, err := send(t, p, req)
			if err != nil {
				return "", "", err
			}
			return resp.Header.Get("X-Backend"), body, nil
		})
	})
	t.Run("Pass", func(t *testing.T) { drainInFlight(t, passFetch) })
}

func drainInFlight(t *testing.T, fetch func(p *Pool, path string) (backend, body string, err error)) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/long" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "done")
	})
	other := startBackend(t, "other", nil)
	p := newTestPool(t, poolConfig(PolicyRoundRobin, slow, other), Options{})
	admin := AdminHandler(func() map[string]*Pool { return map[string]*Pool{"api": p} })

	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		_, body, err := fetch(p, "/long")
		done <- result{body, err}
	}()
	<-entered
	if got := backendStatus(p, "slow").InFlight; got != 1 {
		t.Fatalf("in-flight %d", got)
	}
	rec := adminDo(t, admin, http.MethodPost, "/v1/pools/api/backends/slow/drain")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"draining": true`) {
		t.Fatalf("drain: %d %s", rec.Code, rec.Body)
	}
	hitsBefore := slow.hits.Load()
	for range 20 {
		if b, _, err := fetch(p, "/short"); err != nil || b != "other" {
			t.Fatalf("during drain: %q %v", b, err)
		}
	}
	if slow.hits.Load() != hitsBefore {
		t.Errorf("drained backend got new requests")
	}
	close(release)
	if r := <-done; r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: %q %v", r.body, r.err)
	}
	if got := backendStatus(p, "slow").InFlight; got != 0 {
		t.Errorf("in-flight %d after the body, want 0", got)
	}
	if rec := adminDo(t, admin, http.MethodPost, "/v1/pools/api/backends/slow/enable"); rec.Code != 200 {
		t.Fatalf("enable: %d", rec.Code)
	}
	seen := map[string]bool{}
	for range 4 {
		b, _, _ := fetch(p, "/short")
		seen[b] = true
	}
	if !seen["slow"] {
		t.Errorf("enabled backend gets no traffic: %v", seen)
	}
}

// TestUpdate removes a backend with a request in flight and adds one: the
// request completes, the kept backend keeps its state, the new one takes
// traffic once its checks pass.
func TestUpdate(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	a := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/long" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, strings.Repeat("a", 100000))
	})
	b := startBackend(t, "b", nil)
	c := startBackend(t, "c", nil)
	cfg := poolConfig(PolicyRoundRobin, a, b)
	cfg.Health = fastHealth()
	p := newTestPool(t, cfg, Options{})
	keptB := p.Backends()[1]
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://pool/long", nil)
		_, body, err := send(t, p, req)
		if err == nil && len(body) != 100000 {
			err = errors.New("short body")
		}
		done <- err
	}()
	<-entered
	if err := p.Drain("b"); err != nil {
		t.Fatal(err)
	}
	cfg2 := poolConfig(PolicyRoundRobin, b, c)
	cfg2.Health = fastHealth()
	if err := p.Update(cfg2); err != nil {
		t.Fatal(err)
	}
	bs := p.Backends()
	if bs[0] != keptB || !keptB.draining.Load() {
		t.Fatalf("kept backend lost its state")
	}
	if got := backendStatus(p, "c").Health; got == "healthy" {
		t.Logf("c already healthy") // its first checks may have run
	}
	_ = p.Enable("b")
	eventually(t, "c healthy", func() bool { return backendStatus(p, "c").Health == "healthy" })
	seen := map[string]int{}
	for range 20 {
		id, err := get(t, p, "/")
		if err != nil {
			t.Fatal(err)
		}
		seen[id]++
	}
	if seen["a"] != 0 || seen["b"] == 0 || seen["c"] == 0 {
		t.Errorf("after update: %v", seen)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("in-flight request on removed backend: %v", err)
	}
	if err := p.Update(PoolConfig{Policy: "round-robbin"}); err == nil {
		t.Errorf("invalid update accepted")
	}
}

func TestTimeouts(t *testing.T) {
	stall := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	t.Run("per try", func(t *testing.T) {
		slow := startBackend(t, "slow", stall)
		fast := startBackend(t, "fast", nil)
		cfg := poolConfig(PolicyRoundRobin, slow, fast)
		cfg.Timeouts.Try = units.Duration(500 * time.Millisecond)
		p := newTestPool(t, cfg, Options{})
		if id, err := get(t, p, "/"); err != nil || id != "fast" {
			t.Fatalf("got %q %v, want a retry on fast", id, err)
		}
	})
	t.Run("total", func(t *testing.T) {
		s1 := startBackend(t, "s1", stall)
		s2 := startBackend(t, "s2", stall)
		cfg := poolConfig(PolicyRoundRobin, s1, s2)
		cfg.Timeouts.Total = units.Duration(150 * time.Millisecond)
		p := newTestPool(t, cfg, Options{})
		_, err := get(t, p, "/")
		var ne net.Error
		if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("err %v, want a timeout", err)
		}
	})
}

func TestNoBackend(t *testing.T) {
	b := startBackend(t, "only", nil)
	p := newTestPool(t, poolConfig(PolicyLeastConnections, b), Options{})
	_ = p.Drain("only")
	_, err := get(t, p, "/")
	if !errors.Is(err, ErrNoBackend) {
		t.Fatalf("err %v, want ErrNoBackend", err)
	}
	p.Close()
	if _, err := get(t, p, "/"); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed pool: %v", err)
	}
}

// TestWebSocketUpgrade: a 101 response body stays writable for tunnels.
func TestWebSocketUpgrade(t *testing.T) {
	b := startBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString("echo:" + line)
		_ = brw.Flush()
	})
	p := newTestPool(t, poolConfig(PolicyRoundRobin, b), Options{})
	req, _ := http.NewRequest(http.MethodGet, "http://pool/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := p.RoundTrip(req)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body is not writable")
	}
	defer rw.Close()
	_, _ = io.WriteString(rw, "hello\n")
	line, _ := bufio.NewReader(rw).ReadString('\n')
	if line != "echo:hello\n" {
		t.Fatalf("tunnel got %q", line)
	}
}

// TestCloseLeavesNoGoroutines: health checkers and connection goroutines end
// with Close.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	before := runtime.NumGoroutine()
	cfg := poolConfig(PolicyRoundRobin, a, b)
	cfg.Health = fastHealth()
	p, err := New("leak", cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := get(t, p, "/"); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestErrorHTTPStatus(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want int
	}{
		{&Error{Err: ErrNoBackend}, http.StatusServiceUnavailable},
		{&Error{Err: ErrTimeout, timeout: true}, http.StatusGatewayTimeout},
		{&Error{Err: errors.New("connection reset")}, http.StatusBadGateway},
	} {
		if got := tc.err.HTTPStatus(); got != tc.want {
			t.Errorf("%v: %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestEnableRampsUp: a backend enabled after a drain comes back through
// slow start, as a recovered one does (HAProxy's slowstart after
// maintenance); without slow_start it is at full weight at once.
func TestEnableRampsUp(t *testing.T) {
	for _, window := range []time.Duration{time.Minute, 0} {
		a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
		cfg := poolConfig(PolicyRoundRobin, a, b)
		cfg.Health.SlowStart = units.Duration(window)
		p := newTestPool(t, cfg, Options{})
		if st := backendStatus(p, "b"); st.SlowStart != 0 {
			t.Fatalf("window %v: b ramping before any drain: %v", window, st.SlowStart)
		}
		if err := p.Drain("b"); err != nil {
			t.Fatal(err)
		}
		if err := p.Enable("b"); err != nil {
			t.Fatal(err)
		}
		st := backendStatus(p, "b")
		if window > 0 && (st.SlowStart <= 0 || st.SlowStart >= 0.5) {
			t.Errorf("window %v: enabled backend's share %v, want ramping from 5%%", window, st.SlowStart)
		}
		if window == 0 && st.SlowStart != 0 {
			t.Errorf("no slow_start: enabled backend's share %v, want full", st.SlowStart)
		}
	}
}
