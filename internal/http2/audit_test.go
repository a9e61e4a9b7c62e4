package http2

// audit_test.go: regression tests for bugs found auditing the server
// (each failed before its fix), and a few checks of the flush batching
// and counters on every exit path.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"golang.org/x/net/http2/hpack"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	xhttp2 "golang.org/x/net/http2"
)

// frameLog reads the frames of stream id until END_STREAM, RST_STREAM or
// the end of the connection, and returns a line per frame of that stream
// (HEADERS with their :status, DATA with their length). PINGs are acked
// and DATA is given its window back.
func (c *h2conn) frameLog(id uint32) (out []string, ended bool) {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return append(out, "conn end: "+err.Error()), false
		}
		switch f := f.(type) {
		case *xhttp2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
			}
		case *xhttp2.GoAwayFrame:
			out = append(out, "GOAWAY "+f.ErrCode.String())
			if f.ErrCode != xhttp2.ErrCodeNo {
				return out, false
			}
		case *xhttp2.MetaHeadersFrame:
			if f.StreamID != id {
				continue
			}
			s := "HEADERS " + f.PseudoValue("status")
			if f.StreamEnded() {
				s += " END_STREAM"
			}
			out = append(out, s)
			if f.StreamEnded() {
				return out, true
			}
		case *xhttp2.DataFrame:
			if n := f.Length; n > 0 {
				c.fr.WriteWindowUpdate(0, n)
				if !f.StreamEnded() && f.StreamID == id {
					c.fr.WriteWindowUpdate(f.StreamID, n)
				}
			}
			if f.StreamID != id {
				continue
			}
			if f.StreamEnded() {
				return append(out, "DATA END_STREAM"), true
			}
			if len(out) == 0 || out[len(out)-1] != "DATA" {
				out = append(out, "DATA")
			}
		case *xhttp2.RSTStreamFrame:
			if f.StreamID == id {
				return append(out, "RST_STREAM "+f.ErrCode.String()), true
			}
		}
	}
}

// TestAuditHeadLargeWrites: a HEAD handler writing more than the
// response buffer in several writes must send one HEADERS frame, not one
// per write (a second HEADERS without END_STREAM is a malformed
// response: the client fails the request).
func TestAuditHeadLargeWrites(t *testing.T) {
	targets(t, func(t *testing.T, start func(h http.Handler, mutate func(*http.Server)) target) {
		chunk := bytes.Repeat([]byte("x"), 20<<10)
		tg := start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for range 3 {
				w.Write(chunk)
			}
			w.(http.Flusher).Flush()
			w.Write(chunk)
		}), nil)
		c := rawConn(t, tg.addr, clientConf())
		c.handshake()
		c.writeHeaders(1, true, reqHeaders("HEAD", "/")...)
		log, ended := c.frameLog(1)
		if !ended {
			t.Fatalf("stream did not end: %q", log)
		}
		if len(log) == 0 || log[0] != "HEADERS 200" && log[0] != "HEADERS 200 END_STREAM" {
			t.Fatalf("frames %q, want HEADERS 200 first", log)
		}
		for _, l := range log[1:] {
			if strings.HasPrefix(l, "HEADERS") || strings.HasPrefix(l, "RST") {
				t.Fatalf("frames %q: one HEADERS and the end of the stream wanted", log)
			}
		}
	})
}

// TestAuditHeadContentType: a HEAD response has the Content-Type a GET
// would have, sniffed from the start of what the handler wrote, whether
// that fits the response buffer or not.
func TestAuditHeadContentType(t *testing.T) {
	targets(t, func(t *testing.T, start func(h http.Handler, mutate func(*http.Server)) target) {
		tg := start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<html><body>hi</body></html>")
			if r.URL.Path == "/big" {
				w.Write(bytes.Repeat([]byte("x"), 20<<10))
			}
		}), nil)
		for _, p := range []string{"/", "/big"} {
			req, _ := http.NewRequest("HEAD", "https://"+tg.addr+p, nil)
			res, err := h2Client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("HEAD %s: Content-Type %q, want text/html; charset=utf-8", p, ct)
			}
		}
	})
}

