package dns

import (
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// TestDNAME checks DNAME redirection (RFC 6672 §3.2) at the zone level:
// the DNAME, a CNAME synthesized with its TTL, then the new name when it is
// in the zone; YXDOMAIN when the new name is too long.
func TestDNAME(t *testing.T) {
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 60) + ".example.net."
	z := testZone(t, "d.test.",
		"d.test. 3600 IN SOA ns hm 1 7200 3600 1209600 300",
		"www.d.test. 300 IN A 192.0.2.1",
		"out.d.test. 600 IN DNAME example.net.",
		"in.d.test. 600 IN DNAME d.test.",
		"long.d.test. 600 IN DNAME "+long,
	)
	tests := []struct {
		qname  string
		qtype  uint16
		rcode  int
		answer []string
	}{
		{"x.out.d.test.", mdns.TypeA, mdns.RcodeSuccess, []string{
			"out.d.test. 600 IN DNAME example.net.", "x.out.d.test. 600 IN CNAME x.example.net."}},
		{"A.b.OUT.d.test.", mdns.TypeMX, mdns.RcodeSuccess, []string{
			"out.d.test. 600 IN DNAME example.net.", "a.b.out.d.test. 600 IN CNAME a.b.example.net."}},
		{"out.d.test.", mdns.TypeDNAME, mdns.RcodeSuccess, []string{"out.d.test. 600 IN DNAME example.net."}},
		{"out.d.test.", mdns.TypeA, mdns.RcodeSuccess, nil}, // the owner itself: NODATA
		{"www.in.d.test.", mdns.TypeA, mdns.RcodeSuccess, []string{
			"in.d.test. 600 IN DNAME d.test.", "www.in.d.test. 600 IN CNAME www.d.test.", "www.d.test. 300 IN A 192.0.2.1"}},
		{"nope.in.d.test.", mdns.TypeA, mdns.RcodeNameError, []string{
			"in.d.test. 600 IN DNAME d.test.", "nope.in.d.test. 600 IN CNAME nope.d.test."}},
		{strings.Repeat("x", 63) + ".long.d.test.", mdns.TypeA, mdns.RcodeYXDomain, []string{
			"long.d.test. 600 IN DNAME " + long}},
	}
	for _, tt := range tests {
		m := new(mdns.Msg)
		m.SetQuestion(tt.qname, tt.qtype)
		z.answer(m, tt.qname, strings.ToLower(tt.qname), tt.qtype, &query{})
		if m.Rcode != tt.rcode || !m.Authoritative {
			t.Errorf("%s %s: rcode %s aa %v", tt.qname, mdns.TypeToString[tt.qtype], mdns.RcodeToString[m.Rcode], m.Authoritative)
		}
		if got, want := rrStrings(m.Answer), want(t, tt.answer); !slices.Equal(got, want) {
			t.Errorf("%s %s: answer\n%q\nwant\n%q", tt.qname, mdns.TypeToString[tt.qtype], got, want)
		}
	}
}

// TestDNAMEOnce: a DNAME used at every step of a chain (its target is
// below it) is in the answer once (RFC 2181 §5: no duplicate records), with
// a CNAME per step up to the chain bound.
func TestDNAMEOnce(t *testing.T) {
	z := testZone(t, "d.test.",
		"d.test. 3600 IN SOA ns hm 1 7200 3600 1209600 300",
		"self.d.test. 600 IN DNAME x.self.d.test.",
	)
	m := new(mdns.Msg)
	m.SetQuestion("a.self.d.test.", mdns.TypeA)
	z.answer(m, "a.self.d.test.", "a.self.d.test.", mdns.TypeA, &query{})
	n := map[uint16]int{}
	for _, rr := range m.Answer {
		n[rr.Header().Rrtype]++
	}
	if n[mdns.TypeDNAME] != 1 || n[mdns.TypeCNAME] != maxCNAMEChain {
		t.Fatalf("answer %v: want 1 DNAME and %d CNAMEs", m.Answer, maxCNAMEChain)
	}
}

func TestDNAMEZoneErrors(t *testing.T) {
	for name, rrs := range map[string][]string{
		"data below a DNAME": {"a.d.test. IN DNAME example.net.", "x.a.d.test. IN A 192.0.2.1"},
		"two DNAMEs":         {"a.d.test. IN DNAME example.net.", "a.d.test. IN DNAME example.org."},
	} {
		parsed := parseRRs(t, append([]string{"d.test. 3600 IN SOA ns hm 1 7200 3600 1209600 300"}, rrs...)...)
		if _, err := buildZone("d.test.", parsed, nil, 0, false); err == nil || !strings.Contains(err.Error(), "RFC 6672") {
			t.Errorf("%s: err %v, want an RFC 6672 error", name, err)
		}
	}
}

func testZone(t *testing.T, origin string, rrs ...string) *Zone {
	t.Helper()
	z, err := buildZone(origin, parseRRs(t, rrs...), nil, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func parseRRs(t *testing.T, rrs ...string) []mdns.RR {
	t.Helper()
	var parsed []mdns.RR
	for _, s := range rrs {
		rr, err := mdns.NewRR(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		parsed = append(parsed, rr)
	}
	return parsed
}
