package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// brokenBackend is a raw TCP backend: for each connection it reads one
// request (headers only) and runs answer, then closes the connection.
func brokenBackend(t *testing.T, answer func(c net.Conn, req *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err == nil {
					answer(c, req)
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// poolNode runs a node whose routes /NAME/ each go through a pool of one
// backend, behind the gateway.
func poolNode(t *testing.T, backends map[string]string, gatewayExtra string) string {
	t.Helper()
	return poolRoutes(t, backends, fmt.Sprintf("    gateway: {auth: {mode: none}%s}\n", gatewayExtra))
}

// lanePoolNode is poolNode without the gateway: its GETs take the pass
// lane.
func lanePoolNode(t *testing.T, backends map[string]string) string {
	t.Helper()
	return poolRoutes(t, backends, "")
}

func poolRoutes(t *testing.T, backends map[string]string, routeExtra string) string {
	t.Helper()
	var pools, routes strings.Builder
	for name, url := range backends {
		fmt.Fprintf(&pools, "  %s:\n    backends: [{id: %s, url: %q}]\n    timeouts: {try: 300ms, total: 2s}\n", name, name, url)
		fmt.Fprintf(&routes, "  - name: %s\n    path_prefix: /%s/\n    pool: %s\n%s", name, name, name, routeExtra)
	}
	_, base := startNode(t, fmt.Sprintf("node: test\ndata_dir: %s\nedge:\n  listen: 127.0.0.1:0\npools:\n%sgateway: {}\nroutes:\n%s",
		t.TempDir(), pools.String(), routes.String()))
	return base
}

// errorCode is the code of the JSON error shape, or "" when body is not one.
func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// Broken backends through the node's gateway, pool and proxy, and through
// the pass lane (the same routes without the gateway): a failure before
// the response header is a JSON error with the right status; a failure
// after it is an error for the client, never a short body that looks
// complete.
func TestNodeBrokenBackends(t *testing.T) {
	write := func(s string) func(net.Conn, *http.Request) {
		return func(c net.Conn, _ *http.Request) { io.WriteString(c, s) }
	}
	cases := []struct {
		name   string
		answer func(net.Conn, *http.Request)
		status int    // 0: the client must see a broken response
		code   string // error code when status is set
	}{
		{"garbage", write("SSH-2.0-OpenSSH_9.6\r\n\r\n"), 502, "bad_gateway"},
		{"closed", write(""), 502, "bad_gateway"},
		{"hang", func(c net.Conn, _ *http.Request) { io.Copy(io.Discard, c) }, 504, "upstream_timeout"},
		{"hints-then-die", write("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"), 502, "bad_gateway"},
		{"header-bomb", func(c net.Conn, _ *http.Request) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\n")
			line := "X-Junk: " + strings.Repeat("a", 1000) + "\r\n"
			for range 3 << 10 {
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
			}
		}, 502, "bad_gateway"},
		{"short-length", write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"), 0, ""},
		{"short-chunked", write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nshort\r\n"), 0, ""},
		{"reset", func(c net.Conn, _ *http.Request) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
			c.(*net.TCPConn).SetLinger(0)
		}, 0, ""},
	}
	backends := map[string]string{}
	for _, c := range cases {
		backends[c.name] = brokenBackend(t, c.answer)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, lane := range []struct{ name, base string }{
		{"chain", poolNode(t, backends, "")},
		{"pass-lane", lanePoolNode(t, backends)},
	} {
		for _, c := range cases {
			t.Run(lane.name+"/"+c.name, func(t *testing.T) {
				resp, err := client.Get(lane.base + "/" + c.name + "/x")
				if err != nil {
					if c.status == 0 {
						return // broken before the client saw a header: fine
					}
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if c.status == 0 {
					if err == nil {
						t.Fatalf("status %d body %q read without error", resp.StatusCode, body)
					}
					return
				}
				if resp.StatusCode != c.status || errorCode(body) != c.code {
					t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, c.status, c.code)
				}
			})
		}
	}
}

// Many small response headers under the limit pass; the node stays up.
func TestNodeManyResponseHeaders(t *testing.T) {
	up := brokenBackend(t, func(c net.Conn, _ *http.Request) {
		var b bytes.Buffer
		b.WriteString("HTTP/1.1 200 OK\r\n")
		for i := range 5000 {
			fmt.Fprintf(&b, "X-H%d: v\r\n", i)
		}
		b.WriteString("Content-Length: 2\r\n\r\nok")
		c.Write(b.Bytes())
	})
	base := poolNode(t, map[string]string{"many": up}, "")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/many/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(body) != "ok" || resp.Header.Get("X-H4999") != "v" {
		t.Fatalf("got %d %q %v", resp.StatusCode, body, err)
	}
}

// connTracker is a backend that counts open connections and requests
// whose context ended.
type connTracker struct {
	*httptest.Server
	open      atomic.Int64
	cancelled atomic.Int64
}

func newConnTracker(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *connTracker {
	t.Helper()
	ct := &connTracker{}
	ct.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(w, r)
		if r.Context().Err() != nil {
			ct.cancelled.Add(1)
		}
	}))
	ct.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			ct.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			ct.open.Add(-1)
		}
	}
	ct.Start()
	t.Cleanup(ct.Close)
	return ct
}

