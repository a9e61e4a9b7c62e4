// Package http1 is the edge's HTTP/1.1 server for the hot path, plain and
// over TLS. It serves the requests that make up nearly all edge traffic —
// HTTP/1.1, origin-form, one Host, no body or a Content-Length one, no
// upgrade or 100-continue — to the same http.Handler chain as net/http
// would, without net/http's per-request costs (a background read
// goroutine, sorted and cloned header maps, buffered chunk writers). The
// first request that is anything else, malformed ones included, and the
// rest of its connection, go to a net/http.Server: the reference
// implementation keeps deciding everything unusual, so this package never
// has to answer a strange request itself. Over TLS, connections that
// negotiate HTTP/2 (or acme-tls/1) go to net/http whole after the
// handshake.
//
// It exists because pass-through cost was measured: net/http's server and
// httputil.ReverseProxy cost 2.5 times what a minimal Go loop or HAProxy
// spends per request (see bench/http/passthrough.sh and docs/lb.md).
package http1

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
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/httpwire"
	"github.com/outpost-edge/outpost/internal/tlswrite"
)

// Server serves HTTP/1.1 on the fast path and hands every other connection
// to Std, whose Handler, timeouts, MaxHeaderBytes, ConnContext and ErrorLog
// it applies to the requests it serves itself.
type Server struct {
	Std *http.Server
	// OnHandOff, if set, is called with the reason each time a
	// connection goes to Std: "request" (a request not of the fast
	// path's shape, malformed ones included), "head_size" (a head over
	// 8 KiB or max_header_bytes), "alpn" (TLS that negotiated HTTP/2 or
	// acme-tls/1). Operators see from it how much traffic the fast path
	// serves.
	OnHandOff func(reason string)
	// Passer, if set, is offered every bodiless GET and HEAD of the fast
	// path's shape before an http.Request is built for it (see Pass).
	Passer Passer

	tlsConf  *tls.Config // ServeTLS's; nil: plain
	mu       sync.Mutex
	conns    map[*conn]struct{}
	lns      map[net.Listener]struct{}
	handoff  *handoffListener
	stdDone  chan struct{}
	shutting atomic.Bool
}

// New returns a Server in front of std.
func New(std *http.Server) *Server {
	return &Server{Std: std}
}

// Serve accepts connections on ln until it is closed or the server shuts
// down. It returns http.ErrServerClosed after Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
		s.lns = map[net.Listener]struct{}{}
	}
	if s.handoff == nil {
		s.handoff = &handoffListener{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
		s.stdDone = make(chan struct{})
		go func() {
			defer close(s.stdDone)
			s.Std.Serve(s.handoff)
		}()
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		rw, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return http.ErrServerClosed
			}
			// EMFILE and friends: wait and retry, as net/http does.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logf("http1: accept error: %v; retrying in %v", err, backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := s.newConn(rw)
		s.mu.Lock()
		if s.shutting.Load() {
			s.mu.Unlock()
			rw.Close()
			return http.ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go c.serve()
	}
}

// ServeTLS is Serve over TLS with Std.TLSConfig. A connection that
// negotiates another protocol than HTTP/1.1 (h2, acme-tls/1) goes to Std
// whole after the handshake, as net/http would dispatch it; HTTP/1.1
// requests get Request.TLS as net/http sets it, also on a connection
// handed to Std part way.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.Std.TLSConfig == nil {
		return errors.New("http1: ServeTLS needs Std.TLSConfig")
	}
	s.mu.Lock()
	if s.tlsConf == nil {
		cfg := s.Std.TLSConfig.Clone()
		if !slices.Contains(cfg.NextProtos, "http/1.1") {
			cfg.NextProtos = append(cfg.NextProtos, "http/1.1")
		}
		s.tlsConf = cfg
		// A connection handed over after its first requests is no
		// *tls.Conn to net/http: give its requests their TLS state.
		next, connCtx := s.Std.Handler, s.Std.ConnContext
		s.Std.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(*prefixConn); ok && pc.tls != nil {
				ctx = context.WithValue(ctx, tlsStateKey{}, pc.tls)
			}
			if connCtx != nil {
				ctx = connCtx(ctx, c)
			}
			return ctx
		}
		s.Std.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok && r.TLS == nil {
				r.TLS = st
			}
			h := next
			if h == nil {
				h = http.DefaultServeMux
			}
			h.ServeHTTP(w, r)
		})
	}
	s.mu.Unlock()
	return s.Serve(ln)
}

