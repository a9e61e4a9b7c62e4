package lb

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/rawsock"
)

// h1Transport is one backend's connection pool. Requests to a plain-http
// backend without a body or with a small one (maxInlineBody) — nearly all
// proxied GETs and most API calls — are written and their responses read
// on the calling goroutine over a kept-alive connection.
// http.Transport hands every request to two goroutines of its own
// (writeLoop, readLoop) and back through channels; for small responses
// those hand-offs cost more than the system calls (measured on the
// pass-through benchmark: +20% requests/s, see docs/lb.md). Everything
// else — larger or chunked bodies, TLS, HTTP/2, upgrades, Expect, a connection
// limit — goes to the wrapped http.Transport, which stays the reference.
type h1Transport struct {
	base    *http.Transport
	dialer  *net.Dialer
	maxIdle int
	idleFor time.Duration // 0: idle connections are kept until retired
	hdrWait time.Duration // ResponseHeaderTimeout; 0: none
	off     bool          // every request goes to base

	mu      sync.Mutex
	idle    []*h1Conn // LIFO: the warmest connection first
	reaping bool      // a reaper timer is armed
	retired bool
}

type h1Conn struct {
	t    *h1Transport
	c    net.Conn
	lr   *limitReader // under br: bounds the response header
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // when it went idle
	rd   time.Time // the read deadline last set (setRead, setCut); zero: none

	// Built once per connection, not on every request: spoke is
	// idleCheck's (nil when the connection cannot be checked), abort
	// unblocks the reads and writes of a cancelled request.
	spoke func() bool
	abort func()

	passed reusedResponse // the pass lane's responses, one at a time
}

// maxResponseHeader bounds what a backend may send before the end of its
// response header (status line, headers, 1xx responses), as
// http.Transport's MaxResponseHeaderBytes does: a broken or hostile
// backend must not grow the proxy's memory without end.
const maxResponseHeader = 1 << 20

var errHeaderTooLarge = errors.New("lb: backend response header too large")

// max1xx bounds the informational responses passed on before the final
// one.
const max1xx = 16

var errTooMany1xx = errors.New("lb: backend sent too many informational (1xx) responses")

// limitReader reads from the connection until left runs out.
type limitReader struct {
	c    net.Conn
	left int64
	// body, when set, is the response body a read is for, which bounds
	// each read that goes to the socket (h1Body.bound) — reads the
	// readers above make for it (bufio, a chunked body's) included — and
	// is told of one that timed out at a cut (h1Body.late), which then
	// goes on: those readers never see such a timeout, so none keeps it
	// as its error.
	body *h1Body
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	b := l.body
	if b != nil {
		b.bound()
	}
	n, err := l.c.Read(p)
	for n == 0 && err != nil && b != nil && b.cut && isTimeout(err) && b.late() {
		n, err = l.c.Read(p)
	}
	l.left -= int64(n)
	return n, err
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func newH1Transport(base *http.Transport, dialer *net.Dialer, maxIdle int, idleFor, hdrWait time.Duration) *h1Transport {
	return &h1Transport{
		base: base, dialer: dialer, maxIdle: maxIdle, idleFor: idleFor, hdrWait: hdrWait,
		// A connection limit is http.Transport's to enforce; two pools
		// would each allow the limit.
		off: base.MaxConnsPerHost > 0 || maxIdle <= 0,
	}
}

// Transport is one origin's connection pool as each backend of a Pool
// has it (see h1Transport), for a caller with a single origin and no pool:
// a route with one upstream. Requests must all go to that origin.
type Transport struct{ *h1Transport }

// NewTransport wraps base, which keeps the requests the synchronous path
// does not take; dialer dials that path's connections. base's
// MaxIdleConnsPerHost, IdleConnTimeout and ResponseHeaderTimeout bound
// both paths.
//
// Besides being faster, the synchronous path keeps what http.Transport
// loses: a response's Connection field that says close is removed whole
// by net/http's client, with the names of the fields it made
// connection-specific, which would then be passed on (and stored).
func NewTransport(base *http.Transport, dialer *net.Dialer) *Transport {
	return &Transport{newH1Transport(base, dialer, base.MaxIdleConnsPerHost, base.IdleConnTimeout, base.ResponseHeaderTimeout)}
}

// RoundTrip implements http.RoundTripper.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.RoundTripIdle(req, 0)
}

