package dns

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outpost-edge/outpost/internal/cluster"
	"github.com/outpost-edge/outpost/internal/units"
)

// writeTestGeoDB writes a small country database with mmdbwriter.
func writeTestGeoDB(t testing.TB, rows map[string]string) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "Outpost-Test-Country", IncludeReservedNetworks: true, RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, cc := range rows {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Insert(n, mmdbtype.Map{"country_code": mmdbtype.String(cc)}); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "test.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// demoNodes are three edges: Frankfurt, Ashburn, Tokyo.
func demoNodes() []cluster.Node {
	return []cluster.Node{
		{Name: "eu", IPv4: netip.MustParseAddr("127.0.0.11"), IPv6: netip.MustParseAddr("fd00::11"), Region: "eu", Lat: 50.11, Lon: 8.68, Weight: 1},
		{Name: "us", IPv4: netip.MustParseAddr("127.0.0.12"), IPv6: netip.MustParseAddr("fd00::12"), Region: "us", Lat: 39.04, Lon: -77.49, Weight: 1},
		{Name: "ap", IPv4: netip.MustParseAddr("127.0.0.13"), Region: "ap", Lat: 35.68, Lon: 139.69, Weight: 1},
	}
}

func steeredConfig(geoPath string) Config {
	cfg := testConfig(ZoneConfig{Origin: "demo.test", Records: []string{
		"@ IN NS ns1", "ns1 IN A 127.0.0.1", `www IN TXT "steered"`,
	}})
	cfg.Geo.Database = geoPath
	cfg.Steered = []SteeredName{{Name: "www.demo.test"}}
	cfg.SetDefaults()
	return cfg
}

func ecsQuery(name string, qtype uint16, cidr string) *mdns.Msg {
	m := newQuery(name, qtype)
	m.SetEdns0(1232, false)
	if cidr != "" {
		p := netip.MustParsePrefix(cidr)
		fam := uint16(1)
		if p.Addr().Is6() {
			fam = 2
		}
		m.IsEdns0().Option = []mdns.EDNS0{&mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: fam,
			SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()}}
	}
	return m
}

func answerAddrs(r *mdns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch a := rr.(type) {
		case *mdns.A:
			out = append(out, a.A.String())
		case *mdns.AAAA:
			out = append(out, a.AAAA.String())
		}
	}
	return out
}

func ecsScope(r *mdns.Msg) int {
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*mdns.EDNS0_SUBNET); ok {
				return int(e.SourceScope)
			}
		}
	}
	return -1
}

