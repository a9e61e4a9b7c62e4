package node

import (
	"context"
	"fmt"
	"net/http"

	"github.com/outpost-edge/outpost/internal/config"
)

// subsystems holds the long-lived state of the cache, pools, gateway and
// DNS server. It is filled in as those packages are wired.
type subsystems struct{}

func (n *Node) openSubsystems(cfg *config.Config, o Options) error { return nil }
func (n *Node) reloadSubsystems(cfg *config.Config) error          { return nil }
func (n *Node) startSubsystems() error                             { return nil }
func (n *Node) shutdownSubsystems(ctx context.Context)             {}
func (n *Node) closeSubsystems()                                   {}
func (n *Node) subsystemStatus(st map[string]any)                  {}

func (n *Node) poolTransport(name string) (http.RoundTripper, error) {
	return nil, fmt.Errorf("pool %q is not configured", name)
}

func (n *Node) wrapRoute(cfg *config.Config, r *config.Route, h http.Handler) (http.Handler, error) {
	return h, nil
}

// MountAdmin registers the node's subsystem endpoints on the admin API.
func (n *Node) MountAdmin(a interface {
	Handle(pattern string, h http.Handler)
}) {
}
