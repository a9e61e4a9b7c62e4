package tlsedge

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/outpost-edge/outpost/internal/acmetest"
	"github.com/outpost-edge/outpost/internal/units"
)

// acmeSetup describes one ACME end-to-end test node.
type acmeSetup struct {
	challenges []string
	names      []string
	txt        TXTStore // dns-01 record store (nil: none)
	dnsAddr    string   // DNS server Pebble and certmagic ask
	validity   uint64   // certificate lifetime, seconds (0: Pebble default)
	eab        map[string]string
	mutate     func(*Config)
	logger     *slog.Logger // default testLogger
	dataDir    string       // default a fresh temporary directory
	ca         *acmetest.CA // a Pebble shared with other nodes (default: one of its own)
	storage    certmagic.Storage
}

// newACMENode starts Pebble and an edge node using it; listeners are up
// before anything is ordered, as in production.
func newACMENode(t *testing.T, s acmeSetup) (*testEdge, *acmetest.CA) {
	t.Helper()
	tlsLn, httpLn := reserveListeners(t)
	port := func(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }
	p := s.ca
	if p == nil {
		p = acmetest.Start(t, acmetest.Options{HTTPPort: port(httpLn), TLSPort: port(tlsLn), Resolver: s.dnsAddr, Validity: s.validity, EAB: s.eab})
	}
	cfg := Config{
		Enabled:    true,
		Mode:       ModeACME,
		Listen:     tlsLn.Addr().String(),
		HTTPListen: httpLn.Addr().String(),
		Names:      s.names,
		ACME: ACMEConfig{
			Directory:  p.Directory,
			Email:      "ops@example.test",
			CARoot:     p.ServerPEM,
			Challenges: s.challenges,
			DNS01:      DNS01Config{Resolvers: []string{s.dnsAddr}},
		},
	}
	if s.mutate != nil {
		s.mutate(&cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if s.logger == nil {
		s.logger = testLogger(t)
	}
	if s.dataDir == "" {
		s.dataDir = t.TempDir()
	}
	m, err := New(cfg, Options{Logger: s.logger, DataDir: s.dataDir, TXT: s.txt, Storage: s.storage})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return startEdge(t, m, tlsLn, httpLn, hello), p
}

// obtain manages names synchronously, failing the test on error.
func obtain(t *testing.T, e *testEdge, names ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := e.m.ManageSync(ctx, names); err != nil {
		t.Fatalf("ManageSync(%v): %v", names, err)
	}
}

func TestACMEHTTP01(t *testing.T) {
	_, dnsAddr := startOutpostDNS(t)
	e, p := newACMENode(t, acmeSetup{challenges: []string{ChallengeHTTP01}, names: []string{"a.example.test"}, dnsAddr: dnsAddr})
	// Start orders in the background, the way the node does.
	if err := e.m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "certificate via HTTP-01", func() bool {
		cs := e.m.Certificates()
		return len(cs) == 1 && cs[0].Status == "valid"
	})
	info := e.m.Certificates()[0]
	if !strings.Contains(info.Issuer, "Pebble") || info.LastObtained.IsZero() {
		t.Fatalf("certificate info %+v", info)
	}

	clients := map[string]*http.Client{
		"HTTP/1.1": clientFor(p.Roots, e.tlsAddr, false),
		"HTTP/2.0": clientFor(p.Roots, e.tlsAddr, true),
		"HTTP/3.0": h3ClientFor(t, p.Roots, e.tlsAddr),
	}
	for proto, c := range clients {
		t.Run(proto, func(t *testing.T) {
			resp, body := fetch(t, c, "https://a.example.test/")
			if resp.StatusCode != 200 || body != "hello a.example.test over "+proto {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			assertServedBy(t, resp, "a.example.test", p.Roots)
			if len(resp.TLS.PeerCertificates) < 2 {
				t.Fatalf("chain has %d certificates, want leaf + intermediate", len(resp.TLS.PeerCertificates))
			}
		})
	}
}

func TestACMETLSALPN01(t *testing.T) {
	_, dnsAddr := startOutpostDNS(t)
	e, p := newACMENode(t, acmeSetup{challenges: []string{ChallengeTLSALPN01}, names: []string{"b.example.test"}, dnsAddr: dnsAddr})
	obtain(t, e, "b.example.test")
	resp, _ := fetch(t, clientFor(p.Roots, e.tlsAddr, true), "https://b.example.test/")
	assertServedBy(t, resp, "b.example.test", p.Roots)
	if resp.ProtoMajor != 2 {
		t.Fatalf("proto %s, want HTTP/2", resp.Proto)
	}
}

func TestACMEExternalAccountBinding(t *testing.T) {
	_, dnsAddr := startOutpostDNS(t)
	const kid, mac = "kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	tests := []struct {
		name string
		eab  *EABConfig
		ok   bool
	}{
		{"with the CA's key", &EABConfig{KeyID: kid, MACKey: mac}, true},
		{"without a binding", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, p := newACMENode(t, acmeSetup{
				challenges: []string{ChallengeHTTP01},
				names:      []string{"eab.example.test"},
				dnsAddr:    dnsAddr,
				eab:        map[string]string{kid: mac},
				mutate:     func(c *Config) { c.ACME.EAB = tc.eab },
			})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err := e.m.ManageSync(ctx, []string{"eab.example.test"})
			if tc.ok != (err == nil) {
				t.Fatalf("ManageSync: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "externalAccountRequired") {
				t.Fatalf("refused for the wrong reason: %v", err)
			}
			if tc.ok {
				resp, _ := fetch(t, clientFor(p.Roots, e.tlsAddr, false), "https://eab.example.test/")
				assertServedBy(t, resp, "eab.example.test", p.Roots)
			}
		})
	}
}

func TestOnDemandRefusesUnlistedName(t *testing.T) {
	_, dnsAddr := startOutpostDNS(t)
	e, p := newACMENode(t, acmeSetup{
		challenges: []string{ChallengeHTTP01},
		dnsAddr:    dnsAddr,
		mutate: func(c *Config) {
			c.OnDemand = OnDemandConfig{Enabled: true, Allow: []string{"ok.example.test", "*.shop.example.test"}}
		},
	})
	for _, name := range []string{"evil.example.test", "a.b.shop.example.test", "shop.example.test"} {
		_, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{ServerName: name, RootCAs: p.Roots})
		if err == nil {
			t.Fatalf("handshake for %s succeeded, want refused", name)
		}
	}
	if n := p.Orders(); n != 0 {
		t.Fatalf("%d ACME orders made for refused names, want 0", n)
	}

	// An allowed name is issued at its first handshake.
	issuedOnDemand(t, e, p, "x.shop.example.test")
	names := map[string]bool{}
	for _, c := range e.m.Certificates() {
		names[c.Name] = c.Status == "valid"
	}
	if !names["x.shop.example.test"] {
		t.Fatalf("admin listing lacks the on-demand certificate: %+v", e.m.Certificates())
	}
}

