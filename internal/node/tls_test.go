package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// TestHTTPSInternalCA runs a node with HTTPS from the internal CA and
// checks the whole edge chain behind HTTP/1.1, HTTP/2 and HTTP/3, the
// port-80 redirect (health probes exempt) and TLS 1.1 refusal.
func TestHTTPSInternalCA(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "proto=%s xfp=%s", r.Proto, r.Header.Get("X-Forwarded-Proto"))
	}))
	defer up.Close()
	// One port number for TCP (HTTPS) and UDP (HTTP/3).
	probe, _ := net.Listen("tcp", "127.0.0.1:0")
	httpsAddr := probe.Addr().String()
	probe.Close()
	dir := t.TempDir()
	// http_listen is the edge listener's address: the edge listener
	// itself redirects to HTTPS.
	edgeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, base := startNodeOn(t, edgeLn, fmt.Sprintf(`node: t
data_dir: %s
edge: {listen: %q}
tls:
  enabled: true
  mode: internal
  listen: %q
  http_listen: %q
  names: [www.demo.test]
routes:
  - name: app
    upstream: %s
    hsts: {enabled: true, max_age: 1h}
`, dir, edgeLn.Addr(), httpsAddr, edgeLn.Addr(), up.URL))
	if n.HTTPSAddr() == nil {
		t.Fatal("no HTTPS listener")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(n.TLSManager().RootPEM()) {
		t.Fatal("no internal root")
	}
	dialTo := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, httpsAddr)
	}
	_, port, _ := net.SplitHostPort(httpsAddr)
	url := "https://www.demo.test:" + port + "/hello"

	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DialContext: dialTo, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
		if err != nil {
			t.Fatalf("h2=%v: %v", h2, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantProto := "HTTP/1.1"
		if h2 {
			wantProto = "HTTP/2.0"
		}
		if resp.Proto != wantProto || !strings.Contains(string(body), "xfp=https") {
			t.Errorf("h2=%v: %s %q", h2, resp.Proto, body)
		}
		if resp.Header.Get("Alt-Svc") == "" || !strings.Contains(resp.Header.Get("Strict-Transport-Security"), "max-age=3600") {
			t.Errorf("h2=%v: Alt-Svc %q, HSTS %q", h2, resp.Header.Get("Alt-Svc"), resp.Header.Get("Strict-Transport-Security"))
		}
	}

	// HTTP/3 over QUIC on the same port.
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "www.demo.test"}}
	defer h3.Close()
	req, _ := http.NewRequest("GET", "https://"+httpsAddr+"/hello", nil)
	req.Host = "www.demo.test"
	resp, err := (&http.Client{Transport: h3, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("http/3: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 3 || !strings.Contains(string(body), "xfp=https") {
		t.Errorf("http/3: %s %q", resp.Proto, body)
	}

	// TLS 1.1 is refused.
	c, err := tls.Dial("tcp", httpsAddr, &tls.Config{RootCAs: pool, ServerName: "www.demo.test", MaxVersion: tls.VersionTLS11})
	if err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}

	// The edge listener redirects to HTTPS, except health probes.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ = http.NewRequest("POST", base+"/x?y=1", nil)
	req.Host = "www.demo.test"
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 308 || resp.Header.Get("Location") != "https://www.demo.test:"+port+"/x?y=1" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = noRedirect.Get(base + "/_outpost/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("health over plain HTTP: %d", resp.StatusCode)
	}
}

// TestRouteHSTS: a route's HSTS policy replaces the node-wide one on all
// its HTTPS answers, the gateway's rejections included, and a route can
// switch a node-wide policy off.
func TestRouteHSTS(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	n, _ := startNode(t, fmt.Sprintf(`node: t
data_dir: %s
edge: {listen: 127.0.0.1:0}
tls:
  enabled: true
  mode: internal
  listen: 127.0.0.1:0
  http_listen: "off"
  names: [www.demo.test]
  hsts: {enabled: true, max_age: 2h}
gateway: {}
routes:
  - name: api
    path_prefix: /api/
    upstream: %[2]s
    hsts: {enabled: true, max_age: 1h}
    gateway:
      auth: {mode: required, methods: [api_key]}
  - name: limited
    path_prefix: /limited/
    upstream: %[2]s
    hsts: {enabled: true, max_age: 1h, include_subdomains: true}
    gateway:
      auth: {mode: none}
      rate_limit: {requests: 1, window: 1m, burst: 1}
  - name: legacy
    path_prefix: /legacy/
    upstream: %[2]s
    hsts: {enabled: false}
  - name: app
    upstream: %[2]s
`, t.TempDir(), up.URL))
	_, h2 := internalH2(t, n)
	c := &http.Client{Transport: h2, Timeout: 10 * time.Second}
	for _, tc := range []struct {
		path   string
		status int
		want   string
	}{
		{"/api/x", 401, "max-age=3600"}, // the gateway's rejection
		{"/limited/x", 200, "max-age=3600; includeSubDomains"},
		{"/limited/x", 429, "max-age=3600; includeSubDomains"},
		{"/legacy/x", 200, ""},
		{"/x", 200, "max-age=7200"},
		{"/_outpost/healthz", 200, "max-age=7200"},
	} {
		req, _ := http.NewRequest("GET", "https://www.demo.test"+tc.path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Strict-Transport-Security") != tc.want {
			t.Errorf("GET %s: %d with HSTS %q, want %d with %q", tc.path, resp.StatusCode,
				resp.Header.Get("Strict-Transport-Security"), tc.status, tc.want)
		}
	}
}

// internalH2 is an HTTP/2 client transport for www.demo.test that trusts
// n's internal CA and dials n's HTTPS listener whatever the URL names.
func internalH2(t *testing.T, n *Node) (*x509.CertPool, *http.Transport) {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(n.TLSManager().RootPEM()) {
		t.Fatal("no internal root")
	}
	addr := n.HTTPSAddr().String()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: "www.demo.test"},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return roots, tr
}

// HTTPS connections that negotiate HTTP/2 are served by the edge's own
// HTTP/2 server (edge.fast_http2, the default), or by net/http's with
// fast_http2: false; the chain behind is the same either way.
func TestHTTPSServesHTTP2(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xfp=%s", r.Header.Get("X-Forwarded-Proto"))
	}))
	defer up.Close()
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_http2=%v", fast), func(t *testing.T) {
			n, _ := startNode(t, fmt.Sprintf(`node: t
data_dir: %s
edge: {listen: 127.0.0.1:0, fast_http2: %v}
tls:
  enabled: true
  mode: internal
  listen: 127.0.0.1:0
  http_listen: "off"
  http3: false
  names: [www.demo.test]
routes:
  - name: app
    upstream: %s
`, t.TempDir(), fast, up.URL))
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(n.TLSManager().RootPEM())
			addr := n.HTTPSAddr().String()
			tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "www.demo.test"}}
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest("GET", "https://"+addr+"/x", nil)
			req.Host = "www.demo.test"
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || string(body) != "xfp=https" {
				t.Fatalf("%s %q", resp.Proto, body)
			}
			h2 := n.sub.tls.h2
			if fast != (h2 != nil) {
				t.Fatalf("fast_http2=%v but the edge's HTTP/2 server is %v", fast, h2)
			}
			if fast && h2.Conns() != 1 {
				// The client keeps its connection: it is the edge's.
				t.Errorf("edge HTTP/2 server has %d connections, want 1", h2.Conns())
			}
		})
	}
}
