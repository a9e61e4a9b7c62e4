package dns

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestKnotDiff is a differential test: Outpost and Knot DNS serve the same
// zones (testdata/diff.test.zone and three more) on loopback and get the
// same queries over UDP and TCP; their answers must agree (rcode, flags, sections as sets,
// EDNS) except where a case documents an expected difference that both
// behaviours are allowed by the RFCs (see docs/dns.md, "Compared with Knot").
func TestKnotDiff(t *testing.T) {
	knotd, err := exec.LookPath("knotd")
	if err != nil {
		t.Skip("knotd (Knot DNS) is not on PATH; install it (Debian: apt-get install knot) to run the Knot differential test")
	}
	// The expected differences were written against Knot 3.2; a failure
	// with another version may be Knot's change rather than ours.
	if v, err := exec.Command(knotd, "--version").Output(); err == nil {
		t.Logf("%s", strings.TrimSpace(string(v)))
	}
	zones := map[string]string{}
	var zcs []ZoneConfig
	for _, origin := range []string{"diff.test", "child.diff.test", "apexwild.test", "dnapex.test"} {
		file, err := filepath.Abs(filepath.Join("testdata", origin+".zone"))
		if err != nil {
			t.Fatal(err)
		}
		zones[origin] = file
		zcs = append(zcs, ZoneConfig{File: file})
	}
	kaddr := startKnot(t, knotd, zones)
	_, oaddr := startServer(t, testConfig(zcs...), nil, Options{})

	for _, c := range knotDiffCases() {
		nets := c.nets
		if nets == nil {
			nets = []string{"udp", "tcp"}
		}
		for _, network := range nets {
			t.Run(c.name+"/"+network, func(t *testing.T) {
				wire := c.wire
				if wire == nil {
					var err error
					if wire, err = c.msg.Pack(); err != nil {
						t.Fatalf("pack: %v", err)
					}
				}
				wait := 2 * time.Second
				if c.maybeSilent {
					wait = 300 * time.Millisecond
				}
				o := rawExchangeMsg(t, oaddr, network, wire, wait)
				k := rawExchangeMsg(t, kaddr, network, wire, wait)
				if network == "udp" && !c.maybeSilent {
					// Again: now from the UDP fast path's answer cache,
					// which must give what the full path gave.
					if again := rawExchangeMsg(t, oaddr, network, wire, wait); diffSummary(again) != diffSummary(o) {
						t.Errorf("outpost's second (cached) answer differs:\n%s\nfirst:\n%s", diffSummary(again), diffSummary(o))
					}
				}
				if c.expect != nil {
					// An expected difference: each side is checked on
					// its own.
					c.expect(t, network, o, k)
					return
				}
				expectSame(t, o, k)
			})
		}
	}

	// Neither server may have died on the garbage above.
	for name, addr := range map[string]string{"outpost": oaddr, "knot": kaddr} {
		wire, _ := newQuery("www.diff.test.", mdns.TypeA).Pack()
		if r := rawExchangeMsg(t, addr, "udp", wire, 2*time.Second); r == nil || r.Rcode != mdns.RcodeSuccess {
			t.Errorf("%s does not answer after the battery", name)
		}
	}
}

// knotDiffCase is one query sent to both servers.
type knotDiffCase struct {
	name        string
	msg         *mdns.Msg // the query, or
	wire        []byte    // raw bytes (garbage, odd header counts)
	nets        []string  // default udp and tcp
	maybeSilent bool      // a server may rightly not answer (shorter wait)
	// expect, when set, replaces the equality check: the servers differ
	// in a way both RFC-allowed; it checks each side's behaviour.
	expect expectFunc
}