// TestAuditContinueAfterResponse: a handler that answers before reading
// a body sent with "Expect: 100-continue" must not send 100 Continue
// after its final response's HEADERS (a 1xx after the final response is
// malformed, RFC 9113 8.1).
func TestAuditContinueAfterResponse(t *testing.T) {
	targets(t, func(t *testing.T, start func(h http.Handler, mutate func(*http.Server)) target) {
		got := make(chan string, 1)
		tg := start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			b, err := io.ReadAll(r.Body)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(b)
		}), nil)
		c := rawConn(t, tg.addr, clientConf())
		c.handshake()
		c.writeHeaders(1, false, reqHeaders("POST", "/", "expect", "100-continue", "content-length", "4")...)
		// The final response first.
		f := c.readUntil("the response HEADERS", func(f xhttp2.Frame) bool {
			_, ok := f.(*xhttp2.MetaHeadersFrame)
			return ok
		})
		if s := f.(*xhttp2.MetaHeadersFrame).PseudoValue("status"); s != "200" {
			t.Fatalf("first HEADERS :status %s, want 200", s)
		}
		if err := c.fr.WriteData(1, true, []byte("body")); err != nil {
			t.Fatal(err)
		}
		if b := recv(t, got, "the handler's body"); b != "body" {
			t.Errorf("handler read %q", b)
		}
		log, _ := c.frameLog(1)
		for _, l := range log {
			if strings.HasPrefix(l, "HEADERS 1") {
				t.Fatalf("after the final response: %q", log)
			}
		}
	})
}

// TestAuditGoexitHandler: a handler that ends with runtime.Goexit (as
// t.FailNow would) must end its stream like a panic, and leave the
// connection able to serve the next request, even with one stream at a
// time.
func TestAuditGoexitHandler(t *testing.T) {
	targets(t, func(t *testing.T, start func(h http.Handler, mutate func(*http.Server)) target) {
		tg := start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/exit" {
				io.WriteString(w, "partial")
				runtime.Goexit()
			}
			io.WriteString(w, "ok")
		}), func(s *http.Server) {
			s.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1}
		})
		c := rawConn(t, tg.addr, clientConf())
		c.handshake()
		c.writeHeaders(1, true, reqHeaders("GET", "/exit")...)
		if e := c.waitStream(1); !e.reset || e.rst != xhttp2.ErrCodeInternal {
			t.Fatalf("stream ended by Goexit: %+v, want RST_STREAM INTERNAL_ERROR", e)
		}
		c.writeHeaders(3, true, reqHeaders("GET", "/ok")...)
		if e := c.waitStream(3); e.status != "200" || string(e.body) != "ok" {
			t.Errorf("next stream: %+v", e)
		}
	})
}

// TestAuditGoexitQueued: a stream queued behind a handler that ends with
// runtime.Goexit still runs.
func TestAuditGoexitQueued(t *testing.T) {
	release := make(chan struct{})
	canceled := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/exit" {
			<-r.Context().Done()
			close(canceled)
			<-release
			runtime.Goexit()
		}
		io.WriteString(w, "ok")
	})
	addr, _, conf, _ := startServerWith(t, h, func(s *Server) { s.MaxConcurrentStreams = 1 })
	c := rawConn(t, addr, conf)
	c.handshake()
	c.writeHeaders(1, true, reqHeaders("GET", "/exit")...)
	c.fr.WriteRSTStream(1, xhttp2.ErrCodeCancel)
	recv(t, canceled, "the handler to see the reset")
	// Stream 1 is closed, its handler still runs: stream 3 waits in line.
	c.writeHeaders(3, true, reqHeaders("GET", "/ok")...)
	close(release)
	if e := c.waitStream(3); e.status != "200" || string(e.body) != "ok" {
		t.Errorf("queued stream: %+v", e)
	}
}

// TestAuditMultipartFormRemoved: temporary files of a multipart form the
// handler parsed are removed once it returns, as net/http does.
func TestAuditMultipartFormRemoved(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	targets(t, func(t *testing.T, start func(h http.Handler, mutate func(*http.Server)) target) {
		files := make(chan string, 1)
		tg := start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := r.ParseMultipartForm(1024); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			f, err := r.MultipartForm.File["f"][0].Open()
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			defer f.Close()
			osf, ok := f.(*os.File)
			if !ok {
				http.Error(w, "in memory", 500)
				return
			}
			files <- osf.Name()
		}), nil)
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		fw, _ := mw.CreateFormFile("f", "big.bin")
		fw.Write(bytes.Repeat([]byte("y"), 64<<10))
		mw.Close()
		req, _ := http.NewRequest("POST", "https://"+tg.addr+"/", &body)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		res, err := h2Client(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		name := recv(t, files, "the temporary file's name")
		if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temporary file %s still there after the response (%v)", name, err)
		}
	})
}

