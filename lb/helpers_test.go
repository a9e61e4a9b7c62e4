package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/units"
)

// testBackend is a real HTTP backend on 127.0.0.1 that can be killed and
// restarted on the same address.
type testBackend struct {
	t       *testing.T
	name    string
	addr    string
	handler func(w http.ResponseWriter, r *http.Request)
	hits    atomic.Int64 // requests other than health checks
	sick    atomic.Bool  // /healthz answers 503
	hosts   sync.Map     // Host headers seen by /healthz

	mu  sync.Mutex
	srv *http.Server
}

func startBackend(t *testing.T, name string, h func(w http.ResponseWriter, r *http.Request)) *testBackend {
	t.Helper()
	b := &testBackend{t: t, name: name, handler: h}
	b.start()
	t.Cleanup(b.kill)
	return b
}

func (b *testBackend) start() {
	b.t.Helper()
	addr := b.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old socket may linger briefly after kill
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("listen %s: %v", addr, err)
	}
	b.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 5 * time.Second}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (b *testBackend) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		b.hosts.Store(r.Host, true)
		if b.sick.Load() {
			http.Error(w, "sick", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
		return
	}
	b.hits.Add(1)
	w.Header().Set("X-Backend", b.name)
	if b.handler != nil {
		b.handler(w, r)
		return
	}
	_, _ = io.WriteString(w, b.name)
}

// kill closes the listener and every connection, like a crashed process.
func (b *testBackend) kill() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (b *testBackend) url() string { return "http://" + b.addr }

// fastHealth is an active check config for tests: quick, two to rise and fall.
func fastHealth() HealthConfig {
	return HealthConfig{
		Path:     "/healthz",
		Interval: units.Duration(20 * time.Millisecond),
		Jitter:   units.Duration(5 * time.Millisecond),
		Timeout:  units.Duration(500 * time.Millisecond),
		Rise:     2,
		Fall:     2,
	}
}

func poolConfig(policy string, bs ...*testBackend) PoolConfig {
	cfg := PoolConfig{Policy: policy}
	for _, b := range bs {
		cfg.Backends = append(cfg.Backends, BackendConfig{URL: b.url(), ID: b.name})
	}
	cfg.Outlier.BaseEjectionTime = units.Duration(100 * time.Millisecond)
	cfg.Outlier.MaxEjectionTime = units.Duration(time.Second)
	return cfg
}

func newTestPool(t *testing.T, cfg PoolConfig, opts Options) *Pool {
	t.Helper()
	if opts.Rand == nil {
		opts.Rand = lockedRand(42)
	}
	p, err := New("test", cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// get sends a request through the pool and returns status, X-Backend and body.
func send(t *testing.T, p *Pool, req *http.Request) (*http.Response, string, error) {
	t.Helper()
	resp, err := (&http.Client{Transport: p}).Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

func get(t *testing.T, p *Pool, path string) (string, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://pool"+path, nil)
	resp, body, err := send(t, p, req)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status + ": " + body)
	}
	return resp.Header.Get("X-Backend"), nil
}

// frontend is a reverse proxy with the pool as its transport, mapping pool
// errors to statuses the way the node's proxy does.
func frontend(t *testing.T, p *Pool) *httptest.Server {
	t.Helper()
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetXForwarded() },
		Transport: p,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			switch {
			case errors.Is(err, ErrNoBackend):
				w.WriteHeader(http.StatusServiceUnavailable)
			case errors.Is(err, context.DeadlineExceeded):
				w.WriteHeader(http.StatusGatewayTimeout)
			default:
				w.WriteHeader(http.StatusBadGateway)
			}
		},
	}
	s := httptest.NewServer(rp)
	t.Cleanup(s.Close)
	return s
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func backendStatus(p *Pool, id string) BackendStatus {
	for _, b := range p.Status().Backends {
		if b.ID == id {
			return b
		}
	}
	return BackendStatus{}
}

func isSetCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func hasAttr(resp *http.Response, attr string) bool {
	for _, v := range resp.Header.Values("Set-Cookie") {
		if strings.Contains(v, attr) {
			return true
		}
	}
	return false
}

func adminDo(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

// refusedURL is an http URL whose port refuses connections for the whole
// test: the port is held by a bound socket that never listens, so no other
// listener (of this or another process) can take it, unlike a closed one.
func refusedURL(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
