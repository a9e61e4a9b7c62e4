package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// pattern is a compiled path pattern: literal segments, one-segment
// wildcards and an optional trailing rest wildcard.
type pattern struct {
	segs []string // "*" marks a one-segment wildcard (literals never contain '*')
	rest bool     // a trailing {name...} or ** matches the remainder
}

func compilePattern(p string) (pattern, error) {
	if !strings.HasPrefix(p, "/") {
		return pattern{}, fmt.Errorf("pattern %q must start with /", p)
	}
	var pt pattern
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		last := i == len(parts)-1
		switch {
		case s == "**" || strings.HasPrefix(s, "{") && strings.HasSuffix(s, "...}"):
			if !last {
				return pattern{}, fmt.Errorf("pattern %q: %s must be the last segment", p, s)
			}
			pt.rest = true
		case s == "*" || strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && len(s) > 2:
			pt.segs = append(pt.segs, "*")
		case strings.ContainsAny(s, "{}*"):
			return pattern{}, fmt.Errorf("pattern %q: segment %q mixes literal text and wildcards", p, s)
		default:
			pt.segs = append(pt.segs, normalizeEscaped(s))
		}
	}
	return pt, nil
}

// normalizeEscaped returns the escaped path p in normal form (RFC 3986
// §6.2.2): escaped unreserved characters decoded ("%61" is "a"), other
// escapes in upper case ("%2f" is "%2F"). Two spellings of one path are
// then one string for paths, strip_prefix and rewrite, as they are for
// the edge's router and the origin; an escaped "/" stays escaped.
func normalizeEscaped(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' || i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			b.WriteByte(c)
			continue
		}
		d := unhex(p[i+1])<<4 | unhex(p[i+2])
		if d >= 'a' && d <= 'z' || d >= 'A' && d <= 'Z' || d >= '0' && d <= '9' || d == '-' || d == '.' || d == '_' || d == '~' {
			b.WriteByte(d)
		} else {
			b.WriteString(strings.ToUpper(p[i : i+3]))
		}
		i += 2
	}
	return b.String()
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// match reports whether the escaped path (in normalizeEscaped form) matches. Matching the escaped
// form keeps %2F inside a segment from creating a new segment; a one-segment wildcard matches
// a segment holding one only when slashes is set (the route's encoded_slashes), since an
// origin that decodes before routing sees more segments than the pattern allowed.
func (pt pattern) match(path string, slashes bool) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	path = path[1:]
	for i, want := range pt.segs {
		seg, tail, found := strings.Cut(path, "/")
		if want == "*" {
			if seg == "" || !slashes && strings.Contains(seg, "%2F") {
				return false
			}
		} else if seg != want {
			return false
		}
		if !found {
			// The path ends here: all segments must be consumed, except
			// a rest wildcard which may match nothing.
			return i == len(pt.segs)-1
		}
		path = tail
	}
	if pt.rest {
		return true
	}
	// A trailing slash after the last literal ("/a/") is a different path.
	return len(pt.segs) == 0 && path == ""
}

// headerOps is HeaderOps with canonical names, ready to apply.
type headerOps struct {
	add, set [][2]string
	remove   []string
}

func compileOps(o HeaderOps) headerOps {
	var h headerOps
	for _, k := range slices.Sorted(mapKeys(o.Add)) {
		h.add = append(h.add, [2]string{textproto.CanonicalMIMEHeaderKey(k), o.Add[k]})
	}
	for _, k := range slices.Sorted(mapKeys(o.Set)) {
		h.set = append(h.set, [2]string{textproto.CanonicalMIMEHeaderKey(k), o.Set[k]})
	}
	for _, k := range o.Remove {
		h.remove = append(h.remove, textproto.CanonicalMIMEHeaderKey(k))
	}
	return h
}

func (h *headerOps) empty() bool { return len(h.add)+len(h.set)+len(h.remove) == 0 }

func (h *headerOps) apply(hdr http.Header) {
	for _, k := range h.remove {
		delete(hdr, k)
	}
	for _, kv := range h.set {
		hdr[kv[0]] = []string{kv[1]}
	}
	for _, kv := range h.add {
		hdr[kv[0]] = append(hdr[kv[0]], kv[1])
	}
}

func mapKeys[M ~map[string]V, V any](m M) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// cors is a compiled CORS policy.
type cors struct {
	any         bool
	origins     map[string]bool
	methods     string
	headers     string
	expose      string
	credentials bool
	maxAge      string
}

