package lb

// leastConnections picks the backend with the fewest in-flight requests per
// unit of weight. Ties are broken at random in proportion to weight, so an
// idle pool still spreads requests by weight.
type leastConnections struct{}

var _ Policy = leastConnections{}

func newLeastConnections([]*Backend, *PoolConfig) Policy { return leastConnections{} }

func (leastConnections) Pick(s *Selection) *Backend {
	best := -1
	var bestLoad, bestW, tieW int64
	for i, b := range s.Backends {
		w := s.Weight(i)
		if w == 0 {
			continue
		}
		load := b.inflight.Load()
		if best < 0 {
			best, bestLoad, bestW, tieW = i, load, w, w
			continue
		}
		// Compare load/w with bestLoad/bestW without dividing.
		switch l, r := load*bestW, bestLoad*w; {
		case l < r:
			best, bestLoad, bestW, tieW = i, load, w, w
		case l == r:
			// Weighted reservoir sampling among the tied backends.
			tieW += w
			if int64(s.Rand()%uint64(tieW)) < w {
				best, bestLoad, bestW = i, load, w
			}
		}
	}
	if best < 0 {
		return nil
	}
	return s.Backends[best]
}
