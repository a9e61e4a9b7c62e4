package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/outpost-edge/outpost/internal/units"
)

// BenchmarkJWTVerify measures verification with the key already at hand
// (static keys; a JWKS key is served from the same in-memory map).
func BenchmarkJWTVerify(b *testing.B) {
	k := keys(b)
	now := time.Now()
	cfg := Config{JWT: k.jwtConfig()}
	cfg.SetDefaults()
	m, _ := newMetrics(nil)
	v, err := newJWTVerifier(cfg.JWT, newJWKSCache(http.DefaultClient, time.Now, nil, m), time.Now)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		kid    string
		key    any
	}{
		{"HS256", jwt.SigningMethodHS256, k.hmacKID, k.hmac},
		{"RS256", jwt.SigningMethodRS256, k.rsaKID, k.rsa},
		{"ES256", jwt.SigningMethodES256, k.ecKID, k.ec},
		{"EdDSA", jwt.SigningMethodEdDSA, k.edKID, k.ed},
	} {
		tok := sign(b, tc.method, tc.kid, tc.key, stdClaims(now))
		ctx := context.Background()
		// Full verification: parse, signature, claims (cache emptied each time).
		b.Run(tc.name+"/verify", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				clear(v.cache.m)
				if _, err := v.verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		// A repeat of a token already verified: hash + cache hit.
		b.Run(tc.name+"/repeat", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAPIKeyLookup measures hashing and finding a key.
func BenchmarkAPIKeyLookup(b *testing.B) {
	ks, err := OpenKeyStore(filepath.Join(b.TempDir(), "k.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer ks.Close()
	var storeKey string
	for i := range 1000 {
		key, _, err := ks.Create(KeySpec{Owner: "u" + strconv.Itoa(i), Tier: "free"})
		if err != nil {
			b.Fatal(err)
		}
		storeKey = key
	}
	const cfgKey = "opk_config-key-0123456789abcdef"
	st, _ := NewState(StateOptions{Keys: ks})
	cfg := Config{
		APIKeys: []APIKeyConfig{{ID: "c", Hash: HashKey(cfgKey), Owner: "svc"}},
		Tiers:   map[string]RateLimit{"free": {Requests: 100}},
	}
	cfg.SetDefaults()
	g, err := New(cfg, st)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, key string }{{"config", cfgKey}, {"store", storeKey}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if id, reason := g.lookupKey(tc.key); id == nil {
					b.Fatal(reason)
				}
			}
		})
	}
}

// BenchmarkLimiter measures one decision, local and against a real
// redis-server on loopback (one EVALSHA round trip).
func BenchmarkLimiter(b *testing.B) {
	p := newPolicy("bench", "b:", RateLimit{Requests: 1 << 30, Window: units.Duration(time.Minute), Burst: 1 << 30})
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "k:" + strconv.Itoa(i)
	}
	b.Run("local", func(b *testing.B) {
		l := newLocalLimiter(time.Now)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if !l.allow(keys[i&1023], p).Allowed {
				b.Fatal("refused")
			}
			i++
		}
	})
	b.Run("local-parallel", func(b *testing.B) {
		l := newLocalLimiter(time.Now)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				l.allow(keys[i&1023], p)
				i++
			}
		})
	})
	b.Run("redis", func(b *testing.B) {
		rs := startRedis(b)
		st, _ := NewState(StateOptions{Redis: rs.client(b)})
		st.redis.configure(RedisConfig{KeyPrefix: "bench:", Timeout: units.Duration(time.Second), Cooldown: units.Duration(time.Second)})
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := st.redis.Allow(ctx, keys[i&1023], p); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkGatewayHandler is the policy cost alone, in process: API-key
// authentication, a scope check, a local rate-limit decision, identity
// signing and the outbound request build, with a no-op next.
func BenchmarkGatewayHandler(b *testing.B) {
	k := keys(b)
	for _, tc := range []struct {
		name string
		hdr  func() (string, string)
	}{
		{"api_key", func() (string, string) { return "X-Api-Key", "opk_bench-0123456789abcdef" }},
		{"jwt_HS256", func() (string, string) {
			return "Authorization", "Bearer " + sign(b, jwt.SigningMethodHS256, k.hmacKID, k.hmac, stdClaims(time.Now()))
		}},
		{"jwt_EdDSA", func() (string, string) {
			return "Authorization", "Bearer " + sign(b, jwt.SigningMethodEdDSA, k.edKID, k.ed, stdClaims(time.Now()))
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := benchGatewayHandler(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
			name, value := tc.hdr()
			r := httptest.NewRequest("GET", "/v1/posts", nil)
			r.Header.Set(name, value)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != 204 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

func benchGatewayHandler(b *testing.B, next http.Handler) http.Handler {
	k := keys(b)
	st, err := NewState(StateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{
		IdentitySecret: testSecret,
		JWT:            k.jwtConfig(),
		APIKeys:        []APIKeyConfig{{ID: "bench", Hash: HashKey("opk_bench-0123456789abcdef"), Owner: "alice", Scopes: []string{"posts:read"}}},
		Tiers:          map[string]RateLimit{"free": {Requests: 1 << 30}, "pro": {Requests: 1 << 30}},
	}
	cfg.SetDefaults()
	g, err := New(cfg, st)
	if err != nil {
		b.Fatal(err)
	}
	h, err := g.Handler("bench", RouteConfig{Methods: []string{"GET"}, Auth: AuthConfig{Scopes: []string{"posts:read"}}}, next)
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// BenchmarkProxyOverhead measures, side by side in one run, the latency
// of a proxied request over real loopback HTTP with and without the
// gateway policy (API-key authn + scope authz + local limit + identity
// signing) in front of the same httputil.ReverseProxy and origin.
// Requests alternate between the two paths so both see the same machine
// load; it reports each p50 and their difference (target: < 50 µs).
func BenchmarkProxyOverhead(b *testing.B) {
	k := keys(b)
	for _, tc := range []struct{ name, hdr, value string }{
		{"api_key", "X-Api-Key", "opk_bench-0123456789abcdef"},
		{"jwt_EdDSA", "Authorization", "Bearer " + sign(b, jwt.SigningMethodEdDSA, k.edKID, k.ed, stdClaims(time.Now()))},
	} {
		b.Run(tc.name, func(b *testing.B) { proxyOverhead(b, tc.hdr, tc.value) })
	}
}

func proxyOverhead(b *testing.B, hdr, value string) {
	o := newOrigin(b)
	proxy := proxyTo(o.srv.URL)
	direct := httptest.NewServer(proxy)
	defer direct.Close()
	gated := httptest.NewServer(benchGatewayHandler(b, proxy))
	defer gated.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func(url string, cred bool) time.Duration {
		req, _ := http.NewRequest("GET", url+"/v1/posts", nil)
		if cred {
			req.Header.Set(hdr, value)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return d
	}
	// Warm connections on both paths.
	for range 50 {
		get(direct.URL, false)
		get(gated.URL, true)
	}
	var dl, gl []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			dl = append(dl, get(direct.URL, false))
			gl = append(gl, get(gated.URL, true))
		} else {
			gl = append(gl, get(gated.URL, true))
			dl = append(dl, get(direct.URL, false))
		}
	}
	b.StopTimer()
	pd, pg := pct(dl, 50), pct(gl, 50)
	b.ReportMetric(float64(pd.Nanoseconds())/1e3, "p50-direct-µs")
	b.ReportMetric(float64(pg.Nanoseconds())/1e3, "p50-gateway-µs")
	b.ReportMetric(float64((pg-pd).Nanoseconds())/1e3, "p50-added-µs")
	b.ReportMetric(float64((pct(gl, 90)-pct(dl, 90)).Nanoseconds())/1e3, "p90-added-µs")
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}
