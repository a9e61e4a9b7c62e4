// Package http2 is the edge's own HTTP/2 server (RFC 9113), for TLS
// connections that negotiated "h2".
//
// net/http's HTTP/2 server runs every frame write through one serving
// goroutine: a handler hands each HEADERS and DATA frame over a channel,
// waits for it to be written, and the writer starts a goroutine per write
// that may block. For small responses that hand-off is most of the cost.
// Here a handler, on a reused worker goroutine, writes its own frames
// under the connection's write lock; the last handler still running
// flushes for all, so the responses to a burst of requests share one
// write (a 50µs backstop bounds the wait behind a slow one). Response
// headers are HPACK-coded without the dynamic table (headerBlock). One
// read loop per connection parses frames with x/net's Framer and HPACK
// decoder. Flow control, stream states and limits follow RFC 9113 and
// net/http's choices where the RFC leaves room.
package http2

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outpost-edge/outpost/internal/http1"
	"github.com/outpost-edge/outpost/internal/httpwire"
	"github.com/outpost-edge/outpost/internal/tlswrite"
)

const (
	preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

	// What we advertise. The receive windows are net/http's: 1 MiB per
	// stream and per connection, so a fast upload is not held to 64 KiB
	// round trips, and memory per connection stays bounded.
	initialRecvWindow = 1 << 20
	connRecvWindow    = 1 << 20
	maxReadFrameSize  = 16384 // the protocol's default: not advertised
	defaultMaxStreams = 250

	// Protocol defaults (RFC 9113 6.5.2) until the peer's SETTINGS.
	defaultWindow    = 65535
	defaultFrameSize = 16384
	maxWindow        = 1<<31 - 1

	// A response body up to this size is held until the handler returns,
	// so headers (with Content-Length) and body go out in one write.
	bufferSize = 16 << 10

	// Closing after a connection error waits this long for the GOAWAY to
	// reach the peer before the socket closes.
	goAwayLinger = time.Second
)

// Server serves HTTP/2 connections (TLS that negotiated "h2") with Std's
// Handler, IdleTimeout, ReadTimeout, WriteTimeout, MaxHeaderBytes,
// ConnContext, ErrorLog and HTTP2.WriteByteTimeout.
type Server struct {
	Std *http.Server
	// MaxConcurrentStreams advertised to clients; 0 means
	// Std.HTTP2.MaxConcurrentStreams, or 250.
	MaxConcurrentStreams uint32
	// Passer, if set, is offered every GET and HEAD stream that ended
	// with its HEADERS (no body) and carries no TE, before the handler:
	// the edge's pass lane, as http1.Server offers its requests.
	Passer http1.Passer

	// work hands a new stream to a handler goroutine that has finished
	// its last one. A fresh goroutine per stream would grow its stack
	// through the handler chain every time; reused ones keep theirs.
	work chan *stream

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutting atomic.Bool
	closed   chan struct{} // closed when the last connection is gone during Shutdown
}

// New returns a Server for std.
func New(std *http.Server) *Server { return &Server{Std: std, work: make(chan *stream)} }

// workerIdle is how long a handler goroutine waits for another stream
// before it exits.
const workerIdle = 2 * time.Second

// dispatch runs st's handler on an idle worker, or a new one.
func (s *Server) dispatch(st *stream) {
	select {
	case s.work <- st:
	default:
		go s.worker(st)
	}
}

func (s *Server) worker(st *stream) {
	var t *time.Timer
	for {
		st.c.run(st)
		if t == nil {
			t = time.NewTimer(workerIdle)
		} else {
			t.Reset(workerIdle)
		}
		select {
		case st = <-s.work:
		case <-t.C:
			return
		}
	}
}

func (s *Server) maxStreams() uint32 {
	if s.MaxConcurrentStreams > 0 {
		return s.MaxConcurrentStreams
	}
	if s.Std.HTTP2 != nil && s.Std.HTTP2.MaxConcurrentStreams > 0 {
		return uint32(s.Std.HTTP2.MaxConcurrentStreams)
	}
	return defaultMaxStreams
}

func (s *Server) maxHeaderList() uint32 {
	n := s.Std.MaxHeaderBytes
	if n <= 0 {
		n = http.DefaultMaxHeaderBytes
	}
	// net/http's allowance for HPACK's 32-byte per-field overhead.
	return uint32(n + 10*32)
}

func (s *Server) writeByteTimeout() time.Duration {
	if s.Std.HTTP2 != nil {
		return s.Std.HTTP2.WriteByteTimeout
	}
	return 0
}

func (s *Server) logf(format string, args ...any) {
	if s.Std.ErrorLog != nil {
		s.Std.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// ServeConn serves c, usually a *tls.Conn whose handshake is done and
// negotiated "h2", until the connection ends. It blocks.
func (s *Server) ServeConn(c net.Conn) {
	cn := s.newConn(c)
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		c.Close()
		return
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[cn] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, cn)
		if len(s.conns) == 0 && s.closed != nil {
			close(s.closed)
			s.closed = nil
		}
		s.mu.Unlock()
	}()
	cn.serve()
}