type tlsStateKey struct{}

func isTemporary(err error) bool {
	type temporary interface{ Temporary() bool }
	var t temporary
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) logf(format string, args ...any) {
	if s.Std.ErrorLog != nil {
		s.Std.ErrorLog.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

// Shutdown stops accepting, closes idle connections, waits for requests in
// flight to finish (or ctx to end), then shuts Std down with the same ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	h := s.stopAccepting()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			break
		}
		select {
		case <-ctx.Done():
			s.closeAll()
			return ctx.Err()
		case <-tick.C:
		}
	}
	if h == nil {
		return s.Std.Shutdown(ctx)
	}
	err := s.Std.Shutdown(ctx)
	h.Close()
	return err
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	h := s.stopAccepting()
	s.closeAll()
	err := s.Std.Close()
	if h != nil {
		h.Close()
	}
	return err
}

// stopAccepting closes the listeners; it returns the hand-off listener,
// nil if Serve never ran.
func (s *Server) stopAccepting() *handoffListener {
	s.shutting.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.lns {
		ln.Close()
	}
	return s.handoff
}

// closeIdle closes connections waiting for a request and reports whether
// none are left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.Load() == stateIdle && c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.raw.Close()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.raw.Close()
	}
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// handoffListener feeds connections the fast path gave up on to Std.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give hands c to Std; false when Std no longer accepts.
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// prefixConn replays bytes the fast path already read.
type prefixConn struct {
	net.Conn
	pre []byte
	tls *tls.ConnectionState // a TLS connection's, for Std's requests
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// ReadFrom keeps sendfile for net/http's responses on a handed-off
// connection.
func (c *prefixConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite lets net/http half-close as it would on the raw connection.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

const (
	stateActive int32 = iota
	stateIdle
	stateClosed
)

// conn is one client connection on the fast path.
type conn struct {
	s      *Server
	raw    net.Conn // as accepted: what Shutdown and Close close
	rwc    net.Conn // what requests are read from: raw, or TLS over it
	remote string
	peer   netip.Addr           // remote's address
	tls    *tls.ConnectionState // after the handshake; nil: plain
	ctx    context.Context      // ConnContext's, with Std and the local address
	// hangUp cancels ctx: when a pass-lane request's watch sees the
	// client leave (the lane's backend request hangs off ctx, and the
	// connection ends with it), and when serve returns.
	hangUp context.CancelCauseFunc
	cr     connReader
	br     *bufio.Reader
	bw     *bufio.Writer
	state  atomic.Int32
	pend   []byte // a response's first bytes while its head waits (see response)
	out    vecWriter
	body   *body // the current request's, until detached
	// lane is the pass lane's response writer, reused from one lane
	// request to the next (one runs at a time, and nothing the lane runs
	// keeps it past its request).
	lane response
	// hdr is the header map of every response, the lane's and the
	// handlers', reused from one request to the next (see
	// response.Header).
	hdr    http.Header
	passed Pass // the lane's request, reused likewise
	// reqHdr is the map the next request's fields are parsed into: the
	// last one's, when the lane served it; nil: a new one. reqVals, the
	// slots of its values, likewise.
	reqHdr  http.Header
	reqVals []string

	// The watch: a read that notices a client hanging up while a bodiless
	// request is served, as net/http's background read does, but only
	// for requests still running after watchDelay.
	watchMu    sync.Mutex
	watchState int // watchOff, watchArmed, watchReading
	watchDone  chan struct{}
	watchStop  bool
	watchTimer *time.Timer
	cancel     context.CancelCauseFunc // the current request's
	gone       bool                    // the client hung up
}

// watchDelay is how long a request runs before its connection is watched
// for the client leaving. Short requests, nearly all of them, never pay
// for the extra goroutine and deadline changes.
const watchDelay = 100 * time.Millisecond

const (
	watchOff = iota
	watchArmed
	watchReading
)

// errClientGone is the cause of a request context canceled because its
// client closed the connection.
var errClientGone = errors.New("http1: client closed the connection")

func (s *Server) newConn(rwc net.Conn) *conn {
	c := &conn{s: s, raw: rwc, rwc: rwc, remote: rwc.RemoteAddr().String()}
	c.peer = PeerAddr(c.remote)
	c.cr.c = c
	ctx := context.WithValue(context.Background(), http.ServerContextKey, s.Std)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, rwc.LocalAddr())
	if s.Std.ConnContext != nil {
		ctx = s.Std.ConnContext(ctx, rwc)
	}
	c.ctx, c.hangUp = context.WithCancelCause(ctx)
	return c
}

// connReader is the buffered reader's source: the byte a watch read, then
// the connection.
type connReader struct {
	c       *conn
	hasByte bool
	b       [1]byte
}

func (r *connReader) Read(p []byte) (int, error) {
	if r.hasByte && len(p) > 0 {
		p[0] = r.b[0]
		r.hasByte = false
		return 1, nil
	}
	return r.c.rwc.Read(p)
}

var (
	brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxFastHead) }}
	bwPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func (c *conn) serve() {
	defer c.s.forget(c)
	handed := false
	defer func() {
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			const size = 64 << 10
			buf := make([]byte, size)
			buf = buf[:runtime.Stack(buf, false)]
			c.s.logf("http: panic serving %v: %v\n%s", c.remote, err, buf)
		}
		if !handed {
			c.rwc.Close()
		}
		c.hangUp(net.ErrClosed)
		if c.body != nil {
			// A panicking handler's body: no goroutine it left may read
			// from the reader the pool hands to another connection. The
			// connection is closed, so a read in progress ends.
			c.body.detach()
		}
		c.release()
	}()
	if c.s.tlsConf != nil {
		if !c.handshake() {
			return
		}
		if p := c.tls.NegotiatedProtocol; p != "" && p != "http/1.1" {
			// h2 (or acme-tls/1): net/http dispatches it.
			c.state.Store(stateClosed)
			c.s.handedOff("alpn")
			handed = c.s.handoff.give(c.rwc)
			return
		}
	}
	c.br = brPool.Get().(*bufio.Reader)
	c.br.Reset(&c.cr)
	c.bw = bwPool.Get().(*bufio.Writer)
	if tc, ok := c.rwc.(*tls.Conn); ok {
		// A body write of several records leaves in one system call.
		c.bw.Reset(tlswrite.Writer(tc))
	} else if out, ok := plainTCP(c.rwc); ok {
		c.out = out
		c.bw.Reset(&c.out)
	} else {
		c.bw.Reset(c.rwc)
	}
	std := c.s.Std
	first := true
	for {
		// Wait for the next request: the idle timeout between requests,
		// the header timeout (net/http's rule: else the read timeout)
		// for a new connection's first.
		c.state.Store(stateIdle)
		if c.s.shutting.Load() && !first {
			return
		}
		wait := std.IdleTimeout
		if wait == 0 {
			wait = std.ReadTimeout
		}
		if first || wait == 0 {
			wait = headerTimeout(std)
		}
		if wait > 0 {
			c.rwc.SetReadDeadline(time.Now().Add(wait))
		} else {
			c.rwc.SetReadDeadline(time.Time{})
		}
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return // Shutdown closed it
		}
		if c.s.shutting.Load() && !first {
			return
		}
		start := time.Now()
		// The header timeout replaces the idle one once a request began
		// (the first request's wait was already bounded by it), but only
		// when the head must still be read: one that came whole in the
		// first read, nearly all of them, reads nothing more.
		var headEnd time.Time
		if d := headerTimeout(std); d > 0 && !first {
			headEnd = start.Add(d)
		}
		first = false
		n, ok := c.readHead(headEnd)
		if n < 0 {
			return // timeout, hang-up or I/O error mid-head: as net/http
		}
		var h head
		if ok {
			raw, _ := c.br.Peek(n)
			h, ok = parseHead(raw, c.reqHdr, c.reqVals)
		}
		var token any
		if ok && c.s.Passer != nil && h.contentLength == 0 && (h.method == http.MethodGet || h.method == http.MethodHead) {
			token = c.s.Passer.Takes(h.host, h.target, c.peer)
		}
		if token != nil {
			served, keep := c.pass(&h, start, token, c.br.Buffered() > n)
			if !keep {
				return
			}
			if served {
				c.br.Discard(n)
				// The lane keeps nothing of the fields once it answered:
				// the next request's go into the same map.
				c.reqHdr, c.reqVals = h.header, h.vals
				continue
			}
		}
		// The fields go with the request to the handler, which may keep
		// them.
		c.reqHdr, c.reqVals = nil, nil
		var req http.Request
		if ok {
			req, ok = h.newRequest()
		}
		if !ok {
			why := "request"
			if n == sizeLimited {
				why = "head_size"
			}
			c.s.handedOff(why)
			handed = c.handOff()
			return
		}
		c.br.Discard(n)
		if !c.serveRequest(&req, start) {
			return
		}
	}
}