// RoundTripIdle is RoundTrip with each read of the response body that
// waits for the backend bounded by idle (a route's body_timeout; 0:
// none). On the synchronous path the connection's read deadline does it,
// set only for a read that goes to the socket; on http.Transport's, a
// timer per read and a cancellable request (idleBody).
func (t *h1Transport) RoundTripIdle(req *http.Request, idle time.Duration) (*http.Response, error) {
	if !t.fast(req) {
		if idle > 0 {
			return IdleRoundTrip(t.base, req, idle)
		}
		return t.base.RoundTrip(req)
	}
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.get(ctx, dialAddr(req.URL), time.Now())
		if err != nil {
			closeBody(req.Body) // as http.Transport does
			return nil, err
		}
		resp, err := pc.roundTrip(req, idle)
		if err == nil {
			return resp, nil
		}
		pc.c.Close()
		if ctx.Err() != nil {
			closeBody(req.Body)
			return nil, ctx.Err()
		}
		if ferr := afterFailure(err, reused && attempt == 0, replayable(req)); ferr != nil {
			closeBody(req.Body)
			return nil, ferr
		}
		if req, err = rewound(req, err); err != nil {
			return nil, err
		}
	}
}

// rewound is req with a fresh copy of its body for another try (from
// GetBody, as http.Transport does); failed is the first try's error,
// reported if there is no way to send the body again. The body sent is
// closed either way.
func rewound(req *http.Request, failed error) (*http.Request, error) {
	if req.ContentLength <= 0 {
		return req, nil
	}
	closeBody(req.Body)
	if req.GetBody == nil {
		return nil, failed
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	r := *req
	r.Body = body
	return &r, nil
}

// afterFailure is http.Transport's rule after a request failed on a
// connection (now closed): a kept-alive connection the backend closed while
// it was idle fails before any response byte, and the request may be tried
// once more on a fresh connection — first is true for the first try on a
// reused one — if it never left (the write failed), or if replay says
// repeating it is harmless. It returns nil to try again, else the error to
// report.
func afterFailure(err error, first, replay bool) error {
	var se staleErr
	if !errors.As(err, &se) {
		return err
	}
	if first && (!se.written || replay) {
		return nil
	}
	return se.err
}

// dialAddr is host:port of an http URL; a backend URL may leave out the
// port.
func dialAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// maxInlineBody bounds the request bodies the synchronous path takes. It
// writes a body whole before it reads the response, and a backend that
// answers early without reading must not stall that write: a body this
// small fits the sockets' buffers. Larger bodies, and those of unknown
// length, go to http.Transport, which writes and reads at once.
const maxInlineBody = 64 << 10

// fast reports whether req can take the synchronous path.
func (t *h1Transport) fast(req *http.Request) bool {
	body := req.Body != nil && req.Body != http.NoBody
	if t.off || req.URL.Scheme != "http" || req.Close || len(req.TransferEncoding) > 0 || req.Trailer != nil ||
		body != (req.ContentLength != 0) || req.ContentLength < 0 || req.ContentLength > maxInlineBody {
		return false
	}
	h := req.Header
	return h.Get("Upgrade") == "" && h.Get("Expect") == ""
}

// replayable is http.Transport's rule for repeating a request after a
// failure on a reused connection.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

// staleErr is a failure before any response byte arrived.
type staleErr struct {
	err     error
	written bool // the whole request was written
}

func (e staleErr) Error() string { return e.err.Error() }
func (e staleErr) Unwrap() error { return e.err }

func (t *h1Transport) get(ctx context.Context, addr string, now time.Time) (*h1Conn, bool, error) {
	for {
		t.mu.Lock()
		if len(t.idle) == 0 {
			t.mu.Unlock()
			break
		}
		pc := t.idle[len(t.idle)-1]
		t.idle[len(t.idle)-1] = nil
		t.idle = t.idle[:len(t.idle)-1]
		t.mu.Unlock()
		// Bytes the backend sent while the connection was idle answer
		// no request of ours; read as the next response they would go
		// to the next request, maybe another client's. http.Transport's
		// idle read loop closes such a connection too. An EOF here (the
		// backend closed it) saves the stale-connection retry.
		if t.idleFor > 0 && now.Sub(pc.used) > t.idleFor || pc.spoke != nil && pc.spoke() {
			pc.c.Close()
			continue
		}
		return pc, true, nil
	}
	c, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	c = rawsock.Wrap(c)
	lr := &limitReader{c: c}
	pc := &h1Conn{t: t, c: c, lr: lr, br: bufio.NewReaderSize(lr, 4096), bw: bufio.NewWriterSize(c, 4096), spoke: idleCheck(c)}
	pc.abort = func() { c.SetDeadline(time.Unix(1, 0)) }
	return pc, false, nil
}

func (t *h1Transport) put(pc *h1Conn) {
	pc.used = time.Now()
	t.mu.Lock()
	if t.retired || len(t.idle) >= t.maxIdle {
		t.mu.Unlock()
		pc.c.Close()
		return
	}
	t.idle = append(t.idle, pc)
	if t.idleFor > 0 && !t.reaping {
		t.reaping = true
		time.AfterFunc(t.idleFor, t.reap)
	}
	t.mu.Unlock()
}

// reap closes connections idle longer than idleFor, so a quiet backend
// does not keep sockets open forever, and re-arms while any are left.
func (t *h1Transport) reap() {
	t.mu.Lock()
	now := time.Now()
	keep := t.idle[:0]
	var stale []*h1Conn
	for _, pc := range t.idle {
		if now.Sub(pc.used) >= t.idleFor {
			stale = append(stale, pc)
		} else {
			keep = append(keep, pc)
		}
	}
	clear(t.idle[len(keep):])
	t.idle = keep
	t.reaping = len(keep) > 0
	if t.reaping {
		time.AfterFunc(t.idleFor-now.Sub(keep[0].used), t.reap) // keep[0] idled longest
	}
	t.mu.Unlock()
	for _, pc := range stale {
		pc.c.Close()
	}
}

// CloseIdleConnections closes the idle connections of both paths.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, pc := range idle {
		pc.c.Close()
	}
	t.base.CloseIdleConnections()
}

