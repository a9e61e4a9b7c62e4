package dns

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/outpost-edge/outpost/dns/geodata"
)

// CountryLocator maps an address to an ISO country code and the prefix
// length of the database network that holds it (the ECS scope).
type CountryLocator interface {
	Country(addr netip.Addr) (code string, bits int, ok bool)
}

var _ CountryLocator = (*GeoDB)(nil)

// GeoDB is a MaxMind-format country database. Lookups are lock-free: the
// decoded country of each data record (a few hundred distinct records in a
// country database) is cached by record offset in a copy-on-write map.
type GeoDB struct {
	r     *maxminddb.Reader
	path  string // "" for the embedded database
	cache atomic.Pointer[map[uintptr]string]
	mu    sync.Mutex // serializes cache copy-on-write
}

// maxGeoCache bounds the offset cache.
const maxGeoCache = 4096

// OpenGeoDB opens the database at path, or the embedded default when path
// is empty.
func OpenGeoDB(path string) (*GeoDB, error) {
	var (
		r   *maxminddb.Reader
		err error
	)
	if path == "" {
		r, err = maxminddb.OpenBytes(geodata.Country())
	} else {
		r, err = maxminddb.Open(path)
	}
	if err != nil {
		if path == "" {
			path = "embedded database"
		}
		return nil, fmt.Errorf("geo database %s: %w", path, err)
	}
	g := &GeoDB{r: r, path: path}
	m := map[uintptr]string{}
	g.cache.Store(&m)
	return g, nil
}

// Close releases the database.
func (g *GeoDB) Close() error { return g.r.Close() }

// Country implements CountryLocator. bits is the prefix length of the
// network the answer holds for, in the address's own family.
func (g *GeoDB) Country(addr netip.Addr) (string, int, bool) {
	addr = addr.Unmap()
	res := g.r.Lookup(addr)
	bits := addr.BitLen()
	if p := res.Prefix(); p.IsValid() {
		bits = p.Bits()
	}
	if !res.Found() {
		return "", bits, false
	}
	off := res.Offset()
	if cc, ok := (*g.cache.Load())[off]; ok {
		return cc, bits, cc != ""
	}
	var cc string
	if err := res.DecodePath(&cc, "country_code"); err != nil || cc == "" {
		cc = ""
		_ = res.DecodePath(&cc, "country", "iso_code")
	}
	cc = strings.ToUpper(cc)
	g.mu.Lock()
	old := *g.cache.Load()
	if len(old) >= maxGeoCache {
		// Not a country database (a city file has millions of records):
		// decode on every lookup rather than grow the copy-on-write map.
		g.mu.Unlock()
		return cc, bits, cc != ""
	}
	m := make(map[uintptr]string, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[off] = cc
	g.cache.Store(&m)
	g.mu.Unlock()
	return cc, bits, cc != ""
}
