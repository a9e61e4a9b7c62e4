package lb

import "sync"

// roundRobin is nginx's smooth weighted round robin: each pick adds every
// usable backend's weight to its current score, takes the highest, and
// subtracts the total from the winner. Weights 5,1,1 give a,a,b,a,c,a,a
// rather than a burst of five a's.
type roundRobin struct {
	mu      sync.Mutex
	current []int64 // mu guards current; one score per backend
}

var _ Policy = (*roundRobin)(nil)

func newRoundRobin(backends []*Backend, _ *PoolConfig) Policy {
	return &roundRobin{current: make([]int64, len(backends))}
}

func (p *roundRobin) Pick(s *Selection) *Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	var total int64
	best := -1
	for i := range s.Backends {
		w := s.Weight(i)
		if w == 0 {
			continue
		}
		p.current[i] += w
		total += w
		if best < 0 || p.current[i] > p.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	p.current[best] -= total
	return s.Backends[best]
}