func knotDiffCases() []knotDiffCase {
	q := func(name string, qtype uint16) *mdns.Msg { return newQuery(name+"diff.test.", qtype) }
	edns := func(m *mdns.Msg, size uint16, opts ...mdns.EDNS0) *mdns.Msg {
		m.SetEdns0(size, false)
		m.IsEdns0().Option = opts
		return m
	}
	with := func(m *mdns.Msg, f func(m *mdns.Msg)) *mdns.Msg { f(m); return m }
	udp := []string{"udp"}

	cases := []knotDiffCase{
		// Existing names and types, additional-section processing.
		{name: "apex SOA", msg: q("", mdns.TypeSOA)},
		{name: "apex NS glue", msg: q("", mdns.TypeNS)},
		{name: "apex MX glue", msg: q("", mdns.TypeMX)},
		{name: "apex TXT", msg: q("", mdns.TypeTXT)},
		{name: "A", msg: q("www.", mdns.TypeA)},
		{name: "AAAA EDNS", msg: edns(q("www.", mdns.TypeAAAA), 1232)},
		{name: "SRV glue", msg: q("_sip._udp.", mdns.TypeSRV)},
		{name: "PTR", msg: q("ptr.", mdns.TypePTR)},
		{name: "CAA", msg: q("caa.", mdns.TypeCAA)},
		{name: "mixed-case owner", msg: q("mixed.", mdns.TypeA)},
		{name: "RD set, RA stays clear", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.RecursionDesired = true })},
		{name: "CD echoed", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.CheckingDisabled = true }), expect: expectCD},
		{name: "DO echoed", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.SetEdns0(1232, true) })},
		{name: "0x20 case kept", msg: newQuery("WwW.DiFf.TeSt.", mdns.TypeA)},
		{name: "0x20 NXDOMAIN", msg: newQuery("NoPe.DIFF.test.", mdns.TypeA)},
		{name: "0x20 wildcard", msg: newQuery("X.WiLd.DiFf.TeSt.", mdns.TypeA)},
		{name: "unknown type", msg: q("unknown.", 65000)},
		{name: "unknown type NODATA", msg: q("www.", 65000)},

		// Negative answers: SOA TTL min(3600, MINIMUM 300) (RFC 2308 §5).
		{name: "NODATA", msg: q("www.", mdns.TypeMX)},
		{name: "NXDOMAIN", msg: q("nope.", mdns.TypeA)},
		{name: "NXDOMAIN deep", msg: q("a.b.nope.", mdns.TypeA)},
		{name: "apex DS NODATA", msg: q("", mdns.TypeDS)},
		{name: "empty non-terminal", msg: q("b.c.", mdns.TypeA)},
		{name: "empty non-terminal 2", msg: q("c.", mdns.TypeTXT)},
		{name: "below empty non-terminal", msg: q("x.b.c.", mdns.TypeA)},

		// Wildcards (RFC 4592).
		{name: "wildcard A", msg: q("x.wild.", mdns.TypeA)},
		{name: "wildcard deep", msg: q("a.b.wild.", mdns.TypeTXT)},
		{name: "wildcard NODATA", msg: q("x.wild.", mdns.TypeMX)},
		{name: "existing name beats wildcard", msg: q("host.wild.", mdns.TypeMX)},
		{name: "existing name NODATA, no wildcard", msg: q("host.wild.", mdns.TypeA)},
		{name: "below existing name blocks wildcard", msg: q("foo.host.wild.", mdns.TypeA)},
		{name: "wildcard ENT blocks", msg: q("ent.wild.", mdns.TypeA)},
		{name: "below wildcard ENT", msg: q("x.ent.wild.", mdns.TypeA)},
		{name: "wildcard owner itself", msg: q("*.wild.", mdns.TypeA)},
		{name: "wildcard CNAME", msg: q("x.cwild.", mdns.TypeA)},
		{name: "wildcard CNAME out of zone", msg: q("x.cext.", mdns.TypeAAAA)},
		{name: "wildcard ANY", msg: q("x.wild.", mdns.TypeANY), nets: udp},
		{name: "wildcard CNAME loop", msg: q("b.wloop.", mdns.TypeA)},
		{name: "wildcard CNAME to NXDOMAIN", msg: q("x.wdang.", mdns.TypeA)},
		{name: "wildcard CNAME query", msg: q("x.cwild.", mdns.TypeCNAME)},

		// CNAME (RFC 1034 §4.3.2, RFC 2181 §10.1).
		{name: "CNAME", msg: q("alias.", mdns.TypeA)},
		{name: "CNAME query", msg: q("alias.", mdns.TypeCNAME)},
		{name: "CNAME chain", msg: q("chain1.", mdns.TypeAAAA)},
		{name: "CNAME chain NODATA", msg: q("chain1.", mdns.TypeMX)},
		{name: "CNAME other type", msg: q("alias.", mdns.TypeTXT)},
		{name: "CNAME out of zone", msg: q("ext.", mdns.TypeA)},
		{name: "CNAME loop", msg: q("loop1.", mdns.TypeA)},
		{name: "CNAME into delegation", msg: q("tosub.", mdns.TypeA)},
		{name: "CNAME to NXDOMAIN", msg: q("dangling.", mdns.TypeA)},

		// DNAME (RFC 6672).
		{name: "DNAME query", msg: q("dname.", mdns.TypeDNAME)},
		{name: "DNAME owner other type", msg: q("dname.", mdns.TypeA)},
		{name: "DNAME out of zone", msg: q("x.dname.", mdns.TypeA)},
		{name: "DNAME deep", msg: q("a.b.dname.", mdns.TypeAAAA)},
		{name: "DNAME 0x20", msg: newQuery("X.dName.DIFF.test.", mdns.TypeA)},
		{name: "DNAME in zone", msg: q("x.dnamein.", mdns.TypeA)},
		{name: "DNAME in zone NXDOMAIN", msg: q("y.host.dnamein.", mdns.TypeA)},
		{name: "CNAME to DNAME", msg: q("todname.", mdns.TypeA)},
		{name: "DNAME at apex", msg: newQuery("www.dnapex.test.", mdns.TypeA)},
		{name: "DNAME at apex, apex TXT", msg: newQuery("dnapex.test.", mdns.TypeTXT)},
		{name: "DNAME at apex, apex A", msg: newQuery("dnapex.test.", mdns.TypeA)},
		{name: "DNAME at apex, DS below", msg: newQuery("x.dnapex.test.", mdns.TypeDS)},
		// The DNAME whose target is below itself redirects until the
		// chain bound (see "CNAME chain of ten"); the DNAME is in the
		// answer once.
		{name: "DNAME into itself", msg: q("a.selfdn.", mdns.TypeA), expect: expectChain(9, 6)},
		{name: "DNAME into delegation", msg: q("x.todeleg.", mdns.TypeA)},
		{name: "DNAME into child zone", msg: q("www.tochildz.", mdns.TypeA)},
		{name: "DNAME qtype CNAME", msg: q("x.dname.", mdns.TypeCNAME)},
		{name: "DNAME qtype ANY", msg: q("x.dnamein.", mdns.TypeANY)},
		{name: "DNAME qtype DS", msg: q("x.dname.", mdns.TypeDS)},
		{name: "DNAME YXDOMAIN", msg: q(strings.Repeat("abcdefghi.", 7)+"dnamelong.", mdns.TypeA)},

		// Delegations: referral with AA clear, glue; DS from the parent.
		{name: "referral", msg: q("host.sub.", mdns.TypeA)},
		{name: "referral at cut", msg: q("sub.", mdns.TypeNS)},
		{name: "referral at cut A", msg: q("sub.", mdns.TypeA)},
		{name: "referral for glue name", msg: q("ns.sub.", mdns.TypeA)},
		{name: "DS at cut", msg: q("sub.", mdns.TypeDS)},
		{name: "DS below cut", msg: q("x.sub.", mdns.TypeDS)},
		{name: "referral EDNS", msg: edns(q("deep.host.sub.", mdns.TypeAAAA), 1232)},

		// Parent and child zones on one server (RFC 4035 §3.1.4.1: DS from
		// the parent side), NS and data from the child.
		{name: "child apex DS from parent", msg: q("child.", mdns.TypeDS)},
		{name: "child apex NS", msg: q("child.", mdns.TypeNS)},
		{name: "child apex SOA", msg: q("child.", mdns.TypeSOA)},
		{name: "child data", msg: q("www.child.", mdns.TypeA)},
		{name: "child NXDOMAIN", msg: q("nope.child.", mdns.TypeA)},
		{name: "child DS below apex", msg: q("www.child.", mdns.TypeDS)},
		{name: "child DS 0x20", msg: newQuery("CHILD.diff.TEST.", mdns.TypeDS)},

		// A wildcard at the apex (RFC 4592 §2.2.1).
		{name: "apex wildcard", msg: newQuery("x.apexwild.test.", mdns.TypeA)},
		{name: "apex wildcard deep", msg: newQuery("x.y.apexwild.test.", mdns.TypeMX)},
		{name: "apex wildcard NODATA", msg: newQuery("x.apexwild.test.", mdns.TypeTXT)},
		{name: "apex wildcard ENT blocks", msg: newQuery("c.apexwild.test.", mdns.TypeA)},
		{name: "apex wildcard below ENT", msg: newQuery("x.c.apexwild.test.", mdns.TypeA)},
		{name: "apex wildcard existing", msg: newQuery("ns1.apexwild.test.", mdns.TypeMX)},
		{name: "apex wildcard CNAME", msg: newQuery("x.d.apexwild.test.", mdns.TypeA)},
		{name: "apex wildcard under delegation", msg: newQuery("x.sub.apexwild.test.", mdns.TypeA)},
		{name: "apex wildcard DS", msg: newQuery("x.apexwild.test.", mdns.TypeDS)},
		{name: "apex wildcard ANY", msg: newQuery("x.apexwild.test.", mdns.TypeANY), expect: expectANY},
		{name: "apex wildcard owner", msg: newQuery("*.apexwild.test.", mdns.TypeA)},
		{name: "asterisk label inside", msg: q("a.*.wild.", mdns.TypeTXT)},
		{name: "below asterisk label inside", msg: q("x.*.wild.", mdns.TypeTXT)},
		{name: "below wildcard owner", msg: q("y.*.wild.", mdns.TypeA)},

		{name: "CNAME into child zone", msg: q("tochild.", mdns.TypeA)},
		// Expected difference: how far a server follows a CNAME chain in
		// its zone is its choice (RFC 1034 §4.3.2 sets no bound); the
		// resolver goes on from the last target. Outpost stops after 8
		// CNAMEs, Knot after 5.
		{name: "CNAME chain of ten", msg: q("c0.", mdns.TypeA), expect: expectChain(8, 5)},
		{name: "sibling glue", msg: q("x.sib.", mdns.TypeA)},
		{name: "MX target occluded", msg: q("mxsub.", mdns.TypeMX)},
		// Expected difference: additional-section data is optional (RFC
		// 1034 §4.3.2 step 6, RFC 2181 §9). Outpost precomputes it from
		// names that exist; Knot also synthesizes it from a wildcard.
		{name: "MX target wildcard", msg: q("mxwild.", mdns.TypeMX), expect: expectNoExtra},
		{name: "MX target CNAME", msg: q("mxcname.", mdns.TypeMX)},
		// Expected difference: an RRset whose TTLs differ is a zone error
		// (RFC 2181 §5.2); Outpost serves the lowest TTL, as §5.2 tells
		// clients to treat it, Knot the last one it read.
		{name: "RRset TTLs differ", msg: q("ttlmix.", mdns.TypeA), expect: expectTTL(100, 200)},
		{name: "SOA below apex", msg: q("www.", mdns.TypeSOA)},
		{name: "NS below apex", msg: q("www.", mdns.TypeNS)},

		// Out of zone.
		{name: "out of zone", msg: newQuery("www.example.net.", mdns.TypeA)},
		{name: "parent of zone", msg: newQuery("test.", mdns.TypeSOA)},
		{name: "root", msg: newQuery(".", mdns.TypeNS)},

		// ANY (RFC 8482).
		{name: "ANY single type", msg: q("ptr.", mdns.TypeANY)},
		{name: "ANY ENT", msg: q("b.c.", mdns.TypeANY)},
		{name: "ANY NXDOMAIN", msg: q("nope.", mdns.TypeANY)},
		{name: "ANY", msg: q("www.", mdns.TypeANY), expect: expectANY},
		{name: "ANY apex", msg: q("", mdns.TypeANY), expect: expectANY},

		// Classes.
		{name: "CH version.bind", msg: chaos("version.bind."), expect: expectChaos},
		{name: "CH id.server", msg: chaos("id.server."), expect: expectChaos},
		{name: "CH zone data", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.Question[0].Qclass = mdns.ClassCHAOS })},
		// Expected difference: Outpost refuses QCLASS * as every class but
		// IN (RFC 1035 §4.1.1 policy refusal); Knot answers it from IN
		// data with AA set.
		{name: "class ANY zone data", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.Question[0].Qclass = mdns.ClassANY }),
			expect: expectRcodes(mdns.RcodeRefused, mdns.RcodeSuccess)},

		// EDNS (RFC 6891, 7873).
		{name: "EDNS version 1", msg: with(edns(q("www.", mdns.TypeA), 1232), func(m *mdns.Msg) { m.IsEdns0().SetVersion(1) })},
		{name: "EDNS unknown option", msg: edns(q("www.", mdns.TypeA), 1232, &mdns.EDNS0_LOCAL{Code: 65001, Data: []byte{1, 2, 3}})},
		{name: "EDNS small size", msg: edns(q("www.", mdns.TypeA), 100)},
		{name: "EDNS big size", msg: edns(q("big.", mdns.TypeTXT), 65535)},
		{name: "EDNS cookie", msg: edns(q("www.", mdns.TypeA), 1232, &mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0102030405060708"})},
		{name: "EDNS cookie NXDOMAIN", msg: edns(q("nope.", mdns.TypeA), 1232, &mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0102030405060708"})},
		{name: "EDNS cookie too short", msg: edns(q("www.", mdns.TypeA), 1232, &mdns.EDNS0_LOCAL{Code: mdns.EDNS0COOKIE, Data: []byte{1, 2, 3, 4, 5}})},
		{name: "EDNS cookie bad server part", msg: edns(q("www.", mdns.TypeA), 1232, &mdns.EDNS0_LOCAL{Code: mdns.EDNS0COOKIE, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}})},
		// Expected difference: NSID (RFC 5001) is optional; Outpost
		// ignores the option, Knot answers with its identity.
		{name: "EDNS NSID", msg: edns(q("www.", mdns.TypeA), 1232, &mdns.EDNS0_NSID{Code: mdns.EDNS0NSID}),
			expect: expectOptions(nil, []uint16{mdns.EDNS0NSID})},
		// Expected difference: Outpost implements ECS (RFC 7871) for
		// steering and echoes the option with scope 0 on answers that do
		// not depend on the client (§7.2.1); Knot, without its geoip
		// module, ignores it as §7.1.3 allows.
		{name: "EDNS ECS", msg: edns(q("www.", mdns.TypeA), 1232, &mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(192, 0, 2, 0).To4()}),
			expect: expectOptions([]uint16{mdns.EDNS0SUBNET}, nil)},
		{name: "EDNS padding", msg: edns(q("www.", mdns.TypeA), 1232, &mdns.EDNS0_PADDING{Padding: make([]byte, 16)})},
		{name: "EDNS two OPT", msg: with(edns(q("www.", mdns.TypeA), 1232), func(m *mdns.Msg) { m.Extra = append(m.Extra, m.Extra[0]) })},

		// Truncation: UDP too small, then TCP gets it all.
		{name: "TC no EDNS", msg: q("big.", mdns.TypeTXT), nets: udp, expect: expectTC},
		{name: "TC EDNS 512", msg: edns(q("big.", mdns.TypeTXT), 512), nets: udp, expect: expectTC},
		{name: "TCP retry no EDNS", msg: q("big.", mdns.TypeTXT), nets: []string{"tcp"}},
		{name: "TCP retry EDNS 512", msg: edns(q("big.", mdns.TypeTXT), 512), nets: []string{"tcp"}},

		// Sizes: additional records that do not fit are left out without TC
		// (RFC 2181 §9); an answer over our 1232 octets is truncated even
		// for a client offering 4096.
		{name: "additional does not fit", msg: q("bigmx.", mdns.TypeMX), nets: udp},
		{name: "additional fits EDNS", msg: edns(q("bigmx.", mdns.TypeMX), 1232)},
		{name: "referral glue does not fit", msg: q("x.bigdeleg.", mdns.TypeA), nets: udp},
		{name: "referral glue EDNS", msg: edns(q("x.bigdeleg.", mdns.TypeA), 1232)},
		{name: "over 1232 EDNS 4096", msg: edns(q("huge.", mdns.TypeTXT), 4096), nets: udp, expect: expectTC},
		{name: "over 1232 TCP", msg: edns(q("huge.", mdns.TypeTXT), 4096), nets: []string{"tcp"}},

		// Odd names, types and classes.
		{name: "escaped dot label", msg: q(`x\.wild.`, mdns.TypeA)},
		{name: "binary label", msg: q(`\200\001.wild.`, mdns.TypeA)},
		{name: "uppercase binary label", msg: q(`\196.diff.`, mdns.TypeA)},
		{name: "255-octet name", msg: newQuery(strings.Repeat(strings.Repeat("x", 63)+".", 3)+strings.Repeat("a", 46)+".wild.diff.test.", mdns.TypeA)},
		// Expected difference: TYPE0 is reserved (RFC 6895 §3.1).
		// Outpost answers it as any type it holds no data for (NODATA),
		// Knot NOTIMP.
		{name: "qtype 0", msg: q("www.", 0), expect: expectRcodes(mdns.RcodeSuccess, mdns.RcodeNotImplemented)},
		{name: "qtype RRSIG", msg: q("www.", mdns.TypeRRSIG)},
		{name: "qtype NSEC", msg: q("www.", mdns.TypeNSEC)},
		{name: "qtype DNSKEY", msg: q("", mdns.TypeDNSKEY)},
		{name: "qtype MAILB", msg: q("www.", mdns.TypeMAILB)},
		// Expected difference: meta-types (RFC 6895 §3.1) only live in
		// a transaction, never in a zone: Outpost says FORMERR to a query
		// for one, Knot answers NODATA.
		{name: "qtype OPT", msg: q("www.", mdns.TypeOPT), expect: expectRcodes(mdns.RcodeFormatError, mdns.RcodeSuccess)},
		{name: "qtype TSIG", msg: q("www.", mdns.TypeTSIG), expect: expectRcodes(mdns.RcodeFormatError, mdns.RcodeSuccess)},
		{name: "qtype TKEY", msg: q("www.", mdns.TypeTKEY), expect: expectRcodes(mdns.RcodeFormatError, mdns.RcodeSuccess)},
		// Expected difference: IXFR over UDP from a client that may not
		// transfer: Outpost REFUSED, Knot NOTAUTH.
		{name: "IXFR over UDP", msg: q("", mdns.TypeIXFR), nets: udp, expect: expectRcodes(mdns.RcodeRefused, mdns.RcodeNotAuth)},
		{name: "class NONE", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.Question[0].Qclass = mdns.ClassNONE })},
		{name: "class HS", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.Question[0].Qclass = mdns.ClassHESIOD })},
		{name: "class 0", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.Question[0].Qclass = 0 })},
		{name: "Z bit", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.Zero = true })},
		{name: "AD bit", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.AuthenticatedData = true })},
		{name: "TC bit in query", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.Truncated = true })},
		{name: "AA bit in query", msg: with(q("nope.", mdns.TypeA), func(m *mdns.Msg) { m.Authoritative = true })},
		{name: "EDNS size 0", msg: edns(q("big.", mdns.TypeTXT), 0), nets: udp, expect: expectTC},
		{name: "EDNS unknown flags", msg: with(edns(q("www.", mdns.TypeA), 1232), func(m *mdns.Msg) { m.IsEdns0().Hdr.Ttl |= 0x7fff })},
		{name: "EDNS DO NXDOMAIN", msg: with(q("nope.", mdns.TypeA), func(m *mdns.Msg) { m.SetEdns0(1232, true) })},
		// Expected differences: an OPT owned by another name than the
		// root (RFC 6891 §6.1.2 says it MUST be the root) gets FORMERR from
		// Outpost while Knot ignores the owner; an OPT in the authority
		// section, where RFC 6891 never puts one, is ignored by Outpost (no
		// EDNS) and FORMERR from Knot.
		{name: "OPT owner not root", msg: with(edns(q("www.", mdns.TypeA), 1232), func(m *mdns.Msg) { m.IsEdns0().Hdr.Name = "www.diff.test." }),
			expect: expectRcodes(mdns.RcodeFormatError, mdns.RcodeSuccess)},
		{name: "OPT in authority", msg: with(edns(q("www.", mdns.TypeA), 1232), func(m *mdns.Msg) { m.Ns, m.Extra = m.Extra, nil }),
			expect: expectRcodes(mdns.RcodeSuccess, mdns.RcodeFormatError)},

		// Opcodes.
		// Expected difference: Outpost implements neither NOTIFY (it is
		// never a secondary) nor UPDATE, so NOTIMP (RFC 1996 §3.2 lets a
		// server without NOTIFY support say so, RFC 2136 §3.8); Knot
		// implements both and answers NOTAUTH, no ACL allowing us.
		{name: "NOTIFY", msg: with(q("", mdns.TypeSOA), func(m *mdns.Msg) { m.Opcode = mdns.OpcodeNotify; m.Authoritative = true }),
			expect: expectRcodes(mdns.RcodeNotImplemented, mdns.RcodeNotAuth)},
		{name: "UPDATE", msg: with(q("", mdns.TypeSOA), func(m *mdns.Msg) { m.Opcode = mdns.OpcodeUpdate }),
			expect: expectRcodes(mdns.RcodeNotImplemented, mdns.RcodeNotAuth)},
		{name: "STATUS", msg: with(q("", mdns.TypeSOA), func(m *mdns.Msg) { m.Opcode = mdns.OpcodeStatus })},
		{name: "opcode 3", msg: with(q("", mdns.TypeSOA), func(m *mdns.Msg) { m.Opcode = 3 })},
		{name: "opcode 15", msg: with(q("", mdns.TypeSOA), func(m *mdns.Msg) { m.Opcode = 15 })},

		// RFC 6891 §7: a query with an OPT gets one back, errors included.
		{name: "EDNS NOTIFY", msg: with(edns(q("", mdns.TypeSOA), 1232), func(m *mdns.Msg) { m.Opcode = mdns.OpcodeNotify }),
			expect: expectRcodes(mdns.RcodeNotImplemented, mdns.RcodeNotAuth)},
		{name: "EDNS opcode 3", msg: with(edns(q("", mdns.TypeSOA), 1232), func(m *mdns.Msg) { m.Opcode = 3 })},
		{name: "EDNS qdcount 0", msg: with(edns(q("", mdns.TypeSOA), 1232), func(m *mdns.Msg) { m.Question = nil })},
		{name: "EDNS qdcount 0 cookie", msg: with(edns(q("", mdns.TypeSOA), 1232, &mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0102030405060708"}),
			func(m *mdns.Msg) { m.Question = nil })},
		// Expected difference: Knot adds an Extended DNS Error (RFC 8914,
		// optional) to REFUSED; Outpost does not.
		{name: "EDNS out of zone", msg: edns(newQuery("example.net.", mdns.TypeA), 1232), expect: expectOptions(nil, []uint16{mdns.EDNS0EDE})},
		{name: "EDNS CH", msg: edns(chaos("id.server."), 1232), expect: expectChaos},
		{name: "EDNS version 1 DO", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.SetEdns0(1232, true); m.IsEdns0().SetVersion(1) })},
		{name: "EDNS version 1 out of zone", msg: with(edns(newQuery("example.net.", mdns.TypeA), 1232), func(m *mdns.Msg) { m.IsEdns0().SetVersion(1) })},
		{name: "EDNS qtype OPT", msg: edns(q("www.", mdns.TypeOPT), 1232), expect: expectRcodes(mdns.RcodeFormatError, mdns.RcodeSuccess)},

		// Header counts and garbage.
		{name: "qdcount 0", msg: with(q("", mdns.TypeSOA), func(m *mdns.Msg) { m.Question = nil })},
		// Expected difference: a query with two questions is undefined
		// (RFC 9619 makes QDCOUNT 1 the rule): Outpost says FORMERR, Knot
		// drops it.
		{name: "qdcount 2", msg: with(q("", mdns.TypeSOA), func(m *mdns.Msg) { m.Question = append(m.Question, m.Question[0]) }),
			maybeSilent: true, expect: expectRcodes(mdns.RcodeFormatError, noAnswer)},
		// Expected difference: records in the answer section of a QUERY
		// have no meaning; Outpost (as miekg/dns's default filter) says
		// FORMERR, Knot ignores them and answers.
		{name: "answer in query", msg: with(q("", mdns.TypeSOA), func(m *mdns.Msg) {
			m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: "x.diff.test.", Rrtype: mdns.TypeA, Class: mdns.ClassINET}, A: net.IPv4(192, 0, 2, 1)}}
		}), expect: expectRcodes(mdns.RcodeFormatError, mdns.RcodeSuccess)},
		{name: "QR set", msg: with(q("www.", mdns.TypeA), func(m *mdns.Msg) { m.Response = true }), maybeSilent: true},
		// Expected difference: AXFR is TCP-only (RFC 5936 §4.2). Outpost
		// checks the client first (REFUSED: not a configured secondary;
		// a secondary gets FORMERR over UDP), Knot says NOTIMP.
		{name: "AXFR over UDP", msg: q("", mdns.TypeAXFR), nets: udp, expect: expectRcodes(mdns.RcodeRefused, mdns.RcodeNotImplemented)},
	}
	base, _ := q("www.", mdns.TypeA).Pack()
	garbage := []struct {
		name string
		b    []byte
	}{
		{"3 bytes", base[:3]},
		{"header only, qdcount 1", base[:12]},
		{"question cut in name", base[:16]},
		{"question cut in type", base[:len(base)-3]},
		{"compression loop", append(append([]byte(nil), base[:12]...), 0xC0, 12, 0, 1, 0, 1)},
		{"label too long", append(append([]byte(nil), base[:12]...), 64, 'a', 0, 0, 1, 0, 1)},
		{"OPT cut short", func() []byte {
			b, _ := edns(q("www.", mdns.TypeA), 1232).Pack()
			return b[:len(b)-4]
		}()},
		{"name over 255 octets", func() []byte {
			b, _ := newQuery(strings.Repeat(strings.Repeat("x", 63)+".", 3)+strings.Repeat("a", 52)+".wild.diff.test.", mdns.TypeA).Pack()
			return b
		}()},
		{"random", []byte{0x13, 0x37, 0x01, 0x00, 0x00, 0x01, 0xff, 0xff, 0x00, 0x00, 0x12, 0x34, 0x99, 0x88, 0x77}},
	}
	for _, g := range garbage {
		cases = append(cases, knotDiffCase{name: "garbage " + g.name, wire: g.b, maybeSilent: true, expect: expectGarbage})
	}
	// Expected difference: bytes after the last counted record. Outpost
	// (miekg/dns) ignores them and answers; Knot says FORMERR. RFC 1035
	// does not say, so both are fine.
	cases = append(cases, knotDiffCase{name: "trailing bytes", nets: udp,
		wire:   append(append([]byte(nil), base...), 0xde, 0xad, 0xbe, 0xef),
		expect: expectRcodes(mdns.RcodeSuccess, mdns.RcodeFormatError)})
	return cases
}

