package lb

import "math"

// p2c is the power of two choices: sample two usable backends at random and
// take the one with the lower cost, (in-flight + 1) × latency EWMA / weight.
// It avoids both herding on one "least loaded" backend and slow instances.
type p2c struct{}

var _ Policy = p2c{}

func newP2C([]*Backend, *PoolConfig) Policy { return p2c{} }

// p2cProbes is how many random probes look for two usable backends before
// falling back to a scan; with most backends up two or three suffice.
const p2cProbes = 8

func (p2c) Pick(s *Selection) *Backend {
	n := len(s.Backends)
	if n == 0 {
		return nil
	}
	a, b := -1, -1
	for k := 0; k < p2cProbes && b < 0; k++ {
		i := s.RandN(n)
		if i == a || !s.Usable(i) {
			continue
		}
		if a < 0 {
			a = i
		} else {
			b = i
		}
	}
	if b < 0 {
		// Few usable backends: choose among them by rank.
		usable := 0
		for i := range n {
			if s.Usable(i) {
				usable++
			}
		}
		switch usable {
		case 0:
			return nil
		case 1:
			a, b = nthUsable(s, 0), -1
		default:
			ra := s.RandN(usable)
			rb := s.RandN(usable - 1)
			if rb >= ra {
				rb++
			}
			a, b = nthUsable(s, ra), nthUsable(s, rb)
		}
	}
	if b < 0 || p2cCost(s, a) <= p2cCost(s, b) {
		return s.Backends[a]
	}
	return s.Backends[b]
}

func nthUsable(s *Selection, rank int) int {
	for i := range s.Backends {
		if s.Usable(i) {
			if rank == 0 {
				return i
			}
			rank--
		}
	}
	return -1
}

// p2cMinLatency floors the latency estimate (seconds) so that in-flight
// counts still matter for unmeasured or long-idle backends.
const p2cMinLatency = 50e-6

// p2cCost is the expected wait at backend i per unit of weight.
func p2cCost(s *Selection, i int) float64 {
	b := s.Backends[i]
	lat := b.latencyAt(s.now)
	if lat < p2cMinLatency {
		lat = p2cMinLatency
	}
	w := s.Weight(i)
	if w <= 0 {
		return math.Inf(1)
	}
	return float64(b.inflight.Load()+1) * lat / float64(w)
}
