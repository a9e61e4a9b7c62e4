package dns

import (
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"sort"
	"strings"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/internal/cluster"
)

// steeredName is a name answered from the node set, with each node's A and
// AAAA record prebuilt (nil when the node lacks that family).
type steeredName struct {
	name    string // canonical
	answers int
	a, aaaa []mdns.RR // indexed like steering.nodes
}

// steerNode is one edge node as steering sees it.
type steerNode struct {
	name    string
	region  string
	pos     latLon
	weight  int
	health  *nodeState // live probe state; nil = always healthy
	counter prometheus.Counter
}

// candidate is a node at a distance from the client.
type candidate struct {
	idx int
	km  float64
}

// tieKm: nodes closer to each other than this, seen from the client, count
// as equally near, and their weights decide between them.
const tieKm = 100

// steering ranks nodes for a client location. It is rebuilt on reload
// (node set or overrides changed) and reads health live.
type steering struct {
	nodes     []steerNode
	byCountry map[string][]candidate
	byRegion  map[string][]candidate
	fallback  []candidate // unknown location: every node, equally near
	overrides []geoOverride
	geo       CountryLocator
	rand      func(n int) int
	metrics   *Metrics
}

type geoOverride struct {
	prefix netip.Prefix
	region string
}

// newSteering precomputes, for every country and override region, the
// nodes in order of distance.
func newSteering(nodes []cluster.Node, overrides []GeoOverride, geo CountryLocator, health *Health, m *Metrics, rnd func(int) int) *steering {
	s := &steering{geo: geo, rand: rnd, metrics: m, byCountry: map[string][]candidate{}, byRegion: map[string][]candidate{}}
	centroids := parseCentroids()
	for _, n := range nodes {
		sn := steerNode{name: n.Name, region: n.Region, pos: nodePosition(n, centroids), weight: n.Weight}
		if health != nil {
			sn.health = health.state(n.Name)
		}
		if m != nil {
			sn.counter = m.steered.WithLabelValues(n.Name)
		}
		s.nodes = append(s.nodes, sn)
	}
	for i := range s.nodes {
		s.fallback = append(s.fallback, candidate{idx: i})
	}
	for cc, pos := range centroids {
		s.byCountry[cc] = s.rank(pos)
	}
	for _, o := range overrides {
		p, err := netip.ParsePrefix(o.CIDR)
		if err != nil {
			continue // rejected by Validate
		}
		s.overrides = append(s.overrides, geoOverride{prefix: p.Masked(), region: o.Region})
		if _, ok := s.byRegion[o.Region]; !ok {
			s.byRegion[o.Region] = s.rankRegion(o.Region)
		}
	}
	// Longest prefix first, so the first match wins.
	sort.SliceStable(s.overrides, func(i, j int) bool { return s.overrides[i].prefix.Bits() > s.overrides[j].prefix.Bits() })
	return s
}

// nodePosition is a node's configured coordinates or, when it has none
// (0, 0), the centre of its region label: a continent name or code ("eu",
// "us", "ap", ...) or an ISO country code ("de").
func nodePosition(n cluster.Node, centroids map[string]latLon) latLon {
	if n.Lat != 0 || n.Lon != 0 {
		return latLon{n.Lat, n.Lon}
	}
	r := strings.ToLower(n.Region)
	switch r {
	case "eu", "europe", "emea":
		return latLon{50, 10}
	case "us", "na", "north-america", "americas", "amer":
		return latLon{39, -98}
	case "sa", "south-america", "latam":
		return latLon{-15, -60}
	case "ap", "apac", "asia", "asia-pacific":
		return latLon{25, 115}
	case "af", "africa":
		return latLon{5, 20}
	case "oc", "oceania":
		return latLon{-25, 140}
	case "me", "middle-east":
		return latLon{27, 45}
	}
	if c, ok := centroids[strings.ToUpper(r)]; ok {
		return c
	}
	return latLon{}
}

// rank orders every node by great-circle distance from pos.
func (s *steering) rank(pos latLon) []candidate {
	out := make([]candidate, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = candidate{idx: i, km: haversineKm(pos, n.pos)}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].km < out[j].km })
	return out
}

// rankRegion puts the region's nodes first (equally near), then the others
// by distance from the region's centre.
func (s *steering) rankRegion(region string) []candidate {
	var in []candidate
	var c latLon
	for i, n := range s.nodes {
		if n.region == region {
			in = append(in, candidate{idx: i})
			c.lat += n.pos.lat
			c.lon += n.pos.lon
		}
	}
	if len(in) == 0 {
		return s.fallback
	}
	c.lat /= float64(len(in))
	c.lon /= float64(len(in))
	for _, r := range s.rank(c) {
		if s.nodes[r.idx].region != region {
			r.km += 1e6 // after every node of the region
			in = append(in, r)
		}
	}
	return in
}

// haversineKm is the great-circle distance between two points.
func haversineKm(a, b latLon) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dLat := (b.lat - a.lat) * rad
	dLon := (b.lon - a.lon) * rad
	h := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(a.lat*rad)*math.Cos(b.lat*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(h)))
}

// locate ranks the nodes for a client address. scope is the prefix length
// the ranking holds for (the ECS scope); the fallback ranking is used when
// the location is unknown.
func (s *steering) locate(addr netip.Addr) (cands []candidate, scope int) {
	addr = addr.Unmap()
	for _, o := range s.overrides {
		if o.prefix.Contains(addr) {
			return s.byRegion[o.region], s.scope(addr, o.prefix.Bits(), o.region)
		}
	}
	if s.geo == nil || !addr.IsValid() {
		return s.fallback, 0
	}
	cc, bits, ok := s.geo.Country(addr)
	if ok {
		if c, found := s.byCountry[cc]; found {
			return c, s.scope(addr, bits, "")
		}
	}
	return s.fallback, s.scope(addr, bits, "")
}

