package http2

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Frame-level tests: a raw client (h2conn) that misbehaves, or checks
// what the server sends.

// frameEvent is what a background reader saw.
type frameEvent struct {
	goaway  bool
	code    xhttp2.ErrCode
	pingAck [8]byte
	err     error // the read error that ended the reader
}

// TestRapidReset opens and resets 10,000 streams as fast as it can
// (CVE-2023-44487). The handlers running at once stay within a small
// multiple of MaxConcurrentStreams; the connection either keeps working or
// is sent away; the server keeps serving.
func TestRapidReset(t *testing.T) {
	const maxStreams = 16
	running := newGauge()
	var started atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			io.WriteString(w, "ok")
			return
		}
		running.inc()
		defer running.dec()
		started.Add(1)
		<-r.Context().Done()
	})
	addr, client, conf, _ := startServerWith(t, h, func(s *Server) { s.MaxConcurrentStreams = maxStreams })
	c := rawConn(t, addr, conf)
	c.handshake()
	if got := c.settings[xhttp2.SettingMaxConcurrentStreams]; got != maxStreams {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want %d", got, maxStreams)
	}

	// The reader reports the end of the connection, or the ack of the
	// PING sent after the flood (the connection still works).
	events := make(chan frameEvent, 1)
	go func() {
		var ev frameEvent
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				ev.err = err
				events <- ev
				return
			}
			switch f := f.(type) {
			case *xhttp2.GoAwayFrame:
				ev.goaway, ev.code = true, f.ErrCode
			case *xhttp2.PingFrame:
				if f.IsAck() {
					ev.pingAck = f.Data
					events <- ev
					return
				}
			}
		}
	}()

	bw := bufio.NewWriterSize(c.conn, 64<<10)
	wfr := xhttp2.NewFramer(bw, nil)
	block := c.encode(reqHeaders("GET", "/")...)
	var werr error
	sent := 0
	for i := 0; i < 10000 && werr == nil; i++ {
		id := uint32(2*i + 1)
		// The same block each time: its fields are in the dynamic table
		// after the first, so it decodes the same.
		werr = wfr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true})
		if werr == nil {
			werr = wfr.WriteRSTStream(id, xhttp2.ErrCodeCancel)
		}
		if werr == nil && i%64 == 63 {
			werr = bw.Flush()
		}
		if werr == nil {
			sent++
		}
	}
	if werr == nil {
		werr = wfr.WritePing(false, [8]byte{'s', 'u', 'r', 'v', 'i', 'v', 'e', 'd'})
	}
	if werr == nil {
		werr = bw.Flush()
	}
	ev := recv(t, events, "the connection's answer to the flood")
	switch {
	case ev.pingAck == [8]byte{'s', 'u', 'r', 'v', 'i', 'v', 'e', 'd'}:
		t.Logf("connection kept working after %d streams (GOAWAY %v %v)", sent, ev.goaway, ev.code)
	case ev.goaway || isConnEnd(ev.err):
		t.Logf("connection ended after %d of 10000 streams: GOAWAY %v (%v), read %v, write %v", sent, ev.goaway, ev.code, ev.err, werr)
	default:
		t.Fatalf("after %d streams: read %v, write %v", sent, ev.err, werr)
	}
	if !running.waitZero() {
		n, _ := running.load()
		t.Fatalf("%d handlers still running after every stream was reset", n)
	}
	_, highest := running.load()
	t.Logf("%d handlers started, at most %d at once", started.Load(), highest)
	if highest > 2*maxStreams {
		t.Errorf("%d handlers ran at once; MaxConcurrentStreams is %d", highest, maxStreams)
	}
	c.conn.Close()

	// The server still serves.
	resp, err := client.Get("https://" + addr + "/ok")
	if err != nil {
		t.Fatalf("after the flood: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Errorf("after the flood: %d %q", resp.StatusCode, b)
	}
}

