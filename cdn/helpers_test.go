package cdn

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/logtest"
	"github.com/outpost-edge/outpost/internal/reqinfo"
	"github.com/outpost-edge/outpost/internal/testclock"
	"github.com/outpost-edge/outpost/internal/units"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is the shared manual test clock.
type fakeClock = testclock.Clock

func newClock() *fakeClock { return testclock.New(time.Now().Truncate(time.Second)) }

// origin is a real HTTP server on 127.0.0.1 that counts its hits.
type origin struct {
	srv  *httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	fn   http.HandlerFunc
	// inner is the test's handler when fn wraps it (newEnv).
	inner http.HandlerFunc
	last  http.Header // last request header seen
}

func newOrigin(t testing.TB, fn http.HandlerFunc) *origin {
	o := &origin{fn: fn}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		o.mu.Lock()
		fn := o.fn
		o.last = r.Header.Clone()
		o.mu.Unlock()
		fn(w, r)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) set(fn http.HandlerFunc) {
	o.mu.Lock()
	o.inner = fn
	o.mu.Unlock()
}

func (o *origin) lastHeader() http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// env is a cache in front of a reverse proxy to an origin, served on a
// real listener.
type env struct {
	t      testing.TB
	cfg    Config
	rc     RouteConfig
	cache  *Cache
	origin *origin
	front  *httptest.Server
	clock  *fakeClock
	reg    *prometheus.Registry
	client *http.Client
	h      atomic.Pointer[http.Handler]
	// lastInfo is the reqinfo of the latest request (for log-field checks).
	lastInfo atomic.Pointer[reqinfo.Info]
	// entered counts requests that reached the front server.
	entered atomic.Int64
	// wrapUp, if set, wraps the upstream handler (to inject panics).
	wrapUp func(http.Handler) http.Handler
	// upTimeout bounds the wait for the origin's response header, as the
	// edge proxy's try timeout does; 0 waits forever.
	upTimeout time.Duration
}

type envOpt func(*env)

func withConfig(f func(*Config)) envOpt     { return func(e *env) { f(&e.cfg) } }
func withRoute(f func(*RouteConfig)) envOpt { return func(e *env) { f(&e.rc) } }
func withUpstream(f func(http.Handler) http.Handler) envOpt {
	return func(e *env) { e.wrapUp = f }
}

func withUpstreamTimeout(d time.Duration) envOpt { return func(e *env) { e.upTimeout = d } }

func newEnv(t testing.TB, fn http.HandlerFunc, opts ...envOpt) *env {
	e := &env{t: t, clock: newClock(), reg: prometheus.NewRegistry()}
	e.cfg.Dir = t.TempDir()
	e.cfg.MaxSize = 64 << 20
	e.cfg.Compression.MinSize = 64
	for _, o := range opts {
		o(e)
	}
	e.cfg.SetDefaults()
	e.rc.SetDefaults()
	if err := e.rc.Validate(); err != nil {
		t.Fatal(err)
	}
	// The origin's Date follows the test clock, as real clocks agree.
	clk := e.clock
	e.origin = newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
		e.origin.mu.Lock()
		f := e.origin.inner
		e.origin.mu.Unlock()
		f(w, r)
	})
	e.origin.inner = fn
	e.open(Options{})
	e.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.entered.Add(1)
		info := &reqinfo.Info{ID: "t", TLS: r.Header.Get("X-Test-TLS") == "1"}
		e.lastInfo.Store(info)
		r = r.WithContext(reqinfo.With(r.Context(), info))
		(*e.h.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(e.front.Close)
	e.client = &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 200}}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

func (e *env) upstream() http.Handler {
	u, _ := url.Parse(e.origin.srv.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 100, ResponseHeaderTimeout: e.upTimeout}
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		w.Header().Set("Content-Type", "application/json")
		// Like the edge proxy: a timeout is a 504, anything else a 502.
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			w.WriteHeader(http.StatusGatewayTimeout)
			io.WriteString(w, `{"error":{"status":504,"code":"upstream_timeout"}}`)
			return
		}
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, `{"error":{"status":502,"code":"bad_gateway"}}`)
	}
	return rp
}

// open (re)opens the cache on the env's directory.
func (e *env) open(o Options) {
	if o.Clock == nil {
		o.Clock = e.clock.Now
	}
	if o.Registerer == nil {
		e.reg = prometheus.NewRegistry()
		o.Registerer = e.reg
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := New(e.cfg, o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.cache = c
	e.t.Cleanup(func() { c.Close() })
	up := e.upstream()
	if e.wrapUp != nil {
		up = e.wrapUp(up)
	}
	var h http.Handler = c.Handler("test", e.rc, up)
	e.h.Store(&h)
}

type resp struct {
	*http.Response
	body string
}

// get sends a request; hdr is "Name: value" pairs.
func (e *env) do(method, path string, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.front.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ":")
		if strings.EqualFold(k, "Host") {
			req.Host = strings.TrimSpace(v)
			continue
		}
		req.Header.Add(k, strings.TrimSpace(v))
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp{res, string(b)}
}

func (e *env) get(path string, hdr ...string) resp { return e.do("GET", path, hdr...) }

func (e *env) hits() int64 { return e.origin.hits.Load() }

// counter reads a metric from the env's registry.
func (e *env) metric(name string, labels ...string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			if m.Gauge != nil {
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

// static returns an origin handler sending body with the given headers.
func static(body string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for _, h := range hdr {
			k, v, _ := strings.Cut(h, ":")
			w.Header().Add(k, strings.TrimSpace(v))
		}
		io.WriteString(w, body)
	}
}

func unitsDuration(d time.Duration) units.Duration { return units.Duration(d) }

// logCapture collects a cache's log records (as JSON lines) for tests that
// check what was logged.
type logCapture struct{ logtest.Buffer }

func (l *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the records logged with message msg.
func (l *logCapture) records(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		if len(line) == 0 {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