// retire is CloseIdleConnections for a transport that will not be used
// again: connections of requests still in flight are closed when they end
// instead of going idle.
func (t *h1Transport) retire() {
	t.mu.Lock()
	t.retired = true
	t.mu.Unlock()
	t.CloseIdleConnections()
}

func (pc *h1Conn) roundTrip(req *http.Request, idle time.Duration) (*http.Response, error) {
	ctx := req.Context()
	// Cancellation (client gone, try or total timeout) unblocks the reads
	// and writes below; a connection it touched is never reused. A
	// bodiless request goes out in one write that cannot stall, so its
	// cancellation is arranged only once the answer has taken watchAfter,
	// as on the pass lane: most answers come sooner, and arranging it
	// costs each request allocations and the context's lock.
	w := headWait{stop: noStop, ctx: ctx}
	if req.ContentLength == 0 {
		w.due.watch = noWatch
	} else {
		w.stop = context.AfterFunc(ctx, pc.abort)
	}
	pc.armHeader(time.Time{}, &w, time.Now())
	// Informational responses (100, 102, 103 Early Hints) precede the
	// real one; report them as http.Transport does, so the reverse proxy
	// can pass Early Hints on.
	var got1xx func(int, textproto.MIMEHeader) error
	if trace := httptrace.ContextClientTrace(ctx); trace != nil {
		got1xx = trace.Got1xxResponse
	}
	err := writeRequest(pc.bw, req)
	if err == nil {
		err = pc.bw.Flush()
	}
	if err != nil {
		if errors.As(err, new(bodyErr)) {
			w.stop()
			return nil, err // the client's body failed, not the connection
		}
		if req.ContentLength > 0 {
			// A backend may answer before it reads the body (413, 401,
			// a redirect) and close the connection, which resets it
			// under the rest of the body: its answer is still there to
			// read, as http.Transport, which reads while it writes,
			// would have it.
			if resp, rerr := pc.awaitResponse(req, got1xx, &w, idle); rerr == nil {
				resp.Close = true
				resp.Body.(*h1Body).reuse = false
				return resp, nil
			}
		}
		w.stop()
		return nil, staleErr{err: err}
	}
	resp, err := pc.awaitResponse(req, got1xx, &w, idle)
	if err != nil {
		w.stop()
		return nil, err
	}
	return resp, nil
}

