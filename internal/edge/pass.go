package edge

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/http1"
	"github.com/outpost-edge/outpost/internal/reqinfo"
)

// The pass lane. Most requests an edge in front of a load-balanced pool
// sees are bodiless GETs and HEADs that the route only forwards, and for
// them the handler chain — an http.Request with its URL and context, the
// header maps the proxy builds, the request frame's context — costs more
// CPU than the system calls that move the bytes. The HTTP/1.1 server
// offers each such request to Lane first, before it builds an http.Request;
// Lane takes it when the route is a pool and nothing else (no cache,
// gateway or HSTS: its handler is a PassHandler) and the request needs
// none of what only the handler chain does:
//
//   - its path is its own decoded form (no %-escapes, backslashes, dot
//     segments or doubled slashes) and not the health path;
//   - its peer is not a trusted proxy (X-Forwarded-For is not read);
//   - the pool needs nothing of the response and reaches its backends
//     without an http.Request (see lb.Pool.Pass).
//
// Everything else takes the handler chain, unchanged. What the lane does
// is the chain's, shared with it: the request id, the route, Guard's
// send_timeout and write_timeout, the route metrics and access log line
// (record), the proxy's forwarding fields and response relay, and the
// pool's picks, retries, passive health and metrics.

// PassHandler is a route handler that also serves the pass lane: Pass
// answers p through w and reports true, or reports false having written
// nothing. info is the request's, with its id and client set.
type PassHandler interface {
	// Passable reports whether Pass would take requests now.
	Passable() bool
	Pass(w http.ResponseWriter, p *http1.Pass, info *reqinfo.Info) bool
}

// Lane is the http1.Passer of an edge listener: the pass lane of whatever
// Handler its Swapper holds, under Guard's deadlines.
type Lane struct {
	swap *Swapper
	gc   guardConfig
	// TLSFields are set on every response to a request over TLS: what
	// the HTTPS listener's handler adds around the chain (Alt-Svc, the
	// node-wide HSTS; see tlsedge.Manager.Fields). Shared, never
	// modified.
	TLSFields http.Header
}

// NewLane returns the pass lane for the handlers s holds, with cfg's
// send_timeout and write_timeout.
func NewLane(cfg *Config, s *Swapper) *Lane {
	return &Lane{swap: s, gc: newGuardConfig(cfg)}
}

// Takes implements http1.Passer: whether the route for host and target is
// a pool the lane can serve, and the request one it may take. The token is
// the route's entry in the router. Takes must be cheap for the requests it
// declines, which the handler chain looks up again (cache hits), and is:
// a route lookup.
func (l *Lane) Takes(host, target string, peer netip.Addr) any {
	h, ok := (*l.swap.h.Load()).(*Handler)
	if !ok {
		return nil
	}
	path, _, _ := strings.Cut(target, "?")
	e := h.Router.match(host, path)
	if e == nil || e.lane == nil || !e.lane.Passable() || path == HealthPath || !plainPath(path) {
		return nil
	}
	if !peer.IsValid() || h.trusted(peer) {
		return nil
	}
	return e
}

// Pass implements http1.Passer, for the route entry Takes returned.
func (l *Lane) Pass(w http.ResponseWriter, p *http1.Pass, token any) (served bool) {
	e, _ := token.(*entry)
	h, _ := (*l.swap.h.Load()).(*Handler)
	peer := p.Peer
	if e == nil || h == nil || !peer.IsValid() {
		return false
	}
	name, ph := e.name, e.lane
	path, _, _ := strings.Cut(p.Target, "?")

	start := p.Start()
	if start.IsZero() {
		start = time.Now()
	}
	// The frame is the connection's, one request at a time (see
	// http1.Pass.Kept): nothing of it outlives the request.
	f, _ := p.Kept.Lane.(*passFrame)
	if f == nil {
		f = new(passFrame)
		p.Kept.Lane = f
	} else {
		*f = passFrame{}
	}
	info := &f.info
	info.TLS = p.TLS
	info.PeerIP, info.ClientIP = peer, peer
	info.ID = newRequestID()
	info.SetRoute(name)
	gw := &f.gw
	l.gc.wrapInto(gw, w, p.Conn, !p.HTTP2, start)
	if gw.g.guarded {
		w = gw
	}
	rec := &f.rec
	rec.ResponseWriter = w
	f.id[0] = info.ID
	hdr := w.Header()
	if p.TLS {
		for k, v := range l.TLSFields {
			hdr[k] = v
		}
	}
	hdr["X-Request-Id"] = f.id[:]
	if h.Metrics != nil {
		h.Metrics.inflight.Inc()
	}
	// As ServeHTTP's frame: a panic is logged and answered 500 if nothing
	// was sent yet; http.ErrAbortHandler (a body cut mid-way) goes on to
	// the server, which drops the connection. Either way the request is
	// recorded.
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		countPassed(h)
		if v == http.ErrAbortHandler {
			h.record(context.Background(), rec, p.Method, p.Host, path, info, start)
			panic(v)
		}
		h.answerPanic(v, rec, nil, info.ID)
		h.record(context.Background(), rec, p.Method, p.Host, path, info, start)
		gw.end()
		served = true
	}()
	if !ph.Pass(rec, p, info) {
		if h.Metrics != nil {
			h.Metrics.inflight.Dec()
		}
		clear(hdr)
		return false
	}
	countPassed(h)
	h.record(context.Background(), rec, p.Method, p.Host, path, info, start)
	gw.end()
	return true
}

// countPassed counts a request the lane served, whole, cut or panicked.
func countPassed(h *Handler) {
	if h.Metrics != nil {
		h.Metrics.passed.Inc()
	}
}

// passFrame is one pass-lane request's own state in one allocation.
type passFrame struct {
	info reqinfo.Info
	rec  recorder
	gw   guardWriter
	id   [1]string
}

// plainPath reports whether p, a request target's path, is its own
// decoded form and one the router and origin read alike: no %-escapes or
// backslashes, no "." or ".." segments, no doubled slashes.
func plainPath(p string) bool {
	if strings.ContainsAny(p, "%\\") || strings.Contains(p, "//") {
		return false
	}
	return !hasDotSegment(p)
}