func chaos(name string) *mdns.Msg {
	m := newQuery(name, mdns.TypeTXT)
	m.Question[0].Qclass = mdns.ClassCHAOS
	return m
}

// Expected differences. Each checks both servers' answers on their own.

// expectANY: RFC 8482 §4.1 lets a server answer ANY with one RRset of
// its choice, as both do (over UDP and TCP). Which RRset is each one's
// choice, and Knot adds the additional-section addresses of NS, MX and SRV
// targets, while Outpost keeps the minimal answer minimal.
func expectANY(t *testing.T, network string, o, k *mdns.Msg) {
	t.Helper()
	for _, s := range sides(o, k) {
		name, r := s.name, s.r
		if r == nil || r.Rcode != mdns.RcodeSuccess || !r.Authoritative || typesIn(r.Answer) != 1 {
			t.Fatalf("%s: want one authoritative RRset, got\n%s", name, diffSummary(r))
		}
	}
	if len(rrStrings(o.Extra)) != 0 {
		t.Errorf("outpost: additional records in a minimal ANY answer:\n%s", diffSummary(o))
	}
}

// expectChain: both answer a long CNAME chain with a prefix of it, o
// and k records long; everything else agrees.
func expectChain(o, k int) expectFunc {
	return func(t *testing.T, network string, outpost, knot *mdns.Msg) {
		t.Helper()
		if outpost == nil || knot == nil || len(outpost.Answer) != o || len(knot.Answer) != k {
			t.Fatalf("want %d and %d records, got\n%s\n%s", o, k, diffSummary(outpost), diffSummary(knot))
		}
		outpost.Answer = outpost.Answer[:k]
		expectSame(t, outpost, knot)
	}
}

