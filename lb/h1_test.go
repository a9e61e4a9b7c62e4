package lb

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// connCounter is a backend that counts the TCP connections it accepted.
type connCounter struct {
	*httptest.Server
	conns atomic.Int64
}

func newConnCounter(t *testing.T, h http.HandlerFunc) *connCounter {
	t.Helper()
	cc := &connCounter{}
	cc.Server = httptest.NewUnstartedServer(h)
	cc.Server.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			cc.conns.Add(1)
		}
	}
	cc.Start()
	t.Cleanup(cc.Close)
	return cc
}

func testH1(maxIdle int, idleFor, hdrWait time.Duration) *h1Transport {
	d := &net.Dialer{Timeout: 2 * time.Second}
	return newH1Transport(&http.Transport{DialContext: d.DialContext}, d, maxIdle, idleFor, hdrWait)
}

func h1Do(t *testing.T, rt http.RoundTripper, method, url string, body io.Reader) (*http.Response, string, error) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

func TestH1KeepAliveAndPaths(t *testing.T) {
	backend := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "part1,")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			w.Header().Set("X-Sum", "42")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(b))
		}
	})
	rt := testH1(8, time.Minute, 0)
	defer rt.retire()

	cases := []struct {
		method, path string
		body         io.Reader
		want         string
		status       int
	}{
		{"GET", "/a?x=1", nil, "GET /a?x=1 ", 200},
		{"HEAD", "/a", nil, "", 200},
		{"DELETE", "/item/7", nil, "DELETE /item/7 ", 200},
		{"GET", "/chunked", nil, "part1,part2", 200},
		{"GET", "/empty", nil, "", 204},
		{"OPTIONS", "/o", nil, "OPTIONS /o ", 200},
	}
	for i := 0; i < 3; i++ {
		for _, c := range cases {
			resp, got, err := h1Do(t, rt, c.method, backend.URL+c.path, c.body)
			if err != nil {
				t.Fatalf("%s %s: %v", c.method, c.path, err)
			}
			if got != c.want || resp.StatusCode != c.status {
				t.Fatalf("%s %s: %d %q, want %d %q", c.method, c.path, resp.StatusCode, got, c.status, c.want)
			}
			if c.path == "/chunked" && resp.Trailer.Get("X-Sum") != "42" {
				t.Fatalf("trailer X-Sum = %q", resp.Trailer.Get("X-Sum"))
			}
		}
	}
	if n := backend.conns.Load(); n != 1 {
		t.Errorf("bodiless requests used %d connections, want 1 kept alive", n)
	}

	// Bodies of known length up to maxInlineBody take the same path (the
	// same kept-alive connection) and arrive intact, including one longer
	// than the connection's write buffer; a larger body, or one of
	// unknown length, takes http.Transport's (a connection of its own).
	bodies := []struct {
		body  io.Reader
		conns int64
	}{
		{strings.NewReader("payload"), 1},
		{strings.NewReader(strings.Repeat("b", 10<<10)), 1},
		{strings.NewReader(strings.Repeat("c", maxInlineBody)), 1},
		{strings.NewReader(strings.Repeat("d", maxInlineBody+1)), 2},
		{io.MultiReader(strings.NewReader("unknown length")), 2},
		{strings.NewReader("payload again"), 2},
	}
	for _, b := range bodies {
		req, _ := http.NewRequest("POST", backend.URL+"/p", b.body)
		want, _ := io.ReadAll(req.Body)
		req, _ = http.NewRequest("POST", backend.URL+"/p", bytes.NewReader(want))
		if _, ok := b.body.(*strings.Reader); !ok {
			req.ContentLength = -1
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("POST of %d bytes: %v", len(want), err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != "POST /p "+string(want) {
			t.Fatalf("POST of %d bytes: backend echoed %d bytes", len(want), len(got))
		}
		if n := backend.conns.Load(); n != b.conns {
			t.Errorf("after a POST of %d bytes: %d connections, want %d", len(want), n, b.conns)
		}
	}
}

// A request body that ends before its Content-Length is the client's
// failure: reported as such (not a stale connection to retry on), and the
// connection that carried the partial request is not reused.
func TestH1ShortRequestBody(t *testing.T) {
	backend := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	rt := testH1(8, time.Minute, 0)
	defer rt.retire()
	if _, got, err := h1Do(t, rt, "GET", backend.URL, nil); err != nil || got != "ok" {
		t.Fatalf("GET: %q %v", got, err)
	}
	req, _ := http.NewRequest("PUT", backend.URL, io.NopCloser(strings.NewReader("abc")))
	req.ContentLength = 10
	req.Header.Set("Idempotency-Key", "k") // replayable, were it the connection's fault
	if _, err := rt.RoundTrip(req); err == nil || !errors.As(err, new(bodyErr)) {
		t.Fatalf("short body: err = %v, want the body's", err)
	}
	if _, got, err := h1Do(t, rt, "GET", backend.URL, nil); err != nil || got != "ok" {
		t.Fatalf("GET after: %q %v", got, err)
	}
	if n := backend.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the one with a partial request closed)", n)
	}
}

