// Package proxy is the edge's reverse proxy: it builds the outbound request
// (hop-by-hop headers removed, forwarding headers set from what the edge
// established, never from what an untrusted client claimed), streams bodies
// and trailers both ways, and turns upstream failures into 502/503/504 JSON
// errors instead of hangs.
//
// Requests that cannot upgrade and carry no TE or request trailers —
// nearly all — take forwarder, which does what httputil.ReverseProxy does
// for them with fewer copies (measured: it is a fifth of pass-through
// CPU). The rest take net/http/httputil.ReverseProxy with a Rewrite hook:
// the standard library gets protocol upgrades and the rarer cases right,
// and both paths share the rewrite and error handling.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/internal/reqinfo"
	"github.com/outpost-edge/outpost/lb"
)

// Options configure a proxy Handler.
type Options struct {
	// Target is the upstream for a single-origin route. Nil when the
	// Transport chooses the backend itself (an lb.Pool).
	Target *url.URL
	// Transport sends the request. Required.
	Transport http.RoundTripper
	// Via is this proxy's pseudonym in the Via header.
	Via string
	// Logger receives upstream errors.
	Logger *slog.Logger
	// BodyTimeout bounds each read of the upstream's response body; 0:
	// none.
	BodyTimeout time.Duration
}

// StatusCoder is implemented by transport errors that know which status a
// client should see (an lb pool with no healthy backend says 503).
type StatusCoder interface {
	HTTPStatus() int
}

