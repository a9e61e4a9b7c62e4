package edge

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/internal/http1"
	"github.com/outpost-edge/outpost/internal/httpwire"
)

// A file body goes out by sendfile in chunks, each under a fresh
// send_timeout window, so a slow client must take one chunk per window,
// not the whole file. Chunks start at minSendChunk (about 1KiB/s at the
// default 60s) and double while the client takes them quickly, up to
// maxSendChunk (what Go's sendfile sends per call anyway): a fast client
// costs a few extra calls per file, not one per 64KiB.
const (
	minSendChunk = 64 << 10
	maxSendChunk = 4 << 20
)

// Guard bounds how long a request may stall on its client, as nginx's
// client_body_timeout and send_timeout do: every read of the request body
// must return within cfg.ClientBodyTimeout and every write of the response
// within cfg.SendTimeout. A client that stops sending its body or stops
// reading its response loses its connection (HTTP/1.1) or stream (HTTP/2,
// HTTP/3) instead of holding the handler — and what the handler holds: an
// origin connection, a cache fill other clients are waiting on — forever.
// The deadlines are armed only while a read or write is in progress, so a
// response that is slow to start (a slow origin) or an event stream with
// long pauses is not cut; read_timeout and write_timeout still bound the
// whole request and response when set. NewServer applies it.
func Guard(cfg *Config, next http.Handler) http.Handler {
	gc := newGuardConfig(cfg)
	if gc.body <= 0 && gc.send <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gw := gc.wrap(w, r.Context(), r.ProtoMajor == 1)
		g := &gw.g
		if g.guarded {
			w = gw
		}
		if gc.body > 0 && r.Body != nil && r.Body != http.NoBody && g.rc.SetReadDeadline(g.readEnd) == nil {
			// On a copy: the server looks at its own request's Body after
			// the handler (an unread Expect: 100-continue body closes the
			// connection instead of being asked for).
			r2 := new(http.Request)
			*r2 = *r
			r2.Body = &guardBody{ReadCloser: r.Body, g: g}
			r = r2
		}
		next.ServeHTTP(w, r)
		gw.end()
	})
}

// guardConfig is Guard's timeouts.
type guardConfig struct {
	body, send, readAll, writeAll time.Duration
}

func newGuardConfig(cfg *Config) guardConfig {
	return guardConfig{
		body: cfg.ClientBodyTimeout.D(), send: cfg.SendTimeout.D(),
		readAll: cfg.ReadTimeout.D(), writeAll: cfg.WriteTimeout.D(),
	}
}

// wrap prepares w for one request starting now: its write deadline armed
// for send_timeout (g.guarded tells whether writes must go through the
// returned wrapper). ctx is the request's, or for HTTP/1.1 (h1) the
// connection's, which carries the deadline a connection of NewServer's
// keeps between requests.
func (gc *guardConfig) wrap(w http.ResponseWriter, ctx context.Context, h1 bool) *guardWriter {
	// One allocation for the state and the writer wrapper.
	gw := new(guardWriter)
	gc.wrapInto(gw, w, ctx, h1, time.Now())
	return gw
}

// wrapInto is wrap into gw, which the caller reuses, for a request that
// started at start.
func (gc *guardConfig) wrapInto(gw *guardWriter, w http.ResponseWriter, ctx context.Context, h1 bool, start time.Time) {
	*gw = guardWriter{ResponseWriter: w}
	g := &gw.g
	*g = guard{rc: deadliner(w), send: gc.send, body: gc.body, lazy: h1}
	if gc.readAll > 0 {
		g.readEnd = start.Add(gc.readAll)
	}
	if gc.writeAll > 0 {
		g.writeEnd = start.Add(gc.writeAll)
	}
	if gc.send <= 0 {
		return
	}
	// Arming once also tells whether the writer has deadlines.
	if g.lazy {
		if cw, ok := ctx.Value(connWriteKey{}).(*connWrite); ok && gc.writeAll <= 0 {
			// An HTTP/1.1 connection of NewServer's: the deadline the
			// last request left is still set (net/http sets none itself
			// without write_timeout).
			g.until = &cw.until
			g.guarded = true
			g.arm()
		} else {
			g.until = &g.ownUntil
			*g.until = g.within(g.writeEnd, gc.send)
			g.guarded = g.rc.SetWriteDeadline(*g.until) == nil
		}
	} else {
		g.guarded = g.rc.SetWriteDeadline(g.writeEnd) == nil
	}
}

// end bounds what the server still writes after the handler returned:
// what it left buffered is flushed (HTTP/1.1) or the stream is ended
// (HTTP/2).
func (gw *guardWriter) end() {
	g := &gw.g
	if !g.guarded || g.hijacked {
		return
	}
	if g.lazy {
		g.arm()
	} else {
		_ = g.rc.SetWriteDeadline(g.within(g.writeEnd, g.send))
	}
}

// deadlines is what the servers' own response writers (HTTP/1.1, HTTP/2,
// HTTP/3) implement; http.ResponseController finds it through wrappers.
type deadlines interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// deadliner is w itself when it sets deadlines (Guard is outermost, so
// the server's writer), saving a ResponseController per request.
func deadliner(w http.ResponseWriter) deadlines {
	if d, ok := w.(deadlines); ok {
		return d
	}
	return http.NewResponseController(w)
}