// TestContinuationFlood sends HEADERS without END_HEADERS followed by
// CONTINUATION frames without end (CVE-2023-45288): the server closes the
// connection with an error long before the client runs out of frames,
// and the handler never runs.
func TestContinuationFlood(t *testing.T) {
	var ran atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran.Add(1) })
	addr, _, conf, _ := startServer(t, h, nil)
	c := rawConn(t, addr, conf)
	c.handshake()

	const budget = 64 << 20
	var written atomic.Int64
	var stop atomic.Bool
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		// Literal fields too big for the dynamic table: every frame holds
		// whole, valid fields, so the decoder has something to keep.
		frag := c.encode("x-flood-a", strings.Repeat("a", 7000), "x-flood-b", strings.Repeat("b", 7000))
		err := c.fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 1, BlockFragment: c.encode(reqHeaders("GET", "/")...), EndStream: true})
		for err == nil && written.Load() < budget && !stop.Load() {
			err = c.fr.WriteContinuation(1, false, frag)
			written.Add(int64(len(frag)))
		}
	}()
	// How much the client had written when the server gave up on the
	// connection (GOAWAY, or the end without one): a server may read and
	// drop what comes after its GOAWAY for a while before it closes.
	var atEnd int64
	var goaway *xhttp2.GoAwayFrame
	var err error
	for {
		var f xhttp2.Frame
		f, err = c.fr.ReadFrame()
		if err != nil {
			break
		}
		if g, ok := f.(*xhttp2.GoAwayFrame); ok && goaway == nil {
			atEnd = written.Load()
			goaway = &xhttp2.GoAwayFrame{LastStreamID: g.LastStreamID, ErrCode: g.ErrCode}
			stop.Store(true)
		}
	}
	if goaway == nil {
		atEnd = written.Load()
	}
	stop.Store(true)
	if !isConnEnd(err) {
		t.Fatalf("connection did not end: %v", err)
	}
	if goaway != nil && goaway.ErrCode == xhttp2.ErrCodeNo {
		t.Errorf("GOAWAY NO_ERROR; want an error code")
	}
	c.conn.Close()
	recv(t, wrote, "the writer")
	t.Logf("the server gave up (GOAWAY %v) after the client wrote %d KiB of CONTINUATION", goaway != nil, atEnd>>10)
	if atEnd >= budget {
		t.Errorf("the server took all %d MiB of one header block", budget>>20)
	}
	if ran.Load() != 0 {
		t.Errorf("the handler ran")
	}
}

// TestTooManyStreams opens one stream more than SETTINGS_MAX_CONCURRENT_
// STREAMS: RFC 9113 5.1.2 has it refused with a stream error of type
// PROTOCOL_ERROR or REFUSED_STREAM; the others and later streams work.
func TestTooManyStreams(t *testing.T) {
	const maxStreams = 4
	release := make(chan struct{})
	startedc := make(chan string, 16)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		startedc <- r.URL.Path
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "ok "+r.URL.Path)
	})
	addr, _, conf, _ := startServerWith(t, h, func(s *Server) { s.MaxConcurrentStreams = maxStreams })
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	c := rawConn(t, addr, conf)
	c.handshake()
	if got := c.settings[xhttp2.SettingMaxConcurrentStreams]; got != maxStreams {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want %d", got, maxStreams)
	}
	for i := uint32(0); i < maxStreams; i++ {
		c.writeHeaders(2*i+1, true, reqHeaders("GET", fmt.Sprintf("/s%d", 2*i+1))...)
	}
	for i := 0; i < maxStreams; i++ {
		recv(t, startedc, "the handlers of the allowed streams")
	}
	extra := uint32(2*maxStreams + 1)
	c.writeHeaders(extra, true, reqHeaders("GET", "/extra")...)
	e := c.waitStream(extra)
	if !e.reset || (e.rst != xhttp2.ErrCodeRefusedStream && e.rst != xhttp2.ErrCodeProtocol) {
		t.Fatalf("stream over the limit: %+v; want RST_STREAM REFUSED_STREAM or PROTOCOL_ERROR", e)
	}
	close(release)
	for i := uint32(0); i < maxStreams; i++ {
		id := 2*i + 1
		e := c.waitStream(id)
		if e.status != "200" || string(e.body) != fmt.Sprintf("ok /s%d", id) {
			t.Errorf("stream %d: %+v", id, e)
		}
	}
	next := extra + 2
	c.writeHeaders(next, true, reqHeaders("GET", "/after")...)
	if e := c.waitStream(next); e.status != "200" {
		t.Errorf("stream after the others ended: %+v", e)
	}
	select {
	case p := <-startedc:
		if p != "/after" {
			t.Errorf("handler ran for %s", p)
		}
	default:
	}
}