// New returns a reverse proxy handler.
func New(o Options) http.Handler {
	via := "1.1 " + o.Via
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	target := o.Target
	transport := o.Transport
	if o.BodyTimeout > 0 {
		transport = bodyTimeout{rt: transport, d: o.BodyTimeout}
	}
	onErr := func(w http.ResponseWriter, r *http.Request, err error) {
		status, code, msg := classify(r.Context(), err)
		log.LogAttrs(r.Context(), slog.LevelWarn, "upstream error",
			slog.String("request_id", idOf(r)), slog.String("host", r.Host),
			slog.String("path", r.URL.Path), slog.Int("status", status), slog.String("error", err.Error()))
		if status == 0 { // client went away: nobody to answer
			return
		}
		httperr.Write(w, r, status, code, msg)
	}
	rp := &httputil.ReverseProxy{
		Transport:  transport,
		BufferPool: bufPool{},
		// Zero: ReverseProxy already flushes every write of responses
		// without a Content-Length and of event streams, so slow origins
		// trickle through; flushing sized responses on every write costs
		// a third of the pass-through CPU.
		FlushInterval: 0,
		Rewrite: func(pr *httputil.ProxyRequest) {
			rewrite(pr, target, via)
		},
		ModifyResponse: func(resp *http.Response) error {
			appendVia(resp.Header, via)
			return nil
		},
		ErrorHandler: onErr,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	f := &forwarder{rt: transport, target: target, via: via, viaOnly: []string{via}, log: log, rp: rp, onErr: onErr}
	if p, ok := o.Transport.(*lb.Pool); ok && target == nil {
		f.pool, f.bodyTimeout = p, o.BodyTimeout
	}
	return f
}

func idOf(r *http.Request) string {
	if info := reqinfo.From(r.Context()); info != nil {
		return info.ID
	}
	return ""
}

// classify maps a transport error to the status the client sees.
func classify(ctx context.Context, err error) (int, string, string) {
	var sc StatusCoder
	if errors.As(err, &sc) {
		s := sc.HTTPStatus()
		switch s {
		case http.StatusServiceUnavailable:
			return s, "no_backend", "no healthy upstream is available"
		case http.StatusGatewayTimeout:
			return s, "upstream_timeout", "the upstream did not answer in time"
		}
		return s, "bad_gateway", "the upstream could not be reached"
	}
	if errors.Is(err, lb.ErrNoBackend) {
		return http.StatusServiceUnavailable, "no_backend", "no healthy upstream is available"
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return 0, "", ""
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout, "upstream_timeout", "the upstream did not answer in time"
	}
	return http.StatusBadGateway, "bad_gateway", "the upstream could not be reached"
}

func rewrite(pr *httputil.ProxyRequest, target *url.URL, via string) {
	rewriteOut(pr.In, pr.Out, target, via)
}

// rewriteOut finishes the outbound request out for in: the target URL, the
// Host, the forwarding fields. out's header has no X-Forwarded-For,
// -Host or -Proto (ReverseProxy's Rewrite mode and outboundHeader both
// remove them).
func rewriteOut(in, out *http.Request, target *url.URL, via string) {
	info := reqinfo.From(in.Context())
	if target != nil {
		out.URL.Scheme = target.Scheme
		out.URL.Host = target.Host
		out.URL.Path, out.URL.RawPath = joinPath(target, in.URL)
		if target.RawQuery != "" && in.URL.RawQuery != "" {
			out.URL.RawQuery = target.RawQuery + "&" + in.URL.RawQuery
		} else if target.RawQuery != "" {
			out.URL.RawQuery = target.RawQuery
		}
	} else {
		out.URL.Scheme = "http"
		out.URL.Host = ""
	}
	// Request.Clone copied the trailer map before the body was read; share
	// the inbound one so trailers that arrive at body EOF are forwarded.
	out.Trailer = in.Trailer
	// The origin sees the host the client asked for, like HAProxy and
	// Varnish do by default: virtual hosting at the origin keeps working.
	out.Host = in.Host

	// Rewrite mode has already removed X-Forwarded-For/Host/Proto from
	// out. The rest of the family (Prefix, Port, Ssl, Client-Cert, …),
	// Forwarded (RFC 7239) and X-Real-IP are not ours to pass on from
	// strangers: origins trust them to say what a proxy saw. Spellings
	// with '_' go too: CGI-style origins read X_Forwarded_For as the same
	// variable (HTTP_X_FORWARDED_FOR) as the field set below.
	h := out.Header
	trusted := info != nil && info.Trusted
	if !trusted {
		for k := range h {
			if forwardingField(k) {
				delete(h, k)
			}
		}
	}
	peer := ""
	if info != nil && info.PeerIP.IsValid() {
		peer = addrString(info.PeerIP, in.RemoteAddr)
	} else if host, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		peer = host
	}
	// Each field set below is one value, and all of them share one
	// backing array: one allocation instead of one per field.
	f := fieldSet{h: h, vals: make([]string, 0, 6)}
	if prior := in.Header.Values("X-Forwarded-For"); trusted && len(prior) > 0 {
		f.set("X-Forwarded-For", strings.Join(prior, ", ")+", "+peer)
	} else if peer != "" {
		f.set("X-Forwarded-For", peer)
	}
	if p := in.Header.Get("X-Forwarded-Proto"); trusted && (p == "http" || p == "https") {
		f.set("X-Forwarded-Proto", p)
	} else if in.TLS != nil || (info != nil && info.TLS) {
		f.set("X-Forwarded-Proto", "https")
	} else {
		f.set("X-Forwarded-Proto", "http")
	}
	if fh := in.Header.Get("X-Forwarded-Host"); trusted && fh != "" {
		f.set("X-Forwarded-Host", fh)
	} else {
		f.set("X-Forwarded-Host", in.Host)
	}
	if info != nil && info.ID != "" {
		f.set("X-Request-Id", info.ID)
	}
	f.set("Via", viaValue(h, via))
	// Go's client adds a User-Agent when none is set; keep "none" as none.
	if _, ok := in.Header["User-Agent"]; !ok {
		f.set("User-Agent", "")
	}
	if target != nil {
		// The URL is final here (a load balancer transport finalizes
		// again after joining its backend's prefix).
		reqinfo.FinalizeOutgoing(out)
	}
}

