package tlsedge

import (
	"testing"
)

func TestACMEDNS01Wildcard(t *testing.T) {
	srv, dnsAddr := startOutpostDNS(t)
	txt := RecordServerTXT(srv)
	e, p := newACMENode(t, acmeSetup{
		challenges: []string{ChallengeHTTP01, ChallengeDNS01},
		names:      []string{"*.example.test", "example.test"},
		txt:        txt,
		dnsAddr:    dnsAddr,
	})
	serialBefore, _ := srv.Serial("example.test")
	obtain(t, e, "*.example.test", "example.test")
	// Outpost's DNS served the record: added then removed, serial bumped.
	if serialAfter, _ := srv.Serial("example.test"); serialAfter-serialBefore < 2 {
		t.Fatalf("serial %d -> %d, want the challenge record added and removed", serialBefore, serialAfter)
	}
	for _, host := range []string{"www.example.test", "cdn.example.test", "example.test"} {
		resp, _ := fetch(t, clientFor(p.roots, e.tlsAddr, true), "https://"+host+"/")
		assertServedBy(t, resp, host, p.roots)
	}
	// The challenge records are cleaned up after validation.
	if recs, _ := txt.ListTXT(t.Context(), "example.test."); len(recs) != 0 {
		t.Fatalf("challenge records left behind: %+v", recs)
	}
}
