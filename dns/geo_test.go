package dns

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
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

func TestOverridesLongestPrefix(t *testing.T) {
	nodes := []cluster.Node{
		{Name: "eu", IPv4: netip.MustParseAddr("192.0.2.1"), Region: "eu", Lat: 50, Lon: 8, Weight: 1},
		{Name: "us", IPv4: netip.MustParseAddr("192.0.2.2"), Region: "us", Lat: 39, Lon: -77, Weight: 1},
		{Name: "ap", IPv4: netip.MustParseAddr("192.0.2.3"), Region: "ap", Weight: 1}, // placed by region label
	}
	st := newSteering(nodes, []GeoOverride{{CIDR: "10.0.0.0/8", Region: "us"}, {CIDR: "10.1.0.0/16", Region: "eu"}, {CIDR: "10.2.0.0/16", Region: "ap"}}, nil, nil, nil, seqRand())
	sn := buildSteered(SteeredName{Name: "x.test", Answers: 3, TTL: 30e9}, nodes)
	tests := []struct {
		addr  string
		first int
		scope int
		order []int
	}{
		{"10.9.9.9", 1, 8, []int{1, 0, 2}},
		{"10.1.2.3", 0, 16, []int{0, 1, 2}},
		{"10.2.2.3", 2, 16, []int{2, 0, 1}},
	}
	for _, tc := range tests {
		c, scope := st.locate(netip.MustParseAddr(tc.addr))
		got := st.pick(c, sn.a, 3, nil)
		if scope != tc.scope || len(got) != 3 || got[0] != tc.order[0] || got[1] != tc.order[1] || got[2] != tc.order[2] {
			t.Errorf("%s: order %v scope %d, want %v scope %d", tc.addr, got, scope, tc.order, tc.scope)
		}
	}
}
