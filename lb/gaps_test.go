package lb

import (
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outpost-edge/outpost/internal/units"
)

// tlsBackend is an https backend on 127.0.0.1 with a self-signed
// certificate, offering HTTP/2 over ALPN when h2 is set. It records the
// protocol major version of the last request.
func tlsBackend(t *testing.T, h2 bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var proto atomic.Int32
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(int32(r.ProtoMajor))
		_, _ = io.WriteString(w, r.Proto)
	}))
	s.EnableHTTP2 = h2
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	s.StartTLS()
	t.Cleanup(s.Close)
	return s, &proto
}

// TestHTTP2ToHTTPSBackend: transport.http2 negotiates HTTP/2 with an https
// backend; without it the pool speaks HTTP/1.1 even to a backend that
// offers h2.
func TestHTTP2ToHTTPSBackend(t *testing.T) {
	for _, tc := range []struct {
		name  string
		http2 bool
		want  int32
	}{
		{"http2 on", true, 2},
		{"http2 off", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, proto := tlsBackend(t, true)
			cfg := PoolConfig{Backends: []BackendConfig{{URL: s.URL, ID: "tls"}}}
			// The test server's certificate is self-signed; the pool offers
			// no CA option, only insecure_skip_verify.
			cfg.Transport.InsecureSkipVerify = true
			cfg.Transport.HTTP2 = tc.http2
			p := newTestPool(t, cfg, Options{})
			for i := range 2 { // the second request reuses the connection
				req, _ := http.NewRequest(http.MethodGet, "http://pool/x", nil)
				resp, body, err := send(t, p, req)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d: status %d", i, resp.StatusCode)
				}
				if got := proto.Load(); got != tc.want {
					t.Fatalf("request %d reached the backend over HTTP/%d (%s), want HTTP/%d", i, got, body, tc.want)
				}
				if resp.ProtoMajor != int(tc.want) {
					t.Errorf("response ProtoMajor %d, want %d", resp.ProtoMajor, tc.want)
				}
			}
		})
	}
}

// TestHTTPSBackendCertVerified: without insecure_skip_verify, a backend
// with an untrusted certificate is not used.
func TestHTTPSBackendCertVerified(t *testing.T) {
	s, proto := tlsBackend(t, true)
	cfg := PoolConfig{Backends: []BackendConfig{{URL: s.URL, ID: "tls"}}}
	cfg.Transport.HTTP2 = true
	cfg.Retries.MaxTries = 1
	p := newTestPool(t, cfg, Options{})
	if _, err := get(t, p, "/"); err == nil {
		t.Fatal("request to an untrusted certificate succeeded")
	}
	if proto.Load() != 0 {
		t.Fatal("request reached the backend")
	}
}

