package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/http1"
	"github.com/outpost-edge/outpost/internal/httpwire"
	"github.com/outpost-edge/outpost/internal/reqinfo"
	"github.com/outpost-edge/outpost/lb"
)

// forwarder is the proxy for requests that cannot upgrade the connection
// and carry no request trailers or TE — nearly all of them. It does what
// httputil.ReverseProxy does for such a request, step for step (the
// comments name the step), with fewer copies: the outbound header is
// built in one pass instead of cloned and swept, and the response header
// is handed to the client's writer instead of copied value by value.
// Anything else goes to rp, the reference.
type forwarder struct {
	rt     http.RoundTripper
	target *url.URL
	via    string
	// viaOnly is a response's Via when the backend sent none: shared by
	// every response, never changed in place (its length is its
	// capacity, so an append copies).
	viaOnly []string
	log     *slog.Logger
	rp      *httputil.ReverseProxy
	onErr   func(http.ResponseWriter, *http.Request, error)

	// pool is the transport when it is a load-balancer pool, which can
	// take pass-lane requests (see Pass); bodyTimeout is then the
	// route's body_timeout.
	pool        *lb.Pool
	bodyTimeout time.Duration
}

// plain reports whether r takes the forwarder: no Upgrade (101 handling),
// no Te (ReverseProxy keeps "Te: trailers"), no request trailers.
func plain(r *http.Request) bool {
	h := r.Header
	if _, ok := h["Upgrade"]; ok {
		return false
	}
	if _, ok := h["Te"]; ok {
		return false
	}
	_, ok := h["Trailer"]
	return !ok && r.Trailer == nil
}

// hopHeaders are ReverseProxy's hop-by-hop fields: never forwarded.
var hopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// fwd is one request's state: the 1xx trace and the client's writer in
// one allocation.
type fwd struct {
	trace httptrace.ClientTrace
	w     http.ResponseWriter
	// The outbound request and its URL, allocated with the rest.
	out http.Request
	url url.URL
}

// got1xx passes an informational response (103 Early Hints) on, as
// ReverseProxy does.
func (s *fwd) got1xx(code int, header textproto.MIMEHeader) error {
	writeInterim(s.w, code, header)
	return nil
}

// writeInterim sends an informational response with header's fields.
// What handlers around the proxy already set for the final response (its
// X-Request-Id, a gateway's CORS and RateLimit fields) goes out with it
// and is kept for the final one: ReverseProxy clears it, and a final
// response after an Early Hints would lose it.
func writeInterim(w http.ResponseWriter, code int, header textproto.MIMEHeader) {
	h := w.Header()
	var saved http.Header
	if len(h) > 0 {
		saved = h.Clone()
	}
	for k, vv := range header {
		h[k] = append(h[k], vv...)
	}
	w.WriteHeader(code)
	clear(h)
	maps.Copy(h, saved)
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !plain(r) {
		f.rp.ServeHTTP(w, r)
		return
	}
	s := &fwd{w: w}
	s.trace.Got1xxResponse = s.got1xx
	// (WithContext's copy is only copied from, so it stays on the stack.)
	s.out = *r.WithContext(httptrace.WithClientTrace(r.Context(), &s.trace))
	out := &s.out
	// ReverseProxy: no body for a zero length; never Close; a URL of our
	// own to rewrite.
	if r.ContentLength == 0 {
		out.Body = nil
	}
	if out.Body != nil {
		defer out.Body.Close()
	}
	out.Close = false
	s.url = *r.URL
	out.URL = &s.url
	out.RequestURI = ""
	out.Header = outboundHeader(r.Header)
	rewriteOut(r, out, f.target, f.via)

	res, err := f.rt.RoundTrip(out)
	if err != nil {
		f.onErr(w, out, err)
		return
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// Nobody asked to upgrade (plain requests carry no Upgrade).
		res.Body.Close()
		f.onErr(w, out, fmt.Errorf("backend tried to switch protocol %q when %q was requested", res.Header.Get("Upgrade"), ""))
		return
	}
	if err := f.relay(w, res); err != nil && r.Context().Value(http.ServerContextKey) != nil {
		// As ReverseProxy: abort the response so the client sees it cut,
		// not complete.
		panic(http.ErrAbortHandler)
	}
}

