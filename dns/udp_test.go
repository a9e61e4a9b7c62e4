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

// TestUDPBatch sends bursts larger than one recvmmsg batch from many
// sockets at once: every query gets its own answer at its own address, and
// an oversized datagram (truncated by the kernel) is dropped without
// disturbing the rest.
func TestUDPBatch(t *testing.T) {
	to := serveLoopbackUDP(t)

	big, err := net.DialUDP("udp", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	huge := make([]byte, maxQuerySize+500)
	copy(huge, func() []byte { b, _ := newQuery("www.example.com.", mdns.TypeA).Pack(); return b }())
	big.Write(huge)

	const clients, each = 40, 3
	names := []string{"www.example.com.", "nope.example.com.", "example.com."}
	conns := make([]*net.UDPConn, clients)
	for i := range conns {
		c, err := net.DialUDP("udp", nil, to)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for j := 0; j < each; j++ {
		for i, c := range conns {
			q := newQuery(names[j], mdns.TypeA)
			q.Id = uint16(i*each + j)
			b, _ := q.Pack()
			c.Write(b)
		}
	}
	for i, c := range conns {
		seen := map[uint16]bool{}
		for j := 0; j < each; j++ {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 1500)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("client %d: reply %d: %v", i, j, err)
			}
			var r mdns.Msg
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			k := int(r.Id) - i*each
			if k < 0 || k >= each || seen[r.Id] || r.Question[0].Name != names[k] {
				t.Fatalf("client %d got a reply not its own: id %d %v", i, r.Id, r.Question)
			}
			seen[r.Id] = true
		}
	}
	big.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := big.Read(make([]byte, 1500)); err == nil {
		t.Fatalf("oversized datagram answered (%d bytes)", n)
	}
}

// BenchmarkUDPRoundTrip is one query and its answer over a real loopback
// socket through the batch loop and the fast path (client cost included).
func BenchmarkUDPRoundTrip(b *testing.B) {
	c, err := net.DialUDP("udp", nil, serveLoopbackUDP(b))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	q, _ := newQuery("www.example.com.", mdns.TypeA).Pack()
	buf := make([]byte, 1500)
	b.ReportAllocs()
	for b.Loop() {
		c.Write(q)
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// serveLoopbackUDP serves example.com on one UDP socket on 127.0.0.1 (the
// batch path) until the test ends.
func serveLoopbackUDP(tb testing.TB) *net.UDPAddr {
	tb.Helper()
	s, err := New(testConfig(ZoneConfig{File: testdata("example.com.zone")}), nil, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Serve([]net.PacketConn{pc}, nil); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return pc.LocalAddr().(*net.UDPAddr)
}