func TestH1UnreadBodyIsNotReused(t *testing.T) {
	backend := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 64<<10))
	})
	rt := testH1(8, time.Minute, 0)
	defer rt.retire()
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("GET", backend.URL, nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.CopyN(io.Discard, resp.Body, 10)
		resp.Body.Close() // the rest is unread: the connection must go
	}
	if n := backend.conns.Load(); n != 3 {
		t.Errorf("connections = %d, want 3 (a half-read response's connection is closed)", n)
	}
}

// rawBackend accepts connections and runs serve on each.
func rawBackend(t *testing.T, serve func(c net.Conn, n int64)) (string, *atomic.Int64) {
	t.Helper()
	var requests atomic.Int64
	addr := serveEach(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			req.Body.Close()
			serve(c, requests.Add(1))
		}
	})
	return "http://" + addr, &requests
}

func TestH1StaleConnectionRetry(t *testing.T) {
	// The backend answers the first request on each connection, then
	// drops the connection without a word when the next one arrives, like
	// a backend whose keep-alive timeout raced the request.
	url, requests := rawBackend(t, func(c net.Conn, n int64) {
		if n%2 == 0 {
			c.Close()
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	cases := []struct {
		method    string
		header    string
		wantErr   bool
		wantTotal int64 // requests the backend saw after the second call
	}{
		{"GET", "", false, 3},                 // retried on a fresh connection
		{"POST", "", true, 2},                 // non-idempotent, it was sent: not repeated
		{"POST", "Idempotency-Key", false, 3}, // declared safe to repeat
		// With a body: sent again from GetBody (a truncated or missing
		// body would leave the backend reading, or the next request
		// unparsable).
		{"POST", "body", true, 2},
		{"POST", "body Idempotency-Key", false, 3},
	}
	for _, c := range cases {
		t.Run(c.method+c.header, func(t *testing.T) {
			requests.Store(0)
			rt := testH1(8, time.Minute, 0)
			defer rt.retire()
			if _, got, err := h1Do(t, rt, "GET", url, nil); err != nil || got != "ok" {
				t.Fatalf("first request: %q %v", got, err)
			}
			var body io.Reader
			if strings.HasPrefix(c.header, "body") {
				body = strings.NewReader("the body")
			}
			req, _ := http.NewRequest(c.method, url, body)
			if h := strings.TrimPrefix(strings.TrimPrefix(c.header, "body"), " "); h != "" {
				req.Header.Set(h, "k1")
			}
			resp, err := rt.RoundTrip(req)
			if err == nil {
				io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if n := requests.Load(); n != c.wantTotal {
				t.Errorf("backend saw %d requests, want %d", n, c.wantTotal)
			}
		})
	}
}

func TestH1CancelAndHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	backend := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow-body" {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "12345")
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)

	t.Run("header timeout", func(t *testing.T) {
		rt := testH1(8, time.Minute, 50*time.Millisecond)
		defer rt.retire()
		_, _, err := h1Do(t, rt, "GET", backend.URL+"/hang", nil)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("err = %v, want a timeout", err)
		}
	})
	// A bodiless request's cancellation is arranged once its answer has
	// taken watchAfter (before, it is noticed then); one with a body's at
	// once.
	for _, c := range []struct {
		method string
		after  time.Duration
	}{{"GET", watchAfter / 2}, {"GET", 3 * watchAfter}, {"POST", watchAfter / 2}} {
		t.Run(fmt.Sprintf("cancel before headers, %s after %v", c.method, c.after), func(t *testing.T) {
			rt := testH1(8, time.Minute, 0)
			defer rt.retire()
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(c.after, cancel)
			var body io.Reader
			if c.method == "POST" {
				body = strings.NewReader("a body")
			}
			req, _ := http.NewRequestWithContext(ctx, c.method, backend.URL+"/hang", body)
			if _, err := rt.RoundTrip(req); !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		})
	}
	t.Run("cancel during body", func(t *testing.T) {
		rt := testH1(8, time.Minute, 0)
		defer rt.retire()
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", backend.URL+"/slow-body", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(50*time.Millisecond, cancel)
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Fatal("body read succeeded after cancel")
		}
		resp.Body.Close()
		rt.mu.Lock()
		idle := len(rt.idle)
		rt.mu.Unlock()
		if idle != 0 {
			t.Errorf("%d idle connections after a cancelled body, want 0", idle)
		}
	})
}

