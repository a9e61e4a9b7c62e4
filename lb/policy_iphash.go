package lb

import "net/netip"

// ipHash maps each client IP to a backend on a consistent-hash ring, so a
// client keeps its backend and removing one of N backends remaps only about
// 1/N of the clients.
type ipHash struct {
	ring *ring
}

var _ Policy = (*ipHash)(nil)

func newIPHash(backends []*Backend, _ *PoolConfig) Policy {
	return &ipHash{ring: newRing(backends)}
}

func (p *ipHash) Pick(s *Selection) *Backend {
	return p.ring.pick(s, clientKey(s))
}

// clientKey hashes the client IP. Without one (no request info) it falls
// back to the socket peer in Req.RemoteAddr, never to a forwarded header.
func clientKey(s *Selection) uint64 {
	ip := s.ClientIP
	if !ip.IsValid() && s.Req != nil {
		if ap, err := netip.ParseAddrPort(s.Req.RemoteAddr); err == nil {
			ip = ap.Addr()
		}
	}
	if !ip.IsValid() {
		return s.Rand()
	}
	b := ip.Unmap().As16()
	return mix64(fnvBytes(fnvOffset, b[:]))
}