// TestAuditBodyBufferBounded: a handler that reads its request body a
// little slower than it arrives, never draining the buffer, must not make
// the buffer grow with the whole body: what is unread is bounded by the
// flow-control window, and so must be the memory.
func TestAuditBodyBufferBounded(t *testing.T) {
	const frame = 16 << 10
	const frames = 320 // 5 MiB
	var maxCap atomic.Int64
	step := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := r.Body.(*reqBody)
		p := make([]byte, frame-1) // one byte short of a frame each time
		for {
			// Read only with a frame's worth unread, so the read never
			// empties the buffer: DATA always arrives with some left.
			b.mu.Lock()
			for len(b.buf)-b.off < frame && !b.done && b.err == nil {
				b.cond.Wait()
			}
			b.mu.Unlock()
			if _, err := io.ReadFull(r.Body, p); err != nil {
				return
			}
			b.mu.Lock()
			maxCap.Store(max(maxCap.Load(), int64(cap(b.buf))))
			b.mu.Unlock()
			select {
			case step <- struct{}{}:
			case <-r.Context().Done():
				return
			}
		}
	})
	addr, _, conf, _ := startServer(t, h, nil)
	c := rawConn(t, addr, conf)
	c.handshake()
	// Frames the server sends (WINDOW_UPDATE) are read and dropped, so
	// its writes never block.
	go io.Copy(io.Discard, c.conn)
	c.writeHeaders(1, false, reqHeaders("POST", "/")...)
	chunk := bytes.Repeat([]byte("z"), frame)
	// Two frames ahead of the handler, which reads a frame less a byte
	// per step: at most a few frames unread, well within the windows.
	for i := range frames {
		if i >= 2 {
			recv(t, step, "the handler's read")
		}
		if err := c.fr.WriteData(1, false, chunk); err != nil {
			t.Fatal(err)
		}
	}
	c.fr.WriteData(1, true, nil)
	if n := maxCap.Load(); n > 2*initialRecvWindow {
		t.Errorf("request body buffer grew to %d KiB for a %d KiB body read as it came", n>>10, frames*frame>>10)
	}
}

// TestAuditLateDataAfterManyResets: the server resets (NO_ERROR) the
// streams whose response is done while the client still sends a body;
// DATA the client had in flight on one of them must not end the whole
// connection, however many streams were reset since.
func TestAuditLateDataAfterManyResets(t *testing.T) {
	targets(t, func(t *testing.T, start func(h http.Handler, mutate func(*http.Server)) target) {
		tg := start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
		}), nil)
		c := rawConn(t, tg.addr, clientConf())
		c.handshake()
		const n = 40
		for i := range n {
			id := uint32(2*i + 1)
			c.writeHeaders(id, false, reqHeaders("POST", "/")...)
			if err := c.fr.WriteData(id, false, []byte("start")); err != nil {
				t.Fatal(err)
			}
			if e := c.waitStream(id); e.status != "401" {
				t.Fatalf("stream %d: %+v", id, e)
			}
		}
		// The client's next DATA on the first stream was in flight.
		if err := c.fr.WriteData(1, true, []byte("rest")); err != nil {
			t.Fatal(err)
		}
		c.writeHeaders(2*n+1, true, reqHeaders("GET", "/")...)
		if e := c.waitStream(2*n + 1); e.status != "401" {
			t.Fatalf("request after late DATA: %+v", e)
		}
	})
}

// onlyConn returns the server's one connection.
func onlyConn(t *testing.T, srv *Server) *conn {
	t.Helper()
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.conns) != 1 {
		t.Fatalf("%d connections, want 1", len(srv.conns))
	}
	for c := range srv.conns {
		return c
	}
	return nil
}

// waitSettled waits until c has no stream, handler or writer left;
// false after testTimeout.
func waitSettled(c *conn) (ok bool, state string) {
	deadline := time.Now().Add(testTimeout)
	for {
		c.mu.Lock()
		state = fmt.Sprintf("open %d, handlers %d, streams %d, queue %d, busy %d", c.open, c.handlers, len(c.streams), len(c.queue), c.busy.Load())
		settled := c.open == 0 && c.handlers == 0 && len(c.streams) == 0 && c.busy.Load() == 0
		c.mu.Unlock()
		if settled {
			return true, state
		}
		if time.Now().After(deadline) {
			return false, state
		}
		time.Sleep(time.Millisecond) // polling a condition no channel reports
	}
}

