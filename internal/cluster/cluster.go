// Package cluster describes the set of Outpost nodes that share one config
// file: every node runs the same binary and config, and a flag or env var
// names the node itself.
package cluster

import (
	"net/netip"
	"net/url"
	"strings"

	"github.com/outpost-edge/outpost/internal/configerr"
)

// Node is one edge node as listed in the shared config.
type Node struct {
	Name   string     `yaml:"name"`
	IPv4   netip.Addr `yaml:"ipv4"`   // public IPv4 returned in steered A answers
	IPv6   netip.Addr `yaml:"ipv6"`   // public IPv6 returned in steered AAAA answers; optional
	Region string     `yaml:"region"` // free-form region label, e.g. "eu"
	// Lat and Lon locate the node for great-circle steering, in degrees.
	Lat float64 `yaml:"lat"`
	Lon float64 `yaml:"lon"`
	// Weight biases steering between equally near nodes; default 1.
	Weight int `yaml:"weight"`
	// Health is the URL other nodes probe. Default:
	// http://<ipv4>:<edge port>/_outpost/healthz (the IPv6 address for an
	// IPv6-only node), the edge's built-in endpoint.
	Health string `yaml:"health"`
	// Admin is this node's admin API base URL, used for purge fan-out and
	// ACME challenge pushes, e.g. https://203.0.113.5:9443. Optional.
	Admin string `yaml:"admin"`
}

// Validate checks one node.
func (n *Node) Validate() error {
	var l configerr.List
	if n.Name == "" {
		l.Addf("name", "required")
	}
	if !n.IPv4.IsValid() && !n.IPv6.IsValid() {
		l.Addf("ipv4", "a node needs an ipv4 or ipv6 address")
	}
	if n.IPv4.IsValid() && !n.IPv4.Is4() {
		l.Addf("ipv4", "want an IPv4 address, got %s", n.IPv4)
	}
	if n.IPv6.IsValid() && !n.IPv6.Is6() {
		l.Addf("ipv6", "want an IPv6 address, got %s", n.IPv6)
	} else if n.IPv6.Zone() != "" {
		// A zone names a local interface: it can't go into an AAAA answer.
		l.Addf("ipv6", "want an address without a zone, got %s", n.IPv6)
	}
	if n.Lat < -90 || n.Lat > 90 {
		l.Addf("lat", "must be within [-90, 90], got %g", n.Lat)
	}
	if n.Lon < -180 || n.Lon > 180 {
		l.Addf("lon", "must be within [-180, 180], got %g", n.Lon)
	}
	if n.Weight < 0 {
		l.Addf("weight", "must be >= 0, got %d", n.Weight)
	}
	for _, f := range []struct{ name, v string }{{"health", n.Health}, {"admin", n.Admin}} {
		if f.v == "" {
			continue
		}
		u, err := url.Parse(f.v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.Addf(f.name, "want an http(s) URL, got %q", f.v)
		} else if f.name == "admin" && (u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(f.v, "#")) {
			// API paths are appended to it: a query or fragment would swallow them.
			l.Addf(f.name, "want a base URL without query or fragment (API paths are appended to it), got %q", f.v)
		}
	}
	return l.Err()
}
