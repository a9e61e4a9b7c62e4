package http2

// The tests of this package:
//
//   - harness_test.go: startServer (the Server on a TLS listener on
//     127.0.0.1), an HTTP/2-only client, rawConn (a Framer for frame-level
//     tests) and targets (runs a test against net/http's HTTP/2 server and
//     ours).
//   - h2spec_test.go: h2spec's conformance suite, in process, one subtest
//     per case; every case must pass.
//   - diff_test.go: the same requests through Go's client to net/http's
//     HTTP/2 server and to ours, compared.
//   - hostile_test.go: misbehaving clients (rapid reset, CONTINUATION
//     flood, flow-control abuse, malformed requests) and Shutdown, Close,
//     IdleTimeout.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// testTimeout bounds every wait in these tests, so that a hang fails the
// test instead of blocking it; it is never asserted as a duration.
const testTimeout = 20 * time.Second

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

// testCert is httptest's certificate (valid for 127.0.0.1 and
// example.com) and a client configuration trusting it.
var testCert = sync.OnceValues(func() ([]tls.Certificate, *tls.Config) {
	s := httptest.NewUnstartedServer(nil)
	s.EnableHTTP2 = true
	s.StartTLS()
	defer s.Close()
	conf := s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	conf.NextProtos = []string{"h2"}
	return s.TLS.Certificates, conf
})

// clientConf returns a fresh client TLS configuration (ALPN h2 only)
// trusting the test certificate.
func clientConf() *tls.Config {
	_, conf := testCert()
	return conf.Clone()
}