// TestAuditCountersOnEveryExit: the stream counters (open, handlers,
// busy) return to zero whatever way a stream ends.
func TestAuditCountersOnEveryExit(t *testing.T) {
	big := bytes.Repeat([]byte("b"), 64<<10)
	inWrite := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			io.WriteString(w, "x")
			panic("boom")
		case "/abort":
			w.Write(big)
			panic(http.ErrAbortHandler)
		case "/goexit":
			runtime.Goexit()
		case "/big": // the client resets the stream mid-write
			w.(http.Flusher).Flush()
			inWrite <- struct{}{}
			for {
				if _, err := w.Write(big); err != nil {
					return
				}
			}
		case "/deadline": // no window: the write deadline ends it
			http.NewResponseController(w).SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			for {
				if _, err := w.Write(big); err != nil {
					return
				}
			}
		case "/noread": // a body it never reads
			io.WriteString(w, "done")
		case "/halfread":
			r.Body.Read(make([]byte, 3))
			io.WriteString(w, "done")
		}
	})
	addr, _, conf, srv := startServer(t, h, nil)
	c := rawConn(t, addr, conf)
	c.handshake()
	sc := onlyConn(t, srv)
	id := uint32(1)
	next := func() uint32 { id += 2; return id - 2 }

	for _, p := range []string{"/panic", "/abort", "/goexit"} {
		s := next()
		c.writeHeaders(s, true, reqHeaders("GET", p)...)
		if e := c.waitStream(s); !e.reset {
			t.Errorf("%s: %+v, want a reset", p, e)
		}
	}
	s := next()
	c.writeHeaders(s, true, reqHeaders("GET", "/big")...)
	recv(t, inWrite, "the handler writing")
	c.fr.WriteRSTStream(s, xhttp2.ErrCodeCancel)

	s = next()
	c.fr.WriteSettings(xhttp2.Setting{ID: xhttp2.SettingInitialWindowSize, Val: 0})
	c.writeHeaders(s, true, reqHeaders("GET", "/deadline")...)
	if e := c.waitStream(s); !e.reset {
		t.Errorf("/deadline: %+v, want a reset", e)
	}
	c.fr.WriteSettings(xhttp2.Setting{ID: xhttp2.SettingInitialWindowSize, Val: 65535})

	for _, p := range []string{"/noread", "/halfread"} {
		s := next()
		c.writeHeaders(s, false, reqHeaders("POST", p)...)
		c.fr.WriteData(s, false, []byte("some body"))
		if e := c.waitStream(s); e.status != "200" {
			t.Errorf("%s: %+v", p, e)
		}
	}
	if ok, state := waitSettled(sc); !ok {
		t.Errorf("connection not settled: %s", state)
	}
	// And it still serves.
	s = next()
	c.writeHeaders(s, true, reqHeaders("GET", "/noread")...)
	if e := c.waitStream(s); e.status != "200" {
		t.Errorf("after all that: %+v", e)
	}
}

// TestAuditFlushBackstop: a handler that writes more than its buffer and
// then blocks without flushing: the client gets the data while the
// handler is still blocked (the backstop flush), not when it returns.
func TestAuditFlushBackstop(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("a"), bufferSize+100))
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	addr, _, conf, _ := startServer(t, h, nil)
	defer close(release)
	c := rawConn(t, addr, conf)
	c.handshake()
	c.writeHeaders(1, true, reqHeaders("GET", "/")...)
	got := 0
	for got < bufferSize+100 {
		f := c.readUntil("DATA", func(f xhttp2.Frame) bool {
			_, ok := f.(*xhttp2.DataFrame)
			return ok
		})
		got += len(f.(*xhttp2.DataFrame).Data())
	}
}

// TestAuditWriteByteTimeout: a client that grants window but never reads
// the socket blocks the connection's writes (under wmu, the read loop's
// PING acks too); HTTP2.WriteByteTimeout must end the connection on its
// own: the handler's write fails and ServeConn returns.
func TestAuditWriteByteTimeout(t *testing.T) {
	results := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 32<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				results <- err
				return
			}
		}
	})
	addr, _, conf, srv := startServer(t, h, func(s *http.Server) {
		s.HTTP2 = &http.HTTP2Config{WriteByteTimeout: 200 * time.Millisecond}
	})
	c := rawConn(t, addr, conf)
	c.handshake()
	c.conn.NetConn().(*net.TCPConn).SetReadBuffer(64 << 10)
	c.fr.WriteSettings(xhttp2.Setting{ID: xhttp2.SettingInitialWindowSize, Val: 1<<31 - 1})
	c.fr.WriteWindowUpdate(0, 1<<31-1-65535)
	c.writeHeaders(1, true, reqHeaders("GET", "/")...)
	// PINGs keep the read loop writing too.
	for range 100 {
		c.fr.WritePing(false, [8]byte{1})
	}
	if err := recv(t, results, "the handler's write to fail"); err == nil {
		t.Fatal("no error")
	}
	deadline := time.Now().Add(testTimeout)
	for {
		srv.mu.Lock()
		n := len(srv.conns)
		srv.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ServeConn did not return")
		}
		time.Sleep(time.Millisecond) // polling a condition no channel reports
	}
}

