package dns

import (
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/outpost-edge/outpost/internal/units"
)

// rawUDP sends b and returns the reply, or nil when none came in time.
func rawUDP(t *testing.T, addr string, b []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func TestProtocol(t *testing.T) {
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	_, addr := startServer(t, cfg, nil, Options{})

	t.Run("EDNS advertised size", func(t *testing.T) {
		m := newQuery("www.example.com.", mdns.TypeA)
		m.SetEdns0(4096, true)
		r := exchange(t, addr, "udp", m)
		opt := r.IsEdns0()
		if opt == nil || opt.UDPSize() != DefaultEDNSSize || !opt.Do() || opt.Version() != 0 {
			t.Fatalf("OPT = %v, want size %d, DO echoed", opt, DefaultEDNSSize)
		}
	})
	t.Run("names compressed", func(t *testing.T) {
		// Twice: the second answer comes from the fast path's cache.
		for i := 0; i < 2; i++ {
			m := newQuery("www.example.com.", mdns.TypeA)
			q, _ := m.Pack()
			c, err := net.Dial("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(3 * time.Second))
			c.Write(q)
			buf := make([]byte, 1500)
			n, err := c.Read(buf)
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			r := new(mdns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			r.Compress = true
			if want := r.Len(); n != want || len(r.Answer) == 0 {
				t.Fatalf("answer %d bytes with %d records, want %d (RFC 1035 §4.1.4 compression)", n, len(r.Answer), want)
			}
		}
	})
	t.Run("no EDNS no OPT", func(t *testing.T) {
		r := exchange(t, addr, "udp", newQuery("www.example.com.", mdns.TypeA))
		if r.IsEdns0() != nil {
			t.Fatal("OPT in the answer to a query without EDNS")
		}
	})
	t.Run("BADVERS", func(t *testing.T) {
		m := newQuery("www.example.com.", mdns.TypeA)
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
		r := exchange(t, addr, "udp", m)
		if r.Rcode != mdns.RcodeBadVers || len(r.Answer) != 0 {
			t.Fatalf("rcode %d answer %v, want BADVERS and no answer", r.Rcode, r.Answer)
		}
		if opt := r.IsEdns0(); opt == nil || opt.Version() != 0 {
			t.Fatalf("OPT %v, want version 0", opt)
		}
	})
	t.Run("truncation then TCP", func(t *testing.T) {
		m := newQuery("big.example.com.", mdns.TypeTXT) // ~650 bytes > 512
		r := exchange(t, addr, "udp", m)
		if !r.Truncated {
			t.Fatalf("TC clear on a %d-record answer over 512-byte UDP", len(r.Answer))
		}
		r = exchange(t, addr, "tcp", m)
		if r.Truncated || len(r.Answer) != 6 {
			t.Fatalf("TCP: TC=%v answers=%d, want 6", r.Truncated, len(r.Answer))
		}
		m.SetEdns0(1232, false)
		r = exchange(t, addr, "udp", m)
		if r.Truncated || len(r.Answer) != 6 {
			t.Fatalf("EDNS 1232: TC=%v answers=%d, want 6", r.Truncated, len(r.Answer))
		}
	})
	t.Run("client size capped by ours", func(t *testing.T) {
		// Our 1232 cap applies even when the client offers more.
		m := newQuery("big.example.com.", mdns.TypeTXT)
		m.SetEdns0(512, false)
		if r := exchange(t, addr, "udp", m); !r.Truncated {
			t.Fatal("TC clear for EDNS size 512")
		}
	})
	t.Run("NOTIMP", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			for _, op := range []int{mdns.OpcodeStatus, mdns.OpcodeUpdate, mdns.OpcodeNotify, 3} {
				m := newQuery("example.com.", mdns.TypeSOA)
				m.Opcode = op
				r := exchange(t, addr, network, m)
				if r.Rcode != mdns.RcodeNotImplemented || len(r.Question) != 1 {
					// TCP answered from the header alone before.
					t.Errorf("%s opcode %d: rcode %s, question %v, want NOTIMP with the question", network, op, mdns.RcodeToString[r.Rcode], r.Question)
				}
			}
		}
	})
	t.Run("class CH refused", func(t *testing.T) {
		m := newQuery("version.bind.", mdns.TypeTXT)
		m.Question[0].Qclass = mdns.ClassCHAOS
		if r := exchange(t, addr, "udp", m); r.Rcode != mdns.RcodeRefused {
			t.Fatalf("rcode %s", mdns.RcodeToString[r.Rcode])
		}
	})
	t.Run("FORMERR", func(t *testing.T) {
		two := newQuery("www.example.com.", mdns.TypeA)
		two.Question = append(two.Question, two.Question[0])
		dupOpt := newQuery("www.example.com.", mdns.TypeA)
		dupOpt.SetEdns0(1232, false)
		dupOpt.Extra = append(dupOpt.Extra, dupOpt.Extra[0])
		badECS := newQuery("www.example.com.", mdns.TypeA)
		badECS.SetEdns0(1232, false)
		// Raw option bytes: miekg/dns would mask the address when packing.
		// Family 1, source /20, scope 0, address 10.1.255 (host bits set).
		badECS.IsEdns0().Option = []mdns.EDNS0{&mdns.EDNS0_LOCAL{Code: mdns.EDNS0SUBNET, Data: []byte{0, 1, 20, 0, 10, 1, 255}}}
		for name, m := range map[string]*mdns.Msg{"two questions": two, "two OPT": dupOpt, "ECS host bits": badECS} {
			r := exchange(t, addr, "udp", m)
			if r.Rcode != mdns.RcodeFormatError {
				t.Errorf("%s: rcode %s, want FORMERR", name, mdns.RcodeToString[r.Rcode])
			}
		}
		// A truncated question section.
		b, _ := newQuery("www.example.com.", mdns.TypeA).Pack()
		resp := rawUDP(t, addr, b[:len(b)-3], 2*time.Second)
		var r mdns.Msg
		if resp == nil || r.Unpack(resp) != nil || r.Rcode != mdns.RcodeFormatError {
			t.Errorf("truncated question: reply %v (rcode %d), want FORMERR", resp, r.Rcode)
		}
	})
	t.Run("responses are ignored", func(t *testing.T) {
		m := newQuery("www.example.com.", mdns.TypeA)
		m.Response = true
		b, _ := m.Pack()
		if resp := rawUDP(t, addr, b, 300*time.Millisecond); resp != nil {
			t.Fatal("server answered a response")
		}
		if resp := rawUDP(t, addr, []byte{1, 2, 3}, 300*time.Millisecond); resp != nil {
			t.Fatal("server answered a 3-byte packet")
		}
	})
	t.Run("TCP pipelining", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var all []byte
		names := []string{"www.example.com.", "mail.example.com.", "ns1.example.com.", "nope.example.com."}
		for i, n := range names {
			m := newQuery(n, mdns.TypeA)
			m.Id = uint16(100 + i)
			b, _ := m.Pack()
			all = binary.BigEndian.AppendUint16(all, uint16(len(b)))
			all = append(all, b...)
		}
		if _, err := c.Write(all); err != nil { // all queries in one write
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		for i := range names {
			var l [2]byte
			if _, err := io.ReadFull(c, l[:]); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, binary.BigEndian.Uint16(l[:]))
			if _, err := io.ReadFull(c, b); err != nil {
				t.Fatal(err)
			}
			var r mdns.Msg
			if err := r.Unpack(b); err != nil {
				t.Fatal(err)
			}
			if r.Id != uint16(100+i) {
				t.Fatalf("response %d has id %d", i, r.Id)
			}
		}
	})
}

