package dns

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/internal/units"
)

// auditCase is one query and the answer expected for it.
type auditCase struct {
	name   string
	qname  string
	qtype  uint16
	rcode  int
	answer []string
	ns     []string
}

// checkAuditAnswers asks every case over UDP twice (the full path, then the
// cached fast path) and over TCP, and requires the expected rcode, AA and
// answer and authority sections each time.
func checkAuditAnswers(t *testing.T, addr string, cases []auditCase) {
	t.Helper()
	for _, tc := range cases {
		for _, network := range []string{"udp", "udp", "tcp"} {
			m := newQuery(tc.qname, tc.qtype)
			m.SetEdns0(1232, false)
			r := exchange(t, addr, network, m)
			if r.Rcode != tc.rcode || !r.Authoritative {
				t.Errorf("%s %s: rcode %s AA %v, want %s AA", network, tc.name,
					mdns.RcodeToString[r.Rcode], r.Authoritative, mdns.RcodeToString[tc.rcode])
			}
			if got, w := rrStrings(r.Answer), want(t, tc.answer); !slices.Equal(got, w) {
				t.Errorf("%s %s: answer\n got  %q\n want %q", network, tc.name, got, w)
			}
			if got, w := rrStrings(r.Ns), want(t, tc.ns); !slices.Equal(got, w) {
				t.Errorf("%s %s: authority\n got  %q\n want %q", network, tc.name, got, w)
			}
		}
	}
}