// expectNoExtra: Knot has additional records Outpost does not; the rest
// agrees.
func expectNoExtra(t *testing.T, network string, o, k *mdns.Msg) {
	t.Helper()
	if o == nil || k == nil || len(o.Extra) != 0 || len(k.Extra) == 0 {
		t.Fatalf("want additional records from Knot only, got\n%s\n%s", diffSummary(o), diffSummary(k))
	}
	k.Extra = nil
	expectSame(t, o, k)
}

// expectTTL: the answers agree but for the TTL of the answer records, o
// from Outpost and k from Knot.
func expectTTL(o, k uint32) expectFunc {
	return func(t *testing.T, network string, outpost, knot *mdns.Msg) {
		t.Helper()
		for i, s := range sides(outpost, knot) {
			ttl := [2]uint32{o, k}[i]
			if s.r == nil || len(s.r.Answer) == 0 {
				t.Fatalf("%s: no answer", s.name)
			}
			for _, rr := range s.r.Answer {
				if rr.Header().Ttl != ttl {
					t.Errorf("%s: TTL %d, want %d", s.name, rr.Header().Ttl, ttl)
				}
				rr.Header().Ttl = 0
			}
		}
		expectSame(t, outpost, knot)
	}
}

func expectSame(t *testing.T, o, k *mdns.Msg) {
	t.Helper()
	if ostr, kstr := diffSummary(o), diffSummary(k); ostr != kstr {
		t.Errorf("Outpost and Knot differ\n--- outpost\n%s\n--- knot\n%s", ostr, kstr)
	}
}

