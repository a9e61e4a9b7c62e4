package dns

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync/atomic"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// The UDP fast path answers the common queries straight from the wire,
// without unpacking into mdns.Msg:
//
//   - steered A/AAAA queries (with or without ECS) are written by hand;
//   - other queries without ECS are served from a per-snapshot cache of
//     packed answers filled by the full answer path (respond).
//
// Anything unusual (TSIG, options other than ECS, EDNS versions, odd
// header counts, compression in the question, truncation) goes to the full
// path, which is the reference behaviour; the fast path only reproduces
// its output for the cases it accepts.

// fastStatus says what the fast path did.
type fastStatus uint8

const (
	fastSlow fastStatus = iota // use the full path, do not cache
	fastMiss                   // use the full path, cache its answer under scratch.key
	fastDone                   // answered (or dropped by RRL)
)

// scratch is per-worker memory reused across queries.
type scratch struct {
	limit  rrlAction // RRL decision already made for this query, or rrlUnchecked
	key    []byte
	out    []byte
	picked [16]int
}

// answerCache holds packed answers of one snapshot, keyed by lower-case
// wire qname + qtype + EDNS flags + effective UDP size. Zone data is
// immutable within a snapshot, so entries never go stale; a new snapshot
// starts empty.
//
// It is direct-mapped: a fixed array of slots, each an atomic pointer, so
// reads take no lock (no cache-line ping-pong between cores) and a flood of
// distinct names only overwrites slots: memory stays bounded and inserts
// stay O(1). The hash is seeded per cache, so collisions cannot be aimed.
type answerCache struct {
	seed  maphash.Seed
	slots [cacheSlots]atomic.Pointer[cacheEntry]
}

const cacheSlots = 8192 // a power of two

type cacheEntry struct {
	key     string
	resp    []byte
	counter prometheus.Counter // queries_total for its qtype and rcode
}

func newAnswerCache() *answerCache {
	return &answerCache{seed: maphash.MakeSeed()}
}

func (c *answerCache) slot(key []byte) *atomic.Pointer[cacheEntry] {
	return &c.slots[maphash.Bytes(c.seed, key)&(cacheSlots-1)]
}

func (c *answerCache) get(key []byte) *cacheEntry {
	if e := c.slot(key).Load(); e != nil && e.key == string(key) {
		return e
	}
	return nil
}

func (c *answerCache) put(key, resp []byte, counter prometheus.Counter) {
	c.slot(key).Store(&cacheEntry{key: string(key), resp: append([]byte(nil), resp...), counter: counter})
}

// indexSteered maps the lower-case wire form of every steered name that is
// not below a delegation (or DNAME) to its steering data.
func indexSteered(zones map[string]*Zone) map[string]*steeredName {
	out := map[string]*steeredName{}
	buf := make([]byte, 256)
	for _, z := range zones {
		for name, n := range z.nodes {
			if n.steer == nil || ((z.hasCuts || z.hasDname) && z.findCut(name, mdns.TypeA) != nil) {
				continue
			}
			off, err := mdns.PackDomainName(name, buf, 0, nil, false)
			if err == nil {
				out[string(buf[:off])] = n.steer
			}
		}
	}
	return out
}

// ednsQuery is what the fast path reads from a query's OPT record.
type ednsQuery struct {
	present bool
	do      bool
	size    int
	ecs     bool
	family  uint16
	srcBits uint8
	addr    netip.Addr
	ecsRaw  []byte // address bytes as sent (ceil(srcBits/8))
}

