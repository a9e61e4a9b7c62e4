package http2

import (
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outpost-edge/outpost/internal/httpwire"
)

type streamState uint8

const (
	stateOpen streamState = iota
	stateHalfClosedRemote
	stateHalfClosedLocal
	stateClosed
)

// stream is one request and its response. Fields under "mu" are guarded
// by the connection's mu; rw and the request belong to the handler.
type stream struct {
	c       *conn
	id      uint32
	req     *http.Request
	handler http.Handler
	cancel  context.CancelFunc
	// truncated: its header block was over the limit; handler answers 431.
	truncated bool

	// mu
	state       streamState
	started     bool // its handler ran or runs (or never will: reset while queued)
	sendWin     int64
	recvWin     int64
	credit      int64 // receive window consumed, not yet returned
	declared    int64 // request Content-Length; -1: none
	got         int64 // request body bytes received
	gotTrailers bool
	wdeadline   time.Time
	wtimer      *time.Timer
	resetByPeer bool
	counted     bool // in c.busy; only its handler goroutine clears it

	// wmu
	finalSent bool // the final response's HEADERS are written

	body reqBody
	rw   responseWriter
}

func (c *conn) newStream(id uint32, req *http.Request, declared int64, ended, expect bool) *stream {
	st := &stream{c: c, id: id, declared: declared, recvWin: initialRecvWindow}
	ctx, cancel := context.WithCancel(c.ctx)
	st.cancel = cancel
	st.req = req.WithContext(ctx)
	st.body = reqBody{st: st, expect: expect}
	st.body.cond.L = &st.body.mu
	if ended {
		st.state = stateHalfClosedRemote
		st.body.done = true
	} else {
		st.req.Body = &st.body
	}
	now := time.Time{}
	if d := c.s.Std.ReadTimeout; d > 0 {
		now = time.Now()
		st.body.deadline = now.Add(d)
	}
	if d := c.s.Std.WriteTimeout; d > 0 {
		if now.IsZero() {
			now = time.Now()
		}
		st.wdeadline = now.Add(d)
	}
	st.rw = responseWriter{st: st, declared: -1, head: req.Method == "HEAD"}
	return st
}

// reqBody is the request body: DATA frames the read loop pushes, read by
// the handler. Reading gives the client its window back.
type reqBody struct {
	st       *stream
	mu       sync.Mutex
	cond     sync.Cond
	buf      []byte
	off      int
	done     bool  // END_STREAM (or trailers) arrived
	err      error // the stream ended abnormally
	closed   bool  // the handler closed it, or returned
	expect   bool  // 100-continue not yet sent
	trailers http.Header
	deadline time.Time
	timer    *time.Timer
}

// keptBodyBuffer is the most a drained request body buffer keeps for
// the next DATA frames.
const keptBodyBuffer = 64 << 10

// push appends data; false when the handler no longer reads.
func (b *reqBody) push(data []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.err != nil {
		return false
	}
	if b.off > 0 {
		if b.off == len(b.buf) {
			b.buf, b.off = b.buf[:0], 0
		} else if len(b.buf)+len(data) > cap(b.buf) {
			// Move what is unread to the front instead of growing: a
			// reader that never quite drains the buffer (slower than the
			// client, by any amount) would otherwise keep every byte of
			// the body it already read. Unread bytes are bounded by the
			// stream's window, and so is the buffer.
			n := copy(b.buf, b.buf[b.off:])
			b.buf, b.off = b.buf[:n], 0
		}
	}
	b.buf = append(b.buf, data...)
	b.cond.Signal()
	return true
}

func (b *reqBody) setTrailers(h http.Header) {
	b.mu.Lock()
	b.trailers = h
	b.mu.Unlock()
}

