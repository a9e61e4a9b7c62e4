package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/outpost-edge/outpost/internal/units"
	"github.com/outpost-edge/outpost/origin/identity"
)

// adminCreate creates a key through the admin handler over real HTTP.
func adminCreate(t *testing.T, admin *httptest.Server, spec string) (string, KeyRecord) {
	t.Helper()
	resp, err := http.Post(admin.URL+"/v1/keys", "application/json", strings.NewReader(spec))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create key: %d", resp.StatusCode)
	}
	var out struct {
		Key    string    `json:"key"`
		Record KeyRecord `json:"record"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Key, out.Record
}

func adminDo(t *testing.T, admin *httptest.Server, method, path string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, admin.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestAPIKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	ks, err := OpenKeyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	const cfgKey = "opk_config-key-0123456789abcdef"
	e := newEnv(t, envOpts{
		keys: ks,
		cfg: Config{
			APIKeys: []APIKeyConfig{{ID: "cfg1", Hash: HashKey(cfgKey), Owner: "svc-report", Scopes: []string{"reports:read"}}},
			Tiers:   map[string]RateLimit{"free": {Requests: 100}, "pro": {Requests: 1000}},
		},
		route: RouteConfig{Auth: AuthConfig{Methods: []string{MethodAPIKey}}},
	})
	admin := httptest.NewServer(AdminHandler(ks, nil))
	defer admin.Close()

	key, rec := adminCreate(t, admin, `{"owner":"bob","tier":"pro","scopes":["posts:read"]}`)
	if !strings.HasPrefix(key, KeyPrefix) || rec.Hash != HashKey(key) || strings.Contains(rec.Hash, key) {
		t.Fatalf("created key %q record %+v", key, rec)
	}

	tests := []struct {
		name   string
		hdr    map[string]string
		status int
		reason string
		user   string
	}{
		{"store key via X-API-Key", map[string]string{"X-API-Key": key}, 200, "", "bob"},
		{"store key via Bearer", bearer(key), 200, "", "bob"},
		{"config key", map[string]string{"X-API-Key": cfgKey}, 200, "", "svc-report"},
		{"unknown key", map[string]string{"X-API-Key": "opk_unknown-0123456789abcdef"}, 401, "unknown_key", ""},
		{"short key", map[string]string{"X-API-Key": "abc"}, 401, "malformed", ""},
		{"no credential", nil, 401, "missing", ""},
		{"basic auth", map[string]string{"Authorization": "Basic Ym9iOnB3"}, 401, "unsupported_scheme", ""},
		{"jwt on api_key-only route", bearer("eyJ.eyJ.sig"), 401, "credential_not_accepted", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do("GET", "/v1/x", tc.hdr, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, bodyOf(resp))
			}
			f := e.info.fields()
			if tc.status != 200 {
				if f["auth_error"] != tc.reason {
					t.Errorf("reason %q, want %q", f["auth_error"], tc.reason)
				}
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				return
			}
			o := e.origin.last(t)
			if o.Identity == nil || o.Identity.User != tc.user || o.Identity.KeyID == "" {
				t.Fatalf("origin identity %+v (%v)", o.Identity, o.IDErr)
			}
			if o.Header.Get("X-Api-Key") != "" || o.Header.Get("Authorization") != "" {
				t.Error("API key forwarded to the origin")
			}
			if f["key_id"] != o.Identity.KeyID || f["user_id"] != tc.user {
				t.Errorf("log fields %v", f)
			}
			for _, v := range f {
				if strings.Contains(v, key) || strings.Contains(v, cfgKey) {
					t.Fatal("key in log fields")
				}
			}
		})
	}

	// Revocation through the admin API takes effect on the next request.
	if r := adminDo(t, admin, "DELETE", "/v1/keys/"+rec.ID); r.StatusCode != 200 {
		t.Fatalf("revoke: %d", r.StatusCode)
	}
	if r := e.do("GET", "/v1/x", map[string]string{"X-API-Key": key}, nil); r.StatusCode != 401 || e.info.fields()["auth_error"] != "revoked" {
		t.Fatalf("revoked key: %d %v", r.StatusCode, e.info.fields())
	}
	if r := adminDo(t, admin, "DELETE", "/v1/keys/nope"); r.StatusCode != 404 {
		t.Fatalf("revoke unknown: %d", r.StatusCode)
	}
	if r := adminDo(t, admin, "PUT", "/v1/keys"); r.StatusCode != 405 {
		t.Fatalf("PUT /v1/keys: %d", r.StatusCode)
	}

	// Persistence: a reopened store still knows the revocation and no
	// plaintext key is on disk.
	key2, _ := adminCreate(t, admin, `{"owner":"carol","id":"carol-1"}`)
	ks.Close()
	ks2, err := OpenKeyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ks2.Close()
	if r, ok := ks2.Get(rec.ID); !ok || r.RevokedAt == nil {
		t.Fatalf("revocation not persisted: %+v", r)
	}
	if r := ks2.lookup(sha(key2)); r == nil || r.Owner != "carol" {
		t.Fatal("created key not persisted")
	}
	if _, _, err := ks2.Create(KeySpec{Owner: "x", ID: "carol-1"}); err != ErrKeyExists {
		t.Fatalf("duplicate id: %v", err)
	}
	if _, _, err := ks2.Create(KeySpec{Owner: "has space"}); err == nil {
		t.Fatal("bad owner accepted")
	}
}

func sha(s string) [32]byte {
	var out [32]byte
	h := HashKey(s)
	for i := range out {
		var b byte
		for _, c := range h[2*i : 2*i+2] {
			b <<= 4
			if c >= 'a' {
				b |= byte(c-'a') + 10
			} else {
				b |= byte(c - '0')
			}
		}
		out[i] = b
	}
	return out
}

func TestAdminRejectsBadSpec(t *testing.T) {
	ks, err := OpenKeyStore(filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	admin := httptest.NewServer(AdminHandler(ks, nil))
	defer admin.Close()
	huge := `{"owner":"a","scopes":["` + strings.Repeat("x", 100<<10) + `"]}`
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{`, 400}, {`{"owner":""}`, 400}, {`{"owner":"a","bogus":1}`, 400},
		{`{"owner":"a","scopes":["x y"]}`, 400}, {`{"owner":"a","id":"../etc"}`, 400},
		{huge, 413}, // over the 64 KiB limit: too large, not malformed
	} {
		for _, path := range []string{"/v1/keys", "/v1/keys/import"} {
			if path == "/v1/keys/import" && tc.status != 413 {
				continue
			}
			resp, err := http.Post(admin.URL+path, "application/json", bytes.NewBufferString(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("POST %s %.40s: status %d, want %d", path, tc.body, resp.StatusCode, tc.status)
			}
		}
	}
}

