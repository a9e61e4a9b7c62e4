package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cdn"
	"github.com/outpost-edge/outpost/internal/proxy"
	"github.com/outpost-edge/outpost/internal/reqinfo"
	"github.com/outpost-edge/outpost/origin/identity"
)

// routeHandler builds one gateway route (state, config and route with
// defaults) in front of next, for chains newEnv does not build.
func routeHandler(t *testing.T, so StateOptions, cfg Config, rc RouteConfig, next http.Handler) http.Handler {
	t.Helper()
	st, err := NewState(so)
	if err != nil {
		t.Fatal(err)
	}
	cfg.IdentitySecret = testSecret
	cfg.SetDefaults()
	gw, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	rc.SetDefaults()
	h, err := gw.Handler("api", rc, next)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// newCache is a node cache in a temporary directory, closed with the test.
func newCache(t *testing.T) *cdn.Cache {
	t.Helper()
	cc := cdn.Config{Dir: t.TempDir()}
	cc.SetDefaults()
	c, err := cdn.New(cc, cdn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCacheNeverSharesAuthenticatedResponses: the gateway removes the
// credential before the cache (gateway → cache → proxy), so the cache must
// still treat the request as one with Authorization (RFC 9111 §3.5): a
// response the origin made for one caller, with a plain max-age, is not
// stored and served to another caller or to anonymous ones. Explicitly
// shareable responses (public, s-maxage) are still cached.
func TestCacheNeverSharesAuthenticatedResponses(t *testing.T) {
	const alice, bob = "opk_alice-0123456789abcdef", "opk_bob-0123456789abcdefgh"
	for _, tc := range []struct {
		name, cacheControl string
		credential         string // header carrying the key
		forward            bool
		shared             bool // the second and third callers get alice's answer
	}{
		{"x-api-key max-age", "max-age=60", "X-Api-Key", false, false},
		{"bearer max-age", "max-age=60", "Authorization", false, false},
		{"bearer forwarded", "max-age=60", "Authorization", true, false},
		{"x-api-key forwarded", "max-age=60", "X-Api-Key", true, false},
		{"public", "public, max-age=60", "X-Api-Key", false, true},
		{"s-maxage", "s-maxage=60", "Authorization", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			orig := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				id, err := identity.Verify(r, []byte(testSecret), time.Now(), time.Hour)
				if err != nil {
					http.Error(w, err.Error(), http.StatusUnauthorized)
					return
				}
				w.Header().Set("Cache-Control", tc.cacheControl)
				io.WriteString(w, "profile of "+id.User)
			}))
			defer orig.Close()
			c := newCache(t)
			cfg := Config{APIKeys: []APIKeyConfig{
				{ID: "a", Hash: HashKey(alice), Owner: "alice"},
				{ID: "b", Hash: HashKey(bob), Owner: "bob"},
			}}
			rc := RouteConfig{Auth: AuthConfig{Mode: ModeOptional, ForwardCredentials: tc.forward}}
			h := routeHandler(t, StateOptions{}, cfg, rc, c.Handler("api", cdn.RouteConfig{}, proxyTo(orig.URL)))
			front := httptest.NewServer((&infoRecorder{}).wrap(h))
			defer front.Close()
			get := func(key string) string {
				req, _ := http.NewRequest("GET", front.URL+"/me", nil)
				switch {
				case key == "":
				case tc.credential == "Authorization":
					req.Header.Set("Authorization", "Bearer "+key)
				default:
					req.Header.Set(tc.credential, key)
				}
				resp, err := front.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, b)
				}
				return string(b)
			}
			if got := get(alice); got != "profile of alice" {
				t.Fatalf("alice got %q", got)
			}
			bobGot, anonGot := get(bob), get("")
			if tc.shared {
				if bobGot != "profile of alice" || hits.Load() != 1 {
					t.Fatalf("shareable response not cached: bob got %q, origin hits %d", bobGot, hits.Load())
				}
				return
			}
			if bobGot != "profile of bob" {
				t.Errorf("bob got %q from the cache", bobGot)
			}
			if anonGot != "profile of " {
				t.Errorf("anonymous caller got %q from the cache", anonGot)
			}
		})
	}
}

