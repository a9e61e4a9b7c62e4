package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/internal/edge"
	"github.com/outpost-edge/outpost/internal/http1"
	"github.com/outpost-edge/outpost/internal/http2"
	"github.com/outpost-edge/outpost/internal/tlsedge"
)

// tlsFront is the node's HTTPS side: the certificate manager, the HTTPS
// (HTTP/1.1 + HTTP/2) server, HTTP/3, and the port-80 handler that answers
// ACME HTTP-01 and redirects the rest.
type tlsFront struct {
	mgr    *tlsedge.Manager
	https  *http.Server
	front  *http1.Server // serves https's HTTP/1.1 (edge.fast_http1); nil: https alone
	h2     *http2.Server // serves https's HTTP/2 (edge.fast_http2); nil: net/http's
	h3     *tlsedge.HTTP3Server
	plain  *http.Server // on tls.http_listen unless it is edge.listen (sameListenAddr)
	cancel context.CancelFunc
	addr   net.Addr
}

func (n *Node) openTLS(cfg *config.Config) error {
	if !cfg.TLS.Enabled {
		return nil
	}
	var peers []tlsedge.Peer
	for _, nd := range cfg.Nodes {
		if cfg.Node != "" && nd.Name != cfg.Node && nd.Admin != "" {
			peers = append(peers, tlsedge.Peer{Name: nd.Name, Admin: nd.Admin})
		}
	}
	o := tlsedge.Options{
		Logger: n.base, Registerer: n.reg, DataDir: cfg.DataDir,
		Peers: peers, PeerToken: cfg.Admin.Token,
	}
	if n.sub.dns != nil {
		o.TXT = tlsedge.RecordServerTXT(n.sub.dns)
	}
	if cfg.TLS.Redis.Enabled && n.sub.redis != nil {
		r := cfg.TLS.Redis
		o.Storage = tlsedge.NewMirrored(tlsedge.NewRedisStorage(n.sub.redis, r.KeyPrefix, r.LockTTL.D()), cfg.TLS.StorageDir(cfg.DataDir))
	}
	mgr, err := tlsedge.New(cfg.TLS, o)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	n.sub.tls = &tlsFront{mgr: mgr}
	return nil
}

// plainHandler is what the plain-HTTP listener serves once HTTPS is on:
// health probes pass to the edge frame, ACME HTTP-01 is answered, and
// everything else is redirected (308) to HTTPS.
func (n *Node) plainHandler() http.Handler {
	redirect := n.sub.tls.mgr.HTTPHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == edge.HealthPath {
			n.swap.ServeHTTP(w, r)
			return
		}
		redirect.ServeHTTP(w, r)
	})
}

// startTLS opens the HTTPS, HTTP/3 and plain-HTTP listeners and starts
// certificate management. On error, whatever it had opened is closed
// again: the caller only closes the edge listener.
func (n *Node) startTLS(cfg *config.Config) (err error) {
	t := n.sub.tls
	if t == nil {
		return nil
	}
	ln, err := edge.Listen(cfg.TLS.Listen)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	var pl net.Listener
	defer func() {
		if err != nil {
			t.closeFailedStart(ln, pl)
		}
	}()
	t.addr = ln.Addr()
	// With port 0 in tls.listen, Alt-Svc, redirects and HTTP/3 use the
	// port just bound.
	t.mgr.SetHTTPSAddr(ln.Addr())
	handler := t.mgr.Headers(n.swap)
	https := edge.NewServer(&cfg.Edge, handler, n.base.With("component", "https"))
	https.TLSConfig = t.mgr.TLSConfig()
	t.https = https
	// The pass lane of Outpost's own HTTP/1.1 server; with its HTTP/2
	// server too, that is offered the same requests.
	var lane *edge.Lane
	if *cfg.Edge.FastHTTP1 {
		lane = edge.NewLane(&cfg.Edge, n.swap)
		lane.TLSFields = t.mgr.Fields()
	}
	if *cfg.Edge.FastHTTP2 {
		// net/http dispatches connections that negotiated h2 (also
		// those the HTTP/1.1 front hands it) to TLSNextProto, which
		// also keeps its own HTTP/2 server out. Server.Close closes
		// them with the rest; Shutdown sends them GOAWAY first.
		h2 := http2.New(https)
		if lane != nil {
			h2.Passer = lane
		}
		https.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){
			"h2": func(_ *http.Server, c *tls.Conn, _ http.Handler) { h2.ServeConn(c) },
		}
		t.h2 = h2
	}
	serve := func(l net.Listener) error { return https.ServeTLS(l, "", "") }
	if *cfg.Edge.FastHTTP1 {
		t.front = http1.New(https)
		t.front.OnHandOff = n.metrics.HandOff
		t.front.Passer = lane
		serve = t.front.ServeTLS
	}
	go func() {
		if err := serve(n.clientListener(ln, &cfg.Edge)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("https listener stopped", "error", err)
		}
	}()
	if cfg.TLS.HTTP3 == nil || *cfg.TLS.HTTP3 {
		h3, err := t.mgr.ListenHTTP3(h3Addr(cfg.TLS.Listen, ln.Addr()), edge.Guard(&cfg.Edge, handler),
			tlsedge.HTTP3Limits{MaxHeaderBytes: int(cfg.Edge.MaxHeaderBytes), IdleTimeout: cfg.Edge.IdleTimeout.D()})
		if err != nil {
			return fmt.Errorf("tls: http/3: %w", err)
		}
		t.h3 = h3
	}
	switch {
	case cfg.TLS.HTTPListen == "off":
		// No port-80 side: the edge listener keeps serving the chain.
	case cfg.TLS.HTTPListen != "" && !sameListenAddr(cfg.TLS.HTTPListen, cfg.Edge.Listen):
		pl, err = edge.Listen(cfg.TLS.HTTPListen)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		t.plain = edge.NewServer(&cfg.Edge, n.plainHandler(), n.base.With("component", "http"))
		go t.plain.Serve(n.plainListener(pl, &cfg.Edge))
	default:
		// The edge listener itself becomes the redirecting port-80 side;
		// its pass lane, which would forward instead, is off.
		n.srv.Handler = edge.Guard(&cfg.Edge, n.plainHandler())
		if n.front != nil {
			n.front.Passer = nil
		}
	}
	// Certificates are obtained once every listener is up, so the CA's
	// HTTP-01 and TLS-ALPN-01 validations find someone to answer them.
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	if err := t.mgr.Start(ctx); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	n.log.Info("https listening", "addr", ln.Addr().String(), "http3", t.h3 != nil)
	return nil
}

