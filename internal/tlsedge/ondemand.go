package tlsedge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// errNotAllowed is returned for names neither the allowlist nor the ask
// endpoint approves; the handshake fails before any ACME order is made.
var errNotAllowed = errors.New("name not allowed for on-demand TLS")

// onDemandPolicy decides whether a certificate may be obtained for a name
// seen in a handshake. It runs before certmagic contacts the CA, so a
// refused name costs one map lookup (or one ask request), never an order.
type onDemandPolicy struct {
	allow   []string // exact names and "*.suffix" patterns, lower case
	ask     string
	timeout time.Duration
	client  *http.Client
}

func newOnDemandPolicy(c OnDemandConfig, client *http.Client) *onDemandPolicy {
	return &onDemandPolicy{allow: c.Allow, ask: c.Ask, timeout: c.AskTimeout.D(), client: client}
}

// decide returns nil when name may be issued.
func (p *onDemandPolicy) decide(ctx context.Context, name string) error {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if validName(name) != nil || strings.Contains(name, "*") {
		return fmt.Errorf("%w: invalid name", errNotAllowed)
	}
	for _, pat := range p.allow {
		if matchName(pat, name) {
			return nil
		}
	}
	if p.ask == "" {
		return errNotAllowed
	}
	return p.askEndpoint(ctx, name)
}

// matchName matches an exact name, or a "*.suffix" pattern covering
// exactly one extra label (as a wildcard certificate would).
func matchName(pattern, name string) bool {
	if pattern == name {
		return true
	}
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		label, suffix, found := strings.Cut(name, ".")
		return found && label != "" && suffix == rest
	}
	return false
}

func (p *onDemandPolicy) askEndpoint(ctx context.Context, name string) error {
	u, err := url.Parse(p.ask)
	if err != nil {
		return fmt.Errorf("on-demand ask URL: %w", err)
	}
	q := u.Query()
	q.Set("domain", name)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("on-demand ask: %w", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("on-demand ask: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: ask endpoint answered %d", errNotAllowed, resp.StatusCode)
	}
	return nil
}
