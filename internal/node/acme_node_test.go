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
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/outpost-edge/outpost/internal/acmetest"
	"github.com/outpost-edge/outpost/internal/redistest"
)

// TestACMEWildcardThroughNodeDNS builds a node from YAML whose own DNS
// serves example.test and whose HTTPS side orders *.example.test from
// Pebble with dns-01 only: the challenge record must go into the node's
// DNS (the wiring of tlsedge.RecordServerTXT), where Pebble's VA reads it.
func TestACMEWildcardThroughNodeDNS(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin host=%s xfp=%s", r.Host, r.Header.Get("X-Forwarded-Proto"))
	}))
	defer up.Close()
	dnsAddr := freeTCPUDPAddr(t)
	p := acmetest.Start(t, acmetest.Options{Resolver: dnsAddr})
	roots := p.Roots
	n, _ := startNode(t, acmeNodeYAML(t.TempDir(), dnsAddr, p, up.URL, ""))

	waitCertificate(t, n)
	// The challenge record was removed from the node's DNS after validation.
	for _, rr := range n.DNS().Records("example.test") {
		if rr.Header().Rrtype == mdns.TypeTXT {
			t.Errorf("challenge record left in the node's DNS: %s", rr)
		}
	}

	addr := n.HTTPSAddr().String()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	resp, err := c.Get("https://api.example.test/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "origin host=api.example.test xfp=https" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	leaf := resp.TLS.PeerCertificates[0]
	if !slices.Contains(leaf.DNSNames, "*.example.test") {
		t.Fatalf("served certificate for %v, want *.example.test", leaf.DNSNames)
	}
	inter := x509.NewCertPool()
	for _, ic := range resp.TLS.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "api.example.test", Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("chain to Pebble's root: %v", err)
	}
}

// acmeNodeYAML is a node whose own DNS (on dnsAddr) serves example.test
// and whose HTTPS side orders *.example.test from p with dns-01 only;
// redisAddr, when set, is the node's Redis, which holds its certificate
// storage.
func acmeNodeYAML(dataDir, dnsAddr string, p *acmetest.CA, upstream, redisAddr string) string {
	extra, tlsExtra := "", ""
	if redisAddr != "" {
		extra = fmt.Sprintf("redis: {addr: %q}\n", redisAddr)
		tlsExtra = "  redis: {enabled: true, key_prefix: \"t:\"}\n"
	}
	return fmt.Sprintf(`node: t
data_dir: %s
edge: {listen: 127.0.0.1:0}
dns:
  listen: [%q]
  zones:
    - origin: example.test
      records: ["@ 60 IN A 127.0.0.1", "* 60 IN A 127.0.0.1"]
  health: {disabled: true}
  rrl: {disabled: true}
tls:
  enabled: true
  mode: acme
  listen: 127.0.0.1:0
  http_listen: "off"
  names: ["*.example.test"]
  acme:
    directory: %s
    email: ops@example.test
    ca_root: %s
    challenges: [dns-01]
    dns01: {resolvers: [%q]}
%sroutes:
  - name: api
    hosts: [api.example.test]
    upstream: %s
%s`, dataDir, dnsAddr, p.Directory, p.ServerPEM, dnsAddr, tlsExtra, upstream, extra)
}

// waitCertificate waits until n's one certificate is valid.
func waitCertificate(t *testing.T, n *Node) {
	t.Helper()
	mgr := n.TLSManager()
	deadline := time.Now().Add(60 * time.Second)
	for {
		cs := mgr.Certificates()
		if len(cs) == 1 && cs[0].Status == "valid" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate after 60s: %+v", cs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestACMESharedStorageThroughNode: a node with tls.redis keeps its
// certificate in the top-level Redis; a second node with the same Redis
// and names serves that certificate without ordering one.
func TestACMESharedStorageThroughNode(t *testing.T) {
	srv := redistest.Start(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	dnsAddr := freeTCPUDPAddr(t)
	p := acmetest.Start(t, acmetest.Options{Resolver: dnsAddr})
	a, _ := startNode(t, acmeNodeYAML(t.TempDir(), dnsAddr, p, up.URL, srv.Addr))
	waitCertificate(t, a)
	keys, err := srv.Client().Keys(t.Context(), "t:f/certificates/*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(keys, func(k string) bool { return strings.HasSuffix(k, ".crt") }) {
		t.Fatalf("no certificate in Redis under the key prefix: %v", keys)
	}

	b, _ := startNode(t, acmeNodeYAML(t.TempDir(), freeTCPUDPAddr(t), p, up.URL, srv.Addr))
	waitCertificate(t, b)
	if n := p.Orders(); n != 1 {
		t.Fatalf("%d orders for two nodes sharing storage, want 1", n)
	}
	serial := func(n *Node) string {
		c, err := tls.Dial("tcp", n.HTTPSAddr().String(), &tls.Config{ServerName: "api.example.test", RootCAs: p.Roots})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if serial(a) != serial(b) {
		t.Fatal("the two nodes serve different certificates")
	}
}