// closeFailedStart closes what a failed startTLS had opened. The
// listeners are closed directly as well: a server whose Serve goroutine
// has not run yet does not know its listener, and the ports must be free
// when Start returns.
func (t *tlsFront) closeFailedStart(ln, pl net.Listener) {
	if t.cancel != nil {
		t.cancel()
		t.cancel = nil
	}
	if t.plain != nil {
		_ = t.plain.Close()
		t.plain = nil
	}
	if pl != nil {
		_ = pl.Close()
	}
	if t.h3 != nil {
		_ = t.h3.Close()
		t.h3 = nil
	}
	if t.front != nil {
		_ = t.front.Close()
		t.front = nil
	} else {
		_ = t.https.Close()
	}
	if t.h2 != nil {
		_ = t.h2.Close()
		t.h2 = nil
	}
	t.https = nil
	_ = ln.Close()
	t.addr = nil
}

// HTTPSAddr is the HTTPS listener's address, or nil when HTTPS is off.
func (n *Node) HTTPSAddr() net.Addr {
	if n.sub.tls == nil {
		return nil
	}
	return n.sub.tls.addr
}

// TLSManager returns the certificate manager, or nil when HTTPS is off.
func (n *Node) TLSManager() *tlsedge.Manager {
	if n.sub.tls == nil {
		return nil
	}
	return n.sub.tls.mgr
}

func (n *Node) shutdownTLS(ctx context.Context) {
	t := n.sub.tls
	if t == nil {
		return
	}
	if t.h2 != nil {
		// GOAWAY to HTTP/2 clients now, not after the HTTP/1.1
		// connections drained; streams in flight finish.
		go t.h2.Shutdown(ctx)
	}
	switch {
	case t.front != nil:
		if err := t.front.Shutdown(ctx); err != nil {
			t.front.Close()
		}
	case t.https != nil:
		if err := t.https.Shutdown(ctx); err != nil {
			t.https.Close()
		}
	}
	if t.h3 != nil {
		_ = t.h3.Shutdown(ctx)
	}
	if t.plain != nil {
		_ = t.plain.Shutdown(ctx)
	}
	if t.cancel != nil {
		t.cancel()
	}
	t.mgr.Stop()
}

// sameListenAddr reports whether two listen addresses name the same
// socket: ":80", "0.0.0.0:80" and "[::]:80" do (Go listens dual-stack on
// the unspecified address), as do two spellings of one IP. Port 0 asks
// for a fresh port at each listen, so it is never the same as anything.
func sameListenAddr(a, b string) bool {
	ta, err := net.ResolveTCPAddr("tcp", a)
	if err != nil {
		return false
	}
	tb, err := net.ResolveTCPAddr("tcp", b)
	if err != nil {
		return false
	}
	if ta.Port == 0 || ta.Port != tb.Port {
		return false
	}
	unspecified := func(ip net.IP) bool { return ip == nil || ip.IsUnspecified() }
	if unspecified(ta.IP) || unspecified(tb.IP) {
		return unspecified(ta.IP) && unspecified(tb.IP)
	}
	return ta.IP.Equal(tb.IP) && ta.Zone == tb.Zone
}

// h3Addr is the UDP address for HTTP/3: tls.listen, with the port the
// HTTPS listener got when tls.listen asks for port 0.
func h3Addr(listen string, bound net.Addr) string {
	host, port, err := net.SplitHostPort(listen)
	tcp, ok := bound.(*net.TCPAddr)
	if err != nil || port != "0" || !ok {
		return listen
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}
