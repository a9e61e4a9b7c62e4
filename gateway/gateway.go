// Package gateway is the per-route API policy in front of the load
// balancer: authentication (API keys, JWT with static keys or JWKS),
// authorization (scopes, roles, admin-only), rate limits (GCRA, local or
// global through Redis, with the IETF RateLimit fields), concurrency caps,
// request and response transforms, CORS, and the signed identity headers
// origins verify with origin/identity.
//
// Long-lived state (the API key store, limiter buckets, the JWKS cache,
// the Redis circuit, metrics) lives in a State created once per process.
// A Gateway is built from one config generation and is cheap: config
// reloads build a new one over the same State.
//
//	st, _ := gateway.NewState(gateway.StateOptions{Registerer: reg, Keys: keys, Redis: rdb})
//	gw, _ := gateway.New(cfg.Gateway, st)
//	h, _ := gw.Handler("api", route.Gateway, proxy)
package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/outpost-edge/outpost/origin/identity"
)

// StateOptions are the process-wide dependencies of the gateway.
type StateOptions struct {
	// Registerer receives the gateway metrics once; nil registers nothing.
	Registerer prometheus.Registerer
	// Keys is the admin-managed API key store (OpenKeyStore); nil means
	// only keys from config are accepted.
	Keys *KeyStore
	// Redis is the shared Redis client for global rate limits; nil means
	// local limits only. Create it with ContextTimeoutEnabled: true so the
	// limiter's short per-call deadline is honoured on reads and writes.
	Redis redis.UniversalClient
	// HTTPClient fetches JWKS; nil uses a client with a 10s timeout.
	HTTPClient *http.Client
	// Logger is the base logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// State is the long-lived part of the gateway; it survives config reloads.
type State struct {
	metrics *Metrics
	keys    *KeyStore
	local   *localLimiter
	redis   *redisLimiter // nil without a Redis client
	jwks    *jwksCache
	log     *slog.Logger
	now     func() time.Time
}

// NewState creates the long-lived state and registers the metrics.
func NewState(o StateOptions) (*State, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	log := o.Logger.With("component", "gateway")
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	st := &State{
		metrics: m,
		keys:    o.Keys,
		local:   newLocalLimiter(o.Now),
		jwks:    newJWKSCache(o.HTTPClient, o.Now, log, m),
		log:     log,
		now:     o.Now,
	}
	if o.Redis != nil {
		st.redis = newRedisLimiter(o.Redis, o.Now, log, m)
		if c, ok := o.Redis.(interface{ Options() *redis.Options }); ok && !c.Options().ContextTimeoutEnabled {
			log.Warn("redis client has ContextTimeoutEnabled=false: a hung Redis delays rate-limit decisions up to the client's read timeout before the local fallback")
		}
	}
	return st, nil
}

// Gateway is one config generation of the gateway. Build route handlers
// with Handler.
type Gateway struct {
	st       *State
	cfg      Config
	secret   []byte
	keys     map[[32]byte]*identity.Identity // config keys by SHA-256
	jwt      *jwtVerifier
	useRedis bool
	adminSet map[string]bool
	tiers    map[string]*policy // node-wide tier policies
	failures *policy            // auth-failure budget per client IP; nil = off
}

// New builds a Gateway from a config that has had SetDefaults and passed
// Validate. It starts fetching configured JWKS in the background.
func New(cfg Config, st *State) (*Gateway, error) {
	if st == nil {
		return nil, errors.New("gateway: nil State")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{
		st:       st,
		cfg:      cfg,
		secret:   []byte(cfg.IdentitySecret),
		keys:     make(map[[32]byte]*identity.Identity, len(cfg.APIKeys)),
		adminSet: map[string]bool{},
		tiers:    map[string]*policy{},
	}
	for _, k := range cfg.APIKeys {
		b, _ := hex.DecodeString(k.Hash)
		g.keys[[32]byte(b)] = &identity.Identity{
			User: k.Owner, KeyID: k.ID, Scopes: k.Scopes, Roles: k.Roles, Tier: g.tierOf(k.Tier),
		}
	}
	var err error
	if g.jwt, err = newJWTVerifier(cfg.JWT, st.jwks, st.now); err != nil {
		return nil, err
	}
	for _, ref := range g.jwt.jwks {
		ref.set.prefetch()
	}
	for _, r := range cfg.AdminRoles {
		g.adminSet[r] = true
	}
	for name, l := range cfg.Tiers {
		g.tiers[name] = newPolicy(name, "t:"+strconv.Quote(name)+":", l)
	}
	if cfg.AuthFailureLimit != nil {
		g.failures = newPolicy("auth-failures", "af:", *cfg.AuthFailureLimit)
	}
	if cfg.Redis.Enabled {
		if st.redis == nil {
			return nil, errors.New("gateway: redis.enabled needs a Redis client (configure the node's redis section)")
		}
		st.redis.configure(cfg.Redis)
		g.useRedis = true
	}
	return g, nil
}

// tierOf resolves a claimed tier: unknown or empty tiers become the
// default tier, so a token cannot invent a tier without limits.
func (g *Gateway) tierOf(t string) string {
	if _, ok := g.cfg.Tiers[t]; ok {
		return t
	}
	return g.cfg.DefaultTier
}

// lookupKey finds an API key. The reason is "" on success.
func (g *Gateway) lookupKey(key string) (*identity.Identity, string) {
	if len(key) > 256 || len(key) < 16 {
		return nil, "malformed"
	}
	sum := sha256.Sum256([]byte(key))
	if id := g.keys[sum]; id != nil {
		return id, ""
	}
	rec := g.st.keys.lookup(sum)
	switch {
	case rec == nil:
		return nil, "unknown_key"
	case rec.RevokedAt != nil:
		return nil, "revoked"
	case rec.ExpiresAt != nil && !g.st.now().Before(*rec.ExpiresAt):
		return nil, "expired"
	}
	return &identity.Identity{
		User: rec.Owner, KeyID: rec.ID, Scopes: rec.Scopes, Roles: rec.Roles, Tier: g.tierOf(rec.Tier),
	}, ""
}