// TestActiveCheckTimeout: a health endpoint that hangs past health.timeout
// fails the check as "timeout"; `fall` such checks mark the backend down.
func TestActiveCheckTimeout(t *testing.T) {
	var hang atomic.Bool
	var hung atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && hang.Load() {
			hung.Add(1)
			select { // until the checker gives up and closes the connection
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	cfg := PoolConfig{Backends: []BackendConfig{{URL: s.URL, ID: "a"}}}
	cfg.Health = fastHealth()
	cfg.Health.Timeout = units.Duration(50 * time.Millisecond)
	cfg.Health.Fall = 3
	p := newTestPool(t, cfg, Options{})
	eventually(t, "a check passes", func() bool { return backendStatus(p, "a").LastCheck == "ok" })
	hang.Store(true)
	eventually(t, "a check times out", func() bool { return backendStatus(p, "a").LastCheck == "timeout" })
	eventually(t, "a unhealthy", func() bool { return backendStatus(p, "a").Health == "unhealthy" })
	if n := hung.Load(); n < 3 {
		t.Errorf("unhealthy after %d hung checks, want fall = 3", n)
	}
	if got := backendStatus(p, "a").LastCheck; got != "timeout" {
		t.Errorf("last check %q, want timeout", got)
	}
}

// TestOutlierEjectsOnTryTimeouts: per-try timeouts count as failures
// toward outlier.consecutive_failures, like 5xx and connect errors.
func TestOutlierEjectsOnTryTimeouts(t *testing.T) {
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select { // past timeouts.try, until the pool gives up
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	fast := startBackend(t, "fast", nil)
	clk := newFakeClock() // the ejection lasts until the clock moves
	m := NewMetrics(nil)
	cfg := poolConfig(PolicyRoundRobin, slow, fast)
	cfg.Timeouts.Try = units.Duration(100 * time.Millisecond)
	cfg.Outlier.ConsecutiveFailures = 2
	cfg.Outlier.BaseEjectionTime = units.Duration(time.Minute)
	cfg.Outlier.MaxEjectionTime = units.Duration(time.Hour)
	p := newTestPool(t, cfg, Options{Now: clk.Now, Metrics: m})
	for i := 0; backendStatus(p, "slow").Health != "ejected"; i++ {
		if i == 10 {
			t.Fatalf("slow not ejected after %d requests: %+v", i, backendStatus(p, "slow"))
		}
		if id, err := get(t, p, "/"); err != nil || id != "fast" {
			t.Fatalf("got %q %v, want a retry on fast", id, err)
		}
	}
	if got := testutil.ToFloat64(m.errors.WithLabelValues("test", "slow", "timeout")); got != 2 {
		t.Errorf("slow timeouts %v, want 2 (consecutive_failures)", got)
	}
	if st := backendStatus(p, "slow"); st.Failures != 2 || st.Ejections != 1 {
		t.Errorf("slow %+v, want 2 failures and 1 ejection", st)
	}
	hits := slow.hits.Load()
	for range 4 {
		if id, err := get(t, p, "/"); err != nil || id != "fast" {
			t.Fatalf("got %q %v while slow is ejected", id, err)
		}
	}
	if slow.hits.Load() != hits {
		t.Errorf("ejected backend still received requests")
	}
}

// retryPair starts two backends sharing a handler whose first request
// overall drops the connection and later ones succeed; it records when
// each request arrived.
func retryPair(t *testing.T) (a, b *testBackend, arrivals func() []time.Time) {
	t.Helper()
	var mu sync.Mutex
	var at []time.Time
	h := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		first := len(at) == 1
		mu.Unlock()
		if first {
			hijackAfterBody(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}
	a, b = startBackend(t, "a", h), startBackend(t, "b", h)
	return a, b, func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), at...)
	}
}

// TestRetryBackoff: a retry waits the jittered backoff before its try, and
// timeouts.total expiring during the backoff ends the request without it.
// The backoff timer runs on wall time; its jitter comes from Options.Rand,
// fixed here so the wait is exactly 150ms.
func TestRetryBackoff(t *testing.T) {
	const backoff = 150 * time.Millisecond
	fixed := func() uint64 { return uint64(backoff) } // % 200ms = 150ms
	retries := RetryConfig{MaxTries: 2, Backoff: units.Duration(200 * time.Millisecond),
		MaxBackoff: units.Duration(200 * time.Millisecond)}

	t.Run("waits", func(t *testing.T) {
		a, b, arrivals := retryPair(t)
		cfg := poolConfig(PolicyRoundRobin, a, b)
		cfg.Retries = retries
		p := newTestPool(t, cfg, Options{Rand: fixed})
		if _, err := get(t, p, "/"); err != nil {
			t.Fatalf("retry failed: %v", err)
		}
		at := arrivals()
		if len(at) != 2 {
			t.Fatalf("%d tries, want 2", len(at))
		}
		// Timers never fire early; half leaves room for clock granularity.
		if gap := at[1].Sub(at[0]); gap < backoff/2 {
			t.Errorf("retry %v after the failed try, want >= %v backoff", gap, backoff)
		}
	})

	t.Run("total timeout during backoff", func(t *testing.T) {
		a, b, arrivals := retryPair(t)
		cfg := poolConfig(PolicyRoundRobin, a, b)
		cfg.Retries = retries
		cfg.Timeouts.Total = units.Duration(50 * time.Millisecond)
		p := newTestPool(t, cfg, Options{Rand: fixed})
		_, err := get(t, p, "/")
		if err == nil {
			t.Fatal("request succeeded, want the retry cut off by timeouts.total")
		}
		// A timeout, whatever the failed try said: a proxy answers 504.
		var le *Error
		if !errors.As(err, &le) || le.HTTPStatus() != http.StatusGatewayTimeout || !le.Timeout() {
			t.Fatalf("error %v, want a pool timeout (504)", err)
		}
		if n := len(arrivals()); n != 1 {
			t.Fatalf("%d tries, want 1: the backoff outlasts timeouts.total", n)
		}
	})
}

// TestCheckWaitJitter: the pause between checks is the interval plus a
// share of the jitter drawn from the pool's random source, always within
// [interval, interval+jitter).
func TestCheckWaitJitter(t *testing.T) {
	var next uint64
	cfg := poolConfig(PolicyRoundRobin)
	cfg.Backends = []BackendConfig{{URL: "http://127.0.0.1:9", ID: "unused"}}
	p := newTestPool(t, cfg, Options{Rand: func() uint64 { return next }})
	h := HealthConfig{Interval: units.Duration(2 * time.Second), Jitter: units.Duration(200 * time.Millisecond)}
	tests := []struct {
		rand uint64
		want time.Duration
	}{
		{0, 2 * time.Second},
		{uint64(50 * time.Millisecond), 2050 * time.Millisecond},
		{uint64(200*time.Millisecond) - 1, 2200*time.Millisecond - 1},
		{uint64(200 * time.Millisecond), 2 * time.Second}, // wraps: never the full jitter
		{^uint64(0), 2*time.Second + time.Duration(^uint64(0)%uint64(200*time.Millisecond))},
	}
	for _, tc := range tests {
		next = tc.rand
		if got := p.checkWait(h); got != tc.want {
			t.Errorf("rand %d: wait %v, want %v", tc.rand, got, tc.want)
		}
	}
	h.Jitter = 0
	next = 12345
	if got := p.checkWait(h); got != 2*time.Second {
		t.Errorf("no jitter: wait %v, want the interval", got)
	}
}