// h2Client returns an HTTP/2-only client trusting the test certificate.
func h2Client(t *testing.T) *http.Client {
	t.Helper()
	var p http.Protocols
	p.SetHTTP2(true)
	tr := &http.Transport{
		TLSClientConfig:   clientConf(),
		ForceAttemptHTTP2: true,
		Protocols:         &p,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// startServer serves h with the package's Server on a TLS listener on
// 127.0.0.1 (httptest's certificate, ALPN h2). mutate, if not nil, edits
// the http.Server before the first connection.
func startServer(t *testing.T, h http.Handler, mutate func(*http.Server)) (addr string, client *http.Client, tlsConf *tls.Config, srv *Server) {
	t.Helper()
	return startServerWith(t, h, func(s *Server) {
		if mutate != nil {
			mutate(s.Std)
		}
	})
}

// startServerWith is startServer with access to the Server itself (for
// MaxConcurrentStreams), before the first connection.
func startServerWith(t *testing.T, h http.Handler, mutate func(*Server)) (addr string, client *http.Client, tlsConf *tls.Config, srv *Server) {
	t.Helper()
	certs, _ := testCert()
	std := &http.Server{Handler: h, ErrorLog: discardLog(), ReadHeaderTimeout: 10 * time.Second}
	srv = New(std)
	if mutate != nil {
		mutate(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serverConf := &tls.Config{Certificates: certs, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}

	var (
		mu     sync.Mutex
		conns  = map[net.Conn]bool{}
		served sync.WaitGroup // accept loop and ServeConn calls
	)
	served.Add(1)
	go func() {
		defer served.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			served.Add(1)
			go func() {
				defer served.Done()
				tc := tls.Server(c, serverConf)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := tc.HandshakeContext(ctx)
				cancel()
				if err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
					c.Close()
					return
				}
				mu.Lock()
				conns[tc] = true
				mu.Unlock()
				srv.ServeConn(tc)
				mu.Lock()
				delete(conns, tc)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		srv.Close()
		// Close what the server did not track (a connection accepted
		// while it closed).
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		done := make(chan struct{})
		go func() { served.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(testTimeout):
			t.Errorf("ServeConn did not return after Close and the connections closing")
		}
	})
	return ln.Addr().String(), h2Client(t), clientConf(), srv
}

// target is a server under test for the tests that also run against
// net/http's own HTTP/2 server, the reference.
type target struct {
	addr     string
	shutdown func(context.Context) error
	close    func() error
}

// targets runs f against net/http's HTTP/2 server ("nethttp") and the
// package's Server ("ours").
func targets(t *testing.T, f func(t *testing.T, start func(h http.Handler, mutate func(*http.Server)) target)) {
	t.Run("nethttp", func(t *testing.T) {
		f(t, func(h http.Handler, mutate func(*http.Server)) target {
			s := httptest.NewUnstartedServer(h)
			s.EnableHTTP2 = true
			s.Config.ErrorLog = discardLog()
			if mutate != nil {
				mutate(s.Config)
			}
			s.StartTLS()
			t.Cleanup(s.Close)
			return target{addr: s.Listener.Addr().String(), shutdown: s.Config.Shutdown, close: s.Config.Close}
		})
	})
	t.Run("ours", func(t *testing.T) {
		f(t, func(h http.Handler, mutate func(*http.Server)) target {
			addr, _, _, srv := startServer(t, h, mutate)
			return target{addr: addr, shutdown: srv.Shutdown, close: srv.Close}
		})
	})
}

// h2conn is a raw HTTP/2 client connection for frame-level tests.
type h2conn struct {
	t    *testing.T
	conn *tls.Conn
	fr   *xhttp2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
	// Server SETTINGS seen in the handshake.
	settings map[xhttp2.SettingID]uint32
	// streams collects responses for waitStream.
	streams map[uint32]*streamEnd
}

// rawConn dials addr with conf (ALPN h2), writes the client preface and
// an empty SETTINGS frame, and returns a Framer over the connection; the
// connection has an overall deadline of testTimeout and is closed at the
// end of the test. Call handshake to read and ack the server's SETTINGS.
func rawConn(t *testing.T, addr string, conf *tls.Config) *h2conn {
	t.Helper()
	conf = conf.Clone()
	conf.NextProtos = []string{"h2"}
	d := &net.Dialer{Timeout: testTimeout}
	c, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c, xhttp2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	hc := &h2conn{t: t, conn: c, settings: map[xhttp2.SettingID]uint32{}}
	hc.fr = xhttp2.NewFramer(c, c)
	hc.fr.AllowIllegalWrites = true
	hc.fr.ReadMetaHeaders = hpack.NewDecoder(65536, nil)
	hc.fr.MaxHeaderListSize = 16 << 20
	hc.henc = hpack.NewEncoder(&hc.hbuf)
	if err := hc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return hc
}

// handshake reads frames until the server's SETTINGS (recorded in
// settings) and acks it. Frames other than SETTINGS and WINDOW_UPDATE
// before it fail the test.
func (c *h2conn) handshake() {
	c.t.Helper()
	for {
		f := c.read()
		switch f := f.(type) {
		case *xhttp2.SettingsFrame:
			if f.IsAck() {
				continue // ours, if the server was quick
			}
			f.ForeachSetting(func(s xhttp2.Setting) error {
				c.settings[s.ID] = s.Val
				return nil
			})
			if err := c.fr.WriteSettingsAck(); err != nil {
				c.t.Fatal(err)
			}
			return
		case *xhttp2.WindowUpdateFrame:
		default:
			c.t.Fatalf("before SETTINGS: %v", f)
		}
	}
}

// encode returns an HPACK block of the name/value pairs, encoded as given
// (upper case included).
func (c *h2conn) encode(kv ...string) []byte {
	c.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		c.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

// reqHeaders are the pseudo-headers of a request for path, followed by kv.
func reqHeaders(method, path string, kv ...string) []string {
	return append([]string{":method", method, ":scheme", "https", ":authority", "example.com", ":path", path}, kv...)
}

// writeHeaders sends one HEADERS frame (END_HEADERS) for stream id.
func (c *h2conn) writeHeaders(id uint32, endStream bool, kv ...string) {
	c.t.Helper()
	err := c.fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: id, BlockFragment: c.encode(kv...), EndStream: endStream, EndHeaders: true})
	if err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next frame; a read error fails the test.
func (c *h2conn) read() xhttp2.Frame {
	c.t.Helper()
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.t.Fatalf("reading frame: %v", err)
	}
	return f
}

// readUntil reads frames until match returns true and returns that
// frame; it acks PINGs on the way. A read error (EOF included) fails the
// test.
func (c *h2conn) readUntil(what string, match func(xhttp2.Frame) bool) xhttp2.Frame {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(f) {
			return f
		}
		if p, ok := f.(*xhttp2.PingFrame); ok && !p.IsAck() {
			c.fr.WritePing(true, p.Data)
		}
	}
}

// connEnd reads frames until the connection ends and returns the GOAWAY
// seen on the way, if any (its code and last stream id; the frame itself
// does not outlive the next read). The error is what ended the read.
func (c *h2conn) connEnd() (goaway *xhttp2.GoAwayFrame, err error) {
	var g xhttp2.GoAwayFrame
	seen := false
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if seen {
				return &g, err
			}
			return nil, err
		}
		if ga, ok := f.(*xhttp2.GoAwayFrame); ok {
			g = xhttp2.GoAwayFrame{FrameHeader: ga.FrameHeader, LastStreamID: ga.LastStreamID, ErrCode: ga.ErrCode}
			seen = true
		}
	}
}

