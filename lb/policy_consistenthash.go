package lb

import (
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

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

// passRequest is what requestKey reads of the request RoundTrip would get
// for pr: its URL (a pass-lane target is its own decoded form, so the
// path is the target's) and the one field the key names. The same
// request picks the same backend on either path.
func (p *consistentHash) passRequest(pr *PassRequest) *http.Request {
	path, query, _ := strings.Cut(pr.Target, "?")
	r := &http.Request{Method: pr.Method, URL: &url.URL{Path: path, RawQuery: query}}
	name := p.key.name
	if p.key.kind == 'c' {
		name = "Cookie"
	}
	if p.key.kind != 'u' && pr.Field != nil {
		if v := pr.Field(name); len(v) > 0 {
			r.Header = http.Header{name: v}
		}
	}
	return r
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
		if v := cookieValue(r.Header, p.key.name); v != "" {
			return mix64(fnvString(fnvOffset, v))
		}
	}
	return clientKey(s)
}

// cookieValue is the value of the first valid cookie named name, as
// r.Cookie(name) returns it, without parsing every cookie of the request
// into a slice of *http.Cookie (which r.Cookie does, allocating per pick).
func cookieValue(h http.Header, name string) string {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, _ := strings.Cut(textproto.TrimString(part), "=")
			if textproto.TrimString(k) != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if validCookieValue(v) {
				return v
			}
		}
	}
	return ""
}

// validCookieValue mirrors net/http's check of a cookie value's bytes.
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}