// TestAuditLateTrailersAfterManyResets: as TestAuditLateDataAfterManyResets,
// for the request trailers the client had in flight. (net/http ends the
// connection here.)
func TestAuditLateTrailersAfterManyResets(t *testing.T) {
	addr, _, conf, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}), nil)
	c := rawConn(t, addr, conf)
	c.handshake()
	const n = 40
	for i := range n {
		id := uint32(2*i + 1)
		c.writeHeaders(id, false, reqHeaders("POST", "/", "trailer", "x-sum")...)
		if e := c.waitStream(id); e.status != "401" {
			t.Fatalf("stream %d: %+v", id, e)
		}
	}
	c.writeHeaders(1, true, "x-sum", "1")
	c.writeHeaders(2*n+1, true, reqHeaders("GET", "/")...)
	if e := c.waitStream(2*n + 1); e.status != "401" {
		t.Fatalf("request after late trailers: %+v", e)
	}
}

// TestAuditResetBodyGivesWindowBack: request body bytes buffered for a
// stream the client resets hold the connection's receive window; they
// must be given back at the reset, whether the stream's handler never
// runs (queued behind others) or runs on without reading. Otherwise the
// window leaks and every upload on the connection stalls for good. (A
// client here sends what the server's own accounting allows: more is a
// FLOW_CONTROL_ERROR.)
func TestAuditResetBodyGivesWindowBack(t *testing.T) {
	for _, queued := range []bool{true, false} {
		name := "running handler"
		if queued {
			name = "queued stream"
		}
		t.Run(name, func(t *testing.T) {
			release := make(chan struct{})
			blocked := make(chan struct{}, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/block" { // ignores its reset, reads nothing
					blocked <- struct{}{}
					<-release
					return
				}
				// Read only once the whole body is in: no window comes
				// back while the client sends it.
				b := r.Body.(*reqBody)
				b.mu.Lock()
				for !b.done && b.err == nil {
					b.cond.Wait()
				}
				b.mu.Unlock()
				io.Copy(io.Discard, r.Body)
			})
			addr, _, conf, _ := startServerWith(t, h, func(s *Server) {
				if queued {
					s.MaxConcurrentStreams = 1
				}
			})
			defer func() {
				select {
				case <-release:
				default:
					close(release)
				}
			}()
			c := rawConn(t, addr, conf)
			c.handshake()
			chunk := make([]byte, 16<<10)
			upload := func(id uint32, n int, end bool) {
				for i := range n {
					if err := c.fr.WriteData(id, end && i == n-1, chunk); err != nil {
						t.Fatal(err)
					}
				}
			}
			var bodyID uint32 = 1
			if queued {
				c.writeHeaders(1, true, reqHeaders("GET", "/block")...)
				recv(t, blocked, "the handler")
				c.fr.WriteRSTStream(1, xhttp2.ErrCodeCancel)
				bodyID = 3 // waits in line behind stream 1's handler
				c.writeHeaders(bodyID, false, reqHeaders("POST", "/upload")...)
			} else {
				c.writeHeaders(bodyID, false, reqHeaders("POST", "/block")...)
				recv(t, blocked, "the handler")
			}
			upload(bodyID, 40, false) // 640 KiB of the 1 MiB window
			c.fr.WriteRSTStream(bodyID, xhttp2.ErrCodeCancel)
			// A PING's ack: the server has processed the reset.
			c.fr.WritePing(false, [8]byte{7})
			c.readUntil("the PING ack", func(f xhttp2.Frame) bool {
				p, ok := f.(*xhttp2.PingFrame)
				return ok && p.IsAck()
			})
			if queued {
				close(release) // stream 1's handler ends, the queue moves
			}
			c.writeHeaders(7, false, reqHeaders("POST", "/upload")...)
			upload(7, 40, true)
			if e := c.waitStream(7); e.status != "200" {
				t.Fatalf("upload after the reset: %+v", e)
			}
		})
	}
}