func TestTCPIdleTimeout(t *testing.T) {
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	cfg.TCPIdleTimeout = units.Duration(100 * time.Millisecond)
	cfg.TCPReadTimeout = units.Duration(100 * time.Millisecond)
	_, addr := startServer(t, cfg, nil, Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A silent client is disconnected: the read ends with EOF long
	// before this generous deadline.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("idle TCP connection was not closed")
	}
}

// TestTruncationAdditionalOnly: an answer that fits in 512 octets only
// without some of its additional records is complete, so TC stays clear
// (RFC 2181 §9); a referral that loses glue sets TC (RFC 9471). miekg/dns's
// Truncate sets TC for any record left out.
func TestTruncationAdditionalOnly(t *testing.T) {
	cfg := testConfig(ZoneConfig{File: filepath.Join("testdata", "diff.test.zone")})
	_, addr := startServer(t, cfg, nil, Options{})
	for i := 0; i < 2; i++ { // the second answer comes from the fast path's cache
		r := exchange(t, addr, "udp", newQuery("bigmx.diff.test.", mdns.TypeMX))
		if r.Truncated || len(r.Answer) != 6 || len(r.Extra) == 0 || len(r.Extra) == 12 {
			t.Fatalf("MX: TC=%v, %d answers, %d additional; want TC clear, 6 answers, some additional left out",
				r.Truncated, len(r.Answer), len(r.Extra))
		}
	}
	r := exchange(t, addr, "udp", newQuery("x.bigdeleg.diff.test.", mdns.TypeA))
	if !r.Truncated || r.Authoritative || len(r.Ns) != 8 || len(r.Extra) == 16 {
		t.Fatalf("referral: TC=%v AA=%v, %d NS, %d glue; want TC set, 8 NS, glue left out", r.Truncated, r.Authoritative, len(r.Ns), len(r.Extra))
	}
}

