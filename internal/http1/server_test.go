package http1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/rawsock"
)

// testHandler answers by path, covering the ways handlers write.
func testHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Method", r.Method)
		io.WriteString(w, "<html>hello</html>") // sniffed, length computed
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		for i := 0; i < 100; i++ {
			fmt.Fprintf(w, "line %03d %s\n", i, strings.Repeat("x", 100))
		}
	})
	mux.HandleFunc("/sized", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "12345")
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "12345") // less than promised: the connection must close
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-Len", fmt.Sprint(r.ContentLength))
		w.Header().Set("X-Got-Host-Field", fmt.Sprint(r.Header["Host"] != nil))
		w.Write(b)
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		w.Write([]byte("ignored"))
	})
	mux.HandleFunc("/notmodified", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"x"`)
		w.WriteHeader(http.StatusNotModified)
	})
	mux.HandleFunc("/trailers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	})
	mux.HandleFunc("/split", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Evil", "a\r\nSet-Cookie: owned=1")
		w.Header()["Bad Name"] = []string{"x"}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/early", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "final")
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "one")
		w.(http.Flusher).Flush()
		io.WriteString(w, "two")
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	})
	return mux
}

// servers starts the same handler behind net/http alone and behind the
// fast path; handed counts connections the fast path gave to net/http.
// fastListener is what the fast server's listener is wrapped in: raw
// system calls, as the node's edge listeners are (rawsock.Listener).
var fastListener = rawsock.Listener

func servers(t *testing.T, h http.Handler, tune func(*http.Server)) (std, fast string, handed *atomic.Int32) {
	t.Helper()
	handed = new(atomic.Int32)
	mk := func(count bool) *http.Server {
		s := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
			ErrorLog: discardLog()}
		if count {
			s.ConnState = func(c net.Conn, st http.ConnState) {
				if st == http.StateNew {
					handed.Add(1)
				}
			}
		}
		if tune != nil {
			tune(s)
		}
		return s
	}
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s1 := mk(false)
	s2 := New(mk(true))
	go s1.Serve(l1)
	go s2.Serve(fastListener(l2))
	t.Cleanup(func() { s1.Close(); s2.Close() })
	return l1.Addr().String(), l2.Addr().String(), handed
}

// exchange sends raw and reads responses until the connection closes or
// n responses arrived.
func exchange(t *testing.T, addr, raw string, n int) ([]*http.Response, []string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var resps []*http.Response
	var bodies []string
	for len(resps) < n {
		req := &http.Request{Method: "GET"}
		if strings.HasPrefix(raw, "HEAD") {
			req.Method = "HEAD"
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			break
		}
		b, err := io.ReadAll(resp.Body)
		resps = append(resps, resp)
		if err != nil {
			bodies = append(bodies, string(b)+"<"+err.Error()+">")
			break
		}
		bodies = append(bodies, string(b))
	}
	// Closed afterwards? A probe request is answered on an open
	// connection, at once; a closed one reads EOF.
	io.WriteString(c, "GET /probe HTTP/1.1\r\nHost: probe\r\n\r\n")
	_, err = http.ReadResponse(br, nil)
	return resps, bodies, err != nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestSameAsNetHTTP(t *testing.T) {
	std, fast, handed := servers(t, testHandler(), nil)
	big := strings.Repeat("a", 9000)
	cases := []struct {
		name    string
		raw     string
		n       int
		handoff bool
	}{
		{"small", "GET /small HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, false},
		{"head", "HEAD /small HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, false},
		{"big chunked", "GET /big HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, false},
		{"sized", "GET /sized HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, false},
		{"short body closes", "GET /short HTTP/1.1\r\nHost: a.test\r\n\r\nGET /small HTTP/1.1\r\nHost: a.test\r\n\r\n", 2, false},
		{"echo", "POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello", 1, false},
		{"echo mixed-case names", "POST /echo HTTP/1.1\r\nhOST: a.test\r\ncontent-length: 3\r\n\r\nabc", 1, false},
		{"no content", "GET /nocontent HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, false},
		{"not modified", "GET /notmodified HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, false},
		{"trailers", "GET /trailers HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, false},
		{"response splitting", "GET /split HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, false},
		{"early hints", "GET /early HTTP/1.1\r\nHost: a.test\r\n\r\n", 2, false},
		{"stream", "GET /stream HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, false},
		{"pipelined", "GET /small HTTP/1.1\r\nHost: a.test\r\n\r\nGET /sized HTTP/1.1\r\nHost: a.test\r\n\r\nGET /small HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", 3, false},
		{"connection close", "GET /small HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", 1, false},
		{"not found", "GET /nothing HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, false},
		{"escaped path", "GET /sm%61ll?q=%2F HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, false},
		{"unread small body kept", "POST /small HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\n\r\nabcdGET /sized HTTP/1.1\r\nHost: a.test\r\n\r\n", 2, false},
		// Everything below is net/http's to decide.
		{"chunked body", "POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 1, true},
		{"CL and TE", "POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1, true},
		{"two lengths", "POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 1, true},
		{"signed length", "POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: +3\r\n\r\nabc", 1, true},
		{"expect", "POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc", 2, true},
		{"bare LF", "GET /small HTTP/1.1\nHost: a.test\n\n", 1, true},
		{"obs-fold", "GET /small HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\n  2\r\n\r\n", 1, true},
		{"space before colon", "GET /small HTTP/1.1\r\nHost: a.test\r\nX-A : 1\r\n\r\n", 1, true},
		{"no host", "GET /small HTTP/1.1\r\nX-A: 1\r\n\r\n", 1, true},
		{"two hosts", "GET /small HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 1, true},
		{"bad host", "GET /small HTTP/1.1\r\nHost: a b\r\n\r\n", 1, true},
		{"http/1.0", "GET /small HTTP/1.0\r\nHost: a.test\r\n\r\n", 1, true},
		{"absolute form", "GET http://a.test/small HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, true},
		{"control in value", "GET /small HTTP/1.1\r\nHost: a.test\r\nX-A: a\x01b\r\n\r\n", 1, true},
		{"upgrade", "GET /small HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 1, true},
		{"hop-by-hop name", "GET /small HTTP/1.1\r\nHost: a.test\r\nConnection: X-Secret\r\n\r\n", 1, true},
		{"leading blank line", "\r\nGET /small HTTP/1.1\r\nHost: a.test\r\n\r\n", 1, true},
		{"large head", "GET /small HTTP/1.1\r\nHost: a.test\r\nCookie: " + big + "\r\n\r\n", 1, true},
		{"garbage", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 1, true},
		{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1, true},
		{"fast then handoff", "GET /small HTTP/1.1\r\nHost: a.test\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 2, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := handed.Load()
			want, wantBodies, wantClosed := exchange(t, std, tc.raw, tc.n)
			got, gotBodies, gotClosed := exchange(t, fast, tc.raw, tc.n)
			if h := handed.Load() != before; h != tc.handoff {
				t.Errorf("handed to net/http: %v, want %v", h, tc.handoff)
			}
			if len(got) != len(want) {
				t.Fatalf("%d responses, net/http gave %d", len(got), len(want))
			}
			if gotClosed != wantClosed {
				t.Errorf("connection closed after: %v, net/http: %v", gotClosed, wantClosed)
			}
			for i := range want {
				g, w := got[i], want[i]
				if g.StatusCode != w.StatusCode || gotBodies[i] != wantBodies[i] {
					t.Errorf("response %d: %d %q, net/http: %d %q", i, g.StatusCode, gotBodies[i], w.StatusCode, wantBodies[i])
				}
				for _, k := range []string{"Content-Type", "X-Method", "X-Host", "X-Len", "X-Got-Host-Field", "Etag", "X-Evil", "Link"} {
					if g.Header.Get(k) != w.Header.Get(k) {
						t.Errorf("response %d: %s %q, net/http: %q", i, k, g.Header.Get(k), w.Header.Get(k))
					}
				}
				if g.Close != w.Close {
					t.Errorf("response %d: Connection: close %v, net/http: %v", i, g.Close, w.Close)
				}
				if g.Header.Get("Date") == "" && !tc.handoff && g.StatusCode >= 200 {
					t.Errorf("response %d: no Date", i)
				}
				if len(g.Header["Bad Name"]) > 0 || g.Header.Get("Set-Cookie") != "" {
					t.Errorf("response %d: unsafe fields went out: %v", i, g.Header)
				}
				for _, k := range []string{"X-Sum", "X-Late"} {
					if g.Trailer.Get(k) != w.Trailer.Get(k) {
						t.Errorf("response %d: trailer %s %q, net/http: %q", i, k, g.Trailer.Get(k), w.Trailer.Get(k))
					}
				}
			}
		})
	}
}

// A short complete body gets a Content-Length, a long one is chunked, as
// net/http frames them; a HEAD carries no body.
func TestFraming(t *testing.T) {
	_, fast, _ := servers(t, testHandler(), nil)
	for _, tc := range []struct {
		raw     string
		cl      int64
		chunked bool
	}{
		{"GET /small HTTP/1.1\r\nHost: a\r\n\r\n", 18, false},
		{"GET /big HTTP/1.1\r\nHost: a\r\n\r\n", -1, true},
		{"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n", -1, true},
		{"GET /sized HTTP/1.1\r\nHost: a\r\n\r\n", 5, false},
		{"HEAD /sized HTTP/1.1\r\nHost: a\r\n\r\n", 5, false},
	} {
		resps, _, _ := exchange(t, fast, tc.raw, 1)
		if len(resps) != 1 {
			t.Fatalf("%q: no response", tc.raw)
		}
		r := resps[0]
		chunked := len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked"
		if r.ContentLength != tc.cl || chunked != tc.chunked {
			t.Errorf("%q: length %d chunked %v, want %d %v", tc.raw, r.ContentLength, chunked, tc.cl, tc.chunked)
		}
	}
}

// A client that hangs up cancels its request's context, as net/http's
// background read does: during a bodiless request, and after a request's
// whole body was read.
func TestClientGoneCancels(t *testing.T) {
	for _, tc := range []struct{ name, raw string }{
		{"bodiless", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"after the body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan error, 1)
			read := make(chan struct{})
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.ReadAll(r.Body)
				close(read)
				select {
				case <-r.Context().Done():
					got <- context.Cause(r.Context())
				case <-time.After(20 * time.Second):
					got <- errors.New("not canceled")
				}
			})
			_, fast, _ := servers(t, h, nil)
			c, err := net.Dial("tcp", fast)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, tc.raw)
			<-read
			c.Close()
			if err := <-got; !errors.Is(err, errClientGone) {
				t.Fatalf("cause %v, want client gone", err)
			}
		})
	}
}

// A pipelined request that arrives while a long one runs is not taken for
// a hang-up, and is answered after it.
func TestWatchKeepsPipelinedByte(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
				http.Error(w, "canceled", 500)
				return
			}
		}
		io.WriteString(w, r.URL.Path)
	})
	_, fast, _ := servers(t, h, nil)
	c := dialServer(t, fast)
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(2 * watchDelay) // let the watch start reading
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(watchDelay)
	close(release)
	expectBodies(t, c, "/slow", "/next")
}

// expectBodies reads responses from c, one per body in want, in order.
func expectBodies(t *testing.T, c net.Conn, want ...string) {
	t.Helper()
	br := bufio.NewReader(c)
	for _, w := range want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != w {
			t.Fatalf("body %q, want %q", b, w)
		}
	}
}

// A large body copied from a regular file ends the watch — the copy's
// writes notice a client that leaves — and the connection serves its next
// request as usual. A client that leaves mid-copy fails the copy.
func TestFileBodyNotWatched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	payload := strings.Repeat("0123456789abcdef", 16<<20/16) // more than the socket buffers hold
	if err := os.WriteFile(path, []byte(payload), 0o600); err != nil {
		t.Fatal(err)
	}
	copied := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/file" {
			io.WriteString(w, r.URL.Path)
			return
		}
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
		_, err = io.Copy(w, f)
		if w.(*response).c.watching() {
			t.Error("still watched after a large file body")
		}
		copied <- err
	})
	_, fast, _ := servers(t, h, nil)
	c := dialServer(t, fast)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /file HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(3 * watchDelay) // the copy waits for us past watchDelay
	for _, p := range []struct{ path, want string }{{"/file", payload}, {"/next", "/next"}} {
		if p.path != "/file" {
			io.WriteString(c, "GET "+p.path+" HTTP/1.1\r\nHost: a\r\n\r\n")
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != p.want {
			t.Fatalf("%s: body of %d bytes, want %d", p.path, len(b), len(p.want))
		}
	}
	if err := <-copied; err != nil {
		t.Fatalf("copy: %v", err)
	}

	// A client that hangs up mid-copy: the copy fails.
	c2, err := net.Dial("tcp", fast)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c2, "GET /file HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(2 * watchDelay)
	c2.Close()
	select {
	case err := <-copied:
		if err == nil {
			t.Fatal("the copy to a client that left succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the copy to a client that left did not end")
	}
}

// Only a regular file, bare or limited, counts as one: a pipe's reads
// wait on whatever writes it.
func TestRegularFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	for _, tc := range []struct {
		name string
		src  io.Reader
		want bool
	}{
		{"file", f, true},
		{"limited file", io.LimitReader(f, 10), true},
		{"pipe", pr, false},
		{"limited pipe", io.LimitReader(pr, 10), false},
		{"buffer", strings.NewReader("x"), false},
	} {
		got := false
		if st := fileOf(tc.src); st != nil {
			got = regularFile(st)
		}
		if got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// An unread request body over 256KiB closes the connection instead of
// being read through.
func TestLargeUnreadBodyCloses(t *testing.T) {
	_, fast, _ := servers(t, testHandler(), nil)
	body := strings.Repeat("b", 300<<10)
	raw := fmt.Sprintf("POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	resps, _, closed := exchange(t, fast, raw, 1)
	if len(resps) != 1 || resps[0].StatusCode != 200 {
		t.Fatalf("responses %v", resps)
	}
	if !closed || !resps[0].Close {
		t.Fatalf("closed %v, Connection: close %v", closed, resps[0].Close)
	}
}

// A panicking handler costs its connection, not the server.
func TestPanicClosesConnection(t *testing.T) {
	_, fast, _ := servers(t, testHandler(), nil)
	resps, _, closed := exchange(t, fast, "GET /panic HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	if len(resps) != 0 || !closed {
		t.Fatalf("responses %d, closed %v", len(resps), closed)
	}
	if resps, _, _ := exchange(t, fast, "GET /small HTTP/1.1\r\nHost: a\r\n\r\n", 1); len(resps) != 1 {
		t.Fatal("server did not survive the panic")
	}
}

// A head that trickles in past the header timeout loses the connection.
func TestSlowHeadTimesOut(t *testing.T) {
	_, fast, _ := servers(t, testHandler(), func(s *http.Server) { s.ReadHeaderTimeout = 200 * time.Millisecond })
	c, err := net.Dial("tcp", fast)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /small HTTP/1.1\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 1)
	for i := 0; i < 50; i++ {
		if _, err := io.WriteString(c, "X-A: 1\r\n"); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.Read(b); err == nil || isTimeout(err) {
		t.Fatalf("connection still open (read: %v)", err)
	}
}

// Shutdown lets a request in flight finish and closes idle connections.
func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "done")
	})
	std := &http.Server{Handler: h, ErrorLog: discardLog()}
	s := New(std)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	addr := ln.Addr().String()

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
	ibr := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(ibr, nil); err != nil {
		t.Fatal(err)
	} else {
		io.ReadAll(resp.Body)
	}

	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	down := make(chan error, 1)
	go func() { down <- s.Shutdown(context.Background()) }()

	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := ibr.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("idle connection not closed: %v", err)
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "done" || !resp.Close {
		t.Fatalf("in-flight response %q, Connection: close %v", b, resp.Close)
	}
	if err := <-down; err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
}

// ReadFrom with a declared length sends the file (or any reader) as is.
func TestReadFromSized(t *testing.T) {
	payload := strings.Repeat("z", 200<<10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
		w.WriteHeader(200)
		io.Copy(w, strings.NewReader(payload))
	})
	_, fast, _ := servers(t, h, nil)
	resps, bodies, _ := exchange(t, fast, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 2)
	if len(resps) != 2 || bodies[0] != payload || bodies[1] != payload {
		t.Fatalf("%d responses", len(resps))
	}
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

// recordingConn notes what reaches the connection's ReadFrom, where net's
// sendfile decides whether it can send a file.
type recordingConn struct {
	*net.TCPConn
	mu   sync.Mutex
	srcs []io.Reader
}

func (c *recordingConn) ReadFrom(r io.Reader) (int64, error) {
	c.mu.Lock()
	c.srcs = append(c.srcs, r)
	c.mu.Unlock()
	return c.TCPConn.ReadFrom(r)
}

type recordingListener struct {
	net.Listener
	conns chan *recordingConn
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recordingConn{TCPConn: c.(*net.TCPConn)}
	l.conns <- rc
	return rc, nil
}

// A file body reaches the connection as one io.LimitedReader straight
// around the file — what sendfile takes — also when the handler's chunk
// (the edge's send_timeout chunks) runs past the declared length.
func TestReadFromKeepsSendfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	payload := strings.Repeat("0123456789abcdef", 300<<10/16)
	if err := os.WriteFile(path, []byte(payload), 0o600); err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
		w.WriteHeader(200)
		rf := w.(io.ReaderFrom)
		for {
			lr := &io.LimitedReader{R: f, N: 256 << 10}
			if _, err := rf.ReadFrom(lr); err != nil || lr.N > 0 {
				return
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := recordingListener{Listener: ln, conns: make(chan *recordingConn, 1)}
	s := New(&http.Server{Handler: h, ErrorLog: discardLog()})
	go s.Serve(rl)
	defer s.Close()
	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != payload {
		t.Fatalf("body of %d bytes, want %d", len(b), len(payload))
	}
	rc := <-rl.conns
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.srcs) < 2 {
		t.Fatalf("%d ReadFrom calls, want 2", len(rc.srcs))
	}
	for i, src := range rc.srcs {
		lr, ok := src.(*io.LimitedReader)
		if !ok {
			t.Fatalf("call %d: %T", i, src)
		}
		if _, ok := lr.R.(syscall.Conn); !ok {
			t.Errorf("call %d: %T inside the limit: sendfile lost", i, lr.R)
		}
	}
}

// A head over max_header_bytes is net/http's to judge (it allows 4 KiB of
// slack), so both answer alike.
func TestMaxHeaderBytesLeftToNetHTTP(t *testing.T) {
	std, fast, handed := servers(t, testHandler(), func(s *http.Server) { s.MaxHeaderBytes = 1024 })
	for _, size := range []int{512, 3 << 10, 6 << 10} {
		raw := "GET /small HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("c", size) + "\r\n\r\n"
		before := handed.Load()
		want, _, _ := exchange(t, std, raw, 1)
		got, _, _ := exchange(t, fast, raw, 1)
		if len(want) != 1 || len(got) != 1 || got[0].StatusCode != want[0].StatusCode {
			t.Fatalf("%d-byte cookie: %v, net/http %v", size, got, want)
		}
		if h := handed.Load() != before; h != (size > 1024) {
			t.Errorf("%d-byte cookie (limit 1024): handed %v", size, h)
		}
	}
}

// dialServer connects to addr, with 10s to live, closed when the test
// ends.
func dialServer(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}
