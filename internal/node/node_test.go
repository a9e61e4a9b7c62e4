package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/origin/identity"
)

// startNode runs a node from YAML on 127.0.0.1:0 and returns its base URL.
func startNode(t testing.TB, yaml string) (*Node, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startNodeOn(t, ln, yaml)
}

// startNodeOn runs a node from YAML with ln as its edge listener.
func startNodeOn(t testing.TB, ln net.Listener, yaml string) (*Node, string) {
	t.Helper()
	return startNodeWith(t, yaml, Options{EdgeListener: ln})
}

// startNodeWith starts a node of yaml with o (o.EdgeListener set).
func startNodeWith(t testing.TB, yaml string, o Options) (*Node, string) {
	t.Helper()
	ln := o.EdgeListener
	cfg, err := config.Parse("test.yaml", []byte(yaml), "", func(string) (string, bool) { return "", false })
	if err != nil {
		ln.Close()
		t.Fatalf("config: %v", config.Format(err))
	}
	n, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	return n, "http://" + ln.Addr().String()
}

func proxyConfig(upstream string, extra string) string {
	return fmt.Sprintf(`node: test
data_dir: %s
edge:
  listen: 127.0.0.1:0
%s
routes:
  - name: app
    upstream: %s
`, "/tmp", extra, upstream)
}

func TestProxyForwardingHeaders(t *testing.T) {
	var got http.Header
	var gotHost string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		gotHost = r.Host
		w.Header().Set("Connection", "X-Hop-Resp")
		w.Header().Set("X-Hop-Resp", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End", "kept")
		io.WriteString(w, "hello")
	}))
	defer up.Close()
	_, base := startNode(t, proxyConfig(up.URL, ""))

	req, _ := http.NewRequest("GET", base+"/x?y=1", nil)
	req.Host = "www.example.com"
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("Forwarded", "for=6.6.6.6")
	req.Header.Set("X-Request-ID", "spoofed-id")
	req.Header.Set("Connection", "X-Hop-Req")
	req.Header.Set("X-Hop-Req", "drop me")
	req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
	req.Header.Set("X-End-To-End", "keep me")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("body %q", body)
	}
	checks := []struct{ name, got, want string }{
		{"upstream Host", gotHost, "www.example.com"},
		{"X-Forwarded-For", got.Get("X-Forwarded-For"), "127.0.0.1"},
		{"X-Forwarded-Host", got.Get("X-Forwarded-Host"), "www.example.com"},
		{"X-Forwarded-Proto", got.Get("X-Forwarded-Proto"), "http"},
		{"Forwarded", got.Get("Forwarded"), ""},
		{"Via", got.Get("Via"), "1.1 test"},
		{"X-Hop-Req", got.Get("X-Hop-Req"), ""},
		{"Proxy-Authorization", got.Get("Proxy-Authorization"), ""},
		{"X-End-To-End", got.Get("X-End-To-End"), "keep me"},
		{"response X-Hop-Resp", resp.Header.Get("X-Hop-Resp"), ""},
		{"response Keep-Alive", resp.Header.Get("Keep-Alive"), ""},
		{"response X-End", resp.Header.Get("X-End"), "kept"},
		{"response Via", resp.Header.Get("Via"), "1.1 test"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	id := got.Get("X-Request-ID")
	if id == "" || id == "spoofed-id" || resp.Header.Get("X-Request-ID") != id {
		t.Errorf("request id: upstream %q, response %q; want a fresh id on both", id, resp.Header.Get("X-Request-ID"))
	}
}

func TestTrustedProxyHeadersKept(t *testing.T) {
	var got http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
	}))
	defer up.Close()
	_, base := startNode(t, proxyConfig(up.URL, "  trusted_proxies: [127.0.0.0/8]"))
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Request-ID", "abc-123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if g := got.Get("X-Forwarded-For"); g != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", g)
	}
	if g := got.Get("X-Forwarded-Proto"); g != "https" {
		t.Errorf("X-Forwarded-Proto = %q", g)
	}
	if g := got.Get("X-Request-ID"); g != "abc-123" {
		t.Errorf("X-Request-ID = %q, want the trusted proxy's", g)
	}
}

