package dns

import (
	"fmt"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// describe renders everything in an answer that must not depend on the
// path that produced it (fast path, cache, full path over UDP or TCP).
func describe(r *mdns.Msg) string {
	s := fmt.Sprintf("rcode=%d aa=%v tc=%v rd=%v cd=%v ra=%v q=%v\n", r.Rcode, r.Authoritative, r.Truncated,
		r.RecursionDesired, r.CheckingDisabled, r.RecursionAvailable, r.Question)
	for _, sec := range [][]mdns.RR{r.Answer, r.Ns, r.Extra} {
		s += fmt.Sprintf("%q\n", rrStrings(sec))
	}
	if opt := r.IsEdns0(); opt != nil {
		s += fmt.Sprintf("opt size=%d do=%v v=%d", opt.UDPSize(), opt.Do(), opt.Version())
		for _, o := range opt.Option {
			s += " " + o.String()
		}
	}
	return s
}

// TestFastPathMatchesFullPath sends each query three times: over UDP (full
// path, fills the cache), over UDP again (fast path or cache), and over TCP
// (always the full path), and requires the same answer.
func TestFastPathMatchesFullPath(t *testing.T) {
	geo := writeTestGeoDB(t, map[string]string{"193.0.0.0/16": "NL", "8.8.8.0/24": "US", "133.1.0.0/16": "JP", "127.0.0.0/8": "JP", "2a00::/12": "DE"})
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")}, ZoneConfig{Origin: "demo.test", Records: []string{"@ IN NS ns1", "ns1 IN A 127.0.0.1", `www IN TXT "t"`}})
	cfg.Geo.Database = geo
	cfg.Steered = []SteeredName{{Name: "www.demo.test", Answers: 2}, {Name: "demo.test"}}
	cfg.SetDefaults()
	m, _ := NewMetrics(nil)
	s, addr := startServer(t, cfg, demoNodes(), Options{Metrics: m})

	type variant struct {
		name string
		edit func(*mdns.Msg)
	}
	variants := []variant{
		{"plain", nil},
		{"rd", func(m *mdns.Msg) { m.RecursionDesired = true }},
		{"cd", func(m *mdns.Msg) { m.CheckingDisabled = true }},
		{"edns", func(m *mdns.Msg) { m.SetEdns0(1232, false) }},
		{"edns-do-4096", func(m *mdns.Msg) { m.SetEdns0(4096, true) }},
		{"edns-600", func(m *mdns.Msg) { m.SetEdns0(600, false) }},
		{"ecs-nl", func(m *mdns.Msg) { addECS(m, "193.0.0.0/24") }},
		{"ecs-jp-v6", func(m *mdns.Msg) { addECS(m, "2a00:1450::/32") }},
		{"ecs-0", func(m *mdns.Msg) { addECS(m, "0.0.0.0/0") }},
		{"ecs-us-do", func(m *mdns.Msg) { addECS(m, "8.8.8.0/24"); m.IsEdns0().SetDo() }},
	}
	names := []struct {
		name  string
		qtype uint16
	}{
		{"www.example.com.", mdns.TypeA}, {"WWW.EXAMPLE.com.", mdns.TypeAAAA}, {"example.com.", mdns.TypeMX},
		{"example.com.", mdns.TypeNS}, {"nope.example.com.", mdns.TypeA}, {"b.c.example.com.", mdns.TypeA},
		{"alias.example.com.", mdns.TypeA}, {"X.Wild.example.com.", mdns.TypeTXT}, {"host.sub.example.com.", mdns.TypeA},
		{"big.example.com.", mdns.TypeTXT}, {"example.com.", mdns.TypeANY}, {"www.example.org.", mdns.TypeA},
		{"www.demo.test.", mdns.TypeA}, {"Www.Demo.Test.", mdns.TypeAAAA}, {"www.demo.test.", mdns.TypeTXT},
		{"www.demo.test.", mdns.TypeMX}, {"demo.test.", mdns.TypeA}, {"demo.test.", mdns.TypeSOA},
	}
	for _, n := range names {
		for _, v := range variants {
			t.Run(n.name+"/"+mdns.TypeToString[n.qtype]+"/"+v.name, func(t *testing.T) {
				q := newQuery(n.name, n.qtype)
				if v.edit != nil {
					v.edit(q)
				}
				first := exchange(t, addr, "udp", q.Copy())
				second := exchange(t, addr, "udp", q.Copy())
				if describe(first) != describe(second) {
					t.Fatalf("repeat over UDP differs:\n%s\n---\n%s", describe(first), describe(second))
				}
				if first.Truncated {
					return
				}
				viaTCP := exchange(t, addr, "tcp", q.Copy())
				if describe(first) != describe(viaTCP) {
					t.Fatalf("UDP and TCP differ:\n%s\n---\n%s", describe(first), describe(viaTCP))
				}
			})
		}
	}
	// The fast paths were taken: steered answers counted per node, and the
	// cache filled.
	if testutil.ToFloat64(m.steered.WithLabelValues("eu")) == 0 {
		t.Fatal("no steered answers counted")
	}
	sn := s.snap.Load()
	entries := 0
	for i := range sn.cache.slots {
		if sn.cache.slots[i].Load() != nil {
			entries++
		}
	}
	if entries == 0 {
		t.Fatal("answer cache is empty")
	}
}

func addECS(m *mdns.Msg, cidr string) {
	if m.IsEdns0() == nil {
		m.SetEdns0(1232, false)
	}
	p := netip.MustParsePrefix(cidr)
	fam := uint16(1)
	if p.Addr().Is6() {
		fam = 2
	}
	opt := m.IsEdns0()
	opt.Option = append(opt.Option, &mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: fam, SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()})
}

