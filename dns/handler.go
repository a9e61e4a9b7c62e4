package dns

import (
	"net"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

var _ mdns.Handler = (*Server)(nil)

// query is the per-query state the answer path shares with steering.
type query struct {
	steer   *steering
	client  netip.Addr // ECS address when given, else the source address
	scope   int        // ECS scope the steered answer depends on
	steered bool
	picked  [16]int
}

// steerInto appends the steered records of sn for qtype to m, reporting
// false when no node has an address of that family.
func (q *query) steerInto(m *mdns.Msg, sn *steeredName, qtype uint16) bool {
	rrs := sn.a
	if qtype == mdns.TypeAAAA {
		rrs = sn.aaaa
	}
	if q.steer == nil || len(rrs) == 0 {
		return false
	}
	cands, scope := q.steer.locate(q.client)
	picked, failedOpen := q.steer.pick(cands, rrs, sn.answers, q.picked[:0])
	if failedOpen && q.steer.metrics != nil {
		q.steer.metrics.failOpen.Inc()
	}
	q.steered, q.scope = true, scope
	for _, i := range picked {
		m.Answer = append(m.Answer, rrs[i])
		if c := q.steer.nodes[i].counter; c != nil {
			c.Inc()
		}
	}
	return len(picked) > 0
}

// ServeDNS answers one query. It implements mdns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	s.respond(w, r, rrlUnchecked)
}

// respond answers r. limit is the RRL decision when the caller already made
// it (the UDP fast path), else rrlUnchecked. It reports whether the answer
// may be cached for identical queries: it depends only on the zone data
// (not on the client, TSIG, ECS or rate limiting).
func (s *Server) respond(w mdns.ResponseWriter, r *mdns.Msg, limit rrlAction) (cacheable bool) {
	sn := s.snap.Load()
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Compress = true
	qtype := uint16(0)
	if len(r.Question) == 1 {
		qtype = r.Question[0].Qtype
	}
	_, isTCP := w.RemoteAddr().(*net.TCPAddr)

	// EDNS0 (RFC 6891): at most one OPT; version 0 only. Every answer to
	// a query with an OPT carries one (§6.1.1), errors included.
	var opt *mdns.OPT
	nOpt := 0
	for _, rr := range r.Extra {
		if o, ok := rr.(*mdns.OPT); ok {
			opt = o
			nOpt++
		}
	}
	udpSize := mdns.MinMsgSize
	var ecs *mdns.EDNS0_SUBNET
	if nOpt > 1 || (opt != nil && opt.Hdr.Name != ".") {
		m.Rcode = mdns.RcodeFormatError
		s.finish(w, r, m, qtype)
		return false
	}
	if opt != nil {
		ro := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
		ro.SetUDPSize(sn.ednsSize)
		if opt.Do() {
			ro.SetDo()
		}
		m.Extra = append(m.Extra, ro)
	}
	if r.Opcode != mdns.OpcodeQuery {
		m.Rcode = mdns.RcodeNotImplemented
		s.finish(w, r, m, qtype)
		return false
	}
	if len(r.Question) != 1 {
		m.Rcode = mdns.RcodeFormatError
		m.Question = nil
		s.finish(w, r, m, qtype)
		return false
	}
	if opt != nil {
		if opt.Version() != 0 {
			m.Rcode = mdns.RcodeBadVers
			s.finish(w, r, m, qtype)
			return false
		}
		udpSize = max(mdns.MinMsgSize, min(int(opt.UDPSize()), int(sn.ednsSize)))
		for _, o := range opt.Option {
			if e, ok := o.(*mdns.EDNS0_SUBNET); ok {
				if !validECS(e) {
					m.Rcode = mdns.RcodeFormatError
					s.finish(w, r, m, qtype)
					return false
				}
				ecs = e
			}
		}
	}

	q := r.Question[0]
	switch {
	case q.Qclass != mdns.ClassINET:
		m.Rcode = mdns.RcodeRefused
	case qtype == mdns.TypeAXFR || qtype == mdns.TypeIXFR:
		s.transfer(w, r, m, sn, isTCP)
		return false
	case qtype == mdns.TypeOPT || qtype == mdns.TypeTSIG || qtype == mdns.TypeTKEY:
		m.Rcode = mdns.RcodeFormatError
	default:
		lname := strings.ToLower(q.Name)
		z := sn.findZone(lname)
		if qtype == mdns.TypeDS && z != nil && z.origin == lname && lname != "." {
			// RFC 4035 §3.1.4.1: the DS at a child's apex belongs to the
			// parent side of the cut; answer from the parent when it is
			// served and delegates here.
			off, _ := mdns.NextLabel(lname, 0)
			if p := sn.findZone(lname[off:]); p != nil {
				if n := p.nodes[lname]; n != nil && n.cut {
					z = p
				}
			}
		}
		if z == nil {
			m.Rcode = mdns.RcodeRefused
			break
		}
		qs := query{steer: sn.steer}
		src := remoteAddr(w)
		qs.client = src
		if ecs != nil && ecs.SourceNetmask > 0 {
			if a, ok := netip.AddrFromSlice(ecs.Address); ok {
				qs.client = a.Unmap()
			}
		}
		z.answer(m, q.Name, lname, qtype, &qs)
		if ecs != nil {
			scope := 0
			if qs.steered && ecs.SourceNetmask > 0 {
				scope = qs.scope
			}
			m.Extra[0].(*mdns.OPT).Option = []mdns.EDNS0{&mdns.EDNS0_SUBNET{
				Code: mdns.EDNS0SUBNET, Family: ecs.Family, SourceNetmask: ecs.SourceNetmask,
				SourceScope: uint8(scope), Address: ecs.Address,
			}}
		}
		cacheable = !qs.steered && ecs == nil && r.IsTsig() == nil
	}
	if !isTCP {
		// RRL covers every UDP answer, errors (REFUSED) included, as in
		// BIND: they can be reflected too.
		if limit == rrlUnchecked {
			limit = s.rrl.check(remoteAddr(w))
		}
		switch limit {
		case rrlDrop:
			s.metrics.rrlDrop.Inc()
			return false
		case rrlSlip:
			cacheable = false
			s.metrics.rrlSlip.Inc()
			m.Answer, m.Ns = nil, nil
			if opt != nil {
				m.Extra = m.Extra[:1] // the OPT goes first
			} else {
				m.Extra = nil
			}
			m.Truncated = true
		}
		slipped, nAns, nNs := m.Truncated, len(m.Answer), len(m.Ns)
		m.Truncate(udpSize)
		if m.Truncated && !slipped && m.Authoritative && len(m.Answer) == nAns && len(m.Ns) == nNs {
			// Only additional records were left out: the answer is
			// complete, so no TC (RFC 2181 §9), which miekg/dns sets
			// for any record left out. A referral that lost glue keeps
			// TC (RFC 9471), as in Knot.
			m.Truncated = false
		}
		// Truncate turns compression off when the uncompressed message
		// fits; keep it on, as Knot does: answers are packed once and
		// cached, and every byte saved is a byte less to reflect.
		m.Compress = true
	}
	s.finish(w, r, m, qtype)
	return cacheable && (m.Rcode == mdns.RcodeSuccess || m.Rcode == mdns.RcodeNameError)
}