// armHeader bounds the wait for a response header — the per-try timeout,
// or until when that comes first (zero: no such bound) — and resets the
// header budget, before a request is written. With a watch due in w, the
// first wait is cut at watchAfter if that comes sooner (w.due.at), and
// the bound kept in w.until for awaitResponse.
func (pc *h1Conn) armHeader(until time.Time, w *headWait, now time.Time) {
	var d time.Time
	if pc.t.hdrWait > 0 {
		d = now.Add(pc.t.hdrWait)
	}
	if !until.IsZero() && (d.IsZero() || until.Before(d)) {
		d = until
	}
	pc.lr.left = maxResponseHeader
	if w != nil && w.due.watch != nil {
		if soon := now.Add(watchAfter); d.IsZero() || soon.Before(d) {
			w.until, w.due.at = d, soon
			pc.setCut(soon)
			return
		}
	}
	pc.setRead(d)
}

// cutSlack is how much sooner than asked a cut (a wait cut at due.at,
// which only starts the watch) may come. A connection reused request
// after request keeps the cut it has when it is that close: its read
// deadline — a runtime timer — then moves about once per cutSlack instead
// of twice per request.
const cutSlack = 10 * time.Millisecond

// setRead sets the connection's read deadline to t (zero: none).
func (pc *h1Conn) setRead(t time.Time) {
	if !t.Equal(pc.rd) {
		pc.c.SetReadDeadline(t)
		pc.rd = t
	}
}

// setCut sets the read deadline for a cut at t, or keeps the one set if
// it comes at most cutSlack sooner (and not later). Whatever it was set
// for, it is this request's cut now: the request's real bound is set when
// the cut comes (dueWatch.start).
func (pc *h1Conn) setCut(t time.Time) {
	if !pc.rd.After(t) && t.Sub(pc.rd) <= cutSlack {
		return
	}
	pc.setRead(t)
}

// headWait is one request's wait for its response head.
type headWait struct {
	// stop ends the request's cancellation (see context.AfterFunc); the
	// body calls it.
	stop func() bool
	ctx  context.Context // the request's
	due  dueWatch        // a pass-lane request's watch, not started yet
	// until is the wait's real bound when armHeader cut it at due.at;
	// zero: none.
	until time.Time
	// reuse: the response is the pass lane's, which nothing keeps once
	// relayed; it is parsed into the connection's reused one, a plain
	// head's fields into a list (see PassRequest.Head).
	reuse bool
}