// expectOptions: the answers agree but for the EDNS options each returns.
func expectOptions(o, k []uint16) expectFunc {
	return func(t *testing.T, network string, outpost, knot *mdns.Msg) {
		t.Helper()
		if outpost == nil || knot == nil || outpost.IsEdns0() == nil || knot.IsEdns0() == nil {
			t.Fatalf("want EDNS answers from both:\n%s\n%s", diffSummary(outpost), diffSummary(knot))
		}
		for i, s := range sides(outpost, knot) {
			codes := [2][]uint16{o, k}[i]
			var got []uint16
			for _, opt := range s.r.IsEdns0().Option {
				got = append(got, opt.Option())
			}
			if fmt.Sprint(got) != fmt.Sprint(codes) {
				t.Errorf("%s: EDNS options %v, want %v", s.name, got, codes)
			}
			s.r.IsEdns0().Option = nil
		}
		expectSame(t, outpost, knot)
	}
}

// expectChaos: CH TXT version.bind and id.server are optional (RFC 4892 is
// informational). Outpost refuses class CH, not revealing its version;
// Knot answers with its version and identity.
func expectChaos(t *testing.T, network string, o, k *mdns.Msg) {
	t.Helper()
	if o == nil || o.Rcode != mdns.RcodeRefused || len(o.Answer) != 0 {
		t.Errorf("outpost: %v, want REFUSED", o)
	}
	if k == nil || k.Rcode != mdns.RcodeSuccess || len(k.Answer) != 1 || k.Answer[0].Header().Class != mdns.ClassCHAOS {
		t.Errorf("knot: %v, want a CH TXT answer", k)
	}
}