// Conns is the number of connections being served.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown sends GOAWAY on every connection, lets the streams already
// started finish, and closes each connection once it has none; it returns
// when all are closed or ctx is done (then it closes the rest).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting.Store(true)
	var done chan struct{}
	if len(s.conns) > 0 {
		if s.closed == nil {
			s.closed = make(chan struct{})
		}
		done = s.closed
	}
	conns := s.snapshot()
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway(xhttp2.ErrCodeNo, false)
	}
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close closes every connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.shutting.Store(true)
	conns := s.snapshot()
	s.mu.Unlock()
	for _, c := range conns {
		c.rwc.Close()
	}
	return nil
}

func (s *Server) snapshot() []*conn {
	out := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// conn is one HTTP/2 connection. The read loop (serve) owns the Framer's
// read side and the fields marked "read loop"; mu guards stream states
// and flow-control windows; wmu guards the write side.
type conn struct {
	s      *Server
	rwc    net.Conn
	tls    *tls.ConnectionState
	remote string
	peer   netip.Addr // remote's address (http1.PeerAddr), for the pass lane
	ctx    context.Context
	cancel context.CancelFunc
	fr     *xhttp2.Framer
	br     *bufio.Reader

	// read loop
	maxID       uint32 // highest client stream ID seen; written under mu too
	sawSettings bool
	unacked     int // our SETTINGS frames not yet acknowledged
	maxStreams  uint32

	mu          sync.Mutex
	streams     map[uint32]*stream
	open        uint32 // streams counted against maxStreams
	handlers    int    // handlers running
	queue       []*stream
	sendConn    int64        // connection send window
	peerWindow  int64        // peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame   int          // peer's SETTINGS_MAX_FRAME_SIZE
	frameSize   atomic.Int32 // the same, for header blocks written under wmu
	recvConn    int64        // connection receive window we granted, left
	connCredit  int64        // bytes consumed, not yet returned in a WINDOW_UPDATE
	goingAway   bool         // GOAWAY sent: no new streams
	resets      [32]uint32   // streams we reset lately
	nresets     uint32
	lastID      uint32
	dead        bool // connection closed: every wait ends
	idle        *time.Timer
	windowReady sync.Cond // send window grew, or a stream or the conn ended

	wmu      sync.Mutex
	waiting  atomic.Int32 // writers queued for wmu; the last one flushes
	bw       *bufio.Writer
	hb       headerBlock
	werr     error
	wbt      time.Duration
	wuntil   time.Time
	flushReq chan struct{}
	done     chan struct{} // closed when the connection is: the flusher ends
	flushNow bool          // this write section flushes regardless of busy
	busy     atomic.Int32  // handlers that have not written their last frame
}

func (s *Server) newConn(rwc net.Conn) *conn {
	c := &conn{
		s:          s,
		rwc:        rwc,
		remote:     rwc.RemoteAddr().String(),
		streams:    map[uint32]*stream{},
		sendConn:   defaultWindow,
		peerWindow: defaultWindow,
		peerFrame:  defaultFrameSize,
		recvConn:   connRecvWindow,
		maxStreams: s.maxStreams(),
		wbt:        s.writeByteTimeout(),
	}
	c.windowReady.L = &c.mu
	c.frameSize.Store(defaultFrameSize)
	if tc, ok := rwc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		c.tls = &st
	}
	ctx := context.Background()
	if s.Std.ConnContext != nil {
		ctx = s.Std.ConnContext(ctx, rwc)
	}
	ctx = context.WithValue(ctx, http.ServerContextKey, s.Std)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, rwc.LocalAddr())
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.br = bufio.NewReaderSize(rwc, 16<<10)
	var out io.Writer = writerOnly{rwc}
	if tc, ok := rwc.(*tls.Conn); ok {
		// A flush of several records leaves in one system call.
		out = tlswrite.Writer(tc)
	}
	c.bw = bufio.NewWriterSize(out, 32<<10)
	c.flushReq = make(chan struct{}, 1)
	c.done = make(chan struct{})
	c.fr = xhttp2.NewFramer(nil, c.br)
	c.fr.SetMaxReadFrameSize(maxReadFrameSize)
	c.fr.MaxHeaderListSize = s.maxHeaderList()
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.SetReuseFrames()
	c.peer = http1.PeerAddr(c.remote)
	return c
}

// writerOnly hides ReadFrom, so bufio does not bypass its buffer.
type writerOnly struct{ io.Writer }

func (c *conn) logf(format string, args ...any) { c.s.logf(format, args...) }