func TestAuthorization(t *testing.T) {
	k := keys(t)
	const readKey = "opk_reader-0123456789abcdef"
	const adminKey = "opk_admin-0123456789abcdef"
	cfg := Config{
		JWT: k.jwtConfig(),
		APIKeys: []APIKeyConfig{
			{ID: "r", Hash: HashKey(readKey), Owner: "reader", Scopes: []string{"posts:read"}},
			{ID: "a", Hash: HashKey(adminKey), Owner: "root", Scopes: []string{"posts:read", "posts:write"}, Roles: []string{"admin"}},
		},
	}
	tests := []struct {
		name   string
		auth   AuthConfig
		hdr    map[string]string
		status int
	}{
		{"scope missing", AuthConfig{Scopes: []string{"posts:write"}}, map[string]string{"X-API-Key": readKey}, 403},
		{"scope present", AuthConfig{Scopes: []string{"posts:read"}}, map[string]string{"X-API-Key": readKey}, 200},
		{"all scopes needed", AuthConfig{Scopes: []string{"posts:read", "posts:write"}}, map[string]string{"X-API-Key": readKey}, 403},
		{"role any-of", AuthConfig{Roles: []string{"editor", "admin"}}, map[string]string{"X-API-Key": adminKey}, 200},
		{"role missing", AuthConfig{Roles: []string{"editor"}}, map[string]string{"X-API-Key": readKey}, 403},
		{"admin only, admin", AuthConfig{AdminOnly: true}, map[string]string{"X-API-Key": adminKey}, 200},
		{"admin only, not admin", AuthConfig{AdminOnly: true}, map[string]string{"X-API-Key": readKey}, 403},
		{"jwt scopes", AuthConfig{Scopes: []string{"posts:write"}}, nil, 200},
		{"anonymous allowed", AuthConfig{Mode: ModeOptional}, map[string]string{}, 200},
		{"anonymous allowed, bad key still 401", AuthConfig{Mode: ModeOptional}, map[string]string{"X-API-Key": "opk_wrong-0123456789abcdef"}, 401},
		{"anonymous on scoped route", AuthConfig{Mode: ModeOptional, Scopes: []string{"posts:read"}}, map[string]string{}, 401},
		{"auth none ignores credentials", AuthConfig{Mode: ModeNone}, map[string]string{"X-API-Key": "garbage"}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{cfg: cfg, route: RouteConfig{Auth: tc.auth}})
			hdr := tc.hdr
			if hdr == nil {
				hdr = bearer(sign(t, jwt.SigningMethodEdDSA, k.edKID, k.ed, stdClaims(e.clock.Now())))
			}
			resp := e.do("POST", "/v1/posts", hdr, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, bodyOf(resp))
			}
			if tc.status == 403 {
				if errCode(t, resp) != "forbidden" {
					t.Error("wrong code")
				}
				if e.origin.count() != 0 {
					t.Error("forbidden request reached the origin")
				}
			}
		})
	}
}