// expectTC: an answer too big for the UDP size has TC set (RFC 1035
// §4.2.1, RFC 2181 §9). What else a truncated answer holds is up to the
// server: Outpost keeps the records that fit (a partial RRset, which RFC
// 2181 §9 allows), Knot sends an empty answer section. Both are then
// retried over TCP (the "TCP retry" cases), where they agree.
func expectTC(t *testing.T, network string, o, k *mdns.Msg) {
	t.Helper()
	for _, s := range sides(o, k) {
		name, r := s.name, s.r
		if r == nil || !r.Truncated || r.Rcode != mdns.RcodeSuccess || !r.Authoritative {
			t.Fatalf("%s: %v, want NOERROR with TC and AA", name, r)
		}
	}
}

// expectGarbage: a malformed query gets FORMERR or no answer (RFC 1035
// §4.1.1 leaves dropping to the server); only what each gives differs.
func expectGarbage(t *testing.T, network string, o, k *mdns.Msg) {
	t.Helper()
	for _, s := range sides(o, k) {
		name, r := s.name, s.r
		if r != nil && r.Rcode != mdns.RcodeFormatError {
			t.Errorf("%s: rcode %s, want FORMERR or no answer", name, mdns.RcodeToString[r.Rcode])
		}
	}
}

// noAnswer in expectRcodes: the server stays silent.
const noAnswer = -1

