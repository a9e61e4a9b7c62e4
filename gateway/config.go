package gateway

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/units"
	"github.com/outpost-edge/outpost/origin/identity"
)

// Config is the node-wide `gateway:` section: who can authenticate and how,
// the rate-limit tiers, and the secret that signs identity for origins.
type Config struct {
	// IdentitySecret is the HMAC secret shared with origin services; the
	// gateway signs the X-Outpost-* identity headers with it
	// (origin/identity). Empty means identity is not signed: client-sent
	// X-Outpost-* headers are still stripped. At least 16 bytes when set.
	IdentitySecret string `yaml:"identity_secret"`
	// Realm is the realm in WWW-Authenticate challenges. Default "outpost".
	Realm string `yaml:"realm"`
	// APIKeys are keys defined in config, stored as SHA-256 hashes only.
	// Keys created through the admin API live in the key store instead.
	APIKeys []APIKeyConfig `yaml:"api_keys"`
	// JWT configures bearer-token validation.
	JWT JWTConfig `yaml:"jwt"`
	// Tiers maps a tier name to its node-wide (cluster-wide with Redis)
	// rate limit per identity, e.g. free: {requests: 100, window: 1m, burst: 20}.
	Tiers map[string]RateLimit `yaml:"tiers"`
	// DefaultTier is the tier of an authenticated caller whose key or token
	// names none (or names one not in Tiers). Default "free".
	DefaultTier string `yaml:"default_tier"`
	// AnonymousTier is the tier of unauthenticated callers, limited per
	// client IP. Default "anonymous".
	AnonymousTier string `yaml:"anonymous_tier"`
	// AdminRoles are the roles that satisfy `admin_only` routes. Default [admin].
	AdminRoles []string `yaml:"admin_roles"`
	// AuthFailureLimit throttles credential guessing: each failed
	// credential (not a missing one) costs the client IP one request of
	// this budget; when it is spent, requests from that IP presenting
	// credentials get 429 before any verification. Counted per node.
	// Default: off. Suggested: {requests: 30, window: 1m}.
	AuthFailureLimit *RateLimit `yaml:"auth_failure_limit"`
	// Redis makes rate limits global across nodes through the shared Redis.
	Redis RedisConfig `yaml:"redis"`
}

// APIKeyConfig is one API key defined in config.
type APIKeyConfig struct {
	ID     string   `yaml:"id"`     // stable key id, logged and sent to origins; required
	Hash   string   `yaml:"hash"`   // hex SHA-256 of the key; required (the key itself never appears in config)
	Owner  string   `yaml:"owner"`  // user id the key acts as; required
	Tier   string   `yaml:"tier"`   // rate-limit tier; default Config.DefaultTier
	Scopes []string `yaml:"scopes"` // granted scopes
	Roles  []string `yaml:"roles"`  // granted roles
}

// JWTConfig configures JWT bearer tokens. Tokens are accepted only when
// Keys or JWKS is non-empty.
type JWTConfig struct {
	// Issuers are the accepted `iss` values; empty accepts any issuer.
	Issuers []string `yaml:"issuers"`
	// Audiences are accepted `aud` values (any one must match); empty skips the check.
	Audiences []string `yaml:"audiences"`
	// Leeway is the clock skew allowed for exp, nbf and iat. Default 30s.
	Leeway units.Duration `yaml:"leeway"`
	// MaxTokenSize bounds the token length before any parsing. Default 8KiB.
	MaxTokenSize units.Size `yaml:"max_token_size"`
	// AllowNoExp accepts tokens without `exp`. Default false: `exp` is required.
	AllowNoExp bool `yaml:"allow_no_exp"`
	// Keys are verification keys given in config.
	Keys []JWTKeyConfig `yaml:"keys"`
	// JWKS are key-set URLs fetched and cached (only public keys are used).
	JWKS []JWKSConfig `yaml:"jwks"`
}

// JWTKeyConfig is one configured verification key. Exactly one of Secret
// and PublicKeyPEM is set; the algorithm binds the key, so an RSA public key
// can never be used as an HMAC secret.
type JWTKeyConfig struct {
	KID          string `yaml:"kid"`            // key id matched against the token's `kid`; optional when it is the only key of its alg
	Alg          string `yaml:"alg"`            // HS256, RS256, ES256 or EdDSA; required
	Secret       string `yaml:"secret"`         // HS256 shared secret (>= 32 bytes)
	PublicKeyPEM string `yaml:"public_key_pem"` // PEM "PUBLIC KEY" (PKIX) for RS256/ES256/EdDSA
	Issuer       string `yaml:"issuer"`         // when set, only tokens from this issuer may use the key
}

// JWKSConfig is one JWKS endpoint.
type JWKSConfig struct {
	URL string `yaml:"url"` // https (or http for loopback) URL of the key set; required
	// RefreshInterval is how often the set is refetched. Default 5m.
	RefreshInterval units.Duration `yaml:"refresh_interval"`
	// MinRefreshInterval bounds refetches caused by an unknown `kid`: at
	// most one per interval. Default 30s.
	MinRefreshInterval units.Duration `yaml:"min_refresh_interval"`
	// Issuer, when set, restricts this key set to tokens from that issuer.
	Issuer string `yaml:"issuer"`
}

// RateLimit is a GCRA limit: Requests per Window sustained, with up to
// Burst requests at once.
type RateLimit struct {
	Requests int            `yaml:"requests"` // requests per window; required (>= 1)
	Window   units.Duration `yaml:"window"`   // window length; default 1m
	Burst    int            `yaml:"burst"`    // requests allowed at once; default Requests
}

// RedisConfig turns on global rate limits through Redis. The Redis client
// itself is shared by the node and passed in StateOptions.
type RedisConfig struct {
	// Enabled makes limits global through Redis. Default false.
	Enabled bool `yaml:"enabled"`
	// KeyPrefix namespaces limiter keys. Default "outpost:rl:".
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds one limiter round trip; beyond it the local limiter
	// decides. Default 50ms.
	Timeout units.Duration `yaml:"timeout"`
	// Cooldown is how long the circuit stays open (local decisions only)
	// after a Redis failure before one request probes Redis again. Default 2s.
	Cooldown units.Duration `yaml:"cooldown"`
}

// RouteConfig is the `gateway:` block of one route.
type RouteConfig struct {
	// Methods are the allowed methods; others get 405. Empty allows all.
	Methods []string `yaml:"methods"`
	// Paths are patterns the request path must match, else 404. Segments
	// are literal, `{name}` or `*` (exactly one segment), and a final
	// `{name...}` or `**` (the rest, possibly empty). Empty allows any path.
	Paths []string `yaml:"paths"`
	// EncodedSlashes lets a one-segment wildcard match a segment holding
	// an escaped slash ("%2F"). Off by default: many origins (Flask,
	// Django, Rails, an nginx in front) decode %2F before they route, so
	// "/users/a%2Fb", one segment to the pattern "/users/{id}", would reach
	// them as "/users/a/b", a path the pattern never allowed. Turn it on
	// for APIs whose ids hold slashes (GitLab's "group%2Fproject"), behind
	// origins that route on the escaped path (Go's ServeMux does).
	EncodedSlashes bool `yaml:"encoded_slashes"`
	// StripPrefix is removed from the path before it goes upstream.
	StripPrefix string `yaml:"strip_prefix"`
	// Rewrite replaces the (stripped) path by regular expression.
	Rewrite *RewriteConfig `yaml:"rewrite"`
	// Timeout bounds the upstream call (the proxy answers 504). 0 = none.
	Timeout units.Duration `yaml:"timeout"`
	// MaxBody is the largest request body accepted (413 beyond). 0 = unlimited.
	MaxBody units.Size `yaml:"max_body"`
	// Auth is authentication and authorization for the route.
	Auth AuthConfig `yaml:"auth"`
	// RateLimit is the per-route limit; without it the caller's tier limit applies.
	RateLimit *RouteRateLimit `yaml:"rate_limit"`
	// Concurrency caps in-flight requests on the route (503 beyond). 0 = unlimited.
	Concurrency int `yaml:"concurrency"`
	// Request transforms the upstream request.
	Request RequestTransform `yaml:"request"`
	// Response transforms the response headers.
	Response HeaderOps `yaml:"response"`
	// CORS answers preflights and decorates responses for allowed origins.
	CORS *CORSConfig `yaml:"cors"`
}

// RewriteConfig rewrites the path with a regular expression.
type RewriteConfig struct {
	Match   string `yaml:"match"`   // RE2 expression matched against the path; required
	Replace string `yaml:"replace"` // replacement, with $1-style references
}

// AuthConfig is a route's authentication and authorization.
type AuthConfig struct {
	// Mode is required (default: credentials needed, 401 otherwise),
	// optional (anonymous allowed, but presented credentials must be valid)
	// or none (credentials are not examined).
	Mode string `yaml:"mode"`
	// Methods are the accepted credential kinds: api_key, jwt. Default both.
	Methods []string `yaml:"methods"`
	// Scopes must all be granted (403 otherwise).
	Scopes []string `yaml:"scopes"`
	// Roles: at least one must be held (403 otherwise).
	Roles []string `yaml:"roles"`
	// AdminOnly requires one of Config.AdminRoles.
	AdminOnly bool `yaml:"admin_only"`
	// ForwardCredentials keeps Authorization and X-API-Key on the upstream
	// request. Default false: origins get the signed identity instead.
	ForwardCredentials bool `yaml:"forward_credentials"`
}

// RouteRateLimit is a route's own limit. The embedded limit applies to
// every tier not listed in Tiers; its buckets are per route.
type RouteRateLimit struct {
	RateLimit `yaml:",inline"`
	// Tiers overrides the limit per tier name ("anonymous" for anonymous callers by default).
	Tiers map[string]RateLimit `yaml:"tiers"`
	// Disabled turns off every limit (route and tier) on the route.
	Disabled bool `yaml:"disabled"`
}

// HeaderOps edits a header set: Remove first, then Set, then Add.
type HeaderOps struct {
	Add    map[string]string `yaml:"add"`    // appended values
	Set    map[string]string `yaml:"set"`    // replaced values
	Remove []string          `yaml:"remove"` // removed fields
}

// RequestTransform edits the upstream request.
type RequestTransform struct {
	HeaderOps `yaml:",inline"`
	// Query sets query parameters (replacing client values of the same name).
	Query map[string]string `yaml:"query"`
}

// CORSConfig is a route's CORS policy.
type CORSConfig struct {
	AllowOrigins     []string       `yaml:"allow_origins"`     // exact origins ("https://app.example") or "*"; required
	AllowMethods     []string       `yaml:"allow_methods"`     // default: the route's methods, else GET, HEAD, POST, PUT, PATCH, DELETE
	AllowHeaders     []string       `yaml:"allow_headers"`     // default: Authorization, Content-Type, X-API-Key, X-Request-ID
	ExposeHeaders    []string       `yaml:"expose_headers"`    // default: RateLimit, RateLimit-Policy, Retry-After, X-Request-ID
	AllowCredentials bool           `yaml:"allow_credentials"` // not with "*"
	MaxAge           units.Duration `yaml:"max_age"`           // preflight cache lifetime; default 10m
}

// Auth modes and credential methods.
const (
	ModeRequired = "required"
	ModeOptional = "optional"
	ModeNone     = "none"

	MethodAPIKey = "api_key"
	MethodJWT    = "jwt"
)

// Supported JWT algorithms.
var jwtAlgs = []string{"HS256", "RS256", "ES256", "EdDSA"}

// SetDefaults fills zero values with defaults.
func (c *Config) SetDefaults() {
	if c.Realm == "" {
		c.Realm = "outpost"
	}
	if c.DefaultTier == "" {
		c.DefaultTier = "free"
	}
	if c.AnonymousTier == "" {
		c.AnonymousTier = "anonymous"
	}
	if len(c.AdminRoles) == 0 {
		c.AdminRoles = []string{"admin"}
	}
	for name, t := range c.Tiers {
		t.setDefaults()
		c.Tiers[name] = t
	}
	if c.AuthFailureLimit != nil {
		c.AuthFailureLimit.setDefaults()
	}
	for i := range c.APIKeys {
		if c.APIKeys[i].Tier == "" {
			c.APIKeys[i].Tier = c.DefaultTier
		}
		c.APIKeys[i].Hash = strings.ToLower(c.APIKeys[i].Hash)
	}
	if c.JWT.Leeway == 0 {
		c.JWT.Leeway = units.Duration(30 * time.Second)
	}
	if c.JWT.MaxTokenSize == 0 {
		c.JWT.MaxTokenSize = 8 << 10
	}
	for i := range c.JWT.JWKS {
		j := &c.JWT.JWKS[i]
		if j.RefreshInterval == 0 {
			j.RefreshInterval = units.Duration(5 * time.Minute)
		}
		if j.MinRefreshInterval == 0 {
			j.MinRefreshInterval = units.Duration(30 * time.Second)
		}
	}
	if c.Redis.KeyPrefix == "" {
		c.Redis.KeyPrefix = "outpost:rl:"
	}
	if c.Redis.Timeout == 0 {
		c.Redis.Timeout = units.Duration(50 * time.Millisecond)
	}
	if c.Redis.Cooldown == 0 {
		c.Redis.Cooldown = units.Duration(2 * time.Second)
	}
}

