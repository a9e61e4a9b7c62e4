package lb

// consistentHash maps a request key (URI, header or cookie) to a backend on
// a consistent-hash ring: the same URI goes to the same backend, which keeps
// origin-side caches hot. Requests without the key fall back to the client
// IP.
type consistentHash struct {
	ring *ring
	key  hashKey
}

var _ Policy = (*consistentHash)(nil)

func newConsistentHash(backends []*Backend, cfg *PoolConfig) Policy {
	// Validate has checked the key; an invalid one hashes the URI.
	k, err := parseHashKey(cfg.HashKey)
	if err != nil {
		k = hashKey{kind: 'u'}
	}
	return &consistentHash{ring: newRing(backends), key: k}
}

func (p *consistentHash) Pick(s *Selection) *Backend {
	return p.ring.pick(s, p.requestKey(s))
}

func (p *consistentHash) requestKey(s *Selection) uint64 {
	r := s.Req
	if r == nil {
		return clientKey(s)
	}
	switch p.key.kind {
	case 'u':
		if r.URL == nil {
			return clientKey(s)
		}
		h := fnvString(fnvOffset, r.URL.Path)
		if r.URL.RawQuery != "" {
			h = fnvString(fnvString(h, "?"), r.URL.RawQuery)
		}
		return mix64(h)
	case 'h':
		if v := r.Header[p.key.name]; len(v) > 0 && v[0] != "" {
			return mix64(fnvString(fnvOffset, v[0]))
		}
	case 'c':
		if c, err := r.Cookie(p.key.name); err == nil && c.Value != "" {
			return mix64(fnvString(fnvOffset, c.Value))
		}
	}
	return clientKey(s)
}