// failConn fails every write once fail is set, as a socket whose peer is
// gone or whose write deadline passed.
type failConn struct {
	net.Conn
	fail atomic.Bool
}

var errInjected = errors.New("injected write error")

func (c *failConn) Write(p []byte) (int, error) {
	if c.fail.Load() {
		return 0, errInjected
	}
	return c.Conn.Write(p)
}

// TestAuditWriteErrorReported: a socket write that fails inside a
// handler's write (bufio writing through a full buffer, the flush being
// left to others) must fail that write; the error was kept by bufio and
// the write reported success, and the next ones too, frames dropped.
func TestAuditWriteErrorReported(t *testing.T) {
	var fc *failConn
	results := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "x")
		w.(http.Flusher).Flush() // the connection's buffer is empty
		fc.fail.Store(true)
		// Two full DATA frames: the second does not fit the 32 KiB
		// buffer with the first, so bufio writes to the socket, which
		// fails. The flush is left to the flusher: the handler runs.
		_, err := w.Write(make([]byte, 2*defaultFrameSize))
		results <- err
	})
	srv := New(&http.Server{Handler: h, ErrorLog: discardLog()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fc = &failConn{Conn: c}
		srv.ServeConn(fc)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(nc, xhttp2.ClientPreface)
	c := &h2conn{t: t, settings: map[xhttp2.SettingID]uint32{}}
	c.fr = xhttp2.NewFramer(nc, nc)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.fr.WriteSettings()
	c.writeHeaders(1, true, reqHeaders("GET", "/")...)
	go io.Copy(io.Discard, nc)
	if err := recv(t, results, "the handler's write"); err == nil {
		t.Error("the write whose socket write failed reported success")
	}
	nc.Close()
	recv(t, served, "ServeConn")
}

// TestAuditTimersStopped: timers do not outlive what they time, holding
// the connection (buffers, HPACK tables) for as long as they are set:
// the write deadline's once its stream ends, the idle timer once the
// connection is closed.
func TestAuditTimersStopped(t *testing.T) {
	t.Run("write deadline", func(t *testing.T) {
		streams := make(chan *stream, 1)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			streams <- w.(*responseWriter).st
			http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Hour))
			w.Write(make([]byte, bufferSize+1)) // waits for window
		})
		addr, _, conf, srv := startServer(t, h, nil)
		c := rawConn(t, addr, conf)
		c.handshake()
		c.fr.WriteSettings(xhttp2.Setting{ID: xhttp2.SettingInitialWindowSize, Val: 0})
		c.writeHeaders(1, true, reqHeaders("GET", "/")...)
		st := recv(t, streams, "the handler")
		sc := onlyConn(t, srv)
		// Once the handler waits for window, grant it.
		c.readUntil("the response HEADERS", func(f xhttp2.Frame) bool {
			_, ok := f.(*xhttp2.MetaHeadersFrame)
			return ok
		})
		for {
			sc.mu.Lock()
			waiting := st.wtimer != nil
			sc.mu.Unlock()
			if waiting {
				break
			}
			time.Sleep(time.Millisecond) // polling a condition no channel reports
		}
		c.fr.WriteSettings(xhttp2.Setting{ID: xhttp2.SettingInitialWindowSize, Val: 65535})
		if e := c.waitStream(1); !e.done || e.reset || len(e.body) != bufferSize+1 {
			t.Fatalf("stream end: done %v, reset %v, %d bytes", e.done, e.reset, len(e.body))
		}
		if ok, state := waitSettled(sc); !ok {
			t.Fatalf("not settled: %s", state)
		}
		sc.mu.Lock()
		active := st.wtimer.Stop()
		sc.mu.Unlock()
		if active {
			t.Error("the write deadline's timer is still set after the stream ended")
		}
	})
	t.Run("idle", func(t *testing.T) {
		release := make(chan struct{})
		started := make(chan struct{})
		returned := make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(returned)
			close(started)
			<-release
		})
		addr, _, conf, srv := startServer(t, h, func(s *http.Server) { s.IdleTimeout = time.Hour })
		c := rawConn(t, addr, conf)
		c.handshake()
		c.writeHeaders(1, true, reqHeaders("GET", "/")...)
		recv(t, started, "the handler")
		sc := onlyConn(t, srv)
		c.fr.WriteRSTStream(1, xhttp2.ErrCodeCancel)
		c.conn.Close()
		for { // ServeConn returns
			srv.mu.Lock()
			n := len(srv.conns)
			srv.mu.Unlock()
			if n == 0 {
				break
			}
			time.Sleep(time.Millisecond) // polling a condition no channel reports
		}
		close(release)
		recv(t, returned, "the handler's return")
		if ok, state := waitSettled(sc); !ok {
			t.Fatalf("not settled: %s", state)
		}
		sc.mu.Lock()
		active := sc.idle != nil && sc.idle.Stop()
		sc.mu.Unlock()
		if active {
			t.Error("the idle timer was set again after the connection closed")
		}
	})
}

