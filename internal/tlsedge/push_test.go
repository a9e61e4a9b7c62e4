package tlsedge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/dns"
	"github.com/outpost-edge/outpost/internal/acmetest"
)

// peerAdmin serves a dns.Server's records API behind a bearer token, the
// way the admin server mounts it.
func peerAdmin(t *testing.T, srv *dns.Server, token string) string {
	t.Helper()
	h := srv.AdminHandler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":{"status":401,"code":"unauthorized"}}`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

// TestPeerPushDNS01 obtains a wildcard certificate while the CA asks a
// different authoritative node than the one that ordered it: the
// challenge record reaches that node only through the admin API push.
func TestPeerPushDNS01(t *testing.T) {
	local, _ := startOutpostDNS(t)
	peer, peerDNS := startOutpostDNS(t)
	const token = "s3cret-peer-token"
	peerURL := peerAdmin(t, peer, token)

	tlsLn, httpLn := reserveListeners(t)
	p := acmetest.Start(t, acmetest.Options{Resolver: peerDNS})
	cfg := Config{
		Enabled: true, Listen: tlsLn.Addr().String(), HTTPListen: httpLn.Addr().String(),
		Names: []string{"*.example.test"},
		ACME: ACMEConfig{Directory: p.Directory, CARoot: p.ServerPEM, Challenges: []string{ChallengeDNS01},
			DNS01: DNS01Config{Resolvers: []string{peerDNS}}},
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg, Options{Logger: testLogger(t), DataDir: t.TempDir(), TXT: RecordServerTXT(local),
		Peers: []Peer{{Name: "peer", Admin: peerURL}}, PeerToken: token})
	if err != nil {
		t.Fatal(err)
	}
	e := startEdge(t, m, tlsLn, httpLn, hello)
	serialBefore, _ := peer.Serial("example.test")
	obtain(t, e, "*.example.test")
	resp, _ := fetch(t, clientFor(p.Roots, e.tlsAddr, true), "https://www.example.test/")
	assertServedBy(t, resp, "www.example.test", p.Roots)

	// Added and removed on the peer (serial bumped twice), and gone from
	// both nodes afterwards.
	if serialAfter, _ := peer.Serial("example.test"); serialAfter-serialBefore < 2 {
		t.Fatalf("peer serial %d -> %d, want the record added and removed", serialBefore, serialAfter)
	}
	for name, s := range map[string]*dns.Server{"local": local, "peer": peer} {
		if recs, _ := RecordServerTXT(s).ListTXT(t.Context(), "example.test"); len(recs) != 0 {
			t.Fatalf("%s still holds challenge records: %+v", name, recs)
		}
	}
}

func TestPeerPushErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	local, _ := startOutpostDNS(t)
	good, _ := startOutpostDNS(t)
	bad, _ := startOutpostDNS(t)
	push := &PeerPush{
		Local: RecordServerTXT(local),
		Peers: []Peer{
			{Name: "good", Admin: peerAdmin(t, good, "tok")},
			{Name: "bad", Admin: peerAdmin(t, bad, "other-token")},
		},
		Token:   "tok",
		Client:  &http.Client{Timeout: 5 * time.Second},
		Metrics: NewMetrics(nil),
	}
	rec := TXTRecord{Name: "_acme-challenge.example.test.", Text: `tok "quoted"`, TTL: time.Minute}

	err := push.AddTXT(ctx, rec)
	if err == nil || !strings.Contains(err.Error(), "peer bad") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("AddTXT = %v, want the bad peer's 401 reported", err)
	}
	if strings.Contains(err.Error(), "tok") && strings.Contains(err.Error(), "Bearer") {
		t.Fatalf("error leaks the token: %v", err)
	}
	// The failed add is rolled back everywhere: certmagic only remembers
	// records whose add succeeded, so nothing would ever clean these up.
	for name, s := range map[string]*dns.Server{"local": local, "good": good, "bad": bad} {
		if recs, _ := RecordServerTXT(s).ListTXT(ctx, "example.test"); len(recs) != 0 {
			t.Fatalf("%s still holds %+v after the failed add", name, recs)
		}
	}

	// Once every peer accepts, the record is everywhere with its text
	// intact.
	push.Peers[1] = Peer{Name: "bad", Admin: peerAdmin(t, bad, "tok")}
	if err := push.AddTXT(ctx, rec); err != nil {
		t.Fatalf("AddTXT: %v", err)
	}
	for name, s := range map[string]*dns.Server{"local": local, "good": good, "bad": bad} {
		recs, _ := RecordServerTXT(s).ListTXT(ctx, "example.test")
		if len(recs) != 1 || recs[0].Text != rec.Text {
			t.Fatalf("%s holds %+v, want the record with its text intact", name, recs)
		}
	}

	// Removing works on every reachable node and reports an unauthorized
	// peer; a record a peer never got (404) is not an error.
	push.Peers[1] = Peer{Name: "bad", Admin: peerAdmin(t, bad, "other-token")}
	if err := push.RemoveTXT(ctx, rec); err == nil || !strings.Contains(err.Error(), "peer bad") {
		t.Fatalf("RemoveTXT = %v, want the bad peer's refusal reported", err)
	}
	push.Peers[1] = Peer{Name: "bad", Admin: peerAdmin(t, bad, "tok")}
	if err := push.RemoveTXT(ctx, rec); err != nil {
		t.Fatalf("RemoveTXT: %v", err)
	}
	for name, s := range map[string]*dns.Server{"local": local, "good": good, "bad": bad} {
		if recs, _ := RecordServerTXT(s).ListTXT(ctx, "example.test"); len(recs) != 0 {
			t.Fatalf("%s still holds %+v", name, recs)
		}
	}
}