func TestRenewalKeepsConnections(t *testing.T) {
	_, dnsAddr := startOutpostDNS(t)
	e, p := newACMENode(t, acmeSetup{
		challenges: []string{ChallengeHTTP01},
		names:      []string{"r.example.test"},
		dnsAddr:    dnsAddr,
		validity:   16, // seconds; renewed after half of it
		mutate: func(c *Config) {
			c.RenewalWindowRatio = 0.5
			c.RenewCheckInterval = units.Duration(time.Second)
		},
	})
	obtain(t, e, "r.example.test")

	// One HTTP/1.1 keep-alive connection and one HTTP/2 connection stay
	// open across the renewal: each client must dial exactly once, and its
	// requests after the renewal still succeed on the old session.
	first := serialOf(t, e.tlsAddr, "r.example.test", p)
	type kept struct {
		c     *http.Client
		dials *atomic.Int64
	}
	var clients []kept
	for _, h2 := range []bool{false, true} {
		c := clientFor(p.Roots, e.tlsAddr, h2)
		tr := c.Transport.(*http.Transport)
		dial, dials := tr.DialContext, new(atomic.Int64)
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return dial(ctx, network, addr)
		}
		clients = append(clients, kept{c, dials})
	}
	get := func(k kept) {
		t.Helper()
		resp, _ := fetch(t, k.c, "https://r.example.test/")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := resp.TLS.PeerCertificates[0].SerialNumber.String(); got != first {
			t.Fatalf("kept connection serves serial %s, want the original %s", got, first)
		}
	}
	for _, k := range clients {
		get(k)
	}
	waitFor(t, 30*time.Second, "renewal", func() bool {
		for _, k := range clients {
			get(k) // traffic keeps flowing while the certificate is renewed
		}
		return serialOf(t, e.tlsAddr, "r.example.test", p) != first
	})
	for i, k := range clients {
		get(k)
		if n := k.dials.Load(); n != 1 {
			t.Fatalf("client %d dialed %d times, want 1 (connection dropped)", i, n)
		}
	}
	var renewed bool
	for _, c := range e.m.Certificates() {
		renewed = renewed || (c.Name == "r.example.test" && c.Renewals >= 1)
	}
	if !renewed {
		t.Fatalf("admin listing shows no renewal: %+v", e.m.Certificates())
	}
}

// serialOf makes a fresh handshake and returns the served serial.
func serialOf(t *testing.T, addr, name string, p *acmetest.CA) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: p.Roots})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestOnDemandAskFailures: with only an ask endpoint, every answer but
// 200 (a refusal, an error status, a dropped connection, no answer within
// ask_timeout) fails the handshake and makes no ACME order.
func TestOnDemandAskFailures(t *testing.T) {
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("domain") {
		case "yes.example.test":
			w.WriteHeader(http.StatusOK)
		case "fail.example.test":
			w.WriteHeader(http.StatusInternalServerError)
		case "redirect.example.test":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "drop.example.test":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		case "hang.example.test":
			<-r.Context().Done() // until the asker gives up
		default:
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer ask.Close()
	_, dnsAddr := startOutpostDNS(t)
	e, p := newACMENode(t, acmeSetup{
		challenges: []string{ChallengeHTTP01},
		dnsAddr:    dnsAddr,
		mutate: func(c *Config) {
			c.OnDemand = OnDemandConfig{Enabled: true, Ask: ask.URL + "/may-issue", AskTimeout: units.Duration(300 * time.Millisecond)}
		},
	})
	for _, name := range []string{"no.example.test", "fail.example.test", "redirect.example.test", "drop.example.test", "hang.example.test"} {
		t.Run(name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{ServerName: name, RootCAs: p.Roots})
			if err == nil {
				conn.Close()
				t.Fatal("handshake succeeded, want refused")
			}
			if n := p.Orders(); n != 0 {
				t.Fatalf("%d ACME orders made, want 0", n)
			}
		})
	}
	issuedOnDemand(t, e, p, "yes.example.test")
}

// issuedOnDemand handshakes for the first allowed name and checks it cost
// exactly one ACME order.
func issuedOnDemand(t *testing.T, e *testEdge, p *acmetest.CA, name string) {
	t.Helper()
	conn, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{ServerName: name, RootCAs: p.Roots})
	if err != nil {
		t.Fatalf("allowed name %s: %v", name, err)
	}
	conn.Close()
	if n := p.Orders(); n != 1 {
		t.Fatalf("%d ACME orders, want 1", n)
	}
}
