// Package edge is the node's front door: the HTTP listener with sane limits,
// the per-request frame (request id, client address, access log, metrics,
// panic recovery) and the router from host + path prefix to a route.
package edge

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/http1"
	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/internal/httpwire"
	"github.com/outpost-edge/outpost/internal/reqinfo"
)

// HealthPath is answered by every edge listener itself, before routing:
// other nodes probe it to steer DNS away from a dead node.
const HealthPath = "/_outpost/healthz"

// Handler is the per-request frame around a Router. It is immutable; a
// reload builds a new one.
type Handler struct {
	Node      string
	Router    *Router
	Trusted   []netip.Prefix
	Metrics   *Metrics
	AccessLog *slog.Logger // nil disables the access log
	// Healthy reports whether this node should call itself healthy; nil
	// means always.
	Healthy func() bool
}

func (h *Handler) trusted(a netip.Addr) bool {
	for _, p := range h.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// frame is one request's own state in one allocation: its Info, the
// recorder around its writer, the request and context carrying the Info,
// and the X-Request-Id values of the request and the response.
type frame struct {
	info reqinfo.Info
	rec  recorder
	ctx  reqinfo.Context
	req  http.Request
	ids  [2]string
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	f := &frame{}
	info := &f.info
	info.TLS = r.TLS != nil
	info.PeerIP = http1.PeerAddr(r.RemoteAddr)
	info.ClientIP = info.PeerIP
	if info.PeerIP.IsValid() && h.trusted(info.PeerIP) {
		info.Trusted = true
		info.ClientIP = h.forwardedClient(r.Header.Values("X-Forwarded-For"), info.PeerIP)
		if p := r.Header.Get("X-Forwarded-Proto"); p == "https" {
			info.TLS = true
		}
	}
	// Header.Get and Set with the key spelled canonically (no copy of
	// it), and the two values cut from one array, each slice capped at
	// its own.
	id := ""
	if v := r.Header["X-Request-Id"]; len(v) > 0 {
		id = v[0]
	}
	ids := f.ids[:]
	if info.Trusted && validRequestID(id) {
		info.ID = id
	} else {
		info.ID = newRequestID()
		ids[0] = info.ID
		r.Header["X-Request-Id"] = ids[0:1:1]
	}
	ids[1] = info.ID
	w.Header()["X-Request-Id"] = ids[1:2:2]
	// WithContext's copy is only copied from, so it stays on the stack.
	f.ctx.Bind(r.Context(), info)
	f.req = *r.WithContext(&f.ctx)
	r = &f.req

	rec := &f.rec
	rec.ResponseWriter = w
	if h.Metrics != nil {
		h.Metrics.inflight.Inc()
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				h.finish(rec, r, info, start)
				panic(p)
			}
			h.answerPanic(p, rec, r, info.ID)
		}
		h.finish(rec, r, info, start)
	}()

	if r.URL.Path == HealthPath {
		info.SetRoute("_health")
		if h.Healthy != nil && !h.Healthy() {
			http.Error(rec, "unhealthy\n", http.StatusServiceUnavailable)
			return
		}
		rec.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rec.Header().Set("Cache-Control", "no-store")
		_, _ = rec.Write([]byte("ok\n"))
		return
	}
	if hasDotSegment(r.URL.Path) || strings.IndexByte(r.URL.Path, '\\') >= 0 {
		// "/pub/../admin" would match the "/pub/" route's prefix while the
		// origin resolves it to /admin: refuse rather than route it. A
		// backslash (raw or %5C) is refused for the same reason: origins
		// that read it as "/" (IIS, some frameworks) would see
		// "/pub\..\admin" as /admin, and "/admin\x" as a path under
		// the /admin/ route that its policy never saw.
		info.SetRoute("_none")
		httperr.Write(rec, r, http.StatusBadRequest, "bad_path", "the path contains \".\" or \"..\" segments or a backslash")
		return
	}
	name, next, ok := h.Router.Match(r.Host, routePath(r.URL.Path))
	if !ok {
		info.SetRoute("_none")
		httperr.Write(rec, r, http.StatusNotFound, "no_route", "no route for this host and path")
		return
	}
	info.SetRoute(name)
	next.ServeHTTP(rec, r)
}

// answerPanic logs a handler's panic v and answers 500 when nothing was
// sent yet.
func (h *Handler) answerPanic(v any, rec *recorder, r *http.Request, id string) {
	if h.AccessLog != nil {
		h.AccessLog.Error("handler panic", "panic", v, "request_id", id)
	}
	if !rec.wroteHeader {
		httperr.Write(rec, r, http.StatusInternalServerError, "internal_error", "internal error")
	}
}

func (h *Handler) finish(rec *recorder, r *http.Request, info *reqinfo.Info, start time.Time) {
	h.record(r.Context(), rec, r.Method, r.Host, r.URL.Path, info, start)
}

// record ends a request's frame: the in-flight gauge, the route metrics,
// the access log line.
func (h *Handler) record(ctx context.Context, rec *recorder, method, host, path string, info *reqinfo.Info, start time.Time) {
	end := time.Now()
	d := end.Sub(start)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	route := info.Route()
	if h.Metrics != nil {
		h.Metrics.inflight.Dec()
		h.Metrics.observe(route, status, d)
	}
	if h.AccessLog == nil {
		return
	}
	// The handler directly, as Logger.LogAttrs would call it but without
	// the caller's program counter, which it looks up on every call and
	// no access line shows.
	hd := h.AccessLog.Handler()
	if !hd.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("node", h.Node),
		slog.String("route", route),
		slog.String("method", method),
		slog.String("host", host),
		slog.String("path", path),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("client", info.ClientIP.String()),
		slog.String("request_id", info.ID),
	)
	for k, v := range info.Fields() {
		attrs = append(attrs, slog.String(k, v))
	}
	r := slog.NewRecord(end, slog.LevelInfo, "request", 0)
	r.AddAttrs(attrs...)
	_ = hd.Handle(ctx, r)
}