// handshake runs the TLS handshake within net/http's bound for it, and
// answers a plain-HTTP request on the TLS port as net/http does.
func (c *conn) handshake() bool {
	tc := tls.Server(tlswrite.Wrap(c.rwc), c.s.tlsConf)
	if d := tlsHandshakeTimeout(c.s.Std); d > 0 {
		dl := time.Now().Add(d)
		c.rwc.SetReadDeadline(dl)
		c.rwc.SetWriteDeadline(dl)
	}
	if err := tc.HandshakeContext(c.ctx); err != nil {
		reason := err.Error()
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			re.Conn.Close()
			reason = "client sent an HTTP request to an HTTPS server"
		}
		c.s.logf("http: TLS handshake error from %s: %v", c.remote, reason)
		return false
	}
	c.rwc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.tls = &st
	c.rwc = tc
	return true
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// tlsHandshakeTimeout is net/http's: the smallest of the read-header,
// read and write timeouts that are set.
func tlsHandshakeTimeout(s *http.Server) time.Duration {
	var d time.Duration
	for _, t := range []time.Duration{s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout} {
		if t > 0 && (d == 0 || t < d) {
			d = t
		}
	}
	return d
}

// headerTimeout is net/http's: ReadHeaderTimeout, else ReadTimeout.
func headerTimeout(s *http.Server) time.Duration {
	if s.ReadHeaderTimeout > 0 {
		return s.ReadHeaderTimeout
	}
	return s.ReadTimeout
}

