package config

import (
	"path/filepath"
	"strings"

	"github.com/outpost-edge/outpost/cdn"
	"github.com/outpost-edge/outpost/dns"
	"github.com/outpost-edge/outpost/gateway"
	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/tlsedge"
	"github.com/outpost-edge/outpost/lb"
)

// Sections holds the top-level blocks owned by the subsystem packages;
// each package defines, defaults and validates its own struct.
type Sections struct {
	// Pools are the origin backends, by name (package lb).
	Pools map[string]*lb.PoolConfig `yaml:"pools"`
	// Cache is the disk cache (package cdn); used by routes with a cache: block.
	Cache cdn.Config `yaml:"cache"`
	// Gateway holds API keys, JWT issuers, tiers (package gateway); used by
	// routes with a gateway: block.
	Gateway gateway.Config `yaml:"gateway"`
	// DNS makes this node an authoritative server (package dns); absent = off.
	DNS *dns.Config `yaml:"dns"`
	// TLS is automatic HTTPS (package internal/tlsedge).
	TLS tlsedge.Config `yaml:"tls"`
}

// RouteSections holds the per-route blocks owned by subsystem packages.
type RouteSections struct {
	// Cache turns on edge caching for the route (package cdn).
	Cache *cdn.RouteConfig `yaml:"cache"`
	// Gateway puts the route behind authentication, authorization and
	// rate limits (package gateway).
	Gateway *gateway.RouteConfig `yaml:"gateway"`
	// HSTS sets this route's Strict-Transport-Security policy on its
	// HTTPS responses, replacing the node-wide tls.hsts; a block with
	// enabled: false sends none even when tls.hsts is on. Absent: the
	// node-wide policy applies.
	HSTS *tlsedge.HSTSConfig `yaml:"hsts"`
}

// UsesCache reports whether any route caches.
func (c *Config) UsesCache() bool {
	for i := range c.Routes {
		if c.Routes[i].Cache != nil {
			return true
		}
	}
	return false
}

// UsesGateway reports whether any route has gateway policy.
func (c *Config) UsesGateway() bool {
	for i := range c.Routes {
		if c.Routes[i].Gateway != nil {
			return true
		}
	}
	return false
}

// UsesDataDir reports whether this node keeps state in data_dir: the API
// key store, DNS runtime records, certificates, the purge fan-out queue,
// or a cache stored under it.
func (c *Config) UsesDataDir() bool {
	if c.UsesGateway() || c.DNS != nil || c.TLS.Enabled || c.UsesPurgeStream() {
		return true
	}
	if c.UsesCache() {
		if rel, err := filepath.Rel(c.DataDir, c.Cache.Dir); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	if c.Node != "" {
		for _, nd := range c.Nodes {
			if nd.Name != c.Node && nd.Admin != "" {
				return true // purge fan-out queue
			}
		}
	}
	return false
}

func (c *Config) sectionDefaults() {
	for _, p := range c.Pools {
		if p != nil {
			p.SetDefaults()
		}
	}
	if c.Cache.Dir == "" {
		c.Cache.Dir = filepath.Join(c.DataDir, "cache")
	}
	c.Cache.SetDefaults()
	c.Gateway.SetDefaults()
	if c.DNS != nil {
		c.DNS.SetDefaults()
	}
	if len(c.TLS.ACME.DNS01.Resolvers) == 0 && c.DNS != nil && len(c.DNS.Listen) > 0 {
		// DNS-01 checks propagation against this node's own DNS server.
		addr := c.DNS.Listen[0]
		if strings.HasPrefix(addr, ":") || strings.HasPrefix(addr, "0.0.0.0:") || strings.HasPrefix(addr, "[::]:") {
			addr = "127.0.0.1:" + addr[strings.LastIndexByte(addr, ':')+1:]
		}
		c.TLS.ACME.DNS01.Resolvers = []string{addr}
	}
	if c.TLS.Storage == "" {
		c.TLS.Storage = filepath.Join(c.DataDir, "tls")
	}
	c.TLS.SetDefaults()
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Cache != nil {
			r.Cache.SetDefaults()
		}
		if r.Gateway != nil {
			r.Gateway.SetDefaults()
		}
		if r.HSTS != nil {
			r.HSTS.SetDefaults()
		}
	}
}

func (c *Config) validateSections(l *configerr.List) {
	for name, p := range c.Pools {
		if p == nil {
			l.Addf("pools."+name, "empty pool (want backends:)")
			continue
		}
		l.Merge("pools."+name, p.Validate())
	}
	if c.UsesCache() {
		l.Merge("cache", c.Cache.Validate())
	}
	if c.UsesGateway() {
		l.Merge("gateway", c.Gateway.Validate())
	}
	if c.DNS != nil {
		l.Merge("dns", c.DNS.Validate())
	}
	if c.TLS.Enabled {
		l.Merge("tls", c.TLS.Validate())
	}
}

func (c *Config) poolNames() map[string]bool {
	out := make(map[string]bool, len(c.Pools))
	for name := range c.Pools {
		out[name] = true
	}
	return out
}

func (r *Route) validateSections(prefix string, l *configerr.List) {
	if r.Cache != nil {
		l.Merge(prefix+".cache", r.Cache.Validate())
	}
	if r.Gateway != nil {
		l.Merge(prefix+".gateway", r.Gateway.Validate())
	}
	if r.HSTS != nil {
		l.Merge(prefix+".hsts", r.HSTS.Validate())
	}
}