// expectRcodes checks that Outpost answers with rcode o and Knot with k
// (or not at all, noAnswer), each echoing the question when it answers
// with one.
func expectRcodes(o, k int) expectFunc {
	return func(t *testing.T, network string, outpost, knot *mdns.Msg) {
		t.Helper()
		for i, s := range sides(outpost, knot) {
			rcode := [2]int{o, k}[i]
			switch {
			case rcode == noAnswer && s.r != nil:
				t.Errorf("%s answered, expected silence:\n%s", s.name, diffSummary(s.r))
			case rcode != noAnswer && (s.r == nil || s.r.Rcode != rcode):
				t.Errorf("%s: want rcode %s, got\n%s", s.name, mdns.RcodeToString[rcode], diffSummary(s.r))
			case s.r != nil && s.r.Rcode != mdns.RcodeFormatError && len(s.r.Question) != 1:
				t.Errorf("%s: question not echoed:\n%s", s.name, diffSummary(s.r))
			}
		}
		// EDNS presence must agree, except on FORMERR for a broken OPT.
		if outpost != nil && knot != nil && outpost.Rcode != mdns.RcodeFormatError && knot.Rcode != mdns.RcodeFormatError &&
			(outpost.IsEdns0() == nil) != (knot.IsEdns0() == nil) {
			t.Errorf("EDNS in one answer only:\n%s\n%s", diffSummary(outpost), diffSummary(knot))
		}
	}
}