// readHead waits until the buffer holds a complete head and returns its
// length, reading from the connection no later than end (zero: under the
// deadline set). ok is false for a head the fast path leaves to net/http:
// n is sizeLimited for one too large, 0 for one not CRLF-delimited. n < 0:
// the connection failed.
func (c *conn) readHead(end time.Time) (n int, ok bool) {
	from := 0
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		limit := c.s.Std.MaxHeaderBytes
		if limit <= 0 {
			limit = http.DefaultMaxHeaderBytes
		}
		switch end := findEnd(buf, from); {
		case end > limit:
			return sizeLimited, false // net/http's to refuse (431) or not
		case end > 0:
			return end, true
		case end < 0:
			return 0, false
		}
		if len(buf) >= maxFastHead || len(buf) > limit {
			return sizeLimited, false
		}
		from = max(len(buf)-3, 0)
		if !end.IsZero() {
			c.rwc.SetReadDeadline(end)
			end = time.Time{}
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			if len(buf) > 0 && errors.Is(err, bufio.ErrBufferFull) {
				return sizeLimited, false
			}
			if len(buf) > 0 && err == io.EOF {
				// A head cut short: net/http answers what it makes
				// of it (nothing, or 400).
				return 0, false
			}
			return -1, false
		}
	}
}

// sizeLimited is readHead's n, with ok false, for a head left to
// net/http for its size (any other is 0).
const sizeLimited = 1

