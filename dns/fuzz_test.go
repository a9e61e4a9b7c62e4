package dns

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// memWriter is an in-memory ResponseWriter: it packs what the handler
// writes, as the network writer would, so fuzzing and benchmarks cover
// the whole answer path without sockets.
type memWriter struct {
	remote net.Addr
	tsig   error
	out    []byte
	n      int
}

func (w *memWriter) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (w *memWriter) RemoteAddr() net.Addr { return w.remote }
func (w *memWriter) WriteMsg(m *mdns.Msg) error {
	b, err := m.PackBuffer(w.out[:0])
	if err != nil {
		return err
	}
	w.out = b
	w.n++
	return nil
}
func (w *memWriter) Write(b []byte) (int, error) {
	w.out = append(w.out[:0], b...)
	w.n++
	return len(b), nil
}
func (w *memWriter) Close() error        { return nil }
func (w *memWriter) TsigStatus() error   { return w.tsig }
func (w *memWriter) TsigTimersOnly(bool) {}
func (w *memWriter) Hijack()             {}

// serveBytes runs raw query bytes through the same steps as the network
// server: header check, accept filter, unpack (FORMERR on failure), handler.
func serveBytes(s *Server, w *memWriter, b []byte) {
	m := new(mdns.Msg)
	if len(b) < 12 || m.Unpack(b) != nil {
		return // the network server answers FORMERR from the header alone
	}
	dh := mdns.Header{Id: m.Id, Qdcount: uint16(len(m.Question)), Ancount: uint16(len(m.Answer)), Nscount: uint16(len(m.Ns)), Arcount: uint16(len(m.Extra))}
	if m.Response {
		dh.Bits |= 1 << 15
	}
	dh.Bits |= uint16(m.Opcode&0xF) << 11
	if acceptFunc(dh) == mdns.MsgIgnore {
		return
	}
	// Rejected messages get FORMERR/NOTIMP from the handler's own checks,
	// as miekg/dns would send them.
	if m.IsTsig() != nil {
		w.tsig = mdns.ErrSig
	} else {
		w.tsig = nil
	}
	s.ServeDNS(w, m)
}

