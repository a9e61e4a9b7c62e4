package tlsedge

import (
	"net/http"
	"slices"
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
		resp, _ := fetch(t, clientFor(p.Roots, e.tlsAddr, true), "https://"+host+"/")
		assertServedBy(t, resp, host, p.Roots)
	}
	// The wildcard certificate over HTTP/1.1 and HTTP/3 too.
	for proto, c := range map[string]*http.Client{
		"HTTP/1.1": clientFor(p.Roots, e.tlsAddr, false),
		"HTTP/3.0": h3ClientFor(t, p.Roots, e.tlsAddr),
	} {
		resp, body := fetch(t, c, "https://api.example.test/")
		if resp.StatusCode != 200 || body != "hello api.example.test over "+proto {
			t.Fatalf("%s: got %d %q", proto, resp.StatusCode, body)
		}
		assertServedBy(t, resp, "api.example.test", p.Roots)
		if got := resp.TLS.PeerCertificates[0].DNSNames; !slices.Contains(got, "*.example.test") {
			t.Fatalf("%s: served certificate for %v, want the wildcard", proto, got)
		}
	}
	// The challenge records are cleaned up after validation.
	if recs, _ := txt.ListTXT(t.Context(), "example.test."); len(recs) != 0 {
		t.Fatalf("challenge records left behind: %+v", recs)
	}
}