// fastUDP tries to answer req without the full path.
func (s *Server) fastUDP(sn *snapshot, req []byte, src netip.Addr, sc *scratch) ([]byte, fastStatus) {
	sc.limit = rrlUnchecked
	if len(req) < 17 {
		return nil, fastSlow
	}
	// QR, opcode and TC must be clear; exactly one question, nothing else
	// but an optional OPT.
	if req[2]&0xFA != 0 {
		return nil, fastSlow
	}
	if binary.BigEndian.Uint16(req[4:]) != 1 || binary.BigEndian.Uint16(req[6:]) != 0 ||
		binary.BigEndian.Uint16(req[8:]) != 0 || binary.BigEndian.Uint16(req[10:]) > 1 {
		return nil, fastSlow
	}
	key := sc.key[:0]
	off := 12
	for {
		l := int(req[off])
		if l == 0 {
			key = append(key, 0)
			off++
			break
		}
		if l > 63 || off+1+l >= len(req) || len(key)+l+2 > 255 {
			return nil, fastSlow // compression pointer, bad label, or too long
		}
		key = append(key, byte(l))
		for _, b := range req[off+1 : off+1+l] {
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			key = append(key, b)
		}
		off += 1 + l
	}
	qnameEnd := off
	if off+4 > len(req) {
		return nil, fastSlow
	}
	qtype := binary.BigEndian.Uint16(req[off:])
	if binary.BigEndian.Uint16(req[off+2:]) != mdns.ClassINET {
		return nil, fastSlow
	}
	switch qtype {
	case mdns.TypeAXFR, mdns.TypeIXFR, mdns.TypeOPT, mdns.TypeTSIG, mdns.TypeTKEY:
		return nil, fastSlow
	}
	off += 4
	var e ednsQuery
	if req[11] == 1 {
		if !parseOPT(req[off:], &e) {
			return nil, fastSlow
		}
	} else if off != len(req) {
		return nil, fastSlow
	}
	eff := mdns.MinMsgSize
	if e.present {
		eff = max(mdns.MinMsgSize, min(e.size, int(sn.ednsSize)))
	}
	sc.key = key

	if qtype == mdns.TypeA || qtype == mdns.TypeAAAA {
		if st := sn.steeredWire[string(key)]; st != nil {
			return s.fastSteer(sn, st, req, qnameEnd, qtype, src, &e, eff, sc)
		}
	}
	if e.ecs {
		return nil, fastSlow
	}
	var flags byte
	if e.present {
		flags = 1
		if e.do {
			flags |= 2
		}
	}
	key = append(key, byte(qtype>>8), byte(qtype), flags, byte(eff>>8), byte(eff))
	sc.key = key
	ce := sn.cache.get(key)
	if ce == nil {
		return nil, fastMiss
	}
	switch s.rrl.check(src) {
	case rrlDrop:
		s.metrics.rrlDrop.Inc()
		return nil, fastDone
	case rrlSlip:
		sc.limit = rrlSlip
		return nil, fastSlow // the full path writes the slip answer
	}
	out := append(sc.out[:0], ce.resp...)
	out[0], out[1] = req[0], req[1]
	copy(out[12:qnameEnd], req[12:qnameEnd]) // the question as asked (case)
	out[2] = out[2]&^0x01 | req[2]&0x01      // RD
	out[3] = out[3]&^0x10 | req[3]&0x10      // CD
	sc.out = out
	ce.counter.Inc()
	return out, fastDone
}

// parseOPT reads an OPT record that must end the message. It accepts
// version 0 with no options or only a well-formed ECS option; anything else
// is left to the full path (which answers BADVERS, FORMERR, ...).
func parseOPT(b []byte, e *ednsQuery) bool {
	if len(b) < 11 || b[0] != 0 || binary.BigEndian.Uint16(b[1:]) != mdns.TypeOPT {
		return false
	}
	e.present = true
	e.size = int(binary.BigEndian.Uint16(b[3:]))
	if b[6] != 0 { // version
		return false
	}
	e.do = b[7]&0x80 != 0
	rdlen := int(binary.BigEndian.Uint16(b[9:]))
	opts := b[11:]
	if len(opts) != rdlen {
		return false
	}
	for len(opts) > 0 {
		if len(opts) < 4 {
			return false
		}
		code := binary.BigEndian.Uint16(opts)
		olen := int(binary.BigEndian.Uint16(opts[2:]))
		if len(opts) < 4+olen || code != mdns.EDNS0SUBNET || e.ecs {
			return false
		}
		if !parseECS(opts[4:4+olen], e) {
			return false
		}
		opts = opts[4+olen:]
	}
	return true
}

