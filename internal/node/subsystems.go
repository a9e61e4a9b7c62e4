package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-edge/outpost/cdn"
	"github.com/outpost-edge/outpost/dns"
	"github.com/outpost-edge/outpost/gateway"
	"github.com/outpost-edge/outpost/internal/admin"
	"github.com/outpost-edge/outpost/internal/cluster"
	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/internal/tlsedge"
	"github.com/outpost-edge/outpost/lb"
)

// Shared is state several nodes of one process may share (the demo runs
// three edges in one process with one API key store). Nil fields are
// opened per node.
type Shared struct {
	Keys  *gateway.KeyStore
	Redis redis.UniversalClient
}

// subsystems holds the long-lived state of the cache, pools, gateway and
// DNS server: created once, updated on reload, closed on shutdown.
type subsystems struct {
	cache     *cdn.Cache
	lbMetrics *lb.Metrics
	pools     map[string]*lb.Pool // guarded by Node.mu
	gwState   *gateway.State
	keys      *gateway.KeyStore
	ownKeys   bool // keys opened by this node (closed by it)
	redis     redis.UniversalClient
	ownRedis  bool
	dns       *dns.Server
	dnsUp     bool
	tls       *tlsFront
}

func (n *Node) openSubsystems(cfg *config.Config, o Options) error {
	s := &n.sub
	s.pools = map[string]*lb.Pool{}
	s.lbMetrics = lb.NewMetrics(n.reg)
	if o.Shared != nil {
		s.keys, s.redis = o.Shared.Keys, o.Shared.Redis
	}
	if s.redis == nil && cfg.Redis.Addr != "" {
		s.redis = redis.NewClient(&redis.Options{
			Addr: cfg.Redis.Addr, Password: cfg.Redis.Password, DB: cfg.Redis.DB,
			ContextTimeoutEnabled: true, MaxRetries: -1,
		})
		s.ownRedis = true
	}
	if cfg.UsesCache() {
		c, err := cdn.New(cfg.Cache, cdn.Options{Logger: n.base, Registerer: n.reg})
		if err != nil {
			return fmt.Errorf("cache: %w", err)
		}
		s.cache = c
	}
	if cfg.UsesGateway() {
		if s.keys == nil {
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				return fmt.Errorf("data_dir: %w", err)
			}
			ks, err := gateway.OpenKeyStore(filepath.Join(cfg.DataDir, "keys.db"))
			if err != nil {
				return err
			}
			s.keys, s.ownKeys = ks, true
		}
		st, err := gateway.NewState(gateway.StateOptions{Registerer: n.reg, Keys: s.keys, Redis: s.redis, Logger: n.base})
		if err != nil {
			return err
		}
		s.gwState = st
	}
	if cfg.DNS != nil {
		dm, err := dns.NewMetrics(n.reg)
		if err != nil {
			return err
		}
		srv, err := dns.New(*cfg.DNS, cfg.Nodes, dns.Options{Logger: n.base, Metrics: dm,
			RecordsFile: filepath.Join(cfg.DataDir, "dns-records.json")})
		if err != nil {
			return fmt.Errorf("dns: %w", err)
		}
		s.dns = srv
	}
	if err := n.openTLS(cfg); err != nil {
		return err
	}
	return n.updatePools(cfg)
}

// updatePools creates new pools and updates existing ones in place, so
// health state and warm connections survive. New uses it; a reload uses
// newPools and updateKnownPools in separate steps, and closes the pools no
// longer in the config once the new chain is in place (see Apply).
func (n *Node) updatePools(cfg *config.Config) error {
	added, err := n.newPools(cfg)
	if err != nil {
		return err
	}
	err = n.updateKnownPools(cfg)
	maps.Copy(n.sub.pools, added)
	return err
}

// newPools creates the pools cfg names that are not running yet, without
// listing them in n.sub.pools; on error it closes those it made.
func (n *Node) newPools(cfg *config.Config) (map[string]*lb.Pool, error) {
	added := map[string]*lb.Pool{}
	for name, pc := range cfg.Pools {
		if _, ok := n.sub.pools[name]; ok {
			continue
		}
		p, err := lb.New(name, *pc, lb.Options{Metrics: n.sub.lbMetrics, Logger: n.base})
		if err != nil {
			closePools(added)
			return nil, err
		}
		added[name] = p
	}
	return added, nil
}

