package dns

import (
	"net"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// benchServe measures one query through the whole answer path: unpack,
// answer, pack (no sockets). Run with -benchmem for allocations per answer.
func benchServe(b *testing.B, m *mdns.Msg) {
	s := fuzzServer(b)
	q, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	w := &memWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}, out: make([]byte, 0, 4096)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := new(mdns.Msg)
		if err := req.Unpack(q); err != nil {
			b.Fatal(err)
		}
		s.ServeDNS(w, req)
	}
	if w.n != b.N {
		b.Fatalf("%d answers for %d queries", w.n, b.N)
	}
}

func BenchmarkAnswerStatic(b *testing.B) {
	benchServe(b, newQuery("www.example.com.", mdns.TypeA))
}

func BenchmarkAnswerStaticEDNS(b *testing.B) {
	m := newQuery("www.example.com.", mdns.TypeA)
	m.SetEdns0(1232, false)
	benchServe(b, m)
}

func BenchmarkAnswerNXDOMAIN(b *testing.B) {
	benchServe(b, newQuery("nope.example.com.", mdns.TypeA))
}

func BenchmarkAnswerSteeredECS(b *testing.B) {
	benchServe(b, ecsQuery("www.demo.test.", mdns.TypeA, "193.0.0.0/24"))
}

func BenchmarkAnswerSteeredSource(b *testing.B) {
	benchServe(b, newQuery("www.demo.test.", mdns.TypeA))
}

func BenchmarkGeoLookupEmbedded(b *testing.B) {
	g, err := OpenGeoDB("")
	if err != nil {
		b.Fatal(err)
	}
	addr := netip.MustParseAddr("193.0.0.7")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if cc, _, ok := g.Country(addr); !ok || cc != "NL" {
			b.Fatal(cc)
		}
	}
}

// benchFast measures the UDP fast path (what the server does per packet
// besides the two syscalls).
func benchFast(b *testing.B, m *mdns.Msg) {
	s := fuzzServer(b)
	q, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	sn := s.snap.Load()
	src := netip.MustParseAddr("127.0.0.1")
	sc := &scratch{key: make([]byte, 0, 300), out: make([]byte, 0, 1500)}
	if _, st := s.fastUDP(sn, q, src, sc); st == fastMiss {
		// Fill the cache as the full path would.
		w := &memWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}}
		req := new(mdns.Msg)
		_ = req.Unpack(q)
		if s.respond(w, req, rrlUnchecked) {
			sn.cache.put(sc.key, w.out, s.metrics.counter(m.Question[0].Qtype, 0))
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, st := s.fastUDP(sn, q, src, sc); st != fastDone {
			b.Fatalf("status %d", st)
		}
	}
}

func BenchmarkFastPathStatic(b *testing.B) {
	benchFast(b, newQuery("www.example.com.", mdns.TypeA))
}

func BenchmarkFastPathSteeredECS(b *testing.B) {
	benchFast(b, ecsQuery("www.demo.test.", mdns.TypeA, "193.0.0.0/24"))
}

func BenchmarkFastPathSteeredSource(b *testing.B) {
	benchFast(b, newQuery("www.demo.test.", mdns.TypeA))
}