// TestConnectionCannotDropGatewayHeaders: a field named in the client's
// Connection header is hop-by-hop, and the proxy deletes it from the
// upstream request. Naming the identity headers or a route's header edits
// there must not make the proxy drop what the gateway set; other
// Connection-listed fields are still dropped.
func TestConnectionCannotDropGatewayHeaders(t *testing.T) {
	const key = "opk_user-0123456789abcdef"
	e := newEnv(t, envOpts{
		cfg: Config{APIKeys: []APIKeyConfig{{ID: "u1", Hash: HashKey(key), Owner: "user1", Scopes: []string{"read"}}}},
		route: RouteConfig{Request: RequestTransform{HeaderOps: HeaderOps{
			Set: map[string]string{"X-Api-Version": "2"},
			Add: map[string]string{"X-Edge": "outpost"},
		}}},
	})
	for _, conn := range []string{
		"X-Outpost-User",
		"x-outpost-signature, X-Outpost-Timestamp",
		"keep-alive, X-Outpost-Scopes",
		"X-Outpost-Key-Id,X-Outpost-Tier",
		"X-Api-Version",
		"x-edge",
		"X-Request-Id",
	} {
		t.Run(conn, func(t *testing.T) {
			r := e.do("GET", "/x", map[string]string{"X-API-Key": key, "Connection": conn + ", X-Custom", "X-Custom": "hop"}, nil)
			if r.StatusCode != 200 {
				t.Fatalf("status %d", r.StatusCode)
			}
			o := e.origin.last(t)
			if o.IDErr != nil || o.Identity.User != "user1" || o.Identity.KeyID != "u1" {
				t.Errorf("identity %+v, %v", o.Identity, o.IDErr)
			}
			if o.Header.Get("X-Api-Version") != "2" || o.Header.Get("X-Edge") != "outpost" || o.Header.Get("X-Request-Id") == "" {
				t.Errorf("route headers lost: version %q edge %q request id %q",
					o.Header.Get("X-Api-Version"), o.Header.Get("X-Edge"), o.Header.Get("X-Request-Id"))
			}
			if v := o.Header.Get("X-Custom"); v != "" {
				t.Errorf("connection-listed X-Custom reached the origin: %q", v)
			}
		})
	}
}

// TestUntrustedForwardingHeadersNeverReachOrigin: through the gateway and
// the edge's proxy, no X-Forwarded-* field, Forwarded or X-Real-IP a
// client sent reaches the origin unless the peer is a trusted proxy; the
// proxy's own X-Forwarded-For/Proto/Host describe the connection.
func TestUntrustedForwardingHeadersNeverReachOrigin(t *testing.T) {
	claimed := map[string]string{
		"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "https",
		"X-Forwarded-Port": "443", "X-Forwarded-Prefix": "/admin", "X-Forwarded-Server": "evil",
		"X-Forwarded-Ssl": "on", "X-Forwarded-Scheme": "https", "X-Forwarded-Path": "/admin",
		"X-Forwarded-Client-Cert": "Hash=1;Subject=\"CN=admin\"",
		"Forwarded":               "for=6.6.6.6;proto=https", "X-Real-Ip": "6.6.6.6",
		// CGI-style origins read these as HTTP_X_FORWARDED_FOR and so on.
		"X_Forwarded_For": "6.6.6.6", "X_Real_Ip": "6.6.6.6", "X_Forwarded_Prefix": "/admin",
	}
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			o := newOrigin(t)
			target, _ := url.Parse(o.srv.URL)
			h := routeHandler(t, StateOptions{}, Config{}, RouteConfig{Auth: AuthConfig{Mode: ModeNone}},
				proxy.New(proxy.Options{Target: target, Transport: proxy.NewTransport(5 * time.Second), Via: "edge"}))
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ap := netip.MustParseAddrPort(r.RemoteAddr)
				info := &reqinfo.Info{ID: "req-1", ClientIP: ap.Addr(), PeerIP: ap.Addr(), Trusted: trusted}
				h.ServeHTTP(w, r.WithContext(reqinfo.With(r.Context(), info)))
			}))
			defer front.Close()
			req, _ := http.NewRequest("GET", front.URL+"/x", nil)
			for k, v := range claimed {
				req.Header[k] = []string{v} // as spelled: X_Forwarded_For stays itself
			}
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := e2eHeader(o.last(t).Header)
			if trusted {
				for k, v := range claimed {
					// Rewrite mode of httputil.ReverseProxy drops Forwarded
					// whoever sent it.
					if k != "X-Forwarded-For" && k != "Forwarded" && got.Get(k) != v {
						t.Errorf("trusted proxy's %s = %q lost (got %q)", k, v, got.Get(k))
					}
				}
				if xff := got.Get("X-Forwarded-For"); xff != "6.6.6.6, 127.0.0.1" {
					t.Errorf("X-Forwarded-For %q", xff)
				}
				return
			}
			for k, v := range claimed {
				if got.Get(k) == v {
					t.Errorf("untrusted client's %s: %q reached the origin", k, v)
				}
			}
			if got.Get("X-Forwarded-For") != "127.0.0.1" || got.Get("X-Forwarded-Proto") != "http" || got.Get("X-Forwarded-Host") != front.Listener.Addr().String() {
				t.Errorf("proxy's own forwarding fields: %v", got)
			}
		})
	}
}

