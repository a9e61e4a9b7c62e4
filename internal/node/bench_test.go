package node

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkPassThrough measures one request through the whole edge frame
// (request id, router, metrics, proxy, lb pool) to a loopback origin over
// real keep-alive connections. Compare with BenchmarkDirect, the same
// client straight to the origin.
func BenchmarkPassThrough(b *testing.B) {
	body := strings.Repeat("x", 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	defer up.Close()
	for _, mode := range []string{"upstream", "pool"} {
		b.Run(mode, func(b *testing.B) {
			route := "upstream: " + up.URL
			pools := ""
			if mode == "pool" {
				route = "pool: origin"
				pools = fmt.Sprintf("pools:\n  origin:\n    backends: [{url: %q}, {url: %q, id: b2}]\n", up.URL, up.URL)
			}
			_, base := startNode(b, fmt.Sprintf("node: bench\nedge: {listen: \"127.0.0.1:0\", access_log: false}\n%sroutes:\n  - {name: app, %s}\n", pools, route))
			benchGet(b, base+"/x")
		})
	}
}

// BenchmarkCacheHit is a 1 KiB cache hit through the whole edge frame
// (HTTP/1.1 server, request id, router, metrics, send timeouts, cache).
func BenchmarkCacheHit(b *testing.B) {
	body := strings.Repeat("x", 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		io.WriteString(w, body)
	}))
	defer up.Close()
	_, base := startNode(b, fmt.Sprintf("node: bench\ndata_dir: %s\nedge: {listen: \"127.0.0.1:0\", access_log: false}\nroutes:\n  - {name: app, upstream: %s, cache: {}}\n", b.TempDir(), up.URL))
	// identity: what wrk asks for (bench/http/cache.sh); gzip: what Go's
	// client, and browsers, ask for.
	for _, enc := range []string{"identity", "gzip"} {
		b.Run(enc, func(b *testing.B) { benchGetWith(b, base+"/x", enc) })
	}
}

func BenchmarkDirect(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strings.Repeat("x", 1024)) }))
	defer up.Close()
	benchGet(b, up.URL+"/x")
}

func benchGet(b *testing.B, url string) { benchGetWith(b, url, "") }

// benchGetWith is benchGet with Accept-Encoding: enc ("": Go's default,
// gzip, decoded by the client).
func benchGetWith(b *testing.B, url, enc string) {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequest("GET", url, nil)
			if err != nil {
				b.Error(err)
				return
			}
			if enc != "" {
				req.Header.Set("Accept-Encoding", enc)
			}
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