// TestClientNeverReads: the client asks for a large response and reads
// nothing. The handler's writes block, or fail at the write deadline it
// set with http.ResponseController; either way the server does not
// buffer the response: the bytes its writes accepted stay bounded.
func TestClientNeverReads(t *testing.T) {
	cases := []struct {
		name string
		// window: the client grants a huge flow-control window and reads
		// nothing from the socket: only TCP buffers bound the server then.
		window bool
		total  int
		bound  int // bytes the handler may get accepted
	}{
		{"default window", false, 10 << 20, 65535 + 4<<20},
		{"huge window, socket unread", true, 64 << 20, 16 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var accepted atomic.Int64
			results := make(chan error, 1)
			setup := make(chan error, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				err := rc.SetWriteDeadline(time.Now().Add(time.Second))
				setup <- err
				if err != nil {
					return
				}
				chunk := make([]byte, 32<<10)
				for accepted.Load() < int64(tc.total) && err == nil {
					var k int
					k, err = w.Write(chunk)
					accepted.Add(int64(k))
				}
				results <- err
			})
			addr, _, conf, _ := startServer(t, h, nil)
			c := rawConn(t, addr, conf)
			c.handshake()
			if tc.window {
				c.conn.NetConn().(*net.TCPConn).SetReadBuffer(64 << 10)
				if err := c.fr.WriteSettings(xhttp2.Setting{ID: xhttp2.SettingInitialWindowSize, Val: 1<<31 - 1}); err != nil {
					t.Fatal(err)
				}
				if err := c.fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
					t.Fatal(err)
				}
			}
			c.writeHeaders(1, true, reqHeaders("GET", "/big")...)
			if err := recv(t, setup, "the handler"); err != nil {
				t.Fatalf("SetWriteDeadline: %v", err)
			}
			// The handler's deadline is 1 s away. Its writes either fail by
			// then, or are blocked (x/net, when its socket writes block,
			// cannot send the RST_STREAM that would release them); give it
			// a moment more, then judge how much was accepted.
			var err error
			blocked := false
			select {
			case err = <-results:
			case <-time.After(3 * time.Second):
				blocked = true
			}
			n := accepted.Load()
			t.Logf("handler got %d KiB accepted, then blocked %v, error %v", n>>10, blocked, err)
			if n > int64(tc.bound) {
				t.Errorf("%d bytes accepted, over the bound of %d", n, tc.bound)
			}
			if blocked {
				// Gone client: the blocked write must give up.
				c.conn.Close()
				err = recv(t, results, "the handler's write to fail once the client is gone")
			}
			if err == nil {
				t.Errorf("the handler wrote all %d MiB to a client that reads nothing", tc.total>>20)
			}
		})
	}
}

