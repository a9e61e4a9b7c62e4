package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
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

// TestHTTPSPortZero: with tls.listen on port 0, Alt-Svc and the port-80
// redirect name the port actually bound, and HTTP/3 answers on it.
func TestHTTPSPortZero(t *testing.T) {
	edgeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	edgeAddr := edgeLn.Addr().String()
	n := newTLSNodeOn(t, edgeLn, edgeAddr, "127.0.0.1:0", edgeAddr)
	if err := n.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	httpsAddr := n.HTTPSAddr().String()
	_, port, _ := net.SplitHostPort(httpsAddr)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(n.TLSManager().RootPEM()) {
		t.Fatal("no internal root")
	}

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "www.demo.test"}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + httpsAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Alt-Svc"), `h3=":`+port+`"; ma=86400`; got != want {
		t.Errorf("Alt-Svc = %q, want %q", got, want)
	}

	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "www.demo.test"}}
	defer h3.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+httpsAddr+"/", nil)
	if resp, err := h3.RoundTrip(req); err != nil {
		t.Errorf("HTTP/3 on the advertised port: %v", err)
	} else {
		resp.Body.Close()
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ = http.NewRequest("GET", "http://"+edgeAddr+"/x", nil)
	req.Host = "www.demo.test"
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Location"), "https://www.demo.test:"+port+"/x"; got != want {
		t.Errorf("redirect Location = %q, want %q", got, want)
	}
}