func (s *Server) handedOff(why string) {
	if s.OnHandOff != nil {
		s.OnHandOff(why)
	}
}

// handOff gives the connection, with what was read of it, to Std.
func (c *conn) handOff() bool {
	pre := []byte(nil)
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		pre = append(pre, b...)
	}
	if c.cr.hasByte { // cannot happen between requests; kept exact anyway
		pre = append(pre, c.cr.b[0])
		c.cr.hasByte = false
	}
	c.rwc.SetDeadline(time.Time{})
	c.state.Store(stateClosed)
	return c.s.handoff.give(&prefixConn{Conn: c.rwc, pre: pre, tls: c.tls})
}

func (c *conn) release() {
	if c.br != nil {
		c.br.Reset(nil)
		brPool.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		bwPool.Put(c.bw)
		c.bw = nil
	}
	if c.watchTimer != nil {
		c.watchTimer.Stop()
	}
}

// Pass is a bodiless GET or HEAD offered to a Passer: the parsed head,
// before any http.Request is built for it.
type Pass struct {
	Method, Target, Host string
	// Header is the request's fields without Host, canonically named;
	// it belongs to this request alone.
	Header     http.Header
	RemoteAddr string
	// Peer is RemoteAddr's address (see PeerAddr), parsed once per
	// connection.
	Peer netip.Addr
	TLS  bool
	// Conn is the connection's context (Std.ConnContext's, with the
	// server and local address values), canceled when the client is seen
	// to hang up during the request; for HTTP/2, the stream's.
	Conn context.Context
	// HTTP2 is set for a stream of internal/http2's server, whose
	// deadlines are the stream's, not the connection's.
	HTTP2 bool
	// Kept is what the Passer, and the handler it hands the request to,
	// keep for the next request: carried from one request to the next of
	// an HTTP/1.1 connection (one at a time), never read by the server.
	// A Passer reuses its per-request state through it instead of
	// allocating it again; it starts empty on every HTTP/2 stream.
	Kept PassKept

	c         *conn // HTTP/1.1's
	start     time.Time
	watchable bool
}

// Watch starts watching an HTTP/1.1 request's connection for the client
// hanging up, as the handler's requests are watched once they have run
// for watchDelay: a hang-up cancels Conn (cause: the client closed the
// connection) and the connection is not reused. The lane calls it for a
// request that turns out slow — its backend has not answered yet — so a
// fast one costs no watch at all. It does nothing for HTTP/2 (Conn is the
// stream's, which a reset ends) or when the client pipelined another
// request (the watch would read it).
func (p *Pass) Watch() {
	if p.c != nil && p.watchable {
		p.watchable = false // once: a retry's call finds it watched
		// The watch reads under the deadline a handler's request has
		// (read_timeout, or none), not the idle or header timeout that
		// may still be set: a hang-up after those is noticed too.
		var end time.Time
		if d := p.c.s.Std.ReadTimeout; d > 0 {
			end = p.start.Add(d)
		}
		p.c.rwc.SetReadDeadline(end)
		p.c.arm(p.c.hangUp, 0)
	}
}

// Start is when the server began to read an HTTP/1.1 request; zero for
// HTTP/2.
func (p *Pass) Start() time.Time { return p.start }

