package dns

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	mdns "github.com/miekg/dns"
)

// Zone is one immutable, indexed zone. Record changes build a new Zone.
type Zone struct {
	origin string // canonical (lower-case, fully qualified)
	nodes  map[string]*node
	soa    *mdns.SOA // apex SOA with the served serial
	negSOA *mdns.SOA // SOA for negative answers: TTL = min(TTL, MINIMUM) (RFC 2308 §5)
	// hasCuts, hasDname and hasWild let the answer path skip walks most
	// zones don't need.
	hasCuts  bool
	hasDname bool
	hasWild  bool
	records  []mdns.RR // every record, SOA first, for AXFR and Records
}

// node is one owner name. A node without sets is an empty non-terminal.
type node struct {
	name  string
	sets  []rrset
	cut   bool         // NS below the apex: a delegation point
	dname *mdns.DNAME  // the name's DNAME: names below it are redirected
	steer *steeredName // non-nil when the name is steered
}

// rrset is the records of one type at one name, with the in-zone address
// records for their targets (MX, SRV, NS) precomputed for the additional
// section.
type rrset struct {
	rtype uint16
	rrs   []mdns.RR
	extra []mdns.RR
}

func (n *node) get(t uint16) *rrset {
	for i := range n.sets {
		if n.sets[i].rtype == t {
			return &n.sets[i]
		}
	}
	return nil
}

// Origin returns the zone apex.
func (z *Zone) Origin() string { return z.origin }

// Serial returns the served SOA serial.
func (z *Zone) Serial() uint32 { return z.soa.Serial }

// buildZone indexes rrs (which must include exactly one apex SOA unless
// synthesize is set) and the zone's steered names. serialBump is added to
// the SOA serial so runtime changes are visible to secondaries.
func buildZone(origin string, rrs []mdns.RR, steered []*steeredName, serialBump uint32, synthesize bool) (*Zone, error) {
	z := &Zone{origin: origin, nodes: map[string]*node{}}
	var soa *mdns.SOA
	for _, rr := range rrs {
		h := rr.Header()
		name := strings.ToLower(h.Name)
		if !mdns.IsSubDomain(origin, name) {
			return nil, fmt.Errorf("record %q is outside zone %s", h.Name, origin)
		}
		if h.Class != mdns.ClassINET {
			return nil, fmt.Errorf("record %q: only class IN is served", h.Name)
		}
		switch h.Rrtype {
		case mdns.TypeSOA:
			if name != origin {
				return nil, fmt.Errorf("SOA record at %s, want it at the apex %s", h.Name, origin)
			}
			if soa != nil {
				return nil, fmt.Errorf("zone %s has more than one SOA record", origin)
			}
			soa = mdns.Copy(rr).(*mdns.SOA)
			soa.Hdr.Name = origin
			continue
		case mdns.TypeOPT, mdns.TypeTSIG, mdns.TypeANY, mdns.TypeAXFR, mdns.TypeIXFR:
			return nil, fmt.Errorf("record %q: type %s cannot be served", h.Name, mdns.TypeToString[h.Rrtype])
		}
		c := mdns.Copy(rr)
		c.Header().Name = name
		z.add(c)
	}
	if soa == nil {
		if !synthesize {
			return nil, fmt.Errorf("zone %s has no SOA record", origin)
		}
		soa = &mdns.SOA{
			Hdr:     mdns.RR_Header{Name: origin, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: 3600},
			Ns:      "ns1." + origin,
			Mbox:    "hostmaster." + origin,
			Serial:  1,
			Refresh: 7200, Retry: 3600, Expire: 1209600, Minttl: 300,
		}
	}
	soa.Serial += serialBump
	z.soa = soa
	neg := *soa
	neg.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	z.negSOA = &neg
	z.add(soa)
	for _, s := range steered {
		n := z.ensure(s.name)
		if n.get(mdns.TypeCNAME) != nil {
			return nil, fmt.Errorf("steered name %s also has a CNAME record", s.name)
		}
		n.steer = s
	}
	for name, n := range z.nodes {
		if name != origin && n.get(mdns.TypeNS) != nil {
			n.cut = true
			z.hasCuts = true
		}
		if strings.HasPrefix(name, "*.") {
			z.hasWild = true
		}
		if d := n.get(mdns.TypeDNAME); d != nil {
			if len(d.rrs) > 1 {
				return nil, fmt.Errorf("%s has more than one DNAME record (RFC 6672 §2.4)", name)
			}
			n.dname = d.rrs[0].(*mdns.DNAME)
			z.hasDname = true
		}
		if c := n.get(mdns.TypeCNAME); c != nil {
			if len(n.sets) > 1 {
				return nil, fmt.Errorf("%s has a CNAME and other data (RFC 1034 §3.6.2)", name)
			}
			if len(c.rrs) > 1 {
				return nil, fmt.Errorf("%s has more than one CNAME record", name)
			}
		}
	}
	if z.hasDname {
		for name, n := range z.nodes {
			if len(n.sets) == 0 && n.steer == nil {
				continue // an empty non-terminal: its descendants are checked
			}
			for off, end := mdns.NextLabel(name, 0); !end && name != origin; off, end = mdns.NextLabel(name, off) {
				p := name[off:]
				if a := z.nodes[p]; a != nil && a.dname != nil {
					return nil, fmt.Errorf("%s is below the DNAME at %s (RFC 6672 §2.4)", name, p)
				}
				if p == origin {
					break
				}
			}
		}
	}
	for _, n := range z.nodes {
		for i := range n.sets {
			z.glue(&n.sets[i])
		}
	}
	z.records = make([]mdns.RR, 0, len(rrs)+1)
	z.records = append(z.records, soa)
	names := make([]string, 0, len(z.nodes))
	for name := range z.nodes {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return canonicalLess(names[i], names[j]) })
	for _, name := range names {
		for _, set := range z.nodes[name].sets {
			if set.rtype != mdns.TypeSOA {
				z.records = append(z.records, set.rrs...)
			}
		}
	}
	return z, nil
}