type guard struct {
	rc                deadlines
	send, body        time.Duration
	readEnd, writeEnd time.Time // read_timeout, write_timeout; zero: none
	guarded           bool      // writes go through guardWriter
	hijacked          bool
	// lazy (HTTP/1.1): the write deadline stays set between writes and is
	// moved only when less than 3/4 of send_timeout is left, instead of
	// being set and cleared around every write. An HTTP/1.1 connection
	// only looks at its write deadline while writing, so a deadline that
	// passes during a pause does no harm, and the hit path sets it at most
	// once per request rather than six times.
	lazy     bool
	until    *time.Time // the deadline set: the connection's, or ownUntil
	ownUntil time.Time
	failed   bool // a write failed: its deadline stays, never moved again
}

// connWrite is the write deadline an HTTP/1.1 connection of NewServer's
// carries from one request to the next, so a keep-alive connection moves
// it about once per send_timeout/4 instead of once per request.
type connWrite struct{ until time.Time }

type connWriteKey struct{}

// within is now+d, or end when that comes first.
func (g *guard) within(end time.Time, d time.Duration) time.Time {
	t := time.Now().Add(d)
	if !end.IsZero() && end.Before(t) {
		return end
	}
	return t
}

// arm and disarm bracket one write. Between writes no deadline runs: an
// HTTP/2 stream deadline resets the stream when it fires, even idle. After
// a failed write the deadline stays, so what the server still writes on
// that connection fails at once instead of stalling again.
func (g *guard) arm() bool {
	if g.hijacked {
		return false
	}
	if g.lazy {
		now := time.Now()
		if !g.failed && g.until.Sub(now) < g.send*3/4 {
			*g.until = g.within(g.writeEnd, g.send)
			_ = g.rc.SetWriteDeadline(*g.until)
		}
		return true
	}
	_ = g.rc.SetWriteDeadline(g.within(g.writeEnd, g.send))
	return true
}

func (g *guard) disarm(err error) {
	switch {
	case err != nil:
		g.failed = true
	case !g.lazy:
		_ = g.rc.SetWriteDeadline(g.writeEnd)
	}
}

type guardWriter struct {
	http.ResponseWriter
	g guard
}

func (w *guardWriter) WriteHeader(code int) {
	if w.g.lazy && code >= 200 {
		// HTTP/1.1 buffers a final header: the write that sends it arms.
		w.ResponseWriter.WriteHeader(code)
		return
	}
	armed := w.g.arm()
	w.ResponseWriter.WriteHeader(code)
	if armed {
		w.g.disarm(nil)
	}
}

// WriteHeaderFields passes a head's field list through (see
// http1.FieldsWriter), under the deadline WriteHeader would have.
func (w *guardWriter) WriteHeaderFields(code int, fields []httpwire.Field) bool {
	fw, ok := w.ResponseWriter.(http1.FieldsWriter)
	if !ok {
		return false
	}
	if w.g.lazy {
		// HTTP/1.1 buffers a final header: the write that sends it arms.
		return fw.WriteHeaderFields(code, fields)
	}
	armed := w.g.arm()
	took := fw.WriteHeaderFields(code, fields)
	if armed {
		w.g.disarm(nil)
	}
	return took
}

func (w *guardWriter) Write(p []byte) (int, error) {
	armed := w.g.arm()
	n, err := w.ResponseWriter.Write(p)
	if armed {
		w.g.disarm(err)
	}
	return n, err
}

func (w *guardWriter) FlushError() error {
	armed := w.g.arm()
	var err error
	if f, ok := w.ResponseWriter.(interface{ FlushError() error }); ok {
		err = f.FlushError()
	} else {
		err = http.NewResponseController(w.ResponseWriter).Flush()
	}
	if armed {
		w.g.disarm(err)
	}
	return err
}

func (w *guardWriter) Flush() { _ = w.FlushError() }

// ReadFrom keeps the server's sendfile path for file bodies, a chunk per
// deadline window. A length limit around the file (io.CopyN, a range from
// http.ServeContent) is unwrapped: the connection's sendfile sees through
// one io.LimitedReader only.
func (w *guardWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{w}, src)
	}
	outer, _ := src.(*io.LimitedReader)
	if outer != nil {
		src = outer.R
	}
	var total int64
	chunk := int64(minSendChunk)
	for {
		lr := &io.LimitedReader{R: src, N: chunk}
		if outer != nil {
			lr.N = min(lr.N, outer.N)
			if lr.N <= 0 {
				return total, nil
			}
		}
		want := lr.N
		var n int64
		var err error
		began := time.Now()
		if w.g.arm() {
			n, err = rf.ReadFrom(lr)
			w.g.disarm(err)
		} else {
			n, err = rf.ReadFrom(lr)
		}
		if time.Since(began) < w.g.send/8 {
			chunk = min(2*chunk, maxSendChunk) // the client keeps up
		} else {
			chunk = max(chunk/2, minSendChunk)
		}
		total += n
		if outer != nil {
			outer.N -= want - lr.N
		}
		if err != nil || lr.N > 0 {
			return total, err // an error, or src ended within the chunk
		}
	}
}

// Hijack hands the connection over without deadlines: the new owner sets
// its own.
func (w *guardWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.g.hijacked = true
	}
	return c, brw, err
}

func (w *guardWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type guardBody struct {
	io.ReadCloser
	g *guard
}

func (b *guardBody) Read(p []byte) (int, error) {
	g := b.g
	if g.hijacked {
		return b.ReadCloser.Read(p)
	}
	_ = g.rc.SetReadDeadline(g.within(g.readEnd, g.body))
	n, err := b.ReadCloser.Read(p)
	if err == nil || err == io.EOF {
		// After a failed read the deadline stays: the server's own read
		// of the rest of the body must not stall either.
		_ = g.rc.SetReadDeadline(g.readEnd)
	}
	return n, err
}