func TestSteeringECS(t *testing.T) {
	geo := writeTestGeoDB(t, map[string]string{
		"193.0.0.0/16": "NL", "8.8.8.0/24": "US", "133.1.0.0/16": "JP", "127.0.0.0/8": "JP", "2a00::/12": "DE",
		"198.51.0.0/16": "NL",
	})
	cfg := steeredConfig(geo)
	cfg.Geo.Overrides = []GeoOverride{{CIDR: "10.20.0.0/16", Region: "us"},
		{CIDR: "10.21.0.0/16", Region: "us"}, {CIDR: "10.21.255.0/24", Region: "eu"},
		{CIDR: "2001:db8::/32", Region: "us"}, {CIDR: "2001:db8:ff00::/40", Region: "eu"},
		{CIDR: "198.51.100.0/24", Region: "us"}}
	_, addr := startServer(t, cfg, demoNodes(), Options{})
	tests := []struct {
		name   string
		ecs    string
		qtype  uint16
		want   []string
		scope  int
		rcode  int
		authNS bool
	}{
		{name: "NL to eu", ecs: "193.0.0.0/24", qtype: mdns.TypeA, want: []string{"127.0.0.11"}, scope: 16},
		{name: "US to us", ecs: "8.8.8.0/24", qtype: mdns.TypeA, want: []string{"127.0.0.12"}, scope: 24},
		{name: "JP to ap", ecs: "133.1.0.0/16", qtype: mdns.TypeA, want: []string{"127.0.0.13"}, scope: 16},
		{name: "override", ecs: "10.20.30.0/24", qtype: mdns.TypeA, want: []string{"127.0.0.12"}, scope: 16},
		// A longer override nested in the matched network narrows the
		// scope so that it does not cover the nested network.
		{name: "nested override", ecs: "10.21.0.0/24", qtype: mdns.TypeA, want: []string{"127.0.0.12"}, scope: 17},
		{name: "the nested override", ecs: "10.21.255.0/24", qtype: mdns.TypeA, want: []string{"127.0.0.11"}, scope: 24},
		{name: "nested IPv6 override", ecs: "2001:db8:1::/48", qtype: mdns.TypeAAAA, want: []string{"fd00::12"}, scope: 33},
		{name: "override nested in a database network", ecs: "198.51.0.0/24", qtype: mdns.TypeA, want: []string{"127.0.0.11"}, scope: 18},
		// RFC 7871 §7.2.1: a scope longer than the source prefix says the
		// source was not specific enough; a resolver then caches the
		// answer for that source prefix only (§7.3.1).
		{name: "scope longer than the source", ecs: "198.51.0.0/16", qtype: mdns.TypeA, want: []string{"127.0.0.11"}, scope: 18},
		{name: "IPv6 client to eu", ecs: "2a00:1450::/32", qtype: mdns.TypeAAAA, want: []string{"fd00::11"}, scope: 12},
		{name: "AAAA from JP skips v4-only ap", ecs: "133.1.0.0/16", qtype: mdns.TypeAAAA, want: []string{"fd00::11"}, scope: 16},
		{name: "no ECS: source 127.0.0.1 is JP", qtype: mdns.TypeA, want: []string{"127.0.0.13"}, scope: -1},
		{name: "ECS /0: source address, scope 0", ecs: "0.0.0.0/0", qtype: mdns.TypeA, want: []string{"127.0.0.13"}, scope: 0},
		{name: "other types from the zone", ecs: "193.0.0.0/24", qtype: mdns.TypeTXT, scope: 0},
		{name: "MX is NODATA", ecs: "193.0.0.0/24", qtype: mdns.TypeMX, scope: 0, authNS: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := exchange(t, addr, "udp", ecsQuery("www.demo.test.", tc.qtype, tc.ecs))
			if r.Rcode != tc.rcode || !r.Authoritative {
				t.Fatalf("rcode %s AA %v", mdns.RcodeToString[r.Rcode], r.Authoritative)
			}
			if got := answerAddrs(r); !slices.Equal(got, tc.want) {
				t.Errorf("answer %v, want %v", got, tc.want)
			}
			if got := ecsScope(r); got != tc.scope {
				t.Errorf("ECS scope %d, want %d", got, tc.scope)
			}
			if tc.authNS && len(r.Ns) != 1 {
				t.Errorf("authority %v, want the SOA", r.Ns)
			}
			for _, rr := range r.Answer {
				if (rr.Header().Rrtype == mdns.TypeA || rr.Header().Rrtype == mdns.TypeAAAA) && rr.Header().Ttl != 30 {
					t.Errorf("TTL %d, want 30", rr.Header().Ttl)
				}
			}
		})
	}
}

// TestDemoMappingEmbeddedDB is the demo contract: with the embedded
// database, NL → eu, US → us, JP → ap.
func TestDemoMappingEmbeddedDB(t *testing.T) {
	_, addr := startServer(t, steeredConfig(""), demoNodes(), Options{})
	for ecs, want := range map[string]string{
		"193.0.0.0/24": "127.0.0.11",
		"8.8.8.0/24":   "127.0.0.12",
		"133.1.0.0/16": "127.0.0.13",
	} {
		for _, network := range []string{"udp", "tcp"} {
			r := exchange(t, addr, network, ecsQuery("www.demo.test.", mdns.TypeA, ecs))
			if got := answerAddrs(r); len(got) != 1 || got[0] != want {
				t.Errorf("%s %s: answer %v, want %s", network, ecs, got, want)
			}
			if s := ecsScope(r); s <= 0 || s > 32 {
				t.Errorf("%s %s: scope %d", network, ecs, s)
			}
		}
	}
}

