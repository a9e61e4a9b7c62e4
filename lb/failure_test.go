package lb

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/units"
)

// onePool is a pool over the given backend URLs with outlier ejection
// after three failures in a row.
func onePool(t *testing.T, urls ...string) *Pool {
	t.Helper()
	cfg := PoolConfig{Policy: "round_robin"}
	for i, u := range urls {
		cfg.Backends = append(cfg.Backends, BackendConfig{URL: u, ID: string(rune('a' + i))})
	}
	cfg.Outlier.ConsecutiveFailures = 3
	cfg.Outlier.BaseEjectionTime = units.Duration(time.Minute)
	cfg.Outlier.MaxEjectionTime = units.Duration(time.Minute)
	cfg.Outlier.MaxEjectedPercent = 100
	return newTestPool(t, cfg, Options{})
}

// A backend that sends bytes after a response that ends without a body
// (HEAD, 204, 304) or beyond its Content-Length must not have them read as
// the answer to the next request on that connection: that request may be
// another client's. http.Transport refuses such a connection; so must the
// synchronous path.
func TestH1ExtraBytesNotReadAsNextResponse(t *testing.T) {
	const smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
	cases := []struct {
		name, method, first string
	}{
		{"HEAD with a body", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"},
		{"204 with a body", "GET", "HTTP/1.1 204 No Content\r\n\r\nabc"},
		{"304 with a body", "GET", "HTTP/1.1 304 Not Modified\r\n\r\nabc"},
		{"body beyond Content-Length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url, _ := rawBackend(t, func(conn net.Conn, n int64) {
				if n == 1 {
					io.WriteString(conn, c.first+smuggled)
					return
				}
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
			})
			p := onePool(t, url)
			req, _ := http.NewRequest(c.method, "http://pool/", nil)
			if _, _, err := send(t, p, req); err != nil {
				t.Fatalf("first request: %v", err)
			}
			req, _ = http.NewRequest("GET", "http://pool/", nil)
			_, body, err := send(t, p, req)
			if err != nil || body != "good" {
				t.Fatalf("second request got %q, %v; want the backend's own answer %q", body, err, "good")
			}
		})
	}
}

// A per-try timeout on a kept-alive connection is a timeout, not a stale
// connection: the request reached the backend, which is slow. Repeating
// it on a fresh connection would send a GET twice to a backend already
// struggling and double the per-try timeout.
func TestH1TryTimeoutOnReusedConnNotRepeated(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	url, requests := rawBackend(t, func(conn net.Conn, n int64) {
		if n == 1 {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return
		}
		<-release
	})
	rt := testH1(8, time.Minute, 100*time.Millisecond)
	defer rt.retire()
	if _, got, err := h1Do(t, rt, "GET", url, nil); err != nil || got != "ok" {
		t.Fatalf("first request: %q %v", got, err)
	}
	_, _, err := h1Do(t, rt, "GET", url, nil)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if n := requests.Load(); n != 2 {
		t.Errorf("backend saw %d requests, want 2 (the timed-out GET sent once)", n)
	}
}

// truncating backends each break a response after its header.
var truncating = []struct {
	name  string
	write func(c net.Conn)
}{
	{"content-length larger than body", func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
	}},
	{"truncated chunked body", func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nshort\r\n")
	}},
	{"reset mid body", func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
		c.(*net.TCPConn).SetLinger(0) // RST instead of FIN
	}},
}

// A response cut short by the backend is an error for the reader (never a
// short body that looks complete), its connection is not reused, and the
// backend's passive health counts it: a backend that breaks every body is
// ejected like one that answers 502.
func TestTruncatedBodyFailsAndCountsTowardEjection(t *testing.T) {
	for _, c := range truncating {
		t.Run(c.name, func(t *testing.T) {
			var conns atomic.Int64
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					conns.Add(1)
					go func() {
						defer conn.Close()
						if _, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
							c.write(conn)
						}
					}()
				}
			}()
			p := onePool(t, "http://"+ln.Addr().String())
			for i := range 3 {
				req, _ := http.NewRequest("GET", "http://pool/", nil)
				resp, err := p.RoundTrip(req)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					t.Fatalf("request %d: body %q read without error", i, b)
				}
			}
			if n := conns.Load(); n != 3 {
				t.Errorf("backend accepted %d connections, want 3 (a broken one is not reused)", n)
			}
			if st := backendStatus(p, "a"); st.Health != "ejected" {
				t.Errorf("backend health = %q after 3 broken bodies, want ejected", st.Health)
			}
		})
	}
}

