package services

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/outpost-edge/outpost/origin/identity"
)

// jwksKey fetches the JWKS over HTTP and returns the Ed25519 key in it.
func jwksKey(t *testing.T, e *env) (ed25519.PublicKey, string) {
	t.Helper()
	r := e.must(e.do(0, "GET", "/api/users/.well-known/jwks.json", nil, nil), 200)
	if !strings.HasPrefix(r.header.Get("Cache-Control"), "public, max-age=300") {
		t.Fatalf("jwks cache-control %q", r.header.Get("Cache-Control"))
	}
	var set struct {
		Keys []struct{ Kty, Crv, X, Kid, Alg, Use string } `json:"keys"`
	}
	r.json(t, &set)
	if len(set.Keys) != 1 || set.Keys[0].Kty != "OKP" || set.Keys[0].Crv != "Ed25519" || set.Keys[0].Alg != "EdDSA" {
		t.Fatalf("jwks %+v", set)
	}
	raw, err := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Fatalf("jwks x: %v", err)
	}
	return ed25519.PublicKey(raw), set.Keys[0].Kid
}

func TestSignupLoginJWT(t *testing.T) {
	e := newEnv(t, 1, nil)
	pub, kid := jwksKey(t, e)
	if !pub.Equal(e.key.Public()) || kid != "test-key" {
		t.Fatalf("jwks key/kid mismatch: %q", kid)
	}

	r := e.must(e.do(0, "POST", "/api/users/signup", nil, map[string]string{"username": "Dave", "password": "dave-password", "display_name": "Dave"}), 201)
	var tok TokenResponse
	r.json(t, &tok)
	if tok.User.Username != "dave" || tok.TokenType != "Bearer" || tok.ExpiresIn != 3600 || tok.RefreshToken == "" {
		t.Fatalf("signup answer %+v", tok)
	}
	if cc := r.header.Get("Cache-Control"); cc != "private, no-store" {
		t.Fatalf("token response cache-control %q", cc)
	}
	if strings.Contains(string(r.body), "password") {
		t.Fatalf("signup answer mentions the password: %s", r.body)
	}

	r = e.must(e.do(0, "POST", "/api/users/login", nil, map[string]string{"username": "dave", "password": "dave-password"}), 200)
	r.json(t, &tok)
	parsed, err := jwt.Parse(tok.AccessToken, func(tk *jwt.Token) (any, error) {
		if tk.Header["kid"] != kid {
			t.Errorf("kid %v, want %s", tk.Header["kid"], kid)
		}
		return pub, nil
	}, jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer("test-iss"), jwt.WithAudience("test-aud"),
		jwt.WithTimeFunc(e.clk.Now), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil {
		t.Fatalf("token does not verify with the JWKS key: %v", err)
	}
	c := parsed.Claims.(jwt.MapClaims)
	if c["sub"] != tok.User.ID || c["tier"] != "free" || c["scope"] != DefaultScopes || c["name"] != "dave" {
		t.Fatalf("claims %v", c)
	}
	if aud, ok := c["aud"].(string); !ok || aud != "test-aud" {
		t.Fatalf("aud %v: want a single string", c["aud"])
	}
	if roles, ok := c["roles"].([]any); !ok || len(roles) != 1 || roles[0] != "user" {
		t.Fatalf("roles %v", c["roles"])
	}
	exp, _ := c.GetExpirationTime()
	if !exp.Equal(e.clk.Now().Add(time.Hour)) {
		t.Fatalf("exp %v", exp)
	}

	// The seeded pro admin.
	r = e.must(e.do(0, "POST", "/api/users/login", nil, map[string]string{"username": "alice", "password": "alice-password"}), 200)
	r.json(t, &tok)
	parsed, _, _ = jwt.NewParser().ParseUnverified(tok.AccessToken, jwt.MapClaims{})
	if c := parsed.Claims.(jwt.MapClaims); c["tier"] != "pro" || len(c["roles"].([]any)) != 2 {
		t.Fatalf("alice claims %v", c)
	}

	// Refresh, then logout kills the refresh token.
	r = e.must(e.do(0, "POST", "/api/users/refresh", nil, map[string]string{"refresh_token": tok.RefreshToken}), 200)
	var ref TokenResponse
	r.json(t, &ref)
	if ref.AccessToken == "" || ref.User.Username != "alice" {
		t.Fatalf("refresh %+v", ref)
	}
	e.must(e.do(0, "POST", "/api/users/logout", nil, map[string]string{"refresh_token": tok.RefreshToken}), 204)
	e.must(e.do(0, "POST", "/api/users/refresh", nil, map[string]string{"refresh_token": tok.RefreshToken}), 401)

	tests := []struct {
		name string
		path string
		body any
		want int
		code string
	}{
		{"wrong password", "/api/users/login", map[string]string{"username": "dave", "password": "nope-nope"}, 401, "invalid_credentials"},
		{"unknown user", "/api/users/login", map[string]string{"username": "zed", "password": "whatever1"}, 401, "invalid_credentials"},
		{"duplicate", "/api/users/signup", map[string]string{"username": "DAVE", "password": "dave-password"}, 409, "conflict"},
		{"bad username", "/api/users/signup", map[string]string{"username": "a b", "password": "12345678"}, 400, "bad_request"},
		{"short password", "/api/users/signup", map[string]string{"username": "erin", "password": "short"}, 400, "bad_request"},
		{"unknown field", "/api/users/signup", map[string]any{"username": "erin", "password": "12345678", "admin": true}, 400, "bad_request"},
		{"not json", "/api/users/signup", []byte("username=erin"), 400, "bad_request"},
		{"bad refresh", "/api/users/refresh", map[string]string{"refresh_token": "../../x"}, 401, "invalid_refresh_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(0, "POST", tc.path, nil, tc.body)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			var eb struct{ Error struct{ Code string } }
			r.json(t, &eb)
			if eb.Error.Code != tc.code {
				t.Fatalf("code %q, want %q", eb.Error.Code, tc.code)
			}
		})
	}
}

