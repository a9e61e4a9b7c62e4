// Package node wires one edge node together from a config: the edge
// listener and its per-route chains (gateway → cache → proxy → pool), the
// long-lived state those chains share (cache store, pools, limiters, DNS
// server), and the node's admin endpoints. It owns reload: a new config is
// checked against every subsystem first and applied in full or not at all,
// its new chain swapped in atomically.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/gateway"
	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/edge"
	"github.com/outpost-edge/outpost/internal/http1"
	"github.com/outpost-edge/outpost/internal/proxy"
	"github.com/outpost-edge/outpost/internal/rawsock"
	"github.com/outpost-edge/outpost/lb"
)

// Options are the process-level dependencies of a node.
type Options struct {
	Logger     *slog.Logger
	AccessLog  *slog.Logger // nil: derived from Logger
	Registerer prometheus.Registerer
	// EdgeListener, when set, is used instead of listening on edge.listen.
	EdgeListener net.Listener
	// Shared is state shared with other nodes of this process; optional.
	Shared *Shared
}

// Node is one running edge node.
type Node struct {
	name      string
	base      *slog.Logger // carries node=, for subsystems to add their own component
	log       *slog.Logger
	accessLog *slog.Logger
	reg       prometheus.Registerer
	metrics   *edge.Metrics
	swap      *edge.Swapper
	started   time.Time
	draining  atomic.Bool // BeginDrain was called: health endpoints answer 503

	srv   *http.Server
	front *http1.Server // serves srv's plain HTTP/1.1 fast path; nil: srv alone
	ln    net.Listener
	conns *edge.ConnLimit // shared by the edge, HTTPS and port-80 listeners

	// mu guards cfg, gen and transports; the request path never takes it.
	mu         sync.Mutex
	cfg        *config.Config
	gen        uint64
	transports map[string]*lb.Transport

	sub subsystems
}

// New builds a node from a validated config. Nothing listens until Start.
func New(cfg *config.Config, o Options) (*Node, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.AccessLog == nil {
		o.AccessLog = o.Logger.With("component", "access")
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	n := &Node{
		name:       cfg.Node,
		base:       o.Logger.With("node", cfg.Node),
		log:        o.Logger.With("node", cfg.Node, "component", "node"),
		accessLog:  o.AccessLog,
		reg:        o.Registerer,
		metrics:    edge.NewMetrics(o.Registerer),
		started:    time.Now(),
		transports: map[string]*lb.Transport{},
		ln:         o.EdgeListener,
	}
	if err := n.openSubsystems(cfg, o); err != nil {
		n.closeSubsystems()
		return nil, err
	}
	h, err := n.build(cfg)
	if err != nil {
		n.closeSubsystems()
		return nil, err
	}
	n.swap = edge.NewSwapper(h)
	n.cfg = cfg
	n.gen = 1
	n.srv = edge.NewServer(&cfg.Edge, n.swap, o.Logger.With("component", "edge"))
	if *cfg.Edge.FastHTTP1 {
		n.front = http1.New(n.srv)
		n.front.OnHandOff = n.metrics.HandOff
		n.front.Passer = edge.NewLane(&cfg.Edge, n.swap)
	}
	n.conns = cfg.Edge.ConnLimit()
	return n, nil
}

// Name returns the node name.
func (n *Node) Name() string { return n.name }

// Config returns the config in force.
func (n *Node) Config() *config.Config {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg
}

// Generation counts applied configs, starting at 1.
func (n *Node) Generation() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gen
}

func (n *Node) build(cfg *config.Config) (http.Handler, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.buildLocked(cfg, n.sub.pools)
}

// buildLocked builds the edge handler for cfg, its pool routes over pools
// (by name). It reports every gateway and route error, each under its
// config section, not just the first. Callers hold mu.
func (n *Node) buildLocked(cfg *config.Config, pools map[string]*lb.Pool) (http.Handler, error) {
	var l configerr.List
	rt := edge.NewRouter()
	var gw *gateway.Gateway
	if cfg.UsesGateway() {
		var err error
		if gw, err = gateway.New(cfg.Gateway, n.sub.gwState); err != nil {
			l.Merge("gateway", err)
		}
	}
	via := cfg.Edge.Via
	if via == "" {
		via = cfg.Node
	}
	if via == "" {
		via = "outpost"
	}
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		if r.Gateway != nil && gw == nil {
			continue // the gateway error above says why
		}
		h, err := n.routeHandler(gw, pools, r, via)
		if err != nil {
			l.Merge(fmt.Sprintf("routes[%d] (%s)", i, r.Name), err)
			continue
		}
		rt.Handle(r.Name, r.Hosts, r.PathPrefix, h)
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	var access *slog.Logger
	if *cfg.Edge.AccessLog {
		access = n.accessLog
	}
	return &edge.Handler{
		Node:      cfg.Node,
		Router:    rt,
		Trusted:   cfg.Edge.TrustedProxies,
		Metrics:   n.metrics,
		AccessLog: access,
		Healthy:   n.healthy,
	}, nil
}