type e2eHeader http.Header

func (h e2eHeader) Get(k string) string {
	if strings.Contains(k, "_") { // not canonical in http.Header's sense: compare as is, ignoring case
		for name, v := range h {
			if strings.EqualFold(name, k) {
				return strings.Join(v, ", ")
			}
		}
		return ""
	}
	return strings.Join(http.Header(h).Values(k), ", ")
}

// TestOverrideHeadersCannotBypassPolicy: many frameworks (Symfony and
// Laravel for POST, Express's method-override) let a header replace the
// method, and some (IIS, Symfony, Zend) let X-Original-URL / X-Rewrite-URL
// replace the path. The gateway checks methods and paths on the request
// line, so an override naming a method the route refuses — in a header or
// as the query's _method — is refused too, and the path overrides never
// reach the origin.
func TestOverrideHeadersCannotBypassPolicy(t *testing.T) {
	e := newEnv(t, envOpts{route: RouteConfig{
		Auth:    AuthConfig{Mode: ModeNone},
		Methods: []string{"GET", "POST"},
		Paths:   []string{"/api/posts/**"},
	}})
	for _, tc := range []struct {
		method string
		hdr    map[string]string
		status int
		query  string
	}{
		{"POST", map[string]string{"X-HTTP-Method-Override": "DELETE"}, 405, ""},
		{"POST", map[string]string{"X-HTTP-Method-Override": "delete"}, 405, ""},
		{"POST", map[string]string{"X-HTTP-Method": "PUT"}, 405, ""},
		{"POST", map[string]string{"X-Method-Override": "PATCH"}, 405, ""},
		{"POST", map[string]string{"X_HTTP_Method_Override": "DELETE"}, 405, ""},
		{"GET", map[string]string{"X-HTTP-Method-Override": "DELETE"}, 405, ""},
		{"POST", map[string]string{"X-HTTP-Method-Override": "GET"}, 200, ""},
		{"POST", map[string]string{"X-HTTP-Method-Override": "post"}, 200, ""},
		{"GET", map[string]string{"X-Original-URL": "/admin/users", "X-Rewrite-URL": "/admin", "X_Original_URL": "/admin"}, 200, ""},
		// The query override Laravel, Symfony and Express read on POST,
		// spelled as PHP would still read it.
		{"POST", nil, 405, "_method=DELETE"},
		{"POST", nil, 405, "a=1&_method=put"},
		{"POST", nil, 405, "%5Fmethod=PATCH"},
		{"POST", nil, 405, ".method=DELETE"},
		{"POST", nil, 405, "+method=DELETE"},
		{"POST", nil, 405, "_METHOD=DELETE"},
		{"GET", nil, 405, "_method=DELETE"},
		{"POST", nil, 200, "_method=GET"},
		{"POST", nil, 200, "_method=post"},
		{"POST", nil, 200, "my_method=DELETE&method=DELETE"},
	} {
		target := "/api/posts/1"
		if tc.query != "" {
			target += "?" + tc.query
		}
		r := e.do(tc.method, target, tc.hdr, nil)
		if r.StatusCode != tc.status {
			t.Errorf("%s %s %v: status %d, want %d", tc.method, target, tc.hdr, r.StatusCode, tc.status)
			continue
		}
		if tc.status == 405 && r.Header.Get("Allow") != "GET, POST, HEAD" {
			t.Errorf("%s %v: Allow %q", tc.method, tc.hdr, r.Header.Get("Allow"))
		}
		if tc.status != 200 {
			continue
		}
		for k := range e.origin.last(t).Header {
			if n := strings.ToLower(strings.ReplaceAll(k, "_", "-")); n == "x-original-url" || n == "x-rewrite-url" {
				t.Errorf("%s reached the origin", k)
			}
		}
	}
}

