package http1

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/outpost-edge/outpost/internal/httpwire"
)

// maxPend is how much of a response the head waits for when it may still
// need a Content-Type sniffed or a Content-Length computed, as net/http's
// buffer before chunking does.
const maxPend = 4 << 10

// sniffLen is what http.DetectContentType looks at.
const sniffLen = 512

var errAfterHandler = errors.New("http1: write after the handler returned")

// response is the fast path's http.ResponseWriter. It follows net/http's
// rules for what goes on the wire — lazy head, Content-Type sniffing, a
// Content-Length for small complete bodies, chunking otherwise, Date,
// trailers, no body for HEAD, 1xx, 204 and 304 — without sorting or
// cloning the header map for the common case of a head whose framing is
// known when it is written.
type response struct {
	c *conn
	// closeReq: the client asked to close; reqBody: the request's body
	// (nil: none). All the writer reads of its request.
	closeReq bool
	reqBody  *body
	header   http.Header
	sent     http.Header // the head's fields when it waits (a snapshot at WriteHeader)

	status     int   // final status; 0 until WriteHeader
	cl         int64 // declared Content-Length; -1: none
	written    int64 // body bytes the handler wrote
	isHead     bool
	noBody     bool // the status allows no body
	deferred   bool // the head waits for the first body bytes or the end
	headSent   bool
	chunked    bool
	closeAfter bool
	done       bool
	err        error
}

func (w *response) Header() http.Header {
	if w.header == nil {
		// The map the connection's last response had, cleared: one
		// request is served at a time, and a handler (or the lane) is done with its
		// response writer — the header map with it — when ServeHTTP
		// returns (or it hijacked the connection, which then serves no
		// more requests). A new one is sized for a cache hit's dozen
		// fields: a map that grows past eight entries is rebuilt as a
		// table on the way, four allocations each time.
		if h := w.c.hdr; h != nil {
			clear(h)
			w.header = h
		} else {
			w.header = make(http.Header, responseFields)
			w.c.hdr = w.header
		}
	}
	return w.header
}

func (w *response) WriteHeader(code int) {
	if w.done || w.status != 0 {
		return // superfluous, as net/http (which logs it)
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	h := w.Header()
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInterim(code, h)
		return
	}
	w.status = code
	w.noBody = code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	w.cl = -1
	if v, ok := h["Content-Length"]; ok {
		if len(v) == 1 {
			if n, err := strconv.ParseUint(strings.TrimSpace(v[0]), 10, 63); err == nil {
				w.cl = int64(n)
			}
		}
		if w.cl < 0 {
			delete(h, "Content-Length") // net/http drops an invalid one too
		}
	}
	_, hasType := h["Content-Type"]
	if w.noBody || (w.cl >= 0 && hasType) {
		w.sendHead(h, nil, nil)
		return
	}
	// A sniffed type or a computed length may still be needed: the head
	// waits, on a snapshot, since the handler may change the map now.
	w.deferred = true
	w.sent = h.Clone()
}