func compileCORS(c *CORSConfig, routeMethods []string) *cors {
	if c == nil {
		return nil
	}
	x := &cors{origins: map[string]bool{}, credentials: c.AllowCredentials}
	for _, o := range c.AllowOrigins {
		if o == "*" {
			x.any = true
		}
		x.origins[strings.TrimSuffix(o, "/")] = true
	}
	methods := c.AllowMethods
	if len(methods) == 0 {
		methods = routeMethods
	}
	if len(methods) == 0 {
		methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
	}
	x.methods = strings.Join(methods, ", ")
	hdrs := c.AllowHeaders
	if len(hdrs) == 0 {
		hdrs = []string{"Authorization", "Content-Type", "X-API-Key", "X-Request-ID"}
	}
	x.headers = strings.Join(hdrs, ", ")
	exp := c.ExposeHeaders
	if len(exp) == 0 {
		exp = []string{"RateLimit", "RateLimit-Policy", "Retry-After", "X-Request-ID"}
	}
	x.expose = strings.Join(exp, ", ")
	age := c.MaxAge.D()
	if age == 0 {
		age = 600e9
	}
	x.maxAge = strconv.Itoa(int(age.Seconds()))
	return x
}

func (c *cors) allowed(origin string) bool {
	return origin != "" && (c.any || c.origins[origin])
}

// decorate adds the CORS response fields for an allowed origin.
func (c *cors) decorate(h http.Header, origin string) {
	h.Add("Vary", "Origin")
	c.setFields(h, origin)
}

// corsFields are the response fields of a CORS policy.
var corsFields = []string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers",
	"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age",
}

// own replaces whatever CORS fields the upstream answered with the
// route's: an origin's own CORS middleware would otherwise duplicate
// Access-Control-Allow-Origin (browsers then refuse the response) or
// grant origins the route does not allow.
func (c *cors) own(h http.Header, origin string) {
	for _, k := range corsFields {
		delete(h, k)
	}
	c.setFields(h, origin)
}

func (c *cors) setFields(h http.Header, origin string) {
	if !c.allowed(origin) {
		return
	}
	if c.any && !c.credentials {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if c.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.expose != "" {
		h.Set("Access-Control-Expose-Headers", c.expose)
	}
}

// preflight answers an OPTIONS preflight: 204 with the policy for an
// allowed origin, 403 otherwise. Preflights carry no credentials, so they
// are answered before authentication.
func (c *cors) preflight(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	h := w.Header()
	h.Add("Vary", "Origin")
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	if !c.allowed(origin) {
		writeError(w, r, http.StatusForbidden, "cors_forbidden", "origin not allowed")
		return
	}
	c.decorate(h, origin)
	h.Set("Access-Control-Allow-Methods", c.methods)
	h.Set("Access-Control-Allow-Headers", c.headers)
	h.Set("Access-Control-Max-Age", c.maxAge)
	w.WriteHeader(http.StatusNoContent)
}

// bodyLimit caps a request body of unknown length. When the cap trips,
// the upstream call fails; the response writer then turns the proxy's
// error into a 413.
type bodyLimit struct {
	rc      io.ReadCloser
	left    int64
	tripped *atomic.Bool
}

var errBodyTooLarge = errors.New("gateway: request body too large")

func (b *bodyLimit) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Probe one byte to tell "exactly at the limit" from "beyond it".
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			b.tripped.Store(true)
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *bodyLimit) Close() error { return b.rc.Close() }

// respWriter applies the route's CORS fields and response header edits
// when the status is written, and answers 413 instead of the upstream's
// status when the body limit tripped.
type respWriter struct {
	http.ResponseWriter
	r       *http.Request
	ops     *headerOps
	cors    *cors // nil: no cors block
	tripped *atomic.Bool
	wrote   bool
	swallow bool // a 413 was written instead; drop the proxy's body
}

func (rw *respWriter) WriteHeader(code int) {
	if rw.wrote {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Informational (103 Early Hints): pass through, the final status follows.
		rw.ResponseWriter.WriteHeader(code)
		return
	}
	rw.wrote = true
	// Whatever the upstream made of a body cut at the limit (a 502 from
	// the proxy, or a backend that answered anyway), the client is told
	// its body was too large: the origin never saw the request it sent.
	if rw.tripped != nil && rw.tripped.Load() {
		rw.swallow = true
		writeError(rw.ResponseWriter, rw.r, http.StatusRequestEntityTooLarge, "body_too_large", "request body too large")
		return
	}
	if rw.cors != nil {
		rw.cors.own(rw.ResponseWriter.Header(), rw.r.Header.Get("Origin"))
	}
	if rw.ops != nil {
		rw.ops.apply(rw.ResponseWriter.Header())
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *respWriter) Write(p []byte) (int, error) {
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.swallow {
		return len(p), nil
	}
	return rw.ResponseWriter.Write(p)
}

func (rw *respWriter) Flush() {
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	if f, ok := rw.ResponseWriter.(http.Flusher); ok && !rw.swallow {
		f.Flush()
	}
}

// ReadFrom keeps sendfile(2) for a file body (a cache hit on the route)
// when the writer below has it.
func (rw *respWriter) ReadFrom(src io.Reader) (int64, error) {
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.swallow {
		return io.Copy(io.Discard, src)
	}
	if rf, ok := rw.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{rw.ResponseWriter}, src)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rw *respWriter) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// Hijack supports protocol upgrades through the proxy.
func (rw *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(rw.ResponseWriter).Hijack()
}