// relay copies res to w: its header without hop-by-hop fields and with
// Via, its body, its trailers. It closes res.Body and returns the body
// copy's error, after which the response is broken and must be cut.
func (f *forwarder) relay(w http.ResponseWriter, res *http.Response) error {
	removeHop(res.Header)
	if _, ok := res.Header["Via"]; ok || len(f.viaOnly) != 1 {
		appendVia(res.Header, f.via)
	} else {
		res.Header["Via"] = f.viaOnly
	}

	// The response header becomes the client's: moved, not copied.
	h := w.Header()
	for k, vv := range res.Header {
		if prev, ok := h[k]; ok {
			h[k] = append(prev, vv...)
		} else {
			h[k] = vv
		}
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)
	if err := copyBody(w, res, f.log); err != nil {
		res.Body.Close()
		return err
	}
	res.Body.Close() // now, not deferred: it fills res.Trailer
	if len(res.Trailer) > 0 {
		http.NewResponseController(w).Flush()
	}
	if len(res.Trailer) == announced {
		for k, vv := range res.Trailer {
			h[k] = append(h[k], vv...)
		}
		return nil
	}
	for k, vv := range res.Trailer {
		k = http.TrailerPrefix + k
		for _, v := range vv {
			h.Add(k, v)
		}
	}
	return nil
}

// relayFields is relay for a response whose fields came as a list, in
// the order the backend sent them (lb.PassRequest.Head; res.Header is
// nil): the same head goes out — hop-by-hop fields and those Connection
// names dropped, Via joined — written from the list by a writer that
// can (http1.FieldsWriter), else put in w's header map as relay puts
// them; then the body. A head of this kind has no trailers. scratch is
// the caller's room for the list that goes out.
func (f *forwarder) relayFields(w http.ResponseWriter, res *http.Response, in []httpwire.Field, scratch *[]httpwire.Field) error {
	out := (*scratch)[:0]
	// Most heads have no Connection field: then no name is one it lists.
	conn := httpwire.Has(in, "Connection")
	via := f.via
	if !conn || !connectionNames(in, "Via") {
		var prior []string
		for _, fl := range in {
			if fl.Name == "Via" {
				prior = append(prior, fl.Value)
			}
		}
		if len(prior) > 0 {
			via = strings.Join(prior, ", ") + ", " + f.via
		}
	}
	contentType, typed := "", false
	for _, fl := range in {
		if fl.Name == "Via" || isHop(fl.Name) || conn && connectionNames(in, fl.Name) {
			continue
		}
		if fl.Name == "Content-Type" && !typed {
			contentType, typed = fl.Value, true
		}
		out = append(out, fl)
	}
	out = append(out, httpwire.Field{Name: "Via", Value: via})
	*scratch = out
	if fw, ok := w.(http1.FieldsWriter); !ok || !fw.WriteHeaderFields(res.StatusCode, out) {
		h := w.Header()
		for _, fl := range out {
			h[fl.Name] = append(h[fl.Name], fl.Value)
		}
		w.WriteHeader(res.StatusCode)
	}
	err := copyBodyFlushing(w, res, res.ContentLength == -1 || isEventStream(contentType), f.log)
	res.Body.Close()
	return err
}

// connectionNames reports whether a Connection field in fields lists
// name (canonical).
func connectionNames(fields []httpwire.Field, name string) bool {
	for _, fl := range fields {
		if fl.Name == "Connection" && lists(fl.Value, name) {
			return true
		}
	}
	return false
}

// lists reports whether the Connection field value v lists name
// (canonical), as removeHop reads it: each comma-separated option,
// trimmed, compared as the canonical name it stands for.
func lists(v, name string) bool {
	for v != "" {
		var tok string
		if tok, v = nextOption(v); tok != "" && httpwire.EqualFold(tok, name) {
			return true
		}
	}
	return false
}