// TestNegativeTTLIsMinOfSOATTLAndMinimum: the SOA of NXDOMAIN and NODATA
// answers has TTL min(SOA TTL, MINIMUM) (RFC 2308 §5) whichever of the two
// is lower, while the SOA itself keeps its TTL.
func TestNegativeTTLIsMinOfSOATTLAndMinimum(t *testing.T) {
	cfg := testConfig(
		// The SOA's TTL is below MINIMUM: negative answers last 60 s.
		ZoneConfig{Origin: "lowttl.test", Records: []string{
			"@ 60 IN SOA ns1 hostmaster 7 7200 3600 1209600 900",
			"@ 3600 IN NS ns1",
			"ns1 3600 IN A 192.0.2.53",
		}},
		// MINIMUM is below the SOA's TTL: negative answers last 120 s.
		ZoneConfig{Origin: "lowmin.test", Records: []string{
			"@ 3600 IN SOA ns1 hostmaster 7 7200 3600 1209600 120",
			"@ 3600 IN NS ns1",
			"ns1 3600 IN A 192.0.2.53",
		}},
	)
	_, addr := startServer(t, cfg, nil, Options{})
	const (
		lowTTL    = "lowttl.test. 60 IN SOA ns1.lowttl.test. hostmaster.lowttl.test. 7 7200 3600 1209600 900"
		lowMin    = "lowmin.test. 3600 IN SOA ns1.lowmin.test. hostmaster.lowmin.test. 7 7200 3600 1209600 120"
		lowMinNeg = "lowmin.test. 120 IN SOA ns1.lowmin.test. hostmaster.lowmin.test. 7 7200 3600 1209600 120"
	)
	checkAuditAnswers(t, addr, []auditCase{
		{name: "TTL<MINIMUM NXDOMAIN", qname: "nope.lowttl.test.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{lowTTL}},
		{name: "TTL<MINIMUM NODATA", qname: "ns1.lowttl.test.", qtype: mdns.TypeMX, ns: []string{lowTTL}},
		{name: "TTL<MINIMUM SOA", qname: "lowttl.test.", qtype: mdns.TypeSOA, answer: []string{lowTTL}},
		{name: "MINIMUM<TTL NXDOMAIN", qname: "nope.lowmin.test.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{lowMinNeg}},
		{name: "MINIMUM<TTL NODATA", qname: "ns1.lowmin.test.", qtype: mdns.TypeMX, ns: []string{lowMinNeg}},
		{name: "MINIMUM<TTL SOA keeps its TTL", qname: "lowmin.test.", qtype: mdns.TypeSOA, answer: []string{lowMin}},
	})
}

// TestWildcardAtApexAndEmptyNonTerminal: with "*" at the apex and a.b.c
// present, c and b.c exist as empty non-terminals (NODATA), names below
// them are NXDOMAIN because their closest encloser has no wildcard (RFC
// 4592 §2.2.2, §3.3.1), and other names are synthesized from the apex "*".
func TestWildcardAtApexAndEmptyNonTerminal(t *testing.T) {
	cfg := testConfig(ZoneConfig{Origin: "wild.test", Records: []string{
		"@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300",
		"@ 3600 IN NS ns1",
		"ns1 3600 IN A 192.0.2.53",
		"* 3600 IN A 192.0.2.42",
		"a.b.c 3600 IN A 192.0.2.3",
	}})
	_, addr := startServer(t, cfg, nil, Options{})
	const soa = "wild.test. 300 IN SOA ns1.wild.test. hostmaster.wild.test. 1 7200 3600 1209600 300"
	checkAuditAnswers(t, addr, []auditCase{
		{name: "ENT is NODATA", qname: "c.wild.test.", qtype: mdns.TypeA, ns: []string{soa}},
		{name: "inner ENT is NODATA", qname: "b.c.wild.test.", qtype: mdns.TypeA, ns: []string{soa}},
		{name: "below ENT is NXDOMAIN", qname: "x.c.wild.test.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "below inner ENT is NXDOMAIN", qname: "x.b.c.wild.test.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "below leaf is NXDOMAIN", qname: "x.a.b.c.wild.test.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
		{name: "leaf", qname: "a.b.c.wild.test.", qtype: mdns.TypeA, answer: []string{"a.b.c.wild.test. 3600 IN A 192.0.2.3"}},
		{name: "wildcard", qname: "other.wild.test.", qtype: mdns.TypeA, answer: []string{"other.wild.test. 3600 IN A 192.0.2.42"}},
		{name: "wildcard two labels down", qname: "x.other.wild.test.", qtype: mdns.TypeA, answer: []string{"x.other.wild.test. 3600 IN A 192.0.2.42"}},
		{name: "wildcard NODATA", qname: "other.wild.test.", qtype: mdns.TypeMX, ns: []string{soa}},
		{name: "the wildcard itself", qname: "*.wild.test.", qtype: mdns.TypeA, answer: []string{"*.wild.test. 3600 IN A 192.0.2.42"}},
	})
}

// TestTCPIdleTimeoutAfterQuery: after a query has been answered, a silent
// connection is closed after the idle timeout, not the (longer) timeout
// for the first query.
func TestTCPIdleTimeoutAfterQuery(t *testing.T) {
	const idle, read = 200 * time.Millisecond, 8 * time.Second
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	cfg.TCPIdleTimeout = units.Duration(idle)
	cfg.TCPReadTimeout = units.Duration(read)
	_, addr := startServer(t, cfg, nil, Options{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &mdns.Conn{Conn: nc}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if err := c.WriteMsg(newQuery("www.example.com.", mdns.TypeA)); err != nil {
		t.Fatal(err)
	}
	r, err := c.ReadMsg()
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("answer %v, %v", r, err)
	}
	start := time.Now()
	c.SetReadDeadline(start.Add(read / 2))
	_, err = c.Read(make([]byte, 1))
	took := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v (idle timeout %v)", took, idle)
	}
	if err == nil {
		t.Fatal("server sent data nobody asked for")
	}
	if took < idle/2 || took > read/4 {
		t.Fatalf("closed after %v, want about the idle timeout %v (first-query timeout %v)", took, idle, read)
	}
}

// queriesTotal reads outpost_dns_queries_total{qtype,rcode} from reg.
func queriesTotal(t *testing.T, reg *prometheus.Registry, qtype, rcode string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "outpost_dns_queries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["qtype"] == qtype && labels["rcode"] == rcode {
				return m.GetCounter().GetValue()
			}
		}
		return 0
	}
	t.Fatal("outpost_dns_queries_total not registered")
	return 0
}

// cachedAnswers counts the fast path's cached answers.
func cachedAnswers(s *Server) int {
	n := 0
	c := s.snap.Load().cache
	for i := range c.slots {
		if c.slots[i].Load() != nil {
			n++
		}
	}
	return n
}

// TestQueriesTotalCounted: outpost_dns_queries_total counts by type and
// rcode on the full path, the cached UDP fast path and TCP.
func TestQueriesTotalCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s, addr := startServer(t, testConfig(ZoneConfig{File: testdata("example.com.zone")}), nil, Options{Metrics: m})
	for _, tc := range []struct {
		qname, rcode string
		want         int
	}{
		{"www.example.com.", "NOERROR", mdns.RcodeSuccess},
		{"nope.example.com.", "NXDOMAIN", mdns.RcodeNameError},
	} {
		before := cachedAnswers(s)
		for i, network := range []string{"udp", "udp", "tcp"} {
			r := exchange(t, addr, network, newQuery(tc.qname, mdns.TypeA))
			if r.Rcode != tc.want {
				t.Fatalf("%s %s: rcode %s", network, tc.qname, mdns.RcodeToString[r.Rcode])
			}
			if i == 0 {
				// The second query is answered from this cache entry. The
				// full path stores it after sending the answer: wait.
				deadline := time.Now().Add(3 * time.Second)
				for cachedAnswers(s) != before+1 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if got := cachedAnswers(s); got != before+1 {
					t.Fatalf("%s: %d cached answers after the first query, want %d", tc.qname, got, before+1)
				}
			}
			if got := queriesTotal(t, reg, "A", tc.rcode); got != float64(i+1) {
				t.Errorf(`after %d queries (%s): queries_total{qtype="A",rcode=%q} = %v, want %d`, i+1, network, tc.rcode, got, i+1)
			}
		}
	}
	if got := queriesTotal(t, reg, "AAAA", "NOERROR"); got != 0 {
		t.Errorf(`queries_total{qtype="AAAA",rcode="NOERROR"} = %v, want 0`, got)
	}
}