// TestDSFromParent: with the parent and child zones on one server, a DS
// query for the child's apex is answered from the parent (RFC 4035
// §3.1.4.1); everything else at the apex from the child.
func TestDSFromParent(t *testing.T) {
	cfg := testConfig(ZoneConfig{File: filepath.Join("testdata", "diff.test.zone")},
		ZoneConfig{File: filepath.Join("testdata", "child.diff.test.zone")},
		ZoneConfig{Origin: "orphan.diff.test", Records: []string{"@ IN NS ns1.diff.test."}})
	_, addr := startServer(t, cfg, nil, Options{})
	for _, network := range []string{"udp", "tcp"} {
		// A zone the parent does not delegate to answers for itself.
		r := exchange(t, addr, network, newQuery("orphan.diff.test.", mdns.TypeDS))
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 || r.Ns[0].Header().Name != "orphan.diff.test." {
			t.Errorf("%s orphan DS: %v, want NODATA from the zone itself", network, r)
		}
		r = exchange(t, addr, network, newQuery("Child.diff.test.", mdns.TypeDS))
		if !r.Authoritative || len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != mdns.TypeDS {
			t.Errorf("%s DS: AA=%v answer %v, want the parent's DS", network, r.Authoritative, r.Answer)
		}
		r = exchange(t, addr, network, newQuery("child.diff.test.", mdns.TypeNS))
		if !r.Authoritative || len(r.Answer) != 1 || r.Answer[0].(*mdns.NS).Ns != "ns1.child.diff.test." {
			t.Errorf("%s NS: AA=%v answer %v, want the child's NS", network, r.Authoritative, r.Answer)
		}
	}
}

// TestEDNSInErrors: an answer to a query with an OPT carries one (RFC 6891
// §6.1.1), NOTIMP and FORMERR for a missing question included; before, the
// opcode and question-count checks answered without it.
func TestEDNSInErrors(t *testing.T) {
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	_, addr := startServer(t, cfg, nil, Options{})
	notify := newQuery("example.com.", mdns.TypeSOA)
	notify.Opcode = mdns.OpcodeNotify
	notify.SetEdns0(1232, false)
	noQuestion := newQuery("example.com.", mdns.TypeSOA)
	noQuestion.SetEdns0(1232, false)
	noQuestion.Question = nil
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range []struct {
			m     *mdns.Msg
			rcode int
		}{{notify, mdns.RcodeNotImplemented}, {noQuestion, mdns.RcodeFormatError}} {
			wire, _ := tc.m.Pack()
			r := rawExchangeMsg(t, addr, network, wire, 2*time.Second)
			if r == nil || r.Rcode != tc.rcode || r.IsEdns0() == nil {
				t.Errorf("%s opcode %d, %d questions: %v, want %s with an OPT", network, tc.m.Opcode, len(tc.m.Question), r, mdns.RcodeToString[tc.rcode])
			}
		}
	}
}