// A client that stops reading is not the backend's fault: closing the body
// early leaves its passive health alone.
func TestEarlyCloseDoesNotCountAsFailure(t *testing.T) {
	url, _ := rawBackend(t, func(conn net.Conn, _ int64) {
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n"+strings.Repeat("x", 10000))
	})
	p := onePool(t, url)
	for i := range 5 {
		req, _ := http.NewRequest("GET", "http://pool/", nil)
		resp, err := p.RoundTrip(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Read(make([]byte, 10))
		resp.Body.Close()
	}
	if st := backendStatus(p, "a"); st.Health != "healthy" || st.Failures != 0 {
		t.Errorf("backend health %q failures %d after early closes, want healthy, 0", st.Health, st.Failures)
	}
}

// The same when the extra bytes arrive after the response, while the
// connection waits idle in the pool: they are not the next request's
// answer either.
func TestH1LateExtraBytesNotReadAsNextResponse(t *testing.T) {
	sent := make(chan struct{})
	url, _ := rawBackend(t, func(conn net.Conn, n int64) {
		if n == 1 {
			io.WriteString(conn, "HTTP/1.1 204 No Content\r\n\r\n")
			time.Sleep(20 * time.Millisecond) // after the pool took the connection back
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
			close(sent)
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
	})
	p := onePool(t, url)
	req, _ := http.NewRequest("GET", "http://pool/", nil)
	if _, _, err := send(t, p, req); err != nil {
		t.Fatalf("first request: %v", err)
	}
	<-sent // on loopback the bytes are in our receive buffer once written
	req, _ = http.NewRequest("GET", "http://pool/", nil)
	if _, body, err := send(t, p, req); err != nil || body != "good" {
		t.Fatalf("second request got %q, %v; want the backend's own answer %q", body, err, "good")
	}
}

// A backend that answers with a stream of 1xx responses is cut off after
// max1xx of them, not relayed to the client without end.
func TestH1InformationalFlood(t *testing.T) {
	cases := []struct {
		name string
		n1xx int
		ok   bool
	}{
		{"two Early Hints", 2, true},
		{"at the limit", max1xx, true},
		{"flood", 1000, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url, _ := rawBackend(t, func(conn net.Conn, _ int64) {
				io.WriteString(conn, strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", c.n1xx)+
					"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
			})
			p := onePool(t, url)
			req, _ := http.NewRequest("GET", "http://pool/", nil)
			_, body, err := send(t, p, req)
			if c.ok && (err != nil || body != "good") {
				t.Fatalf("got %q, %v; want the final response", body, err)
			}
			if !c.ok && !errors.Is(err, errTooMany1xx) {
				t.Fatalf("got %q, %v; want errTooMany1xx", body, err)
			}
		})
	}
}

// A backend that restarted left every idle connection of the pool dead:
// the idle check puts each aside before a request is written on it, so
// no request fails for them — one that may be repeated (GET, HEAD) or not
// (DELETE) — and the backend is not blamed.
func TestH1IdleConnectionsDeadAfterRestart(t *testing.T) {
	const conns = 4
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var open []net.Conn
	gate := make(chan struct{})
	var arrived atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			go func() {
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						c.Close()
						return
					}
					req.Body.Close()
					if arrived.Add(1) == conns {
						close(gate) // all in flight at once: one connection each
					}
					<-gate
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	p := onePool(t, "http://"+ln.Addr().String())
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, "http://pool/", nil)
			if _, body, err := send(t, p, req); err != nil || body != "ok" {
				t.Errorf("warming request: %q, %v", body, err)
			}
		}()
	}
	wg.Wait()
	// The restart: every connection closed from the backend's side.
	mu.Lock()
	for _, c := range open {
		c.Close()
	}
	open = nil
	mu.Unlock()
	for _, method := range []string{http.MethodGet, http.MethodGet, http.MethodDelete, http.MethodHead} {
		req, _ := http.NewRequest(method, "http://pool/", nil)
		resp, _, err := send(t, p, req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s after the restart: %v", method, err)
		}
	}
	if st := backendStatus(p, "a"); st.Failures != 0 {
		t.Errorf("backend failures %d after its restart, want 0 (dead idle connections are not its fault)", st.Failures)
	}
}