// TestStreamingBody sends 64 MiB through the proxy from a generator and
// checks the upstream starts receiving before the client has finished
// sending, i.e. nothing buffers the whole body.
func TestStreamingBody(t *testing.T) {
	const size = 64 << 20
	firstByte := make(chan struct{})
	var sum [32]byte
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		buf := make([]byte, 1)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Error(err)
			return
		}
		close(firstByte)
		h.Write(buf)
		n, _ := io.Copy(h, r.Body)
		copy(sum[:], h.Sum(nil))
		fmt.Fprintf(w, "%d %s", n+1, r.Trailer.Get("X-Checksum"))
	}))
	defer up.Close()
	_, base := startNode(t, proxyConfig(up.URL, ""))

	pr, pw := io.Pipe()
	want := sha256.New()
	go func() {
		chunk := make([]byte, 1<<20)
		rand.Read(chunk)
		pw.Write(chunk[:1])
		want.Write(chunk[:1])
		// Hold the rest until the upstream has seen the first byte: a
		// buffering proxy would deadlock here (and the test time out).
		<-firstByte
		left := size - 1
		for left > 0 {
			n := min(left, len(chunk))
			pw.Write(chunk[:n])
			want.Write(chunk[:n])
			left -= n
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", base+"/upload", pr)
	req.Trailer = http.Header{"X-Checksum": nil}
	go func() { <-firstByte; req.Trailer.Set("X-Checksum", "trailer-ok") }()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := string(body); got != fmt.Sprintf("%d trailer-ok", size) {
		t.Errorf("upstream saw %q", got)
	}
	if !bytes.Equal(sum[:], want.Sum(nil)) {
		t.Error("body corrupted in transit")
	}
}

func TestUpstreamErrors(t *testing.T) {
	// A listener that accepts and never answers: the route timeout fires.
	hang, _ := net.Listen("tcp", "127.0.0.1:0")
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()

	cfg := fmt.Sprintf(`node: t
edge: {listen: "127.0.0.1:0"}
routes:
  - {name: hang, path_prefix: /hang, upstream: "http://%s", timeout: 300ms}
  - {name: dead, path_prefix: /dead, upstream: "http://%s"}
`, hang.Addr(), deadAddr)
	_, base := startNode(t, cfg)
	for _, c := range []struct {
		path   string
		status int
		code   string
	}{
		{"/hang", 504, "upstream_timeout"},
		{"/dead", 502, "bad_gateway"},
		{"/nothing-here", 404, "no_route"},
	} {
		resp, err := http.Get(base + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(body), `"code":"`+c.code+`"`) ||
			!strings.Contains(string(body), resp.Header.Get("X-Request-ID")) {
			t.Errorf("%s: %d %s", c.path, resp.StatusCode, body)
		}
	}
}

// TestReloadUnderLoad swaps configs while clients hammer the node: no
// request may fail, and the new upstream takes over.
func TestReloadUnderLoad(t *testing.T) {
	mk := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		}))
	}
	a, b := mk("a"), mk("b")
	defer a.Close()
	defer b.Close()
	n, base := startNode(t, proxyConfig(a.URL, ""))

	var failed, total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Get(base + "/")
				total.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		up := a.URL
		if i%2 == 0 {
			up = b.URL
		}
		cfg, err := config.Parse("t.yaml", []byte(proxyConfig(up, "")), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || total.Load() == 0 {
		t.Fatalf("%d of %d requests failed during reloads", failed.Load(), total.Load())
	}
	if n.Generation() != 21 {
		t.Errorf("generation = %d, want 21", n.Generation())
	}
	resp, _ := http.Get(base + "/")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "a" {
		t.Errorf("after reloads served by %q, want a", body)
	}
}

func TestGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "done")
	}))
	defer up.Close()
	n, base := startNode(t, proxyConfig(up.URL, ""))

	result := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			result <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- string(b)
	}()
	time.Sleep(100 * time.Millisecond) // let the request reach the upstream
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- n.Shutdown(ctx)
	}()
	// New connections are refused once shutdown has begun.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after Shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if got := <-result; got != "done" {
		t.Errorf("in-flight request got %q", got)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// The gateway's signed identity must verify at an origin reached through a
// pool whose backend URL has a path prefix: the signature covers the path
// the origin sees, not the one the gateway forwarded.
func TestIdentityVerifiesThroughBackendPathPrefix(t *testing.T) {
	secret := "node-test-identity-secret-0123456789"
	type seen struct {
		path string
		err  error
		user string
	}
	got := make(chan seen, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := identity.Verify(r, []byte(secret), time.Now(), time.Minute)
		s := seen{path: r.URL.Path, err: err}
		if id != nil {
			s.user = id.User
		}
		got <- s
	}))
	defer up.Close()
	yaml := fmt.Sprintf(`node: test
data_dir: %s
edge:
  listen: 127.0.0.1:0
pools:
  api:
    backends:
      - {id: a, url: "%s/svc"}
gateway:
  identity_secret: %s
routes:
  - name: api
    pool: api
    gateway:
      strip_prefix: /v1
      auth: {mode: none}
`, t.TempDir(), up.URL, secret)
	_, base := startNode(t, yaml)
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/v1/items/7", "/svc/items/7"},
		{"DELETE", "/v1/items/7", "/svc/items/7"},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: status %d", tc.method, tc.path, resp.StatusCode)
		}
		s := <-got
		if s.path != tc.want {
			t.Errorf("%s %s: origin saw %q, want %q", tc.method, tc.path, s.path, tc.want)
		}
		if s.err != nil {
			t.Errorf("%s %s: identity at the origin: %v", tc.method, tc.path, s.err)
		}
	}
}

// The signature covers the query too (identity v2): it must still verify
// when the query the origin sees is only final after the gateway injected
// a parameter and the upstream URL added its own (same path, so only the
// query tells the gateway to sign again).
func TestIdentityVerifiesWithUpstreamQuery(t *testing.T) {
	secret := "node-test-identity-secret-0123456789"
	type seen struct {
		query string
		err   error
	}
	got := make(chan seen, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := identity.Verify(r, []byte(secret), time.Now(), time.Minute)
		got <- seen{query: r.URL.RawQuery, err: err}
	}))
	defer up.Close()
	_, base := startNode(t, fmt.Sprintf(`node: test
data_dir: %s
edge:
  listen: 127.0.0.1:0
gateway:
  identity_secret: %s
routes:
  - name: api
    upstream: "%s?tenant=t1"
    gateway:
      auth: {mode: none}
      request: {query: {v: "2"}}
`, t.TempDir(), secret, up.URL))
	resp, err := http.Get(base + "/items?page=3")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := <-got
	if s.query != "tenant=t1&page=3&v=2" {
		t.Errorf("origin saw query %q, want tenant=t1&page=3&v=2", s.query)
	}
	if s.err != nil {
		t.Errorf("identity at the origin: %v", s.err)
	}
}