// TestCORSGatewayOwnsResponseFields: on a route with a cors block the
// gateway's policy is the one the browser sees. An origin with its own
// CORS middleware must neither duplicate Access-Control-Allow-Origin
// (browsers refuse two values, breaking allowed origins) nor open the
// route to origins the gateway does not allow.
func TestCORSGatewayOwnsResponseFields(t *testing.T) {
	orig := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A permissive origin: reflects any Origin, with credentials.
		w.Header().Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Access-Control-Expose-Headers", "X-Secret")
		w.Header().Set("Vary", "Accept-Encoding")
		io.WriteString(w, "data")
	}))
	defer orig.Close()
	rc := RouteConfig{Auth: AuthConfig{Mode: ModeNone}, CORS: &CORSConfig{AllowOrigins: []string{"https://app.demo.test"}}}
	h := routeHandler(t, StateOptions{}, Config{}, rc, proxyTo(orig.URL))
	front := httptest.NewServer((&infoRecorder{}).wrap(h))
	defer front.Close()
	for _, tc := range []struct{ origin, acao, acac string }{
		{"https://app.demo.test", "https://app.demo.test", ""},
		{"https://evil.test", "", ""},
		{"", "", ""},
	} {
		req, _ := http.NewRequest("GET", front.URL+"/x", nil)
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if got := h.Values("Access-Control-Allow-Origin"); strings.Join(got, ",") != tc.acao {
			t.Errorf("Origin %q: Access-Control-Allow-Origin %q, want %q", tc.origin, got, tc.acao)
		}
		if got := h.Get("Access-Control-Allow-Credentials"); got != tc.acac {
			t.Errorf("Origin %q: Access-Control-Allow-Credentials %q", tc.origin, got)
		}
		if got := strings.Join(h.Values("Access-Control-Expose-Headers"), ","); strings.Contains(got, "X-Secret") {
			t.Errorf("Origin %q: origin's Access-Control-Expose-Headers kept: %q", tc.origin, got)
		}
		if vary := strings.Join(h.Values("Vary"), ", "); !strings.Contains(vary, "Origin") || !strings.Contains(vary, "Accept-Encoding") {
			t.Errorf("Origin %q: Vary %q", tc.origin, vary)
		}
	}
}

// TestCacheFillKeepsIdentityValid: the cache behind the gateway turns a
// HEAD miss into a GET fill (and drops conditionals); the origin must
// still verify the signed identity of the request it really receives.
func TestCacheFillKeepsIdentityValid(t *testing.T) {
	const key = "opk_alice-0123456789abcdef"
	var mu sync.Mutex
	var seen []string
	orig := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := identity.Verify(r, []byte(testSecret), time.Now(), time.Minute)
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %v", r.Method, err))
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=60")
		io.WriteString(w, "hello "+id.User)
	}))
	defer orig.Close()
	target, _ := url.Parse(orig.URL)
	c := newCache(t)
	up := proxy.New(proxy.Options{Target: target, Transport: proxy.NewTransport(5 * time.Second), Via: "edge"})
	h := routeHandler(t, StateOptions{}, Config{APIKeys: []APIKeyConfig{{ID: "a", Hash: HashKey(key), Owner: "alice"}}},
		RouteConfig{}, c.Handler("api", cdn.RouteConfig{}, up))
	front := httptest.NewServer((&infoRecorder{}).wrap(h))
	defer front.Close()
	for _, m := range []string{"HEAD", "GET"} {
		req, _ := http.NewRequest(m, front.URL+"/doc", nil)
		req.Header.Set("X-Api-Key", key)
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			mu.Lock()
			t.Fatalf("%s: status %d; origin saw %q", m, resp.StatusCode, seen)
			mu.Unlock()
		}
	}
}

