package tlsedge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// errNotAllowed is returned for names neither the allowlist nor the ask
// endpoint approves; the handshake fails before any ACME order is made.
var errNotAllowed = errors.New("name not allowed for on-demand TLS")

// onDemandPolicy decides whether a certificate may be obtained for a name
// seen in a handshake. It runs before certmagic contacts the CA, so a
// refused name costs one map lookup (or one ask request), never an order.
//
// certmagic asks again at every handshake for a name it holds no
// certificate for, so a client repeating handshakes for a refused name
// would turn each into a request to the ask endpoint. The endpoint's
// answers are therefore remembered (askAllowTTL, askDenyTTL), concurrent
// handshakes for one name share one request, and at most maxAsks requests
// are in flight at once: a flood of made-up names costs the endpoint
// maxAsks concurrent requests, not one per handshake.
type onDemandPolicy struct {
	allow   []string // exact names and "*.suffix" patterns, lower case
	ask     string
	timeout time.Duration
	client  *http.Client
	now     func() time.Time

	flights singleflight.Group // concurrent asks for one name, shared
	mu      sync.Mutex
	answers map[string]askAnswer // the endpoint's recent verdicts, by name
	slots   chan struct{}        // one per ask request in flight
}

// askAnswer is a remembered verdict: nil (allowed) or the refusal.
type askAnswer struct {
	err   error
	until time.Time
}

// How long the ask endpoint's answers are kept, how many are kept, and how
// many requests to it may be in flight. An allowed name is issued and
// then served from its certificate, so its answer is rarely read again; a
// refusal is what repeats. Transport errors and timeouts are not kept: the
// next handshake asks again.
const (
	askAllowTTL = 5 * time.Minute
	askDenyTTL  = time.Minute
	maxAnswers  = 4096
	maxAsks     = 16
)

func newOnDemandPolicy(c OnDemandConfig, client *http.Client) *onDemandPolicy {
	return &onDemandPolicy{
		allow: c.Allow, ask: c.Ask, timeout: c.AskTimeout.D(), client: client, now: time.Now,
		answers: map[string]askAnswer{}, slots: make(chan struct{}, maxAsks),
	}
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
	return p.askShared(ctx, name)
}

// askShared answers from a remembered verdict, or joins the request in
// flight for name, or makes one (under the first asker's context).
func (p *onDemandPolicy) askShared(ctx context.Context, name string) error {
	p.mu.Lock()
	if a, ok := p.answers[name]; ok {
		if p.now().Before(a.until) {
			p.mu.Unlock()
			return a.err
		}
		delete(p.answers, name)
	}
	p.mu.Unlock()
	ch := p.flights.DoChan(name, func() (any, error) {
		definitive, err := p.askSlot(ctx, name)
		if definitive {
			p.mu.Lock()
			p.remember(name, err)
			p.mu.Unlock()
		}
		return nil, err
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return fmt.Errorf("on-demand ask: %w", ctx.Err())
	}
}

// askSlot waits, within the ask timeout, for one of maxAsks slots and asks.
// definitive is true for an answer the endpoint gave (200 or not).
func (p *onDemandPolicy) askSlot(ctx context.Context, name string) (definitive bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("on-demand ask: no free slot (%d requests to the ask endpoint in flight): %w", maxAsks, ctx.Err())
	}
	defer func() { <-p.slots }()
	return p.askEndpoint(ctx, name)
}

// remember keeps a verdict for name, with p.mu held. When the table is
// full, expired entries go, and then arbitrary ones.
func (p *onDemandPolicy) remember(name string, err error) {
	now := p.now()
	if len(p.answers) >= maxAnswers {
		for n, a := range p.answers {
			if !now.Before(a.until) {
				delete(p.answers, n)
			}
		}
		for n := range p.answers {
			if len(p.answers) < maxAnswers {
				break
			}
			delete(p.answers, n)
		}
	}
	ttl := askAllowTTL
	if err != nil {
		ttl = askDenyTTL
	}
	p.answers[name] = askAnswer{err: err, until: now.Add(ttl)}
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

// askEndpoint makes one ask request within ctx. definitive is true when
// the endpoint answered.
func (p *onDemandPolicy) askEndpoint(ctx context.Context, name string) (definitive bool, err error) {
	u, err := url.Parse(p.ask)
	if err != nil {
		return false, fmt.Errorf("on-demand ask URL: %w", err)
	}
	q := u.Query()
	q.Set("domain", name)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, fmt.Errorf("on-demand ask: %w", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("on-demand ask: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return true, fmt.Errorf("%w: ask endpoint answered %d", errNotAllowed, resp.StatusCode)
	}
	return true, nil
}