// finish signs (when the query was signed) and writes m.
func (s *Server) finish(w mdns.ResponseWriter, r, m *mdns.Msg, qtype uint16) {
	if t := r.IsTsig(); t != nil {
		if w.TsigStatus() != nil {
			// RFC 8945 §5.2: an unverifiable request gets NOTAUTH, unsigned.
			m.Answer, m.Ns = nil, nil
			m.Extra = m.Extra[:0]
			m.Rcode = mdns.RcodeNotAuth
		} else {
			m.SetTsig(t.Hdr.Name, t.Algorithm, 300, s.now().Unix())
		}
	}
	// Counted before the answer leaves, so a client that has its answer
	// never sees a counter without it.
	s.metrics.query(qtype, m.Rcode)
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("write failed", "error", err)
	}
}

// validECS checks an EDNS Client Subnet option per RFC 7871 §6: a known
// family, a prefix that fits it, and no address bits beyond the prefix.
func validECS(e *mdns.EDNS0_SUBNET) bool {
	var bits int
	switch e.Family {
	case 1:
		bits = 32
	case 2:
		bits = 128
	default:
		return false
	}
	if int(e.SourceNetmask) > bits {
		return false
	}
	a, ok := netip.AddrFromSlice(e.Address)
	if !ok {
		return e.SourceNetmask == 0
	}
	a = a.Unmap()
	if (bits == 32) != a.Is4() {
		return false
	}
	p, err := a.Prefix(int(e.SourceNetmask))
	return err == nil && p.Addr() == a
}

// remoteAddr is the client's source address.
func remoteAddr(w mdns.ResponseWriter) netip.Addr {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}