func TestParseECS(t *testing.T) {
	tests := []struct {
		raw []byte
		ok  bool
	}{
		{[]byte{0, 1, 24, 0, 193, 0, 0}, true},
		{[]byte{0, 1, 20, 0, 10, 1, 240}, true},
		{[]byte{0, 1, 20, 0, 10, 1, 255}, false}, // host bits
		{[]byte{0, 1, 24, 1, 193, 0, 0}, false},  // scope set in a query
		{[]byte{0, 1, 33, 0, 1, 2, 3, 4, 5}, false},
		{[]byte{0, 3, 8, 0, 1}, false},
		{[]byte{0, 1, 24, 0, 193, 0}, false}, // short address
		{[]byte{0, 2, 0, 0}, true},
		{[]byte{0, 1}, false},
	}
	for _, tc := range tests {
		var e ednsQuery
		if got := parseECS(tc.raw, &e); got != tc.ok {
			t.Errorf("%v: %v, want %v", tc.raw, got, tc.ok)
		}
	}
}

// TestFastPathTaken checks which queries the fast path answers itself.
func TestFastPathTaken(t *testing.T) {
	s := fuzzServer(t)
	sn := s.snap.Load()
	src := netip.MustParseAddr("127.0.0.1")
	steered := ecsQuery("www.demo.test.", mdns.TypeA, "193.0.0.0/24")
	static := newQuery("www.example.com.", mdns.TypeA)
	tsig := newQuery("www.example.com.", mdns.TypeA)
	tsig.SetTsig("k.", mdns.HmacSHA256, 300, 0)
	cookie := newQuery("www.example.com.", mdns.TypeA)
	cookie.SetEdns0(1232, false)
	cookie.IsEdns0().Option = []mdns.EDNS0{&mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0102030405060708"}}
	tests := []struct {
		name string
		m    *mdns.Msg
		want fastStatus
	}{
		{"steered", steered, fastDone},
		{"static first", static, fastMiss},
		{"tsig", tsig, fastSlow},
		{"cookie", cookie, fastSlow},
		{"static ECS", ecsQuery("www.example.com.", mdns.TypeA, "193.0.0.0/24"), fastSlow},
		{"AXFR", newQuery("example.com.", mdns.TypeAXFR), fastSlow},
	}
	for _, tc := range tests {
		b, err := tc.m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		sc := &scratch{}
		if _, got := s.fastUDP(sn, b, src, sc); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	// After the full path answers, the same query is a cache hit.
	b, _ := static.Pack()
	sc := &scratch{}
	s.fastUDP(sn, b, src, sc)
	sn.cache.put(sc.key, []byte("0123456789012345678901234567890123"), s.metrics.counter(mdns.TypeA, 0))
	if _, got := s.fastUDP(sn, b, src, &scratch{}); got != fastDone {
		t.Fatalf("cached query: status %d", got)
	}
}