// PassKept is Pass.Kept: one slot for the Passer, one for its handler.
type PassKept struct{ Lane, Handler any }

// PeerAddr is the address of a connection's peer, given as its
// RemoteAddr string, IPv4-mapped ones unmapped; the zero Addr (not valid)
// when it does not parse.
func PeerAddr(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// A Passer serves requests on a lane of its own, without the handler.
// Takes says, cheaply and without effect, whether a request is the lane's:
// nil if not, else a token of its choosing (a pointer, so that returning
// it allocates nothing) that is handed to Pass. Pass either answers p
// through w and reports true, or reports false having written nothing,
// and the request is served by the handler as usual. Panics are the
// handler's: http.ErrAbortHandler cuts the connection.
type Passer interface {
	Takes(host, target string, peer netip.Addr) (token any)
	Pass(w http.ResponseWriter, p *Pass, token any) bool
}

// pass offers h to the Passer, with the token its Takes gave. served
// reports whether it answered; keep, whether the connection may carry
// another request. pipelined: the client sent more after h, so a watch
// (see Pass.Watch) would read the next request, not a hang-up.
func (c *conn) pass(h *head, start time.Time, token any, pipelined bool) (served, keep bool) {
	std := c.s.Std
	if std.WriteTimeout > 0 {
		c.rwc.SetWriteDeadline(start.Add(std.WriteTimeout))
	}
	c.lane = response{c: c, closeReq: h.close, cl: -1, isHead: h.method == http.MethodHead}
	w := &c.lane
	c.passed = Pass{Method: h.method, Target: h.target, Host: h.host, Header: h.header, RemoteAddr: c.remote, Peer: c.peer, TLS: c.tls != nil, Conn: c.ctx,
		Kept: c.passed.Kept, c: c, start: start, watchable: !pipelined}
	served = c.s.Passer.Pass(w, &c.passed, token)
	c.disarm()
	if !served {
		return false, !c.gone
	}
	w.finish()
	if w.err != nil || w.closeAfter || c.gone {
		return true, false
	}
	if std.WriteTimeout > 0 {
		c.rwc.SetWriteDeadline(time.Time{})
	}
	return true, true
}

// serveRequest runs the handler for req and finishes its response. It
// reports whether the connection may carry another request.
func (c *conn) serveRequest(tmpl *http.Request, start time.Time) bool {
	std := c.s.Std
	if std.ReadTimeout > 0 {
		c.rwc.SetReadDeadline(start.Add(std.ReadTimeout))
	} else {
		c.rwc.SetReadDeadline(time.Time{})
	}
	if std.WriteTimeout > 0 {
		c.rwc.SetWriteDeadline(start.Add(std.WriteTimeout))
	}
	ctx, cancel := context.WithCancelCause(c.ctx)
	// Also when the handler panics (ReverseProxy's abort), as net/http.
	defer cancel(context.Canceled)
	tmpl.RemoteAddr = c.remote
	tmpl.TLS = c.tls
	req := tmpl.WithContext(ctx)
	w := &response{c: c, closeReq: req.Close, cl: -1, isHead: req.Method == http.MethodHead}
	var rb *body
	if req.ContentLength > 0 {
		rb = &body{SizedBody: httpwire.SizedBody{R: c.br, Left: req.ContentLength}}
		rb.unread.Store(req.ContentLength)
		req.Body = rb
		c.body = rb
		w.reqBody = rb
	}
	if rb == nil && c.br.Buffered() == 0 {
		c.arm(cancel, watchDelay)
	} else if rb != nil {
		// As net/http: watch once the body has been read.
		rb.atEOF = func() {
			if c.br.Buffered() == 0 {
				c.arm(cancel, watchDelay)
			}
		}
	}
	handler := std.Handler
	if handler == nil {
		handler = http.DefaultServeMux
	}
	handler.ServeHTTP(w, req)
	c.disarm()
	w.finish()
	cancel(context.Canceled)
	var left int64
	if rb != nil {
		// The handler may have left a goroutine reading the body (a
		// transport still writing it upstream does): its reads fail from
		// now on, as net/http's closed body's do, so the connection's
		// reader — and the next request in it — is the server's alone.
		// As net/http, after the response went out: such a read may wait
		// for the client, which may wait for the response.
		left = rb.detach()
		c.body = nil
	}
	if w.err != nil || w.closeAfter || c.gone {
		return false
	}
	if left > 0 {
		// net/http's rule: read up to 256KiB of an unread body to keep
		// the connection, close it for more.
		if left > maxDiscard {
			return false
		}
		if _, err := io.CopyN(io.Discard, c.br, left); err != nil {
			return false
		}
	}
	if std.WriteTimeout > 0 {
		c.rwc.SetWriteDeadline(time.Time{})
	}
	return true
}

const maxDiscard = 256 << 10

// arm starts the watch timer, to fire after delay, for the request whose
// context cancel ends.
func (c *conn) arm(cancel context.CancelCauseFunc, delay time.Duration) {
	c.watchMu.Lock()
	c.cancel = cancel
	c.watchState = watchArmed
	c.watchStop = false
	if c.watchTimer == nil {
		c.watchTimer = time.AfterFunc(delay, c.watch)
	} else {
		c.watchTimer.Reset(delay)
	}
	c.watchMu.Unlock()
}

// watching reports whether the current request is watched, or about to be.
func (c *conn) watching() bool {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	return c.watchState != watchOff
}

// watch reads one byte while the handler runs: EOF or a reset means the
// client left, and the request's context is canceled; a byte (the next
// pipelined request) is kept for the reader.
func (c *conn) watch() {
	c.watchMu.Lock()
	if c.watchState != watchArmed {
		c.watchMu.Unlock()
		return
	}
	c.watchState = watchReading
	done := make(chan struct{})
	c.watchDone = done
	cancel := c.cancel
	c.watchMu.Unlock()
	n, err := c.rwc.Read(c.cr.b[:])
	c.watchMu.Lock()
	if n == 1 {
		c.cr.hasByte = true
	}
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	if err != nil && !c.watchStop && !timeout {
		c.gone = true
		cancel(errClientGone)
	}
	c.watchState = watchOff
	c.watchMu.Unlock()
	close(done)
}

// disarm ends the watch before the response is finished, stopping a read
// in progress the way net/http does: a deadline in the past.
func (c *conn) disarm() {
	c.watchMu.Lock()
	switch c.watchState {
	case watchArmed:
		c.watchTimer.Stop()
		c.watchState = watchOff
		c.watchMu.Unlock()
		return
	case watchOff:
		c.watchMu.Unlock()
		return
	}
	c.watchStop = true
	done := c.watchDone
	c.watchMu.Unlock()
	c.rwc.SetReadDeadline(aLongTimeAgo)
	<-done
	c.rwc.SetReadDeadline(time.Time{})
}

var aLongTimeAgo = time.Unix(1, 0)

// body is a Content-Length request body. Its mutex orders reads from
// goroutines the handler started against the server taking the
// connection's reader back (detach), as net/http's body.mu does.
type body struct {
	mu sync.Mutex
	httpwire.SizedBody
	closed   bool
	detached bool         // the handler returned: no more reads
	unread   atomic.Int64 // Left, for the response head to read without the lock a blocked Read holds
	atEOF    func()       // once, when the body has been read to its end
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.detached {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.SizedBody.Read(p)
	b.unread.Store(b.SizedBody.Left)
	if err == io.EOF && b.atEOF != nil {
		b.atEOF()
		b.atEOF = nil
	}
	return n, err
}

// Close keeps what is left of the body countable: the server reads up to
// maxDiscard of it to keep the connection.
func (b *body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// detach ends reads of the body, waiting for one in progress, and
// returns how much of it is left unread.
func (b *body) detach() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.detached = true
	return max(b.SizedBody.Left, 0)
}
