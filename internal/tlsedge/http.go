package tlsedge

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/outpost-edge/outpost/internal/httperr"
)

// HTTPHandler is the plain-HTTP (port 80) handler: it answers ACME HTTP-01
// challenges and redirects everything else to HTTPS with 308, which keeps
// the method and body.
func (m *Manager) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			if m.src.HandleHTTPChallenge(w, r) {
				return
			}
			httperr.Write(w, r, http.StatusNotFound, "unknown_challenge", "no such ACME challenge")
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		} else if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
			host = host[1 : len(host)-1] // IPv6 literal without a port
		}
		host = strings.ToLower(strings.TrimSuffix(host, "."))
		if !validRedirectHost(host) {
			httperr.Write(w, r, http.StatusBadRequest, "bad_host", "missing or invalid Host header")
			return
		}
		if !m.servesHost(r, host) {
			httperr.Write(w, r, http.StatusMisdirectedRequest, "unknown_host", "this server has no site for that host")
			return
		}
		if strings.Contains(host, ":") { // IPv6 literal
			host = "[" + host + "]"
		}
		uri := r.URL.RequestURI()
		if !strings.HasPrefix(uri, "/") { // e.g. "*" when a server passes OPTIONS * through
			uri = "/"
		}
		target := "https://" + host + m.https + uri
		w.Header().Set("Location", target)
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// validRedirectHost accepts DNS names and IP literals only, so a hostile
// Host header cannot turn the redirect into one to another authority
// ("evil.com/@", userinfo, paths).
func validRedirectHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if ip := net.ParseIP(h); ip != nil {
		return true
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

// servesHost reports whether HTTPS on this node answers for host, so the
// redirect never points a client at an authority the node does not serve
// (a cache or proxy in front could otherwise store a redirect to any name).
// An IP literal is served only when it is the address the request arrived
// on. Names are the managed ones (wildcards cover one label), names holding
// a certificate (obtained on demand), and names the on-demand policy
// allows: for an ask endpoint that means one ask request, as a handshake
// for that name would make.
func (m *Manager) servesHost(r *http.Request, host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		// By string, not *net.TCPAddr: the edge listener may wrap conns.
		local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if !ok {
			return false
		}
		h, _, err := net.SplitHostPort(local.String())
		return err == nil && ip.Equal(net.ParseIP(h))
	}
	m.mu.Lock()
	managed := slices.ContainsFunc(m.names, func(pat string) bool { return matchName(pat, host) })
	m.mu.Unlock()
	if managed || len(m.src.Lookup(host)) > 0 {
		return true
	}
	return m.policy != nil && m.policy.decide(r.Context(), host) == nil
}

// Headers wraps the HTTPS handler: on TLS requests it advertises HTTP/3
// (Alt-Svc, when enabled) and sends the default HSTS policy (when
// enabled). Values are rendered once, so the request path only sets two
// header slots.
func (m *Manager) Headers(next http.Handler) http.Handler {
	altSvc, hsts := headerValue(m.altSvc), headerValue(m.hsts)
	if altSvc == nil && hsts == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			h := w.Header()
			if altSvc != nil && r.ProtoMajor < 3 {
				h["Alt-Svc"] = altSvc
			}
			if hsts != nil {
				h["Strict-Transport-Security"] = hsts
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Fields are the fields Headers adds to an HTTP/1.1 or HTTP/2 response
// over TLS (Alt-Svc, the node-wide Strict-Transport-Security), for a
// server that answers without the handler Headers wraps: the edge's pass
// lane. Like Headers, call it once the HTTPS address is set. The values
// are shared and must not be modified.
func (m *Manager) Fields() http.Header {
	h := http.Header{}
	if v := headerValue(m.altSvc); v != nil {
		h["Alt-Svc"] = v
	}
	if v := headerValue(m.hsts); v != nil {
		h["Strict-Transport-Security"] = v
	}
	return h
}

// HSTS wraps next with a per-route Strict-Transport-Security policy; it is
// sent only over HTTPS (RFC 6797 §7.2). It replaces the node-wide value
// Headers set; a disabled policy removes that value, so a route can opt
// out of a node-wide default.
func HSTS(next http.Handler, policy HSTSConfig) http.Handler {
	if !policy.Enabled {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			delete(w.Header(), "Strict-Transport-Security")
			next.ServeHTTP(w, r)
		})
	}
	policy.SetDefaults()
	v := headerValue(policy.HeaderValue())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header()["Strict-Transport-Security"] = v
		}
		next.ServeHTTP(w, r)
	})
}