// end marks the body complete.
func (b *reqBody) end(err error) {
	b.mu.Lock()
	b.done = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// fail ends the body with err unless it had ended already; nil: the
// stream closed normally.
func (b *reqBody) fail(err error) {
	b.mu.Lock()
	if err != nil && !b.done {
		b.err = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

// close is the handler's Close, and its return: unread bytes are dropped
// and the connection's window they held is given back.
func (b *reqBody) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	left := int64(len(b.buf) - b.off)
	b.buf, b.off = nil, 0
	if b.timer != nil {
		b.timer.Stop()
	}
	b.cond.Broadcast()
	b.mu.Unlock()
	if left > 0 {
		b.st.c.credit(nil, left)
	}
}

// discard drops what is buffered of the body of a stream just reset:
// a read now returns the reset's error, not these bytes, and a stream
// that never ran (orphan: reset while queued) has no handler to close
// its body. The connection's window they hold is given back now, not
// when (if ever) the handler returns: otherwise a client's resets leak
// the connection's window until every upload on it stalls.
func (b *reqBody) discard(orphan bool) {
	b.mu.Lock()
	if b.closed || b.err == nil && !orphan {
		// Closed: the handler gave the window back. No error: the body
		// was complete, the handler reads it to the end.
		b.mu.Unlock()
		return
	}
	if orphan {
		b.closed = true
	}
	left := int64(len(b.buf) - b.off)
	b.buf, b.off = nil, 0
	b.mu.Unlock()
	if left > 0 {
		b.st.c.credit(nil, left)
	}
}

func (b *reqBody) Close() error {
	b.close()
	return nil
}

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	if b.expect {
		b.expect = false
		if len(b.buf) == b.off && !b.done && b.err == nil {
			b.mu.Unlock()
			b.st.rw.informational(http.StatusContinue, nil)
			b.mu.Lock()
		}
	}
	for len(b.buf) == b.off && !b.done && b.err == nil && !b.closed {
		if !b.deadline.IsZero() {
			d := time.Until(b.deadline)
			if d <= 0 {
				b.mu.Unlock()
				return 0, os.ErrDeadlineExceeded
			}
			if b.timer == nil {
				b.timer = time.AfterFunc(d, b.wake)
			} else {
				b.timer.Reset(d)
			}
		}
		b.cond.Wait()
	}
	if b.closed {
		b.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	if len(b.buf) == b.off {
		// done: the trailers are the handler's once the body says EOF.
		tr := b.trailers
		b.trailers = nil
		b.mu.Unlock()
		for k, v := range tr {
			b.st.req.Trailer[k] = v
		}
		return 0, io.EOF
	}
	n := copy(p, b.buf[b.off:])
	b.off += n
	if b.off == len(b.buf) && cap(b.buf) > keptBodyBuffer {
		// Drained: let a buffer that grew while the handler lagged
		// go, or every stream could keep a window's worth (the
		// connection's window bounds only what is unread).
		b.buf, b.off = nil, 0
	}
	b.mu.Unlock()
	b.st.c.credit(b.st, int64(n))
	return n, nil
}

func (b *reqBody) wake() {
	b.mu.Lock()
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *reqBody) setDeadline(t time.Time) {
	b.mu.Lock()
	b.deadline = t
	b.cond.Broadcast()
	b.mu.Unlock()
}

// responseWriter is the handler's http.ResponseWriter. A body of up to
// bufferSize waits for the handler's return, so a small response leaves
// as HEADERS and one DATA frame with its length known.
type responseWriter struct {
	st          *stream
	header      http.Header
	status      int
	wroteHeader bool
	sentHeader  bool
	head        bool
	done        bool
	closeConn   bool // the handler set "Connection: close"
	hasCT       bool
	hasCE       bool
	hasDate     bool
	declared    int64 // Content-Length the handler set; -1: none
	written     int64
	fields      []hpack.HeaderField // the header as of WriteHeader
	trailerDecl []string            // the "Trailer" field as of WriteHeader
	buf         []byte
	pooled      *[]byte // buf's pool entry
	err         error
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, bufferSize); return &b }}

func (rw *responseWriter) Header() http.Header {
	// Sized for a cache hit's dozen fields: a map that grows past
	// eight entries is rebuilt as a table on the way.
	if rw.header == nil {
		rw.header = make(http.Header, responseFields)
	}
	return rw.header
}

