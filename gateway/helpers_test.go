package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/outpost-edge/outpost/internal/redistest"
	"github.com/outpost-edge/outpost/internal/testclock"

	"github.com/outpost-edge/outpost/internal/reqinfo"
	"github.com/outpost-edge/outpost/origin/identity"
)

const testSecret = "origin-shared-secret-0123456789"

// clock is the shared manual test clock.
type clock = testclock.Clock

func newClock() *clock { return testclock.New(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)) }

// originRequest is what the test origin saw.
type originRequest struct {
	Method   string
	Path     string
	RawPath  string // the escaped path as sent
	RawQuery string
	Header   http.Header
	Identity *identity.Identity
	IDErr    error
	Body     []byte
}

// origin is a real HTTP origin on 127.0.0.1 that records requests and
// verifies the gateway's identity signature with the real clock.
type origin struct {
	srv   *httptest.Server
	mu    sync.Mutex
	reqs  []originRequest
	delay time.Duration
	gate  chan struct{} // when set, requests wait until it is closed
}

func newOrigin(t testing.TB) *origin {
	o := &origin{}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, err := identity.Verify(r, []byte(testSecret), time.Now(), time.Hour*24*365*10)
		o.mu.Lock()
		o.reqs = append(o.reqs, originRequest{r.Method, r.URL.Path, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Clone(), id, err, body})
		delay, gate := o.delay, o.gate
		o.mu.Unlock()
		if gate != nil {
			<-gate
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("X-Origin", "yes")
		w.Header().Set("Server-Timing", "app;dur=1")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) last(t testing.TB) originRequest {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.reqs) == 0 {
		t.Fatal("origin saw no request")
	}
	return o.reqs[len(o.reqs)-1]
}

func (o *origin) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.reqs)
}

// proxyTo is the stand-in for the lead's reverse proxy: httputil with a
// 504 on deadline and 502 otherwise.
func proxyTo(target string) http.Handler {
	u, _ := url.Parse(target)
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			status := http.StatusBadGateway
			if errors.Is(err, context.DeadlineExceeded) {
				status = http.StatusGatewayTimeout
			}
			w.WriteHeader(status)
		},
	}
	return p
}

// withInfo plays the edge: it attaches a reqinfo.Info with the socket
// peer as client IP (or the X-Test-Client-Ip value, standing in for the
// lead's trusted-proxy resolution) and records the info for assertions.
type infoRecorder struct {
	mu   sync.Mutex
	last *reqinfo.Info
}

func (ir *infoRecorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, _ := netip.ParseAddrPort(r.RemoteAddr)
		info := &reqinfo.Info{ID: "req-" + strconv.FormatInt(time.Now().UnixNano(), 36), ClientIP: ap.Addr(), PeerIP: ap.Addr()}
		if v := r.Header.Get("X-Test-Client-Ip"); v != "" {
			info.ClientIP = netip.MustParseAddr(v)
		}
		ir.mu.Lock()
		ir.last = info
		ir.mu.Unlock()
		h.ServeHTTP(w, r.WithContext(reqinfo.With(r.Context(), info)))
	})
}

func (ir *infoRecorder) fields() map[string]string {
	ir.mu.Lock()
	defer ir.mu.Unlock()
	return ir.last.Fields()
}

// env is one test node: front server → gateway route → proxy → origin.
type env struct {
	t      testing.TB
	clock  *clock
	origin *origin
	front  *httptest.Server
	st     *State
	gw     *Gateway
	info   *infoRecorder
	reg    *prometheus.Registry
	keys   *KeyStore
}

