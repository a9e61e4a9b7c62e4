package dns

import (
	"context"
	"net"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/outpost-edge/outpost/internal/cluster"
)

// testdata is the repository's testdata/dns directory.
func testdata(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "dns", name)
}

// listenPair opens UDP and TCP sockets on the same 127.0.0.1 port.
func listenPair(t testing.TB, host string) (net.PacketConn, net.Listener) {
	t.Helper()
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("listen udp: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	t.Fatal("no free port pair")
	return nil, nil
}

// testConfig is a config with defaults applied and RRL off (tests send
// bursts from one address).
func testConfig(zones ...ZoneConfig) Config {
	c := Config{Zones: zones}
	c.RRL.Disabled = true
	c.Health.Disabled = true
	c.SetDefaults()
	return c
}

// startServer runs a server on a fresh 127.0.0.1 port and returns the
// address.
func startServer(t testing.TB, cfg Config, nodes []cluster.Node, opts Options) (*Server, string) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	s, err := New(cfg, nodes, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	pc, ln := listenPair(t, "127.0.0.1")
	if err := s.Serve([]net.PacketConn{pc}, []net.Listener{ln}); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s, pc.LocalAddr().String()
}

// exchange sends m over network ("udp" or "tcp") and fails the test on a
// transport error.
func exchange(t testing.TB, addr, network string, m *mdns.Msg) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 3 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("exchange %s %s: %v", network, m.Question[0].String(), err)
	}
	return r
}

// rrStrings normalizes records to their presentation form, sorted.
func rrStrings(rrs []mdns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype == mdns.TypeOPT {
			continue
		}
		out = append(out, normRR(rr.String()))
	}
	sort.Strings(out)
	return out
}

// want parses expected record strings and normalizes them the same way.
func want(t testing.TB, ss []string) []string {
	t.Helper()
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		rr, err := mdns.NewRR(s)
		if err != nil {
			t.Fatalf("bad expected record %q: %v", s, err)
		}
		out = append(out, normRR(rr.String()))
	}
	sort.Strings(out)
	return out
}

// normRR lower-cases owner names: DNS names compare case-insensitively.
func normRR(s string) string {
	f := strings.SplitN(s, "\t", 2)
	if len(f) == 2 {
		return strings.ToLower(f[0]) + "\t" + f[1]
	}
	return s
}

func newQuery(name string, qtype uint16) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	return m
}