// TestIdentityHeadersNeverSpoofed: whatever X-Outpost-* headers a client
// sends, the origin sees only the gateway's, and a forged set fails the
// origin's signature check.
func TestIdentityHeadersNeverSpoofed(t *testing.T) {
	const key = "opk_user-0123456789abcdef"
	spoof := map[string]string{
		identity.HeaderUser:      "admin",
		identity.HeaderIssuer:    "https://auth.demo.test",
		identity.HeaderKeyID:     "root",
		identity.HeaderScopes:    "everything",
		identity.HeaderRoles:     "admin",
		identity.HeaderTier:      "unlimited",
		identity.HeaderTimestamp: "9999999999",
		identity.HeaderSignature: "v1=forged",
	}
	for _, tc := range []struct {
		name   string
		secret string
		auth   AuthConfig
		key    bool
	}{
		{"authenticated", testSecret, AuthConfig{}, true},
		{"anonymous optional", testSecret, AuthConfig{Mode: ModeOptional}, false},
		{"auth none", testSecret, AuthConfig{Mode: ModeNone}, false},
		{"no signing secret", "", AuthConfig{Mode: ModeNone}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{
				cfg:   Config{APIKeys: []APIKeyConfig{{ID: "u1", Hash: HashKey(key), Owner: "user1"}}},
				route: RouteConfig{Auth: tc.auth},
			})
			if tc.secret == "" {
				e.gw.secret = nil
			}
			hdr := map[string]string{}
			for k, v := range spoof {
				hdr[k] = v
			}
			if tc.key {
				hdr["X-API-Key"] = key
			}
			if r := e.do("GET", "/x", hdr, nil); r.StatusCode != 200 {
				t.Fatalf("status %d", r.StatusCode)
			}
			o := e.origin.last(t)
			for _, h := range identity.Headers {
				if v := o.Header.Get(h); v == spoof[h] {
					t.Errorf("client value of %s reached the origin", h)
				}
			}
			switch {
			case tc.secret == "":
				if o.IDErr != identity.ErrMissing {
					t.Errorf("unsigned route: verify err %v", o.IDErr)
				}
			case tc.key:
				if o.IDErr != nil || o.Identity.User != "user1" {
					t.Errorf("identity %+v %v", o.Identity, o.IDErr)
				}
			default:
				if o.IDErr != nil || o.Identity.User != "" || o.Identity.Tier != "anonymous" {
					t.Errorf("anonymous identity %+v %v", o.Identity, o.IDErr)
				}
			}
		})
	}
	// The origin-side check fails for a forged header: take a genuine
	// signed request and change the user.
	e := newEnv(t, envOpts{cfg: Config{APIKeys: []APIKeyConfig{{ID: "u1", Hash: HashKey(key), Owner: "user1"}}}})
	e.do("GET", "/x", map[string]string{"X-API-Key": key}, nil)
	o := e.origin.last(t)
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header = o.Header.Clone()
	if _, err := identity.Verify(req, []byte(testSecret), e.clock.Now(), time.Minute); err != nil {
		t.Fatalf("genuine header rejected: %v", err)
	}
	req.Header.Set(identity.HeaderUser, "admin")
	if _, err := identity.Verify(req, []byte(testSecret), e.clock.Now(), time.Minute); err != identity.ErrForged {
		t.Fatalf("forged header: err %v, want ErrForged", err)
	}
}

