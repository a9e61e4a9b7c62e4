package dns

import (
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
)

const soaNeg = "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2026120401 7200 3600 1209600 300"

// TestAnswers checks the RFC 1034 §4.3.2 / RFC 2308 / RFC 4592 rules as
// tables of RR strings, over real UDP and TCP.
func TestAnswers(t *testing.T) {
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	_, addr := startServer(t, cfg, nil, Options{})
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		aa     bool
		answer []string
		ns     []string
		extra  []string
	}{
		{name: "A", qname: "www.example.com.", qtype: mdns.TypeA, aa: true,
			answer: []string{"www.example.com. 3600 IN A 192.0.2.80"}},
		{name: "case preserved", qname: "WwW.ExAmPlE.CoM.", qtype: mdns.TypeAAAA, aa: true,
			answer: []string{"www.example.com. 3600 IN AAAA 2001:db8::80"}},
		{name: "apex SOA", qname: "example.com.", qtype: mdns.TypeSOA, aa: true,
			answer: []string{"example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 2026120401 7200 3600 1209600 300"}},
		{name: "apex NS with glue", qname: "example.com.", qtype: mdns.TypeNS, aa: true,
			answer: []string{"example.com. 3600 IN NS ns1.example.com.", "example.com. 3600 IN NS ns2.example.com."},
			extra:  []string{"ns1.example.com. 3600 IN A 192.0.2.53", "ns2.example.com. 3600 IN A 192.0.2.54"}},
		{name: "MX with additional", qname: "example.com.", qtype: mdns.TypeMX, aa: true,
			answer: []string{"example.com. 3600 IN MX 10 mail.example.com."},
			extra:  []string{"mail.example.com. 3600 IN A 192.0.2.25"}},
		{name: "SRV with additional", qname: "_sip._udp.example.com.", qtype: mdns.TypeSRV, aa: true,
			answer: []string{"_sip._udp.example.com. 3600 IN SRV 10 60 5060 sip.example.com."},
			extra:  []string{"sip.example.com. 3600 IN A 192.0.2.60"}},
		{name: "CAA", qname: "caa.example.com.", qtype: mdns.TypeCAA, aa: true,
			answer: []string{`caa.example.com. 3600 IN CAA 0 issue "letsencrypt.org"`}},
		{name: "PTR", qname: "ptr.example.com.", qtype: mdns.TypePTR, aa: true,
			answer: []string{"ptr.example.com. 3600 IN PTR www.example.com."}},
		{name: "TXT", qname: "example.com.", qtype: mdns.TypeTXT, aa: true,
			answer: []string{`example.com. 3600 IN TXT "v=spf1 -all"`}},
		{name: "included file", qname: "included.example.com.", qtype: mdns.TypeA, aa: true,
			answer: []string{"included.example.com. 3600 IN A 192.0.2.77"}},
		{name: "NXDOMAIN", qname: "nope.example.com.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, aa: true,
			ns: []string{soaNeg}},
		{name: "NODATA", qname: "www.example.com.", qtype: mdns.TypeMX, aa: true,
			ns: []string{soaNeg}},
		{name: "empty non-terminal is NODATA", qname: "b.c.example.com.", qtype: mdns.TypeA, aa: true,
			ns: []string{soaNeg}},
		{name: "below empty non-terminal is NXDOMAIN", qname: "x.c.example.com.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, aa: true,
			ns: []string{soaNeg}},
		{name: "CNAME followed", qname: "alias.example.com.", qtype: mdns.TypeA, aa: true,
			answer: []string{"alias.example.com. 3600 IN CNAME www.example.com.", "www.example.com. 3600 IN A 192.0.2.80"}},
		{name: "CNAME query", qname: "alias.example.com.", qtype: mdns.TypeCNAME, aa: true,
			answer: []string{"alias.example.com. 3600 IN CNAME www.example.com."}},
		{name: "CNAME chain", qname: "chain1.example.com.", qtype: mdns.TypeA, aa: true,
			answer: []string{"chain1.example.com. 3600 IN CNAME chain2.example.com.", "chain2.example.com. 3600 IN CNAME www.example.com.", "www.example.com. 3600 IN A 192.0.2.80"}},
		{name: "CNAME to NODATA", qname: "alias.example.com.", qtype: mdns.TypeMX, aa: true,
			answer: []string{"alias.example.com. 3600 IN CNAME www.example.com."},
			ns:     []string{soaNeg}},
		{name: "CNAME out of zone", qname: "ext.example.com.", qtype: mdns.TypeA, aa: true,
			answer: []string{"ext.example.com. 3600 IN CNAME www.example.net."}},
		{name: "CNAME loop stops", qname: "loop1.example.com.", qtype: mdns.TypeA, aa: true,
			answer: []string{"loop1.example.com. 3600 IN CNAME loop2.example.com.", "loop2.example.com. 3600 IN CNAME loop1.example.com."}},
		{name: "wildcard", qname: "anything.wild.example.com.", qtype: mdns.TypeA, aa: true,
			answer: []string{"anything.wild.example.com. 3600 IN A 192.0.2.42"}},
		{name: "wildcard deep", qname: "a.b.wild.example.com.", qtype: mdns.TypeTXT, aa: true,
			answer: []string{`a.b.wild.example.com. 3600 IN TXT "wildcard"`}},
		{name: "wildcard NODATA", qname: "anything.wild.example.com.", qtype: mdns.TypeMX, aa: true,
			ns: []string{soaNeg}},
		{name: "existing name blocks wildcard", qname: "x.wild.example.com.", qtype: mdns.TypeA, aa: true,
			ns: []string{soaNeg}},
		{name: "below existing name no wildcard", qname: "y.x.wild.example.com.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, aa: true,
			ns: []string{soaNeg}},
		{name: "wildcard CNAME", qname: "foo.cwild.example.com.", qtype: mdns.TypeA, aa: true,
			answer: []string{"foo.cwild.example.com. 3600 IN CNAME www.example.com.", "www.example.com. 3600 IN A 192.0.2.80"}},
		{name: "referral", qname: "host.sub.example.com.", qtype: mdns.TypeA,
			ns:    []string{"sub.example.com. 3600 IN NS ns.sub.example.com.", "sub.example.com. 3600 IN NS ns.other.net."},
			extra: []string{"ns.sub.example.com. 3600 IN A 192.0.2.99"}},
		{name: "referral at cut", qname: "sub.example.com.", qtype: mdns.TypeA,
			ns:    []string{"sub.example.com. 3600 IN NS ns.sub.example.com.", "sub.example.com. 3600 IN NS ns.other.net."},
			extra: []string{"ns.sub.example.com. 3600 IN A 192.0.2.99"}},
		{name: "DS at cut answered by parent", qname: "sub.example.com.", qtype: mdns.TypeDS, aa: true,
			ns: []string{soaNeg}},
		{name: "out of zone REFUSED", qname: "www.example.org.", qtype: mdns.TypeA, rcode: mdns.RcodeRefused},
		{name: "ANY minimal", qname: "www.example.com.", qtype: mdns.TypeANY, aa: true,
			answer: []string{"www.example.com. 3600 IN A 192.0.2.80"}},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				m := newQuery(tc.qname, tc.qtype)
				m.SetEdns0(4096, false)
				r := exchange(t, addr, network, m)
				if r.Rcode != tc.rcode {
					t.Errorf("rcode = %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tc.rcode])
				}
				if r.Authoritative != tc.aa {
					t.Errorf("AA = %v, want %v", r.Authoritative, tc.aa)
				}
				if r.RecursionAvailable {
					t.Error("RA set")
				}
				if r.Question[0].Name != tc.qname {
					t.Errorf("question %q, want case preserved %q", r.Question[0].Name, tc.qname)
				}
				for _, sec := range []struct {
					name      string
					got, want []string
				}{
					{"answer", rrStrings(r.Answer), want(t, tc.answer)},
					{"authority", rrStrings(r.Ns), want(t, tc.ns)},
					{"additional", rrStrings(r.Extra), want(t, tc.extra)},
				} {
					if !slices.Equal(sec.got, sec.want) {
						t.Errorf("%s:\n got  %q\n want %q", sec.name, sec.got, sec.want)
					}
				}
			})
		}
	}
}