// A client that goes away mid-download or mid-upload ends the backend
// request and its connection, and leaves no goroutine behind.
func TestNodeClientGoneCancelsBackend(t *testing.T) {
	down := newConnTracker(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("d"), 32<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(time.Millisecond)
		}
	})
	up := newConnTracker(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	})
	base := poolNode(t, map[string]string{"down": down.URL, "up": up.URL}, "")
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	var baseline int
	for i := range 4 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/down/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadFull(resp.Body, make([]byte, 100<<10))
		cancel()
		resp.Body.Close()

		pr, pw := io.Pipe()
		ctx, cancel = context.WithCancel(context.Background())
		req, _ = http.NewRequestWithContext(ctx, "POST", base+"/up/", pr)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		pw.Write(bytes.Repeat([]byte("u"), 64<<10))
		cancel()
		pw.CloseWithError(io.ErrUnexpectedEOF)
		<-done

		for _, b := range []*connTracker{down, up} {
			want := int64(i + 1)
			waitFor(t, fmt.Sprintf("round %d: backend request cancelled and connection closed", i), func() bool {
				return b.cancelled.Load() == want && b.open.Load() == 0
			})
		}
		client.CloseIdleConnections()
		if i == 0 {
			// After one round everything lazily started is running.
			time.Sleep(100 * time.Millisecond)
			baseline = runtime.NumGoroutine()
			continue
		}
		waitFor(t, fmt.Sprintf("round %d: goroutines back to %d", i, baseline), func() bool {
			return runtime.NumGoroutine() <= baseline
		})
	}
}