// parseECS validates an ECS option as validECS does.
func parseECS(b []byte, e *ednsQuery) bool {
	if len(b) < 4 {
		return false
	}
	e.family = binary.BigEndian.Uint16(b)
	e.srcBits = b[2]
	if b[3] != 0 { // scope must be 0 in queries
		return false
	}
	var a [16]byte
	var bits int
	switch e.family {
	case 1:
		bits = 32
	case 2:
		bits = 128
	default:
		return false
	}
	n := (int(e.srcBits) + 7) / 8
	if int(e.srcBits) > bits || len(b) != 4+n {
		return false
	}
	copy(a[:], b[4:])
	if rem := e.srcBits % 8; rem != 0 && b[4+n-1]&(0xFF>>rem) != 0 {
		return false // address bits beyond the prefix
	}
	if bits == 32 {
		e.addr = netip.AddrFrom4([4]byte{a[0], a[1], a[2], a[3]})
	} else {
		e.addr = netip.AddrFrom16(a)
	}
	e.ecs = true
	e.ecsRaw = b[4:]
	return true
}

// fastSteer writes a steered A/AAAA answer by hand: header, the question
// as asked, one record per picked node (owner compressed to the question),
// and the OPT with the ECS scope when the query had EDNS.
func (s *Server) fastSteer(sn *snapshot, st *steeredName, req []byte, qnameEnd int, qtype uint16,
	src netip.Addr, e *ednsQuery, eff int, sc *scratch) ([]byte, fastStatus) {
	rrs, rdlen := st.a, 4
	if qtype == mdns.TypeAAAA {
		rrs, rdlen = st.aaaa, 16
	}
	client := src
	if e.ecs && e.srcBits > 0 {
		client = e.addr
	}
	cands, scope := sn.steer.locate(client)
	picked, failedOpen := sn.steer.pick(cands, rrs, st.answers, sc.picked[:0])
	if len(picked) == 0 {
		return nil, fastSlow // NODATA: the full path adds the SOA
	}
	size := qnameEnd + 4 + len(picked)*(12+rdlen)
	if e.present {
		size += 11
		if e.ecs {
			size += 8 + len(e.ecsRaw)
		}
	}
	if size > eff {
		return nil, fastSlow // the full path truncates
	}
	switch s.rrl.check(src) {
	case rrlDrop:
		s.metrics.rrlDrop.Inc()
		return nil, fastDone
	case rrlSlip:
		sc.limit = rrlSlip
		return nil, fastSlow
	}
	out := sc.out[:0]
	out = append(out, req[0], req[1], 0x84|req[2]&0x01, req[3]&0x10, 0, 1, 0, byte(len(picked)), 0, 0, 0, 0)
	if e.present {
		out[11] = 1
	}
	out = append(out, req[12:qnameEnd+4]...)
	for _, i := range picked {
		h := rrs[i].Header()
		out = append(out, 0xC0, 12, byte(qtype>>8), byte(qtype), 0, 1,
			byte(h.Ttl>>24), byte(h.Ttl>>16), byte(h.Ttl>>8), byte(h.Ttl), 0, byte(rdlen))
		if qtype == mdns.TypeA {
			out = append(out, rrs[i].(*mdns.A).A.To4()...)
		} else {
			out = append(out, rrs[i].(*mdns.AAAA).AAAA.To16()...)
		}
		if c := sn.steer.nodes[i].counter; c != nil {
			c.Inc()
		}
	}
	if e.present {
		var flags byte
		if e.do {
			flags = 0x80
		}
		optLen := 0
		if e.ecs {
			optLen = 8 + len(e.ecsRaw)
		}
		out = append(out, 0, 0, byte(mdns.TypeOPT), byte(sn.ednsSize>>8), byte(sn.ednsSize), 0, 0, flags, 0,
			byte(optLen>>8), byte(optLen))
		if e.ecs {
			echo := 0 // scope 0: source prefix 0 means the answer used the source address
			if e.srcBits > 0 {
				echo = scope
			}
			out = append(out, 0, byte(mdns.EDNS0SUBNET), 0, byte(4+len(e.ecsRaw)),
				byte(e.family>>8), byte(e.family), e.srcBits, byte(echo))
			out = append(out, e.ecsRaw...)
		}
	}
	sc.out = out
	s.metrics.query(qtype, mdns.RcodeSuccess)
	if failedOpen {
		s.metrics.failOpen.Inc()
	}
	return out, fastDone
}