func TestIdentityEnforced(t *testing.T) {
	e := newEnv(t, 1, nil)
	bob := e.user("bob")
	tests := []struct {
		name string
		sign func(r *http.Request)
		want int
	}{
		{"valid", func(r *http.Request) { identity.Sign(r, bob, testSecret, e.clk.Now()) }, 200},
		{"missing", func(*http.Request) {}, 401},
		{"forged", func(r *http.Request) { identity.Sign(r, bob, []byte("not-the-gateway-secret"), e.clk.Now()) }, 401},
		{"expired", func(r *http.Request) { identity.Sign(r, bob, testSecret, e.clk.Now().Add(-5*time.Minute)) }, 401},
		{"spoofed header", func(r *http.Request) { r.Header.Set(identity.HeaderUser, bob.User) }, 401},
		{"key without user", func(r *http.Request) {
			identity.Sign(r, &identity.Identity{KeyID: "k1", Scopes: []string{"tweets:read"}}, testSecret, e.clk.Now())
		}, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/api/timeline", "/api/notifications", "/api/users/me"} {
				req, _ := http.NewRequest("GET", e.srvs[0].URL+path, nil)
				tc.sign(req)
				res, err := e.srvs[0].Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != tc.want {
					t.Fatalf("%s: status %d, want %d", path, res.StatusCode, tc.want)
				}
			}
		})
	}
}

func TestProfileFollowAndPurge(t *testing.T) {
	e := newEnv(t, 1, nil)
	r := e.must(e.do(0, "GET", "/api/users/alice", nil, nil), 200)
	var alice UserView
	r.json(t, &alice)
	// Seed: bob and carol follow alice; alice follows bob; alice has two tweets.
	if alice.Followers != 2 || alice.Following != 1 || alice.Tweets != 2 || alice.DisplayName != "Alice Liddell" {
		t.Fatalf("alice %+v", alice)
	}
	if cc := r.header.Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=300, s-maxage=900") {
		t.Fatalf("profile cache-control %q", cc)
	}
	if sk := r.header.Get("Surrogate-Key"); sk != "users user-"+alice.ID {
		t.Fatalf("surrogate key %q", sk)
	}
	if inst := r.header.Get("X-Origin-Instance"); inst != "a" {
		t.Fatalf("instance header %q", inst)
	}
	e.must(e.do(0, "GET", "/api/users/nobody", nil, nil), 404)
	e.must(e.do(0, "GET", "/api/users/..%2f..%2fetc", nil, nil), 404)

	// dave signs up and follows alice: counts change and both are purged.
	e.must(e.do(0, "POST", "/api/users/signup", nil, map[string]string{"username": "dave", "password": "dave-password"}), 201)
	dave := e.user("dave")
	e.purger.reset()
	r = e.must(e.do(0, "POST", "/api/users/alice/follow", dave, nil), 200)
	var fr struct {
		Following, Changed bool
	}
	r.json(t, &fr)
	if !fr.Following || !fr.Changed {
		t.Fatalf("follow answer %s", r.body)
	}
	if !e.purger.has("user-"+alice.ID) || !e.purger.has("user-"+dave.User) {
		t.Fatalf("follow purged %v", e.purger.tags)
	}
	r = e.must(e.do(0, "POST", "/api/users/alice/follow", dave, nil), 200)
	r.json(t, &fr)
	if fr.Changed {
		t.Fatal("second follow reported a change")
	}
	e.must(e.do(0, "POST", "/api/users/dave/follow", dave, nil), 400)
	e.must(e.do(0, "POST", "/api/users/nobody/follow", dave, nil), 404)

	r = e.must(e.do(0, "GET", "/api/users/alice/followers", nil, nil), 200)
	var fl struct{ Users []UserRef }
	r.json(t, &fl)
	if len(fl.Users) != 3 {
		t.Fatalf("alice followers %+v", fl.Users)
	}
	e.must(e.do(0, "DELETE", "/api/users/alice/follow", dave, nil), 200)
	r = e.must(e.do(0, "GET", "/api/users/dave/following", nil, nil), 200)
	r.json(t, &fl)
	if len(fl.Users) != 0 {
		t.Fatalf("dave still follows %+v", fl.Users)
	}

	// Profile update via /me, purged by tag.
	e.purger.reset()
	r = e.must(e.do(0, "PATCH", "/api/users/me", dave, map[string]string{"display_name": "Dave D.", "bio": "hi"}), 200)
	var me MeView
	r.json(t, &me)
	if me.DisplayName != "Dave D." || me.Bio != "hi" || me.Tier != "free" {
		t.Fatalf("me %+v", me)
	}
	if !e.purger.has("user-" + dave.User) {
		t.Fatalf("profile update purged %v", e.purger.tags)
	}
	e.must(e.do(0, "PATCH", "/api/users/me", dave, map[string]string{"display_name": ""}), 400)
}

func TestPublicKeyPEM(t *testing.T) {
	e := newEnv(t, 1, nil)
	block, _ := pem.Decode([]byte(e.apps[0].PublicKeyPEM()))
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatal("no PUBLIC KEY block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil || !k.(ed25519.PublicKey).Equal(e.key.Public()) {
		t.Fatalf("pem key: %v", err)
	}
	if e.apps[0].KeyID() != "test-key" || string(e.apps[0].JWKS()) == "" {
		t.Fatal("KeyID/JWKS accessors")
	}
}
