package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/origin/identity"
)

// fuzzNow is the fixed clock of the fuzz targets; the checked-in seed
// tokens in testdata/fuzz are valid at this instant.
var fuzzNow = time.Unix(1_780_000_000, 0)

const fuzzHMAC = "fuzz-hmac-secret-0123456789abcdef!!"

func fuzzVerifier(tb testing.TB) *jwtVerifier {
	c := JWTConfig{
		Issuers:   []string{"https://auth.demo.test"},
		Audiences: []string{"api.demo.test"},
		Keys:      []JWTKeyConfig{{KID: "hs1", Alg: "HS256", Secret: fuzzHMAC}, {Alg: "HS256", Secret: fuzzHMAC}},
	}
	g := &Config{JWT: c}
	g.SetDefaults()
	m, _ := newMetrics(nil)
	v, err := newJWTVerifier(g.JWT, newJWKSCache(http.DefaultClient, func() time.Time { return fuzzNow }, nil, m), func() time.Time { return fuzzNow })
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// FuzzJWTVerify: hostile tokens never panic, and anything accepted
// yields an identity safe to put in headers.
func FuzzJWTVerify(f *testing.F) {
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	f.Add("..")
	v := fuzzVerifier(f)
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.verify(context.Background(), tok)
		if err != nil {
			if jwtReason(err) == "" {
				t.Fatal("empty reason")
			}
			return
		}
		if !cleanWord(id.User) {
			t.Fatalf("accepted unsafe subject %q", id.User)
		}
		for _, s := range append(append([]string{}, id.Scopes...), id.Roles...) {
			if !cleanWord(s) {
				t.Fatalf("accepted unsafe scope/role %q", s)
			}
		}
	})
}

// FuzzCredentialHeaders: arbitrary Authorization / X-API-Key / identity
// header values through the whole handler: never a panic or a 5xx, and
// the client's identity headers never reach next.
func FuzzCredentialHeaders(f *testing.F) {
	f.Add("Bearer abc.def.ghi", "", "alice", "v1=x")
	f.Add("", "opk_fuzz-0123456789abcdef", "root", "")
	f.Add("Basic Zm9vOmJhcg==", "k", "", "1")
	f.Add("bearer   ", "\x00", "a\tb", "v1=")
	st, err := NewState(StateOptions{Now: func() time.Time { return fuzzNow }})
	if err != nil {
		f.Fatal(err)
	}
	cfg := Config{
		IdentitySecret: testSecret,
		APIKeys:        []APIKeyConfig{{ID: "f", Hash: HashKey("opk_fuzz-0123456789abcdef"), Owner: "fuzzer"}},
		JWT:            JWTConfig{Keys: []JWTKeyConfig{{KID: "hs1", Alg: "HS256", Secret: fuzzHMAC}}},
		Tiers:          map[string]RateLimit{"free": {Requests: 1 << 30}, "anonymous": {Requests: 1 << 30}},
	}
	cfg.SetDefaults()
	g, err := New(cfg, st)
	if err != nil {
		f.Fatal(err)
	}
	var seen http.Header
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Clone() })
	handlers := map[string]http.Handler{}
	for _, mode := range []string{ModeRequired, ModeOptional, ModeNone} {
		h, err := g.Handler("fuzz", RouteConfig{Auth: AuthConfig{Mode: mode}}, next)
		if err != nil {
			f.Fatal(err)
		}
		handlers[mode] = h
	}
	f.Fuzz(func(t *testing.T, authz, apiKey, user, sig string) {
		for mode, h := range handlers {
			seen = nil
			r := httptest.NewRequest("GET", "/x", nil)
			if authz != "" {
				r.Header["Authorization"] = []string{authz}
			}
			if apiKey != "" {
				r.Header["X-Api-Key"] = []string{apiKey}
			}
			r.Header[identity.HeaderUser] = []string{user}
			r.Header[identity.HeaderSignature] = []string{sig}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code >= 500 {
				t.Fatalf("%s: status %d", mode, w.Code)
			}
			if seen == nil {
				continue
			}
			if sig != "" && seen.Get(identity.HeaderSignature) == sig {
				t.Fatalf("%s: client signature reached next", mode)
			}
			// Only identities the gateway established may appear: anonymous,
			// the config API key, or the subject of the seed JWT.
			if got := seen.Get(identity.HeaderUser); got != "" && got != "fuzzer" && got != "alice" {
				t.Fatalf("%s: user %q reached next", mode, got)
			}
		}
	})
}

// FuzzPattern: pattern compilation and matching never panic, and a
// pattern made only of literals matches exactly its own path, up to the
// escaping normalizeEscaped evens out (ServeHTTP matches its output), and
// without encoded_slashes no match puts an escaped slash in a one-segment
// wildcard.
func FuzzPattern(f *testing.F) {
	f.Add("/api/{id}/x", "/api/1/x")
	f.Add("/**", "/")
	f.Add("/a/*/{rest...}", "/a/b/c/d")
	f.Add("/%61pi/x%2f", "/api/%78%2F")
	f.Fuzz(func(t *testing.T, p, path string) {
		pt, err := compilePattern(p)
		if err != nil {
			return
		}
		if a, err := url.PathUnescape(path); err == nil {
			if b, err := url.PathUnescape(normalizeEscaped(path)); err != nil || a != b {
				t.Fatalf("normalizeEscaped(%q) changed the path: %q vs %q (%v)", path, a, b, err)
			}
		}
		np := normalizeEscaped(path)
		m := pt.match(np, true)
		if !strings.ContainsAny(p, "{}*") && m != (normalizeEscaped(p) == np) {
			t.Fatalf("literal %q vs %q matched=%v", p, path, m)
		}
		if strict := pt.match(np, false); strict && !m {
			t.Fatalf("%q vs %q: matched without encoded slashes only", p, path)
		} else if strict && !pt.rest {
			// Every segment is bound by a literal or a one-segment
			// wildcard: none of the wildcards' segments holds %2F.
			segs := strings.Split(strings.TrimPrefix(np, "/"), "/")
			for i, want := range pt.segs {
				if want == "*" && i < len(segs) && strings.Contains(segs[i], "%2F") {
					t.Fatalf("%q vs %q: wildcard segment %q holds an escaped slash", p, path, segs[i])
				}
			}
		}
	})
}

// FuzzParseJWKS: key-set documents from the network never panic.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA","kid":"s"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parseJWKS(b)
		if err != nil {
			return
		}
		for _, k := range keys {
			if _, sym := k.key.([]byte); sym {
				t.Fatal("symmetric key accepted from a JWKS document")
			}
		}
	})
}

// TestFuzzSeedTokenValid keeps the checked-in corpus meaningful: its
// valid seeds must pass, so the fuzzer explores the accept path too.
func TestFuzzSeedTokenValid(t *testing.T) {
	v := fuzzVerifier(t)
	for _, name := range []string{"valid_hs256", "valid_nokid"} {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzJWTVerify", name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		tok, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
		if err != nil {
			t.Fatal(err)
		}
		id, err := v.verify(context.Background(), tok)
		if err != nil || id.User != "alice" || len(id.Roles) != 1 {
			t.Fatalf("%s: %+v %v (%s)", name, id, err, jwtReason(err))
		}
	}
}
