package gateway

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/origin/identity"
)

// Verified-token cache limits. A client sends the same bearer token on
// every call until it expires; remembering a successful verification
// turns the repeat cost from a signature check (tens to hundreds of µs
// for RS256/ES256/EdDSA) into a hash and a map lookup.
const (
	tokenCacheMax = 10000
	tokenCacheTTL = time.Minute // bounds how long a rotated-out key's tokens stay accepted
)

// tokenCache remembers verified tokens by SHA-256 of the whole token (a
// collision-resistant key, so a tampered token can never hit an entry).
// Only successes are cached; each entry expires at the token's exp (plus
// leeway) or after tokenCacheTTL, whichever is first. It belongs to one
// config generation, so a reload (new keys, issuers, audiences) starts
// empty.
type tokenCache struct {
	mu sync.RWMutex // guards m
	m  map[[32]byte]cachedToken
}

type cachedToken struct {
	id    identity.Identity
	until int64 // unix nanos
}

func newTokenCache() *tokenCache {
	return &tokenCache{m: make(map[[32]byte]cachedToken)}
}

func (c *tokenCache) get(sum [32]byte, now time.Time) (*identity.Identity, bool) {
	c.mu.RLock()
	e, ok := c.m[sum]
	c.mu.RUnlock()
	if !ok || now.UnixNano() >= e.until {
		return nil, false
	}
	id := e.id // callers may modify their copy (tier resolution)
	return &id, true
}

func (c *tokenCache) put(sum [32]byte, id *identity.Identity, until, now time.Time) {
	n := until.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= tokenCacheMax {
		for k, e := range c.m {
			if e.until <= now.UnixNano() {
				delete(c.m, k)
			}
		}
		if len(c.m) >= tokenCacheMax {
			clear(c.m)
		}
	}
	c.m[sum] = cachedToken{id: *id, until: n}
}

func tokenSum(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }
