package gateway

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-edge/outpost/internal/configerr"
)

const exampleYAML = `
identity_secret: "0123456789abcdef0123456789abcdef"
api_keys:
  - id: reporting
    hash: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
    owner: svc-reporting
    tier: pro
    scopes: [reports:read]
jwt:
  issuers: [https://auth.demo.test]
  audiences: [api.demo.test]
  leeway: 30s
  max_token_size: 8KiB
  keys:
    - kid: demo-hs
      alg: HS256
      secret: "demo-secret-demo-secret-demo-secret!"
  jwks:
    - url: https://auth.demo.test/.well-known/jwks.json
      refresh_interval: 10m
tiers:
  anonymous: {requests: 30, window: 1m}
  free: {requests: 100, window: 1m, burst: 20}
  pro: {requests: 1000, window: 1m}
redis:
  enabled: true
  timeout: 30ms
`

const exampleRouteYAML = `
methods: [GET, POST]
paths: ["/api/posts/**", "/api/users/{id}"]
strip_prefix: /api
rewrite: {match: "^/users/(.*)$", replace: "/v1/users/$1"}
timeout: 10s
max_body: 1MiB
auth:
  mode: optional
  methods: [jwt, api_key]
  scopes: [posts:read]
rate_limit:
  requests: 50
  window: 1m
  tiers:
    pro: {requests: 500, window: 1m}
concurrency: 100
request:
  set: {X-Api-Version: "2"}
  remove: [Cookie]
  query: {source: edge}
response:
  set: {X-Frame-Options: DENY}
cors:
  allow_origins: [https://app.demo.test]
`

func decodeStrict(t *testing.T, src string, v any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewBufferString(src))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestConfigExample(t *testing.T) {
	var c Config
	decodeStrict(t, exampleYAML, &c)
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Tiers["free"].Burst != 20 || c.Tiers["pro"].Burst != 1000 || c.JWT.Leeway.D() != 30*time.Second || c.JWT.JWKS[0].MinRefreshInterval.D() != 30*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	var rc RouteConfig
	decodeStrict(t, exampleRouteYAML, &rc)
	rc.SetDefaults()
	if err := rc.Validate(); err != nil {
		t.Fatal(err)
	}
	if rc.RateLimit.Burst != 50 || rc.MaxBody != 1<<20 || rc.CORS.MaxAge.D() != 10*time.Minute {
		t.Fatalf("route defaults: %+v", rc)
	}
	// Unknown keys are errors (strict decoding).
	dec := yaml.NewDecoder(strings.NewReader("auth: {mode: required, scope: [x]}"))
	dec.KnownFields(true)
	if err := dec.Decode(&RouteConfig{}); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(c *Config)
		path string
		msg  string
	}{
		{"short identity secret", func(c *Config) { c.IdentitySecret = "short" }, "identity_secret", "at least 16 bytes"},
		{"bad key hash", func(c *Config) { c.APIKeys = []APIKeyConfig{{ID: "a", Hash: "abc", Owner: "o"}} }, "api_keys[0].hash", "SHA-256"},
		{"key without owner", func(c *Config) { c.APIKeys = []APIKeyConfig{{ID: "a", Hash: HashKey("x"), Tier: "free"}} }, "api_keys[0].owner", "required"},
		{"duplicate key id", func(c *Config) {
			c.APIKeys = []APIKeyConfig{{ID: "a", Hash: HashKey("x"), Owner: "o", Tier: "f"}, {ID: "a", Hash: HashKey("y"), Owner: "o", Tier: "f"}}
		}, "api_keys[1].id", "duplicate"},
		{"tier without requests", func(c *Config) { c.Tiers = map[string]RateLimit{"free": {Window: 60e9, Burst: 1}} }, "tiers.free.requests", "must be >= 1, got 0"},
		{"sub-second window", func(c *Config) { c.Tiers = map[string]RateLimit{"free": {Requests: 1, Window: 5e8, Burst: 1}} }, "tiers.free.window", "whole number of seconds"},
		{"unknown jwt alg", func(c *Config) { c.JWT.Keys = []JWTKeyConfig{{Alg: "HS512", Secret: strings.Repeat("s", 32)}} }, "jwt.keys[0]", "unknown algorithm"},
		{"short hmac", func(c *Config) { c.JWT.Keys = []JWTKeyConfig{{Alg: "HS256", Secret: "s"}} }, "jwt.keys[0]", "at least 32 bytes"},
		{"rsa as hmac", func(c *Config) { c.JWT.Keys = []JWTKeyConfig{{Alg: "HS256", PublicKeyPEM: keys(t).rsaPEM}} }, "jwt.keys[0]", "needs secret"},
		{"ec key for RS256", func(c *Config) { c.JWT.Keys = []JWTKeyConfig{{Alg: "RS256", PublicKeyPEM: keys(t).ecPEM}} }, "jwt.keys[0]", "does not match alg RS256"},
		{"bad pem", func(c *Config) { c.JWT.Keys = []JWTKeyConfig{{Alg: "ES256", PublicKeyPEM: "nope"}} }, "jwt.keys[0]", "no PEM block"},
		{"jwks not http", func(c *Config) {
			c.JWT.JWKS = []JWKSConfig{{URL: "file:///etc/passwd", RefreshInterval: 60e9, MinRefreshInterval: 60e9}}
		}, "jwt.jwks[0].url", "http(s) URL"},
		{"tiny token size", func(c *Config) { c.JWT.MaxTokenSize = 10 }, "jwt.max_token_size", "between 256B and 1MiB"},
		// Scopes, roles and tiers travel in the X-Outpost-* headers.
		{"control character in a key scope", func(c *Config) {
			c.APIKeys = []APIKeyConfig{{ID: "a", Hash: HashKey("x"), Owner: "o", Tier: "f", Scopes: []string{"read\x01"}}}
		}, "api_keys[0].scopes", "without spaces"},
		{"control character in a tier name", func(c *Config) { c.Tiers = map[string]RateLimit{"f\x7f": {Requests: 1, Window: 60e9, Burst: 1}} }, "tiers", "non-empty word"},
		{"realm with a quote", func(c *Config) { c.Realm = `a", error="none` }, "realm", "quote"},
		{"realm with a control character", func(c *Config) { c.Realm = "a\x01" }, "realm", "quote"},
		// Keys fetched over plain HTTP from another host can be swapped by
		// anyone on the path: every token would verify against theirs.
		{"jwks plain http to a remote host", func(c *Config) {
			c.JWT.JWKS = []JWKSConfig{{URL: "http://auth.example.com/.well-known/jwks.json", RefreshInterval: 60e9, MinRefreshInterval: 60e9}}
		}, "jwt.jwks[0].url", "https"},
		{"jwks plain http to a lookalike of localhost", func(c *Config) {
			c.JWT.JWKS = []JWKSConfig{{URL: "http://localhost.evil.example/jwks", RefreshInterval: 60e9, MinRefreshInterval: 60e9}}
		}, "jwt.jwks[0].url", "https"},
		{"jwks without host", func(c *Config) {
			c.JWT.JWKS = []JWKSConfig{{URL: "https:///jwks", RefreshInterval: 60e9, MinRefreshInterval: 60e9}}
		}, "jwt.jwks[0].url", "http(s) URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{IdentitySecret: strings.Repeat("x", 32)}
			c.SetDefaults()
			tc.mut(&c)
			assertFieldError(t, c.Validate(), tc.path, tc.msg)
		})
	}
}

// TestJWKSURLAccepted: https anywhere, plain http only on loopback.
func TestJWKSURLAccepted(t *testing.T) {
	for _, u := range []string{
		"https://auth.example.com/.well-known/jwks.json",
		"http://127.0.0.1:8080/jwks",
		"http://127.9.9.9/jwks",
		"http://[::1]:9000/jwks",
		"http://localhost:9000/jwks",
		"HTTP://LOCALHOST/jwks",
	} {
		c := Config{JWT: JWTConfig{JWKS: []JWKSConfig{{URL: u}}}}
		c.SetDefaults()
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestRouteValidate(t *testing.T) {
	tests := []struct {
		name string
		rc   RouteConfig
		path string
		msg  string
	}{
		{"bad mode", RouteConfig{Auth: AuthConfig{Mode: "maybe"}}, "auth.mode", `unknown mode "maybe" (want required, optional, none)`},
		{"bad method", RouteConfig{Auth: AuthConfig{Methods: []string{"basic"}}}, "auth.methods[0]", "want api_key, jwt"},
		{"scopes with none", RouteConfig{Auth: AuthConfig{Mode: ModeNone, Scopes: []string{"a"}}}, "auth", "need mode required or optional"},
		{"bad pattern", RouteConfig{Paths: []string{"nope"}}, "paths[0]", "must start with /"},
		{"bad rewrite", RouteConfig{Rewrite: &RewriteConfig{Match: "("}}, "rewrite.match", "regular expression"},
		{"identity header transform", RouteConfig{Request: RequestTransform{HeaderOps: HeaderOps{Set: map[string]string{"x-outpost-user": "root"}}}}, "request.set", "signed identity"},
		{"header injection", RouteConfig{Response: HeaderOps{Set: map[string]string{"X-A": "a\r\nX-B: b"}}}, "response.set.X-A", "control character"},
		// Any control character but tab makes the field invalid: upstream,
		// Go's client refuses the request (every call a 502); downstream,
		// clients refuse the response.
		{"control character in a request value", RouteConfig{Request: RequestTransform{HeaderOps: HeaderOps{Set: map[string]string{"X-A": "a\x01b"}}}}, "request.set.X-A", "control character"},
		{"escape in a request value", RouteConfig{Request: RequestTransform{HeaderOps: HeaderOps{Add: map[string]string{"X-A": "\x1b[31m"}}}}, "request.add.X-A", "control character"},
		{"DEL in a response value", RouteConfig{Response: HeaderOps{Add: map[string]string{"X-B": "a\x7fb"}}}, "response.add.X-B", "control character"},
		{"cors wildcard with credentials", RouteConfig{CORS: &CORSConfig{AllowOrigins: []string{"*"}, AllowCredentials: true}}, "cors.allow_credentials", "cannot be combined"},
		{"cors bad expose header", RouteConfig{CORS: &CORSConfig{AllowOrigins: []string{"*"}, ExposeHeaders: []string{"X-A\x01"}}}, "cors.expose_headers[0]", "invalid header name"},
		{"cors bad method", RouteConfig{CORS: &CORSConfig{AllowOrigins: []string{"*"}, AllowMethods: []string{"GET\r\nX: y"}}}, "cors.allow_methods[0]", "invalid method"},
		{"cors bad origin", RouteConfig{CORS: &CORSConfig{AllowOrigins: []string{"app.test"}}}, "cors.allow_origins[0]", "origin such as"},
		{"negative concurrency", RouteConfig{Concurrency: -1}, "concurrency", "must be >= 0"},
		{"route limit zero requests", RouteConfig{RateLimit: &RouteRateLimit{RateLimit: RateLimit{Window: 60e9}}}, "rate_limit.requests", "must be >= 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := tc.rc
			rc.SetDefaults()
			assertFieldError(t, rc.Validate(), tc.path, tc.msg)
		})
	}
}

func assertFieldError(t *testing.T, err error, path, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s: %s", path, msg)
	}
	for _, fe := range configerr.Fields(err) {
		if fe.Path == path && strings.Contains(fe.Msg, msg) {
			return
		}
	}
	t.Fatalf("error %q lacks %s: …%s…", err, path, msg)
}

func TestNewNeedsRedisClient(t *testing.T) {
	st, _ := NewState(StateOptions{})
	c := Config{Redis: RedisConfig{Enabled: true}}
	c.SetDefaults()
	if _, err := New(c, st); err == nil || !strings.Contains(err.Error(), "Redis client") {
		t.Fatalf("err %v", err)
	}
}

// TestReloadKeepsState: a new Gateway over the same State keeps limiter
// buckets, and metrics are registered only once.
func TestReloadKeepsState(t *testing.T) {
	e := newEnv(t, envOpts{
		cfg:   Config{Tiers: map[string]RateLimit{"anonymous": {Requests: 1, Window: 3600e9}}},
		route: RouteConfig{Auth: AuthConfig{Mode: ModeOptional}},
	})
	if r := e.do("GET", "/x", nil, nil); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	cfg := Config{IdentitySecret: testSecret, Tiers: map[string]RateLimit{"anonymous": {Requests: 1, Window: 3600e9}}}
	cfg.SetDefaults()
	g2, err := New(cfg, e.st)
	if err != nil {
		t.Fatal(err)
	}
	h, err := g2.Handler("api", RouteConfig{Auth: AuthConfig{Mode: ModeOptional}}, proxyTo(e.origin.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	// The new generation serves from its own listener, as after a reload.
	e.front = httptest.NewServer(e.info.wrap(h))
	defer e.front.Close()
	if r := e.do("GET", "/x", nil, nil); r.StatusCode != 429 {
		t.Fatalf("after reload: %d, want 429 (bucket kept)", r.StatusCode)
	}
	if _, err := NewState(StateOptions{Registerer: e.reg}); err == nil {
		t.Fatal("second registration on the same registry should fail loudly")
	}
}