func fuzzServer(t testing.TB) *Server {
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")}, ZoneConfig{Origin: "demo.test", Records: []string{"@ IN NS ns1", "ns1 IN A 127.0.0.1"}})
	cfg.Steered = []SteeredName{{Name: "www.demo.test", Answers: 2}}
	cfg.Transfer.Secondaries = []Secondary{{Address: "127.0.0.0/8"}}
	cfg.SetDefaults()
	geo := writeTestGeoDB(t, map[string]string{"193.0.0.0/16": "NL", "8.8.8.0/24": "US", "133.1.0.0/16": "JP"})
	cfg.Geo.Database = geo
	// Deterministic tie breaks, so the fast and full paths pick alike.
	s, err := New(cfg, demoNodes(), Options{Rand: func(int) int { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzServeDNS feeds arbitrary packets to the query path over "UDP" and
// "TCP": no panic, and every answer packs and unpacks as a response to the
// query. The seed corpus is in testdata/fuzz/FuzzServeDNS.
func FuzzServeDNS(f *testing.F) {
	for _, m := range seedQueries() {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, b []byte, tcp bool) {
		var remote net.Addr = &net.UDPAddr{IP: net.IPv4(193, 0, 0, 7), Port: 5353}
		if tcp {
			remote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
		}
		w := &memWriter{remote: remote}
		serveBytes(s, w, b)
		if !tcp {
			checkFastPath(t, s, b, w)
		}
		if w.n == 0 {
			return
		}
		var r mdns.Msg
		if err := r.Unpack(w.out); err != nil {
			t.Fatalf("answer does not unpack: %v", err)
		}
		if !r.Response {
			t.Fatal("answer without QR")
		}
		if !tcp && len(w.out) > 65535 {
			t.Fatalf("UDP answer of %d bytes", len(w.out))
		}
	})
}

// checkFastPath requires the UDP fast path, when it answers, to answer
// exactly as the full path did (w holds the full path's answer).
func checkFastPath(t *testing.T, s *Server, b []byte, full *memWriter) {
	sn := s.snap.Load()
	sc := &scratch{}
	src := netip.MustParseAddr("193.0.0.7")
	resp, st := s.fastUDP(sn, b, src, sc)
	if st == fastMiss {
		// Fill the cache from the full path, then ask again.
		m := new(mdns.Msg)
		if m.Unpack(b) != nil {
			t.Fatal("fast path accepted a query the full path cannot unpack")
		}
		w := &memWriter{remote: &net.UDPAddr{IP: src.AsSlice(), Port: 5353}}
		if s.respond(w, m, rrlUnchecked) && w.n == 1 {
			sn.cache.put(sc.key, w.out, s.metrics.counter(m.Question[0].Qtype, int(w.out[3]&0xF)))
		}
		resp, st = s.fastUDP(sn, b, src, sc)
	}
	if st != fastDone || resp == nil {
		return
	}
	if full.n == 0 {
		t.Fatal("fast path answered a query the full path ignores")
	}
	var fast, ref mdns.Msg
	if err := fast.Unpack(resp); err != nil {
		t.Fatalf("fast answer does not unpack: %v", err)
	}
	if err := ref.Unpack(full.out); err != nil {
		t.Fatal(err)
	}
	// The question as asked, exactly (0x20); the records' names without
	// regard to case: a cached answer's names compressed against the
	// question take the case of the query it answers (see docs/dns.md).
	if fast.Id != ref.Id || !slices.Equal(fast.Question, ref.Question) || !strings.EqualFold(describe(&fast), describe(&ref)) {
		t.Fatalf("fast path differs:\n%s\n---\n%s", describe(&fast), describe(&ref))
	}
}

// seedQueries are the seed inputs (also checked in as files).
func seedQueries() []*mdns.Msg {
	var out []*mdns.Msg
	add := func(name string, t uint16, edit func(*mdns.Msg)) {
		m := new(mdns.Msg)
		m.SetQuestion(name, t)
		if edit != nil {
			edit(m)
		}
		out = append(out, m)
	}
	add("www.example.com.", mdns.TypeA, nil)
	add("WWW.Example.COM.", mdns.TypeAAAA, func(m *mdns.Msg) { m.SetEdns0(4096, true) })
	add("nope.example.com.", mdns.TypeMX, nil)
	add("a.b.wild.example.com.", mdns.TypeTXT, nil)
	add("loop1.example.com.", mdns.TypeA, nil)
	add("host.sub.example.com.", mdns.TypeA, nil)
	add("example.com.", mdns.TypeANY, nil)
	add("example.com.", mdns.TypeAXFR, nil)
	add("example.com.", mdns.TypeIXFR, nil)
	add("big.example.com.", mdns.TypeTXT, nil)
	add("www.demo.test.", mdns.TypeA, func(m *mdns.Msg) {
		m.SetEdns0(1232, false)
		m.IsEdns0().Option = []mdns.EDNS0{&mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: netip.MustParseAddr("193.0.0.0").AsSlice()}}
	})
	add("www.demo.test.", mdns.TypeAAAA, func(m *mdns.Msg) {
		m.SetEdns0(1232, false)
		m.IsEdns0().Option = []mdns.EDNS0{&mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: 2, SourceNetmask: 48, Address: netip.MustParseAddr("2a00:1450::").AsSlice()}}
	})
	add("www.example.com.", mdns.TypeA, func(m *mdns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) })
	add("www.example.com.", mdns.TypeA, func(m *mdns.Msg) { m.Opcode = mdns.OpcodeUpdate })
	add("www.example.org.", mdns.TypeA, nil)
	add("example.com.", mdns.TypeAXFR, func(m *mdns.Msg) { m.SetTsig("k.", mdns.HmacSHA256, 300, 0) })
	return out
}

// TestFuzzSeedsAnswer runs the seeds with IPv6 and TCP sources (the fuzz
// target itself runs them over IPv4 UDP).
func TestFuzzSeedsAnswer(t *testing.T) {
	s := fuzzServer(t)
	for _, m := range seedQueries() {
		b, _ := m.Pack()
		for _, remote := range []net.Addr{&net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}} {
			w := &memWriter{remote: remote}
			serveBytes(s, w, b)
			if w.n == 0 {
				t.Errorf("no answer to %s", m.Question[0].String())
			}
		}
	}
}

// TestFastPathCaseOfCachedAnswer: a cached answer filled by a query in one
// letter case answers the same name in another case with the question as
// asked, and records equal to the full path's up to case (found by the
// fuzz target: the SOA's names were compressed against the question).
func TestFastPathCaseOfCachedAnswer(t *testing.T) {
	s := fuzzServer(t)
	for _, name := range []string{"example.com.", "eXAmple.Com.", "EXAMPLE.COM.", "www.example.com.", "WWW.eXample.com."} {
		for _, qt := range []uint16{mdns.TypeCERT, mdns.TypeA, mdns.TypeMX} {
			m := new(mdns.Msg)
			m.SetQuestion(name, qt)
			b, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			w := &memWriter{remote: &net.UDPAddr{IP: net.IPv4(193, 0, 0, 7), Port: 5353}}
			serveBytes(s, w, b)
			checkFastPath(t, s, b, w)
		}
	}
}
