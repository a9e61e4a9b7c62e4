package tlsedge

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/dns"
)

// startOutpostDNS runs Outpost's own authoritative DNS (package dns) on a
// fresh 127.0.0.1 port, UDP and TCP, serving example.test with every test
// name pointing at 127.0.0.1. It returns the server (its runtime records
// API backs dns-01) and its address.
func startOutpostDNS(t *testing.T) (*dns.Server, string) {
	t.Helper()
	cfg := dns.Config{Zones: []dns.ZoneConfig{{
		Origin: "example.test",
		Records: []string{
			"@ 60 IN A 127.0.0.1",
			"* 60 IN A 127.0.0.1",
		},
	}}}
	cfg.RRL.Disabled = true // tests send bursts from one address
	cfg.Health.Disabled = true
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("dns config: %v", err)
	}
	s, err := dns.New(cfg, nil, dns.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("dns.New: %v", err)
	}
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; i < 20 && ln == nil; i++ {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			ln = nil
		}
	}
	if ln == nil {
		t.Fatal("no free UDP+TCP port pair")
	}
	if err := s.Serve([]net.PacketConn{pc}, []net.Listener{ln}); err != nil {
		t.Fatalf("dns Serve: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, pc.LocalAddr().String()
}