// headerValue pre-builds a header value slice; callers must not modify it
// (net/http only reads header slices it did not create).
func headerValue(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}

// HTTP3Server is an HTTP/3 listener started by ListenHTTP3.
type HTTP3Server struct {
	srv  *http3.Server
	conn net.PacketConn
	tr   *quic.Transport
	gate *retryGate
	done chan struct{}
	err  error
}

// HTTP3Limits are the limits HTTP/3 shares with the TCP listeners
// (edge.max_header_bytes and edge.idle_timeout).
type HTTP3Limits struct {
	// MaxHeaderBytes caps a request's HEADERS frame; 0: quic-go's 1MiB.
	MaxHeaderBytes int
	// IdleTimeout closes a connection with no request in flight for this
	// long, however many QUIC PINGs keep it alive; 0: never.
	IdleTimeout time.Duration
}

// ListenHTTP3 binds addr (UDP) and serves handler over HTTP/3 with the
// manager's certificates until Close or Shutdown. Early data (0-RTT) is
// refused: a request in it could be replayed by anyone who captured it,
// and the handler could not tell (http3.Server accepts it unless told).
// Beyond h3RetryRate new handshakes a second from unvalidated addresses,
// clients must prove their address with a Retry first (as HAProxy's
// quic-retry-threshold): otherwise a flood of Initials from spoofed
// addresses holds a handshake each and reflects the certificate chain at
// its victims. QUIC's other bounds stay at quic-go's defaults: 100
// concurrent request streams per connection, a 5s handshake idle
// timeout, 30s without any packet.
func (m *Manager) ListenHTTP3(addr string, handler http.Handler, lim HTTP3Limits) (*HTTP3Server, error) {
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	tc := m.TLSConfig()
	tc.MinVersion = tls.VersionTLS13 // QUIC is TLS 1.3 only
	tc = http3.ConfigureTLSConfig(tc)
	gate := newRetryGate(h3RetryRate)
	tr := &quic.Transport{Conn: conn, VerifySourceAddress: gate.mustRetry}
	ln, err := tr.ListenEarly(tc, &quic.Config{Allow0RTT: false})
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &HTTP3Server{
		srv: &http3.Server{Handler: handler, TLSConfig: tc, Logger: m.log,
			MaxHeaderBytes: lim.MaxHeaderBytes, IdleTimeout: lim.IdleTimeout},
		conn: conn,
		tr:   tr,
		gate: gate,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		s.err = s.srv.ServeListener(ln)
	}()
	return s, nil
}

// h3RetryRate is how many handshakes a second HTTP/3 accepts from
// addresses it has not validated before it asks for a Retry.
var h3RetryRate = 100.0

// retryGate is a token bucket of h3RetryRate a second (burst: one
// second's worth); an empty bucket means Retry.
type retryGate struct {
	mu      sync.Mutex
	rate    float64
	tokens  float64
	last    time.Time
	retried atomic.Int64
}

func newRetryGate(rate float64) *retryGate {
	return &retryGate{rate: rate, tokens: rate, last: time.Now()}
}

func (g *retryGate) mustRetry(net.Addr) bool {
	g.mu.Lock()
	now := time.Now()
	g.tokens = min(g.rate, g.tokens+now.Sub(g.last).Seconds()*g.rate)
	g.last = now
	ok := g.tokens >= 1
	if ok {
		g.tokens--
	}
	g.mu.Unlock()
	if !ok {
		g.retried.Add(1)
	}
	return !ok
}

// Addr is the bound UDP address.
func (s *HTTP3Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Close stops serving at once and releases the socket.
func (s *HTTP3Server) Close() error {
	err := s.srv.Close()
	s.tr.Close()
	s.conn.Close()
	<-s.done
	return err
}

// Shutdown stops accepting connections and waits for requests in flight
// until ctx ends, then closes.
func (s *HTTP3Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.tr.Close()
	s.conn.Close()
	<-s.done
	return err
}