func (n *Node) routeHandler(gw *gateway.Gateway, pools map[string]*lb.Pool, r *config.Route, via string) (http.Handler, error) {
	po := proxy.Options{Via: via, Logger: n.base.With("component", "proxy", "route", r.Name), BodyTimeout: r.BodyTimeout.D()}
	if r.Upstream != "" {
		u, err := url.Parse(r.Upstream)
		if err != nil {
			return nil, err
		}
		po.Target = u
		po.Transport = n.transport(u, r.Timeout.D())
	} else {
		p, ok := pools[r.Pool]
		if !ok {
			return nil, fmt.Errorf("pool %q is not configured", r.Pool)
		}
		po.Transport = p
	}
	h := proxy.New(po)
	return n.wrapRoute(gw, r, h)
}

// transport returns the shared transport for an upstream host and timeout,
// so reloads reuse warm connections instead of leaking idle ones.
func (n *Node) transport(u *url.URL, timeout time.Duration) *lb.Transport {
	key := u.Scheme + "://" + u.Host + "|" + timeout.String()
	if t, ok := n.transports[key]; ok {
		return t
	}
	t := proxy.NewTransport(timeout)
	n.transports[key] = t
	return t
}

// Start opens the edge listener (unless one was given) and the node's
// other listeners, and serves in the background.
func (n *Node) Start() error {
	if n.ln == nil {
		ln, err := edge.Listen(n.Config().Edge.Listen)
		if err != nil {
			return err
		}
		n.ln = ln
	}
	if err := n.startSubsystems(); err != nil {
		n.ln.Close()
		return err
	}
	ln := n.plainListener(n.ln, &n.Config().Edge)
	go func() {
		serve := n.srv.Serve
		if n.front != nil {
			serve = n.front.Serve
		}
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("edge listener stopped", "error", err)
		}
	}()
	n.log.Info("edge listening", "addr", n.ln.Addr().String())
	return nil
}

// Addr is the edge listener's address (after Start).
func (n *Node) Addr() net.Addr {
	if n.ln == nil {
		return nil
	}
	return n.ln.Addr()
}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends,
// then closes what is left and releases long-lived state.
func (n *Node) Shutdown(ctx context.Context) error {
	// HTTPS, HTTP/3 and DNS drain alongside the plain listener, so one
	// slow request on one of them doesn't eat the others' deadline.
	done := make(chan struct{})
	go func() {
		n.shutdownSubsystems(ctx)
		close(done)
	}()
	var err error
	if n.front != nil {
		if err = n.front.Shutdown(ctx); err != nil {
			n.front.Close()
		}
	} else if err = n.srv.Shutdown(ctx); err != nil {
		n.srv.Close()
	}
	<-done
	n.mu.Lock()
	for _, t := range n.transports {
		t.CloseIdleConnections()
	}
	n.mu.Unlock()
	n.closeSubsystems()
	return err
}

// healthy is what this node reports on its health endpoint.
func (n *Node) healthy() bool { return !n.draining.Load() }

// BeginDrain makes the edge's health endpoint answer 503 while the node
// keeps serving, so peers' health checks take it out of their DNS answers
// and load balancers in front stop sending to it before Shutdown closes
// the listeners. It cannot be undone; Shutdown follows.
func (n *Node) BeginDrain() { n.draining.Store(true) }

// Status is the node's part of GET /v1/status.
func (n *Node) Status() map[string]any {
	n.mu.Lock()
	gen := n.gen
	n.mu.Unlock()
	st := map[string]any{
		"node":              n.name,
		"config_generation": gen,
		"started_at":        n.started.UTC().Format(time.RFC3339),
		"uptime_seconds":    time.Since(n.started).Seconds(),
	}
	if a := n.Addr(); a != nil {
		st["edge"] = a.String()
	}
	n.subsystemStatus(st)
	return st
}

// clientListener is ln under what every edge listener of client
// connections (plain and TLS) shares: reads and writes as raw system calls
// (rawsock), edge.notsent_lowat and the connection limit.
func (n *Node) clientListener(ln net.Listener, cfg *edge.Config) net.Listener {
	return n.conns.Listener(edge.NotsentLowat(rawsock.Listener(ln), int(*cfg.NotsentLowat)))
}

// plainListener is ln as a plain-HTTP listener of the edge serves it: a
// clientListener that, with edge.sendfile off, copies file bodies instead
// of sending them with sendfile.
func (n *Node) plainListener(ln net.Listener, cfg *edge.Config) net.Listener {
	ln = n.clientListener(ln, cfg)
	if !*cfg.Sendfile {
		ln = edge.CopyBodies(ln)
	}
	return ln
}
