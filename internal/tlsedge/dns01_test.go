package tlsedge

import (
	"testing"
)

func TestACMEDNS01Wildcard(t *testing.T) {
	txt := &memTXT{}
	dnsAddr := startMemDNS(t, "example.test", txt)
	e, p := newACMENode(t, acmeSetup{
		challenges: []string{ChallengeHTTP01, ChallengeDNS01},
		names:      []string{"*.example.test", "example.test"},
		txt:        txt,
		dnsAddr:    dnsAddr,
	})
	obtain(t, e, "*.example.test", "example.test")
	for _, host := range []string{"www.example.test", "cdn.example.test", "example.test"} {
		resp, _ := fetch(t, clientFor(p.roots, e.tlsAddr, true), "https://"+host+"/")
		assertServedBy(t, resp, host, p.roots)
	}
	// The challenge records are cleaned up after validation.
	if recs, _ := txt.ListTXT(t.Context(), "example.test."); len(recs) != 0 {
		t.Fatalf("challenge records left behind: %+v", recs)
	}
}