// TestRequestBodyOverWindow sends more request body than the stream's
// flow-control window allows, the handler reading none of it:
// FLOW_CONTROL_ERROR, as a stream error or a connection error.
func TestRequestBodyOverWindow(t *testing.T) {
	startedc := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		startedc <- struct{}{}
		<-r.Context().Done()
	})
	addr, _, conf, _ := startServer(t, h, nil)
	c := rawConn(t, addr, conf)
	c.handshake()
	streamWindow, ok := c.settings[xhttp2.SettingInitialWindowSize]
	if !ok {
		streamWindow = 65535
	}
	// The connection's window: 65535 and what the server added at the
	// start (before it answers a PING).
	connWindow := 65535
	c.fr.WritePing(false, [8]byte{'c', 'o', 'n', 'n'})
	c.readUntil("PING ack", func(f xhttp2.Frame) bool {
		if w, ok := f.(*xhttp2.WindowUpdateFrame); ok && w.StreamID == 0 {
			connWindow += int(w.Increment)
		}
		p, ok := f.(*xhttp2.PingFrame)
		return ok && p.IsAck()
	})
	c.writeHeaders(1, false, reqHeaders("POST", "/upload")...)
	recv(t, startedc, "the handler")
	chunk := make([]byte, 16384) // the smallest SETTINGS_MAX_FRAME_SIZE
	send := func(n int) error {
		for n > 0 {
			k := min(n, len(chunk))
			if err := c.fr.WriteData(1, false, chunk[:k]); err != nil {
				return err
			}
			n -= k
		}
		return nil
	}
	// All the window there is, legally; then a PING, so that every
	// WINDOW_UPDATE the server sends for this data before it reads the
	// PING is counted.
	legal := min(int(streamWindow), connWindow)
	if err := send(legal); err != nil {
		t.Fatal(err)
	}
	c.fr.WritePing(false, [8]byte{'w', 'i', 'n', 'd', 'o', 'w'})
	streamLeft, connLeft := int(streamWindow)-legal, connWindow-legal
	c.readUntil("PING ack", func(f xhttp2.Frame) bool {
		switch f := f.(type) {
		case *xhttp2.WindowUpdateFrame:
			switch f.StreamID {
			case 0:
				connLeft += int(f.Increment)
			case 1:
				streamLeft += int(f.Increment)
			}
		case *xhttp2.PingFrame:
			return f.IsAck()
		case *xhttp2.RSTStreamFrame, *xhttp2.GoAwayFrame:
			t.Fatalf("after a body within the window: %v", f)
		}
		return false
	})
	// One byte more than the smaller window left.
	t.Logf("stream window %d, connection window %d; sending %d bytes over them", streamWindow, connWindow, min(streamLeft, connLeft)+1)
	if err := send(min(streamLeft, connLeft) + 1); err != nil {
		t.Fatal(err)
	}
	f := c.readUntil("FLOW_CONTROL_ERROR", func(f xhttp2.Frame) bool {
		switch f := f.(type) {
		case *xhttp2.RSTStreamFrame:
			return f.StreamID == 1
		case *xhttp2.GoAwayFrame:
			return true
		case *xhttp2.WindowUpdateFrame:
			if f.StreamID <= 1 && f.Increment > 0 {
				t.Fatalf("the server opened a window (stream %d) after the body had gone over it: inconclusive", f.StreamID)
			}
		}
		return false
	})
	switch f := f.(type) {
	case *xhttp2.RSTStreamFrame:
		if f.ErrCode != xhttp2.ErrCodeFlowControl {
			t.Errorf("RST_STREAM %v, want FLOW_CONTROL_ERROR", f.ErrCode)
		}
	case *xhttp2.GoAwayFrame:
		if f.ErrCode != xhttp2.ErrCodeFlowControl {
			t.Errorf("GOAWAY %v, want FLOW_CONTROL_ERROR", f.ErrCode)
		}
	}
}

// TestContentLengthMismatch: a body shorter or longer than its declared
// content-length makes the request malformed (RFC 9113 8.1.1): the
// handler's body read fails, and the stream is reset with PROTOCOL_ERROR,
// or (short body, as x/net does) answered by the handler after the read
// error: "a server MAY send an HTTP response prior to closing or
// resetting the stream".
func TestContentLengthMismatch(t *testing.T) {
	cases := []struct {
		name          string
		declared      string
		frames        []string // DATA frames; the last ends the stream
		allowResponse bool
	}{
		{"shorter", "10", []string{"hello"}, true},
		{"shorter, empty", "10", []string{""}, true},
		{"longer", "5", []string{"hello", " world"}, false},
		{"longer in one frame", "5", []string{"hello world"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				n   int
				err error
			}
			results := make(chan result, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				results <- result{len(b), err}
				if err != nil {
					http.Error(w, "bad body", http.StatusBadRequest)
					return
				}
				io.WriteString(w, "read the body")
			})
			addr, _, conf, _ := startServer(t, h, nil)
			c := rawConn(t, addr, conf)
			c.handshake()
			c.writeHeaders(1, false, reqHeaders("POST", "/", "content-length", tc.declared)...)
			for i, d := range tc.frames {
				if err := c.fr.WriteData(1, i == len(tc.frames)-1, []byte(d)); err != nil {
					t.Fatal(err)
				}
			}
			e := c.waitStream(1)
			res := recv(t, results, "the handler's body read")
			if res.err == nil {
				t.Errorf("handler read %d bytes and no error", res.n)
			}
			switch {
			case e.reset && e.rst == xhttp2.ErrCodeProtocol:
			case tc.allowResponse && !e.reset && e.status != "" && e.status != "200":
				t.Logf("answered %s after the handler's read failed (RFC 9113 8.1.1 allows a response)", e.status)
			default:
				t.Errorf("stream ended %+v; want RST_STREAM PROTOCOL_ERROR", e)
			}
		})
	}
}