func (c *conn) serve() {
	defer c.close()
	defer func() {
		if err := recover(); err != nil {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.logf("http2: panic in read loop for %v: %v\n%s", c.remote, err, buf)
		}
	}()
	// Our SETTINGS go first; the client's preface may already be in
	// flight.
	c.lockWrite()
	c.writeSettings()
	c.writeWindowUpdate(0, connRecvWindow-defaultWindow)
	c.unacked++
	c.unlockWrite()

	if d := c.prefaceTimeout(); d > 0 {
		c.rwc.SetReadDeadline(time.Now().Add(d))
	}
	var p [len(preface)]byte
	if _, err := io.ReadFull(c.br, p[:]); err != nil || string(p[:]) != preface {
		return
	}
	c.rwc.SetReadDeadline(time.Time{})
	c.armIdle()
	go c.flusher()

	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if c.handleError(f, err) {
				continue
			}
			return
		}
		if err := c.process(f); err != nil {
			if c.handleError(f, err) {
				continue
			}
			return
		}
	}
}

func (c *conn) prefaceTimeout() time.Duration {
	if d := c.s.Std.ReadHeaderTimeout; d > 0 {
		return d
	}
	if d := c.s.Std.ReadTimeout; d > 0 {
		return d
	}
	return 10 * time.Second
}

// handleError answers a frame error: RST_STREAM for a stream error
// (reading goes on), GOAWAY for a connection error (the loop lingers to
// let the GOAWAY arrive, then ends).
func (c *conn) handleError(f xhttp2.Frame, err error) bool {
	var se xhttp2.StreamError
	var ce xhttp2.ConnectionError
	switch {
	case errors.As(err, &se):
		c.resetStream(se.StreamID, se.Code)
		return true
	case errors.Is(err, xhttp2.ErrFrameTooLarge):
		c.fail(xhttp2.ErrCodeFrameSize)
		return false
	case errors.As(err, &ce):
		if f != nil {
			if id := f.Header().StreamID; id > c.maxID && id%2 == 1 {
				// Under mu: goAway (Shutdown, the idle timer) reads it
				// from other goroutines. (The race detector misses this
				// one: it counts socket I/O as synchronization.)
				c.mu.Lock()
				c.maxID = id
				c.mu.Unlock()
			}
		}
		c.fail(xhttp2.ErrCode(ce))
		return false
	}
	return false // I/O error or EOF: the client is gone
}

// fail sends GOAWAY with code and lingers: frames already on their way
// are read and dropped, so the close does not turn into a TCP reset that
// could destroy the GOAWAY in the peer's receive buffer.
func (c *conn) fail(code xhttp2.ErrCode) {
	c.goAway(code, true)
	c.rwc.SetReadDeadline(time.Now().Add(goAwayLinger))
	io.Copy(io.Discard, c.br)
}

