package node

import (
	"net"
	"net/http"
	"strconv"
	"testing"
)

func TestSameListenAddr(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{":80", ":80", true},
		{":80", "0.0.0.0:80", true},
		{"0.0.0.0:80", "[::]:80", true},
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"[::1]:80", "[0:0:0:0:0:0:0:1]:80", true},
		{":80", ":8080", false},
		{"127.0.0.1:80", "127.0.0.2:80", false},
		{"127.0.0.1:80", "0.0.0.0:80", false},
		{":0", ":0", false},
		{"127.0.0.1:0", "127.0.0.1:0", false},
		{"", ":80", false},
	}
	for _, tc := range tests {
		if got := sameListenAddr(tc.a, tc.b); got != tc.same {
			t.Errorf("sameListenAddr(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.same)
		}
		if got := sameListenAddr(tc.b, tc.a); got != tc.same {
			t.Errorf("sameListenAddr(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.same)
		}
	}
}

// TestHTTPListenSameAsEdge: an http_listen spelled differently from
// edge.listen but naming the same socket makes the edge listener the
// redirecting side instead of binding the port twice; two port-0
// addresses are two listeners.
func TestHTTPListenSameAsEdge(t *testing.T) {
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(t *testing.T, url string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = "www.demo.test"
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	t.Run("0.0.0.0:port and :port", func(t *testing.T) {
		edgeLn, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(edgeLn.Addr().(*net.TCPAddr).Port)
		n := newTLSNodeOn(t, edgeLn, "0.0.0.0:"+port, freeTCPUDPAddr(t), ":"+port)
		if err := n.Start(); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if code := get(t, "http://127.0.0.1:"+port+"/x"); code != http.StatusPermanentRedirect {
			t.Fatalf("edge listener answered %d, want the 308 redirect to HTTPS", code)
		}
	})
	t.Run("two port-0 addresses", func(t *testing.T) {
		n := newTLSNode(t, freeTCPUDPAddr(t), "127.0.0.1:0")
		if err := n.Start(); err != nil {
			t.Fatalf("Start: %v", err)
		}
		// The edge listener still serves the chain (the upstream is
		// down: 502); redirects are on a listener of their own.
		if code := get(t, "http://"+n.Addr().String()+"/x"); code == http.StatusPermanentRedirect {
			t.Fatalf("edge listener redirects: 127.0.0.1:0 was taken for edge.listen's 127.0.0.1:0")
		}
	})
}