// add files rr under its (lower-case) owner, creating the empty
// non-terminals between the owner and the apex. Duplicates are dropped.
func (z *Zone) add(rr mdns.RR) {
	n := z.ensure(rr.Header().Name)
	t := rr.Header().Rrtype
	if s := n.get(t); s != nil {
		for _, o := range s.rrs {
			if mdns.IsDuplicate(o, rr) {
				return
			}
		}
		s.rrs = append(s.rrs, rr)
		// RFC 2181 §5.2: one TTL per RRset; use the lowest.
		ttl := rr.Header().Ttl
		for _, o := range s.rrs {
			ttl = min(ttl, o.Header().Ttl)
		}
		for _, o := range s.rrs {
			o.Header().Ttl = ttl
		}
		return
	}
	n.sets = append(n.sets, rrset{rtype: t, rrs: []mdns.RR{rr}})
	sort.Slice(n.sets, func(i, j int) bool { return n.sets[i].rtype < n.sets[j].rtype })
}

func (z *Zone) ensure(name string) *node {
	if n := z.nodes[name]; n != nil {
		return n
	}
	n := &node{name: name}
	z.nodes[name] = n
	// Create the ancestors up to the apex as empty non-terminals.
	for off, end := mdns.NextLabel(name, 0); !end; off, end = mdns.NextLabel(name, off) {
		p := name[off:]
		if _, ok := z.nodes[p]; ok || !mdns.IsSubDomain(z.origin, p) {
			break
		}
		z.nodes[p] = &node{name: p}
	}
	return n
}

// glue precomputes the additional section of an RRset: in-zone A and AAAA
// records of MX exchanges, SRV targets and NS hosts.
func (z *Zone) glue(s *rrset) {
	var targets []string
	for _, rr := range s.rrs {
		switch r := rr.(type) {
		case *mdns.MX:
			targets = append(targets, r.Mx)
		case *mdns.SRV:
			targets = append(targets, r.Target)
		case *mdns.NS:
			targets = append(targets, r.Ns)
		}
	}
	for _, t := range targets {
		n := z.nodes[strings.ToLower(t)]
		if n == nil {
			continue
		}
		for _, typ := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
			if a := n.get(typ); a != nil {
				s.extra = append(s.extra, a.rrs...)
			}
		}
	}
}

// canonicalLess orders names as RFC 4034 §6.1 does (by reversed labels),
// which keeps AXFR and listings stable and readable.
func canonicalLess(a, b string) bool {
	la, lb := mdns.SplitDomainName(a), mdns.SplitDomainName(b)
	for i, j := len(la)-1, len(lb)-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		if la[i] != lb[j] {
			return la[i] < lb[j]
		}
	}
	return len(la) < len(lb)
}

// maxCNAMEChain bounds CNAME chasing inside a zone (loops included).
const maxCNAMEChain = 8