// TestSteeredWithoutNodes: with no node of the family, the zone's own
// records at the name answer.
func TestSteeredWithoutNodes(t *testing.T) {
	cfg := steeredConfig("")
	cfg.Zones[0].Records = append(cfg.Zones[0].Records, "www 60 IN AAAA 2001:db8::1")
	nodes := demoNodes()[2:] // ap: IPv4 only
	_, addr := startServer(t, cfg, nodes, Options{})
	r := exchange(t, addr, "udp", ecsQuery("www.demo.test.", mdns.TypeAAAA, "193.0.0.0/24"))
	if got := answerAddrs(r); !slices.Equal(got, []string{"2001:db8::1"}) {
		t.Fatalf("AAAA %v, want the zone record", got)
	}
	r = exchange(t, addr, "udp", ecsQuery("www.demo.test.", mdns.TypeA, "193.0.0.0/24"))
	if got := answerAddrs(r); !slices.Equal(got, []string{"127.0.0.13"}) {
		t.Fatalf("A %v", got)
	}
	_, addr = startServer(t, steeredConfig(""), nil, Options{})
	r = exchange(t, addr, "udp", newQuery("www.demo.test.", mdns.TypeA))
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Fatalf("no nodes: %v", r)
	}
}

func TestSteeringAnswersAndWeights(t *testing.T) {
	geo := writeTestGeoDB(t, map[string]string{"193.0.0.0/16": "NL"})
	cfg := steeredConfig(geo)
	cfg.Steered[0].Answers = 3
	cfg.Steered[0].TTL = units.Duration(10 * time.Second)
	_, addr := startServer(t, cfg, demoNodes(), Options{})
	r := exchange(t, addr, "udp", ecsQuery("www.demo.test.", mdns.TypeA, "193.0.0.0/24"))
	// Nearest first: Frankfurt, then Ashburn, then Tokyo.
	if got := answerAddrs(r); !slices.Equal(got, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}) {
		t.Fatalf("answer %v", got)
	}
	if r.Answer[0].Header().Ttl != 10 {
		t.Fatalf("TTL %d", r.Answer[0].Header().Ttl)
	}

	// Two nodes in one place: weights decide.
	nodes := []cluster.Node{
		{Name: "a", IPv4: netip.MustParseAddr("192.0.2.1"), Lat: 52, Lon: 5, Weight: 3},
		{Name: "b", IPv4: netip.MustParseAddr("192.0.2.2"), Lat: 52, Lon: 5, Weight: 1},
		{Name: "c", IPv4: netip.MustParseAddr("192.0.2.3"), Lat: 52, Lon: 5, Weight: 0},
	}
	st := newSteering(nodes, nil, nil, nil, nil, seqRand())
	sn := buildSteered(SteeredName{Name: "x.test", Answers: 1, TTL: units.Duration(time.Second)}, nodes)
	counts := map[int]int{}
	for i := 0; i < 400; i++ {
		got, _ := st.pick(st.fallback, sn.a, 1, nil)
		counts[got[0]]++
	}
	if counts[2] != 0 || counts[0] != 300 || counts[1] != 100 {
		t.Fatalf("picks by node %v, want 300/100/0 for weights 3/1/0", counts)
	}
}

// seqRand cycles deterministically through [0, n).
func seqRand() func(int) int {
	var i atomic.Int64
	return func(n int) int { return int(i.Add(1)-1) % n }
}