// TestMalformedHeaders: requests with a field name in upper case or a
// connection-specific field are malformed (RFC 9113 8.2, 8.2.2): the
// handler never runs, and the stream is reset with PROTOCOL_ERROR or
// answered 4xx ("a server MAY send an HTTP response prior to closing or
// resetting the stream", 8.1.1; x/net answers 400 to connection-specific
// fields). "te: trailers" is allowed.
func TestMalformedHeaders(t *testing.T) {
	var ran atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran.Add(1)
		io.WriteString(w, "handled")
	})
	addr, _, conf, _ := startServer(t, h, nil)
	cases := []struct {
		name  string
		extra []string
		ok    bool
	}{
		{"upper-case name", []string{"X-Upper", "v"}, false},
		{"mixed-case name", []string{"x-Mixed", "v"}, false},
		{"connection", []string{"connection", "keep-alive"}, false},
		{"keep-alive", []string{"keep-alive", "timeout=5"}, false},
		{"proxy-connection", []string{"proxy-connection", "keep-alive"}, false},
		{"transfer-encoding", []string{"transfer-encoding", "chunked"}, false},
		{"upgrade", []string{"upgrade", "websocket"}, false},
		{"te: gzip", []string{"te", "gzip"}, false},
		{"te: trailers, gzip", []string{"te", "trailers, gzip"}, false},
		{"te: trailers", []string{"te", "trailers"}, true},
		{"field name with a space", []string{"x bad", "v"}, false},
		{"field value with a newline", []string{"x-bad", "a\nb"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := ran.Load()
			c := rawConn(t, addr, conf)
			c.handshake()
			c.writeHeaders(1, true, reqHeaders("GET", "/", tc.extra...)...)
			e := c.waitStream(1)
			handled := ran.Load() != before
			if tc.ok {
				if e.status != "200" || !handled {
					t.Errorf("valid request: %+v (handled %v)", e, handled)
				}
				return
			}
			if handled {
				t.Errorf("the handler ran")
			}
			switch {
			case e.reset && e.rst == xhttp2.ErrCodeProtocol:
			case !e.reset && len(e.status) == 3 && e.status[0] == '4':
				t.Logf("answered %s (RFC 9113 8.1.1 allows a response)", e.status)
			default:
				t.Errorf("stream ended %+v; want RST_STREAM PROTOCOL_ERROR (or a 4xx answer)", e)
			}
			// A stream error: the connection still works.
			c.writeHeaders(3, true, reqHeaders("GET", "/")...)
			if e := c.waitStream(3); e.status != "200" {
				t.Errorf("next stream: %+v", e)
			}
		})
	}
}