// goAway announces the last stream this connection will serve. With
// an error code the connection is finished; without (Shutdown, idle) the
// streams already started run to their end first.
func (c *conn) goAway(code xhttp2.ErrCode, now bool) {
	c.mu.Lock()
	if c.goingAway && !now {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	c.lastID = c.maxID
	last := c.lastID
	idle := c.open == 0 && c.handlers == 0
	c.mu.Unlock()
	c.lockWrite()
	c.writeGoAway(last, code)
	c.flushNow = true
	c.unlockWrite()
	if !now && idle {
		c.finishGoingAway()
	}
}

// finishGoingAway ends a connection that sent GOAWAY and has no streams
// left. What is buffered goes out first (the last response may still be
// in another writer's hands), then TLS close_notify, so the client sees
// the end instead of a reset that could destroy the tail of its data;
// the read loop lingers for its frames until it closes or goAwayLinger.
func (c *conn) finishGoingAway() {
	c.lockWrite()
	c.flushNow = true
	c.unlockWrite()
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.rwc.SetReadDeadline(time.Now().Add(goAwayLinger))
}

func (c *conn) close() {
	c.mu.Lock()
	c.dead = true
	c.goingAway = true
	if c.idle != nil {
		c.idle.Stop()
	}
	streams := make([]*stream, 0, len(c.streams))
	for _, st := range c.streams {
		streams = append(streams, st)
	}
	c.mu.Unlock()
	c.rwc.Close()
	c.cancel()
	close(c.done)
	for _, st := range streams {
		st.body.fail(errClientGone)
	}
	c.mu.Lock()
	c.windowReady.Broadcast()
	c.mu.Unlock()
}

var (
	errClientGone   = errors.New("http2: client disconnected")
	errStreamClosed = errors.New("http2: stream closed")
	errReset        = errors.New("http2: stream reset by client")
)

// armIdle starts the idle timer when the connection has no streams.
// Called with mu held or from the read loop before any stream exists.
func (c *conn) armIdle() {
	d := c.s.Std.IdleTimeout
	if d == 0 {
		d = c.s.Std.ReadTimeout // net/http's fallback, for both protocols
	}
	if d <= 0 {
		return
	}
	if c.idle == nil {
		c.idle = time.AfterFunc(d, c.onIdle)
		return
	}
	c.idle.Reset(d)
}

func (c *conn) onIdle() {
	c.mu.Lock()
	busy := c.open > 0 || c.handlers > 0 || c.dead
	c.mu.Unlock()
	if !busy {
		c.goAway(xhttp2.ErrCodeNo, false)
	}
}

func (c *conn) process(f xhttp2.Frame) error {
	if !c.sawSettings {
		if _, ok := f.(*xhttp2.SettingsFrame); !ok {
			return xhttp2.ConnectionError(xhttp2.ErrCodeProtocol)
		}
		c.sawSettings = true
	}
	switch f := f.(type) {
	case *xhttp2.MetaHeadersFrame:
		return c.processHeaders(f)
	case *xhttp2.DataFrame:
		return c.processData(f)
	case *xhttp2.SettingsFrame:
		return c.processSettings(f)
	case *xhttp2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *xhttp2.PingFrame:
		if f.StreamID != 0 {
			return xhttp2.ConnectionError(xhttp2.ErrCodeProtocol)
		}
		if !f.IsAck() {
			c.lockWrite()
			c.writePing(f.Data)
			c.unlockWrite()
		}
	case *xhttp2.RSTStreamFrame:
		return c.processReset(f)
	case *xhttp2.PriorityFrame:
		if f.StreamID == f.StreamDep {
			return xhttp2.StreamError{StreamID: f.StreamID, Code: xhttp2.ErrCodeProtocol}
		}
	case *xhttp2.GoAwayFrame:
		// The client will open no more streams; the ones it has finish.
		c.mu.Lock()
		idle := c.open == 0 && c.handlers == 0
		c.goingAway = true
		c.mu.Unlock()
		if idle {
			return io.EOF
		}
	case *xhttp2.PushPromiseFrame:
		return xhttp2.ConnectionError(xhttp2.ErrCodeProtocol)
	}
	// Unknown frame types are ignored (RFC 9113 5.5).
	return nil
}

func (c *conn) processSettings(f *xhttp2.SettingsFrame) error {
	if f.IsAck() {
		c.unacked--
		if c.unacked < 0 {
			return xhttp2.ConnectionError(xhttp2.ErrCodeProtocol)
		}
		return nil
	}
	// Repeated settings are applied in order (RFC 9113 6.5.3).
	if f.NumSettings() > 100 {
		return xhttp2.ConnectionError(xhttp2.ErrCodeProtocol)
	}
	err := f.ForeachSetting(func(s xhttp2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		// SETTINGS_HEADER_TABLE_SIZE needs nothing: responses never use
		// the dynamic table (headerBlock).
		switch s.ID {
		case xhttp2.SettingInitialWindowSize:
			c.mu.Lock()
			defer c.mu.Unlock()
			delta := int64(s.Val) - c.peerWindow
			for _, st := range c.streams {
				if st.sendWin+delta > maxWindow {
					return xhttp2.ConnectionError(xhttp2.ErrCodeFlowControl)
				}
			}
			for _, st := range c.streams {
				st.sendWin += delta
			}
			c.peerWindow = int64(s.Val)
			c.windowReady.Broadcast()
		case xhttp2.SettingMaxFrameSize:
			c.mu.Lock()
			c.peerFrame = int(s.Val)
			c.frameSize.Store(int32(s.Val))
			c.mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.lockWrite()
	c.writeSettingsAck()
	c.unlockWrite()
	return nil
}

func (c *conn) processWindowUpdate(f *xhttp2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		if c.sendConn+inc > maxWindow {
			return xhttp2.ConnectionError(xhttp2.ErrCodeFlowControl)
		}
		c.sendConn += inc
		c.windowReady.Broadcast()
		return nil
	}
	if c.idleStream(f.StreamID) {
		return xhttp2.ConnectionError(xhttp2.ErrCodeProtocol)
	}
	st := c.streams[f.StreamID]
	if st == nil {
		return nil // closed or half-closed: allowed and ignored
	}
	if st.sendWin+inc > maxWindow {
		return xhttp2.StreamError{StreamID: f.StreamID, Code: xhttp2.ErrCodeFlowControl}
	}
	st.sendWin += inc
	c.windowReady.Broadcast()
	return nil
}

// idleStream reports whether id names a stream the client never opened.
func (c *conn) idleStream(id uint32) bool {
	return id%2 == 1 && id > c.maxID || id%2 == 0
}

func (c *conn) processReset(f *xhttp2.RSTStreamFrame) error {
	if c.idleStream(f.StreamID) {
		return xhttp2.ConnectionError(xhttp2.ErrCodeProtocol)
	}
	c.mu.Lock()
	st := c.streams[f.StreamID]
	orphan := false
	if st != nil {
		st.resetByPeer = true
		orphan = !st.started
		c.closeStream(st, errReset)
	}
	c.mu.Unlock()
	if st != nil {
		st.body.discard(orphan)
	}
	return nil
}

// resetStream sends RST_STREAM and closes the stream.
func (c *conn) resetStream(id uint32, code xhttp2.ErrCode) {
	c.mu.Lock()
	st := c.streams[id]
	orphan := false
	if st != nil {
		orphan = !st.started
		c.closeStream(st, errStreamClosed)
	}
	c.noteReset(id)
	c.mu.Unlock()
	if st != nil {
		st.body.discard(orphan)
	}
	c.lockWrite()
	c.writeRSTStream(id, code)
	c.unlockWrite()
}

// noteReset remembers that we reset id, with mu held: frames the client
// had already sent on it are dropped, not taken as protocol errors
// (RFC 9113 5.1, "closed").
func (c *conn) noteReset(id uint32) {
	c.resets[c.nresets%uint32(len(c.resets))] = id
	c.nresets++
}

// wasReset reports whether we reset id lately; with mu held.
func (c *conn) wasReset(id uint32) bool {
	for _, r := range c.resets {
		if r == id {
			return true
		}
	}
	return false
}

// closeStream ends st: its request context is canceled, a body read or
// window wait returns, and it stops counting against the stream limit.
// Called with mu held.
func (c *conn) closeStream(st *stream, err error) {
	if st.state == stateClosed {
		return
	}
	st.state = stateClosed
	delete(c.streams, st.id)
	c.open--
	st.cancel()
	st.body.fail(err)
	if !st.started {
		st.started = true // a queued stream never runs
	}
	c.windowReady.Broadcast()
	c.maybeIdle()
}

// maybeIdle, with mu held: a connection without streams starts its idle
// timer, or closes if it is going away.
func (c *conn) maybeIdle() {
	if c.open > 0 || c.handlers > 0 || c.dead {
		// Closed: close stopped the idle timer, and a handler ending
		// later must not set it again (it would hold the connection
		// for IdleTimeout).
		return
	}
	if c.goingAway && !c.dead {
		go c.finishGoingAway()
		return
	}
	c.armIdle()
}

func (c *conn) processData(f *xhttp2.DataFrame) error {
	id := f.StreamID
	if id == 0 || c.idleStream(id) {
		return xhttp2.ConnectionError(xhttp2.ErrCodeProtocol)
	}
	n := int64(f.Length)
	c.mu.Lock()
	if n > c.recvConn {
		c.mu.Unlock()
		return xhttp2.ConnectionError(xhttp2.ErrCodeFlowControl)
	}
	c.recvConn -= n
	st := c.streams[id]
	if st == nil || st.state != stateOpen || st.gotTrailers {
		// Closed, or the client already ended it: the bytes still count
		// against the connection's window, which we give back at once.
		reset := st == nil && c.wasReset(id)
		c.mu.Unlock()
		c.credit(nil, n)
		if reset {
			return nil
		}
		// A stream error, also for a stream closed and forgotten (RFC
		// 9113 5.1 allows either), as net/http: the resets we remember
		// are only the last few, and DATA a client had in flight when
		// we reset its stream (a response done before the upload) must
		// not end the connection once more streams were reset since.
		return xhttp2.StreamError{StreamID: id, Code: xhttp2.ErrCodeStreamClosed}
	}
	if n > st.recvWin {
		c.mu.Unlock()
		c.credit(nil, n)
		return xhttp2.StreamError{StreamID: id, Code: xhttp2.ErrCodeFlowControl}
	}
	st.recvWin -= n
	data := f.Data()
	st.got += int64(len(data))
	if st.declared >= 0 && st.got > st.declared {
		c.mu.Unlock()
		c.credit(nil, n)
		return xhttp2.StreamError{StreamID: id, Code: xhttp2.ErrCodeProtocol}
	}
	end := f.StreamEnded()
	if end && st.declared >= 0 && st.got != st.declared {
		c.mu.Unlock()
		c.credit(nil, n)
		return xhttp2.StreamError{StreamID: id, Code: xhttp2.ErrCodeProtocol}
	}
	if end {
		c.remoteDone(st)
	}
	c.mu.Unlock()
	// Padding is never read by the handler: return its credit now.
	if pad := n - int64(len(data)); pad > 0 {
		c.credit(st, pad)
	}
	if len(data) > 0 && !st.body.push(data) {
		// The handler is done with the body: drop the bytes, give the
		// connection's credit back (the stream's does not matter).
		c.credit(nil, int64(len(data)))
	}
	if end {
		st.body.end(nil)
	}
	return nil
}

// remoteDone records the client's END_STREAM. With mu held.
func (c *conn) remoteDone(st *stream) {
	switch st.state {
	case stateOpen:
		st.state = stateHalfClosedRemote
	case stateHalfClosedLocal:
		c.closeStream(st, nil)
	}
}

func (c *conn) processHeaders(f *xhttp2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 != 1 {
		return xhttp2.ConnectionError(xhttp2.ErrCodeProtocol)
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		defer c.mu.Unlock()
		if st.state != stateOpen && st.state != stateHalfClosedLocal {
			return xhttp2.StreamError{StreamID: id, Code: xhttp2.ErrCodeStreamClosed}
		}
		return c.trailers(st, f)
	}
	if id <= c.maxID {
		reset := c.wasReset(id)
		c.mu.Unlock()
		if reset {
			return nil // trailers the client sent before our RST_STREAM
		}
		if f.StreamEnded() && len(f.PseudoFields()) == 0 {
			// Trailers on a stream we reset longer ago than the resets
			// we remember (see processData): a stream error. A request
			// reusing a stream ID is still a connection error.
			return xhttp2.StreamError{StreamID: id, Code: xhttp2.ErrCodeStreamClosed}
		}
		return xhttp2.ConnectionError(xhttp2.ErrCodeStreamClosed)
	}
	c.maxID = id
	if c.goingAway {
		c.mu.Unlock()
		// Above the GOAWAY's last stream: ignored (RFC 9113 6.8); the
		// client knows it was not served and retries elsewhere.
		return nil
	}
	if c.open+1 > c.maxStreams {
		c.mu.Unlock()
		code := xhttp2.ErrCodeProtocol
		if c.unacked > 0 {
			code = xhttp2.ErrCodeRefusedStream
		}
		return xhttp2.StreamError{StreamID: id, Code: code}
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.mu.Unlock()
		return xhttp2.StreamError{StreamID: id, Code: xhttp2.ErrCodeProtocol}
	}
	c.mu.Unlock()

	req, declared, expect, err := c.newRequest(f)
	if err != nil {
		return err
	}
	if checkHeaders(req.Header) != nil {
		// Malformed (RFC 9113 8.2.2).
		return xhttp2.StreamError{StreamID: id, Code: xhttp2.ErrCodeProtocol}
	}
	st := c.newStream(id, req, declared, f.StreamEnded(), expect)
	handler := c.handler()
	if f.Truncated {
		handler = http.HandlerFunc(headerTooLarge)
	}
	st.handler, st.truncated = handler, f.Truncated

	c.mu.Lock()
	if c.idle != nil {
		c.idle.Stop()
	}
	st.sendWin = c.peerWindow
	c.streams[id] = st
	c.open++
	c.armWriteDeadline(st) // WriteTimeout's, once the stream is known
	// Handlers of streams the client reset keep running until they
	// notice; new ones wait in line behind them instead of piling up,
	// and a client that resets faster than handlers end (CVE-2023-44487)
	// is sent away.
	if c.handlers >= int(c.maxStreams) {
		if len(c.queue) >= 4*int(c.maxStreams) {
			c.mu.Unlock()
			return xhttp2.ConnectionError(xhttp2.ErrCodeEnhanceYourCalm)
		}
		c.queue = append(c.queue, st)
		c.mu.Unlock()
		return nil
	}
	c.handlers++
	st.started = true
	st.counted = true
	c.busy.Add(1)
	c.mu.Unlock()
	c.s.dispatch(st)
	return nil
}

func (c *conn) handler() http.Handler {
	if h := c.s.Std.Handler; h != nil {
		return h
	}
	return http.DefaultServeMux
}

func headerTooLarge(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusRequestHeaderFieldsTooLarge)
	io.WriteString(w, "<h1>HTTP Error 431</h1><p>Request Header Field(s) Too Large</p>")
}

// trailers takes a HEADERS frame on an open stream: the request's
// trailers, which must end the stream. With mu held.
func (c *conn) trailers(st *stream, f *xhttp2.MetaHeadersFrame) error {
	if st.gotTrailers {
		return xhttp2.ConnectionError(xhttp2.ErrCodeProtocol)
	}
	st.gotTrailers = true
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
		return xhttp2.StreamError{StreamID: st.id, Code: xhttp2.ErrCodeProtocol}
	}
	if st.declared >= 0 && st.got != st.declared {
		return xhttp2.StreamError{StreamID: st.id, Code: xhttp2.ErrCodeProtocol}
	}
	var tr http.Header
	if st.req.Trailer != nil {
		tr = http.Header{}
		for _, hf := range f.RegularFields() {
			key := httpwire.CanonicalName(hf.Name)
			if !httpguts.ValidTrailerHeader(key) {
				return xhttp2.StreamError{StreamID: st.id, Code: xhttp2.ErrCodeProtocol}
			}
			tr[key] = append(tr[key], hf.Value)
		}
	}
	c.remoteDone(st)
	st.body.setTrailers(tr)
	st.body.end(nil)
	return nil
}

// run serves st's request, then any queued stream's.
func (c *conn) run(st *stream) {
	for st != nil {
		st = c.runOne(st)
	}
}

// runOne serves st and returns the queued stream to serve next, if any.
func (c *conn) runOne(st *stream) *stream {
	returned := false
	defer func() {
		if returned {
			return
		}
		// The handler called runtime.Goexit (t.FailNow does): this
		// goroutine ends here. Without this the stream's bookkeeping
		// (busy, handlers) never ended, and a queued stream never ran.
		if next := c.afterStream(st); next != nil {
			c.s.dispatch(next)
		}
	}()
	c.serveStream(st)
	returned = true
	return c.afterStream(st)
}

// afterStream settles st's handler's end and takes the next queued
// stream, counted; with none, the handler slot is given back.
func (c *conn) afterStream(st *stream) *stream {
	if st.counted {
		// Ended without a final frame of its own (reset, or the
		// client went away): it still owes the flush.
		c.lockWrite()
		c.doneWriting(st)
		c.unlockWrite()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.wtimer != nil {
		// Its handler is done waiting for window. A timer left set
		// holds the connection until the deadline (WriteTimeout, or
		// whatever the handler set), long after it closed.
		st.wtimer.Stop()
	}
	for len(c.queue) > 0 {
		next := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		if !next.started {
			next.started = true
			next.counted = true
			c.busy.Add(1)
			return next
		}
	}
	c.handlers--
	c.maybeIdle()
	return nil
}

func (c *conn) serveStream(st *stream) {
	rw := &st.rw
	handled := false
	defer func() {
		st.cancel()
		err := recover()
		if err == nil && handled {
			return
		}
		// A panic, or runtime.Goexit (err == nil), which net/http also
		// answers as a panic: the stream is reset, or the client would
		// wait for its end forever.
		if err != nil && err != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.logf("http2: panic serving %v: %v\n%s", c.remote, err, buf)
		}
		removeForm(st.req)
		st.body.close()
		c.resetStream(st.id, xhttp2.ErrCodeInternal)
	}()
	if !c.pass(st) {
		st.handler.ServeHTTP(rw, st.req)
		removeForm(st.req)
	}
	rw.finish()
	st.body.close()
	handled = true
}

// pass offers st to the Passer and reports whether it answered. Only
// bodiless GETs and HEADs without TE are offered: a "te: trailers" asks
// for what only the handler chain forwards.
func (c *conn) pass(st *stream) bool {
	p, r := c.s.Passer, st.req
	// A stream its HEADERS ended has no body (newRequest's NoBody); one
	// that declared "content-length: 0" may still send DATA.
	if p == nil || r.Body != http.NoBody || (r.Method != http.MethodGet && r.Method != http.MethodHead) || st.truncated {
		return false
	}
	if _, te := r.Header["Te"]; te {
		return false
	}
	token := p.Takes(r.Host, r.RequestURI, c.peer)
	if token == nil {
		return false
	}
	return p.Pass(&st.rw, &http1.Pass{
		Method: r.Method, Target: r.RequestURI, Host: r.Host, Header: r.Header,
		RemoteAddr: c.remote, Peer: c.peer, TLS: r.TLS != nil, Conn: r.Context(), HTTP2: true,
	}, token)
}

// removeForm deletes the temporary files of a multipart form the
// handler parsed, as net/http does once the handler returns: nothing
// else would, and they would fill the disk. Before the response ends, so
// the client never sees a response whose files are still there.
func removeForm(req *http.Request) {
	if req.MultipartForm != nil {
		req.MultipartForm.RemoveAll()
	}
}

// newRequest builds the request HEADERS describe (RFC 9113 8.3), as
// net/http's HTTP/2 server does; a malformed one is a stream error.
func (c *conn) newRequest(f *xhttp2.MetaHeadersFrame) (req *http.Request, declared int64, expect bool, err error) {
	bad := xhttp2.StreamError{StreamID: f.StreamID, Code: xhttp2.ErrCodeProtocol}
	method := f.PseudoValue("method")
	scheme := f.PseudoValue("scheme")
	authority := f.PseudoValue("authority")
	path := f.PseudoValue("path")
	if f.PseudoValue("protocol") != "" {
		return nil, 0, false, bad // no extended CONNECT
	}
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method", ":scheme", ":authority", ":path":
		default:
			return nil, 0, false, bad
		}
	}
	connect := method == "CONNECT"
	if connect {
		if path != "" || scheme != "" || authority == "" {
			return nil, 0, false, bad
		}
	} else if method == "" || path == "" || (scheme != "https" && scheme != "http") {
		return nil, 0, false, bad
	}
	regular := f.RegularFields()
	header := make(http.Header, len(regular))
	// One backing array for the values, as net/textproto does: a field
	// seen once (nearly all) costs no allocation of its own.
	vals := make([]string, len(regular))
	for i, hf := range regular {
		key := httpwire.CanonicalName(hf.Name)
		if vv, ok := header[key]; ok {
			header[key] = append(vv, hf.Value)
			continue
		}
		vals[i] = hf.Value
		header[key] = vals[i : i+1 : i+1]
	}
	req = &http.Request{
		Method:     method,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     header,
		RemoteAddr: c.remote,
	}
	if scheme == "https" {
		req.TLS = c.tls
	}
	if v, ok := header["Expect"]; ok && httpguts.HeaderValuesContainsToken(v, "100-continue") {
		expect = true
		delete(header, "Expect")
	}
	if cookies := header["Cookie"]; len(cookies) > 1 {
		header["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	if v, ok := header["Trailer"]; ok {
		req.Trailer = declaredTrailers(v)
		delete(header, "Trailer")
	}
	if host, ok := header["Host"]; ok {
		if len(host) > 1 || authority != "" && host[0] != authority {
			return nil, 0, false, bad
		}
		if authority == "" {
			authority = host[0]
		}
		delete(header, "Host")
	}
	if authority != "" {
		if (scheme == "http" || scheme == "https") && strings.IndexByte(authority, '@') >= 0 || !httpguts.ValidHostHeader(authority) {
			return nil, 0, false, bad
		}
	}
	req.Host = authority
	if connect {
		req.URL = &url.URL{Host: authority}
		req.RequestURI = authority
	} else {
		if path[0] != '/' && path != "*" {
			return nil, 0, false, bad
		}
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return nil, 0, false, bad
		}
		req.URL = u
		req.RequestURI = path
	}
	declared = -1
	if f.StreamEnded() {
		req.ContentLength = 0
		req.Body = http.NoBody
		declared = 0
	} else {
		req.ContentLength = -1
		if vv, ok := header["Content-Length"]; ok {
			cl, err := strconv.ParseUint(vv[0], 10, 63)
			if err != nil || len(vv) > 1 {
				return nil, 0, false, bad
			}
			req.ContentLength = int64(cl)
			declared = int64(cl)
		}
	}
	return req, declared, expect, nil
}