// TestHealthSteering takes a node's health endpoint down, first with 503s
// and then closed outright (probes refused), and checks it leaves the
// answers within fall × interval + timeout and comes back only after rise
// successes; then takes all down to see the fail-open answer. Upper bounds
// get generous slack for scheduling; lower bounds count probes, not time.
func TestHealthSteering(t *testing.T) {
	var (
		up        [3]atomic.Bool
		oks, errs [3]atomic.Int64 // probes answered 200 and 503, by node
		srvs      [3]*httptest.Server
	)
	nodes := demoNodes()
	for i := range nodes {
		up[i].Store(true)
		srvs[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !up[i].Load() {
				errs[i].Add(1)
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			oks[i].Add(1)
			w.Write([]byte("ok"))
		}))
		t.Cleanup(srvs[i].Close)
		nodes[i].Health = srvs[i].URL + "/healthz"
	}
	const (
		interval   = 100 * time.Millisecond
		timeout    = 50 * time.Millisecond
		rise, fall = 2, 2
		slack      = 2 * time.Second // scheduling on a busy machine
		leaveIn    = fall*interval + timeout + slack
		returnIn   = rise*interval + timeout + slack
	)
	geo := writeTestGeoDB(t, map[string]string{"193.0.0.0/16": "NL"})
	cfg := steeredConfig(geo)
	cfg.Health = HealthConfig{Interval: units.Duration(interval), Timeout: units.Duration(timeout), Rise: rise, Fall: fall}
	cfg.SetDefaults()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s, addr := startServer(t, cfg, nodes, Options{Metrics: m})
	ask := func() string {
		got := answerAddrs(exchange(t, addr, "udp", ecsQuery("www.demo.test.", mdns.TypeA, "193.0.0.0/24")))
		if len(got) != 1 {
			t.Fatalf("answer %v", got)
		}
		return got[0]
	}
	within := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > limit {
				t.Fatalf("%s: not within %s", what, limit)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if got := ask(); got != "127.0.0.11" {
		t.Fatalf("initial answer %s", got)
	}

	// 503: eu leaves after fall failures.
	up[0].Store(false)
	within("eu to leave on 503s", leaveIn, func() bool { return ask() == "127.0.0.12" })
	if n := errs[0].Load(); n < fall {
		t.Fatalf("eu left after %d failed probes, want >= %d", n, fall)
	}
	if s.Health().Healthy("eu") || !s.Health().Healthy("us") {
		t.Fatalf("health view %+v", s.Health().Status())
	}
	if v := testutil.ToFloat64(m.healthy.WithLabelValues("eu")); v != 0 {
		t.Fatalf("node_healthy{eu} = %v", v)
	}

	// Back up: eu returns after rise successes, not before.
	before := oks[0].Load()
	up[0].Store(true)
	within("eu to return", returnIn, func() bool { return ask() == "127.0.0.11" })
	if n := oks[0].Load() - before; n < rise {
		t.Fatalf("eu returned after %d successful probes, want >= %d", n, rise)
	}

	// Endpoint gone: probes are refused, eu leaves the same way.
	srvs[0].Close()
	within("eu to leave with its endpoint closed", leaveIn, func() bool { return ask() == "127.0.0.12" })
	for _, st := range s.Health().Status() {
		if st.Name == "eu" && (st.Healthy || !strings.Contains(st.LastError, "refused")) {
			t.Fatalf("eu with its endpoint closed: %+v", st)
		}
	}

	up[1].Store(false)
	up[2].Store(false)
	within("all down", leaveIn, func() bool {
		for _, st := range s.Health().Status() {
			if st.Healthy {
				return false
			}
		}
		return true
	})
	// Fail open: every node of the family asked, nearest first.
	failOpen := testutil.ToFloat64(m.failOpen)
	steeredAP := testutil.ToFloat64(m.steered.WithLabelValues("ap"))
	r := exchange(t, addr, "udp", ecsQuery("www.demo.test.", mdns.TypeA, "193.0.0.0/24"))
	if got := answerAddrs(r); !slices.Equal(got, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}) {
		t.Fatalf("fail-open A answer %v, want every node, nearest first", got)
	}
	r = exchange(t, addr, "tcp", ecsQuery("www.demo.test.", mdns.TypeAAAA, "193.0.0.0/24"))
	if got := answerAddrs(r); !slices.Equal(got, []string{"fd00::11", "fd00::12"}) {
		t.Fatalf("fail-open AAAA answer %v, want every node with IPv6, nearest first", got)
	}
	if v := testutil.ToFloat64(m.failOpen); v != failOpen+2 {
		t.Fatalf("fail-open counter %v, want %v", v, failOpen+2)
	}
	if v := testutil.ToFloat64(m.steered.WithLabelValues("ap")); v != steeredAP+1 {
		t.Fatalf("steered{ap} = %v, want %v", v, steeredAP+1)
	}
}