func (rw *responseWriter) WriteHeader(code int) {
	if rw.wroteHeader || rw.done {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 {
		if code != http.StatusSwitchingProtocols {
			rw.informational(code, rw.header)
		}
		return
	}
	rw.wroteHeader = true
	rw.status = code
	rw.snapshot()
}

// snapshot takes the header as it is now, which is what net/http sends
// even if the handler changes the map later (trailers aside).
func (rw *responseWriter) snapshot() {
	if rw.fields == nil {
		rw.fields = make([]hpack.HeaderField, 0, len(rw.header)+1)
	}
	rw.fields = rw.fields[:0]
	for k, vv := range rw.header {
		for i, v := range vv {
			rw.take(k, v, i == 0)
		}
	}
}

// take is snapshot's rule for one value of field k; first: the name's
// first value, which is the one read where one is.
func (rw *responseWriter) take(k, v string, first bool) {
	switch k {
	case "Content-Length":
		if first {
			if n, err := strconv.ParseUint(v, 10, 63); err == nil {
				rw.declared = int64(n)
			}
		}
		return
	case "Connection":
		if first && v == "close" {
			rw.closeConn = true
		}
		return
	case "Keep-Alive", "Proxy-Connection", "Upgrade":
		return
	case "Transfer-Encoding":
		// Only "trailers" is meaningful in HTTP/2 (as net/http).
		if v != "trailers" {
			return
		}
	case "Trailer":
		// The names as the head declared them; the values are taken at
		// the end (http1's rule too).
		if first {
			rw.trailerDecl = rw.trailerDecl[:0]
		}
		rw.trailerDecl = append(rw.trailerDecl, v)
	case "Content-Type":
		rw.hasCT = true
	case "Content-Encoding":
		if first {
			rw.hasCE = v != ""
		}
	case "Date":
		rw.hasDate = true
	}
	name, ok := httpwire.LowerName(k)
	if !ok || !httpguts.ValidHeaderFieldValue(v) {
		return
	}
	rw.fields = append(rw.fields, hpack.HeaderField{Name: name, Value: v})
}

// WriteHeaderFields is WriteHeader for a final head whose fields come as
// a list (a head relayed as it came; see http1.FieldsWriter): the fields
// in Header() and then fields are taken as WriteHeader takes the map with
// them all in it (take), and it reports true; or it reports false having
// done nothing — for a status that is not a final one, for a field whose
// first value would have to be read across the map and the list, and for
// a hop-by-hop field (the relay removes those) — and the caller uses the
// map. Names in fields are canonical.
func (rw *responseWriter) WriteHeaderFields(code int, fields []httpwire.Field) bool {
	if rw.wroteHeader || rw.done || code < 200 || code > 999 {
		return false
	}
	for k := range rw.header {
		switch k {
		case "Content-Length", "Content-Encoding", "Connection", "Keep-Alive", "Proxy-Connection",
			"Upgrade", "Transfer-Encoding", "Trailer":
			return false
		}
	}
	for _, f := range fields {
		switch f.Name {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Upgrade", "Transfer-Encoding", "Trailer":
			return false
		}
	}
	rw.wroteHeader = true
	rw.status = code
	rw.snapshot()
	seenCL, seenCE := false, false
	for _, f := range fields {
		first := true
		switch f.Name {
		case "Content-Length":
			first, seenCL = !seenCL, true
		case "Content-Encoding":
			first, seenCE = !seenCE, true
		}
		rw.take(f.Name, f.Value, first)
	}
	return true
}

func (rw *responseWriter) bodyAllowed() bool {
	s := rw.status
	return !(s >= 100 && s <= 199 || s == 204 || s == 304)
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if rw.done {
		return 0, errStreamClosed
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if !rw.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if rw.declared >= 0 && rw.written+int64(len(p)) > rw.declared {
		return 0, http.ErrContentLength
	}
	if rw.err != nil {
		return 0, rw.err
	}
	rw.written += int64(len(p))
	if rw.head && rw.sentHeader {
		// A HEAD response's body is counted, never sent.
		return len(p), nil
	}
	if len(rw.buf)+len(p) <= bufferSize {
		if rw.buf == nil {
			rw.pooled = bufPool.Get().(*[]byte)
			rw.buf = (*rw.pooled)[:0]
		}
		rw.buf = append(rw.buf, p...)
		return len(p), nil
	}
	if rw.head {
		// The headers go once, typed from the start of the body as
		// GET's would be; what was buffered is dropped. (Sending them
		// on every write that overflowed the buffer made a second
		// HEADERS frame: a malformed response.)
		if err := rw.sendHeaders(sniffPrefix(rw.buf, p), false); err != nil {
			return 0, err
		}
		rw.buf = rw.buf[:0]
		return len(p), nil
	}
	if err := rw.send(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (rw *responseWriter) WriteString(s string) (int, error) {
	// Small strings go straight into the buffer without a copy to []byte.
	if !rw.done && rw.wroteHeader && rw.err == nil && rw.bodyAllowed() && rw.declared < 0 && len(rw.buf)+len(s) <= bufferSize {
		if rw.buf == nil {
			rw.pooled = bufPool.Get().(*[]byte)
			rw.buf = (*rw.pooled)[:0]
		}
		rw.buf = append(rw.buf, s...)
		rw.written += int64(len(s))
		return len(s), nil
	}
	return rw.Write([]byte(s))
}

// send writes what is buffered and then p as DATA, headers first if they
// have not gone yet; end ends the stream.
func (rw *responseWriter) send(p []byte, end bool) error {
	if len(rw.buf) > 0 {
		if len(p) == 0 {
			p, rw.buf = rw.buf, rw.buf[:0]
		} else {
			buf := rw.buf
			rw.buf = rw.buf[:0]
			if err := rw.sendData(buf, false); err != nil {
				return err
			}
		}
	}
	return rw.sendData(p, end)
}

// sendData sends p within the flow-control windows, in frames no larger
// than the peer takes. The HEADERS go in the same write as the first DATA
// frame when the window allows, else on their own first.
func (rw *responseWriter) sendData(p []byte, end bool) error {
	st, c := rw.st, rw.st.c
	if len(p) == 0 && !end {
		if !rw.sentHeader {
			return rw.sendHeaders(nil, false)
		}
		return nil
	}
	for first := true; first || len(p) > 0; first = false {
		n, err := c.takeWindow(st, len(p), false)
		if err == nil && n == 0 && len(p) > 0 {
			// Out of window: what is buffered (the headers included)
			// must reach the client, or it never grants more.
			c.lockWrite()
			if !rw.sentHeader {
				rw.writeHeaders(p, false)
			}
			c.flushNow = true
			err = c.unlockWrite()
			if err == nil {
				n, err = c.takeWindow(st, len(p), true)
			}
		}
		if err != nil {
			rw.err = err
			return err
		}
		last := end && n == len(p)
		c.lockWrite()
		if !rw.sentHeader {
			rw.writeHeaders(p, false)
		}
		c.writeData(st.id, p[:n], last)
		if last {
			c.localDone(st)
			c.doneWriting(st)
		}
		err = c.unlockWrite()
		if err != nil {
			rw.err = err
			return err
		}
		p = p[n:]
	}
	return nil
}

// sendHeaders sends the response HEADERS alone.
func (rw *responseWriter) sendHeaders(sniff []byte, end bool) error {
	c := rw.st.c
	c.lockWrite()
	rw.writeHeaders(sniff, end)
	if end {
		c.localDone(rw.st)
		c.doneWriting(rw.st)
	}
	err := c.unlockWrite()
	if err != nil {
		rw.err = err
		return err
	}
	return nil
}

// writeHeaders encodes and writes the response HEADERS; with wmu held.
// sniff is the start of the body, for a Content-Type the handler left
// out.
func (rw *responseWriter) writeHeaders(sniff []byte, end bool) {
	c := rw.st.c
	rw.sentHeader = true
	rw.st.finalSent = true
	c.hb.reset()
	enc := &c.hb
	enc.status(rw.status)
	for _, f := range rw.fields {
		enc.field(f.Name, f.Value)
	}
	if !rw.hasCT && !rw.hasCE && rw.bodyAllowed() && len(sniff) > 0 {
		enc.field("content-type", http.DetectContentType(sniff))
	}
	if rw.declared >= 0 {
		enc.field("content-length", strconv.FormatInt(rw.declared, 10))
	} else if rw.done && rw.bodyAllowed() && (rw.written > 0 || !rw.head) {
		// The handler is done and everything it wrote is still
		// buffered (else the headers had gone): its length is known.
		enc.field("content-length", strconv.FormatInt(rw.written, 10))
	}
	if !rw.hasDate {
		enc.field("date", httpwire.Date())
	}
	c.writeHeaderBlock(rw.st.id, c.hb.b, end)
}

// informational sends a 1xx response now (100 Continue, 103 Early
// Hints).
func (rw *responseWriter) informational(code int, h http.Header) {
	c := rw.st.c
	c.mu.Lock()
	closed := rw.st.state == stateClosed || rw.st.state == stateHalfClosedLocal
	c.mu.Unlock()
	if closed {
		return
	}
	c.lockWrite()
	if rw.st.finalSent {
		// A 1xx after the final response is malformed (RFC 9113 8.1):
		// the 100 Continue a body read owes, when the handler answered
		// first. Checked under wmu: the read may run on another
		// goroutine than the writes.
		c.unlockWrite()
		return
	}
	c.flushNow = true // 100 Continue and Early Hints are for now
	c.hb.reset()
	c.hb.status(code)
	for k, vv := range h {
		name, ok := httpwire.LowerName(k)
		if !ok || k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection" {
			continue
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				c.hb.field(name, v)
			}
		}
	}
	c.writeHeaderBlock(rw.st.id, c.hb.b, false)
	c.unlockWrite()
}

func (rw *responseWriter) Flush() {
	rw.FlushError()
}

// FlushError sends the headers and what is buffered now.
func (rw *responseWriter) FlushError() error {
	if rw.done {
		return errStreamClosed
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.err != nil {
		return rw.err
	}
	if !rw.sentHeader {
		if err := rw.sendHeaders(rw.buf, false); err != nil {
			return err
		}
	}
	if len(rw.buf) > 0 && !rw.head {
		if err := rw.send(nil, false); err != nil {
			return err
		}
	}
	// An explicit flush goes out now, whoever else is running.
	c := rw.st.c
	c.lockWrite()
	c.flushNow = true
	return c.unlockWrite()
}

// SetWriteDeadline moves the stream's write deadline (see
// armWriteDeadline); one in the past resets the stream now, as
// net/http. A connection whose socket takes nothing is bounded by
// HTTP2.WriteByteTimeout.
func (rw *responseWriter) SetWriteDeadline(t time.Time) error {
	c, st := rw.st.c, rw.st
	c.mu.Lock()
	st.wdeadline = t
	expired := c.armWriteDeadline(st)
	c.windowReady.Broadcast()
	c.mu.Unlock()
	if expired {
		c.resetIfOpen(st, xhttp2.ErrCodeInternal)
	}
	return nil
}

// armWriteDeadline sets st's timer for its write deadline (WriteTimeout
// from the stream's start, or SetWriteDeadline's), with mu held; true if
// the deadline has passed already. When it passes the stream is reset,
// as net/http does: the response is cut even if the handler was not
// waiting for window then (before, the deadline only bounded those
// waits, and a handler slower than WriteTimeout sent its whole
// response).
func (c *conn) armWriteDeadline(st *stream) (expired bool) {
	if st.wtimer != nil {
		st.wtimer.Stop()
	}
	if st.wdeadline.IsZero() {
		return false
	}
	d := time.Until(st.wdeadline)
	if d <= 0 {
		return true
	}
	if st.wtimer == nil {
		st.wtimer = time.AfterFunc(d, func() { c.onWriteDeadline(st) })
	} else {
		st.wtimer.Reset(d)
	}
	return false
}

// onWriteDeadline resets st if its write deadline has passed (it may
// have moved since the timer was set) and it is still open.
func (c *conn) onWriteDeadline(st *stream) {
	c.mu.Lock()
	expired := !st.wdeadline.IsZero() && !time.Now().Before(st.wdeadline)
	c.windowReady.Broadcast()
	c.mu.Unlock()
	if expired {
		c.resetIfOpen(st, xhttp2.ErrCodeInternal)
	}
}

func (rw *responseWriter) SetReadDeadline(t time.Time) error {
	rw.st.body.setDeadline(t)
	return nil
}

// EnableFullDuplex: reading the request body while writing the response
// is how this server always works.
func (rw *responseWriter) EnableFullDuplex() error { return nil }

// finish completes the response once the handler returned.
func (rw *responseWriter) finish() {
	defer rw.release()
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	rw.done = true
	st, c := rw.st, rw.st.c
	if rw.closeConn {
		go c.goAway(xhttp2.ErrCodeNo, false)
	}
	if rw.err != nil {
		c.resetIfOpen(st, xhttp2.ErrCodeCancel)
		return
	}
	if rw.declared >= 0 && rw.written < rw.declared && !rw.head && rw.bodyAllowed() {
		// Ending the stream would pass a short body off as complete.
		c.resetIfOpen(st, xhttp2.ErrCodeInternal)
		return
	}
	trailers := rw.trailers()
	if rw.head || !rw.bodyAllowed() {
		if !rw.sentHeader {
			// HEAD: the Content-Type is sniffed from what the handler
			// wrote, as net/http does (GET and HEAD get the same
			// headers); writeHeaders sniffs only when a body is allowed.
			rw.sendHeaders(rw.buf, true)
			rw.buf = rw.buf[:0]
		} else {
			rw.buf = rw.buf[:0]
			rw.sendData(nil, true)
		}
		return
	}
	if len(trailers) == 0 {
		if !rw.sentHeader && len(rw.buf) == 0 {
			rw.sendHeaders(nil, true)
			return
		}
		rw.send(nil, true)
		return
	}
	if err := rw.send(nil, false); err != nil {
		return
	}
	c.lockWrite()
	c.hb.reset()
	for _, f := range trailers {
		c.hb.field(f.Name, f.Value)
	}
	c.writeHeaderBlock(st.id, c.hb.b, true)
	c.localDone(st)
	c.doneWriting(st)
	c.unlockWrite()
}

// trailers are the declared trailer fields the handler set, and those
// named with http.TrailerPrefix.
func (rw *responseWriter) trailers() []hpack.HeaderField {
	var out []hpack.HeaderField
	httpwire.Trailers(rw.trailerDecl, rw.header, func(k string, vv []string) {
		name, ok := httpwire.LowerName(k)
		if !ok {
			return
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				out = append(out, hpack.HeaderField{Name: name, Value: v})
			}
		}
	})
	return out
}

// sniffPrefix is the start of the body, buffered bytes then p, enough
// for http.DetectContentType (which reads at most 512 bytes).
func sniffPrefix(buf, p []byte) []byte {
	const sniffLen = 512
	if len(buf) >= sniffLen || len(p) == 0 {
		return buf
	}
	if len(buf) == 0 {
		return p
	}
	return append(buf[:len(buf):len(buf)], p[:min(len(p), sniffLen-len(buf))]...)
}

func (rw *responseWriter) release() {
	if rw.pooled != nil {
		*rw.pooled = (*rw.pooled)[:0]
		bufPool.Put(rw.pooled)
		rw.pooled = nil
	}
	rw.buf = nil
}

// takeWindow reserves up to want bytes of send window for st: at most a
// frame, within both the stream's and the connection's window. block
// waits for window (bounded by the stream's write deadline).
func (c *conn) takeWindow(st *stream, want int, block bool) (int, error) {
	if want == 0 {
		return 0, c.streamErr(st)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if err := c.streamErrLocked(st); err != nil {
			return 0, err
		}
		n := min(int64(want), c.sendConn, st.sendWin, int64(c.peerFrame))
		if n > 0 {
			c.sendConn -= n
			st.sendWin -= n
			return int(n), nil
		}
		if !block {
			return 0, nil
		}
		if !st.wdeadline.IsZero() && !time.Now().Before(st.wdeadline) {
			return 0, os.ErrDeadlineExceeded
		}
		// The deadline's timer (armWriteDeadline) ends the wait.
		c.windowReady.Wait()
	}
}

func (c *conn) streamErr(st *stream) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streamErrLocked(st)
}

func (c *conn) streamErrLocked(st *stream) error {
	switch {
	case c.dead:
		return errClientGone
	case st.state == stateClosed || st.state == stateHalfClosedLocal:
		if st.resetByPeer {
			return errReset
		}
		return errStreamClosed
	}
	return nil
}

// localDone records that st's END_STREAM is written, with wmu held and
// before the flush: the client may answer the moment it has the frame.
// A client still sending its body is told to stop (RST_STREAM NO_ERROR,
// as net/http: RFC 9113 8.1 allows it once the response is complete).
func (c *conn) localDone(st *stream) {
	c.mu.Lock()
	switch st.state {
	case stateHalfClosedRemote:
		c.closeStream(st, nil)
	case stateOpen:
		c.closeStream(st, errStreamClosed)
		c.noteReset(st.id)
		c.writeRSTStream(st.id, xhttp2.ErrCodeNo)
	}
	c.mu.Unlock()
}

// resetIfOpen resets st unless it is closed already.
func (c *conn) resetIfOpen(st *stream, code xhttp2.ErrCode) {
	c.mu.Lock()
	open := st.state != stateClosed
	c.mu.Unlock()
	if open {
		c.resetStream(st.id, code)
	}
}

// credit gives the client back n bytes of window on the connection and,
// unless st is nil (bytes of a stream nobody reads any more), on st, each
// in batches of a quarter window.
func (c *conn) credit(st *stream, n int64) {
	c.mu.Lock()
	c.connCredit += n
	var connInc, streamInc int64
	if c.connCredit >= connRecvWindow/4 {
		connInc, c.connCredit = c.connCredit, 0
		c.recvConn += connInc
	}
	if st != nil {
		st.credit += n
		if st.credit >= initialRecvWindow/4 && st.state == stateOpen {
			streamInc, st.credit = st.credit, 0
			st.recvWin += streamInc
		}
	}
	c.mu.Unlock()
	if connInc > 0 || streamInc > 0 {
		c.lockWrite()
		if connInc > 0 {
			c.writeWindowUpdate(0, uint32(connInc))
		}
		if streamInc > 0 {
			c.writeWindowUpdate(st.id, uint32(streamInc))
		}
		c.unlockWrite()
	}
}

// responseFields is the response header map's size hint.
const responseFields = 16
