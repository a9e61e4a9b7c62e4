package node

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/config"
)

// newTLSNode builds (but does not start) a node with HTTPS from the
// internal CA on tlsListen, its plain-HTTP side on httpListen.
func newTLSNode(t *testing.T, tlsListen, httpListen string, extra ...string) *Node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return newTLSNodeOn(t, ln, "127.0.0.1:0", tlsListen, httpListen, extra...)
}

// newTLSNodeOn is newTLSNode with edgeLn as the edge listener and
// edgeListen as edge.listen.
func newTLSNodeOn(t *testing.T, edgeLn net.Listener, edgeListen, tlsListen, httpListen string, extra ...string) *Node {
	t.Helper()
	yaml := fmt.Sprintf(`node: t
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
    upstream: http://127.0.0.1:9
`, t.TempDir(), edgeListen, tlsListen, httpListen) + strings.Join(extra, "")
	cfg, err := config.Parse("test.yaml", []byte(yaml), "", func(string) (string, bool) { return "", false })
	if err != nil {
		edgeLn.Close()
		t.Fatalf("config: %v", config.Format(err))
	}
	n, err := New(cfg, Options{EdgeListener: edgeLn})
	if err != nil {
		edgeLn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return n
}

// freeTCPUDPAddr returns a 127.0.0.1 address whose port is free for both
// TCP and UDP (HTTPS and HTTP/3 share it).
func freeTCPUDPAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		ln, err := net.Listen("tcp", addr)
		pc.Close()
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free TCP+UDP port")
	return ""
}

// assertBindable checks that nothing holds addr any more.
func assertBindable(t *testing.T, network, addr string) {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatalf("%s %s still held after the failed start: %v", network, addr, err)
		}
		pc.Close()
		return
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("%s %s still held after the failed start: %v", network, addr, err)
	}
	ln.Close()
}

// TestTLSStartFailureReleasesListeners makes a later listener of the
// HTTPS side fail to bind and checks that Start closes the ones it had
// already opened (HTTPS over TCP, HTTP/3 over UDP).
func TestTLSStartFailureReleasesListeners(t *testing.T) {
	t.Run("plain HTTP port busy", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		httpsAddr := freeTCPUDPAddr(t)
		n := newTLSNode(t, httpsAddr, busy.Addr().String())
		err = n.Start()
		if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
			t.Fatalf("Start = %v, want the busy plain-HTTP address reported", err)
		}
		assertBindable(t, "tcp", httpsAddr)
		assertBindable(t, "udp", httpsAddr)
	})
	t.Run("DNS started before TLS failed", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		dnsAddr := freeTCPUDPAddr(t)
		n := newTLSNode(t, freeTCPUDPAddr(t), busy.Addr().String(), fmt.Sprintf(`dns:
  listen: [%q]
  zones:
    - origin: example.com
      records: ["www 300 IN A 192.0.2.1"]
  health: {disabled: true}
`, dnsAddr))
		if err := n.Start(); err == nil {
			t.Fatal("Start succeeded with the plain-HTTP port taken")
		}
		assertBindable(t, "udp", dnsAddr)
		assertBindable(t, "tcp", dnsAddr)
	})
	t.Run("HTTP/3 port busy", func(t *testing.T) {
		httpsAddr := freeTCPUDPAddr(t)
		busy, err := net.ListenPacket("udp", httpsAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		n := newTLSNode(t, httpsAddr, "127.0.0.1:0")
		if err := n.Start(); err == nil || !strings.Contains(err.Error(), "http/3") {
			t.Fatalf("Start = %v, want the HTTP/3 listen error", err)
		}
		assertBindable(t, "tcp", httpsAddr)
	})
}