// updateKnownPools updates the running pools that cfg still names.
func (n *Node) updateKnownPools(cfg *config.Config) error {
	var errs []error
	for name, pc := range cfg.Pools {
		if p, ok := n.sub.pools[name]; ok {
			if err := p.Update(*pc); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// closePools closes pools; each waits for its health checks to stop.
func closePools(pools map[string]*lb.Pool) {
	for _, p := range pools {
		p.Close()
	}
}

// retirePools closes pools that cfg no longer names. Callers hold mu.
func (n *Node) retirePools(cfg *config.Config) {
	for name, p := range n.sub.pools {
		if _, ok := cfg.Pools[name]; !ok {
			delete(n.sub.pools, name)
			go p.Close() // lets its in-flight requests finish
		}
	}
}

func (n *Node) startSubsystems() error {
	if n.sub.dns != nil && !n.sub.dnsUp {
		if err := n.sub.dns.Start(); err != nil {
			return err
		}
		n.sub.dnsUp = true
	}
	if err := n.startTLS(n.cfg); err != nil {
		// A node that cannot serve HTTPS does not start: stop its DNS
		// too, so a failed start leaves no listener behind.
		if n.sub.dnsUp {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = n.sub.dns.Shutdown(ctx)
			cancel()
			n.sub.dnsUp = false
		}
		return err
	}
	return nil
}

func (n *Node) shutdownSubsystems(ctx context.Context) {
	n.shutdownTLS(ctx)
	if n.sub.dns != nil && n.sub.dnsUp {
		_ = n.sub.dns.Shutdown(ctx)
	}
}

func (n *Node) closeSubsystems() {
	s := &n.sub
	closePools(s.pools)
	if s.cache != nil {
		_ = s.cache.Close()
	}
	if s.keys != nil && s.ownKeys {
		_ = s.keys.Close()
	}
	if s.redis != nil && s.ownRedis {
		_ = s.redis.Close()
	}
}

func (n *Node) subsystemStatus(st map[string]any) {
	s := &n.sub
	if s.cache != nil {
		st["cache"] = map[string]any{"objects": s.cache.Objects(), "bytes": s.cache.Bytes()}
	}
	n.mu.Lock()
	names := make([]string, 0, len(s.pools))
	for name := range s.pools {
		names = append(names, name)
	}
	cfg := n.cfg
	n.mu.Unlock()
	sort.Strings(names)
	if len(names) > 0 {
		st["pools"] = names
	}
	if s.dns != nil && cfg != nil {
		h := map[string]bool{}
		for _, nd := range cfg.Nodes {
			h[nd.Name] = s.dns.Health().Healthy(nd.Name)
		}
		st["dns"] = map[string]any{"zones": s.dns.Zones(), "node_health": h}
	}
}

// wrapRoute puts the cache and the gateway in front of the proxy:
// HSTS → gateway → cache → proxy. gw is nil when no route needs it.
func (n *Node) wrapRoute(gw *gateway.Gateway, r *config.Route, h http.Handler) (http.Handler, error) {
	if r.Cache != nil {
		h = n.sub.cache.Handler(r.Name, *r.Cache, h)
	}
	if r.Gateway != nil {
		var err error
		if h, err = gw.Handler(r.Name, *r.Gateway, h); err != nil {
			return nil, err
		}
	}
	// Outermost, so the gateway's own answers (401, 403, 429, CORS) carry
	// the route's policy too; "enabled: false" drops the node default.
	if r.HSTS != nil {
		h = tlsedge.HSTS(h, *r.HSTS)
	}
	return h, nil
}

// HasConfigKey reports whether the config in force has an API key with id.
func (n *Node) HasConfigKey(id string) bool {
	for _, k := range n.Config().Gateway.APIKeys {
		if k.ID == id {
			return true
		}
	}
	return false
}

// Pools returns the current pools (for the admin API).
func (n *Node) Pools() map[string]*lb.Pool {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]*lb.Pool, len(n.sub.pools))
	for k, v := range n.sub.pools {
		out[k] = v
	}
	return out
}

// Cache returns the node's cache, or nil.
func (n *Node) Cache() *cdn.Cache { return n.sub.cache }

// Redis returns the node's Redis client, or nil without redis.addr.
func (n *Node) Redis() redis.UniversalClient { return n.sub.redis }

// DNS returns the node's DNS server, or nil.
func (n *Node) DNS() *dns.Server { return n.sub.dns }

// Keys returns the gateway's API key store, or nil.
func (n *Node) Keys() *gateway.KeyStore { return n.sub.keys }

// MountAdmin registers the node's subsystem endpoints on the admin API.
// Purge is mounted by the process (it fans out to other nodes); fan, when
// not nil, also carries API key changes to the other nodes.
func (n *Node) MountAdmin(a interface {
	Handle(pattern string, h http.Handler)
}, fan *cluster.Fanout) {
	ph := lb.AdminHandler(n.Pools)
	a.Handle("/v1/pools", ph)
	a.Handle("/v1/pools/", ph)
	if n.sub.keys != nil {
		n.sub.keys.SetReserved(n.HasConfigKey)
		kh := admin.ReplicateKeys(gateway.AdminHandler(n.sub.keys, n.base.With("component", "keys")), fan, n.log)
		a.Handle("/v1/keys", kh)
		a.Handle("/v1/keys/", kh)
	}
	if n.sub.dns != nil {
		a.Handle("/v1/dns/records", n.sub.dns.AdminHandler())
	}
	if n.sub.tls != nil {
		a.Handle("GET /v1/certificates", n.sub.tls.mgr.AdminHandler())
	}
}
