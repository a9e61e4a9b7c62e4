package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// maxJWKSBody bounds a fetched key set.
const maxJWKSBody = 1 << 20

// maxJWKSWait bounds how long a request waits for a key-set fetch caused
// by an unknown kid.
const maxJWKSWait = 3 * time.Second

// jwksCache holds the fetched key sets by URL. It is long-lived (part of
// State) so config reloads keep the keys and the refresh history.
type jwksCache struct {
	client  *http.Client
	now     func() time.Time
	log     *slog.Logger
	metrics *Metrics

	mu   sync.Mutex // guards sets
	sets map[string]*jwksSet
}

func newJWKSCache(client *http.Client, now func() time.Time, log *slog.Logger, m *Metrics) *jwksCache {
	return &jwksCache{client: client, now: now, log: log, metrics: m, sets: map[string]*jwksSet{}}
}

// set returns the (possibly not yet fetched) key set for url.
func (c *jwksCache) set(url string) *jwksSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sets[url]
	if s == nil {
		s = &jwksSet{url: url, cache: c}
		c.sets[url] = s
	}
	return s
}

// jwksSet is one URL's keys. Fetches are collapsed: while one is in
// flight, other callers wait for it instead of starting their own.
type jwksSet struct {
	url   string
	cache *jwksCache

	mu        sync.Mutex // guards the fields below
	keys      map[string]verifyKey
	fetched   time.Time     // last successful fetch
	attempted time.Time     // last fetch attempt (success or not)
	inflight  chan struct{} // closed when the running fetch ends; nil when none runs
}

// lookup returns the key for kid. A stale set is refreshed in the
// background; an unknown kid triggers a synchronous refetch, but at most
// one per minRefresh, so a flood of made-up kids cannot hammer the IdP.
func (s *jwksSet) lookup(ctx context.Context, kid string, refresh, minRefresh time.Duration) (verifyKey, bool) {
	now := s.cache.now()
	s.mu.Lock()
	k, ok := s.keys[kid]
	due := !s.attempted.IsZero() && now.Sub(s.attempted) >= minRefresh
	if ok {
		if now.Sub(s.fetched) >= refresh && due && s.inflight == nil {
			s.startLocked()
		}
		s.mu.Unlock()
		return k, true
	}
	var wait chan struct{}
	switch {
	case s.inflight != nil:
		wait = s.inflight
	case s.attempted.IsZero() || due:
		wait = s.startLocked()
	}
	s.mu.Unlock()
	if wait == nil {
		return verifyKey{}, false
	}
	// A slow IdP must not hold requests for the whole fetch timeout: wait
	// a bounded time; the fetch itself continues for later requests.
	timer := time.NewTimer(maxJWKSWait)
	defer timer.Stop()
	select {
	case <-wait:
	case <-ctx.Done():
		return verifyKey{}, false
	case <-timer.C:
		return verifyKey{}, false
	}
	s.mu.Lock()
	k, ok = s.keys[kid]
	s.mu.Unlock()
	return k, ok
}

// prefetch starts a fetch if the set was never attempted.
func (s *jwksSet) prefetch() {
	s.mu.Lock()
	if s.attempted.IsZero() && s.inflight == nil {
		s.startLocked()
	}
	s.mu.Unlock()
}

// startLocked launches a fetch; s.mu must be held. The fetch runs on its
// own context so a cancelled client request does not abort it for others.
func (s *jwksSet) startLocked() chan struct{} {
	ch := make(chan struct{})
	s.inflight = ch
	s.attempted = s.cache.now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		keys, err := s.cache.fetch(ctx, s.url)
		cancel()
		s.mu.Lock()
		if err == nil {
			s.keys = keys
			s.fetched = s.cache.now()
		}
		s.inflight = nil
		s.mu.Unlock()
		close(ch)
		if err != nil {
			s.cache.metrics.jwksFetch.WithLabelValues("error").Inc()
			s.cache.log.Warn("jwks fetch failed", "url", s.url, "err", err)
			return
		}
		s.cache.metrics.jwksFetch.WithLabelValues("ok").Inc()
		s.cache.log.Debug("jwks fetched", "url", s.url, "keys", len(keys))
	}()
	return ch
}

// fetch downloads and parses a key set. Entries that are not usable
// public signing keys (symmetric keys, private keys, unknown types) are
// skipped rather than failing the whole set; a set with none left fails.
func (c *jwksCache) fetch(ctx context.Context, url string) (map[string]verifyKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	if final := resp.Request.URL.String(); final != url {
		// Redirects are followed, but to where jwks.url itself could
		// point: not to plain http on another host.
		if msg := checkJWKSURL(final); msg != "" {
			return nil, fmt.Errorf("redirected: %s", msg)
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBody {
		return nil, errors.New("key set larger than 1MiB")
	}
	keys, err := parseJWKS(body)
	if err == nil && len(keys) == 0 {
		// A JSON error body served with 200, an empty or symmetric-only
		// set: replacing the keys with nothing would refuse every token.
		err = errors.New("key set has no usable signing key")
	}
	return keys, err
}

// parseJWKS parses a JWKS document into kid → key.
func parseJWKS(body []byte) (map[string]verifyKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	keys := make(map[string]verifyKey, len(doc.Keys))
	for _, raw := range doc.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil || jwk.KeyID == "" {
			continue
		}
		if jwk.Use != "" && jwk.Use != "sig" {
			continue
		}
		alg := jwk.Algorithm
		if alg == "" {
			alg = inferAlg(jwk.Key)
		}
		var pub any
		switch k := jwk.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			pub = k
		default:
			continue // symmetric or private material never comes from a URL
		}
		bound, err := bindKey(alg, pub)
		if err != nil {
			continue
		}
		keys[jwk.KeyID] = verifyKey{kid: jwk.KeyID, alg: alg, key: bound}
	}
	return keys, nil
}

func inferAlg(k any) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return "RS256"
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return "ES256"
		}
	case ed25519.PublicKey:
		return "EdDSA"
	}
	return ""
}