// TestPingAndSettingsAck: PING is answered with an ACK carrying the same
// payload, SETTINGS with an empty ACK.
func TestPingAndSettingsAck(t *testing.T) {
	addr, _, conf, _ := startServer(t, http.NotFoundHandler(), nil)
	c := rawConn(t, addr, conf)
	c.handshake()
	// Our own first SETTINGS (empty) is acked too, at any time; count.
	acks := 0
	payload := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	if err := c.fr.WritePing(false, payload); err != nil {
		t.Fatal(err)
	}
	f := c.readUntil("PING ack", func(f xhttp2.Frame) bool {
		if s, ok := f.(*xhttp2.SettingsFrame); ok && s.IsAck() {
			acks++
		}
		p, ok := f.(*xhttp2.PingFrame)
		return ok && p.IsAck()
	}).(*xhttp2.PingFrame)
	if f.Data != payload || f.StreamID != 0 {
		t.Errorf("PING ack %v on stream %d, want %v", f.Data, f.StreamID, payload)
	}
	err := c.fr.WriteSettings(
		xhttp2.Setting{ID: xhttp2.SettingInitialWindowSize, Val: 1 << 20},
		xhttp2.Setting{ID: xhttp2.SettingMaxFrameSize, Val: 32768},
		xhttp2.Setting{ID: xhttp2.SettingHeaderTableSize, Val: 8192},
	)
	if err != nil {
		t.Fatal(err)
	}
	for acks < 2 {
		s := c.readUntil("SETTINGS ack", func(f xhttp2.Frame) bool {
			s, ok := f.(*xhttp2.SettingsFrame)
			return ok && s.IsAck()
		}).(*xhttp2.SettingsFrame)
		if s.Length != 0 {
			t.Errorf("SETTINGS ack of length %d", s.Length)
		}
		acks++
	}
	// A PING ack from the client is not answered; the next PING is.
	c.fr.WritePing(true, [8]byte{9})
	c.fr.WritePing(false, [8]byte{10})
	f = c.readUntil("PING", func(f xhttp2.Frame) bool { _, ok := f.(*xhttp2.PingFrame); return ok }).(*xhttp2.PingFrame)
	if !f.IsAck() || f.Data != [8]byte{10} {
		t.Errorf("got PING ack %v %v, want an ack of the second", f.IsAck(), f.Data)
	}
}

// TestFrameLargerThanAdvertised: a HEADERS frame longer than the
// SETTINGS_MAX_FRAME_SIZE the server advertised is a connection error of
// type FRAME_SIZE_ERROR (RFC 9113 4.2).
func TestFrameLargerThanAdvertised(t *testing.T) {
	var ran atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran.Add(1) })
	addr, _, conf, _ := startServer(t, h, nil)
	c := rawConn(t, addr, conf)
	c.handshake()
	limit, ok := c.settings[xhttp2.SettingMaxFrameSize]
	if !ok {
		limit = 16384
	}
	c.fr.AllowIllegalWrites = true
	// '#' has a 10-bit Huffman code: the encoder keeps it raw, so the
	// block is longer than the limit.
	block := c.encode(reqHeaders("GET", "/", "x-big", strings.Repeat("#", int(limit)))...)
	go c.fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: true})
	goaway, err := c.connEnd()
	if goaway == nil || goaway.ErrCode != xhttp2.ErrCodeFrameSize {
		t.Errorf("frame of %d bytes (limit %d): GOAWAY %+v, then %v; want GOAWAY FRAME_SIZE_ERROR", len(block), limit, goaway, err)
	}
	if ran.Load() != 0 {
		t.Errorf("the handler ran")
	}
}

