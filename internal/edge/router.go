package edge

import (
	"net"
	"net/http"
	"sort"
	"strings"
)

// Router maps host + path prefix to a route handler. It is immutable once
// built: a config reload builds a new one and swaps it in whole.
type Router struct {
	exact    map[string][]entry // by lowercase host
	wildcard map[string][]entry // by parent domain of "*.parent"
	any      []entry
}

type entry struct {
	prefix string
	name   string
	h      http.Handler
	lane   PassHandler // h, when it also serves the pass lane
}

// NewRouter returns an empty router.
func NewRouter() *Router {
	return &Router{exact: map[string][]entry{}, wildcard: map[string][]entry{}}
}

// Handle adds a route. hosts empty means any host.
func (rt *Router) Handle(name string, hosts []string, prefix string, h http.Handler) {
	e := entry{prefix: prefix, name: name, h: h}
	e.lane, _ = h.(PassHandler)
	if len(hosts) == 0 {
		rt.any = insert(rt.any, e)
		return
	}
	for _, host := range hosts {
		if parent, ok := strings.CutPrefix(host, "*."); ok {
			rt.wildcard[parent] = insert(rt.wildcard[parent], e)
		} else {
			rt.exact[host] = insert(rt.exact[host], e)
		}
	}
}

// insert keeps entries sorted longest prefix first.
func insert(es []entry, e entry) []entry {
	es = append(es, e)
	sort.SliceStable(es, func(i, j int) bool { return len(es[i].prefix) > len(es[j].prefix) })
	return es
}

// Match finds the route for host and path; ok is false when none matches.
func (rt *Router) Match(host, path string) (name string, h http.Handler, ok bool) {
	if e := rt.match(host, path); e != nil {
		return e.name, e.h, true
	}
	return "", nil, false
}

// match is Match's entry, nil when none matches. Entries are never
// modified once the router is built.
func (rt *Router) match(host, path string) *entry {
	host = normalizeHost(host)
	if es, found := rt.exact[host]; found {
		if e := matchPrefix(es, path); e != nil {
			return e
		}
	}
	for h := host; ; {
		i := strings.IndexByte(h, '.')
		if i < 0 {
			break
		}
		h = h[i+1:]
		if es, found := rt.wildcard[h]; found {
			if e := matchPrefix(es, path); e != nil {
				return e
			}
		}
	}
	return matchPrefix(rt.any, path)
}

func matchPrefix(es []entry, path string) *entry {
	for i := range es {
		if strings.HasPrefix(path, es[i].prefix) {
			return &es[i]
		}
	}
	return nil
}

// normalizeHost lowercases and drops the port and a trailing dot.
func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}
