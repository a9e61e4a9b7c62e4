package dns

import (
	"net"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

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
	if got, w := rrStrings(r.Answer), want(t, []string{"new.example.com. 60 IN A 192.0.2.99"}); !equalStrings(got, w) {
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