// TestIdentityTrailersNeverReachOrigin: a chunked request can carry
// fields after the body (trailers); identity fields sent that way are
// dropped like the headers are, through the edge's proxy, while other
// trailers still pass.
func TestIdentityTrailersNeverReachOrigin(t *testing.T) {
	trailers := make(chan http.Header, 1)
	orig := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		trailers <- r.Trailer.Clone()
	}))
	defer orig.Close()
	target, _ := url.Parse(orig.URL)
	h := routeHandler(t, StateOptions{}, Config{}, RouteConfig{Auth: AuthConfig{Mode: ModeNone}},
		proxy.New(proxy.Options{Target: target, Transport: proxy.NewTransport(5 * time.Second), Via: "edge"}))
	front := httptest.NewServer((&infoRecorder{}).wrap(h))
	defer front.Close()
	req, _ := http.NewRequest("POST", front.URL+"/x", chunked{strings.NewReader("body")})
	req.ContentLength = -1
	req.Trailer = http.Header{
		identity.HeaderUser: {"admin"}, identity.HeaderSignature: {"v2=forged"}, "X_Outpost_Roles": {"admin"},
		"X-Original-Url": {"/admin"}, "X-Checksum": {"abc"},
	}
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := <-trailers
	for k := range got {
		if n := strings.ToLower(strings.ReplaceAll(k, "_", "-")); strings.HasPrefix(n, "x-outpost-") || n == "x-original-url" {
			t.Errorf("trailer %s: %q reached the origin", k, got[k])
		}
	}
	if got.Get("X-Checksum") != "abc" {
		t.Errorf("other trailers lost: %v", got)
	}
}

// readFromCounter stands for the edge's connection writer: it counts the
// bodies that reach it through ReadFrom (sendfile(2) on a real socket).
type readFromCounter struct {
	http.ResponseWriter
	calls *atomic.Int32
}

func (w readFromCounter) ReadFrom(r io.Reader) (int64, error) {
	w.calls.Add(1)
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

// TestCacheHitKeepsReadFromOnCORSRoute: the writer a cors block wraps
// the response in still passes a cache hit's file body to the connection's
// ReadFrom, so hits on such routes keep sendfile(2).
func TestCacheHitKeepsReadFromOnCORSRoute(t *testing.T) {
	body := strings.Repeat("x", 1<<20) // over memory_body_max: served from its file
	orig := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, body)
	}))
	defer orig.Close()
	target, _ := url.Parse(orig.URL)
	c := newCache(t)
	up := proxy.New(proxy.Options{Target: target, Transport: proxy.NewTransport(5 * time.Second), Via: "edge"})
	rc := RouteConfig{Auth: AuthConfig{Mode: ModeNone}, CORS: &CORSConfig{AllowOrigins: []string{"https://app.demo.test"}}}
	h := (&infoRecorder{}).wrap(routeHandler(t, StateOptions{}, Config{}, rc, c.Handler("api", cdn.RouteConfig{}, up)))
	var calls atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(readFromCounter{w, &calls}, r)
	}))
	defer front.Close()
	for i, want := range []string{"MISS", "HIT"} {
		req, _ := http.NewRequest("GET", front.URL+"/big.bin", nil)
		req.Header.Set("Origin", "https://app.demo.test")
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Cache") != want || string(got) != body ||
			resp.Header.Get("Access-Control-Allow-Origin") != "https://app.demo.test" {
			t.Fatalf("request %d: X-Cache %q, %d bytes, ACAO %q", i, resp.Header.Get("X-Cache"), len(got), resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the HIT reached the connection's ReadFrom %d times, want 1", n)
	}
}
