package lb

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A backend that answers before reading the request body and closes the
// connection at once, the body unread (its kernel then resets the
// connection, and the rest of the body fails to go), still has its answer
// reach the client: the synchronous path reads what came back before it
// counts the failed write. (http.Transport, which reads while it writes,
// loses that race about once in 25 runs of this test.)
func TestH1EarlyAnswerToUnreadBody(t *testing.T) {
	addr := serveEach(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo long")
	})
	rt := testH1(8, time.Minute, 0)
	defer rt.retire()
	for _, size := range []int{10, 8 << 10, maxInlineBody} {
		req, _ := http.NewRequest("POST", "http://"+addr+"/upload", strings.NewReader(strings.Repeat("u", size)))
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("%d-byte body: %v", size, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "too long" {
			t.Fatalf("%d-byte body: %d %q, want the backend's 413", size, resp.StatusCode, b)
		}
	}
}

// RoundTripIdle cuts a response body that stalls longer than idle, on
// both paths (the synchronous one by the connection's read deadline, the
// http.Transport one — a body too large to send inline — by IdleRoundTrip),
// and leaves a slow but steady body alone.
func TestH1RoundTripIdle(t *testing.T) {
	const idle = 150 * time.Millisecond
	addr := serveEach(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\n")
		for _, b := range []byte("abcd") {
			if req.URL.Path == "/stall" && b == 'c' {
				time.Sleep(10 * idle)
			}
			time.Sleep(idle / 3)
			c.Write([]byte{b})
		}
	})
	base := "http://" + addr
	rt := testH1(8, time.Minute, 0)
	defer rt.retire()
	for _, size := range []int{0, maxInlineBody + 1} {
		for _, path := range []string{"/steady", "/stall"} {
			var body io.Reader
			if size > 0 {
				body = strings.NewReader(strings.Repeat("x", size))
			}
			req, _ := http.NewRequest("POST", base+path, body)
			resp, err := rt.RoundTripIdle(req, idle)
			if err != nil {
				t.Fatalf("%d-byte body, %s: %v", size, path, err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if path == "/steady" && (err != nil || string(got) != "abcd") {
				t.Errorf("%d-byte body, steady: %q %v; want it whole", size, got, err)
			}
			if path == "/stall" && (err == nil || string(got) != "ab") {
				t.Errorf("%d-byte body, stalled: %q %v; want it cut after ab", size, got, err)
			}
		}
	}
}

// serveEach accepts connections on a loopback port and runs serve on each
// (then closes it); it returns the address.
func serveEach(t *testing.T, serve func(c net.Conn)) string {
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
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// Closing a response body before its end closes the connection at once,
// also for a head the plain path leaves to net/http (chunked here), whose
// body reader would read what is left — of an endless stream, forever.
func TestH1EarlyCloseDoesNotDrain(t *testing.T) {
	addr := serveEach(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		for {
			if _, err := io.WriteString(c, "5\r\nchunk\r\n"); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	rt := testH1(8, time.Minute, 0)
	defer rt.retire()
	req, _ := http.NewRequest("GET", "http://"+addr+"/stream", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	// Read past the cut, so that no deadline bounds the reads any more.
	for range 2 {
		if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * watchAfter)
	}
	closed := make(chan struct{})
	go func() {
		resp.Body.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close still reading the rest of an endless body after 10s")
	}
}

// body_timeout bounds each read that goes to the socket, also one that a
// read served partly from the buffer makes (a chunk's end split from its
// data here): a steady stream lasting many times body_timeout is not cut.
func TestH1IdleBoundsEverySocketRead(t *testing.T) {
	const idle = 150 * time.Millisecond
	addr := serveEach(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r")
		for range 8 {
			time.Sleep(idle * 2 / 5)
			io.WriteString(c, "\n5\r\nhello\r")
		}
		time.Sleep(idle * 2 / 5)
		io.WriteString(c, "\n0\r\n\r\n")
	})
	rt := testH1(8, time.Minute, 0)
	defer rt.retire()
	req, _ := http.NewRequest("GET", "http://"+addr+"/stream", nil)
	resp, err := rt.RoundTripIdle(req, idle)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(got) != strings.Repeat("hello", 9) {
		t.Fatalf("%q, %v; want the whole steady stream", got, err)
	}
}

// A request whose target the fast writer leaves to Request.Write (a
// control byte in the query here, which Request.Write refuses) still has
// its body read, closed and accounted for; and one it takes arrives whole.
func TestH1WriteRequestBodies(t *testing.T) {
	mk := func(rawQuery, body string) (*http.Request, *closeCounter) {
		cc := &closeCounter{Reader: strings.NewReader(body)}
		req, _ := http.NewRequest("POST", "http://backend:80/p", cc)
		req.URL.RawQuery = rawQuery
		req.ContentLength = int64(len(body))
		return req, cc
	}
	for _, q := range []string{"a=1", "a=\x7f"} {
		req, cc := mk(q, "the body")
		var a, b bytes.Buffer
		bw := bufio.NewWriter(&a)
		errA := writeRequest(bw, req)
		bw.Flush()
		want, _ := mk(q, "the body")
		errB := want.Write(&b)
		if (errA == nil) != (errB == nil) || a.String() != b.String() {
			t.Errorf("query %q: wrote %q (%v), Request.Write %q (%v)", q, a.String(), errA, b.String(), errB)
		}
		if cc.closed != 1 || req.Body != io.ReadCloser(cc) {
			t.Errorf("query %q: body closed %d times, request's body %T; want once, unchanged", q, cc.closed, req.Body)
		}
	}
}

type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

// rewound gives a request for another try: the same one without a body,
// a copy with a fresh body from GetBody, and else the first try's error —
// never a nil request without one (RoundTripIdle would go on with it).
func TestH1Rewound(t *testing.T) {
	failed := errors.New("first try failed")
	bodiless, _ := http.NewRequest("GET", "http://backend/", nil)
	withGet, _ := http.NewRequest("POST", "http://backend/", strings.NewReader("body"))
	noGet, _ := http.NewRequest("POST", "http://backend/", io.NopCloser(strings.NewReader("body")))
	noGet.ContentLength = 4
	if r, err := rewound(bodiless, failed); r != bodiless || err != nil {
		t.Errorf("bodiless: %v %v, want the same request", r, err)
	}
	r, err := rewound(withGet, failed)
	if err != nil || r == withGet {
		t.Fatalf("GetBody: %v %v, want a copy", r, err)
	}
	if b, _ := io.ReadAll(r.Body); string(b) != "body" {
		t.Errorf("GetBody: body %q", b)
	}
	if r, err := rewound(noGet, failed); r != nil || err != failed {
		t.Errorf("no GetBody: %v %v, want the first try's error", r, err)
	}
}

// A kept-alive connection the backend reset while it was idle fails the
// next request's write before any of it left: a request with a body goes
// again on a fresh connection only when GetBody can give the body again,
// and otherwise fails with the write's error (the idle check, which would
// have caught the reset, is off here to reach that path).
func TestH1ResetIdleConnectionWithBody(t *testing.T) {
	var conns atomic.Int32
	reset := make(chan struct{}, 4)
	addr := serveEach(t, func(c net.Conn) {
		first := conns.Add(1) == 1
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if first {
				c.(*net.TCPConn).SetLinger(0) // close with a reset
				c.Close()
				reset <- struct{}{}
				return
			}
		}
	})
	for _, replayable := range []bool{false, true} {
		conns.Store(0)
		rt := testH1(8, time.Minute, 0)
		if _, got, err := h1Do(t, rt, "GET", "http://"+addr+"/", nil); err != nil || got != "ok" {
			t.Fatalf("first request: %q %v", got, err)
		}
		<-reset
		time.Sleep(20 * time.Millisecond) // the reset reaches the idle connection
		rt.mu.Lock()
		for _, pc := range rt.idle {
			pc.spoke = nil
		}
		rt.mu.Unlock()
		var body io.Reader = strings.NewReader("the body")
		if !replayable {
			body = io.NopCloser(body) // no GetBody
		}
		req, _ := http.NewRequest("POST", "http://"+addr+"/", body)
		req.ContentLength = 8
		resp, err := rt.RoundTrip(req)
		if err == nil {
			io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if replayable && err != nil {
			t.Errorf("with GetBody: %v, want it sent again on a fresh connection", err)
		}
		if !replayable && err == nil {
			t.Errorf("without GetBody: sent again, want the write's error")
		}
		rt.retire()
	}
}
