package dns

import (
	"context"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestUDPSockets serves a wildcard socket (replies must come from the
// address each query was sent to) and an IPv6 loopback socket (batch path).
func TestUDPSockets(t *testing.T) {
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	s, err := New(cfg, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wild, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	pcs := []net.PacketConn{wild}
	v6, err := net.ListenPacket("udp6", "[::1]:0")
	if err == nil {
		pcs = append(pcs, v6)
	} else {
		t.Logf("no IPv6 loopback (%v): testing IPv4 only", err)
	}
	if err := s.Serve(pcs, nil); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	port := wild.LocalAddr().(*net.UDPAddr).Port
	targets := []*net.UDPAddr{{IP: net.IPv4(127, 0, 0, 1), Port: port}, {IP: net.IPv4(127, 0, 0, 2), Port: port}}
	if v6 != nil {
		targets = append(targets, v6.LocalAddr().(*net.UDPAddr))
	}
	for _, to := range targets {
		// A connected socket drops replies from any other source address.
		c, err := net.DialUDP("udp", nil, to)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ { // full path, then the cached fast path
			b, _ := newQuery("www.example.com.", mdns.TypeA).Pack()
			c.Write(b)
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 1500)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("%s: no reply from the queried address: %v", to, err)
			}
			var r mdns.Msg
			if err := r.Unpack(buf[:n]); err != nil || len(r.Answer) != 1 {
				t.Fatalf("%s: %v %v", to, err, r.Answer)
			}
		}
		c.Close()
	}
}