func TestH1EarlyHints(t *testing.T) {
	backend := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "page")
	})
	rt := testH1(8, time.Minute, 0)
	defer rt.retire()
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, h.Get("Link"))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", backend.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "page" {
		t.Fatalf("final response %d %q", resp.StatusCode, b)
	}
	if len(hints) != 1 || hints[0] != "</app.css>; rel=preload" {
		t.Errorf("early hints = %q", hints)
	}
}

func TestH1IdleReapAndRetire(t *testing.T) {
	closed := make(chan struct{}, 16)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	backend.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	backend.Start()
	defer backend.Close()

	waitClosed := func(what string) {
		t.Helper()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the idle connection was not closed", what)
		}
	}
	rt := testH1(8, 30*time.Millisecond, 0)
	if _, _, err := h1Do(t, rt, "GET", backend.URL, nil); err != nil {
		t.Fatal(err)
	}
	waitClosed("idle timeout")

	rt = testH1(8, time.Hour, 0)
	req, _ := http.NewRequest("GET", backend.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	rt.retire() // while the response is in flight
	io.ReadAll(resp.Body)
	resp.Body.Close()
	waitClosed("retired transport")
}

func TestH1HostileBackendHeader(t *testing.T) {
	// Headers without end: the proxy gives up at maxResponseHeader instead
	// of buffering them.
	url, _ := rawBackend(t, func(c net.Conn, _ int64) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Junk: " + strings.Repeat("a", 1000) + "\r\n"
		for i := 0; i < 4*maxResponseHeader/len(line); i++ {
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	})
	rt := testH1(8, time.Minute, 0)
	defer rt.retire()
	if _, _, err := h1Do(t, rt, "GET", url, nil); !errors.Is(err, errHeaderTooLarge) {
		t.Fatalf("err = %v, want %v", err, errHeaderTooLarge)
	}
	// A body far larger than the header limit is fine.
	big := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("b", 3*maxResponseHeader))
	})
	_, got, err := h1Do(t, rt, "GET", big.URL, nil)
	if err != nil || len(got) != 3*maxResponseHeader {
		t.Fatalf("large body: %d bytes, %v", len(got), err)
	}
	if _, got, err = h1Do(t, rt, "GET", big.URL, nil); err != nil || len(got) != 3*maxResponseHeader {
		t.Fatalf("large body on a reused connection: %d bytes, %v", len(got), err)
	}
}

// A backend URL may leave out the port: the synchronous path dials :80.
func TestH1DefaultPort(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"http://127.0.0.1:8080/x", "127.0.0.1:8080"},
		{"http://backend.internal/x", "backend.internal:80"},
		{"http://[::1]/x", "[::1]:80"},
		{"http://[::1]:81/x", "[::1]:81"},
	} {
		u, _ := url.Parse(c.url)
		if got := dialAddr(u); got != c.want {
			t.Errorf("dialAddr(%s) = %q, want %q", c.url, got, c.want)
		}
	}
	// And for real, where binding port 80 is allowed (root, as in CI).
	ln, err := net.Listen("tcp", "127.0.0.77:80")
	if err != nil {
		t.Skipf("cannot bind 127.0.0.77:80 here: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "port 80")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	rt := testH1(8, time.Minute, 0)
	defer rt.retire()
	if _, got, err := h1Do(t, rt, "GET", "http://127.0.0.77/", nil); err != nil || got != "port 80" {
		t.Fatalf("GET without a port: %q, %v", got, err)
	}
}
