package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"

	"github.com/outpost-edge/outpost/gateway"
	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/lb"
)

// Apply swaps in a new validated config, all or nothing. A preflight first
// finds every problem the reload would hit (changes that need a restart,
// pool configs, zone files and the rest of the DNS section, TLS names, the
// gateway and every route) without touching anything that serves traffic,
// and only a clean preflight is committed. On error nothing has changed:
// the same pools, DNS answers, handler and generation, and the error lists
// every problem under its config section. Listener addresses and the data
// directory are fixed at start.
func (n *Node) Apply(cfg *config.Config) (uint64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.warnRestartOnly(cfg)
	if err := n.preflight(cfg); err != nil {
		return n.gen, err
	}
	st, err := n.stage(cfg)
	if err != nil {
		return n.gen, err
	}
	err = n.commit(cfg, st)
	// Whatever commit reported, cfg is what now runs (but for the part that
	// failed), so the generation and Config say so.
	n.cfg = cfg
	n.gen++
	if err != nil {
		n.log.Error("config applied with errors the preflight did not catch; fix and reload", "generation", n.gen, "error", err)
		return n.gen, &configerr.Partial{Generation: n.gen, Err: err}
	}
	n.log.Info("config applied", "generation", n.gen)
	return n.gen, nil
}

// Check reports every problem Apply(cfg) would refuse, changing nothing.
// A caller applying configs to several nodes checks them all first.
func (n *Node) Check(cfg *config.Config) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.preflight(cfg)
}

// preflight reports every problem applying cfg would hit, changing nothing
// that serves traffic. Callers hold mu.
func (n *Node) preflight(cfg *config.Config) error {
	s := &n.sub
	var l configerr.List
	n.restartOnly(cfg, &l)
	needsRestart := l.Len() > 0
	for _, name := range slices.Sorted(maps.Keys(cfg.Pools)) {
		if pc := cfg.Pools[name]; pc == nil {
			l.Addf("pools."+name, "empty pool (want backends:)")
		} else {
			l.Merge("pools."+name, lb.CheckConfig(*pc))
		}
	}
	if s.dns != nil && cfg.DNS != nil {
		l.Merge("dns", s.dns.Check(*cfg.DNS, cfg.Nodes))
	}
	if s.tls != nil && cfg.TLS.Enabled {
		l.Merge("tls", cfg.TLS.Validate())
	}
	if needsRestart {
		// The handler would be built on running subsystems that are not
		// the ones cfg asks for.
		return l.Err()
	}
	// The pools cfg adds stand in as nil: this handler is built to find
	// errors and dropped, never served.
	if _, err := n.buildLocked(cfg, n.poolSet(cfg, nil)); err != nil {
		l.Merge("", err)
	}
	if l.Len() > 0 {
		n.restoreGateway(cfg)
	}
	return l.Err()
}

// staged is a config's new pools and edge handler, made but not in use.
type staged struct {
	added   map[string]*lb.Pool
	handler http.Handler
}

// stage creates the pools cfg adds and builds the handler over them. The
// new pools serve nothing and are not listed until commit; if the build
// fails they are closed again and nothing has changed. Callers hold mu.
func (n *Node) stage(cfg *config.Config) (*staged, error) {
	added, err := n.newPools(cfg)
	if err != nil {
		return nil, err
	}
	h, err := n.buildLocked(cfg, n.poolSet(cfg, added))
	if err != nil {
		closePools(added)
		n.restoreGateway(cfg)
		return nil, err
	}
	return &staged{added: added, handler: h}, nil
}

// commit puts a staged config in force. The preflight checked everything
// that can fail here, so an error does not stop it: it applies all it can
// and returns the errors. Callers hold mu.
func (n *Node) commit(cfg *config.Config, st *staged) error {
	s := &n.sub
	var errs []error
	if err := n.updateKnownPools(cfg); err != nil {
		errs = append(errs, err)
	}
	maps.Copy(s.pools, st.added)
	if s.dns != nil {
		if err := s.dns.Reload(*cfg.DNS, cfg.Nodes); err != nil {
			errs = append(errs, fmt.Errorf("dns: %w", err))
		}
	}
	if s.tls != nil {
		// New names are obtained in the background; removed ones stop renewing.
		if err := s.tls.mgr.SetNames(context.Background(), cfg.TLS.Names); err != nil {
			errs = append(errs, fmt.Errorf("tls: %w", err))
		}
	}
	n.swap.Store(st.handler)
	n.retirePools(cfg)
	return errors.Join(errs...)
}