// lockWrite takes the write side. Writers queue on wmu; the one that
// finds nobody behind it when done flushes, so streams finishing together
// leave in one write.
func (c *conn) lockWrite() {
	c.waiting.Add(1)
	c.wmu.Lock()
	c.waiting.Add(-1)
	if c.wbt > 0 {
		// Move the deadline only when less than 3/4 of the timeout is
		// left: a write that makes no progress for WriteByteTimeout
		// ends the connection, and the hot path rarely pays for a timer.
		now := time.Now()
		if c.wuntil.Sub(now) < c.wbt*3/4 {
			c.wuntil = now.Add(c.wbt)
			c.rwc.SetWriteDeadline(c.wuntil)
		}
	}
}

// flushDelay bounds how long frames wait in the buffer for the streams
// still running to add theirs.
const flushDelay = 50 * time.Microsecond

// flusher is the backstop for frames left buffered while other handlers
// ran (see unlockWrite): a slow handler delays the others' responses by
// flushDelay, not by its own duration.
func (c *conn) flusher() {
	for {
		select {
		case <-c.flushReq:
		case <-c.done:
			// Not c.ctx: it derives from ConnContext's, which the
			// application may cancel while the connection serves on.
			return
		}
		time.Sleep(flushDelay)
		c.wmu.Lock()
		if c.werr == nil && c.bw.Buffered() > 0 {
			if err := c.bw.Flush(); err != nil {
				c.werr = err
				c.rwc.Close()
			}
		}
		c.wmu.Unlock()
	}
}