// dueWatch is a pass-lane request's watch (PassRequest.Watch) until it
// starts: at watchAfter from the request's sending, if a read is still
// waiting for the backend then — for the head (headWait) or, when the
// head came sooner, for the body (h1Body). watch is nil once started, or
// when the request has none; at is zero when the wait was not cut.
type dueWatch struct {
	watch func()
	at    time.Time
}

// pending reports whether a wait is to be cut at d.at to start the watch.
func (d *dueWatch) pending() bool { return d.watch != nil && !d.at.IsZero() }

// start starts the watch: pc's read deadline becomes until (zero: none),
// then ctx's end aborts pc, then the caller watches for its client
// leaving. The deadline comes first: an abort that comes once the
// cancellation is arranged sets its own, which must stay. It returns the
// cancellation's stop.
func (d *dueWatch) start(pc *h1Conn, ctx context.Context, until time.Time) (stop func() bool) {
	watch := d.watch
	d.watch = nil
	pc.setRead(until)
	stop = context.AfterFunc(ctx, pc.abort)
	watch()
	return stop
}

// late is called when the wait for the head timed out: false if that was
// its real bound; else the request is watched from now on, and the wait
// goes on until the real bound.
func (w *headWait) late(pc *h1Conn) bool {
	if !w.due.pending() {
		return false
	}
	w.stop = w.due.start(pc, w.ctx, w.until)
	return true
}

// awaitResponse reads the response to req, just written on pc: the
// informational ones first (each passed to got1xx, which may be nil),
// then the final one, whose body returns pc to the pool when read to its
// end. idle, when positive, bounds each read of the body that waits for
// the backend. The caller closes pc on an error.
func (pc *h1Conn) awaitResponse(req *http.Request, got1xx func(int, textproto.MIMEHeader) error, w *headWait, idle time.Duration) (*http.Response, error) {
	for {
		_, err := pc.br.Peek(1)
		if err == nil {
			break
		}
		if isTimeout(err) && w.late(pc) {
			continue
		}
		if isTimeout(err) {
			// The per-try timeout: the backend has the request and is
			// slow, the connection was not stale. Like http.Transport's
			// ResponseHeaderTimeout, this is not repeated here.
			return nil, err
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, staleErr{err: err, written: true}
	}
	var reuse *reusedResponse
	if w.reuse {
		reuse = &pc.passed
	}
	resp, err := readResponse(pc.br, req, reuse)
	// A real server sends one or two informational responses; past
	// max1xx the backend is flooding the client through us.
	for n1xx := 0; err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols; n1xx++ {
		if n1xx == max1xx {
			err = errTooMany1xx
			break
		}
		if got1xx != nil {
			if terr := got1xx(resp.StatusCode, textproto.MIMEHeader(resp.Header)); terr != nil {
				err = terr
				break
			}
		}
		resp, err = readResponse(pc.br, req, reuse)
	}
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Not asked for (Upgrade requests take the other path): a
		// protocol violation, and the connection is unusable.
		resp.Body.Close()
		return nil, errors.New("lb: backend switched protocols without an Upgrade request")
	}
	pc.lr.left = math.MaxInt64 // the body is the caller's to bound
	if !pc.rd.IsZero() && !w.due.pending() {
		// (A cut still due stays: the body's reads would set it again.)
		pc.setRead(time.Time{})
		if w.ctx != nil && w.ctx.Err() != nil {
			pc.abort() // canceled meanwhile: its deadline was just cleared
		}
	}
	// A watch still due goes to the body: the head came sooner, and a
	// body that keeps the request waiting past then is watched.
	// The pass lane's reader is the connection's, which the lane is done
	// with before release.
	var body *h1Body
	if reuse != nil {
		body = &reuse.body
	} else {
		body = new(h1Body)
	}
	*body = h1Body{pc: pc, rc: resp.Body, stop: w.stop, eof: resp.Body == http.NoBody, reuse: !resp.Close, idle: idle, hold: reuse != nil,
		ctx: w.ctx, due: w.due}
	resp.Body = body
	return resp, nil
}

