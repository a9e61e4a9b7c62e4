package lb

// leastConnections picks the backend with the fewest in-flight requests per
// unit of weight. Ties are broken at random in proportion to weight, so an
// idle pool still spreads requests by weight.
type leastConnections struct{}

var _ Policy = leastConnections{}

func newLeastConnections([]*Backend, *PoolConfig) Policy { return leastConnections{} }

func (leastConnections) Pick(s *Selection) *Backend {
	// First pass: the lowest load per weight, and the total weight of the
	// backends tied at it. Second pass: one random draw among the ties.
	// Loads may move between the passes; the draw then lands on any usable
	// backend, which is harmless.
	best := -1
	var bestLoad, bestW, tieW int64
	for i, b := range s.Backends {
		w := s.Weight(i)
		if w == 0 {
			continue
		}
		load := b.inflight.Load()
		// Compare load/w with bestLoad/bestW without dividing.
		switch l, r := load*bestW, bestLoad*w; {
		case best < 0 || l < r:
			best, bestLoad, bestW, tieW = i, load, w, w
		case l == r:
			tieW += w
		}
	}
	if best < 0 {
		return nil
	}
	if tieW == bestW {
		return s.Backends[best]
	}
	r := int64(s.Rand() % uint64(tieW))
	for i := best; i < len(s.Backends); i++ {
		w := s.Weight(i)
		if w == 0 || s.Backends[i].inflight.Load()*bestW != bestLoad*w {
			continue
		}
		if r < w {
			return s.Backends[i]
		}
		r -= w
	}
	return s.Backends[best]
}