// forwardingField reports whether k is one of the fields a proxy sets to
// say what it saw — the X-Forwarded-* family, Forwarded, X-Real-IP, also
// spelled with '_' — which are not ours to pass on from an untrusted
// client.
func forwardingField(k string) bool {
	if len(k) < len("X-Real-Ip") || (k[0]|0x20 != 'x' && k[0]|0x20 != 'f') {
		return false // the common case, without canonicalizing
	}
	n := textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(k, "_", "-"))
	return strings.HasPrefix(n, "X-Forwarded-") || n == "Forwarded" || n == "X-Real-Ip"
}

// fieldSet is Header.Set for canonical keys, with the one-value slices cut
// from one backing array. Each slice's capacity ends at its value, so an
// append to one field never reaches the next.
type fieldSet struct {
	h    http.Header
	vals []string
}

func (f *fieldSet) set(k, v string) {
	f.vals = append(f.vals, v)
	n := len(f.vals)
	f.h[k] = f.vals[n-1 : n : n]
}

// addrString is a.String(), without allocating when remoteAddr (host:port)
// already spells a that way, as it does unless a was unmapped from an
// IPv4-mapped IPv6 address.
func addrString(a netip.Addr, remoteAddr string) string {
	var buf [64]byte
	s := a.AppendTo(buf[:0])
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil && host == string(s) {
		return host
	}
	return string(s)
}

func appendVia(h http.Header, via string) { h.Set("Via", viaValue(h, via)) }

// viaValue is h's Via with via appended, as one field.
func viaValue(h http.Header, via string) string {
	if prior := h.Values("Via"); len(prior) > 0 {
		return strings.Join(prior, ", ") + ", " + via
	}
	return via
}

// joinPath joins the target's base path and the request path with exactly
// one slash, preserving escaping.
func joinPath(a, b *url.URL) (path, rawpath string) {
	if a.RawPath == "" && b.RawPath == "" {
		return singleJoiningSlash(a.Path, b.Path), ""
	}
	apath, bpath := a.EscapedPath(), b.EscapedPath()
	aslash, bslash := strings.HasSuffix(apath, "/"), strings.HasPrefix(bpath, "/")
	switch {
	case aslash && bslash:
		return a.Path + b.Path[1:], apath + bpath[1:]
	case !aslash && !bslash:
		return a.Path + "/" + b.Path, apath + "/" + bpath
	}
	return a.Path + b.Path, apath + bpath
}

func singleJoiningSlash(a, b string) string {
	if a == "" || a == "/" {
		if b == "" {
			return "/"
		}
		return b
	}
	aslash, bslash := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

type bufPool struct{}

var pool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufPool) Get() []byte  { return *(pool.Get().(*[]byte)) }
func (bufPool) Put(b []byte) { pool.Put(&b) }

// MaxResponseHeaderBytes bounds an origin's response header (status line,
// fields, 1xx responses) on single-upstream routes.
const MaxResponseHeaderBytes = 1 << 20

// NewTransport returns the transport for single-upstream routes: pooled
// keep-alive connections and a bound on waiting for response headers.
// Requests to plain-http origins without a body or with a small one take
// the pools' synchronous path (lb.NewTransport); the rest goes to
// net/http's transport.
func NewTransport(responseHeaderTimeout time.Duration) *lb.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return lb.NewTransport(&http.Transport{
		Proxy:                 nil, // never an environment proxy between edge and origin
		DialContext:           d.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: responseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		// An origin's response header beyond this is a 502 (Go's default
		// lets each request buffer 10MiB), as lb pools do.
		MaxResponseHeaderBytes: MaxResponseHeaderBytes,
		ForceAttemptHTTP2:      false,
		// Pass Accept-Encoding through untouched: otherwise Go asks the
		// origin for gzip and inflates it again on the way in.
		DisableCompression: true,
	}, d)
}