// TestAuthFailureLimit: an IP that keeps presenting bad credentials is
// refused before verification; other IPs are unaffected.
func TestAuthFailureLimit(t *testing.T) {
	const good = "opk_good-0123456789abcdef"
	e := newEnv(t, envOpts{cfg: Config{
		APIKeys:          []APIKeyConfig{{ID: "g", Hash: HashKey(good), Owner: "u"}},
		AuthFailureLimit: &RateLimit{Requests: 3, Window: units.Duration(time.Hour)},
	}})
	for range 3 {
		if r := e.do("GET", "/x", map[string]string{"X-API-Key": "opk_guess-0123456789abcdef"}, nil); r.StatusCode != 401 {
			t.Fatalf("guess: %d", r.StatusCode)
		}
	}
	// Missing credentials do not count, and are still a plain 401.
	if r := e.do("GET", "/x", nil, nil); r.StatusCode != 401 {
		t.Fatalf("missing: %d", r.StatusCode)
	}
	r := e.do("GET", "/x", map[string]string{"X-API-Key": good}, nil)
	if r.StatusCode != 429 || errCode(t, r) != "too_many_auth_failures" || r.Header.Get("Retry-After") != "1200" {
		t.Fatalf("after budget: %d %v", r.StatusCode, r.Header)
	}
	if r := e.do("GET", "/x", map[string]string{"X-API-Key": good, "X-Test-Client-Ip": "198.51.100.4"}, nil); r.StatusCode != 200 {
		t.Fatalf("other IP: %d", r.StatusCode)
	}
	e.clock.Advance(20 * time.Minute)
	if r := e.do("GET", "/x", map[string]string{"X-API-Key": good}, nil); r.StatusCode != 200 {
		t.Fatalf("after Retry-After: %d", r.StatusCode)
	}
	// Successes do not spend the budget.
	if r := e.do("GET", "/x", map[string]string{"X-API-Key": good}, nil); r.StatusCode != 200 {
		t.Fatalf("second success: %d", r.StatusCode)
	}
}

// TestKeyStoreConcurrent: lookups run while keys are created and revoked
// (checked by -race); every revocation is visible when Revoke returns.
func TestKeyStoreConcurrent(t *testing.T) {
	ks, err := OpenKeyStore(filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				ks.lookup(sha("opk_nothing-0123456789"))
				ks.List()
			}
		}
	}()
	for i := range 30 {
		key, rec, err := ks.Create(KeySpec{Owner: "u" + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ks.Revoke(rec.ID); err != nil {
			t.Fatal(err)
		}
		if r := ks.lookup(sha(key)); r == nil || r.RevokedAt == nil {
			t.Fatalf("key %d not revoked in memory", i)
		}
	}
	close(stop)
	<-done
}