// TestUDPSizeCappedByOurs: a client offering 4096 still gets at most our
// 1232 bytes over UDP (TC set), and the whole answer over TCP.
func TestUDPSizeCappedByOurs(t *testing.T) {
	var recs []string
	for i := 0; i < 8; i++ {
		recs = append(recs, "huge 3600 IN TXT \""+strings.Repeat(string(rune('a'+i)), 200)+"\"")
	}
	cfg := testConfig(ZoneConfig{Origin: "big.test", Records: recs})
	_, addr := startServer(t, cfg, nil, Options{})

	m := newQuery("huge.big.test.", mdns.TypeTXT)
	m.SetEdns0(4096, false)
	full := exchange(t, addr, "tcp", m)
	if full.Truncated || len(full.Answer) != 8 {
		t.Fatalf("TCP: TC=%v, %d answers, want 8", full.Truncated, len(full.Answer))
	}
	full.Compress = true
	if n := full.Len(); n <= DefaultEDNSSize {
		t.Fatalf("the whole answer is %d bytes; the test needs more than %d", n, DefaultEDNSSize)
	}
	q, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the full path, then the cached fast path
		b := rawUDP(t, addr, q, 3*time.Second)
		if b == nil {
			t.Fatal("no UDP answer")
		}
		var r mdns.Msg
		if err := r.Unpack(b); err != nil {
			t.Fatal(err)
		}
		if !r.Truncated || len(b) > DefaultEDNSSize || len(r.Answer) >= 8 {
			t.Fatalf("UDP with EDNS 4096: %d bytes, TC=%v, %d answers; want TC and at most %d bytes", len(b), r.Truncated, len(r.Answer), DefaultEDNSSize)
		}
		if opt := r.IsEdns0(); opt == nil || opt.UDPSize() != DefaultEDNSSize {
			t.Fatalf("OPT %v, want our size %d", opt, DefaultEDNSSize)
		}
	}
}

// TestAddRecordLeavesCallersRecord: AddRecord works on a copy; the
// caller's record keeps its class and name, and changing it afterwards
// does not change what is served.
func TestAddRecordLeavesCallersRecord(t *testing.T) {
	s, addr := startServer(t, testConfig(ZoneConfig{File: testdata("example.com.zone")}), nil, Options{})
	rr := &mdns.A{Hdr: mdns.RR_Header{Name: "New.Example.COM", Rrtype: mdns.TypeA, Ttl: 60}, A: net.IPv4(192, 0, 2, 99).To4()}
	if err := s.AddRecord(rr); err != nil {
		t.Fatal(err)
	}
	if rr.Hdr.Class != 0 || rr.Hdr.Name != "New.Example.COM" || rr.Hdr.Ttl != 60 {
		t.Fatalf("AddRecord changed the caller's record header: %+v", rr.Hdr)
	}
	rr.A = net.IPv4(192, 0, 2, 100).To4()
	rr.Hdr.Ttl = 1
	r := exchange(t, addr, "udp", newQuery("new.example.com.", mdns.TypeA))
	if got, w := rrStrings(r.Answer), want(t, []string{"new.example.com. 60 IN A 192.0.2.99"}); !slices.Equal(got, w) {
		t.Fatalf("served %q, want %q", got, w)
	}
	// Removing needs the data as added; the caller's (changed) copy no
	// longer matches.
	orig := &mdns.A{Hdr: mdns.RR_Header{Name: "new.example.com.", Rrtype: mdns.TypeA}, A: netip.MustParseAddr("192.0.2.99").AsSlice()}
	if err := s.RemoveRecord(rr); err == nil {
		t.Fatal("removed a record that was never added")
	}
	if err := s.RemoveRecord(orig); err != nil {
		t.Fatal(err)
	}
	if orig.Hdr.Class != 0 {
		t.Fatalf("RemoveRecord changed the caller's record: %+v", orig.Hdr)
	}
	if r := exchange(t, addr, "udp", newQuery("new.example.com.", mdns.TypeA)); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("after RemoveRecord: rcode %s", mdns.RcodeToString[r.Rcode])
	}
}