// poolSet maps every pool cfg names to the running pool of that name, or
// else to its entry in added (nil when added is). Pools cfg drops are left
// out, so a route that still uses one fails to build.
func (n *Node) poolSet(cfg *config.Config, added map[string]*lb.Pool) map[string]*lb.Pool {
	out := make(map[string]*lb.Pool, len(cfg.Pools))
	for name := range cfg.Pools {
		p, ok := n.sub.pools[name]
		if !ok {
			p = added[name]
		}
		out[name] = p
	}
	return out
}

// restartOnly records the changes cfg asks for that a running node cannot
// make. Callers hold mu.
func (n *Node) restartOnly(cfg *config.Config, l *configerr.List) {
	s := &n.sub
	if cfg.UsesCache() && s.cache == nil {
		l.Addf("cache", "enabling the cache on a running node needs a restart")
	}
	if cfg.UsesGateway() && s.gwState == nil {
		l.Addf("gateway", "enabling the gateway on a running node needs a restart")
	}
	if (cfg.DNS != nil) != (s.dns != nil) {
		l.Addf("dns", "turning DNS on or off needs a restart")
	}
	if cfg.TLS.Enabled != (s.tls != nil) {
		l.Addf("tls", "turning HTTPS on or off needs a restart")
	}
}

// restoreGateway undoes what building cfg's gateway did to the state the
// gateway in force shares with it: gateway.New points the shared Redis
// limiter at its own key prefix and timeouts. Callers hold mu, after a
// build of cfg that will not be served.
func (n *Node) restoreGateway(cfg *config.Config) {
	old := n.cfg
	if !cfg.UsesGateway() || !cfg.Gateway.Redis.Enabled || !old.UsesGateway() || !old.Gateway.Redis.Enabled ||
		cfg.Gateway.Redis == old.Gateway.Redis {
		return
	}
	if _, err := gateway.New(old.Gateway, n.sub.gwState); err != nil {
		n.log.Error("cannot restore the Redis limiter settings of the config in force", "error", err)
	}
}

// warnRestartOnly logs changes a reload accepts but cannot apply to a
// running process. Callers hold mu.
func (n *Node) warnRestartOnly(cfg *config.Config) {
	old := n.cfg
	for _, c := range []struct {
		key      string
		old, new any
	}{
		{"edge.listen", old.Edge.Listen, cfg.Edge.Listen},
		{"edge.fast_http1", old.Edge.FastHTTP1, cfg.Edge.FastHTTP1},
		{"edge.fast_http2", old.Edge.FastHTTP2, cfg.Edge.FastHTTP2},
		// The server limits: net/http's http.Server fields, Guard's
		// deadlines and the connection limit are set when the listeners
		// start.
		{"edge.read_header_timeout", old.Edge.ReadHeaderTimeout, cfg.Edge.ReadHeaderTimeout},
		{"edge.read_timeout", old.Edge.ReadTimeout, cfg.Edge.ReadTimeout},
		{"edge.write_timeout", old.Edge.WriteTimeout, cfg.Edge.WriteTimeout},
		{"edge.client_body_timeout", old.Edge.ClientBodyTimeout, cfg.Edge.ClientBodyTimeout},
		{"edge.send_timeout", old.Edge.SendTimeout, cfg.Edge.SendTimeout},
		{"edge.idle_timeout", old.Edge.IdleTimeout, cfg.Edge.IdleTimeout},
		{"edge.max_header_bytes", old.Edge.MaxHeaderBytes, cfg.Edge.MaxHeaderBytes},
		{"edge.max_connections", old.Edge.MaxConnections, cfg.Edge.MaxConnections},
		{"edge.sendfile", old.Edge.Sendfile, cfg.Edge.Sendfile},
		{"edge.notsent_lowat", old.Edge.NotsentLowat, cfg.Edge.NotsentLowat},
		{"data_dir", old.DataDir, cfg.DataDir},
		{"admin", old.Admin, cfg.Admin},
		{"log", old.Log, cfg.Log},
		{"redis", old.Redis, cfg.Redis},
		{"cache", old.Cache, cfg.Cache},
		{"tls.listen", old.TLS.Listen, cfg.TLS.Listen},
		{"tls.http_listen", old.TLS.HTTPListen, cfg.TLS.HTTPListen},
		{"tls.redis", old.TLS.Redis, cfg.TLS.Redis},
	} {
		if !reflect.DeepEqual(c.old, c.new) {
			n.log.Warn("config changed in a section that takes effect on restart", "section", c.key)
		}
	}
}
