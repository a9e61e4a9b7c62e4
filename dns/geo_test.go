package dns

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/outpost-edge/outpost/internal/cluster"
)

// TestGeoDBFormats reads both record shapes: ip-location-db's
// country_code and GeoLite2's country.iso_code.
func TestGeoDBFormats(t *testing.T) {
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	_, n, _ := net.ParseCIDR("81.2.69.0/24")
	w.Insert(n, mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String("GB")}})
	path := filepath.Join(t.TempDir(), "geolite.mmdb")
	f, _ := os.Create(path)
	w.WriteTo(f)
	f.Close()
	g, err := OpenGeoDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if cc, bits, ok := g.Country(netip.MustParseAddr("81.2.69.142")); !ok || cc != "GB" || bits != 24 {
		t.Fatalf("GeoLite2 shape: %q /%d %v", cc, bits, ok)
	}
	if _, _, ok := g.Country(netip.MustParseAddr("192.0.2.1")); ok {
		t.Fatal("found an address that is not in the database")
	}
	if _, err := OpenGeoDB(filepath.Join(t.TempDir(), "missing.mmdb")); err == nil {
		t.Fatal("opened a missing file")
	}

	emb, err := OpenGeoDB("")
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	// Lookups listed in shared/geo/README.md.
	for addr, want := range map[string]string{
		"193.0.0.1": "NL", "81.2.69.142": "GB", "8.8.8.8": "US", "200.160.2.3": "BR",
		"133.1.1.1": "JP", "41.0.0.1": "ZA", "2a00:1450::1": "IE",
	} {
		if cc, _, ok := emb.Country(netip.MustParseAddr(addr)); !ok || cc != want {
			t.Errorf("embedded %s: %q, want %s", addr, cc, want)
		}
	}
}

// fakeGeo places every address of its networks in one country.
type fakeGeo map[netip.Prefix]string

func (g fakeGeo) Country(addr netip.Addr) (string, int, bool) {
	for p, cc := range g {
		if p.Contains(addr) {
			return cc, p.Bits(), true
		}
	}
	return "", addr.BitLen(), false
}

// TestOverridesLongestPrefix: the longest matching override wins, and the
// ECS scope echoed is long enough that every address inside it gets the
// same answer: a more specific override (of another region) nested in the
// matched network is left out of the scope.
func TestOverridesLongestPrefix(t *testing.T) {
	nodes := []cluster.Node{
		{Name: "eu", IPv4: netip.MustParseAddr("192.0.2.1"), Region: "eu", Lat: 50, Lon: 8, Weight: 1},
		{Name: "us", IPv4: netip.MustParseAddr("192.0.2.2"), Region: "us", Lat: 39, Lon: -77, Weight: 1},
		{Name: "ap", IPv4: netip.MustParseAddr("192.0.2.3"), Region: "ap", Weight: 1}, // placed by region label
	}
	overrides := []GeoOverride{
		{CIDR: "10.0.0.0/8", Region: "us"}, {CIDR: "10.1.0.0/16", Region: "eu"}, {CIDR: "10.2.0.0/16", Region: "ap"},
		{CIDR: "10.3.0.0/16", Region: "us"}, // same answer as 10/8: needs no narrower scope
		{CIDR: "2001:db8::/32", Region: "us"}, {CIDR: "2001:db8:1::/48", Region: "eu"}, {CIDR: "2001:db8:ff00::/40", Region: "ap"},
		{CIDR: "193.0.128.0/17", Region: "us"}, // inside the database's NL network
	}
	geo := fakeGeo{netip.MustParsePrefix("193.0.0.0/16"): "NL", netip.MustParsePrefix("2a00::/12"): "DE"}
	st := newSteering(nodes, overrides, geo, nil, nil, seqRand())
	sn := buildSteered(SteeredName{Name: "x.test", Answers: 3, TTL: 30e9}, nodes)
	tests := []struct {
		addr  string
		scope int
		order []int
	}{
		// 10.8.0.0/13 is the widest prefix of 10.9.9.9 that holds neither
		// 10.1/16 nor 10.2/16; /8 would hand "us" to their clients.
		{"10.9.9.9", 13, []int{1, 0, 2}},
		{"10.128.0.1", 9, []int{1, 0, 2}},
		{"10.0.0.1", 16, []int{1, 0, 2}},
		{"10.3.0.1", 16, []int{1, 0, 2}},
		{"10.1.2.3", 16, []int{0, 1, 2}},
		{"10.2.2.3", 16, []int{2, 0, 1}},
		{"2001:db8:2::1", 47, []int{1, 0, 2}},
		{"2001:db8:8000::1", 34, []int{1, 0, 2}},
		{"2001:db8:1::5", 48, []int{0, 1, 2}},
		{"2001:db8:ff00::1", 40, []int{2, 0, 1}},
		{"193.0.1.1", 17, []int{0, 1, 2}}, // NL, with 193.0.128/17 (us) nested
		{"193.0.200.1", 17, []int{1, 0, 2}},
		{"2a00:1450::1", 12, []int{0, 1, 2}}, // DE, nothing nested
	}
	for _, tc := range tests {
		addr := netip.MustParseAddr(tc.addr)
		c, scope := st.locate(addr)
		got, _ := st.pick(c, sn.a, 3, nil)
		if scope != tc.scope || len(got) != 3 || got[0] != tc.order[0] || got[1] != tc.order[1] || got[2] != tc.order[2] {
			t.Errorf("%s: order %v scope %d, want %v scope %d", tc.addr, got, scope, tc.order, tc.scope)
			continue
		}
		// Every address in the scope is ranked alike: check the ends of
		// the scope and every override's network start inside it.
		p := netip.PrefixFrom(addr, scope).Masked()
		probes := []netip.Addr{p.Addr(), lastAddr(p)}
		for _, o := range overrides {
			if op := netip.MustParsePrefix(o.CIDR); p.Contains(op.Addr()) {
				probes = append(probes, op.Addr(), lastAddr(op))
			}
		}
		for _, a := range probes {
			if c2, _ := st.locate(a); !slices.Equal(c, c2) {
				t.Errorf("%s: scope %s holds %s, ranked %v, not %v", tc.addr, p, a, c2, c)
			}
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