// h1Body returns the connection to the pool when the body was read to the
// end, and closes it otherwise (what is left of it is unknown).
type h1Body struct {
	pc    *h1Conn
	rc    io.ReadCloser
	stop  func() bool
	idle  time.Duration // bounds each read that waits for the backend; 0: none
	reuse bool
	eof   bool
	done  bool
	broke bool // a read failed: the backend broke the body off
	// hold: the response may be the connection's reused one (see
	// reusedResponse), which the caller reads after closing the body
	// (for its trailers): Close leaves the body be, and release, once
	// the caller is done with the response, ends it.
	hold bool
	ctx  context.Context // the request's
	due  dueWatch        // the head's watch, if still due
	cut  bool            // the socket read under way waits until a cut
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, errors.New("lb: read on closed response body")
	}
	if b.idle <= 0 && !b.due.pending() {
		return b.read(p)
	}
	// Only a read that goes to the socket can stall: the connection's
	// reader bounds those (bound), so a body already buffered (most small
	// ones) costs no deadline and no watch.
	b.pc.lr.body = b
	n, err := b.read(p)
	b.pc.lr.body = nil
	return n, err
}

// bound sets the read deadline for a read of the body that goes to the
// socket. While the watch is due, the wait is cut at due.at (unless
// body_timeout ends it first) and late starts the watch if the read is
// still waiting then; a read once it is due starts it at once. Else each
// such read has body_timeout.
func (b *h1Body) bound() {
	b.cut = false
	now := time.Now()
	if b.due.pending() {
		if now.Before(b.due.at) {
			if b.idle <= 0 || !now.Add(b.idle).Before(b.due.at) {
				b.pc.setCut(b.due.at)
				b.cut = true
				return
			}
			// body_timeout ends this wait first: no cut, and its
			// timeout is a real one.
			b.pc.setRead(now.Add(b.idle))
			return
		}
		b.late()
	} else if b.idle > 0 {
		b.pc.setRead(now.Add(b.idle))
	} else {
		return // the watch started during this read: no bound
	}
	if b.ctx != nil && b.ctx.Err() != nil {
		b.pc.abort() // ended meanwhile: its deadline was just replaced
	}
}

func (b *h1Body) read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	} else if err != nil {
		b.broke = true
	}
	return n, err
}

// late starts the watch that was due, a read having waited for the
// backend until then; the read goes on under body_timeout. False once
// started: the timeout is then a real one.
func (b *h1Body) late() bool {
	if !b.due.pending() {
		return false
	}
	var until time.Time
	if b.idle > 0 {
		until = time.Now().Add(b.idle)
	}
	b.cut = false
	b.stop = b.due.start(b.pc, b.ctx, until)
	return true
}

func (b *h1Body) Close() error {
	if b.hold {
		return nil
	}
	return b.release()
}

// release ends the body: the connection goes back to the pool if the
// body was read to its end, else it is closed.
func (b *h1Body) release() error {
	if b.done {
		return nil
	}
	b.done = true
	if !b.eof {
		// What is left of the body is unknown and the connection goes:
		// closed first, so that a body reader that reads the rest when
		// closed (net/http's, for a head the plain path did not take)
		// does not wait for it.
		err := b.pc.c.Close()
		b.rc.Close()
		b.stop()
		return err
	}
	b.rc.Close()
	fired := !b.stop() // cancellation poisoned the deadline
	// Bytes already buffered past the end of the response (a body on a
	// HEAD, 204 or 304, or more than Content-Length) are not the start of
	// the next response: reusing the connection would hand them to the
	// next request, maybe another client's. http.Transport closes such a
	// connection too ("Unsolicited response received on idle HTTP
	// channel").
	if b.eof && b.reuse && !fired && b.pc.br.Buffered() == 0 {
		b.pc.t.put(b.pc)
		return nil
	}
	return b.pc.c.Close()
}