// doneWriting, with wmu held, records that st's handler wrote its last
// frame: the flush it skipped is now another stream's, or its own.
func (c *conn) doneWriting(st *stream) {
	if st.counted {
		st.counted = false
		c.busy.Add(-1)
	}
}

// unlockWrite flushes unless another writer waits or handlers are still
// running, and releases wmu. A write error closes the connection: every
// later write fails with it.
func (c *conn) unlockWrite() error {
	if c.werr == nil {
		// A frame that did not fit the buffer made bufio write to the
		// socket: an error there sticks in bufio, and every later frame
		// is dropped. Take it now (Write(nil) only reports it), not at
		// a flush left to others: until then this writer's writes
		// reported success.
		if _, err := c.bw.Write(nil); err != nil {
			c.werr = err
		}
	}
	if c.werr == nil && c.waiting.Load() == 0 && c.bw.Buffered() > 0 {
		if c.busy.Load() > 0 && !c.flushNow {
			// Handlers still running will write, and the last one to
			// finish flushes for all: the responses of a client's burst
			// of requests leave in one write, as from an event loop.
			select {
			case c.flushReq <- struct{}{}:
			default:
			}
		} else if err := c.bw.Flush(); err != nil {
			c.werr = err
		}
	}
	c.flushNow = false
	err := c.werr
	c.wmu.Unlock()
	if err != nil {
		c.rwc.Close()
	}
	return err
}