func (w *response) Write(p []byte) (int, error) {
	if w.done {
		return 0, errAfterHandler
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, http.ErrContentLength
	}
	if w.deferred {
		if len(w.c.pend)+len(p) <= maxPend {
			if w.c.pend == nil {
				w.c.pend = make([]byte, 0, maxPend)
			}
			w.c.pend = append(w.c.pend, p...)
			w.written += int64(len(p))
			return len(p), nil
		}
		if err := w.commit(p); err != nil {
			return 0, err
		}
	}
	w.written += int64(len(p))
	if err := w.writeBody(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// commit sends a waiting head and the body bytes held for it; next is
// what the handler writes now, sniffed with them.
func (w *response) commit(next []byte) error {
	w.deferred = false
	pend := w.c.pend
	first := pend
	if len(pend) < sniffLen && len(next) > 0 {
		first = append(make([]byte, 0, sniffLen), pend...)
		first = append(first, next[:min(len(next), sniffLen-len(pend))]...)
	}
	w.sendHead(w.sent, first, nil)
	w.c.pend = pend[:0]
	if len(pend) > 0 {
		w.writeBody(pend)
	}
	return w.err
}

func (w *response) writeBody(p []byte) error {
	if w.isHead || len(p) == 0 {
		return w.err
	}
	bw := w.c.bw
	if w.chunked {
		var hx [20]byte
		bw.Write(strconv.AppendInt(hx[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		w.setErr(err)
		return w.err
	}
	if (w.c.out.tcp != nil || w.c.out.raw != nil) && bw.Buffered() > 0 && len(p) > bw.Available() {
		// The buffered bytes and p in one writev (see vecWriter).
		w.c.out.tail = p
		err := bw.Flush()
		w.c.out.tail = nil // when Flush had an error to return first
		if err != nil {
			w.setErr(err)
			return w.err
		}
		p = p[w.c.out.sent:]
		if len(p) == 0 {
			return nil
		}
	}
	_, err := bw.Write(p)
	w.setErr(err)
	return w.err
}

func (w *response) setErr(err error) {
	if err != nil && w.err == nil {
		w.err = err
	}
}

// Flush sends the head, if it waits, and everything buffered.
func (w *response) Flush() { w.FlushError() }

// FlushError is Flush that says whether it worked (http.ResponseController).
func (w *response) FlushError() error {
	if w.done {
		return errAfterHandler
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.deferred {
		w.commit(nil)
	}
	if w.err == nil {
		w.setErr(w.c.bw.Flush())
	}
	return w.err
}

// ReadFrom sends a file body with sendfile when the framing allows it
// (a declared length, no chunking): the cache's hit path.
func (w *response) ReadFrom(src io.Reader) (int64, error) {
	if w.done {
		return 0, errAfterHandler
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.cl-w.written >= bigFileBody && w.c.watching() {
		if f := fileOf(src); f != nil && regularFile(f) {
			// A body copied from a regular file waits on nothing but
			// the client, and a client that leaves fails the copy's
			// writes: the watch — a goroutine, a read and two deadline
			// changes once the request outlives watchDelay, as a large
			// file to a slow client does — would add nothing.
			w.c.disarm()
		}
	}
	if w.deferred || w.noBody || w.isHead || w.chunked || w.cl < 0 || w.err != nil {
		return copyBuffered(w, src)
	}
	if err := w.c.bw.Flush(); err != nil {
		w.setErr(err)
		return 0, err
	}
	rf, ok := w.c.rwc.(io.ReaderFrom)
	if !ok {
		return copyBuffered(w, src)
	}
	// One LimitedReader over the file, not two: the connection's
	// sendfile sees through one only. A caller's limit past the declared
	// length is lowered for the call and its surplus given back after.
	left := w.cl - w.written
	var n int64
	var err error
	if lr, ok := src.(*io.LimitedReader); ok {
		surplus := max(lr.N-left, 0)
		lr.N -= surplus
		n, err = rf.ReadFrom(lr)
		lr.N += surplus
	} else {
		n, err = rf.ReadFrom(io.LimitReader(src, left))
	}
	w.written += n
	if err != nil {
		w.setErr(err)
	}
	return n, err
}

// statter is a file, or os's wrapper of one (io.Copy hands a *os.File
// over in a wrapper that keeps its methods).
type statter interface{ Stat() (fs.FileInfo, error) }

// fileOf is src's file, or that of a limited read of one; nil for other
// sources.
func fileOf(src io.Reader) statter {
	if lr, ok := src.(*io.LimitedReader); ok {
		src = lr.R
	}
	f, _ := src.(statter)
	return f
}

// bigFileBody is the body length from which a file body ends the watch.
// Asking whether the file is a regular one costs a system call (fstat);
// a smaller body is sent before the watch would start.
const bigFileBody = 1 << 20

// regularFile reports whether f is a regular file.
func regularFile(f statter) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode().IsRegular()
}

var copyPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func copyBuffered(w *response, src io.Reader) (int64, error) {
	bp := copyPool.Get().(*[]byte)
	defer copyPool.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{w}, src, *bp)
}

// SetReadDeadline and SetWriteDeadline are what http.ResponseController
// calls (the edge's send and body timeouts).
func (w *response) SetReadDeadline(t time.Time) error  { return w.c.rwc.SetReadDeadline(t) }
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.rwc.SetWriteDeadline(t) }

// EnableFullDuplex: this server always lets a handler read the request
// body while it writes the response.
func (w *response) EnableFullDuplex() error { return nil }

// Hijack is not offered: requests that may upgrade (Upgrade, HTTP/2
// prior knowledge) go to net/http.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, http.ErrNotSupported
}

// finish completes the response after the handler returned.
func (w *response) finish() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.done = true
	if w.deferred {
		// The whole body is held: its length is known (net/http sets
		// it the same way, and not for a HEAD the handler wrote nothing
		// for). A length the handler declared stays: a body shorter
		// than it must reach the client cut short, not complete.
		w.deferred = false
		if _, ok := w.sent["Transfer-Encoding"]; !ok && w.cl < 0 && !w.hasTrailers(w.sent) && (!w.isHead || w.written > 0) {
			w.sent["Content-Length"] = []string{strconv.FormatInt(w.written, 10)}
			w.cl = w.written
		}
		w.commit(nil)
	}
	if w.chunked && w.err == nil {
		bw := w.c.bw
		bw.WriteString("0\r\n")
		w.writeTrailers()
		bw.WriteString("\r\n")
	}
	if w.cl >= 0 && w.written < w.cl && !w.isHead && !w.noBody {
		w.closeAfter = true // the client waits for bytes that never come
	}
	if w.err == nil {
		w.setErr(w.c.bw.Flush())
	}
}

func (w *response) hasTrailers(h http.Header) bool {
	if _, ok := h["Trailer"]; ok {
		return true
	}
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// writeTrailers writes the trailers the head declared, with their values
// as the handler left them, and those set with http.TrailerPrefix.
func (w *response) writeTrailers() {
	bw := w.c.bw
	declared := w.header["Trailer"]
	if w.sent != nil {
		declared = w.sent["Trailer"]
	}
	httpwire.Trailers(declared, w.header, func(k string, vv []string) {
		for _, v := range vv {
			httpwire.WriteField(bw, k, v)
		}
	})
}

// sendHead writes the status line and fields of h, then those of list,
// into the connection's buffer. first is the start of the body, for
// sniffing. list holds no framing field (see WriteHeaderFields).
func (w *response) sendHead(h http.Header, first []byte, list []httpwire.Field) {
	w.headSent = true
	bw := w.c.bw
	// The framing fields the handler set go out by net/http's rules
	// (chunkWriter.writeHeader): a response that has no body announces
	// none (a HEAD response that did got a chunked terminator, which the
	// client read as the start of the next response); a Content-Length
	// beside a Transfer-Encoding other than identity goes; identity is
	// no encoding.
	var te string
	if v := h["Transfer-Encoding"]; len(v) > 0 {
		te = v[0]
	}
	identity := te == "identity"
	dropTE, dropCL := false, false
	dropType := w.status == http.StatusNotModified
	if w.noBody {
		dropTE, dropCL = true, true
	}
	if te != "" && w.cl >= 0 && !identity {
		dropCL, w.cl = true, -1
	}
	ownTE := false // chunked, its field written below
	switch {
	case w.noBody || w.isHead, w.cl >= 0:
		dropTE = true
	case identity:
		dropTE, w.closeAfter = true, true
	case te == "" || len(h["Transfer-Encoding"]) == 1 && asciiEqualFold(strings.TrimSpace(te), "chunked"):
		w.chunked, ownTE, dropTE = true, true, true
	default:
		w.closeAfter = true // an encoding we do not frame: the end is the close
	}
	if w.closeReq || w.c.s.shutting.Load() || httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
		w.closeAfter = true
	}
	if b := w.reqBody; b != nil && b.unread.Load() > maxDiscard {
		w.closeAfter = true
	}
	omit := func(k string) bool {
		switch {
		case k == "Transfer-Encoding" && dropTE, k == "Content-Length" && (dropCL || w.chunked),
			k == "Content-Type" && dropType,
			k == "Connection" && w.closeAfter, strings.HasPrefix(k, http.TrailerPrefix):
			return true
		}
		return !httpguts.ValidHeaderFieldName(k) // net/http drops these too
	}
	bw.WriteString(statusLine(w.status))
	for k, vs := range h {
		if omit(k) {
			continue
		}
		for _, v := range vs {
			httpwire.WriteField(bw, k, v)
		}
	}
	for _, f := range list {
		if !omit(f.Name) {
			httpwire.WriteField(bw, f.Name, f.Value)
		}
	}
	if ownTE {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	if _, ok := h["Date"]; !ok && !httpwire.Has(list, "Date") {
		bw.WriteString("Date: ")
		bw.WriteString(httpwire.Date())
		bw.WriteString("\r\n")
	}
	// No sniffing of an encoded body either (net/http's issue 31753).
	// (A list comes with its type, or with no body: never sniffed.)
	if _, ok := h["Content-Type"]; !ok && !w.noBody && len(first) > 0 && len(h.Get("Content-Encoding")) == 0 {
		if _, te := h["Transfer-Encoding"]; !te {
			bw.WriteString("Content-Type: ")
			bw.WriteString(http.DetectContentType(first))
			bw.WriteString("\r\n")
		}
	}
	_, err := bw.WriteString("\r\n")
	w.setErr(err)
}

// FieldsWriter is a response writer that takes a final head's fields as
// a list (a head relayed as it came, see lb.PassRequest.Head) rather than
// in its header map; this package's writer and internal/http2's implement
// it, each by its own WriteHeader's rules. WriteHeaderFields sends the
// head for code with the fields already in Header() and then fields, as
// WriteHeader would send them all from Header() — the same framing, Date,
// Connection — and reports true; or it reports false having done
// nothing, and the caller puts the fields in Header() and calls
// WriteHeader. It reports false for a head WriteHeader would hold back (a
// Content-Type to sniff or a length to compute), for framing fields
// (Content-Length, Transfer-Encoding, Connection) in Header(), and for a
// status that is not a final one. Names in fields are canonical, values
// valid.
type FieldsWriter interface {
	WriteHeaderFields(code int, fields []httpwire.Field) bool
}

// WriteHeaderFields implements FieldsWriter: WriteHeader's checks and
// sendHead, for the one case a list takes — no framing field but a
// single Content-Length, and a head that need not wait.
func (w *response) WriteHeaderFields(code int, fields []httpwire.Field) bool {
	if w.done || w.status != 0 || code < 200 || code > 999 {
		return false
	}
	h := w.Header()
	for k := range h {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Connection":
			return false
		}
	}
	cl := int64(-1)
	_, hasType := h["Content-Type"]
	for _, f := range fields {
		switch f.Name {
		case "Content-Length":
			n, err := strconv.ParseUint(strings.TrimSpace(f.Value), 10, 63)
			if cl >= 0 || err != nil {
				return false // more than one, or one WriteHeader drops
			}
			cl = int64(n)
		case "Content-Type":
			hasType = true
		case "Transfer-Encoding", "Connection":
			return false
		}
	}
	noBody := code == http.StatusNoContent || code == http.StatusNotModified
	if !noBody && (cl < 0 || !hasType) {
		return false // WriteHeader would hold the head back
	}
	w.status, w.noBody, w.cl = code, noBody, cl
	w.sendHead(h, nil, fields)
	return true
}

// writeInterim sends a 1xx response (103 Early Hints, mostly) at once.
func (w *response) writeInterim(code int, h http.Header) {
	bw := w.c.bw
	bw.WriteString(statusLine(code))
	for k, vs := range h {
		if !httpguts.ValidHeaderFieldName(k) || strings.HasPrefix(k, http.TrailerPrefix) ||
			k == "Content-Length" || k == "Transfer-Encoding" { // no body: no framing (net/http's too)
			continue
		}
		for _, v := range vs {
			httpwire.WriteField(bw, k, v)
		}
	}
	bw.WriteString("\r\n")
	w.setErr(bw.Flush())
}

// statusLines holds the status lines of codes 100-599, built once.
var statusLines = func() (l [600]string) {
	for code := 100; code < len(l); code++ {
		l[code] = buildStatusLine(code)
	}
	return l
}()

func statusLine(code int) string {
	if code < len(statusLines) {
		return statusLines[code]
	}
	return buildStatusLine(code)
}

func buildStatusLine(code int) string {
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
}

// responseFields is the response header map's size hint.
const responseFields = 16