func (l *RateLimit) setDefaults() {
	if l.Window == 0 {
		l.Window = units.Duration(time.Minute)
	}
	if l.Burst == 0 {
		l.Burst = l.Requests
	}
}

// Validate checks the section; paths are relative to `gateway`.
func (c *Config) Validate() error {
	var l configerr.List
	if c.IdentitySecret != "" && len(c.IdentitySecret) < 16 {
		l.Addf("identity_secret", "must be at least 16 bytes, got %d", len(c.IdentitySecret))
	}
	if hasControl(c.Realm, `"\`) {
		// It is sent inside a quoted string: realm="…".
		l.Addf("realm", "must not contain a quote, backslash or control character, got %q", c.Realm)
	}
	ids := map[string]bool{}
	hashes := map[string]bool{}
	for i, k := range c.APIKeys {
		p := fmt.Sprintf("api_keys[%d]", i)
		if !validKeyID(k.ID) {
			l.Addf(p+".id", "must be 1-64 characters of [A-Za-z0-9_.-], got %q", k.ID)
		} else if ids[k.ID] {
			l.Addf(p+".id", "duplicate key id %q", k.ID)
		}
		ids[k.ID] = true
		if b, err := hex.DecodeString(k.Hash); err != nil || len(b) != 32 {
			l.Addf(p+".hash", "must be the 64-hex-digit SHA-256 of the key")
		} else if hashes[strings.ToLower(k.Hash)] {
			l.Addf(p+".hash", "duplicate key hash")
		}
		hashes[strings.ToLower(k.Hash)] = true
		if k.Owner == "" {
			l.Addf(p+".owner", "is required")
		}
		validateWords(&l, p+".scopes", k.Scopes)
		validateWords(&l, p+".roles", k.Roles)
		validateWords(&l, p+".tier", []string{k.Tier})
	}
	for name, t := range c.Tiers {
		if name == "" || hasControl(name, " ") {
			l.Addf("tiers", "tier name %q must be a non-empty word", name)
		}
		l.Merge("tiers."+name, t.validate())
	}
	l.Merge("jwt", c.JWT.validate())
	if c.AuthFailureLimit != nil {
		l.Merge("auth_failure_limit", c.AuthFailureLimit.validate())
	}
	if c.Redis.Timeout < 0 {
		l.Addf("redis.timeout", "must be > 0, got %s", c.Redis.Timeout)
	}
	if c.Redis.Cooldown < 0 {
		l.Addf("redis.cooldown", "must be > 0, got %s", c.Redis.Cooldown)
	}
	return l.Err()
}

func (j *JWTConfig) validate() error {
	var l configerr.List
	if j.Leeway < 0 || j.Leeway.D() > 10*time.Minute {
		l.Addf("leeway", "must be between 0s and 10m, got %s", j.Leeway)
	}
	if j.MaxTokenSize < 256 || j.MaxTokenSize > 1<<20 {
		l.Addf("max_token_size", "must be between 256B and 1MiB, got %d bytes", j.MaxTokenSize.Int64())
	}
	kids := map[string]bool{}
	for i, k := range j.Keys {
		p := fmt.Sprintf("keys[%d]", i)
		if k.KID != "" {
			if kids[k.KID] {
				l.Addf(p+".kid", "duplicate kid %q", k.KID)
			}
			kids[k.KID] = true
		}
		if _, err := parseKey(k); err != nil {
			l.Addf(p, "%v", err)
		}
	}
	for i, s := range j.JWKS {
		p := fmt.Sprintf("jwks[%d]", i)
		if msg := checkJWKSURL(s.URL); msg != "" {
			l.Addf(p+".url", "%s", msg)
		}
		if s.RefreshInterval.D() < time.Second {
			l.Addf(p+".refresh_interval", "must be >= 1s, got %s", s.RefreshInterval)
		}
		if s.MinRefreshInterval.D() < time.Second {
			l.Addf(p+".min_refresh_interval", "must be >= 1s, got %s", s.MinRefreshInterval)
		}
	}
	return l.Err()
}

// checkJWKSURL allows https, and plain http only to a loopback host (as
// documented): keys fetched in clear from elsewhere can be replaced on the
// way, and every token would then verify against the replacement. It
// returns the problem, or "".
func checkJWKSURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		return fmt.Sprintf("must be an http(s) URL, got %q", raw)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return fmt.Sprintf("must be https (plain http only to a loopback address), got %q", raw)
	}
	return ""
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

func (r RateLimit) validate() error {
	var l configerr.List
	if r.Requests < 1 {
		l.Addf("requests", "must be >= 1, got %d", r.Requests)
	}
	if r.Window.D() < time.Second || r.Window.D()%time.Second != 0 {
		l.Addf("window", "must be a whole number of seconds >= 1s, got %s", r.Window)
	}
	if r.Burst < 1 {
		l.Addf("burst", "must be >= 1, got %d", r.Burst)
	}
	return l.Err()
}

// SetDefaults fills zero values with defaults.
func (rc *RouteConfig) SetDefaults() {
	if rc.Auth.Mode == "" {
		rc.Auth.Mode = ModeRequired
	}
	if len(rc.Auth.Methods) == 0 {
		rc.Auth.Methods = []string{MethodAPIKey, MethodJWT}
	}
	for i, m := range rc.Methods {
		rc.Methods[i] = strings.ToUpper(m)
	}
	if rl := rc.RateLimit; rl != nil {
		if rl.Requests > 0 {
			rl.RateLimit.setDefaults()
		}
		for name, t := range rl.Tiers {
			t.setDefaults()
			rl.Tiers[name] = t
		}
	}
	if c := rc.CORS; c != nil {
		if len(c.AllowMethods) == 0 {
			if len(rc.Methods) > 0 {
				c.AllowMethods = slices.Clone(rc.Methods)
			} else {
				c.AllowMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
			}
		}
		if len(c.AllowHeaders) == 0 {
			c.AllowHeaders = []string{"Authorization", "Content-Type", "X-API-Key", "X-Request-ID"}
		}
		if len(c.ExposeHeaders) == 0 {
			c.ExposeHeaders = []string{"RateLimit", "RateLimit-Policy", "Retry-After", "X-Request-ID"}
		}
		if c.MaxAge == 0 {
			c.MaxAge = units.Duration(10 * time.Minute)
		}
	}
}

// Validate checks one route's block; paths are relative to it.
func (rc *RouteConfig) Validate() error {
	var l configerr.List
	validateTokens(&l, "methods", "method", rc.Methods)
	for i, p := range rc.Paths {
		if _, err := compilePattern(p); err != nil {
			l.Addf(fmt.Sprintf("paths[%d]", i), "%v", err)
		}
	}
	if rc.StripPrefix != "" && !strings.HasPrefix(rc.StripPrefix, "/") {
		l.Addf("strip_prefix", "must start with /, got %q", rc.StripPrefix)
	}
	if rw := rc.Rewrite; rw != nil {
		if _, err := regexp.Compile(rw.Match); err != nil || rw.Match == "" {
			l.Addf("rewrite.match", "must be a regular expression, got %q", rw.Match)
		}
	}
	if rc.Timeout < 0 {
		l.Addf("timeout", "must be >= 0, got %s", rc.Timeout)
	}
	if rc.MaxBody < 0 {
		l.Addf("max_body", "must be >= 0")
	}
	switch rc.Auth.Mode {
	case "", ModeRequired, ModeOptional, ModeNone: // "" is the default, required
	default:
		l.Addf("auth.mode", "unknown mode %q (want required, optional, none)", rc.Auth.Mode)
	}
	for i, m := range rc.Auth.Methods {
		if m != MethodAPIKey && m != MethodJWT {
			l.Addf(fmt.Sprintf("auth.methods[%d]", i), "unknown method %q (want api_key, jwt)", m)
		}
	}
	if rc.Auth.Mode == ModeNone && (len(rc.Auth.Scopes) > 0 || len(rc.Auth.Roles) > 0 || rc.Auth.AdminOnly) {
		l.Addf("auth", "scopes, roles and admin_only need mode required or optional")
	}
	validateWords(&l, "auth.scopes", rc.Auth.Scopes)
	validateWords(&l, "auth.roles", rc.Auth.Roles)
	if rl := rc.RateLimit; rl != nil && !rl.Disabled {
		if rl.Requests != 0 || rl.Burst != 0 || rl.Window != 0 {
			l.Merge("rate_limit", rl.RateLimit.validate())
		}
		for name, t := range rl.Tiers {
			l.Merge("rate_limit.tiers."+name, t.validate())
		}
	}
	if rc.Concurrency < 0 {
		l.Addf("concurrency", "must be >= 0, got %d", rc.Concurrency)
	}
	validateOps(&l, "request", rc.Request.HeaderOps, true)
	validateOps(&l, "response", rc.Response, false)
	for k := range rc.Request.Query {
		if k == "" {
			l.Addf("request.query", "empty parameter name")
		}
	}
	if c := rc.CORS; c != nil {
		if len(c.AllowOrigins) == 0 {
			l.Addf("cors.allow_origins", "is required")
		}
		for i, o := range c.AllowOrigins {
			if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
				l.Addf(fmt.Sprintf("cors.allow_origins[%d]", i), "must be \"*\" or an origin such as https://app.example, got %q", o)
			}
			if o == "*" && c.AllowCredentials {
				l.Addf("cors.allow_credentials", "cannot be combined with allow_origins \"*\"")
			}
		}
		validateTokens(&l, "cors.allow_headers", "header name", c.AllowHeaders)
		validateTokens(&l, "cors.expose_headers", "header name", c.ExposeHeaders)
		validateTokens(&l, "cors.allow_methods", "method", c.AllowMethods)
		if c.MaxAge < 0 {
			l.Addf("cors.max_age", "must be >= 0")
		}
	}
	return l.Err()
}

func validateOps(l *configerr.List, p string, ops HeaderOps, request bool) {
	check := func(kind, name string) {
		if !isToken(name) {
			l.Addf(p+"."+kind, "invalid header name %q", name)
			return
		}
		if request && isIdentityHeader(name) {
			l.Addf(p+"."+kind, "%s is set only by the gateway's signed identity", name)
		}
	}
	for k, v := range ops.Add {
		check("add", k)
		if hasControl(v, "") {
			l.Addf(p+".add."+k, "value contains a control character")
		}
	}
	for k, v := range ops.Set {
		check("set", k)
		if hasControl(v, "") {
			l.Addf(p+".set."+k, "value contains a control character")
		}
	}
	for _, k := range ops.Remove {
		check("remove", k)
	}
}

// hasControl reports whether s holds a byte a field value cannot carry
// (RFC 9110 §5.5: controls other than tab, and DEL) or one of also.
// Beyond CR and LF, Go's client refuses such a request outright (every
// call would be a 502) and clients refuse such a response.
func hasControl(s, also string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return true
		}
	}
	return strings.ContainsAny(s, also)
}

func isIdentityHeader(name string) bool {
	c := textproto.CanonicalMIMEHeaderKey(name)
	for _, h := range identity.Headers {
		if c == h {
			return true
		}
	}
	return false
}

// validateTokens checks that every entry of list (at path p) is an RFC
// 9110 token: field names and methods go into header values as they are.
func validateTokens(l *configerr.List, p, what string, list []string) {
	for i, v := range list {
		if !isToken(v) {
			l.Addf(fmt.Sprintf("%s[%d]", p, i), "invalid %s %q", what, v)
		}
	}
}

func validateWords(l *configerr.List, p string, words []string) {
	for _, w := range words {
		if w == "" || hasControl(w, " ") {
			l.Addf(p, "%q must be a non-empty word without spaces or control characters", w)
		}
	}
}

func validKeyID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token (method or field name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}
