package node

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The edge's own HTTP/1.1 server is in front by default, and what it
// hands to net/http is counted: a chunked upload is served (by net/http)
// and shows in outpost_http_fast_path_handoffs_total{reason="request"};
// a plain GET is not counted.
func TestNodeCountsFastPathHandOffs(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got "+string(b))
	}))
	defer up.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	_, base := startNodeWith(t, proxyConfig(up.URL, "  access_log: false"), Options{EdgeListener: ln, Registerer: reg})
	resp, err := http.Get(base + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// An unknown length makes Go's client send the body chunked.
	resp, err = http.Post(base+"/x", "text/plain", io.MultiReader(strings.NewReader("chunked")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "got chunked" {
		t.Fatalf("chunked upload through the edge: %q", b)
	}
	want := `
# HELP outpost_http_fast_path_handoffs_total Connections the edge's own HTTP/1.1 server handed to net/http, by reason: request (not of the fast path's shape), head_size, alpn (HTTP/2).
# TYPE outpost_http_fast_path_handoffs_total counter
outpost_http_fast_path_handoffs_total{reason="request"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "outpost_http_fast_path_handoffs_total"); err != nil {
		t.Fatal(err)
	}
}