// TestLargeResponseHeader: a response header block larger than the
// client's SETTINGS_MAX_FRAME_SIZE (the default 16384: the raw client
// advertises none) goes out as HEADERS and CONTINUATION frames, none
// larger than 16384; so does the body, in DATA frames.
func TestLargeResponseHeader(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 2560) // 40 KiB
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", big)
		w.Header().Set("X-After", "after")
		w.Write([]byte(big))
	})
	addr, _, conf, _ := startServer(t, h, nil)
	c := rawConn(t, addr, conf)
	c.fr.ReadMetaHeaders = nil // see the CONTINUATION frames
	c.handshake()
	c.writeHeaders(1, true, reqHeaders("GET", "/")...)
	var block, body []byte
	var kinds []string
	for done := false; !done; {
		f := c.read()
		if f.Header().Length > 16384 {
			t.Errorf("%v of %d bytes", f.Header().Type, f.Header().Length)
		}
		switch f := f.(type) {
		case *xhttp2.HeadersFrame:
			kinds = append(kinds, "HEADERS")
			block = append(block, f.HeaderBlockFragment()...)
			done = f.StreamEnded()
		case *xhttp2.ContinuationFrame:
			kinds = append(kinds, "CONTINUATION")
			block = append(block, f.HeaderBlockFragment()...)
		case *xhttp2.DataFrame:
			body = append(body, f.Data()...)
			done = f.StreamEnded()
			if f.Length > 0 {
				c.fr.WriteWindowUpdate(0, f.Length)
				c.fr.WriteWindowUpdate(1, f.Length)
			}
		case *xhttp2.RSTStreamFrame, *xhttp2.GoAwayFrame:
			t.Fatalf("%v", f)
		}
	}
	if len(kinds) < 2 || kinds[0] != "HEADERS" || kinds[1] != "CONTINUATION" {
		t.Errorf("header frames %v; want HEADERS then CONTINUATION frames", kinds)
	}
	fields, err := hpack.NewDecoder(4096, nil).DecodeFull(block)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range fields {
		got[f.Name] = f.Value
	}
	if got[":status"] != "200" || got["x-big"] != big || got["x-after"] != "after" || string(body) != big {
		t.Errorf("status %q, x-big %d bytes, x-after %q, body %d bytes", got[":status"], len(got["x-big"]), got["x-after"], len(body))
	}
}

// TestIdleTimeout: a connection idle for Std.IdleTimeout gets GOAWAY and
// is closed.
func TestIdleTimeout(t *testing.T) {
	targets(t, func(t *testing.T, start func(http.Handler, func(*http.Server)) target) {
		tg := start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
			func(s *http.Server) { s.IdleTimeout = 200 * time.Millisecond })
		c := rawConn(t, tg.addr, clientConf())
		c.handshake()
		c.writeHeaders(1, true, reqHeaders("GET", "/")...)
		if e := c.waitStream(1); e.status != "200" {
			t.Fatalf("request: %+v", e)
		}
		goaway, err := c.connEnd()
		if goaway == nil {
			t.Errorf("no GOAWAY before the end (%v)", err)
		} else if goaway.ErrCode != xhttp2.ErrCodeNo || goaway.LastStreamID != 1 {
			t.Errorf("GOAWAY %v last stream %d, want NO_ERROR, 1", goaway.ErrCode, goaway.LastStreamID)
		}
		if !isConnEnd(err) {
			t.Errorf("connection not closed: %v", err)
		}
	})
}

// TestShutdown: with a request in flight, Shutdown sends GOAWAY (NO_ERROR)
// and waits; new streams are refused; the request in flight completes;
// then Shutdown returns and the connection is closed.
func TestShutdown(t *testing.T) {
	targets(t, func(t *testing.T, start func(http.Handler, func(*http.Server)) target) {
		release := make(chan struct{})
		startedc := make(chan struct{}, 1)
		var newRan atomic.Int32
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/new" {
				newRan.Add(1)
				io.WriteString(w, "new")
				return
			}
			startedc <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "finished")
		})
		tg := start(h, nil)
		c := rawConn(t, tg.addr, clientConf())
		c.handshake()
		c.writeHeaders(1, true, reqHeaders("GET", "/slow")...)
		recv(t, startedc, "the slow handler")

		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- tg.shutdown(ctx) }()
		// A graceful GOAWAY may first name 2^31-1; wait for the one that
		// names the last stream taken.
		g := c.readUntil("GOAWAY", func(f xhttp2.Frame) bool {
			g, ok := f.(*xhttp2.GoAwayFrame)
			if ok && g.ErrCode != xhttp2.ErrCodeNo {
				t.Fatalf("GOAWAY %v, want NO_ERROR", g.ErrCode)
			}
			return ok && g.LastStreamID < 3
		}).(*xhttp2.GoAwayFrame)
		if g.LastStreamID != 1 {
			t.Fatalf("GOAWAY last stream %d, want 1", g.LastStreamID)
		}
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned (%v) with a request in flight", err)
		default:
		}
		c.writeHeaders(3, true, reqHeaders("GET", "/new")...)
		close(release)
		var s1 streamEnd
		var s3 []string
		var readErr error
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				readErr = err
				break
			}
			switch f := f.(type) {
			case *xhttp2.MetaHeadersFrame:
				if f.StreamID == 1 {
					s1.status = f.PseudoValue("status")
				}
			case *xhttp2.DataFrame:
				if f.StreamID == 1 {
					s1.body = append(s1.body, f.Data()...)
				}
			case *xhttp2.RSTStreamFrame:
				if f.StreamID == 1 {
					s1.reset, s1.rst = true, f.ErrCode
				}
			}
			if id := f.Header().StreamID; id == 3 {
				s3 = append(s3, fmt.Sprint(f))
			}
		}
		if s1.status != "200" || string(s1.body) != "finished" || s1.reset {
			t.Errorf("request in flight: %+v", s1)
		}
		if !isConnEnd(readErr) {
			t.Errorf("connection not closed: %v", readErr)
		}
		for _, f := range s3 {
			if !strings.Contains(f, "RST_STREAM") || !strings.Contains(f, "REFUSED_STREAM") {
				t.Errorf("stream 3 opened after GOAWAY got %s; want nothing or RST_STREAM REFUSED_STREAM", f)
			}
		}
		if newRan.Load() != 0 {
			t.Errorf("a stream opened after GOAWAY was served")
		}
		if err := recv(t, shut, "Shutdown to return"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
}