// TestFailOpenAllNodes: with every node down the answer holds all of them,
// nearest first, whatever `answers` says; UDP answers too large for the
// client are truncated (TC, nearest kept) and TCP gets them all.
func TestFailOpenAllNodes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + "/healthz" // closed: probes are refused
	ln.Close()
	const n = 40
	var nodes []cluster.Node
	var wantA, wantAAAA []string
	for i := 0; i < n; i++ {
		// South of the Netherlands, about 170 km apart: no ties.
		v4, v6 := netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)}), netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(i + 1)})
		nodes = append(nodes, cluster.Node{Name: fmt.Sprintf("n%02d", i), IPv4: v4, IPv6: v6,
			Lat: 52 - 1.5*float64(i), Lon: 5, Weight: 1, Health: refused})
		wantA, wantAAAA = append(wantA, v4.String()), append(wantAAAA, v6.String())
	}
	// Out of order in the config: the answer order is by distance.
	nodes[3], nodes[17] = nodes[17], nodes[3]
	// Without ECS the client is the source address, 127.0.0.1: NL too.
	cfg := steeredConfig(writeTestGeoDB(t, map[string]string{"193.0.0.0/16": "NL", "127.0.0.0/8": "NL"}))
	cfg.Steered[0].Answers = 2
	cfg.Health = HealthConfig{Interval: units.Duration(50 * time.Millisecond), Timeout: units.Duration(50 * time.Millisecond), Rise: 1, Fall: 1}
	cfg.SetDefaults()
	m, _ := NewMetrics(nil)
	s, addr := startServer(t, cfg, nodes, Options{Metrics: m})
	deadline := time.Now().Add(10 * time.Second)
	for _, st := range s.Health().Status() {
		for s.Health().Healthy(st.Name) {
			if time.Now().After(deadline) {
				t.Fatalf("node %s still healthy", st.Name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	r := exchange(t, addr, "tcp", ecsQuery("www.demo.test.", mdns.TypeA, "193.0.0.0/24"))
	if got := answerAddrs(r); !slices.Equal(got, wantA) {
		t.Fatalf("TCP A: %v, want all %d nodes nearest first %v", got, n, wantA)
	}
	// EDNS 1232: 40 AAAA records fit.
	r = exchange(t, addr, "udp", ecsQuery("www.demo.test.", mdns.TypeAAAA, "193.0.0.0/24"))
	if got := answerAddrs(r); r.Truncated || !slices.Equal(got, wantAAAA) {
		t.Fatalf("UDP AAAA (TC %v): %v, want all %d nodes nearest first", r.Truncated, got, n)
	}
	if v := testutil.ToFloat64(m.failOpen); v != 2 {
		t.Fatalf("fail-open counter %v, want 2", v)
	}
	// Without EDNS (512 bytes) they do not: TC, the nearest kept.
	for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
		want := wantA
		if qt == mdns.TypeAAAA {
			want = wantAAAA
		}
		r = exchange(t, addr, "udp", newQuery("www.demo.test.", qt))
		got := answerAddrs(r)
		if !r.Truncated || len(got) == 0 || len(got) >= n || !slices.Equal(got, want[:len(got)]) {
			t.Fatalf("UDP %s without EDNS (TC %v): %v, want a truncated prefix of %v", mdns.TypeToString[qt], r.Truncated, got, want)
		}
	}
	// Once per answer, though a UDP answer too large for the fast path is
	// picked again by the full path.
	if v := testutil.ToFloat64(m.failOpen); v != 4 {
		t.Fatalf("fail-open counter %v, want 4", v)
	}
}

// TestHealthRun: a node leaves after exactly fall failures in a row (so
// within fall × interval) and returns after rise successes in a row.
func TestHealthRun(t *testing.T) {
	tests := []struct {
		name    string
		results string // probe results in order: + success, - failure
		want    string // state after each probe: U up, D down
	}{
		{"stays up", "++++", "UUUU"},
		{"leaves after fall=3", "---", "UUD"},
		{"blip does not count", "--+--+", "UUUUUU"},
		{"returns after rise=2", "---+-++", "UUDDDDU"},
		{"flapping stays down", "---+-+-+", "UUDDDDDD"},
	}
	for _, tc := range tests {
		var r healthRun
		up := true
		got := ""
		for _, c := range tc.results {
			up = r.step(up, c == '+', 2, 3)
			if up {
				got += "U"
			} else {
				got += "D"
			}
		}
		if got != tc.want {
			t.Errorf("%s: %s -> %s, want %s", tc.name, tc.results, got, tc.want)
		}
	}
}