// scope is the ECS scope for addr, located by its network of length plen
// (an override's or the database's): plen, lengthened until the scope
// leaves out every longer override nested in that network, so that every
// address in the scope gets the same answer (a resolver caches it for all
// of them). Overrides of region same (not "") give the same answer and
// are ignored.
func (s *steering) scope(addr netip.Addr, plen int, same string) int {
	scope := plen
	for _, o := range s.overrides { // longest prefix first
		ob := o.prefix.Bits()
		if ob <= plen {
			break
		}
		if (same != "" && o.region == same) || o.prefix.Addr().Is4() != addr.Is4() {
			continue
		}
		// o is inside addr's network when their first bits agree; no
		// override holds addr here (it would have matched), so the
		// common prefix is shorter than o's and one more bit excludes it.
		if n := commonBits(addr, o.prefix.Addr()); n >= plen {
			scope = max(scope, min(n+1, ob))
		}
	}
	return scope
}

// commonBits is the length of the common prefix of two addresses of the
// same family.
func commonBits(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	n := 0
	for i := range x {
		if d := x[i] ^ y[i]; d != 0 {
			n += bits.LeadingZeros8(d)
			break
		}
		n += 8
	}
	if a.Is4() {
		n -= 96 // As16 is the IPv4-mapped form
	}
	return n
}

// maxSteerNodes bounds the on-stack selection buffers; larger node sets
// still work, using the heap.
const maxSteerNodes = 32

// pick returns up to want node indices from cands that have a record in
// rrs: healthy ones nearest first, ties broken by weight. With none healthy
// it fails open, as PowerDNS's ifportup does: every node with a record, in
// the order of cands (nearest first), however many want asks for.
//
// failedOpen reports the fail-open case; the caller counts it once it
// answers (the UDP fast path may hand the query to the full path, which
// picks again).
func (s *steering) pick(cands []candidate, rrs []mdns.RR, want int, dst []int) (picked []int, failedOpen bool) {
	var buf [maxSteerNodes]candidate
	elig := buf[:0]
	weighted := false
	for _, c := range cands {
		// The bound guards against records built for another node set (a
		// zone kept from before a reload that changed the nodes).
		if c.idx < len(rrs) && rrs[c.idx] != nil && s.nodes[c.idx].health.healthy() {
			elig = append(elig, c)
			weighted = weighted || s.nodes[c.idx].weight > 0
		}
	}
	if len(elig) == 0 {
		n := len(dst)
		for _, c := range cands {
			if c.idx < len(rrs) && rrs[c.idx] != nil {
				dst = append(dst, c.idx)
			}
		}
		return dst, len(dst) > n
	}
	if weighted {
		// Weight 0 marks a drained node: used only when no weighted node is
		// available.
		k := 0
		for _, c := range elig {
			if s.nodes[c.idx].weight > 0 {
				elig[k] = c
				k++
			}
		}
		elig = elig[:k]
	}
	for i := 0; i < len(elig) && len(dst) < want; {
		// The group of nodes tied with elig[i].
		j := i + 1
		for j < len(elig) && elig[j].km-elig[i].km < tieKm {
			j++
		}
		group := elig[i:j]
		room := want - len(dst)
		if len(group) <= room {
			for _, c := range group {
				dst = append(dst, c.idx)
			}
		} else {
			dst = s.weightedSample(group, room, dst)
		}
		i = j
	}
	return dst, false
}

// weightedSample draws n nodes from group without replacement, each draw
// proportional to weight (weight 0 counts as 1 here: drained nodes only
// reach this point when nothing else is left).
func (s *steering) weightedSample(group []candidate, n int, dst []int) []int {
	var buf [maxSteerNodes]candidate
	g := append(buf[:0], group...)
	for ; n > 0 && len(g) > 0; n-- {
		total := 0
		for _, c := range g {
			total += max(1, s.nodes[c.idx].weight)
		}
		r := s.rand(total)
		k := 0
		for ; k < len(g)-1; k++ {
			r -= max(1, s.nodes[g[k].idx].weight)
			if r < 0 {
				break
			}
		}
		dst = append(dst, g[k].idx)
		g = append(g[:k], g[k+1:]...)
	}
	return dst
}

// buildSteered prepares a steered name's per-node records.
func buildSteered(cfg SteeredName, nodes []cluster.Node) *steeredName {
	name := canonical(cfg.Name)
	ttl := uint32(cfg.TTL.D().Seconds())
	s := &steeredName{name: name, answers: cfg.Answers, a: make([]mdns.RR, len(nodes)), aaaa: make([]mdns.RR, len(nodes))}
	for i, n := range nodes {
		if n.IPv4.IsValid() {
			s.a[i] = &mdns.A{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: ttl}, A: n.IPv4.AsSlice()}
		}
		if n.IPv6.IsValid() {
			s.aaaa[i] = &mdns.AAAA{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: ttl}, AAAA: n.IPv6.AsSlice()}
		}
	}
	return s
}

// String describes a ranking, for logs and tests.
func (c candidate) String() string { return fmt.Sprintf("%d@%.0fkm", c.idx, c.km) }