// isConnEnd tells whether err is how a read sees a closed or reset
// connection (not a timeout).
func isConnEnd(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

// streamEnd is how a stream ended, seen from a raw connection.
type streamEnd struct {
	status string // :status of the final response, "" if none
	body   []byte
	rst    xhttp2.ErrCode // RST_STREAM code; valid if reset
	reset  bool
	// connEnded: the connection ended (GOAWAY not covering the stream,
	// GOAWAY with an error, or EOF) before the stream did.
	connEnded bool
	goaway    xhttp2.ErrCode
	done      bool
}

// waitStream reads frames until stream id ends (END_STREAM or RST_STREAM)
// or the connection ends, and returns the stream's response. Frames of
// other streams are kept for their own waitStream; PINGs are acked and
// DATA is given its window back at once.
func (c *h2conn) waitStream(id uint32) streamEnd {
	c.t.Helper()
	if c.streams == nil {
		c.streams = map[uint32]*streamEnd{}
	}
	get := func(id uint32) *streamEnd {
		e := c.streams[id]
		if e == nil {
			e = &streamEnd{}
			c.streams[id] = e
		}
		return e
	}
	for {
		if e := get(id); e.done {
			return *e
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			if isConnEnd(err) {
				e := get(id)
				e.connEnded = true
				return *e
			}
			c.t.Fatalf("stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *xhttp2.GoAwayFrame:
			if f.LastStreamID < id || f.ErrCode != xhttp2.ErrCodeNo {
				e := get(id)
				e.connEnded, e.goaway = true, f.ErrCode
				return *e
			}
		case *xhttp2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
			}
		case *xhttp2.MetaHeadersFrame:
			e := get(f.StreamID)
			if s := f.PseudoValue("status"); s != "" && s[0] != '1' {
				e.status = s
			}
			e.done = f.StreamEnded()
		case *xhttp2.DataFrame:
			e := get(f.StreamID)
			e.body = append(e.body, f.Data()...)
			e.done = f.StreamEnded()
			if n := f.Length; n > 0 { // give the window back: bodies of any size
				c.fr.WriteWindowUpdate(0, n)
				if !e.done {
					c.fr.WriteWindowUpdate(f.StreamID, n)
				}
			}
		case *xhttp2.RSTStreamFrame:
			e := get(f.StreamID)
			e.reset, e.rst, e.done = true, f.ErrCode, true
		}
	}
}

// gauge counts things in progress (running handlers), remembers the
// highest count, and lets a test wait for the count to drop to zero.
type gauge struct {
	mu   sync.Mutex
	n    int
	max  int
	zero chan struct{} // closed while n == 0
}

func newGauge() *gauge {
	g := &gauge{zero: make(chan struct{})}
	close(g.zero)
	return g
}

func (g *gauge) inc() {
	g.mu.Lock()
	if g.n == 0 {
		g.zero = make(chan struct{})
	}
	g.n++
	g.max = max(g.max, g.n)
	g.mu.Unlock()
}

func (g *gauge) dec() {
	g.mu.Lock()
	g.n--
	if g.n == 0 {
		close(g.zero)
	}
	g.mu.Unlock()
}

func (g *gauge) load() (n, highest int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n, g.max
}

// waitZero waits until the count is zero; false after testTimeout.
func (g *gauge) waitZero() bool {
	timeout := time.NewTimer(testTimeout)
	defer timeout.Stop()
	for {
		g.mu.Lock()
		z := g.zero
		g.mu.Unlock()
		select {
		case <-z:
			g.mu.Lock()
			n := g.n
			g.mu.Unlock()
			if n == 0 {
				return true
			}
		case <-timeout.C:
			return false
		}
	}
}

// recv waits for a value from ch; after testTimeout it fails the test.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
