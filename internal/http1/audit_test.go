package http1

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A body read after its handler returned — a transport still writing it
// upstream in its own goroutine does this — takes no byte of the next
// request: it gets an error, as net/http's closed body gives, or, in the
// moment between the response going out and the server taking the body
// back (net/http has the same moment), the body's own bytes.
func TestBodyReadAfterHandlerReturns(t *testing.T) {
	type result struct {
		data string
		err  error
	}
	late := make(chan result, 1)
	go1 := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/early" {
			io.WriteString(w, "path="+r.URL.Path)
			return
		}
		body := r.Body
		go func() {
			<-go1
			var p [64]byte
			n, err := body.Read(p[:])
			late <- result{string(p[:n]), err}
		}()
		io.WriteString(w, "early")
	})
	std, fast, _ := servers(t, h, nil)
	for _, addr := range []string{std, fast} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		io.WriteString(c, "POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		go1 <- struct{}{}
		// The late read either fails at once or, on a server that lets it
		// at the connection, waits for bytes: send the next request.
		time.Sleep(50 * time.Millisecond)
		io.WriteString(c, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
		select {
		case r := <-late:
			if !strings.HasPrefix("hello", r.data) || (r.err == nil && r.data == "") {
				t.Errorf("%s: a read after the handler returned got %q, err %v: not its own body", addr, r.data, r.err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%s: a read after the handler returned blocked", addr)
		}
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: next request: %v", addr, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "path=/next" {
			t.Errorf("%s: next request answered %q", addr, b)
		}
	}
}

// sameOnTheWire sends raw to net/http and to the fast path, both serving
// h, and compares what a client reads: statuses, bodies (with how they
// ended), every header field but Date, trailers, and whether the
// connection stayed open.
func sameOnTheWire(t *testing.T, h http.Handler, raw string, n int) {
	t.Helper()
	std, fast, _ := servers(t, h, nil)
	show := func(resps []*http.Response, bodies []string, closed bool) string {
		var b strings.Builder
		for i, r := range resps {
			r.Header.Del("Date")
			fmt.Fprintf(&b, "%s te=%v cl=%d body=%q\n", r.Status, r.TransferEncoding, r.ContentLength, bodies[i])
			r.Header.Write(&b)
			b.WriteString("trailer:\n")
			r.Trailer.Write(&b)
		}
		fmt.Fprintf(&b, "closed: %v\n", closed)
		return b.String()
	}
	want := show(exchange(t, std, raw, n))
	got := show(exchange(t, fast, raw, n))
	if got != want {
		t.Errorf("%q:\nnet/http:\n%s\nfast path:\n%s", raw, want, got)
	}
}

// A declared Content-Length stays what the client sees when the head
// waits for a sniffed type: a handler writing less than it declared
// leaves a response cut short (and the connection closed), not a
// complete shorter one, as net/http.
func TestDeclaredLengthKept(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/short" {
			w.Header().Set("Content-Length", "10") // no Content-Type: sniffed
			io.WriteString(w, "12345")
			return
		}
		io.WriteString(w, "next")
	})
	sameOnTheWire(t, h, "GET /short HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n", 2)
	sameOnTheWire(t, h, "HEAD /short HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n", 2)
}

// The framing fields a handler set go out as net/http sends them: none
// that announce a body on a HEAD response or a 1xx, 204 or 304 (a HEAD
// response with a chunked terminator desynchronized the connection),
// no Content-Length beside a Transfer-Encoding, and "identity" is no
// encoding.
func TestHandlerFramingFields(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		for _, k := range []string{"Transfer-Encoding", "Content-Length", "Content-Type"} {
			if v := q.Get(k); v != "" {
				w.Header().Set(k, v)
			}
		}
		if q.Get("early") != "" {
			w.WriteHeader(http.StatusEarlyHints)
		}
		if s := q.Get("status"); s != "" {
			var code int
			fmt.Sscan(s, &code)
			w.WriteHeader(code)
		}
		io.WriteString(w, q.Get("body"))
	})
	for _, target := range []string{
		"/?Transfer-Encoding=chunked&Content-Type=text/plain&body=x",
		"/?Transfer-Encoding=chunked&body=x",
		"/?Transfer-Encoding=chunked&Content-Length=1&Content-Type=text/plain&body=x",
		"/?Transfer-Encoding=gzip&Content-Length=1&Content-Type=text/plain&body=x",
		"/?Transfer-Encoding=identity&Content-Type=text/plain&body=12345",
		"/?Transfer-Encoding=identity&Content-Length=5&Content-Type=text/plain&body=12345",
		"/?Transfer-Encoding=chunked&status=204",
		"/?Transfer-Encoding=chunked&status=304",
		"/?Content-Length=5&Content-Type=text/plain&status=304",
		"/?Content-Length=5&Content-Type=text/plain&status=204",
		"/?Content-Length=5&Content-Type=text/plain&early=1&body=12345",
		"/?Transfer-Encoding=chunked&early=1&body=12345",
	} {
		n := 2
		if strings.Contains(target, "early") {
			n = 3
		}
		for _, m := range []string{"GET", "HEAD"} {
			sameOnTheWire(t, h, m+" "+target+" HTTP/1.1\r\nHost: a\r\n\r\n"+m+" /next?body=next HTTP/1.1\r\nHost: a\r\n\r\n", n)
		}
	}
}

// An encoded body is not sniffed for a Content-Type (net/http's issue
// 31753: "application/x-gzip" beside Content-Encoding: gzip makes a
// browser save the page instead of showing it).
func TestNoSniffOfEncodedBody(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Write([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"))
	})
	sameOnTheWire(t, h, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
}

// A trailer whose name is no token is dropped, as net/http drops it: its
// name would otherwise put any bytes into the trailer section.
func TestInvalidTrailerNameDropped(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-T, X-Bad: 1")
		w.WriteHeader(200)
		io.WriteString(w, "x")
		w.Header().Set("X-T", "ok")
		w.Header()["X-Bad: 1"] = []string{"2"}
		w.Header()[http.TrailerPrefix+"Bad: x\r\nEvil"] = []string{"1"}
	})
	sameOnTheWire(t, h, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
}

// A handler that panics — ReverseProxy aborting a response does — still
// has its request's context canceled, as net/http cancels it: what the
// handler started on that context ends.
func TestPanicCancelsContext(t *testing.T) {
	done := make(chan bool, 2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		go func() {
			select {
			case <-ctx.Done():
				done <- true
			case <-time.After(2 * time.Second):
				done <- false
			}
		}()
		panic(http.ErrAbortHandler)
	})
	std, fast, _ := servers(t, h, nil)
	for _, addr := range []string{std, fast} {
		exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
		if !<-done {
			t.Errorf("%s: the context of a request whose handler panicked was not canceled", addr)
		}
	}
}

// A request's "Pragma: no-cache" without Cache-Control reads as
// "Cache-Control: no-cache" too, as net/http's request parsing makes it:
// handlers and the origins they forward to see the same header.
func TestRequestPragmaNoCache(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Cache-Control", fmt.Sprint(r.Header["Cache-Control"]))
		w.Header().Set("X-Pragma", fmt.Sprint(r.Header["Pragma"]))
	})
	sameOnTheWire(t, h, "GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n", 1)
	sameOnTheWire(t, h, "GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\nCache-Control: max-age=5\r\n\r\n", 1)
	sameOnTheWire(t, h, "GET / HTTP/1.1\r\nHost: a\r\nPragma: No-Cache\r\n\r\n", 1)
}