// outboundHeader is in's header without hop-by-hop fields (those named in
// Connection too) and without X-Forwarded-For/-Host/-Proto, which
// rewriteOut sets — ReverseProxy's Rewrite mode removes the same. Values
// are shared with in: nothing downstream changes a value in place.
func outboundHeader(in http.Header) http.Header {
	out := make(http.Header, len(in)+6)
	conn := in["Connection"]
	for k, vv := range in {
		switch k {
		case "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		}
		if isHop(k) || (conn != nil && named(conn, k)) {
			continue
		}
		out[k] = vv
	}
	return out
}

// named reports whether a Connection field lists k.
func named(conn []string, k string) bool {
	for _, v := range conn {
		if lists(v, k) {
			return true
		}
	}
	return false
}

// nextOption splits the first option off a Connection field value: tok,
// trimmed ("" for an empty one), and the rest of the list.
func nextOption(v string) (tok, rest string) {
	tok, rest, _ = strings.Cut(v, ",")
	return textproto.TrimString(tok), rest
}

// removeHop removes the hop-by-hop fields from a response header.
func removeHop(h http.Header) {
	for _, v := range h["Connection"] {
		for v != "" {
			var tok string
			if tok, v = nextOption(v); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// copyBody streams the response body to the client, flushing each write
// of a response whose end is unknown or that is an event stream, as
// ReverseProxy does (with FlushInterval 0).
func copyBody(w http.ResponseWriter, res *http.Response, log *slog.Logger) error {
	return copyBodyFlushing(w, res, res.ContentLength == -1 || isEventStream(res.Header.Get("Content-Type")), log)
}

// copyBodyFlushing is copyBody, told whether to flush each write.
func copyBodyFlushing(w http.ResponseWriter, res *http.Response, flush bool, log *slog.Logger) error {
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	for {
		nr, rerr := res.Body.Read(buf)
		if rerr != nil && rerr != io.EOF && rerr != context.Canceled {
			log.Debug("httputil: ReverseProxy read error during body copy", "error", rerr)
		}
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
			if flush {
				if err := rc.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// isEventStream is mime.ParseMediaType(ct) == "text/event-stream" without
// the parse.
func isEventStream(ct string) bool {
	const es = "text/event-stream"
	ct = strings.TrimLeft(ct, " \t")
	if len(ct) < len(es) || !strings.EqualFold(ct[:len(es)], es) {
		return false
	}
	rest := strings.TrimLeft(ct[len(es):], " \t")
	return rest == "" || rest[0] == ';'
}

// Passable reports whether Pass would take requests: the upstream is a
// pool that serves the pass lane now.
func (f *forwarder) Passable() bool { return f.pool != nil && f.pool.Passable() }

// Pass serves p, a bodiless GET or HEAD on the edge's pass lane, when the
// upstream is a pool that takes such requests (lb.Pool.Pass): the same
// request the handler chain would send — the client's fields without
// hop-by-hop and forwarding ones, X-Forwarded-For, -Proto and -Host,
// X-Request-Id and Via set as rewriteOut sets them — written as bytes
// straight into the backend connection, and the response relayed as
// ServeHTTP relays it. It reports false, having written nothing, when
// the pool cannot take it.
func (f *forwarder) Pass(w http.ResponseWriter, p *http1.Pass, info *reqinfo.Info) bool {
	if f.pool == nil {
		return false
	}
	c := passCallOf(p)
	if p.HTTP2 {
		defer passCalls.Put(c)
	}
	c.f, c.w, c.p, c.info, c.relayed = f, w, p, info, false
	pr := &c.pr
	pr.Method, pr.Target, pr.ClientIP, pr.Info, pr.BodyTimeout = p.Method, p.Target, info.ClientIP, info, f.bodyTimeout
	// Ends when the client leaves, as the chain's request context does:
	// an HTTP/2 stream it resets, at once; an HTTP/1.1 connection it
	// closes, once the server watches it — from when the backend has
	// taken 100 ms to answer, as the chain's requests are watched from
	// 100 ms on.
	pr.Ctx = p.Conn
	pr.Watch = nil
	if !p.HTTP2 {
		pr.Watch = c.watch
	}
	err := f.pool.Pass(pr, c.relay)
	relayed := c.relayed
	c.f, c.w, c.p, c.info, pr.Info, pr.Ctx = nil, nil, nil, nil, nil, nil // nothing of this request (or config) is kept
	switch {
	case err == nil:
		return true
	case relayed:
		// As ServeHTTP: a body cut mid-way is cut for the client too.
		panic(http.ErrAbortHandler)
	case errors.Is(err, lb.ErrNotPassable):
		return false
	}
	// No try answered: the JSON error the chain gives, from the same code,
	// for a request made of what it reads.
	path, _, _ := strings.Cut(p.Target, "?")
	r := &http.Request{Method: p.Method, Host: p.Host, URL: &url.URL{Path: path}}
	ctx := context.Background()
	if p.Conn != nil {
		ctx = p.Conn // ended: the client left, and is not answered
	}
	f.onErr(w, r.WithContext(reqinfo.With(ctx, info)), err)
	return true
}

// passCall is a pass-lane request's state in the forwarder: its
// lb.PassRequest and the functions the pool calls back, made once per
// HTTP/1.1 connection (http1.Pass.Kept) and bound to the fields each
// request sets, so that a request allocates none of them.
type passCall struct {
	f       *forwarder
	w       http.ResponseWriter
	p       *http1.Pass
	info    *reqinfo.Info
	relayed bool

	pr    lb.PassRequest
	relay func(*http.Response) error
	watch func()
	out   []httpwire.Field // relayFields' scratch
}

// passCalls holds HTTP/2 streams' passCalls, which no connection keeps
// (its streams run at once).
var passCalls = sync.Pool{New: func() any { return newPassCall() }}

// passCallOf is p's connection's passCall, or for HTTP/2 one from
// passCalls, which the caller puts back.
func passCallOf(p *http1.Pass) *passCall {
	if p.HTTP2 {
		return passCalls.Get().(*passCall)
	}
	if c, ok := p.Kept.Handler.(*passCall); ok {
		return c
	}
	c := newPassCall()
	p.Kept.Handler = c
	return c
}

func newPassCall() *passCall {
	c := new(passCall)
	c.pr.Field = func(name string) []string { return passField(c.p, c.info, c.f.via, name) }
	c.pr.Got1xx = func(code int, h textproto.MIMEHeader) error {
		writeInterim(c.w, code, h)
		return nil
	}
	c.pr.WriteFields = func(bw *bufio.Writer) { writePassFields(bw, c.p, c.info, c.f.via) }
	c.relay = func(res *http.Response) error {
		c.relayed = true
		if res.Header == nil {
			return c.f.relayFields(c.w, res, c.pr.Head, &c.out)
		}
		return c.f.relay(c.w, res)
	}
	c.watch = func() { c.p.Watch() }
	return c
}

// passField is the named (canonical) field of the request the chain would
// hand the pool for p, as writePassFields writes it: the client's, or what
// the rewrite put in its place, or nil.
func passField(p *http1.Pass, info *reqinfo.Info, via, name string) []string {
	switch name {
	case "Host", "Content-Length":
		return nil // Host is the request's, not a field; a GET or HEAD has no body
	case "X-Forwarded-For":
		return []string{addrString(info.PeerIP, p.RemoteAddr)}
	case "X-Forwarded-Proto":
		if p.TLS {
			return []string{"https"}
		}
		return []string{"http"}
	case "X-Forwarded-Host":
		return []string{p.Host}
	case "X-Request-Id":
		return []string{info.ID}
	case "Via":
		return []string{viaValue(p.Header, via)}
	}
	if isHop(name) || forwardingField(name) {
		return nil
	}
	return p.Header[name]
}

// writePassFields writes the head's fields for p after its request line:
// what outboundHeader and rewriteOut make of the client's header for a
// request from an untrusted peer (the pass lane takes no other). The head
// parser took only a valid ASCII Host, so it goes out as it came.
func writePassFields(bw *bufio.Writer, p *http1.Pass, info *reqinfo.Info, via string) {
	bw.WriteString("Host: ")
	bw.WriteString(p.Host)
	bw.WriteString("\r\n")
	for k, vv := range p.Header {
		switch k {
		case "Via", "Content-Length", "X-Request-Id":
			continue // joined below; a GET or HEAD without a body; the edge's id below
		}
		if isHop(k) || forwardingField(k) {
			continue
		}
		for _, v := range vv {
			httpwire.WriteField(bw, k, v)
		}
	}
	httpwire.WriteField(bw, "X-Forwarded-For", addrString(info.PeerIP, p.RemoteAddr))
	if p.TLS {
		bw.WriteString("X-Forwarded-Proto: https\r\n")
	} else {
		bw.WriteString("X-Forwarded-Proto: http\r\n")
	}
	httpwire.WriteField(bw, "X-Forwarded-Host", p.Host)
	httpwire.WriteField(bw, "X-Request-Id", info.ID)
	httpwire.WriteField(bw, "Via", viaValue(p.Header, via))
	bw.WriteString("\r\n")
}