// TestShutdownContext: Shutdown returns the context's error when the
// context ends before the requests in flight do; Close then ends them.
func TestShutdownContext(t *testing.T) {
	targets(t, func(t *testing.T, start func(http.Handler, func(*http.Server)) target) {
		startedc := make(chan struct{}, 1)
		ended := make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			startedc <- struct{}{}
			<-r.Context().Done()
			close(ended)
		})
		tg := start(h, nil)
		c := rawConn(t, tg.addr, clientConf())
		c.handshake()
		c.writeHeaders(1, true, reqHeaders("GET", "/slow")...)
		recv(t, startedc, "the handler")
		ctx, cancel := context.WithCancel(context.Background())
		shut := make(chan error, 1)
		go func() { shut <- tg.shutdown(ctx) }()
		c.readUntil("GOAWAY", func(f xhttp2.Frame) bool { _, ok := f.(*xhttp2.GoAwayFrame); return ok })
		cancel()
		if err := recv(t, shut, "Shutdown to return"); !errors.Is(err, context.Canceled) {
			t.Errorf("Shutdown: %v, want context.Canceled", err)
		}
		if err := tg.close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		recv(t, ended, "the handler's context to end on Close")
		if _, err := c.connEnd(); !isConnEnd(err) {
			t.Errorf("connection not closed: %v", err)
		}
	})
}

// TestClose: Close closes every connection at once, idle or not, and the
// requests in flight see their context end.
func TestClose(t *testing.T) {
	targets(t, func(t *testing.T, start func(http.Handler, func(*http.Server)) target) {
		startedc := make(chan struct{}, 1)
		ended := make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/quick" {
				return
			}
			startedc <- struct{}{}
			<-r.Context().Done()
			close(ended)
		})
		tg := start(h, nil)
		busy := rawConn(t, tg.addr, clientConf())
		busy.handshake()
		busy.writeHeaders(1, true, reqHeaders("GET", "/slow")...)
		recv(t, startedc, "the handler")
		idle := rawConn(t, tg.addr, clientConf())
		idle.handshake()
		idle.writeHeaders(1, true, reqHeaders("GET", "/quick")...)
		if e := idle.waitStream(1); e.status != "200" {
			t.Fatalf("quick request: %+v", e)
		}
		if err := tg.close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		recv(t, ended, "the handler's context to end")
		for name, c := range map[string]*h2conn{"busy": busy, "idle": idle} {
			if _, err := c.connEnd(); !isConnEnd(err) {
				t.Errorf("%s connection not closed: %v", name, err)
			}
		}
	})
}
