package gateway

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// A path that no pattern of the route matches is "no route" (404) whatever
// the method: a 405 would claim the resource exists.
func TestAuditUnmatchedPathIs404EvenWithWrongMethod(t *testing.T) {
	e := newEnv(t, envOpts{route: RouteConfig{
		Methods: []string{"GET"},
		Paths:   []string{"/api/users/{id}"},
		Auth:    AuthConfig{Mode: ModeNone},
	}})
	r := e.do("DELETE", "/api/other", nil, nil)
	if r.StatusCode != 404 || errCode(t, r) != "no_route" {
		t.Fatalf("DELETE on an unmatched path: %d %s, want 404 no_route", r.StatusCode, bodyOf(r))
	}
	r = e.do("DELETE", "/api/users/1", nil, nil)
	if r.StatusCode != 405 || r.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("DELETE on a matched path: %d Allow %q, want 405", r.StatusCode, r.Header.Get("Allow"))
	}
}

// Import must not index a second record under an existing key's hash:
// that would replace a revoked record in the lookup table and bring the
// revoked key back to life.
func TestAuditImportCannotUnrevokeByHash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	ks, err := OpenKeyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	e := newEnv(t, envOpts{keys: ks, route: RouteConfig{Auth: AuthConfig{Methods: []string{MethodAPIKey}}}})
	key, rec, err := ks.Create(KeySpec{Owner: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Revoke(rec.ID); err != nil {
		t.Fatal(err)
	}
	twin := rec
	twin.ID, twin.RevokedAt = "twin", nil
	if _, err := ks.Import(twin); err == nil {
		t.Error("import of another id with an existing key's hash succeeded")
	}
	if r := e.do("GET", "/x", map[string]string{"X-API-Key": key}, nil); r.StatusCode != 401 {
		t.Fatalf("revoked key after import of a twin record: %d, want 401", r.StatusCode)
	}
	// Reopening must not resurrect it either.
	ks.Close()
	ks2, err := OpenKeyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ks2.Close()
	if got := ks2.lookup(tokenSum(key)); got == nil || got.RevokedAt == nil {
		t.Fatalf("after reopen the key is %+v, want revoked", got)
	}
}

// Identity header names spelled with underscores are the same variable
// to CGI/WSGI/Rack origins (HTTP_X_OUTPOST_USER); they must be stripped
// like the canonical names, with or without an identity secret.
func TestAuditUnderscoreIdentityHeadersStripped(t *testing.T) {
	for _, secret := range []string{testSecret, ""} {
		e := newEnv(t, envOpts{route: RouteConfig{Auth: AuthConfig{Mode: ModeNone}}})
		if secret == "" {
			e.gw.secret = nil
		}
		r := e.do("GET", "/x", map[string]string{
			"X_Outpost_User":      "admin",
			"X-Outpost_Roles":     "admin",
			"x_outpost_signature": "v1=forged",
			"X_Other":             "kept",
		}, nil)
		if r.StatusCode != 200 {
			t.Fatalf("status %d", r.StatusCode)
		}
		got := e.origin.last(t).Header
		for k := range got {
			n := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
			if strings.HasPrefix(n, "x-outpost-") && !strings.Contains(k, "-Outpost-") {
				t.Errorf("secret=%v: origin saw spoofed %s: %q", secret != "", k, got[k])
			}
		}
		if got.Get("X_other") != "kept" {
			t.Errorf("unrelated underscore header dropped: %v", got)
		}
	}
}

// A scope with a control character (from a trusted issuer, but still
// hostile input for a header) must not turn into a 502: such scopes are
// dropped, like malformed roles.
func TestAuditJWTScopeControlCharNo5xx(t *testing.T) {
	k := keys(t)
	e := newEnv(t, envOpts{
		cfg:   Config{JWT: k.jwtConfig()},
		route: RouteConfig{Auth: AuthConfig{Methods: []string{MethodJWT}}},
	})
	c := stdClaims(e.clock.Now())
	c["scope"] = "posts:read bad\x01scope"
	r := e.do("GET", "/x", bearer(sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, c)), nil)
	if r.StatusCode != 200 {
		t.Fatalf("status %d %s, want 200", r.StatusCode, bodyOf(r))
	}
	id := e.origin.last(t).Identity
	if id == nil || strings.Join(id.Scopes, " ") != "posts:read" {
		t.Fatalf("origin identity %+v, want scopes [posts:read]", id)
	}
}

// A limit finer than 1ns per request must not panic the limiter (the
// interval rounds to zero and GCRA divides by it).
func TestAuditHugeRateNoPanic(t *testing.T) {
	p := newPolicy("x", "x:", RateLimit{Requests: 2_000_000_000, Window: 1e9, Burst: 5})
	l := newLocalLimiter(newClock().Now)
	if d := l.allow("k", p); !d.Allowed {
		t.Fatalf("first request refused: %+v", d)
	}
}

// Access-log fields carry user and key ids, never the credential itself,
// for accepted and refused credentials alike.
func TestAuditAccessLogNeverHoldsCredentials(t *testing.T) {
	k := keys(t)
	const cfgKey = "opk_config-key-0123456789abcdef"
	e := newEnv(t, envOpts{cfg: Config{
		JWT:     k.jwtConfig(),
		APIKeys: []APIKeyConfig{{ID: "cfg1", Hash: HashKey(cfgKey), Owner: "svc"}},
		Tiers:   map[string]RateLimit{"free": {Requests: 100}, "anonymous": {Requests: 100}},
	}})
	tok := sign(t, jwt.SigningMethodHS256, k.hmacKID, k.hmac, stdClaims(e.clock.Now()))
	cases := []struct {
		hdr    map[string]string
		secret string
		status int
	}{
		{map[string]string{"X-API-Key": cfgKey}, cfgKey, 200},
		{bearer(cfgKey + "x"), cfgKey + "x", 401},
		{bearer(tok), tok, 200},
		{bearer(tok[:len(tok)-2]), tok[:len(tok)-2], 401},
	}
	for _, c := range cases {
		r := e.do("GET", "/x", c.hdr, nil)
		if r.StatusCode != c.status {
			t.Fatalf("status %d, want %d", r.StatusCode, c.status)
		}
		f := e.info.fields()
		if f["rate_limit"] == "" && c.status == 200 {
			t.Errorf("no rate-limit decision logged: %v", f)
		}
		for name, v := range f {
			if strings.Contains(v, c.secret[len(c.secret)-16:]) || strings.Contains(c.secret, v) && len(v) >= 16 {
				t.Errorf("access-log field %s=%q holds the credential", name, v)
			}
		}
	}
}