// FuzzUDPHandle feeds datagrams to the real UDP entry, udpServer.handle,
// on a real socket: the fast path answers through the return value, the
// full path writes to the socket. Each input is handled twice, so the
// second time may come from the answer cache the first filled. No panic;
// at most one answer, which unpacks as a response with the query's ID and
// fits our 1232 bytes; and both times answer alike. Seeds are in
// testdata/fuzz/FuzzUDPHandle.
func FuzzUDPHandle(f *testing.F) {
	for _, m := range seedQueries() {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s := fuzzServer(f)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { conn.Close() })
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { peer.Close() })
	u := &udpServer{s: s, conn: conn, local: conn.LocalAddr()}
	ap := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	sc := &scratch{key: make([]byte, 0, 300), out: make([]byte, 0, 1500)}
	var seq uint32
	buf := make([]byte, 65536)
	// written returns what the full path sent for the last datagram: a
	// marker sent after it on the same socket bounds the wait.
	written := func(t *testing.T) [][]byte {
		seq++
		marker := []byte{'M', byte(seq >> 24), byte(seq >> 16), byte(seq >> 8), byte(seq)}
		if _, err := conn.WriteToUDPAddrPort(marker, ap); err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			n, err := peer.Read(buf)
			if err != nil {
				t.Fatalf("marker not received: %v", err)
			}
			if n == len(marker) && buf[0] == 'M' {
				if string(buf[:n]) == string(marker) {
					return got
				}
				continue // a marker of an earlier input
			}
			got = append(got, append([]byte(nil), buf[:n]...))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 65535 {
			return // not a UDP datagram
		}
		var answers [2][]byte
		for pass := range answers {
			// A copy: TSIG verification (miekg/dns) rewrites ARCOUNT in place.
			req := append([]byte(nil), b...)
			resp := u.handle(req, ap, nil, sc)
			out := written(t)
			if resp != nil {
				out = append(out, append([]byte(nil), resp...))
			}
			if len(out) > 1 {
				t.Fatalf("pass %d: %d answers to one datagram", pass, len(out))
			}
			if len(out) == 0 {
				continue
			}
			a := out[0]
			var r mdns.Msg
			if err := r.Unpack(a); err != nil {
				t.Fatalf("pass %d: answer does not unpack: %v", pass, err)
			}
			if !r.Response || len(b) < 2 || a[0] != b[0] || a[1] != b[1] {
				t.Fatalf("pass %d: answer QR=%v ID %#x to a query with ID %#x", pass, r.Response, a[:2], b[:min(2, len(b))])
			}
			if len(a) > DefaultEDNSSize {
				t.Fatalf("pass %d: UDP answer of %d bytes", pass, len(a))
			}
			answers[pass] = a
		}
		if (answers[0] == nil) != (answers[1] == nil) {
			t.Fatalf("answered once of twice: %v / %v", answers[0] != nil, answers[1] != nil)
		}
		if answers[0] != nil && string(answers[0]) != string(answers[1]) {
			var r0, r1 mdns.Msg
			r0.Unpack(answers[0])
			r1.Unpack(answers[1])
			t.Fatalf("the second answer differs:\n%s\n---\n%s", describe(&r0), describe(&r1))
		}
	})
}

// failingListener fails every Accept with a temporary error, as accept(2)
// does with EMFILE at the descriptor limit, and counts the calls.
type failingListener struct {
	net.Listener
	calls atomic.Int64
}

type emfile struct{}

func (emfile) Error() string   { return "accept: too many open files" }
func (emfile) Timeout() bool   { return false }
func (emfile) Temporary() bool { return true }

func (l *failingListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	return nil, emfile{}
}

// At the descriptor limit the TCP accept loop backs off instead of
// spinning (miekg/dns retries temporary errors at once).
func TestTCPAcceptBacksOffOnTemporaryErrors(t *testing.T) {
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pc, ln := listenPair(t, "127.0.0.1")
	fl := &failingListener{Listener: ln}
	if err := s.Serve([]net.PacketConn{pc}, []net.Listener{fl}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	n := fl.calls.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Shutdown(ctx)
	if n > 50 {
		t.Errorf("%d accepts in 500ms of EMFILE: the accept loop spins", n)
	}
}