// answer fills m for the question (qname lower-cased in lname) per RFC 1034
// §4.3.2 with the wildcard rules of RFC 4592 and negative answers per RFC
// 2308. q steers A/AAAA answers at steered names.
func (z *Zone) answer(m *mdns.Msg, qname, lname string, qtype uint16, q *query) {
	m.Authoritative = true
	owner := qname // the owner for synthesized records: the name as asked
	for hop := 0; ; hop++ {
		if z.hasCuts || z.hasDname {
			if r := z.findCut(lname, qtype); r != nil && r.dname != nil && !r.cut {
				// RFC 6672 §3.2: the DNAME, a CNAME synthesized from it
				// (with its TTL), then the new name as for a CNAME.
				d := r.dname
				if !slices.Contains(m.Answer, mdns.RR(d)) { // once, however often it is used
					m.Answer = append(m.Answer, d)
				}
				target := lname[:len(lname)-len(r.name)] + d.Target
				if _, ok := mdns.IsDomainName(target); !ok {
					m.Rcode = mdns.RcodeYXDomain // the new name is too long
					return
				}
				m.Answer = append(m.Answer, &mdns.CNAME{
					Hdr:    mdns.RR_Header{Name: owner, Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: d.Hdr.Ttl},
					Target: target,
				})
				ltarget := strings.ToLower(target)
				if hop+1 >= maxCNAMEChain || !mdns.IsSubDomain(z.origin, ltarget) || cnameLoop(m.Answer, ltarget) {
					return
				}
				owner, lname = target, ltarget
				continue
			} else if r != nil {
				// A referral: not authoritative, NS in authority, glue in
				// additional. Only the first name in a chain can be a
				// referral with AA clear.
				if hop == 0 {
					m.Authoritative = false
				}
				ns := r.get(mdns.TypeNS)
				m.Ns = append(m.Ns, ns.rrs...)
				m.Extra = append(m.Extra, ns.extra...)
				return
			}
		}
		n := z.nodes[lname]
		wild := false
		if n == nil && z.hasWild {
			n = z.wildcard(lname)
			wild = n != nil
		}
		if n == nil {
			m.Rcode = mdns.RcodeNameError
			m.Ns = append(m.Ns, z.negSOA)
			return
		}
		if n.steer != nil && (qtype == mdns.TypeA || qtype == mdns.TypeAAAA || qtype == mdns.TypeANY) {
			t := qtype
			if t == mdns.TypeANY {
				t = mdns.TypeA
			}
			if q.steerInto(m, n.steer, t) {
				return
			}
			// No node has an address of this family: answer from the
			// zone's own records at the name, if any.
		}
		if qtype == mdns.TypeANY {
			// RFC 8482: answer ANY with one RRset rather than all of them.
			if len(n.sets) == 0 {
				m.Ns = append(m.Ns, z.negSOA)
				return
			}
			s := &n.sets[0]
			m.Answer = appendOwned(m.Answer, s.rrs, owner, wild)
			return
		}
		if s := n.get(qtype); s != nil {
			m.Answer = appendOwned(m.Answer, s.rrs, owner, wild)
			m.Extra = append(m.Extra, s.extra...)
			return
		}
		c := n.get(mdns.TypeCNAME)
		if c == nil {
			m.Ns = append(m.Ns, z.negSOA) // NODATA
			return
		}
		m.Answer = appendOwned(m.Answer, c.rrs, owner, wild)
		target := c.rrs[0].(*mdns.CNAME).Target
		ltarget := strings.ToLower(target)
		if hop+1 >= maxCNAMEChain || !mdns.IsSubDomain(z.origin, ltarget) || cnameLoop(m.Answer, ltarget) {
			// Out of zone or too long: the resolver follows from here.
			return
		}
		owner, lname = target, ltarget
	}
}

// findCut returns the highest delegation point at or above name, or DNAME
// owner above it, if any. A DS query at the cut itself is answered by the
// parent (this zone); a DNAME does not apply to its own owner.
func (z *Zone) findCut(name string, qtype uint16) *node {
	labels := mdns.CountLabel(name) - mdns.CountLabel(z.origin)
	if labels <= 0 {
		return nil
	}
	if z.hasDname {
		if apex := z.nodes[z.origin]; apex.dname != nil {
			return apex
		}
	}
	idx := mdns.Split(name)
	// idx[i] starts the suffix with len(idx)-i labels; walk from just below
	// the apex down to name.
	for i := labels - 1; i >= 0; i-- {
		p := name[idx[i]:]
		n := z.nodes[p]
		if n == nil {
			return nil
		}
		if n.cut {
			if i == 0 && qtype == mdns.TypeDS {
				return nil
			}
			return n
		}
		if n.dname != nil && i > 0 {
			return n
		}
	}
	return nil
}

// wildcard finds the source of synthesis for a name that does not exist:
// "*." + its closest encloser (RFC 4592 §3.3.1). The closest encloser may be
// an empty non-terminal, which then blocks wildcards above it.
func (z *Zone) wildcard(name string) *node {
	for off, end := mdns.NextLabel(name, 0); !end; off, end = mdns.NextLabel(name, off) {
		ce := name[off:]
		if _, ok := z.nodes[ce]; ok {
			return z.nodes["*."+ce]
		}
		if ce == z.origin {
			break
		}
	}
	return nil
}

func cnameLoop(answer []mdns.RR, target string) bool {
	for _, rr := range answer {
		if strings.EqualFold(rr.Header().Name, target) {
			return true
		}
	}
	return false
}

// appendOwned appends rrs, renamed to owner when they were synthesized from
// a wildcard (the stored records are shared and never modified).
func appendOwned(dst, rrs []mdns.RR, owner string, wild bool) []mdns.RR {
	if !wild {
		return append(dst, rrs...)
	}
	for _, rr := range rrs {
		c := mdns.Copy(rr)
		c.Header().Name = owner
		dst = append(dst, c)
	}
	return dst
}
