package node

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// TestHTTPSChainH2H3 puts the whole edge chain (router, gateway, cache,
// lb pool of two real backends) behind the node's HTTPS listener (internal
// CA) and checks it over HTTP/2 and HTTP/3: the cached route answers MISS
// then HIT, the gateway route 401 without an API key and 200 with one,
// served by the pool, and both backends get traffic.
func TestHTTPSChainH2H3(t *testing.T) {
	var hits [2]atomic.Int64
	var backends [2]*httptest.Server
	for i := range backends {
		backends[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			if strings.HasPrefix(r.URL.Path, "/static/") {
				w.Header().Set("Cache-Control", "public, max-age=60")
			}
			if r.Header.Get("X-API-Key") != "" {
				w.WriteHeader(500) // the gateway must not forward the key
			}
			fmt.Fprintf(w, "backend=%d path=%s xfp=%s", i, r.URL.Path, r.Header.Get("X-Forwarded-Proto"))
		}))
		defer backends[i].Close()
	}
	const key = "test-key-0123456789"
	sum := sha256.Sum256([]byte(key))
	dir := t.TempDir()
	n, _ := startNode(t, fmt.Sprintf(`node: t
data_dir: %s
edge: {listen: 127.0.0.1:0}
tls:
  enabled: true
  mode: internal
  listen: 127.0.0.1:0
  http_listen: "off"
  names: [www.demo.test]
gateway:
  api_keys:
    - {id: tester, hash: %s, owner: tester}
pools:
  api:
    policy: round_robin
    backends:
      - url: %s
      - url: %s
routes:
  - name: api
    hosts: [www.demo.test]
    path_prefix: /api/
    pool: api
    gateway:
      auth: {mode: required, methods: [api_key]}
  - name: static
    hosts: [www.demo.test]
    path_prefix: /static/
    pool: api
    cache: {}
`, dir, hex.EncodeToString(sum[:]), backends[0].URL, backends[1].URL))

	roots, h2 := internalH2(t, n)
	addr := n.HTTPSAddr().String()
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "www.demo.test"}}
	defer h3.Close()

	for _, tc := range []struct {
		proto string
		rt    http.RoundTripper
		major int
	}{{"h2", h2, 2}, {"h3", h3, 3}} {
		t.Run(tc.proto, func(t *testing.T) {
			c := &http.Client{Transport: tc.rt, Timeout: 10 * time.Second}
			get := func(path, apiKey string) (*http.Response, string) {
				t.Helper()
				req, _ := http.NewRequest("GET", "https://"+addr+path, nil)
				req.Host = "www.demo.test"
				if apiKey != "" {
					req.Header.Set("X-API-Key", apiKey)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != tc.major {
					t.Fatalf("GET %s: %s, want HTTP/%d", path, resp.Proto, tc.major)
				}
				return resp, string(body)
			}

			// Cache: MISS, then HIT with the same body.
			path := "/static/" + tc.proto + ".css"
			resp, first := get(path, "")
			if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "MISS" || !strings.Contains(first, "xfp=https") {
				t.Fatalf("first %s: %d %q %q", path, resp.StatusCode, resp.Header.Get("X-Cache"), first)
			}
			before := hits[0].Load() + hits[1].Load()
			resp, second := get(path, "")
			if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "HIT" || second != first {
				t.Fatalf("second %s: %d %q %q (first %q)", path, resp.StatusCode, resp.Header.Get("X-Cache"), second, first)
			}
			if after := hits[0].Load() + hits[1].Load(); after != before {
				t.Fatalf("a HIT reached the backends (%d -> %d requests)", before, after)
			}

			// Gateway: 401 without a key (and nothing reaches the pool),
			// 401 with a wrong one, 200 from the pool with the right one.
			before = hits[0].Load() + hits[1].Load()
			for _, k := range []string{"", "wrong-key"} {
				resp, body := get("/api/items", k)
				if resp.StatusCode != 401 {
					t.Fatalf("key %q: %d %q, want 401", k, resp.StatusCode, body)
				}
			}
			if after := hits[0].Load() + hits[1].Load(); after != before {
				t.Fatalf("refused requests reached the backends (%d -> %d)", before, after)
			}
			seen := map[string]bool{}
			for range 4 {
				resp, body := get("/api/items", key)
				if resp.StatusCode != 200 || !strings.Contains(body, "path=/api/items xfp=https") {
					t.Fatalf("with key: %d %q", resp.StatusCode, body)
				}
				seen[strings.Fields(body)[0]] = true
			}
			if !seen["backend=0"] || !seen["backend=1"] {
				t.Fatalf("round robin over 4 requests reached %v, want both backends", seen)
			}
		})
	}
	if hits[0].Load() == 0 || hits[1].Load() == 0 {
		t.Fatalf("backend hits %d / %d, want both > 0", hits[0].Load(), hits[1].Load())
	}
}