// TestAuditFlusherOutlivesConnContext: the backstop flusher runs as long
// as the connection, not as long as the context ConnContext returned
// (which the application may cancel, e.g. when shutdown starts): a
// response finished while another handler runs must still go out.
func TestAuditFlusherOutlivesConnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release // ignores its context
			return
		}
		io.WriteString(w, "fast")
	})
	addr, _, conf, _ := startServer(t, h, func(s *http.Server) {
		s.ConnContext = func(context.Context, net.Conn) context.Context { return ctx }
	})
	defer close(release)
	c := rawConn(t, addr, conf)
	c.handshake()
	c.writeHeaders(1, true, reqHeaders("GET", "/slow")...)
	recv(t, started, "the slow handler")
	cancel()
	c.writeHeaders(3, true, reqHeaders("GET", "/fast")...)
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if e := c.waitStream(3); string(e.body) != "fast" {
		t.Errorf("fast response while the slow handler runs: %+v", e)
	}
}

// TestAuditGoAwayMaxIDRace: a connection error recording the highest
// stream ID after Shutdown's GOAWAY read it. The write was not under mu;
// the race detector cannot see it (socket I/O between the two counts as
// synchronization for it), so this test only exercises the path.
func TestAuditGoAwayMaxIDRace(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	addr, _, conf, srv := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), nil)
	defer close(release)
	c := rawConn(t, addr, conf)
	c.handshake()
	c.writeHeaders(1, true, reqHeaders("GET", "/")...)
	recv(t, started, "the handler")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	c.readUntil("GOAWAY", func(f xhttp2.Frame) bool {
		_, ok := f.(*xhttp2.GoAwayFrame)
		return ok
	})
	// DATA on an idle stream: a connection error, with the stream ID
	// recorded for the GOAWAY.
	c.fr.WriteData(99, true, []byte("x"))
	g, _ := c.connEnd()
	if g == nil || g.ErrCode != xhttp2.ErrCodeProtocol {
		t.Errorf("GOAWAY %+v, want PROTOCOL_ERROR", g)
	}
	cancel()
	recv(t, shut, "Shutdown")
}

// TestAuditConcurrentHugeHeaders: response header blocks over a frame
// (HEADERS + CONTINUATION), trailers and 1xx written by many streams at
// once, while the client changes SETTINGS_HEADER_TABLE_SIZE and
// SETTINGS_MAX_FRAME_SIZE: every block must be contiguous on the wire and
// decode (one HPACK decoder, in wire order) to what the handler set.
func TestAuditConcurrentHugeHeaders(t *testing.T) {
	value := func(id string, i int) string {
		return strings.Repeat(fmt.Sprintf("%s-%d.", id, i), 400)[:2000]
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		w.Header().Set("Link", "</a>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		for i := range 12 {
			w.Header().Set(fmt.Sprintf("X-Big-%d", i), value(id, i))
		}
		w.Header().Set("Trailer", "X-Tr")
		io.WriteString(w, id)
		w.(http.Flusher).Flush()
		w.Header().Set("X-Tr", value(id, 99))
	})
	addr, _, conf, _ := startServer(t, h, nil)
	c := rawConn(t, addr, conf)
	c.handshake()
	const n = 40
	for i := range n {
		id := uint32(2*i + 1)
		c.writeHeaders(id, true, reqHeaders("GET", fmt.Sprintf("/?id=s%d", id))...)
		switch i {
		case 5:
			c.fr.WriteSettings(xhttp2.Setting{ID: xhttp2.SettingHeaderTableSize, Val: 100})
		case 15:
			c.fr.WriteSettings(xhttp2.Setting{ID: xhttp2.SettingMaxFrameSize, Val: 1 << 20})
		case 25:
			c.fr.WriteSettings(xhttp2.Setting{ID: xhttp2.SettingHeaderTableSize, Val: 4096},
				xhttp2.Setting{ID: xhttp2.SettingMaxFrameSize, Val: 16384})
		}
	}
	type result struct{ headers, trailers, body bool }
	got := map[uint32]*result{}
	ended := 0
	for ended < n {
		f := c.read()
		switch f := f.(type) {
		case *xhttp2.MetaHeadersFrame:
			r := got[f.StreamID]
			if r == nil {
				r = &result{}
				got[f.StreamID] = r
			}
			id := fmt.Sprintf("s%d", f.StreamID)
			hdr := http.Header{}
			for _, hf := range f.RegularFields() {
				hdr.Add(hf.Name, hf.Value)
			}
			switch s := f.PseudoValue("status"); s {
			case "103":
			case "200":
				for i := range 12 {
					if v := hdr.Get(fmt.Sprintf("X-Big-%d", i)); v != value(id, i) {
						t.Fatalf("stream %d: X-Big-%d is %.40q...", f.StreamID, i, v)
					}
				}
				r.headers = true
			case "":
				if v := hdr.Get("X-Tr"); v != value(id, 99) {
					t.Fatalf("stream %d: trailer %.40q...", f.StreamID, v)
				}
				r.trailers = true
			default:
				t.Fatalf("stream %d: status %s", f.StreamID, s)
			}
			if f.StreamEnded() {
				ended++
			}
		case *xhttp2.DataFrame:
			if string(f.Data()) == fmt.Sprintf("s%d", f.StreamID) {
				got[f.StreamID].body = true
			}
			if f.StreamEnded() {
				ended++
			}
		case *xhttp2.RSTStreamFrame, *xhttp2.GoAwayFrame:
			t.Fatalf("%v", f)
		}
	}
	for id, r := range got {
		if !r.headers || !r.trailers || !r.body {
			t.Errorf("stream %d: %+v", id, *r)
		}
	}
}