// expectCD: Outpost copies CD into the response (RFC 4035 §3.1.6, as
// miekg/dns's SetReply does); Knot, serving no signed zone, clears it.
// Everything else must agree.
func expectCD(t *testing.T, network string, o, k *mdns.Msg) {
	t.Helper()
	if o == nil || k == nil || !o.CheckingDisabled || k.CheckingDisabled {
		t.Fatalf("CD: outpost %v, knot %v; want outpost to copy it, knot to clear it", o, k)
	}
	o.CheckingDisabled = false
	expectSame(t, o, k)
}

// expectFunc checks an expected difference: each server's answer on its
// own, then usually the rest for equality.
type expectFunc func(t *testing.T, network string, outpost, knot *mdns.Msg)

type side struct {
	name string
	r    *mdns.Msg
}

func sides(outpost, knot *mdns.Msg) [2]side {
	return [2]side{{"outpost", outpost}, {"knot", knot}}
}

func typesIn(rrs []mdns.RR) int {
	seen := map[uint16]bool{}
	for _, rr := range rrs {
		seen[rr.Header().Rrtype] = true
	}
	return len(seen)
}

// diffSummary renders what the servers must agree on: header flags and
// rcode, the question exactly as echoed (0x20), sections as sorted sets
// (compared case-insensitively: Knot compresses names in RDATA against
// the question as asked, so an SOA in authority can come back as
// ns1.DIFF.test.), and the OPT record.
func diffSummary(r *mdns.Msg) string {
	if r == nil {
		return "no answer"
	}
	var b strings.Builder
	rcode := mdns.RcodeToString[r.Rcode]
	if r.Rcode == mdns.RcodeBadVers && r.IsEdns0() != nil {
		rcode = "BADVERS" // 16 is BADSIG only in TSIG
	}
	fmt.Fprintf(&b, "opcode %s rcode %s qr=%v aa=%v tc=%v rd=%v ra=%v ad=%v cd=%v\n",
		mdns.OpcodeToString[r.Opcode], rcode, r.Response, r.Authoritative,
		r.Truncated, r.RecursionDesired, r.RecursionAvailable, r.AuthenticatedData, r.CheckingDisabled)
	for _, q := range r.Question {
		fmt.Fprintf(&b, "question %s %s %s\n", q.Name, mdns.ClassToString[q.Qclass], mdns.TypeToString[q.Qtype])
	}
	for _, sec := range []struct {
		name string
		rrs  []mdns.RR
	}{{"answer", r.Answer}, {"authority", r.Ns}, {"additional", r.Extra}} {
		for _, s := range rrStrings(sec.rrs) {
			fmt.Fprintf(&b, "%s %s\n", sec.name, strings.ToLower(s))
		}
	}
	if opt := r.IsEdns0(); opt != nil {
		var codes []string
		for _, o := range opt.Option {
			codes = append(codes, fmt.Sprint(o.Option()))
		}
		sort.Strings(codes)
		fmt.Fprintf(&b, "edns version %d size %d do=%v options %v\n", opt.Version(), opt.UDPSize(), opt.Do(), codes)
	} else {
		b.WriteString("no edns\n")
	}
	return b.String()
}

// rawExchangeMsg sends wire as is over network and unpacks the reply; nil
// when there is none within wait (or it does not parse).
func rawExchangeMsg(t *testing.T, addr, network string, wire []byte, wait time.Duration) *mdns.Msg {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	var resp []byte
	if network == "tcp" {
		if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(wire)))); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(wire); err != nil {
			return nil
		}
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return nil
		}
		resp = make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, resp); err != nil {
			return nil
		}
	} else {
		if _, err := c.Write(wire); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		if err != nil {
			return nil
		}
		resp = buf[:n]
	}
	m := new(mdns.Msg)
	if err := m.Unpack(resp); err != nil {
		t.Logf("unparsable reply from %s: %v", addr, err)
		return nil
	}
	return m
}

// startKnot runs knotd on a free 127.0.0.1 port serving zones (origin →
// file) and returns its address once they are loaded.
func startKnot(t *testing.T, knotd string, zones map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	pc, ln := listenPair(t, "127.0.0.1")
	addr := pc.LocalAddr().String()
	pc.Close()
	ln.Close()
	host, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf(`server:
    rundir: %q
    listen: %s@%s
database:
    storage: %q
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: %q
    semantic-checks: off
zone:
`, dir, host, port, filepath.Join(dir, "db"), dir)
	for origin, file := range zones {
		conf += fmt.Sprintf("  - domain: %s\n    file: %q\n    journal-content: none\n    zonefile-sync: -1\n", origin, file)
	}
	cf := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "knot.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	logs := func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }
	cmd := exec.Command(knotd, "-c", cf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start knotd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for origin := range zones {
		wire, _ := newQuery(origin+".", mdns.TypeSOA).Pack()
		for {
			select {
			case <-exited:
				t.Fatalf("knotd exited: %s", logs())
			default:
			}
			if r := rawExchangeMsg(t, addr, "udp", wire, 200*time.Millisecond); r != nil && r.Rcode == mdns.RcodeSuccess {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("knotd did not serve %s within 10s: %s", origin, logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return addr
}
