package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outpost-edge/outpost/internal/reqinfo"
	"github.com/outpost-edge/outpost/internal/units"
)

// TestJWTMatrix sends real requests with each token variant through the
// gateway to the origin.
func TestJWTMatrix(t *testing.T) {
	k := keys(t)
	e := newEnv(t, envOpts{
		cfg:   Config{JWT: k.jwtConfig(), Tiers: map[string]RateLimit{"free": {Requests: 1000}, "pro": {Requests: 5000}}},
		route: RouteConfig{Auth: AuthConfig{Methods: []string{MethodJWT}}},
	})
	now := e.clock.Now()
	with := func(mut func(c jwt.MapClaims)) jwt.MapClaims {
		c := stdClaims(now)
		mut(c)
		return c
	}
	std := stdClaims(now)
	valid := sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, std)
	parts := strings.Split(valid, ".")
	// Tamper: flip one claim, keep the old signature.
	tamperedClaims, _ := json.Marshal(with(func(c jwt.MapClaims) { c["sub"] = "mallory" }))
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(tamperedClaims) + "." + parts[2]
	badSig := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	// alg none, unsigned.
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, std).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	// HS/RS confusion: an HS256 token "signed" with the RSA public key
	// PEM as the HMAC secret, naming the RSA key's kid.
	confused := sign(t, jwt.SigningMethodHS256, k.rsaKID, []byte(k.rsaPEM), std)
	// Same with no kid at all.
	confusedNoKID := sign(t, jwt.SigningMethodHS256, "", []byte(k.rsaPEM), std)
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	tests := []struct {
		name   string
		token  string
		status int
		reason string
	}{
		{"HS256 valid", valid, 200, ""},
		{"RS256 valid", sign(t, jwt.SigningMethodRS256, k.rsaKID, k.rsa, std), 200, ""},
		{"ES256 valid", sign(t, jwt.SigningMethodES256, k.ecKID, k.ec, std), 200, ""},
		{"EdDSA valid", sign(t, jwt.SigningMethodEdDSA, k.edKID, k.ed, std), 200, ""},
		{"expired", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), 401, "expired"},
		{"expired within leeway", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() })), 200, ""},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), 401, "not_yet_valid"},
		{"issued in the future", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() })), 401, "not_yet_valid"},
		{"no exp", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { delete(c, "exp") })), 401, "missing_claim"},
		{"no sub", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { delete(c, "sub") })), 401, "missing_claim"},
		{"sub with newline", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { c["sub"] = "a\nX-Evil: 1" })), 401, "bad_claim"},
		{"wrong aud", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { c["aud"] = "other" })), 401, "bad_audience"},
		{"aud list with ours", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { c["aud"] = []string{"x", "api.demo.test"} })), 200, ""},
		{"wrong iss", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })), 401, "bad_issuer"},
		{"alg none", noneTok, 401, "alg_not_allowed"},
		{"HS/RS confusion", confused, 401, "key_mismatch"},
		{"HS/RS confusion without kid", confusedNoKID, 401, "unknown_kid"},
		{"tampered claims", tampered, 401, "bad_signature"},
		{"bad signature", badSig, 401, "bad_signature"},
		{"wrong EC key", sign(t, jwt.SigningMethodES256, k.ecKID, otherEC, std), 401, "bad_signature"},
		{"unknown kid", sign(t, jwt.SigningMethodHS256, "nope", k.hmac, std), 401, "unknown_kid"},
		{"oversized", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 9000) })), 401, "too_large"},
		{"garbage", "a.b.c", 401, "malformed"},
		// Some issuers (Spring Authorization Server) send scope as an
		// array, as roles may come as a string: both forms are read.
		{"scope as array", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { c["scope"] = []string{"posts:read", "posts:write"} })), 200, ""},
		{"roles as string", sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, with(func(c jwt.MapClaims) { c["roles"] = "editor viewer" })), 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do("GET", "/v1/posts", bearer(tc.token), nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tc.status, bodyOf(resp))
			}
			if tc.status == 401 {
				if got := e.info.fields()["auth_error"]; got != tc.reason {
					t.Errorf("auth_error = %q, want %q", got, tc.reason)
				}
				if wa := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, `Bearer realm="outpost"`) || !strings.Contains(wa, `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate = %q", wa)
				}
				if errCode(t, resp) != "unauthorized" {
					t.Errorf("error code wrong")
				}
				return
			}
			o := e.origin.last(t)
			if o.IDErr != nil || o.Identity.User != "alice" || o.Identity.Tier != "pro" || !o.Identity.HasScope("posts:write") || !o.Identity.HasRole("editor") {
				t.Fatalf("origin identity = %+v, err %v", o.Identity, o.IDErr)
			}
			if o.Header.Get("Authorization") != "" {
				t.Error("bearer token forwarded to the origin")
			}
			if f := e.info.fields(); f["user_id"] != "alice" {
				t.Errorf("log fields = %v", f)
			}
		})
	}
	if n := testutil.ToFloat64(e.st.metrics.authFailures.WithLabelValues("api", "expired")); n != 1 {
		t.Errorf("auth failure metric expired = %v, want 1", n)
	}
}

// jwksServer serves a mutable key set and counts fetches.
type jwksServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	set     jose.JSONWebKeySet
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T) *jwksServer {
	j := &jwksServer{}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		defer j.mu.Unlock()
		_ = json.NewEncoder(w).Encode(j.set)
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwksServer) publish(keys ...jose.JSONWebKey) {
	j.mu.Lock()
	j.set = jose.JSONWebKeySet{Keys: keys}
	j.mu.Unlock()
}

// TestJWKSRotation: a token with a new kid is accepted once the set is
// refetched; unknown kids refetch at most once per min_refresh_interval.
func TestJWKSRotation(t *testing.T) {
	k := keys(t)
	js := newJWKSServer(t)
	js.publish(jose.JSONWebKey{Key: k.rsa.Public(), KeyID: "old", Algorithm: "RS256", Use: "sig"},
		// Symmetric keys from a URL are ignored.
		jose.JSONWebKey{Key: k.hmac, KeyID: "sym", Algorithm: "HS256"})
	e := newEnv(t, envOpts{
		cfg: Config{JWT: JWTConfig{
			Issuers: []string{"https://auth.demo.test"},
			JWKS:    []JWKSConfig{{URL: js.srv.URL}},
		}},
		route: RouteConfig{Auth: AuthConfig{Methods: []string{MethodJWT}}},
	})
	std := stdClaims(e.clock.Now())
	if r := e.do("GET", "/x", bearer(sign(t, jwt.SigningMethodRS256, "old", k.rsa, std)), nil); r.StatusCode != 200 {
		t.Fatalf("old kid: %d %s", r.StatusCode, bodyOf(r))
	}
	if r := e.do("GET", "/x", bearer(sign(t, jwt.SigningMethodHS256, "sym", k.hmac, std)), nil); r.StatusCode != 401 {
		t.Fatalf("symmetric JWKS key accepted: %d", r.StatusCode)
	}
	before := js.fetches.Load()

	// Rotate: the IdP now signs with an EC key under a new kid.
	js.publish(jose.JSONWebKey{Key: k.rsa.Public(), KeyID: "old", Algorithm: "RS256"},
		jose.JSONWebKey{Key: k.ec.Public(), KeyID: "new", Algorithm: "ES256"})
	newTok := sign(t, jwt.SigningMethodES256, "new", k.ec, std)
	// Within min_refresh_interval of the last fetch: no refetch, refused.
	if r := e.do("GET", "/x", bearer(newTok), nil); r.StatusCode != 401 {
		t.Fatalf("new kid before interval: %d", r.StatusCode)
	}
	if got := js.fetches.Load(); got != before {
		t.Fatalf("refetched within the interval: %d fetches, want %d", got, before)
	}
	e.clock.Advance(31 * time.Second)
	std = stdClaims(e.clock.Now())
	newTok = sign(t, jwt.SigningMethodES256, "new", k.ec, std)
	if r := e.do("GET", "/x", bearer(newTok), nil); r.StatusCode != 200 {
		t.Fatalf("new kid after refresh: %d %s", r.StatusCode, bodyOf(r))
	}
	// A flood of unknown kids causes at most one more fetch per interval.
	after := js.fetches.Load()
	e.clock.Advance(31 * time.Second)
	std = stdClaims(e.clock.Now())
	for i := range 20 {
		tok := sign(t, jwt.SigningMethodES256, "bogus"+string(rune('a'+i)), k.ec, std)
		if r := e.do("GET", "/x", bearer(tok), nil); r.StatusCode != 401 {
			t.Fatalf("bogus kid accepted")
		}
	}
	if got := js.fetches.Load(); got != after+1 {
		t.Fatalf("unknown-kid flood caused %d fetches, want 1", got-after)
	}
	// The alg bound to a JWKS key is enforced: RS256 key, ES256 token.
	if r := e.do("GET", "/x", bearer(sign(t, jwt.SigningMethodES256, "old", k.ec, std)), nil); r.StatusCode != 401 || e.info.fields()["auth_error"] != "key_mismatch" {
		t.Fatalf("alg mismatch on JWKS key: %d %v", r.StatusCode, e.info.fields())
	}
}

func TestParseJWKSSkipsJunk(t *testing.T) {
	k := keys(t)
	good, _ := json.Marshal(jose.JSONWebKey{Key: k.ed.Public(), KeyID: "ed"})
	doc := `{"keys":[{"kty":"RSA","kid":"broken","n":"!!"},{"kty":"weird","kid":"w"},` + string(good) + `]}`
	got, err := parseJWKS([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["ed"].alg != "EdDSA" {
		t.Fatalf("parsed %v", got)
	}
	if _, err := parseJWKS([]byte("not json")); err == nil {
		t.Fatal("want error for non-JSON")
	}
}

// TestTokenCacheHonoursExpiry: a verified token is remembered, but never
// past its exp (plus leeway), and a tampered copy never hits the cache.
func TestTokenCacheHonoursExpiry(t *testing.T) {
	k := keys(t)
	clk := newClock()
	cfg := Config{JWT: k.jwtConfig()}
	cfg.SetDefaults()
	m, _ := newMetrics(nil)
	v, err := newJWTVerifier(cfg.JWT, newJWKSCache(http.DefaultClient, clk.Now, nil, m), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	c := stdClaims(clk.Now())
	c["exp"] = clk.Now().Add(10 * time.Second).Unix()
	tok := sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, c)
	for range 2 {
		if _, err := v.verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if len(v.cache.m) != 1 {
		t.Fatalf("cache has %d entries", len(v.cache.m))
	}
	parts := strings.Split(tok, ".")
	if _, err := v.verify(context.Background(), parts[0]+"."+parts[1]+"x."+parts[2]); err == nil {
		t.Fatal("tampered token accepted")
	}
	clk.Advance(10*time.Second + cfg.JWT.Leeway.D())
	if _, err := v.verify(context.Background(), tok); jwtReason(err) != "expired" {
		t.Fatalf("expired token: %v", err)
	}
}

// TestJWKSDown: an unreachable or failing key-set URL means 401 for
// tokens that need it, never a 5xx, and the failure is counted.
func TestJWKSDown(t *testing.T) {
	k := keys(t)
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer bad.Close()
	e := newEnv(t, envOpts{
		cfg:   Config{JWT: JWTConfig{JWKS: []JWKSConfig{{URL: bad.URL}}}},
		route: RouteConfig{Auth: AuthConfig{Methods: []string{MethodJWT}}},
	})
	tok := sign(t, jwt.SigningMethodES256, "any", k.ec, stdClaims(e.clock.Now()))
	if r := e.do("GET", "/x", bearer(tok), nil); r.StatusCode != 401 || e.info.fields()["auth_error"] != "unknown_kid" {
		t.Fatalf("status %d, %v", r.StatusCode, e.info.fields())
	}
	for deadline := time.Now().Add(5 * time.Second); testutil.ToFloat64(e.st.metrics.jwksFetch.WithLabelValues("error")) < 1; {
		if time.Now().After(deadline) {
			t.Fatal("failed fetch not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestJWKSWithoutUsableKeysKeepsOldKeys: a key-set URL that answers 200
// with a document holding no usable signing key (a JSON error body, an
// empty set, only symmetric keys) is a failed fetch: the keys fetched
// before keep working instead of every token being refused.
func TestJWKSWithoutUsableKeysKeepsOldKeys(t *testing.T) {
	k := keys(t)
	good, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.rsa.Public(), KeyID: "rsa", Algorithm: "RS256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	sym, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.hmac, KeyID: "rsa", Algorithm: "HS256"}}})
	for _, bad := range []string{`{}`, `{"error":"rate limited"}`, `{"keys":[]}`, `null`, string(sym)} {
		t.Run(bad, func(t *testing.T) {
			var body atomic.Value
			body.Store(good)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Write(body.Load().([]byte))
			}))
			defer srv.Close()
			e := newEnv(t, envOpts{
				cfg:   Config{JWT: JWTConfig{JWKS: []JWKSConfig{{URL: srv.URL, RefreshInterval: units.Duration(time.Minute)}}}},
				route: RouteConfig{Auth: AuthConfig{Methods: []string{MethodJWT}}},
			})
			fetches := func() float64 {
				return testutil.ToFloat64(e.st.metrics.jwksFetch.WithLabelValues("ok")) +
					testutil.ToFloat64(e.st.metrics.jwksFetch.WithLabelValues("error"))
			}
			jti := 0
			call := func() *http.Response {
				jti++
				c := stdClaims(e.clock.Now())
				c["jti"] = strconv.Itoa(jti) // a new token each time: no verified-token cache hit
				return e.do("GET", "/x", bearer(sign(t, jwt.SigningMethodRS256, "rsa", k.rsa, c)), nil)
			}
			if r := call(); r.StatusCode != 200 {
				t.Fatalf("before: %d %v", r.StatusCode, e.info.fields())
			}
			body.Store([]byte(bad))
			e.clock.Advance(2 * time.Minute)
			before := fetches()
			call() // stale: starts the background refetch
			for deadline := time.Now().Add(5 * time.Second); fetches() == before; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no refetch")
				}
			}
			if r := call(); r.StatusCode != 200 {
				t.Fatalf("after a key set without usable keys: %d %v", r.StatusCode, e.info.fields())
			}
			if testutil.ToFloat64(e.st.metrics.jwksFetch.WithLabelValues("error")) != 1 {
				t.Error("the unusable key set was not counted as a failed fetch")
			}
		})
	}
}

// TestJWKSRedirectToPlainHTTPRefused: a key set configured over https
// that redirects to plain http on another host is a failed fetch; keys
// read in clear could have been replaced on the way (the same rule as
// jwks.url itself).
func TestJWKSRedirectToPlainHTTPRefused(t *testing.T) {
	k := keys(t)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.ec.Public(), KeyID: "ec", Algorithm: "ES256"}}})
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(set) }))
	defer plain.Close()
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/direct" {
			w.Write(set)
			return
		}
		http.Redirect(w, r, "http://idp.example/jwks", http.StatusFound)
	}))
	defer tls.Close()
	// idp.example resolves to the test servers: :443 to the TLS one, :80
	// to the plain one.
	tr := tls.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		target := plain.Listener.Addr().String()
		if strings.HasSuffix(addr, ":443") {
			target = tls.Listener.Addr().String()
		}
		return (&net.Dialer{}).DialContext(ctx, network, target)
	}
	tr.TLSClientConfig.InsecureSkipVerify = true
	for path, want := range map[string]int{"/direct": 200, "/redirect": 401} {
		t.Run(path, func(t *testing.T) {
			clk := newClock()
			h := routeHandler(t, StateOptions{HTTPClient: &http.Client{Transport: tr, Timeout: 5 * time.Second}, Now: clk.Now},
				Config{JWT: JWTConfig{JWKS: []JWKSConfig{{URL: "https://idp.example" + path}}}},
				RouteConfig{Auth: AuthConfig{Methods: []string{MethodJWT}}}, proxyTo(newOrigin(t).srv.URL))
			front := httptest.NewServer((&infoRecorder{}).wrap(h))
			defer front.Close()
			req, _ := http.NewRequest("GET", front.URL+"/x", nil)
			req.Header.Set("Authorization", "Bearer "+sign(t, jwt.SigningMethodES256, "ec", k.ec, stdClaims(clk.Now())))
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("status %d, want %d", resp.StatusCode, want)
			}
		})
	}
}

// TestSameSubjectFromTwoIssuers: with two trusted issuers, "alice" from
// one and "alice" from the other are two callers. The origin tells them
// apart by the signed issuer, and each has its own rate-limit budget.
func TestSameSubjectFromTwoIssuers(t *testing.T) {
	k := keys(t)
	jc := k.jwtConfig()
	jc.Issuers = []string{"https://auth.demo.test", "https://partner.test"}
	e := newEnv(t, envOpts{
		cfg:   Config{JWT: jc, Tiers: map[string]RateLimit{"pro": {Requests: 1, Window: units.Duration(time.Hour)}}},
		route: RouteConfig{Auth: AuthConfig{Methods: []string{MethodJWT}}},
	})
	now := e.clock.Now()
	token := func(iss string) string {
		c := stdClaims(now)
		c["iss"] = iss
		return sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, c)
	}
	for _, iss := range jc.Issuers {
		resp := e.do("GET", "/v1/posts", bearer(token(iss)), nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d (%s): the other issuer's alice used this one's budget", iss, resp.StatusCode, bodyOf(resp))
		}
		o := e.origin.last(t)
		if o.IDErr != nil || o.Identity.User != "alice" || o.Identity.Issuer != iss {
			t.Fatalf("%s: origin identity %+v, err %v", iss, o.Identity, o.IDErr)
		}
		if got := e.info.fields()[reqinfo.FieldIssuer]; got != iss {
			t.Errorf("%s: log field issuer %q", iss, got)
		}
	}
	// Each budget is one request: the second from the first issuer waits.
	if resp := e.do("GET", "/v1/posts", bearer(token(jc.Issuers[0])), nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second request of the first issuer's alice: status %d, want 429", resp.StatusCode)
	}
}