// TestAuditWriteTimeout: Std.WriteTimeout and SetWriteDeadline bound the
// response, as net/http's: once the deadline passes the stream is reset
// (its context canceled, its writes failing), even when the handler was
// not waiting for window when it passed.
func TestAuditWriteTimeout(t *testing.T) {
	targets(t, func(t *testing.T, start func(h http.Handler, mutate func(*http.Server)) target) {
		writes := make(chan error, 2)
		tg := start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/past" {
				http.NewResponseController(w).SetWriteDeadline(time.Now().Add(-time.Second))
			} else {
				select { // the WriteTimeout
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
					writes <- errors.New("the request context was not canceled at WriteTimeout")
					return
				}
			}
			_, err := w.Write(make([]byte, 64<<10))
			writes <- err
		}), func(s *http.Server) { s.WriteTimeout = 200 * time.Millisecond })
		for _, p := range []string{"/", "/past"} {
			c := rawConn(t, tg.addr, clientConf())
			c.handshake()
			c.writeHeaders(1, true, reqHeaders("GET", p)...)
			if e := c.waitStream(1); !e.reset {
				t.Errorf("%s: stream ended %+v, want a reset", p, e.status)
			}
			if err := recv(t, writes, "the handler's write"); err == nil {
				t.Errorf("%s: write after the deadline succeeded", p)
			}
		}
	})
}

// TestAuditDrainedBodyBufferReleased: a request body buffer that grew
// while its handler lagged is released once the handler has read it all.
// Kept, every stream of a connection could hold a window's worth (1 MiB)
// at once although the connection's window lets only 1 MiB be unread in
// all: 250 streams, 250 MiB.
func TestAuditDrainedBodyBufferReleased(t *testing.T) {
	const size = 512 << 10
	caps := make(chan int, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := r.Body.(*reqBody)
		b.mu.Lock()
		for len(b.buf)-b.off < size && b.err == nil {
			b.cond.Wait()
		}
		b.mu.Unlock()
		io.ReadFull(r.Body, make([]byte, size))
		b.mu.Lock()
		caps <- cap(b.buf)
		b.mu.Unlock()
		io.Copy(io.Discard, r.Body)
	})
	addr, _, conf, _ := startServer(t, h, nil)
	c := rawConn(t, addr, conf)
	c.handshake()
	c.writeHeaders(1, false, reqHeaders("POST", "/")...)
	chunk := make([]byte, 16<<10)
	for range size / len(chunk) {
		if err := c.fr.WriteData(1, false, chunk); err != nil {
			t.Fatal(err)
		}
	}
	if n := recv(t, caps, "the handler"); n > 64<<10 {
		t.Errorf("%d KiB kept by a drained request body", n>>10)
	}
	c.fr.WriteData(1, true, nil)
	c.waitStream(1)
}