// waitFor polls cond for up to ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The gateway's body limit on a chunked upload to a backend that reads
// slowly is a 413 in the JSON shape; with Expect: 100-continue and a
// declared length over the limit, no body byte is asked for.
func TestNodeGatewayBodyLimit(t *testing.T) {
	var got atomic.Int64
	slow := newConnTracker(t, func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 512)
		for {
			n, err := r.Body.Read(buf)
			got.Add(int64(n))
			if err != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		io.WriteString(w, "read all")
	})
	base := poolNode(t, map[string]string{"slow": slow.URL}, ", max_body: 4KiB")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
	defer client.CloseIdleConnections()

	for _, c := range []struct {
		name, method string
		size         int
		chunked      bool
		status       int
		want         string // body, or the error code
	}{
		{"chunked over the limit", "POST", 64 << 10, true, 413, "body_too_large"},
		{"chunked under the limit", "POST", 2 << 10, true, 200, "read all"},
		{"expect continue under the limit", "PUT", 3 << 10, false, 200, "read all"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, base+"/slow/", io.MultiReader(strings.NewReader(strings.Repeat("x", c.size))))
			if c.chunked {
				req.ContentLength = -1
			} else {
				req.ContentLength = int64(c.size)
				req.Header.Set("Expect", "100-continue")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || (string(body) != c.want && errorCode(body) != c.want) {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, c.status, c.want)
			}
		})
	}
	t.Run("expect continue over the limit", func(t *testing.T) {
		var sent atomic.Bool
		body := readerFunc(func(p []byte) (int, error) { sent.Store(true); return 0, io.EOF })
		req, _ := http.NewRequest("PUT", base+"/slow/", body)
		req.ContentLength = 1 << 20
		req.Header.Set("Expect", "100-continue")
		resp, err := client.Do(req)
		if err != nil && !sent.Load() {
			t.Fatal(err)
		}
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 413 || errorCode(b) != "body_too_large" {
				t.Fatalf("got %d %s", resp.StatusCode, b)
			}
		}
		if sent.Load() {
			t.Error("the client was asked for its body despite a declared length over the limit")
		}
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// A response header far over 1MiB (Go's transport buffers up to 10MiB per
// request by default) is a 502 on single-upstream routes and on pool
// routes, including requests with a body, which skip the pool's h1 path;
// the node keeps serving.
func TestNodeResponseHeaderBomb(t *testing.T) {
	bomb := func(c net.Conn, req *http.Request) {
		if req.URL.Path == "/ok" || strings.HasSuffix(req.URL.Path, "/ok") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return
		}
		io.Copy(io.Discard, req.Body)
		w := bufio.NewWriter(c)
		w.WriteString("HTTP/1.1 200 OK\r\n")
		line := "X-Bomb: " + strings.Repeat("b", 1000) + "\r\n"
		for range 3 << 10 { // 3MiB
			if _, err := w.WriteString(line); err != nil {
				return
			}
		}
		w.WriteString("Content-Length: 0\r\n\r\n")
		w.Flush()
	}
	up := brokenBackend(t, bomb)
	_, single := startNode(t, proxyConfig(up, ""))
	pooled := poolNode(t, map[string]string{"p": up}, "")
	client := &http.Client{Timeout: 10 * time.Second}
	for _, c := range []struct{ name, method, url string }{
		{"single upstream", "GET", single + "/"},
		{"pool", "GET", pooled + "/p/"},
		{"pool with a body", "POST", pooled + "/p/"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader
			if c.method == "POST" {
				body = strings.NewReader("data")
			}
			req, _ := http.NewRequest(c.method, c.url, body)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("got %d with %d header fields, want 502", resp.StatusCode, len(resp.Header["X-Bomb"]))
			}
			resp, err = client.Get(strings.TrimSuffix(c.url, "/") + "/ok")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("normal request afterwards: %d", resp.StatusCode)
			}
		})
	}
}

// An upstream that sends its header and part of the body and then goes
// silent is cut off after routes[].body_timeout, on single-upstream and
// pool routes: the client sees the response end early and the upstream
// connection is closed. A body that keeps coming, however slowly, is not
// cut.
func TestNodeUpstreamBodyStall(t *testing.T) {
	hungUp := make(chan bool, 4)
	up := brokenBackend(t, func(c net.Conn, req *http.Request) {
		if req.Header.Get("Upgrade") == "echo" {
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n') // after a pause longer than body_timeout
			io.WriteString(c, "echo:"+line)
			return
		}
		if strings.HasSuffix(req.URL.Path, "/slow") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
			for _, b := range []byte("abcd") { // each byte within body_timeout
				time.Sleep(150 * time.Millisecond)
				c.Write([]byte{b})
			}
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c) // until the proxy hangs up
		var ne net.Error
		hungUp <- !(errors.As(err, &ne) && ne.Timeout())
	})
	_, base := startNode(t, fmt.Sprintf(`node: test
data_dir: %s
edge:
  listen: 127.0.0.1:0
pools:
  p:
    backends: [{id: p, url: %q}]
routes:
  - name: one
    path_prefix: /one/
    upstream: %s
    body_timeout: 300ms
  - name: pool
    path_prefix: /pool/
    pool: p
    body_timeout: 300ms
`, t.TempDir(), up, up))
	client := &http.Client{Timeout: 10 * time.Second}
	for _, route := range []string{"one", "pool"} {
		t.Run(route, func(t *testing.T) {
			// Cut before or after the header reached the client: either
			// way an error, not a timeout of the client's own.
			resp, err := client.Get(base + "/" + route + "/stall")
			var b []byte
			if err == nil {
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			var ne net.Error
			if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("read %q, %v: want the response cut short well before 10s", b, err)
			}
			if !<-hungUp {
				t.Error("the upstream connection was still open after 10s")
			}
			if body := getBody(t, base+"/"+route+"/slow"); body != "abcd" {
				t.Errorf("a slow but steady body: %q", body)
			}
		})
	}
	t.Run("upgraded connection", func(t *testing.T) {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /one/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		time.Sleep(600 * time.Millisecond) // a quiet tunnel
		io.WriteString(c, "hi\n")
		if line, err := br.ReadString('\n'); line != "echo:hi\n" {
			t.Fatalf("tunnel after a pause: %q %v", line, err)
		}
	})
}