// forwardedClient walks X-Forwarded-For from the right, skipping trusted
// proxies: the first untrusted address is the client. Garbage stops the
// walk and the last trusted hop is used instead.
func (h *Handler) forwardedClient(values []string, peer netip.Addr) netip.Addr {
	client := peer
	for i := len(values) - 1; i >= 0; i-- {
		parts := strings.Split(values[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return client
			}
			client = a.Unmap()
			if !h.trusted(client) {
				return client
			}
		}
	}
	return client
}

// routePath is the path routes are matched on: runs of "/" merged, as
// nginx (merge_slashes) and most origins read them, so "//admin/x" meets
// the /admin/ route and its policy instead of slipping through the "/"
// route. The request itself goes on as sent.
func routePath(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && len(b) > 0 && b[len(b)-1] == '/' {
			continue
		}
		b = append(b, p[i])
	}
	return string(b)
}

// hasDotSegment reports whether the decoded path has a "." or ".." segment
// (so "%2e%2e" and "%2F..%2F" count too). Browsers remove them before
// sending; a request that still has them is probing prefix routing.
func hasDotSegment(p string) bool {
	for len(p) > 0 {
		var seg string
		seg, p, _ = strings.Cut(p, "/")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// validRequestID accepts 1–128 characters of [A-Za-z0-9._:-]: enough for
// UUIDs and most tracing ids, nothing that could break a log line.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// newRequestID is 128 random bits in hex. math/rand/v2's generator
// (ChaCha8, seeded by the OS, per thread) is unpredictable enough for an
// ID that is never a secret, and costs no system call: crypto/rand was 1%
// of a small hit's CPU.
func newRequestID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// recorder captures status and size while passing everything through; it
// unwraps for http.ResponseController (flush, deadlines, hijack).
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader && code >= 200 {
		r.status = code
		r.wroteHeader = true
	}
	r.ResponseWriter.WriteHeader(code)
}

// WriteHeaderFields passes a head's field list through (the pass lane's,
// see http1.FieldsWriter), recording its status as WriteHeader would.
func (r *recorder) WriteHeaderFields(code int, fields []httpwire.Field) bool {
	fw, ok := r.ResponseWriter.(http1.FieldsWriter)
	if !ok || !fw.WriteHeaderFields(code, fields) {
		return false
	}
	if !r.wroteHeader {
		r.status = code
		r.wroteHeader = true
	}
	return true
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.status = http.StatusOK
		r.wroteHeader = true
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// ReadFrom lets a file body (a cache hit) reach the connection through the
// server's sendfile path instead of being copied through a buffer.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if !r.wroteHeader {
		r.status = http.StatusOK
		r.wroteHeader = true
	}
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	}
	r.bytes += n
	return n, err
}

// NewServer returns an http.Server with the configured limits; handler is
// typically a *Swapper so reloads don't touch the listener. The handler
// runs under Guard; set Handler to Guard(cfg, h) when replacing it.
func NewServer(cfg *Config, handler http.Handler, errLog *slog.Logger) *http.Server {
	s := &http.Server{
		Handler:           Guard(cfg, handler),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout.D(),
		ReadTimeout:       cfg.ReadTimeout.D(),
		WriteTimeout:      cfg.WriteTimeout.D(),
		IdleTimeout:       cfg.IdleTimeout.D(),
		MaxHeaderBytes:    int(cfg.MaxHeaderBytes),
		// A client that stops reading an HTTP/2 connection blocks its
		// frame writer, and with it every stream's reset: close the
		// connection after send_timeout without a written byte. The
		// other HTTP/2 limits keep Go's defaults (250 concurrent streams,
		// rapid-reset and CONTINUATION-flood protection, max_header_bytes
		// as the header list limit).
		HTTP2: &http.HTTP2Config{WriteByteTimeout: cfg.SendTimeout.D()},
	}
	if cfg.SendTimeout > 0 && cfg.WriteTimeout <= 0 {
		// Guard keeps an HTTP/1.1 connection's write deadline from one
		// request to the next (see connWrite).
		s.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connWriteKey{}, &connWrite{})
		}
	}
	if errLog != nil {
		s.ErrorLog = slog.NewLogLogger(errLog.Handler(), slog.LevelWarn)
	}
	return s
}

// Listen opens a TCP listener and names the address in the error, so a
// port in use reads as such instead of a stack trace.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &ListenError{Addr: addr, Err: err}
	}
	return ln, nil
}

// ListenError explains a failed listen.
type ListenError struct {
	Addr string
	Err  error
}

func (e *ListenError) Error() string {
	if strings.Contains(e.Err.Error(), "address already in use") {
		return "cannot listen on " + e.Addr + ": the address is already in use (is another outpost or server running on that port?)"
	}
	return "cannot listen on " + e.Addr + ": " + e.Err.Error()
}

func (e *ListenError) Unwrap() error { return e.Err }