type envOpts struct {
	cfg    Config
	route  RouteConfig
	redis  redis.UniversalClient
	keys   *KeyStore
	origin *origin
	now    func() time.Time
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), info: &infoRecorder{}, reg: prometheus.NewRegistry(), keys: o.keys}
	now := o.now
	if now == nil {
		now = e.clock.Now
	}
	if o.origin == nil {
		o.origin = newOrigin(t)
	}
	e.origin = o.origin
	var err error
	e.st, err = NewState(StateOptions{Registerer: e.reg, Keys: o.keys, Redis: o.redis, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	cfg := o.cfg
	if cfg.IdentitySecret == "" {
		cfg.IdentitySecret = testSecret
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if e.gw, err = New(cfg, e.st); err != nil {
		t.Fatal(err)
	}
	rc := o.route
	rc.SetDefaults()
	h, err := e.gw.Handler("api", rc, proxyTo(e.origin.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	e.front = httptest.NewServer(e.info.wrap(h))
	t.Cleanup(e.front.Close)
	return e
}

// do sends a request through the front server.
func (e *env) do(method, path string, hdr map[string]string, body io.Reader) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.front.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.front.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

func bodyOf(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return string(b)
}

// errCode extracts the JSON error code.
func errCode(t testing.TB, resp *http.Response) string {
	t.Helper()
	var b struct {
		Error struct {
			Code      string `json:"code"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(bodyOf(resp)), &b); err != nil {
		t.Fatalf("status %d: body is not the JSON error shape: %q", resp.StatusCode, bodyOf(resp))
	}
	if b.Error.RequestID == "" {
		t.Errorf("error body has no request_id: %s", bodyOf(resp))
	}
	return b.Error.Code
}

// Test keys.
type testKeys struct {
	rsa     *rsa.PrivateKey
	rsaPEM  string
	ec      *ecdsa.PrivateKey
	ecPEM   string
	ed      ed25519.PrivateKey
	edPEM   string
	hmac    []byte
	rsaKID  string
	ecKID   string
	edKID   string
	hmacKID string
}

var (
	keysOnce sync.Once
	sharedKs *testKeys
)

// keys returns test key pairs, generated once per test binary (RSA
// generation is slow under -race).
func keys(t testing.TB) *testKeys {
	keysOnce.Do(func() {
		k := &testKeys{hmac: []byte("hmac-secret-for-tests-0123456789abcdef"), rsaKID: "rsa1", ecKID: "ec1", edKID: "ed1", hmacKID: "hs1"}
		var err error
		if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		k.rsaPEM = pubPEM(k.rsa.Public())
		k.ecPEM = pubPEM(k.ec.Public())
		k.edPEM = pubPEM(k.ed.Public())
		sharedKs = k
	})
	return sharedKs
}

func pubPEM(pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func (k *testKeys) jwtConfig() JWTConfig {
	return JWTConfig{
		Issuers:   []string{"https://auth.demo.test"},
		Audiences: []string{"api.demo.test"},
		Keys: []JWTKeyConfig{
			{KID: k.hmacKID, Alg: "HS256", Secret: string(k.hmac)},
			{KID: k.rsaKID, Alg: "RS256", PublicKeyPEM: k.rsaPEM},
			{KID: k.ecKID, Alg: "ES256", PublicKeyPEM: k.ecPEM},
			{KID: k.edKID, Alg: "EdDSA", PublicKeyPEM: k.edPEM},
		},
	}
}

// claims builds the standard claims, valid at now.
func stdClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"sub":   "alice",
		"iss":   "https://auth.demo.test",
		"aud":   "api.demo.test",
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
		"scope": "posts:read posts:write",
		"roles": []string{"editor"},
		"tier":  "pro",
	}
}

func sign(t testing.TB, method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// redisServer is a real redis-server on a free loopback port
// (internal/redistest), with the names these tests use.
type redisServer struct{ *redistest.Server }

func startRedis(t testing.TB) *redisServer {
	t.Helper()
	return &redisServer{redistest.Start(t)}
}

func (rs *redisServer) addr() string { return rs.Addr }
func (rs *redisServer) start()       { rs.Restart() }
func (rs *redisServer) stop()        { rs.Stop() }

func (rs *redisServer) client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:                  rs.addr(),
		ContextTimeoutEnabled: true,
		DialTimeout:           2 * time.Second,
		ReadTimeout:           2 * time.Second,
		WriteTimeout:          2 * time.Second,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}
